//! Command-line definitions of the four commands (clap derive), each converted into
//! the library's configuration. The man pages and completions are generated from here.
//!
//! Shared by the client commands: the hub connection flags (`--url`, `--token`,
//! `--token-file`), verbosity (`-v`, `-q`), the one duration grammar and the one size
//! grammar of every command, and logging setup.
//! Each command's own flags live in its module.

pub mod docs;
pub mod emit;
pub mod serve;
pub mod sub;
pub mod tail;

use crate::client::ConnectOptions;
use crate::exit::Exit;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the hub, and how much to say on stderr.
#[derive(clap::Args, Debug, Clone)]
pub struct HubArgs {
    /// Hub address: ws://HOST:PORT, ws://HOST:PORT/ws or http://HOST:PORT (/ws is
    /// added when missing). Several hubs of one cluster, comma-separated
    /// (ws://a:7357,ws://b:7357): the first that answers is used; a failed attempt
    /// moves to the next at once, a whole failed round waits the retry delay, a
    /// dropped connection resumes on the next hub.
    #[arg(long, env = "HUB_URL", value_name = "URL", default_value = crate::DEFAULT_URL)]
    pub url: String,

    /// Token for a hub started with --token, sent as `Authorization: Bearer`.
    /// Prefer HUB_TOKEN or --token-file: a --token is visible in `ps`.
    #[arg(long, env = "HUB_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Read the token from FILE (first line; surrounding whitespace is ignored).
    /// Takes precedence over --token and HUB_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Say more on stderr (-v: connections and counts, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Say nothing on stderr except the error that ends the command.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl HubArgs {
    /// The token from --token-file, --token or HUB_TOKEN.
    ///
    /// # Errors
    /// [`Exit`] with code 2 when the file cannot be read or is empty.
    pub fn token(&self) -> Result<Option<String>, Exit> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Exit::usage(format!("cannot read --token-file {}: {e}", path.display()))
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(Exit::usage(format!(
                    "--token-file {} is empty: it should hold the token on its first line",
                    path.display()
                )));
            }
            return Ok(Some(token));
        }
        Ok(self.token.clone().filter(|t| !t.is_empty()))
    }

    /// Connection options with this URL and token, retrying outages for `timeout`.
    pub fn connect_options(&self, timeout: Option<Duration>) -> Result<ConnectOptions, Exit> {
        Ok(ConnectOptions {
            url: self.url.clone(),
            token: self.token()?,
            timeout,
        })
    }

    /// Sends `tracing` output to stderr at the level -v / -q ask for (default: warnings).
    /// `RUST_LOG` overrides.
    pub fn init_logging(&self, program: &'static str) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info",
            _ => "debug",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hub={level}")));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(log_sink)
            .with_ansi(color_on_stderr())
            .without_time()
            .with_target(false)
            .with_level(false)
            .event_format(Prefixed(program))
            .try_init();
    }
}

/// Where log lines go: stderr, ignoring write errors. A daemon whose stderr pipe
/// went away (the script that started it exited) must keep serving, and
/// tracing-subscriber would otherwise report the failure with `eprintln!`, which
/// panics on a closed stderr.
pub struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `MakeWriter` for [`LogSink`].
pub fn log_sink() -> LogSink {
    LogSink
}

/// True when stderr is a terminal and `NO_COLOR` is not set (https://no-color.org).
/// clap's help follows `NO_COLOR` by itself (anstream); logs ask here.
pub fn color_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Formats log lines as `PROGRAM: message`, like the rest of the command's stderr.
struct Prefixed(&'static str);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Prefixed
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{}: ", self.0)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// What a duration flag accepts, for its error message.
const DURATIONS: &str = "use e.g. 500ms, 30s, 10m, 2h, 7d, 1h30m or a number of seconds (90, 1.5)";

/// Parses a duration, the grammar of every command's duration flags: `500ms`, `30s`,
/// `10m`, `2h`, `7d`, `1h30m`; a bare number is seconds (`90`, `1.5`).
///
/// # Errors
/// A message naming what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?} ({e}); {DURATIONS}"))
}

/// Parses a size in bytes, the grammar of every command's size flags: `65536`,
/// `64KiB`, `512MiB`, `1GiB` (also `64KB` = 64,000 and `64K` = 65,536).
///
/// # Errors
/// A message naming what is accepted.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?} ({e}); use e.g. 65536, 64KiB, 512MiB, 1GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["soon", "-1", "", "1x", "inf", "NaN"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("500ms") && e.contains("seconds"),
                "{e}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("32KiB").unwrap(), 32768);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size(" 1KiB ").unwrap(), 1024);
        for bad in ["lots", "", "-1", "1XiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("64KiB"),
                "{e}"
            );
        }
    }
}
