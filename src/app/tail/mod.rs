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
/// Directory entries a glob looks at per scan, at most.
const MAX_GLOB_ENTRIES: usize = 100_000;

/// One thing to follow, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Glob(String),
    Stdin,
}

impl Input {
    /// `-` is stdin; an argument with `*`, `?`, `[` or `{` is a glob; anything else a
    /// path. Relative paths and globs are made absolute.
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            return Input::Stdin;
        }
        let abs = absolute(Path::new(arg));
        if arg.contains(['*', '?', '[', '{']) {
            Input::Glob(abs.to_string_lossy().into_owned())
        } else {
            Input::Path(abs)
        }
    }
}

/// Everything `hub-tail` needs besides the connection.
#[derive(Debug, Clone)]
pub struct Config {
    pub inputs: Vec<Input>,
    /// `--topic`; else `log:<file stem>` (`log:stdin`).
    pub topic: Option<String>,
    /// `--type`.
    pub kind: String,
    /// `--json`: JSON object lines become the data.
    pub json: bool,
    pub start: Start,
    pub mode: WatchMode,
    pub poll_interval: Duration,
    /// `--rotate-wait`: how long a renamed file is still read.
    pub rotate_wait: Duration,
    /// `--state`; `None`: the default path for these inputs.
    pub state: Option<PathBuf>,
    pub max_line: usize,
    pub source: Option<String>,
    pub verbose: bool,
    pub quiet: bool,
}

impl Config {
    pub fn new(inputs: Vec<Input>) -> Config {
        Config {
            inputs,
            topic: None,
            kind: "log".into(),
            json: false,
            start: Start::End,
            mode: WatchMode::Native,
            poll_interval: Duration::from_secs(1),
            rotate_wait: DEFAULT_ROTATE_WAIT,
            state: None,
            max_line: DEFAULT_MAX_LINE,
            source: None,
            verbose: false,
            quiet: false,
        }
    }

    /// Checks what can be checked before starting.
    ///
    /// # Errors
    /// [`Exit`] with code 2: no input, `-` mixed with files, an invalid topic or
    /// type, a named path that is a directory, a glob that does not parse.
    pub fn validate(&self) -> Result<(), Exit> {
        if self.inputs.is_empty() {
            return Err(Exit::usage(
                "nothing to follow: give files, quoted globs or -",
            ));
        }
        if self.inputs.contains(&Input::Stdin) && self.inputs.len() > 1 {
            return Err(Exit::usage(
                "- (stdin) cannot be mixed with files; run one hub-tail for each",
            ));
        }
        if let Some(t) = &self.topic {
            crate::event::validate_topic(t).map_err(|e| Exit::usage(e.to_string()))?;
        }
        crate::event::validate_type(&self.kind).map_err(|e| Exit::usage(e.to_string()))?;
        for input in &self.inputs {
            match input {
                Input::Path(p) if p.is_dir() => {
                    return Err(Exit::usage(format!(
                        "{} is a directory: give files or a quoted glob such as '{}/*.log'",
                        p.display(),
                        p.display()
                    )));
                }
                Input::Glob(g) => {
                    GlobInput::new(g)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn topic_for(&self, path: &Path) -> String {
        if let Some(t) = &self.topic {
            return t.clone();
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        topic_from_stem(&stem)
    }

    /// The state file used for these inputs.
    pub fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| {
            let keys: Vec<PathBuf> = self
                .inputs
                .iter()
                .map(|i| match i {
                    Input::Path(p) => p.clone(),
                    Input::Glob(g) => PathBuf::from(g),
                    Input::Stdin => PathBuf::from("-"),
                })
                .collect();
            default_path(&keys)
        })
    }
}

/// `log:<stem>` with characters a topic cannot hold replaced by `_`.
pub fn topic_from_stem(stem: &str) -> String {
    let mut t = String::from("log:");
    for ch in stem.chars() {
        t.push(if ch.is_ascii_alphanumeric() || "_-.:/@".contains(ch) {
            ch
        } else {
            '_'
        });
    }
    if t.len() == 4 {
        t.push_str("file");
    }
    t.truncate(crate::event::MAX_TOPIC_LEN);
    t
}

fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Drop `.` and resolve `..` lexically, so the same file has one name.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// A glob and the directory it is rooted in.
#[derive(Debug)]
struct GlobInput {
    base: PathBuf,
    matcher: globset::GlobMatcher,
    /// Directory levels below `base` to look at (`None`: any, for `**`).
    depth: Option<usize>,
}

impl GlobInput {
    fn new(pattern: &str) -> Result<GlobInput, Exit> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Exit::usage(format!("invalid glob {pattern:?}: {e}")))?;
        let mut base = PathBuf::new();
        let mut rest = 0;
        let mut deep = false;
        for c in Path::new(pattern).components() {
            let s = c.as_os_str().to_string_lossy();
            if rest == 0 && !s.contains(['*', '?', '[', '{']) {
                base.push(c);
            } else {
                rest += 1;
                deep |= s.contains("**");
            }
        }
        Ok(GlobInput {
            base,
            matcher: glob.compile_matcher(),
            depth: if deep { None } else { Some(rest) },
        })
    }

    /// Files matching now; every directory visited is watched.
    fn scan(&self, watch: &mut Watch, found: &mut Vec<PathBuf>) {
        let mut budget = MAX_GLOB_ENTRIES;
        let mut stack = vec![(self.base.clone(), 1usize)];
        while let Some((dir, level)) = stack.pop() {
            watch.watch_dir(&dir);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                let p = entry.path();
                let Ok(meta) = std::fs::metadata(&p) else {
                    continue;
                };
                if meta.is_dir() {
                    if self.depth.is_none_or(|d| level < d) {
                        stack.push((p, level + 1));
                    }
                } else if self.matcher.is_match(&p) {
                    found.push(p);
                }
            }
        }
    }
}

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
    let state_path = cfg.state_path();
    let mut state = StateFile::load(&state_path).map_err(|e| Exit::usage(e.to_string()))?;
    if cfg.verbose {
        eprintln!("hub-tail: positions in {}", state_path.display());
    }
    let mut watch = Watch::new(cfg.mode, cfg.poll_interval);
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
    let mut followers: Vec<Follower> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let mut known: HashSet<PathBuf> = HashSet::new();
    let excluded: HashSet<PathBuf> = {
        let mut tmp = state_path.clone().into_os_string();
        tmp.push(".tmp");
        [state_path.clone(), PathBuf::from(tmp)].into()
    };
    // Identities of every file followed in this run: a glob match that is one of
    // them under a new name (app.log.1 after a rotation) was already read.
    // (The follower that first read each.)
    let mut seen: HashMap<FileId, Seen> = HashMap::new();
    let add = |path: PathBuf,
               start: Start,
               watch: &mut Watch,
               followers: &mut Vec<Follower>,
               files: &mut Vec<String>,
               known: &mut HashSet<PathBuf>| {
        if excluded.contains(&path) || !known.insert(path.clone()) {
            return;
        }
        if let Some(dir) = path.parent() {
            watch.watch_dir(dir);
        }
        let mut f = Follower::new(path.clone(), cfg.topic_for(&path), start, cfg.max_line);
        f.verbose = cfg.verbose;
        f.quiet = cfg.quiet;
        f.rotate_wait = cfg.rotate_wait;
        if cfg.verbose && start == Start::FromStart && !followers.is_empty() {
            eprintln!("hub-tail: following new file {}", path.display());
        }
        files.push(path.to_string_lossy().into_owned());
        followers.push(f);
    };
    for input in &cfg.inputs {
        if let Input::Path(p) = input {
            add(
                p.clone(),
                cfg.start,
                &mut watch,
                &mut followers,
                &mut files,
                &mut known,
            );
        }
    }
    let mut found = Vec::new();
    for g in &globs {
        g.scan(&mut watch, &mut found);
    }
    found.sort();
    for p in found.drain(..) {
        if is_rotated_copy(&p, &state, &seen) {
            known.insert(p);
            continue;
        }
        add(
            p,
            cfg.start,
            &mut watch,
            &mut followers,
            &mut files,
            &mut known,
        );
    }

    let events = Events { cfg: &cfg };
    let mut inflight: InFlight<Flight> = InFlight::default();
    let mut per_follower: Vec<usize> = vec![0; followers.len()];
    let mut dirty = true;
    let mut stopping: Option<Instant> = None;
    let mut last_save = Instant::now();
    let mut unsaved = false;
    let mut progress = Progress::new(!cfg.quiet);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut batch: Vec<(Flight, NewEvent)> = Vec::new();
    // When the window last moved (an ack, or a send into an empty window).
    let mut last_progress = tokio::time::Instant::now();
    let mut stalled = false;
    loop {
        // 1. Read and send, when there is room.
        if stopping.is_none() && dirty && inflight.len() <= LOW_WATER {
            dirty = false;
            per_follower.resize(followers.len(), 0);
            let mut budget = Budget {
                items: MAX_INFLIGHT - inflight.len(),
                bytes: STEP_BYTES,
            };
            let mut identity = false;
            for (i, f) in followers.iter_mut().enumerate() {
                let saved = if f.needs_saved() {
                    state.get(&f.path).cloned()
                } else {
                    None
                };
                let file = &files[i];
                let topic = f.topic.clone();
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
                let elsewhere = |id: FileId, head: &[u8]| {
                    seen.get(&id)
                        .is_some_and(|s| s.follower != i && s.matches(head))
                };
                let st: Stepped = f.step_with(
                    saved.as_ref(),
                    per_follower[i],
                    &mut budget,
                    &elsewhere,
                    &mut emit,
                );
                if st.identity {
                    identity = true;
                    if let Some(fs) = f.file_state() {
                        state.set(&f.path, fs);
                    }
                }
                dirty |= st.more;
            }
            for (i, f) in followers.iter().enumerate() {
                if let Some((id, fp_len, fp)) = f.current() {
                    let e = seen.entry(id).or_insert(Seen {
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
                save(&mut state)?;
                last_save = Instant::now();
                unsaved = false;
            }
            progress.update(followers.iter().map(Follower::backlog).sum());
            if inflight.is_empty() && !batch.is_empty() {
                last_progress = tokio::time::Instant::now();
            }
            for (f, _) in &batch {
                per_follower[f.follower] += 1;
            }
            if let Err(e) = send_batch(&mut inflight, publisher, &mut batch).await {
                return Err(fatal(&e, publisher));
            }
        }

        // 2. Save positions the hub has acknowledged.
        if unsaved && (inflight.is_empty() || last_save.elapsed() >= SAVE_EVERY) {
            for f in &followers {
                if let Some(fs) = f.file_state() {
                    state.set(&f.path, fs);
                }
            }
            save(&mut state)?;
            last_save = Instant::now();
            unsaved = false;
        }
        if let Some(since) = stopping
            && (inflight.is_empty() || since.elapsed() >= DRAIN_LIMIT)
        {
            if !inflight.is_empty() {
                eprintln!(
                    "hub-tail: {} line(s) not acknowledged by the hub; they are sent again on the next start",
                    inflight.len()
                );
            }
            return Ok(());
        }

        // 3. Wait for an ack, a wake-up or the end.
        let grace_end = if dirty || stopping.is_some() {
            None // a step is due anyway
        } else {
            followers.iter().filter_map(Follower::wake_at).min()
        };
        let wake = tokio::select! {
            _ = inflight.answered() => Wake::Ack,
            _ = watch.wait(), if stopping.is_none() => Wake::Watch,
            _ = sleep_until_std(grace_end), if grace_end.is_some() => Wake::Timer,
            _ = tokio::time::sleep_until(last_progress + STALL), if !inflight.is_empty() && !stalled => Wake::Stall,
            _ = &mut shutdown, if stopping.is_none() => Wake::Stop,
            _ = tokio::time::sleep(DRAIN_LIMIT), if stopping.is_some() => Wake::Stop,
        };
        match wake {
            Wake::Ack => {
                last_progress = tokio::time::Instant::now();
                if stalled {
                    stalled = false;
                    if !cfg.quiet {
                        eprintln!(
                            "hub-tail: the hub at {} is back; reading again",
                            publisher.url()
                        );
                    }
                }
                while let Some((flight, result)) = inflight.pop_answered() {
                    match result {
                        Ok(_) => {}
                        Err(e) if publisher.has_failed() || matches!(e, ClientError::Closed) => {
                            return Err(fatal(&e, publisher));
                        }
                        Err(e) => eprintln!(
                            "hub-tail: the hub refused a line of {} (before offset {}): {e}; skipping it",
                            files[flight.follower], flight.end
                        ),
                    }
                    followers[flight.follower].acked(flight.uid, flight.end);
                    per_follower[flight.follower] -= 1;
                    unsaved = true;
                }
                dirty = true;
            }
            Wake::Watch => {
                dirty = true;
                for g in &globs {
                    g.scan(&mut watch, &mut found);
                }
                found.sort();
                for p in found.drain(..) {
                    if known.contains(&p) {
                        continue;
                    }
                    if is_rotated_copy(&p, &state, &seen) {
                        if cfg.verbose {
                            eprintln!(
                                "hub-tail: not following {}: it is a file already followed, renamed",
                                p.display()
                            );
                        }
                        known.insert(p);
                        continue;
                    }
                    add(
                        p,
                        Start::FromStart,
                        &mut watch,
                        &mut followers,
                        &mut files,
                        &mut known,
                    );
                }
            }
            Wake::Timer => dirty = true,
            Wake::Stall => {
                stalled = true;
                if !cfg.quiet {
                    eprintln!(
                        "hub-tail: the hub at {} has acknowledged nothing for {}s; reading is paused until it is back (the files are the buffer)",
                        publisher.url(),
                        STALL.as_secs()
                    );
                }
            }
            Wake::Stop => {
                if stopping.is_none() {
                    stopping = Some(Instant::now());
                    progress.update(0);
                }
            }
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
fn fatal(e: &ClientError, publisher: &Publisher) -> Exit {
    let _ = publisher;
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

/// `hub-tail -`: stdin to events, until end of input. Keys are
/// `stdin:RANDOM:OFFSET`, so a resend after a reconnect is stored once.
async fn run_stdin(
    cfg: &Config,
    publisher: &Publisher,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Exit> {
    let topic = cfg.topic.clone().unwrap_or_else(|| "log:stdin".into());
    let key_prefix = format!("stdin:{:016x}:", fastrand::u64(..));
    let events = Events { cfg };
    let mut stdin = crate::stdin::ThreadStdin::spawn()
        .map_err(|e| Exit::new(exit::FAILURE, format!("cannot read stdin: {e}")))?;
    let mut lines = Lines::new(0);
    let mut inflight: InFlight<()> = InFlight::default();
    let mut eof = false;
    let mut flushed = false;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut batch: Vec<((), NewEvent)> = Vec::new();
    let mut chunk = vec![0u8; crate::follow::READ_CHUNK];
    let key = Key {
        prefix: &key_prefix,
        uid: 0,
    };
    loop {
        // Lines out, within the window.
        if inflight.len() <= LOW_WATER {
            let mut budget = Budget {
                items: MAX_INFLIGHT - inflight.len(),
                bytes: usize::MAX,
            };
            let mut out = Stepped::default();
            let mut emit = |item: Item<'_>| batch.push(((), events.item_for(&topic, "-", &item)));
            if lines.unscanned() {
                lines.scan(key, cfg.max_line, &mut budget, &mut emit, &mut out);
            }
            if eof && !flushed && !lines.unscanned() && budget.items > 0 {
                lines.flush(key, &mut budget, &mut emit, &mut out);
                flushed = true;
            }
            if let Err(e) = send_batch(&mut inflight, publisher, &mut batch).await {
                return Err(fatal(&e, publisher));
            }
        }
        if flushed && inflight.is_empty() {
            return Ok(());
        }
        enum W {
            Ack,
            Read(std::io::Result<usize>),
            Stop,
        }
        let can_read = !eof && !lines.unscanned() && inflight.len() <= LOW_WATER;
        let w = tokio::select! {
            _ = inflight.answered() => W::Ack,
            r = stdin.read(&mut chunk), if can_read => W::Read(r),
            _ = &mut shutdown => W::Stop,
        };
        match w {
            W::Ack => {
                while let Some(((), result)) = inflight.pop_answered() {
                    if let Err(e) = result {
                        if publisher.has_failed() || matches!(e, ClientError::Closed) {
                            return Err(fatal(&e, publisher));
                        }
                        eprintln!("hub-tail: the hub refused a line of stdin: {e}; skipping it");
                    }
                }
            }
            W::Read(Ok(0)) => eof = true,
            W::Read(Ok(n)) => lines.buf.extend_from_slice(&chunk[..n]),
            W::Read(Err(e)) => {
                eprintln!("hub-tail: reading stdin: {e}");
                eof = true;
            }
            W::Stop => {
                // Wait briefly for what is in flight; the rest of stdin is not read.
                let wait = async {
                    while !inflight.is_empty() {
                        inflight.answered().await;
                        while inflight.pop_answered().is_some() {}
                    }
                };
                let _ = tokio::time::timeout(DRAIN_LIMIT, wait).await;
                return Ok(());
            }
        }
    }
}

/// Files named on the command line, for messages.
pub fn describe_inputs(inputs: &[Input]) -> String {
    let mut v: Vec<String> = inputs
        .iter()
        .map(|i| match i {
            Input::Path(p) => p.display().to_string(),
            Input::Glob(g) => g.clone(),
            Input::Stdin => "-".into(),
        })
        .collect();
    v.dedup();
    v.join(", ")
}
