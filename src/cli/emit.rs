//! The flags of `hub-emit` (clap derive) and its help and man page text. The
//! program is [`crate::app::emit`].

use super::docs::Page;
use super::{HubArgs, parse_duration};
use clap::Parser;
use std::time::Duration;

/// The default of `--progress-regex`: `NN%` or `NN.N %` anywhere in a line.
pub const DEFAULT_PROGRESS_REGEX: &str = r"(\d{1,3}(?:\.\d+)?)\s*%";

/// The documentation after `--help` and in `man hub-emit`.
pub const PAGE: Page = Page {
    examples: &[
        (
            "Report progress: TYPE progress, a JSON number and a string in data",
            "hub-emit task:build-42 progress percent:=50 message=compiling",
        ),
        (
            "Data as JSON; print the assigned id (for hub-sub --since)",
            r#"hub-emit deploy:web --data '{"version":"1.4.2"}' --print-id"#,
        ),
        (
            "Each line of a stream is one event, over one connection",
            "journalctl -f -o cat | hub-emit log:journal log --lines",
        ),
        (
            "Whole event objects, each with its own topic, type and data",
            "jq -c '.[]' events.json | hub-emit --events",
        ),
        (
            "Wrap a command: task_started, its output as log events, NN% as progress, then task_completed or task_failed; exits with the command's status",
            "hub-emit task:nightly --run --capture --progress-regex -- ./backup.sh /srv",
        ),
        (
            "Report a failure by hand",
            "hub-emit ci:pipeline-7 task_failed error='tests failed' exit_code:=1",
        ),
    ],
    exit_status: &[
        (
            "0",
            "Every event was acknowledged by the hub (written to its log).",
        ),
        (
            "2",
            "Bad usage or input (a malformed --lines/--events line).",
        ),
        ("3", "The hub was unreachable within --timeout."),
        (
            "4",
            "Refused by the hub: auth, limits, an invalid or too large event.",
        ),
        (
            "CMD's",
            "With --run: the command's own exit status (128+N when killed by signal N, 127 not found, 126 not executable).",
        ),
    ],
    environment: &super::docs::CLIENT_ENV,
    files: &[],
    notes: &[
        (
            "Data",
            "The data object keeps the key order it was written in; KEY=VALUE fields are added after the keys of --data or of a --lines object, in their order (a key already there keeps its place). Numbers keep their value; a --lines object with no fields is stored as written, spelling included.",
        ),
        (
            "Retries",
            "While the hub is unreachable, hub-emit retries with backoff until --timeout. Every event carries an idempotency key (--key, else a random one), so a resend after a lost ack is stored once. With --run the command runs even when the hub is down; what could not be reported is said on stderr.",
        ),
    ],
};

/// Publish events to a hub. Exits 0 only after the hub has acknowledged every event.
#[derive(Parser, Debug)]
#[command(
    name = "hub-emit",
    version,
    after_help = PAGE.help(),
    after_long_help = PAGE.long_help()
)]
pub struct EmitArgs {
    /// Topic of the event(s): 1-255 of A-Z a-z 0-9 _ - . : / @ (e.g. task:build-42).
    #[arg(value_name = "TOPIC", required_unless_present = "events")]
    pub topic: Option<String>,

    /// [TYPE] (default: message) then data fields: KEY=VALUE sets a string,
    /// KEY:=JSON a JSON value (percent:=50, ok:=true, tags:='["a"]').
    #[arg(value_name = "TYPE|FIELD")]
    pub rest: Vec<String>,

    /// The data as a JSON value; KEY=VALUE fields are merged into it.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,

    /// The event's source (default: this host's name).
    #[arg(long, value_name = "S")]
    pub source: Option<String>,

    /// The idempotency key of a single event (default: a random one). A run that
    /// repeats a key (a retried cron job) is acknowledged with the original id.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["lines", "events", "run"])]
    pub key: Option<String>,

    /// Publish each stdin line as one event: a JSON object line is the data, any
    /// other line becomes {"line": "..."}. Pipelined over one connection.
    #[arg(long, conflicts_with_all = ["events", "run"])]
    pub lines: bool,

    /// Each stdin line is a whole event object with its own topic, type, data.
    #[arg(long, conflicts_with = "run")]
    pub events: bool,

    /// Run the command after `--`, publishing task_started, then task_completed or
    /// task_failed (exit_code, duration_seconds); exit with the command's status.
    #[arg(long)]
    pub run: bool,

    /// With --run: also publish each output line as a `log` event.
    #[arg(long, requires = "run")]
    pub capture: bool,

    /// With --run: turn `NN%` in the output into `progress` events. The first
    /// capture group is the percent [default regex: (\d{1,3}(?:\.\d+)?)\s*%].
    #[arg(
        long,
        value_name = "REGEX",
        requires = "run",
        num_args = 0..=1,
        default_missing_value = DEFAULT_PROGRESS_REGEX
    )]
    pub progress_regex: Option<String>,

    /// Print the id(s) the hub assigned on stdout, one per line.
    #[arg(long, conflicts_with = "run")]
    pub print_id: bool,

    /// How long to keep retrying while the hub is unreachable (500ms, 30s, 2m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub hub: HubArgs,

    /// The command to run with --run (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}
