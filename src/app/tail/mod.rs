//! The `hub-tail` loop: find the files (paths and globs), step their [`Follower`]s on
//! every wake-up, publish what they read, and save positions once the hub has
//! acknowledged them.
//!
//! # Flow control
//! At most [`MAX_INFLIGHT`] events are sent and not yet acknowledged. A line is sent
//! as soon as it is read; while the window is more than half full, new lines wait
//! and then go out together, so catching up on a large file moves many lines per
//! round trip while a quiet file adds no delay. When the hub is down nothing is
//! acknowledged, the window stays full and hub-tail stops reading: the file is the
//! buffer. The [`Publisher`] sends unacknowledged events again after a reconnect
//! under the same keys, so the hub stores each line once.
//!
//! # Saving positions
//! The state file holds, per path, the first byte not acknowledged. It is written
//! when a follower moves to a new file (before anything of that file is sent),
//! when everything in flight is acknowledged, at most every [`SAVE_EVERY`] while
//! catching up, and at exit. Because every event is keyed by file identity and
//! offset, a state older than the hub's log (a `kill -9` between an ack and a save)
//! only makes hub-tail send lines the hub then recognizes, never store twice.

use crate::cli::tail::TailArgs;
use crate::client::{ClientError, InFlight, Publisher, WINDOW};
use crate::event::NewEvent;
use crate::exit::{self, Exit};
use crate::follow::state::{StateFile, default_path};
use crate::follow::watch::{Watch, WatchMode};
use crate::follow::{Budget, DEFAULT_MAX_LINE, FileId, Follower, Item, Key, Lines, Start, Stepped};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

mod config;
mod glob;
mod stdin;

pub use config::*;
use glob::*;
use stdin::*;

/// Events sent and not yet acknowledged, at most. Kept at or below the publisher's
/// [`WINDOW`], so that sending never blocks while the hub is away; large, so that
/// catching up on a big file keeps many lines in each round trip.
pub const MAX_INFLIGHT: usize = 2048;

const _: () = assert!(MAX_INFLIGHT <= WINDOW);

/// New lines are read once the window is at most this full.
const LOW_WATER: usize = MAX_INFLIGHT / 2;

/// Bytes read per step, at most.
const STEP_BYTES: usize = 4 << 20;

/// While events are in flight, positions are saved at most this often.
pub const SAVE_EVERY: Duration = Duration::from_millis(200);

/// A backlog above this shows a progress bar (on a terminal).
const PROGRESS_MIN: u64 = 32 << 20;

/// How long an interrupted hub-tail waits for the hub to acknowledge what it sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Nothing acknowledged for this long while events are in flight: say the hub is away.
const STALL: Duration = Duration::from_secs(3);

/// How long a renamed file is still read by default (`--rotate-wait`).
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(5);

/// One event in flight and what its acknowledgement means.
struct Flight {
    follower: usize,
    uid: u64,
    end: u64,
}

/// Encodes and sends `batch` (emptied), in order.
async fn send_batch<T>(
    inflight: &mut InFlight<T>,
    publisher: &Publisher,
    batch: &mut Vec<(T, NewEvent)>,
) -> Result<(), ClientError> {
    let mut encoded = batch
        .drain(..)
        .map(|(what, ev)| Ok((what, publisher.encode(ev)?)))
        .collect::<Result<Vec<_>, ClientError>>()?;
    inflight.send(publisher, &mut encoded).await
}

/// Builds the events of one run.
struct Events<'a> {
    cfg: &'a Config,
}

/// `{"line": ..., "file": ...}`, or with `--json` the line's own object (plus
/// `file` when it has none). `"partial": true` on a piece of an over-long line.
fn line_data(json: bool, file: &str, bytes: &[u8], partial: bool) -> Value {
    if json
        && !partial
        && bytes.first() == Some(&b'{')
        && let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes)
    {
        m.entry("file")
            .or_insert_with(|| Value::String(file.to_string()));
        return Value::Object(m);
    }
    let mut m = Map::new();
    m.insert("file".into(), Value::String(file.to_string()));
    m.insert(
        "line".into(),
        Value::String(String::from_utf8_lossy(bytes).into_owned()),
    );
    if partial {
        m.insert("partial".into(), Value::Bool(true));
    }
    Value::Object(m)
}

/// What ended the wait in the main loop.
enum Wake {
    /// Outcomes came in.
    Ack,
    Watch,
    /// A rotated file's grace period ends.
    Timer,
    Stall,
    Stop,
}

/// Runs `hub-tail` until SIGINT/SIGTERM (or the end of stdin).
///
/// # Errors
/// [`Exit`] with the SPEC exit code.
pub async fn run(args: TailArgs) -> Result<(), Exit> {
    let cfg = args.config();
    cfg.validate()?;
    // hub-tail never gives up on an outage: the file is the buffer.
    let opts = args.hub.connect_options(None)?;
    let publisher = crate::client::Publisher::start(&opts)
        .map_err(|e| Exit::new(crate::exit::code_for_client(&e), e.to_string()))?;
    let token = crate::shutdown::on_signal();
    let result = follow_inputs(cfg, &publisher, token.cancelled_owned()).await;
    // Everything acknowledged is saved; do not wait long for the rest.
    let _ = tokio::time::timeout(Duration::from_secs(1), publisher.close()).await;
    result
}

/// Follows the configured inputs until `shutdown` resolves (or stdin ends).
///
/// # Errors
/// [`Exit`] with the SPEC code: 2 for bad input found at start, 3/4 when the
/// publisher gives up (the hub refused the connection), 1 for a state file that
/// cannot be written.
pub async fn follow_inputs(
    cfg: Config,
    publisher: &Publisher,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Exit> {
    cfg.validate()?;
    if cfg.inputs == [Input::Stdin] {
        return run_stdin(&cfg, publisher, shutdown).await;
    }
    let mut session = Session::new(&cfg, publisher)?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // 1. Read and send, when there is room.
        if session.stopping.is_none() && session.dirty && session.inflight.len() <= LOW_WATER {
            session.step().await?;
        }
        // 2. Save positions the hub has acknowledged; end once drained.
        session.save_acked()?;
        if session.drained() {
            return Ok(());
        }
        // 3. Wait for an ack, a wake-up or the end.
        match session.wait(&mut shutdown).await {
            Wake::Ack => session.on_ack()?,
            Wake::Watch => session.on_watch(),
            Wake::Timer => session.dirty = true,
            Wake::Stall => session.on_stall(),
            Wake::Stop => session.on_stop(),
        }
    }
}

/// One followed path: its follower, the path as its events name it, and how many
/// of its events are in flight.
struct Tracked {
    follower: Follower,
    file: String,
    in_flight: usize,
}

/// One hub-tail run over files: what is followed, what is in flight, and when
/// positions were last saved.
struct Session<'a> {
    cfg: &'a Config,
    publisher: &'a Publisher,
    state: StateFile,
    watch: Watch,
    globs: Vec<GlobInput>,
    /// Followed paths, in the order they were found; a [`Flight`] names its index.
    tracked: Vec<Tracked>,
    /// Every path looked at: followed, or skipped as a renamed file already read.
    known: HashSet<PathBuf>,
    /// The state file and its temporary file, never followed.
    excluded: HashSet<PathBuf>,
    /// Identities of every file followed in this run: a glob match that is one of
    /// them under a new name (app.log.1 after a rotation) was already read.
    /// (The follower that first read each.)
    seen: HashMap<FileId, Seen>,
    inflight: InFlight<Flight>,
    batch: Vec<(Flight, NewEvent)>,
    /// A step is due (new data, an ack, a wake-up).
    dirty: bool,
    stopping: Option<Instant>,
    last_save: Instant,
    unsaved: bool,
    progress: Progress,
    /// When the window last moved (an ack, or a send into an empty window).
    last_progress: tokio::time::Instant,
    stalled: bool,
}

impl<'a> Session<'a> {
    /// Loads the state file, watches the inputs and follows what exists now.
    fn new(cfg: &'a Config, publisher: &'a Publisher) -> Result<Session<'a>, Exit> {
        let state_path = cfg.state_path();
        let state = StateFile::load(&state_path).map_err(|e| Exit::usage(e.to_string()))?;
        if cfg.verbose {
            eprintln!("hub-tail: positions in {}", state_path.display());
        }
        let watch = Watch::new(cfg.mode, cfg.poll_interval);
        // A fallback to polling says so always (in `Watch`); asked-for polling with -v.
        if cfg.verbose
            && let WatchMode::Poll(every) = cfg.mode
        {
            eprintln!(
                "hub-tail: polling every {} (--poll)",
                humantime::format_duration(every)
            );
        }
        let globs: Vec<GlobInput> = cfg
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Glob(g) => GlobInput::new(g).ok(),
                _ => None,
            })
            .collect();
        let excluded: HashSet<PathBuf> = {
            let mut tmp = state_path.clone().into_os_string();
            tmp.push(".tmp");
            [state_path.clone(), PathBuf::from(tmp)].into()
        };
        let mut s = Session {
            cfg,
            publisher,
            state,
            watch,
            globs,
            tracked: Vec::new(),
            known: HashSet::new(),
            excluded,
            seen: HashMap::new(),
            inflight: InFlight::default(),
            batch: Vec::new(),
            dirty: true,
            stopping: None,
            last_save: Instant::now(),
            unsaved: false,
            progress: Progress::new(!cfg.quiet),
            last_progress: tokio::time::Instant::now(),
            stalled: false,
        };
        for input in &cfg.inputs {
            if let Input::Path(p) = input {
                s.add(p.clone(), cfg.start);
            }
        }
        for p in s.scan_globs() {
            if is_rotated_copy(&p, &s.state, &s.seen) {
                s.known.insert(p);
                continue;
            }
            s.add(p, cfg.start);
        }
        Ok(s)
    }

    /// Follows `path` from `start`, unless it is excluded or already known.
    fn add(&mut self, path: PathBuf, start: Start) {
        let cfg = self.cfg;
        if self.excluded.contains(&path) || !self.known.insert(path.clone()) {
            return;
        }
        if let Some(dir) = path.parent() {
            self.watch.watch_dir(dir);
        }
        let mut f = Follower::new(path.clone(), cfg.topic_for(&path), start, cfg.max_line);
        f.verbose = cfg.verbose;
        f.quiet = cfg.quiet;
        f.rotate_wait = cfg.rotate_wait;
        if cfg.verbose && start == Start::FromStart && !self.tracked.is_empty() {
            eprintln!("hub-tail: following new file {}", path.display());
        }
        self.tracked.push(Tracked {
            file: path.to_string_lossy().into_owned(),
            follower: f,
            in_flight: 0,
        });
    }

    /// The paths the globs match now, sorted.
    fn scan_globs(&mut self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for g in &self.globs {
            g.scan(&mut self.watch, &mut found);
        }
        found.sort();
        found
    }

    /// Steps every follower within the window's room and sends what they read.
    async fn step(&mut self) -> Result<(), Exit> {
        self.dirty = false;
        let mut budget = Budget {
            items: MAX_INFLIGHT - self.inflight.len(),
            bytes: STEP_BYTES,
        };
        let events = Events { cfg: self.cfg };
        let mut identity = false;
        for (i, t) in self.tracked.iter_mut().enumerate() {
            let f = &mut t.follower;
            let saved = if f.needs_saved() {
                self.state.get(&f.path).cloned()
            } else {
                None
            };
            let file = &t.file;
            let topic = f.topic.clone();
            let batch = &mut self.batch;
            let mut emit = |item: Item<'_>| {
                let (uid, end) = match item {
                    Item::Line { uid, end, .. } | Item::Rotated { uid, end, .. } => (uid, end),
                };
                let flight = Flight {
                    follower: i,
                    uid,
                    end,
                };
                batch.push((flight, events.item_for(&topic, file, &item)));
            };
            let seen = &self.seen;
            let elsewhere = |id: FileId, head: &[u8]| {
                seen.get(&id)
                    .is_some_and(|s| s.follower != i && s.matches(head))
            };
            let st: Stepped = f.step_with(
                saved.as_ref(),
                t.in_flight,
                &mut budget,
                &elsewhere,
                &mut emit,
            );
            if st.identity {
                identity = true;
                if let Some(fs) = f.file_state() {
                    self.state.set(&f.path, fs);
                }
            }
            self.dirty |= st.more;
        }
        for (i, t) in self.tracked.iter().enumerate() {
            if let Some((id, fp_len, fp)) = t.follower.current() {
                let e = self.seen.entry(id).or_insert(Seen {
                    follower: i,
                    fp_len,
                    fp,
                });
                if e.follower == i {
                    (e.fp_len, e.fp) = (fp_len, fp);
                }
            }
        }
        if identity {
            save(&mut self.state)?;
            self.last_save = Instant::now();
            self.unsaved = false;
        }
        self.progress
            .update(self.tracked.iter().map(|t| t.follower.backlog()).sum());
        if self.inflight.is_empty() && !self.batch.is_empty() {
            self.last_progress = tokio::time::Instant::now();
        }
        for (f, _) in &self.batch {
            self.tracked[f.follower].in_flight += 1;
        }
        send_batch(&mut self.inflight, self.publisher, &mut self.batch)
            .await
            .map_err(|e| fatal(&e))
    }

    /// Saves the acknowledged positions when everything in flight is acknowledged,
    /// or at most every [`SAVE_EVERY`].
    fn save_acked(&mut self) -> Result<(), Exit> {
        if self.unsaved && (self.inflight.is_empty() || self.last_save.elapsed() >= SAVE_EVERY) {
            for t in &self.tracked {
                if let Some(fs) = t.follower.file_state() {
                    self.state.set(&t.follower.path, fs);
                }
            }
            save(&mut self.state)?;
            self.last_save = Instant::now();
            self.unsaved = false;
        }
        Ok(())
    }

    /// True once stopping and everything is acknowledged, or [`DRAIN_LIMIT`] passed
    /// (then what is left is said).
    fn drained(&self) -> bool {
        let Some(since) = self.stopping else {
            return false;
        };
        if !self.inflight.is_empty() && since.elapsed() < DRAIN_LIMIT {
            return false;
        }
        if !self.inflight.is_empty() {
            eprintln!(
                "hub-tail: {} line(s) not acknowledged by the hub; they are sent again on the next start",
                self.inflight.len()
            );
        }
        true
    }

    /// Waits for an ack, a wake-up, a grace period's end, a stall or the end.
    async fn wait(
        &mut self,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Wake {
        let grace_end = if self.dirty || self.stopping.is_some() {
            None // a step is due anyway
        } else {
            self.tracked
                .iter()
                .filter_map(|t| t.follower.wake_at())
                .min()
        };
        let stopping = self.stopping.is_some();
        let in_flight = !self.inflight.is_empty();
        tokio::select! {
            _ = self.inflight.answered() => Wake::Ack,
            _ = self.watch.wait(), if !stopping => Wake::Watch,
            _ = sleep_until_std(grace_end), if grace_end.is_some() => Wake::Timer,
            _ = tokio::time::sleep_until(self.last_progress + STALL), if in_flight && !self.stalled => Wake::Stall,
            _ = shutdown, if !stopping => Wake::Stop,
            _ = tokio::time::sleep(DRAIN_LIMIT), if stopping => Wake::Stop,
        }
    }

    /// Outcomes came in: hand them to their followers.
    fn on_ack(&mut self) -> Result<(), Exit> {
        self.last_progress = tokio::time::Instant::now();
        if self.stalled {
            self.stalled = false;
            if !self.cfg.quiet {
                eprintln!(
                    "hub-tail: the hub at {} is back; reading again",
                    self.publisher.url()
                );
            }
        }
        while let Some((flight, result)) = self.inflight.pop_answered() {
            let t = &mut self.tracked[flight.follower];
            match result {
                Ok(_) => {}
                Err(e) if self.publisher.has_failed() || matches!(e, ClientError::Closed) => {
                    return Err(fatal(&e));
                }
                Err(e) => eprintln!(
                    "hub-tail: the hub refused a line of {} (before offset {}): {e}; skipping it",
                    t.file, flight.end
                ),
            }
            t.follower.acked(flight.uid, flight.end);
            t.in_flight -= 1;
            self.unsaved = true;
        }
        self.dirty = true;
        Ok(())
    }

    /// A directory changed: follow the globs' new matches from their start.
    fn on_watch(&mut self) {
        self.dirty = true;
        for p in self.scan_globs() {
            if self.known.contains(&p) {
                continue;
            }
            if is_rotated_copy(&p, &self.state, &self.seen) {
                if self.cfg.verbose {
                    eprintln!(
                        "hub-tail: not following {}: it is a file already followed, renamed",
                        p.display()
                    );
                }
                self.known.insert(p);
                continue;
            }
            self.add(p, Start::FromStart);
        }
    }

    /// Nothing was acknowledged for [`STALL`]: say that reading is paused.
    fn on_stall(&mut self) {
        self.stalled = true;
        if !self.cfg.quiet {
            eprintln!(
                "hub-tail: the hub at {} has acknowledged nothing for {}s; reading is paused until it is back (the files are the buffer)",
                self.publisher.url(),
                STALL.as_secs()
            );
        }
    }

    /// SIGINT/SIGTERM (or the drain's limit): stop reading, drain what is in flight.
    fn on_stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            self.progress.update(0);
        }
    }
}

impl Events<'_> {
    fn item_for(&self, topic: &str, file: &str, item: &Item<'_>) -> NewEvent {
        let (kind, key, data) = match *item {
            Item::Line {
                key_prefix,
                start,
                bytes,
                partial,
                ..
            } => {
                let data = line_data(self.cfg.json, file, bytes, partial);
                (self.cfg.kind.clone(), format!("{key_prefix}{start}"), data)
            }
            Item::Rotated {
                key_prefix,
                end,
                reason,
                ..
            } => {
                let mut m = Map::new();
                m.insert("file".into(), Value::String(file.to_string()));
                m.insert("reason".into(), Value::String(reason.as_str().into()));
                m.insert("offset".into(), Value::from(end));
                (
                    "rotated".to_string(),
                    format!("{key_prefix}{end}:rotated"),
                    Value::Object(m),
                )
            }
        };
        NewEvent {
            topic: topic.to_string(),
            kind: Some(kind),
            source: self.cfg.source.clone(),
            key: Some(key),
            data,
            id: None,
            ts: None,
        }
    }
}

/// A file some follower of this run has read: which one, and its fingerprint.
struct Seen {
    follower: usize,
    fp_len: usize,
    fp: u32,
}

impl Seen {
    /// Whether `head` (a file's first bytes) starts like the file seen. An empty
    /// fingerprint matches nothing: a reused inode must not hide a new file.
    fn matches(&self, head: &[u8]) -> bool {
        self.fp_len > 0
            && head.len() >= self.fp_len
            && crc32fast::hash(&head[..self.fp_len]) == self.fp
    }
}

/// Whether `path` (a glob match) is a file this run already follows or followed
/// under another name, or the file another path's saved position belongs to: a
/// rotated copy, whose lines were (or will be) read through its first name.
fn is_rotated_copy(path: &Path, state: &StateFile, seen: &HashMap<FileId, Seen>) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let id = FileId::of(&meta);
    if let Some(s) = seen.get(&id) {
        return crate::follow::head_of(path).is_ok_and(|h| s.matches(&h));
    }
    if state.get(path).is_some() {
        return false;
    }
    state.state.files.iter().any(|(other, s)| {
        other != path
            && std::iter::once(s)
                .chain(&s.rotated)
                .any(|s| s.dev == id.dev && s.ino == id.ino && crate::follow::same_file(path, s))
    })
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until_std(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn save(state: &mut StateFile) -> Result<(), Exit> {
    state
        .save()
        .map(|_| ())
        .map_err(|e| Exit::new(exit::FAILURE, e.to_string()))
}

/// The exit for a publisher that gave up.
fn fatal(e: &ClientError) -> Exit {
    Exit::new(exit::code_for_client(e), e.to_string())
}

/// The catch-up progress bar: shown on a terminal when the backlog is large.
struct Progress {
    enabled: bool,
    bar: Option<(indicatif::ProgressBar, u64)>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn update(&mut self, backlog: u64) {
        if !self.enabled {
            return;
        }
        match &mut self.bar {
            None if backlog >= PROGRESS_MIN => {
                let bar = indicatif::ProgressBar::new(backlog);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "hub-tail: catching up {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                    )
                    .expect("a valid template"),
                );
                self.bar = Some((bar, backlog));
            }
            Some((bar, total)) => {
                if backlog == 0 {
                    bar.finish_and_clear();
                    self.bar = None;
                } else {
                    if backlog > *total {
                        *total = backlog;
                        bar.set_length(backlog);
                    }
                    bar.set_position(*total - backlog);
                }
            }
            None => {}
        }
    }
}
