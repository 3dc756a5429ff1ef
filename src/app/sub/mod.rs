//! `hub-sub`: subscribe and print matching events as JSON lines (SPEC §4).
//!
//! One [`Subscriber`] (reconnecting, resuming after the last printed id), a
//! buffered stdout flushed whenever no more frames are immediately pending, and the
//! stop conditions (`--count`, `--until`, `--wait-task`, `--drain`, `--timeout`).

use crate::cli::sub::SubArgs;
use crate::client::{ClientError, Start, SubEvent, SubscribeOptions, Subscriber, seconds};
use crate::event::Event;
use crate::exit::{self, Exit};
use crate::matching::{Filter, Matcher};
pub mod output;

use anyhow::Context;
use output::{Format, ProgressView, write_event};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The task types `--wait-task` and `--progress` follow.
/// What decides the end of a run.
struct Stop {
    count: Option<u64>,
    until: Option<Filter>,
    wait_task: Option<String>,
    drain: bool,
}

impl Stop {
    /// Whether deciding needs an event's fields (`--count` and `--drain` do not).
    fn needs_fields(&self) -> bool {
        self.until.is_some() || self.wait_task.is_some()
    }
}

/// Runs `hub-sub` and returns its exit code.
pub async fn run(args: SubArgs) -> anyhow::Result<u8> {
    let (spec, stop) = plan(&args)?;
    let connect_timeout = match args.timeout {
        Some(t) => t.min(args.connect_timeout),
        None => args.connect_timeout,
    };
    let opts = args.hub.connect_options(Some(connect_timeout))?;
    let started = std::time::Instant::now();
    let mut sub = Subscriber::connect(&opts, spec, !args.no_reconnect).await?;
    // Once connected, outages are waited out (and said on stderr) unless
    // --no-reconnect.
    sub.set_timeout(None);
    tracing::info!("connected to {}", sub.url());
    let mut session = Session {
        sub,
        out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        format: args.format,
        needs_fields: args.format != Format::Json || args.progress || stop.needs_fields(),
        progress: args.progress.then(ProgressView::new),
        ready_file: args.ready_file.clone(),
        ready: false,
        printed: 0,
        flushed_id: None,
        saved_id: None,
        quiet: args.hub.quiet,
        reconnecting: false,
        stdout_watch: watch_stdout(),
    };
    let result = match args.timeout {
        Some(t) => {
            let left = t.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, session.run(&stop)).await {
                Ok(r) => r,
                Err(_) => Err(Exit::new(
                    exit::TIMEOUT,
                    format!(
                        "--timeout {} expired after {} event(s)",
                        seconds(t),
                        session.printed
                    ),
                )
                .into()),
            }
        }
        None => session.run(&stop).await,
    };
    // Whatever ended the run: what was printed reaches stdout, and the cursor follows.
    let flushed = session.flush().await;
    if let Some(p) = &mut session.progress {
        p.finish();
    }
    session.sub.close().await;
    let code = result?;
    flushed?;
    Ok(code)
}

/// Validates the flags and turns them into a subscription and stop conditions.
fn plan(args: &SubArgs) -> Result<(SubscribeOptions, Stop), anyhow::Error> {
    let mut topics = args.patterns.clone();
    let mut types = args.types.clone();
    for t in &types {
        crate::event::validate_type(t).map_err(|e| Exit::usage(format!("--type: {e}")))?;
    }
    if let Some(task) = &args.wait_task {
        crate::event::validate_topic(task).map_err(|e| Exit::usage(format!("--wait-task: {e}")))?;
        topics = vec![task.clone()];
        types = vec![
            "task_started".into(),
            "task_completed".into(),
            "task_failed".into(),
        ];
    } else if args.progress && types.is_empty() {
        types = crate::event::TASK_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect();
    }
    // Patterns and filters are checked here so a typo is exit 2 with the reason.
    Matcher::new(&topics, &types, &args.filters)?;
    let until = match &args.until {
        Some(u) => Some(u.parse::<Filter>().context("--until")?),
        None => None,
    };
    if let Some(name) = &args.durable {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:/@".contains(&b));
        if !ok {
            return Err(Exit::usage(format!(
                "invalid --durable name {name:?}: 1-128 of A-Z a-z 0-9 _ - . : / @"
            ))
            .into());
        }
    }
    if args.count == Some(0) {
        return Err(Exit::usage("--count must be at least 1").into());
    }
    let start = match (args.since, args.last, args.all) {
        (Some(id), _, _) => Start::Since(id),
        (_, Some(n), _) => Start::Last(n),
        (_, _, true) => Start::Since(0),
        _ if args.wait_task.is_some() => Start::Last(1),
        _ => Start::Live,
    };
    let spec = SubscribeOptions {
        topics,
        filters: args.filters.clone(),
        types,
        durable: args.durable.clone(),
        ..start.into()
    };
    let stop = Stop {
        count: args.count,
        until,
        wait_task: args.wait_task.clone(),
        drain: args.drain,
    };
    Ok((spec, stop))
}

/// A running subscription and what it printed.
struct Session {
    sub: Subscriber,
    out: std::io::BufWriter<std::io::Stdout>,
    format: Format,
    /// Whether each event is parsed: for another format than json, progress bars or
    /// a stop condition on its fields. Else its JSON is printed as received.
    needs_fields: bool,
    progress: Option<ProgressView>,
    ready_file: Option<PathBuf>,
    ready: bool,
    printed: u64,
    /// The last event id written out of the buffer (flushed to stdout).
    flushed_id: Option<u64>,
    /// The last id given to the hub as the durable cursor.
    saved_id: Option<u64>,
    quiet: bool,
    reconnecting: bool,
    /// stdout when it is a pipe or socket, watched for its reader going away.
    stdout_watch: Option<AsyncFd<OwnedFd>>,
}

/// stdout, if it is a pipe or a socket, registered to learn when its reader is gone
/// (epoll reports an error on the write end of a pipe whose read end is closed).
fn watch_stdout() -> Option<AsyncFd<OwnedFd>> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(fd);
    let kind = file.metadata().ok()?.file_type();
    if !(kind.is_fifo() || kind.is_socket()) {
        return None;
    }
    // SAFETY: the OwnedFd is a fresh duplicate owned by the AsyncFd: it stays open and
    // names the same file description until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(OwnedFd::from(file), Interest::ERROR) }.ok()
}

/// Resolves when the watched stdout has no reader any more; never without a watch.
async fn stdout_closed(watch: &Option<AsyncFd<OwnedFd>>) {
    match watch {
        Some(fd) => {
            let _ = fd.ready(Interest::ERROR).await;
        }
        None => std::future::pending().await,
    }
}

impl Session {
    /// Prints events until a stop condition holds; returns the exit code.
    async fn run(&mut self, stop: &Stop) -> anyhow::Result<u8> {
        loop {
            let item = match self.sub.next_ready() {
                Some(item) => item,
                None => {
                    // Nothing more is pending: one write for the whole burst.
                    self.flush().await?;
                    tokio::select! {
                        biased;
                        item = self.sub.next() => item,
                        // `| head -1` has exited: end now, not at the next event.
                        _ = stdout_closed(&self.stdout_watch) => return Ok(exit::OK),
                    }
                }
            };
            let item = match item {
                Ok(item) => item,
                Err(e) => return Err(self.explain(e)),
            };
            match item {
                SubEvent::Event(received) => {
                    // The event's fields are read only when something needs them:
                    // `--format json` prints the hub's JSON as it came.
                    let event = if self.needs_fields {
                        match received.parse() {
                            Ok(e) => Some(e),
                            Err(e) => {
                                tracing::warn!("ignoring an event hub-sub cannot read: {e}");
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    self.print(received.json(), event.as_ref())?;
                    if let Some(code) = decide(stop, event.as_ref(), self.printed) {
                        return Ok(code);
                    }
                }
                SubEvent::Subscribed { last_id } => {
                    if self.reconnecting && !self.quiet {
                        eprintln!("hub-sub: reconnected to {}", self.sub.url());
                    }
                    self.reconnecting = false;
                    if !self.ready {
                        self.ready = true;
                        if let Some(path) = &self.ready_file {
                            std::fs::File::create(path).with_context(|| {
                                format!("creating --ready-file {}", path.display())
                            })?;
                        }
                    }
                    tracing::debug!("subscribed; the hub's newest id is {last_id}");
                }
                SubEvent::Live { .. } => {
                    if stop.drain {
                        return Ok(exit::OK);
                    }
                }
                SubEvent::Gap { from, to, reason } => {
                    if !self.quiet {
                        eprintln!(
                            "hub-sub: events {from}..{to} were lost before they could be printed ({reason})"
                        );
                    }
                }
                SubEvent::Reconnecting { cause, delay } => {
                    self.flush().await?;
                    if !self.quiet {
                        let after = self
                            .sub
                            .last_id()
                            .map(|id| format!(", resuming after event {id}"))
                            .unwrap_or_default();
                        eprintln!(
                            "hub-sub: {} ({cause}); reconnecting in {}{after}",
                            if self.reconnecting {
                                "hub still unreachable"
                            } else {
                                "connection to the hub lost"
                            },
                            seconds(delay)
                        );
                    }
                    self.reconnecting = true;
                }
            }
        }
    }

    /// Prints one event: `json` as received; `event` its fields, parsed when
    /// [`needs_fields`](Session::needs_fields).
    fn print(&mut self, json: &str, event: Option<&Event>) -> anyhow::Result<()> {
        match (&mut self.progress, event) {
            (Some(view), Some(event)) => view.update(event),
            (None, Some(event)) => {
                write_event(&mut self.out, self.format, event, json).context("writing to stdout")?
            }
            (_, None) => {
                debug_assert_eq!(self.format, Format::Json);
                self.out
                    .write_all(json.as_bytes())
                    .and_then(|_| self.out.write_all(b"\n"))
                    .context("writing to stdout")?
            }
        }
        self.printed += 1;
        Ok(())
    }

    /// Flushes stdout, then moves the durable cursor to what is now printed.
    async fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("writing to stdout")?;
        self.flushed_id = self.sub.last_id();
        if let Some(id) = self.flushed_id
            && self.saved_id != Some(id)
        {
            self.sub.save_cursor(id).await;
            self.saved_id = Some(id);
        }
        Ok(())
    }

    /// Adds what to do about a client error.
    fn explain(&self, e: ClientError) -> anyhow::Error {
        match &e {
            ClientError::Disconnected { .. } => anyhow::Error::from(e)
                .context("the connection dropped and --no-reconnect was given"),
            _ => e.into(),
        }
    }
}

/// The exit code if this event ends the run. `event` is `None` when no stop
/// condition needs its fields (see [`Stop::needs_fields`]).
fn decide(stop: &Stop, event: Option<&Event>, printed: u64) -> Option<u8> {
    if let Some(task) = &stop.wait_task
        && let Some(event) = event
        && &event.topic == task
    {
        match event.kind.as_str() {
            "task_completed" => return Some(exit::OK),
            "task_failed" => return Some(exit::FAILURE),
            _ => {}
        }
    }
    if let (Some(f), Some(event)) = (&stop.until, event)
        && f.matches(event)
    {
        return Some(exit::OK);
    }
    if stop.count.is_some_and(|n| printed >= n) {
        return Some(exit::OK);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::Parser;
    use serde_json::json;

    fn args(argv: &[&str]) -> SubArgs {
        SubArgs::try_parse_from(std::iter::once("hub-sub").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn cli_is_consistent() {
        SubArgs::command().debug_assert();
        assert!(SubArgs::try_parse_from(["hub-sub", "--since", "1", "--last", "2"]).is_err());
    }

    #[test]
    fn plans() {
        let (spec, _) = plan(&args(&["task:*", "-w", "data.a=1", "--last", "5"])).unwrap();
        assert_eq!(spec.start(), Start::Last(5));
        assert_eq!(spec.topics, vec!["task:*"]);
        let (spec, stop) = plan(&args(&["--wait-task", "ci:7"])).unwrap();
        assert_eq!(spec.start(), Start::Last(1));
        assert_eq!(spec.topics, vec!["ci:7"]);
        assert_eq!(spec.types.len(), 3);
        assert!(stop.wait_task.is_some());
        let (spec, _) = plan(&args(&["--all", "--durable", "nightly"])).unwrap();
        assert_eq!(spec.start(), Start::Since(0));
        assert_eq!(spec.durable.as_deref(), Some("nightly"));
        for bad in [
            vec!["--where", "nofield"],
            vec!["--type", "Bad"],
            vec!["--durable", "a b"],
            vec!["--until", "x"],
            vec!["--count", "0"],
            vec!["[unclosed"],
        ] {
            let e = plan(&args(&bad)).err().unwrap();
            assert_eq!(exit::code_for(&e), exit::USAGE, "{bad:?}: {e:#}");
        }
    }

    #[test]
    fn decisions() {
        let mut ev = Event {
            id: 1,
            ts: 0,
            topic: "ci:7".into(),
            kind: "task_failed".into(),
            source: None,
            key: None,
            data: json!({"status": "done"}),
        };
        let stop = Stop {
            count: Some(3),
            until: Some("data.status=done".parse().unwrap()),
            wait_task: Some("ci:7".into()),
            drain: false,
        };
        assert_eq!(decide(&stop, Some(&ev), 1), Some(exit::FAILURE));
        ev.kind = "task_completed".into();
        assert_eq!(decide(&stop, Some(&ev), 1), Some(exit::OK));
        ev.kind = "task_started".into();
        assert_eq!(
            decide(&stop, Some(&ev), 1),
            Some(exit::OK),
            "--until matched"
        );
        ev.data = json!({});
        assert_eq!(decide(&stop, Some(&ev), 1), None);
        assert_eq!(decide(&stop, Some(&ev), 3), Some(exit::OK));
    }
}
