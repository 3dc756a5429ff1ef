//! `hub-serve` command line: clap definitions and their conversion into the
//! library's configurations. The program is [`crate::app::serve`].

use super::docs::Page;
use super::{parse_duration, parse_size};
use crate::broker::BrokerConfig;
use crate::server::ServerConfig;
use crate::store::{FsyncMode, LogConfig, default_data_dir};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// The documentation after `--help` and in `man hub-serve`.
pub const PAGE: Page = Page {
    examples: &[
        (
            "Start the hub on ws://127.0.0.1:7357, its log in ~/.local/state/hub",
            "hub-serve",
        ),
        (
            "A free port and nothing on disk (tests, one CI job); stderr names the port",
            "hub-serve --listen 127.0.0.1:0 --memory",
        ),
        (
            "Reachable from other hosts: a token kept out of ps, fsync before every ack",
            "hub-serve --listen 0.0.0.0:7357 --token-file /etc/hub/token --fsync always",
        ),
        (
            "Retention: drop segments older than a week, trim the log to about 512 MiB",
            "hub-serve --retain-age 7d --retain-bytes 512MiB",
        ),
        (
            "One of several nodes over a 3-server NATS cluster (README: Running several hubs)",
            "hub-serve --listen 0.0.0.0:7357 --nats nats://n1:4222,nats://n2:4222,nats://n3:4222 --nats-replicas 3",
        ),
        (
            "Is it up, and what does it hold?",
            "curl -s http://127.0.0.1:7357/status",
        ),
    ],
    exit_status: &[
        (
            "0",
            "Stopped cleanly after SIGINT or SIGTERM. With --check: the log is intact (a torn final record is not damage).",
        ),
        (
            "1",
            "Cannot start or run: port in use, data dir locked by another hub-serve or unreadable, unreadable token file; with --nats: no NATS server answered within 30 s, it is older than 2.9 or has no JetStream, or the stream cannot hold hub events. With --check: the log is damaged.",
        ),
        (
            "2",
            "Bad usage (unknown flag, invalid value). With --check: the data dir is missing or held by a running hub-serve.",
        ),
    ],
    environment: &[
        ("HUB_LISTEN", "Address to listen on, as --listen."),
        ("HUB_DATA_DIR", "Where the event log lives, as --data-dir."),
        ("HUB_TOKEN", "The token every request needs, as --token."),
        ("HUB_NATS", "NATS servers to keep events in, as --nats."),
        (
            "XDG_STATE_HOME",
            "The default data dir is $XDG_STATE_HOME/hub (else ~/.local/state/hub).",
        ),
        (
            "RUST_LOG",
            "Log filter for stderr (e.g. hub=debug); overrides -v and -q.",
        ),
        (
            "NO_COLOR",
            "When set (non-empty), no colors in help or logs.",
        ),
        (
            "TOKIO_WORKER_THREADS",
            "Threads serving connections; by default one fewer than the CPUs (at least one), as the log's writer thread keeps a core busy under load.",
        ),
        (
            "NOTIFY_SOCKET",
            "Set by systemd for Type=notify units: hub-serve reports READY=1 once the log is open and the port is served, STOPPING=1 on shutdown.",
        ),
    ],
    files: &[(
        "~/.local/state/hub/",
        "The default data dir (--data-dir; $XDG_STATE_HOME/hub/ when that is set): the event log in segment files named by their first id (00000000000000000001.log ...), cursors.json (the cursors of hub-sub --durable) and LOCK, held while a hub-serve uses the directory.",
    )],
    notes: &[
        (
            "Endpoints",
            "GET / (the live dashboard, also at /dashboard; off with --no-dashboard), GET /ws (WebSocket; topic=, where=, since=, last= in the query subscribe at once), POST /publish (one event or JSON lines), GET /events (polling, wait=30s long-polls), GET /tasks, GET /health, GET /status, GET /metrics (Prometheus).",
        ),
        (
            "Durability",
            "An event is acknowledged only after it is written to the log. --fsync always fsyncs before the ack; batch (the default) at least every 100 ms, so a power loss loses at most that window; never leaves it to the OS. All three survive a crash or kill -9 of hub-serve; a torn final record is dropped at start.",
        ),
        (
            "With --nats",
            "The JetStream stream is the log: ids are its sequence numbers and ts its stored time, the same on every node. Each node keeps a copy in memory, filled from the stream at start (it listens once the copy has the newest event) and fed live; publishes are acknowledged once JetStream has them (with replicas: a quorum) and this node has copied them. Keys are deduplicated across nodes (JetStream's 2-minute Nats-Msg-Id window and the newest 100,000 keys of the stream). Durable cursors live in KV bucket hub_cursors. While NATS cannot be reached, publishes get 503 (HTTP) or close 4500 (WebSocket) naming the servers, and clients retry; reads go on from the copy. What survives: kill -9 of a node loses nothing; with one nats-server, its crash loses nothing it acknowledged unless the machine loses power before nats-server synced (its sync_interval); with --nats-replicas 3, the loss of one server loses nothing and publishes stall for the election (seconds).",
        ),
        (
            "When the disk lies",
            "Every record carries a magic marker, its id and checksums of its header and body. At start, a record cut short at the very end of the newest segment (a crash mid-write, never acknowledged) is dropped quietly. Any other bad record is damage: hub-serve copies the segment to NAME.damaged, rewrites it with every intact record before and after the damage, logs an ERROR naming the file, the byte offset and the ids lost, and gives out new ids above every id ever written. Readers get a gap frame with reason corrupt for lost ids (GET /events: an X-Hub-Gap header); /status counts them as damaged_events. hub-serve --check reports all of this offline and changes nothing.",
        ),
        (
            "Slow subscribers",
            "Each subscription has a bounded outbox; when it is full, that subscriber alone reads on from the log and rejoins live. It gets a gap frame only for events it had not read yet that are gone: removed by retention (reason retention) or lost to damage on disk (reason corrupt).",
        ),
        (
            "Connections",
            "A connection must send complete request headers within 10 s of being accepted, and within 10 s after each answer; otherwise it is closed without an answer, so a client that sends half a request holds its place in --max-connections for at most 10 s. A WebSocket keeps the place of the connection it was upgraded from until it closes; --idle-timeout applies to it. The connections field of /status counts them. While 64 connections over the limit wait for their 429 or 4429, further ones are closed at once.",
        ),
        (
            "Signals",
            "SIGINT and SIGTERM: stop accepting, flush the log, close every WebSocket with 1001 and exit 0 within 5 s.",
        ),
    ],
};

/// The broker of hub: WebSocket + HTTP on one port, a durable event log, fan-out.
#[derive(Debug, Parser)]
#[command(
    name = "hub-serve",
    version,
    about = "The hub broker: WebSocket + HTTP on one port, a durable event log, fan-out",
    after_help = PAGE.help(),
    after_long_help = PAGE.long_help()
)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the first stderr line names it).
    #[arg(long, env = "HUB_LISTEN", default_value = crate::DEFAULT_ADDR, value_name = "ADDR")]
    pub listen: String,

    /// Where the event log lives [default: $XDG_STATE_HOME/hub, else ~/.local/state/hub].
    #[arg(
        long,
        env = "HUB_DATA_DIR",
        value_name = "DIR",
        conflicts_with = "memory"
    )]
    pub data_dir: Option<PathBuf>,

    /// Keep events in memory only; nothing is written to disk.
    #[arg(long)]
    pub memory: bool,

    /// Read the log in the data dir offline and report it, changing nothing: each
    /// segment, every damaged record (file, offset, ids), the totals. Exits 0 when
    /// the log is intact, 1 when it is damaged, 2 when the dir is missing or held by
    /// a running hub-serve.
    #[arg(long, conflicts_with = "memory")]
    pub check: bool,

    /// When written events are fsynced: always (before each ack, group commit),
    /// batch (at least every 100 ms), never (left to the OS). All three survive a
    /// crash of the process; after a power loss, batch may lose the last 100 ms and
    /// never what the OS had not written back yet. [default: batch] Not with --nats.
    #[arg(long, value_enum, value_name = "MODE")]
    pub fsync: Option<FsyncMode>,

    /// Keep events in a NATS JetStream stream instead of a log of this node's own:
    /// every hub-serve given the same servers and stream serves the same events
    /// under the same ids (URLs comma-separated: nats://HOST:4222,...). Needs
    /// nats-server 2.9 or newer with JetStream (-js).
    #[arg(
        long,
        env = "HUB_NATS",
        value_name = "URL[,URL...]",
        conflicts_with_all = ["memory", "data_dir", "check"]
    )]
    pub nats: Option<String>,

    /// The JetStream stream to use with --nats (created by the first node when
    /// missing, checked and never changed by the others).
    #[arg(long, default_value = "HUB", value_name = "NAME", requires = "nats")]
    pub nats_stream: String,

    /// Replicas of the stream (and of the cursor buckets) when this node creates it:
    /// 1 to 5; 3 survives the loss of one server.
    #[arg(long, default_value = "1", value_name = "N", requires = "nats")]
    pub nats_replicas: usize,

    /// Retain about this many events: the oldest whole segments are dropped once
    /// at least N remain without them.
    #[arg(long, default_value = "1000000", value_name = "N")]
    pub retain_events: u64,

    /// Retain about this much log (e.g. 512MiB, 1GiB): the oldest whole segments are
    /// dropped once at least SIZE remains without them.
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub retain_bytes: u64,

    /// Drop segments whose newest event is older than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub retain_age: Option<Duration>,

    /// Require this token (Authorization: Bearer T or ?token=T) on every request
    /// but /health. Prefer --token-file: a token on the command line shows in ps.
    #[arg(long, env = "HUB_TOKEN", hide_env_values = true, value_name = "T")]
    pub token: Option<String>,

    /// Read the token from this file (first line); takes precedence over --token
    /// and HUB_TOKEN, as in the client commands.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Let browser pages from this origin connect (e.g. https://dash.example:8443);
    /// repeatable; `*` allows any.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,

    /// Accept this host name in the Host header besides localhost and IP addresses; repeatable.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,

    /// Most connections at once, HTTP and WebSocket alike, each counted from accept
    /// until it closes. Over it, an HTTP request gets 429 and a WebSocket is closed
    /// with 4429 (clients back off and retry), then the connection is closed.
    #[arg(long, default_value = "10000", value_name = "N")]
    pub max_connections: usize,

    /// Most subscriptions per connection; more get an error frame.
    #[arg(long, default_value = "50", value_name = "N")]
    pub max_subscriptions: usize,

    /// Largest encoded event (e.g. 64KiB, 1MiB).
    #[arg(long, default_value = "64KiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_event_bytes: u64,

    /// Close a WebSocket that sent nothing (pongs count) for this long, with 1001.
    #[arg(long, default_value = "90s", value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Do not serve the browser dashboard at / and /dashboard (they answer 404).
    #[arg(long)]
    pub no_dashboard: bool,

    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr (the listening line is still printed).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl ServeArgs {
    /// The data dir, or `None` for `--memory`.
    ///
    /// # Errors
    /// No `--data-dir` and neither `XDG_STATE_HOME` nor `HOME` is set.
    pub fn data_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.memory {
            return Ok(None);
        }
        match &self.data_dir {
            Some(d) => Ok(Some(d.clone())),
            None => default_data_dir().map(Some).ok_or_else(|| {
                anyhow::anyhow!("no --data-dir given and neither XDG_STATE_HOME nor HOME is set; pass --data-dir DIR or --memory")
            }),
        }
    }

    pub fn log_config(&self) -> anyhow::Result<LogConfig> {
        Ok(LogConfig {
            dir: self.data_dir()?,
            fsync: self.fsync.unwrap_or(FsyncMode::Batch),
            retain_events: self.retain_events.max(1),
            retain_bytes: self.retain_bytes.max(1),
            retain_age: self.retain_age,
            cache_events: crate::app::serve::CACHE_EVENTS,
        })
    }

    /// The retention of the copy of the stream a `--nats` node keeps in memory.
    pub fn replica_config(&self) -> LogConfig {
        LogConfig {
            dir: None,
            fsync: FsyncMode::Never,
            retain_events: self.retain_events.max(1),
            retain_bytes: self.retain_bytes.max(1),
            retain_age: self.retain_age,
            cache_events: crate::app::serve::CACHE_EVENTS,
        }
    }

    /// Refuses what cannot go together beyond what clap checks: the message for a
    /// usage error (exit 2).
    pub fn usage_problem(&self) -> Option<String> {
        if self.nats.is_some() && self.fsync.is_some() {
            return Some(
                "--fsync does not apply with --nats: this node writes no log; JetStream acknowledges an event once a quorum of its --nats-replicas servers holds it, and nats-server's own sync setting (jetstream { sync_interval }, default 2 min, or always) decides when it reaches their disks".into(),
            );
        }
        None
    }

    /// The JetStream settings of `--nats`, or `None` without it.
    #[cfg(feature = "nats")]
    pub fn nats_config(&self) -> Option<crate::nats::NatsConfig> {
        let urls = crate::nats::NatsConfig::parse_urls(self.nats.as_deref()?);
        let mut c = crate::nats::NatsConfig::new(urls);
        c.stream = self.nats_stream.clone();
        c.replicas = self.nats_replicas;
        c.retain_events = self.retain_events.max(1);
        c.retain_bytes = self.retain_bytes.max(1);
        c.retain_age = self.retain_age;
        c.max_event_bytes = self.max_event_bytes as usize;
        Some(c)
    }

    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            max_event_bytes: self.max_event_bytes as usize,
            ..BrokerConfig::default()
        }
    }

    /// # Errors
    /// The token file cannot be read or is empty.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let token = match (&self.token, &self.token_file) {
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --token-file {}: {e}", path.display())
                })?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (Some(t), None) => Some(t.clone()),
            (None, None) => None,
        };
        if token.as_deref() == Some("") {
            anyhow::bail!("the token is empty; give a non-empty --token or --token-file");
        }
        Ok(ServerConfig {
            token,
            allow_origins: self.allow_origins.clone(),
            allow_hosts: self.allow_hosts.clone(),
            max_connections: self.max_connections,
            max_subscriptions: self.max_subscriptions,
            max_event_bytes: self.max_event_bytes as usize,
            idle_timeout: self.idle_timeout,
            dashboard: !self.no_dashboard,
        })
    }
}

/// Logs to stderr; `RUST_LOG` overrides `-v` / `-q`.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hub={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::cli::log_sink)
        .with_ansi(super::color_on_stderr())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        ServeArgs::command().debug_assert();
    }

    #[test]
    fn durations_and_sizes_are_the_shared_grammar() {
        let a = ServeArgs::try_parse_from([
            "hub-serve",
            "--retain-age",
            "90",
            "--idle-timeout",
            "1.5",
            "--retain-bytes",
            "64KiB",
        ])
        .unwrap();
        assert_eq!(a.retain_age, Some(Duration::from_secs(90)));
        assert_eq!(a.idle_timeout, Duration::from_millis(1500));
        assert_eq!(a.retain_bytes, 65536);
        let e = ServeArgs::try_parse_from(["hub-serve", "--retain-age", "soon"]).unwrap_err();
        assert!(e.to_string().contains("a number of seconds"), "{e}");
        let e = ServeArgs::try_parse_from(["hub-serve", "--max-event-bytes", "lots"]).unwrap_err();
        assert!(e.to_string().contains("64KiB"), "{e}");
    }
}
