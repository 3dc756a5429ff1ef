//! The flags of `hub-sub` (clap derive) and its help and man page text. The program
//! is [`crate::app::sub`].

use super::docs::Page;
use super::{HubArgs, parse_duration};
use crate::app::sub::output::Format;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// The documentation after `--help` and in `man hub-sub`.
pub const PAGE: Page = Page {
    examples: &[
        (
            "Every task event where data.percent is 100",
            "hub-sub 'task:*' --where data.percent=100",
        ),
        (
            "The last 100 lines of a log, then live, as short text lines",
            "hub-sub log:nginx --last 100 --format text",
        ),
        (
            "Topics of failed tasks, through jq",
            "hub-sub --type task_failed | jq -r .topic",
        ),
        (
            "CI gate: wait for a task; exit 0 when it completes, 1 when it fails",
            "hub-sub --wait-task ci:pipeline-7 --timeout 30m",
        ),
        (
            "Cron: what is new since the last run of this report, then exit",
            "hub-sub 'backup:*' --durable nightly-report --drain",
        ),
        (
            "A live progress bar per task",
            "hub-sub 'task:*' --progress",
        ),
        (
            "Subscribe in the background, then publish without a race",
            "hub-sub t --count 1 --ready-file /tmp/ready & while [ ! -e /tmp/ready ]; do sleep 0.05; done; hub-emit t",
        ),
    ],
    exit_status: &[
        (
            "0",
            "Done: --count, --until or --drain reached, the --wait-task task completed, or stdout was closed.",
        ),
        ("1", "The --wait-task task failed."),
        ("2", "Bad usage (invalid pattern, filter, type or flag)."),
        (
            "3",
            "The hub was unreachable within --connect-timeout (or dropped with --no-reconnect).",
        ),
        ("4", "Refused by the hub: auth, limits."),
        ("124", "--timeout expired (as timeout(1))."),
    ],
    environment: &super::docs::CLIENT_ENV,
    files: &[],
    notes: &[
        (
            "Output",
            "One event per line on stdout, compact JSON, flushed per line (--format data: only data; text: TS TOPIC TYPE and data.message, data.line or compact data). Diagnostics go to stderr.",
        ),
        (
            "Reconnecting",
            "After a dropped connection hub-sub reconnects (backoff 0.5 s doubling to 30 s, with jitter) and resumes after the last event it printed: nothing lost, nothing printed twice. --no-reconnect fails fast instead.",
        ),
    ],
};

/// Subscribe to a hub and print matching events, one compact JSON object per line.
/// Reconnects by itself and resumes after the last event it printed.
#[derive(Parser, Debug)]
#[command(
    name = "hub-sub",
    version,
    after_help = PAGE.help(),
    after_long_help = PAGE.long_help()
)]
pub struct SubArgs {
    /// Topic patterns (globs: * any run, ? one character, [abc] a class), OR-ed.
    /// None: every topic.
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,

    /// Only events where FIELD=VALUE or FIELD!=VALUE (dotted path, e.g.
    /// data.status=failed); repeat to AND them.
    #[arg(long = "where", short = 'w', value_name = "F=V")]
    pub filters: Vec<String>,

    /// Only events of this type; repeat to OR them.
    #[arg(long = "type", short = 't', value_name = "T")]
    pub types: Vec<String>,

    /// Start after event ID (replay from the log, then live).
    #[arg(long, value_name = "ID", group = "start")]
    pub since: Option<u64>,

    /// Start with the last N matching events, then live.
    #[arg(long, value_name = "N", group = "start")]
    pub last: Option<u64>,

    /// Start with everything the hub retains (= --since 0).
    #[arg(long, group = "start")]
    pub all: bool,

    /// Exit 0 after printing N events.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Exit 0 after printing the first event where F=V (or F!=V).
    #[arg(long, value_name = "F=V")]
    pub until: Option<String>,

    /// Wait for task TOPIC to end: exit 0 when it completes, 1 when it fails (at
    /// once if it already ended). Prints the task's events.
    #[arg(long, value_name = "TOPIC", conflicts_with = "patterns")]
    pub wait_task: Option<String>,

    /// Exit 0 once caught up with the log (after the replay).
    #[arg(long)]
    pub drain: bool,

    /// Exit 124 after DUR (e.g. 30s, 10m).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Exit 3 when the first connection cannot be made within DUR.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Exit 3 at once when the hub cannot be reached or the connection drops,
    /// instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,

    /// Keep a cursor named NAME in the hub: the next run with the same NAME starts
    /// after the last event this run printed. A new NAME starts live unless
    /// --since/--last/--all says otherwise.
    #[arg(long, value_name = "NAME")]
    pub durable: Option<String>,

    /// What to print per event.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Draw a live progress bar per task on stderr instead of printing events
    /// (plain lines when stderr is not a terminal).
    #[arg(long)]
    pub progress: bool,

    /// Create PATH once the hub has confirmed the subscription.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    #[command(flatten)]
    pub hub: HubArgs,
}
