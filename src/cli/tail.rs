//! The flags of `hub-tail` (clap derive) and their conversion into a
//! [`Config`]. The program is [`crate::app::tail`]; following a file is
//! [`crate::follow`].

use super::docs::Page;
use super::{HubArgs, parse_duration};
use crate::app::tail::{Config, Input};
use crate::follow::Start;
use crate::follow::watch::WatchMode;
use std::path::PathBuf;
use std::time::Duration;

/// The documentation after `--help` and in `man hub-tail`.
pub const PAGE: Page = Page {
    examples: &[
        (
            "Publish new lines of a file on topic log:access",
            "hub-tail /var/log/nginx/access.log",
        ),
        (
            "Every .log file of a directory, also files created later, starting 100 lines back",
            "hub-tail '/var/log/app/*.log' --last 100",
        ),
        (
            "Ship stdin",
            "journalctl -f | hub-tail - --topic log:journal",
        ),
        (
            "JSON log lines become the events' data",
            "hub-tail /var/log/app/events.jsonl --json --topic log:app",
        ),
        (
            "On NFS or in a container without inotify",
            "hub-tail /mnt/share/app.log --poll --poll-interval 2s",
        ),
    ],
    exit_status: &[
        (
            "0",
            "Stopped by SIGINT or SIGTERM (after saving the acknowledged positions), or stdin (-) ended.",
        ),
        (
            "1",
            "The --state file could not be written, or another error.",
        ),
        (
            "2",
            "Bad usage: invalid topic, type, glob or size, an unreadable --state file.",
        ),
        (
            "4",
            "Refused by the hub: auth, an invalid or too large event.",
        ),
    ],
    environment: &[
        super::docs::CLIENT_ENV[0],
        super::docs::CLIENT_ENV[1],
        (
            "XDG_STATE_HOME",
            "The default --state file is under $XDG_STATE_HOME/hub/tail/ (else ~/.local/state/hub/tail/).",
        ),
        super::docs::CLIENT_ENV[2],
        super::docs::CLIENT_ENV[3],
    ],
    files: &[(
        "~/.local/state/hub/tail/XXXXXXXX.json",
        "The default --state file (under $XDG_STATE_HOME/hub/tail/ when that is set): one per set of inputs (XXXXXXXX is a checksum of the patterns), holding device, inode, offset and a fingerprint of the first bytes of each followed file.",
    )],
    notes: &[(
        "Hub outages",
        "hub-tail never gives up while the hub is down: it stops reading and waits (the file is the buffer), then goes on from the last acknowledged line.",
    )],
};

/// Follow log files like `tail -F` and publish each line to the hub.
///
/// Each complete line becomes a `log` event with `data.line` and `data.file` (the
/// absolute path) on the topic `log:<file stem>`. Rotation (rename-and-create,
/// copytruncate), truncation, deletion and re-creation are followed; each publishes
/// a `rotated` event, after the old file has been read to its end. A renamed file is
/// still read for --rotate-wait after that, next to the new one, since the program
/// writing it only reopens its log after logrotate created the new file.
///
/// Positions are saved in the --state file only after the hub acknowledged the lines,
/// and every event is keyed by file and offset: restarting hub-tail (even kill -9) or
/// the hub neither loses nor repeats a line. While the hub is down, hub-tail stops
/// reading: the file is the buffer.
///
/// A line longer than --max-line (JSON-encoded) is split into pieces of at most that
/// size, each but the last with `"partial": true`. Binary files (a NUL byte in the
/// first 4 KiB) are reported and skipped.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "hub-tail",
    version,
    verbatim_doc_comment,
    after_help = PAGE.help(),
    after_long_help = PAGE.long_help()
)]
pub struct TailArgs {
    /// Files, quoted globs (new matches are picked up while running), or - for stdin.
    #[arg(required = true, value_name = "FILE|GLOB|-")]
    pub inputs: Vec<String>,

    /// Topic of every event (default: log:<file stem>, log:stdin for -).
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// Type of the line events.
    #[arg(long = "type", value_name = "TYPE", default_value = "log")]
    pub kind: String,

    /// For a file without a saved position, start N lines before its end
    /// (default: at its end, new lines only).
    #[arg(long, value_name = "N", conflicts_with = "from_start")]
    pub last: Option<u64>,

    /// For a file without a saved position, start at its first line.
    #[arg(long)]
    pub from_start: bool,

    /// Poll instead of using inotify (network file systems, containers); with -v it
    /// says so on stderr. hub-tail also falls back to polling by itself when inotify
    /// cannot be used, and always says why.
    #[arg(long)]
    pub poll: bool,

    /// How often to check the files when polling.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// After a rename rotation, keep reading the old file (lines its writer still
    /// appends before reopening its log) for this long; 0: read it to its end once.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub rotate_wait: Duration,

    /// Where positions are kept (default: one file per set of inputs under
    /// $XDG_STATE_HOME/hub/tail/, else ~/.local/state/hub/tail/).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Parse each line as JSON: an object becomes the event's data (with `file` added
    /// when it has none); any other line is sent as {"line": ..., "file": ...}.
    #[arg(long)]
    pub json: bool,

    /// Longest line, in bytes of JSON-encoded text, before it is split into pieces.
    #[arg(long, value_name = "SIZE", default_value = "32KiB", value_parser = parse_max_line)]
    pub max_line: usize,

    /// The events' source (default: the host name).
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,

    #[command(flatten)]
    pub hub: HubArgs,
}

/// `--max-line`: a size (the shared grammar) from 256 B to 16 MiB.
fn parse_max_line(s: &str) -> Result<usize, String> {
    let n = super::parse_size(s)?;
    if !(256..=16 << 20).contains(&n) {
        return Err(format!(
            "--max-line must be between 256 B and 16 MiB (got {s})"
        ));
    }
    Ok(n as usize)
}

impl TailArgs {
    /// The follower configuration these flags ask for.
    pub fn config(&self) -> Config {
        let mut cfg = Config::new(self.inputs.iter().map(|a| Input::parse(a)).collect());
        cfg.topic = self.topic.clone();
        cfg.kind = self.kind.clone();
        cfg.json = self.json;
        cfg.start = match (self.from_start, self.last) {
            (true, _) => Start::FromStart,
            (false, Some(n)) => Start::Last(n),
            (false, None) => Start::End,
        };
        cfg.poll_interval = self.poll_interval;
        cfg.rotate_wait = self.rotate_wait;
        cfg.mode = if self.poll {
            WatchMode::Poll(self.poll_interval)
        } else {
            WatchMode::Native
        };
        cfg.state = self
            .state
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or(p.clone()));
        cfg.max_line = self.max_line;
        cfg.source = Some(
            self.source
                .clone()
                .unwrap_or_else(crate::event::default_source),
        );
        cfg.verbose = self.hub.verbose > 0;
        cfg.quiet = self.hub.quiet;
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn verify_cli() {
        TailArgs::command().debug_assert();
    }

    #[test]
    fn flags_become_a_config() {
        let a = TailArgs::try_parse_from([
            "hub-tail",
            "a.log",
            "/x/*.log",
            "--last",
            "5",
            "--poll",
            "--poll-interval",
            "250ms",
            "--max-line",
            "1KiB",
            "--rotate-wait",
            "0",
        ])
        .unwrap();
        let c = a.config();
        assert_eq!(c.rotate_wait, Duration::ZERO);
        assert_eq!(c.start, Start::Last(5));
        assert_eq!(c.mode, WatchMode::Poll(Duration::from_millis(250)));
        assert_eq!(c.max_line, 1024);
        assert!(matches!(&c.inputs[0], Input::Path(p) if p.is_absolute() && p.ends_with("a.log")));
        assert_eq!(c.inputs[1], Input::Glob("/x/*.log".into()));
        assert!(
            TailArgs::try_parse_from(["hub-tail", "a", "--last", "1", "--from-start"]).is_err()
        );
        assert!(TailArgs::try_parse_from(["hub-tail"]).is_err());
        let d = TailArgs::try_parse_from(["hub-tail", "-"])
            .unwrap()
            .config();
        assert_eq!(d.inputs, vec![Input::Stdin]);
        assert_eq!(d.max_line, crate::follow::DEFAULT_MAX_LINE);
        assert_eq!(d.rotate_wait, crate::app::tail::DEFAULT_ROTATE_WAIT);
    }
}
