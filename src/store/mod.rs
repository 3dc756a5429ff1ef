//! The durable event log: append-only segments under the data dir (or in memory with
//! `--memory`), id assignment, idempotency keys, retention and reads by id.
//!
//! The broker's writer task is the only appender; any task may read. Ids are
//! assigned here, consecutively, so a gap in what a reader sees can only come from
//! retention (which [`Log::read_after`] reports).
//!
//! Durability: [`Log::append`] returns once the records are written to the file (and
//! fsynced with [`FsyncMode::Always`]); only then does [`Log::committed`] move, so no
//! reader ever sees an event that could still vanish in a crash of the process.

mod dedup;
pub mod segment;

use crate::event::{EventError, Fields, Prepared, StoredEvent};
use dedup::Dedup;
use segment::{FLAG_TASK, Segment, SegmentRef, encode_record, parse_segment_name};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use dedup::DEDUP_KEYS;

/// When written data reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncMode {
    /// fsync before every acknowledgement (batched: one fsync per group commit).
    Always,
    /// fsync written data at least every 100 ms.
    Batch,
    /// Never fsync; the OS writes back when it likes.
    Never,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data dir {0} is in use by another hub-serve (lock held on its LOCK file); stop it or choose another --data-dir"
    )]
    Locked(PathBuf),
}

/// How the log is kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `None`: in memory only.
    pub dir: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub retain_events: u64,
    pub retain_bytes: u64,
    pub retain_age: Option<Duration>,
    /// Recent events kept decoded in memory for fast catch-up.
    pub cache_events: usize,
}

impl LogConfig {
    /// A segment is sealed at this size, so retention can trim in steps of about
    /// an eighth of what it keeps.
    fn segment_bytes(&self) -> u64 {
        (self.retain_bytes / 8).clamp(4096, 64 << 20)
    }

    fn segment_events(&self) -> u64 {
        (self.retain_events / 8).max(8)
    }
}

/// The result of appending one event.
#[derive(Debug, Clone)]
pub enum Appended {
    /// Stored under this new id.
    New(u64),
    /// Its key was already stored: this is the original id.
    Duplicate(u64),
    /// Not stored.
    Refused(EventError),
}

/// What [`Log::append`] did with a batch.
#[derive(Debug)]
pub struct Written {
    /// One outcome per event given, in order.
    pub outcomes: Vec<Appended>,
    /// The events stored, in id order (one per `New` outcome). Handed over rather
    /// than cloned out of `outcomes`: each clone or drop of an `Arc` is a locked
    /// instruction, and these are the writer's hottest loop.
    pub stored: Vec<Arc<StoredEvent>>,
}

/// What reading found.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub events: Vec<Arc<StoredEvent>>,
    /// Ids after the asked position that retention removed (inclusive range).
    pub gap: Option<(u64, u64)>,
    /// Position to ask from next (the last id looked at).
    pub next_after: u64,
}

/// What opening the log found, for the broker to rebuild its state from.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every stored task lifecycle event, oldest first.
    pub task_events: Vec<StoredEvent>,
    /// Bytes of torn or corrupt tail dropped.
    pub dropped_bytes: u64,
    pub segments: usize,
}

/// Counters for `/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub events: u64,
    pub bytes: u64,
    pub first_id: u64,
    pub last_id: u64,
}

/// The log. Share it behind an `Arc`.
pub struct Log {
    inner: Mutex<Inner>,
    committed: AtomicU64,
    cfg: LogConfig,
}

struct Inner {
    segments: VecDeque<SegmentRef>,
    next_id: u64,
    cache: VecDeque<Arc<StoredEvent>>,
    dedup: Dedup,
    total_events: u64,
    total_bytes: u64,
    dirty: bool,
    /// Keeps the data dir's lock for the life of the log.
    _lock: Option<File>,
    buf: Vec<u8>,
}

fn is_task_type(kind: &str) -> bool {
    matches!(
        kind,
        "task_started" | "progress" | "task_completed" | "task_failed"
    )
}

impl Log {
    /// Opens (or creates) the log, validating every segment and dropping a torn tail.
    ///
    /// # Errors
    /// The data dir cannot be created, locked or read.
    pub fn open(cfg: LogConfig) -> Result<(Log, Recovery), StoreError> {
        let mut rec = Recovery::default();
        let mut segments = VecDeque::new();
        let mut lock = None;
        let mut keys: VecDeque<(Box<str>, u64)> = VecDeque::new();
        if let Some(dir) = &cfg.dir {
            let io = |source| StoreError::Io {
                dir: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            let lock_file = File::create(dir.join("LOCK")).map_err(io)?;
            if lock_file.try_lock().is_err() {
                return Err(StoreError::Locked(dir.clone()));
            }
            lock = Some(lock_file);
            let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let id = parse_segment_name(e.file_name().to_str()?)?;
                    Some((id, e.path()))
                })
                .collect();
            found.sort();
            for (first_id, path) in found {
                let scan = Segment::open(&path, first_id.max(1), |r| {
                    if !r.key.is_empty()
                        && let Ok(k) = std::str::from_utf8(r.key)
                    {
                        keys.push_back((k.into(), r.id));
                        if keys.len() > DEDUP_KEYS {
                            keys.pop_front();
                        }
                    }
                    if r.flags & FLAG_TASK != 0
                        && let Ok(json) = std::str::from_utf8(r.json)
                        && let Ok(ev) = StoredEvent::decode(json)
                    {
                        rec.task_events.push(ev);
                    }
                })
                .map_err(io)?;
                rec.dropped_bytes += scan.dropped_bytes;
                segments.push_back(Arc::new(scan.segment));
            }
            if segments.is_empty() {
                segments.push_back(Arc::new(Segment::create(dir, 1).map_err(io)?));
            }
        } else {
            segments.push_back(Arc::new(Segment::memory(1)));
        }
        rec.segments = segments.len();
        let mut dedup = Dedup::new();
        for (k, id) in keys {
            dedup.insert(dedup.hash(&k), id);
        }
        let (mut total_events, mut total_bytes) = (0, 0);
        for s in &segments {
            let m = s.meta();
            total_events += m.count;
            total_bytes += m.bytes;
        }
        let last = segments.back().unwrap().meta().last_id;
        let log = Log {
            inner: Mutex::new(Inner {
                segments,
                next_id: last + 1,
                cache: VecDeque::new(),
                dedup,
                total_events,
                total_bytes,
                dirty: false,
                _lock: lock,
                buf: Vec::new(),
            }),
            committed: AtomicU64::new(last),
            cfg,
        };
        Ok((log, rec))
    }

    /// The id of the newest event readers may see.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// Stores a batch as one write (one fsync with [`FsyncMode::Always`]). Events
    /// whose key is known are not stored again; events over `max_event_bytes`
    /// encoded are refused; the others get consecutive ids.
    ///
    /// # Errors
    /// Writing failed; nothing of the batch is visible to readers then.
    pub fn append(
        &self,
        batch: Vec<Prepared>,
        ts: u64,
        max_event_bytes: usize,
    ) -> Result<Written, std::io::Error> {
        /// What becomes of one input event.
        enum Slot {
            /// Its key is in the log already, under this id.
            Stored(u64),
            /// Repeats the key of the event at this index of the batch.
            SameKey(usize),
            /// New, with its key's hash if it has a key.
            New(Option<[u64; 2]>),
        }
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        let hashes: Vec<[u64; 2]> = batch
            .iter()
            .filter_map(|new| Some(inner.dedup.hash(new.key()?)))
            .collect();
        let known = inner.dedup.get_many(&hashes);
        let slots: Vec<Slot> = {
            // Key hash → index of its first event in this batch (only needed when
            // the batch has several events).
            let mut first: HashMap<[u64; 2], usize, foldhash::fast::RandomState> =
                HashMap::with_capacity_and_hasher(
                    if batch.len() > 1 { hashes.len() } else { 0 },
                    Default::default(),
                );
            let mut keyed = hashes.iter().zip(known);
            batch
                .iter()
                .enumerate()
                .map(|(i, new)| {
                    if new.key().is_none() {
                        return Slot::New(None);
                    }
                    let (&h, known) = keyed.next().expect("one hash per key");
                    match known {
                        Some(id) => Slot::Stored(id),
                        None if batch.len() == 1 => Slot::New(Some(h)),
                        None => match first.entry(h) {
                            std::collections::hash_map::Entry::Occupied(e) => {
                                Slot::SameKey(*e.get())
                            }
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(i);
                                Slot::New(Some(h))
                            }
                        },
                    }
                })
                .collect()
        };
        let mut buf = std::mem::take(&mut inner.buf);
        buf.clear();
        let mut recs: Vec<(u64, u64, u32)> = Vec::with_capacity(slots.len());
        let mut stored: Vec<Arc<StoredEvent>> = Vec::with_capacity(slots.len());
        // Hashes of the keys stored, with their ids: remembered once the batch is written.
        let mut keyed: Vec<([u64; 2], u64)> = Vec::with_capacity(slots.len());
        let mut id = inner.next_id;
        let mut out: Vec<Appended> = Vec::with_capacity(slots.len());
        let ts_field = crate::event::TsField::new(&crate::event::format_ts(ts));
        for (inc, slot) in batch.into_iter().zip(slots) {
            let hash = match slot {
                Slot::Stored(id) => {
                    out.push(Appended::Duplicate(id));
                    continue;
                }
                Slot::SameKey(i) => {
                    // The first event with this key is earlier in `out`.
                    let a = match &out[i] {
                        &Appended::New(id) => Appended::Duplicate(id),
                        _ => Appended::Refused(EventError::Json(
                            "an event with the same key in this batch was refused".into(),
                        )),
                    };
                    out.push(a);
                    continue;
                }
                Slot::New(hash) => hash,
            };
            let s = StoredEvent::stamp(inc, id, ts, &ts_field);
            if s.json.len() > max_event_bytes {
                // A refused event gives its id back, so ids stay consecutive.
                out.push(Appended::Refused(EventError::TooLarge {
                    size: s.json.len(),
                    limit: max_event_bytes,
                }));
                continue;
            }
            let key = s.key().unwrap_or("");
            let flags = if is_task_type(s.kind()) { FLAG_TASK } else { 0 };
            let before = buf.len();
            encode_record(&mut buf, id, ts, flags, key.as_bytes(), s.json.as_bytes());
            recs.push((id, ts, (buf.len() - before) as u32));
            out.push(Appended::New(id));
            stored.push(Arc::new(s));
            if let Some(h) = hash {
                keyed.push((h, id));
            }
            id += 1;
        }
        if stored.is_empty() {
            inner.buf = buf;
            return Ok(Written {
                outcomes: out,
                stored,
            });
        }
        let active = inner.segments.back().unwrap().clone();
        active.append(&buf, &recs)?;
        if self.cfg.fsync == FsyncMode::Always {
            active.sync()?;
        } else {
            inner.dirty = true;
        }
        inner.buf = buf;
        inner.next_id = id;
        inner.total_events += recs.len() as u64;
        inner.total_bytes += recs.iter().map(|r| r.2 as u64).sum::<u64>();
        for (h, id) in keyed {
            inner.dedup.insert(h, id);
        }
        inner.cache.extend(stored.iter().cloned());
        while inner.cache.len() > self.cfg.cache_events {
            inner.cache.pop_front();
        }
        self.committed.store(id - 1, Ordering::Release);
        // Seal the active segment once it is full.
        let m = active.meta();
        if m.bytes >= self.cfg.segment_bytes() || m.count >= self.cfg.segment_events() {
            if self.cfg.fsync != FsyncMode::Never {
                active.sync()?;
            }
            let seg = match &self.cfg.dir {
                Some(dir) => Segment::create(dir, id)?,
                None => Segment::memory(id),
            };
            inner.segments.push_back(Arc::new(seg));
            if let Some(dir) = &self.cfg.dir
                && self.cfg.fsync != FsyncMode::Never
            {
                File::open(dir).and_then(|d| d.sync_all())?;
            }
            self.trim(inner, crate::event::now_millis());
        }
        Ok(Written {
            outcomes: out,
            stored,
        })
    }

    /// fsyncs the active segment if anything was written since the last sync.
    pub fn sync_if_dirty(&self) -> std::io::Result<()> {
        let seg = {
            let mut inner = self.inner.lock().unwrap();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            inner.segments.back().unwrap().clone()
        };
        seg.sync()
    }

    /// Applies `--retain-age` (the other limits are applied as segments fill).
    pub fn enforce_retention(&self, now_ms: u64) {
        let mut inner = self.inner.lock().unwrap();
        self.trim(&mut inner, now_ms);
    }

    /// Drops whole segments from the front while the rest still holds at least what
    /// the configuration asks to keep. The active segment is never dropped.
    fn trim(&self, inner: &mut Inner, now_ms: u64) {
        while inner.segments.len() > 1 {
            let m = inner.segments[0].meta();
            let over_count = inner.total_events - m.count >= self.cfg.retain_events;
            let over_bytes = inner.total_bytes - m.bytes >= self.cfg.retain_bytes;
            let too_old = self
                .cfg
                .retain_age
                .is_some_and(|age| m.max_ts + (age.as_millis() as u64) < now_ms);
            if !(over_count || over_bytes || too_old) {
                break;
            }
            let seg = inner.segments.pop_front().unwrap();
            inner.total_events -= m.count;
            inner.total_bytes -= m.bytes;
            if let Some(path) = &seg.path
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!("cannot remove trimmed segment {}: {e}", path.display());
            }
            let first = inner.segments[0].first_id;
            while inner.cache.front().is_some_and(|e| e.id() < first) {
                inner.cache.pop_front();
            }
        }
    }

    fn first_id_locked(inner: &Inner) -> u64 {
        inner
            .segments
            .iter()
            .find(|s| s.meta.read().unwrap().count > 0)
            .map(|s| s.first_id)
            .unwrap_or(inner.next_id)
    }

    /// Counters for `/status`.
    pub fn stats(&self) -> LogStats {
        let inner = self.inner.lock().unwrap();
        LogStats {
            events: inner.total_events,
            bytes: inner.total_bytes,
            first_id: Self::first_id_locked(&inner),
            last_id: self.committed(),
        }
    }

    /// Reads committed events with id > `after`, at most `max`.
    ///
    /// # Errors
    /// A segment could not be read.
    pub fn read_after(&self, after: u64, max: usize) -> std::io::Result<ReadBatch> {
        let upto = self.committed();
        let mut out = ReadBatch {
            next_after: after,
            ..Default::default()
        };
        if after >= upto || max == 0 {
            return Ok(out);
        }
        let mut after = after;
        let segments: Vec<SegmentRef> = {
            let inner = self.inner.lock().unwrap();
            let first = Self::first_id_locked(&inner);
            if after + 1 < first {
                out.gap = Some((after + 1, first - 1));
                after = first - 1;
                out.next_after = after;
            }
            if let Some(front) = inner.cache.front()
                && front.id() <= after + 1
            {
                let skip = (after + 1 - front.id()) as usize;
                out.events.extend(
                    inner
                        .cache
                        .iter()
                        .skip(skip)
                        .take_while(|e| e.id() <= upto)
                        .take(max)
                        .cloned(),
                );
                if let Some(l) = out.events.last() {
                    out.next_after = l.id();
                }
                return Ok(out);
            }
            inner
                .segments
                .iter()
                .filter(|s| s.meta.read().unwrap().last_id > after)
                .cloned()
                .collect()
        };
        for seg in segments {
            let want = max - out.events.len();
            if want == 0 {
                break;
            }
            let events = &mut out.events;
            if let Some(last) =
                seg.read_range(after, upto, want, 4 << 20, |e| events.push(Arc::new(e)))?
            {
                after = last;
                out.next_after = last;
            }
        }
        Ok(out)
    }
}

/// The directory the hub keeps its log in when none is given:
/// `$XDG_STATE_HOME/hub`, else `~/.local/state/hub`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Some(Path::new(&x).join("hub"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state/hub"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(dir: Option<&Path>) -> LogConfig {
        LogConfig {
            dir: dir.map(Path::to_path_buf),
            fsync: FsyncMode::Batch,
            retain_events: 1_000_000,
            retain_bytes: 1 << 30,
            retain_age: None,
            cache_events: 16,
        }
    }

    fn new(topic: &str, key: Option<&str>) -> Prepared {
        inc(topic, key).into()
    }

    fn inc(topic: &str, key: Option<&str>) -> crate::event::IncomingEvent {
        let mut e = crate::event::NewEvent::new(topic);
        e.key = key.map(str::to_string);
        e.data = json!({"k": key});
        e.into()
    }

    /// The outcomes as text, after checking that `stored` holds the new events.
    fn ids(w: &Written) -> Vec<String> {
        let new: Vec<u64> = w
            .outcomes
            .iter()
            .filter_map(|a| match a {
                Appended::New(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(w.stored.iter().map(|s| s.id()).collect::<Vec<_>>(), new);
        w.outcomes
            .iter()
            .map(|x| match x {
                Appended::New(id) => format!("new{id}"),
                Appended::Duplicate(id) => format!("dup{id}"),
                Appended::Refused(_) => "refused".into(),
            })
            .collect()
    }

    fn read_ids(log: &Log, after: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let b = log.read_after(after, 7).unwrap();
            if b.events.is_empty() {
                return out;
            }
            out.extend(b.events.iter().map(|e| e.id()));
            after = b.next_after;
        }
    }

    #[test]
    fn ids_keys_and_reads_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(cfg(Some(dir.path()))).unwrap();
            let r = log
                .append(
                    vec![
                        new("a", Some("x")),
                        new("a", Some("y")),
                        new("a", Some("x")),
                    ],
                    1,
                    65536,
                )
                .unwrap();
            assert_eq!(ids(&r), ["new1", "new2", "dup1"]);
            let r = log
                .append(vec![new("a", Some("y")), new("b", None)], 2, 65536)
                .unwrap();
            assert_eq!(ids(&r), ["dup2", "new3"]);
            for i in 0..100 {
                log.append(vec![new("c", Some(&format!("c{i}")))], 3, 65536)
                    .unwrap();
            }
            assert_eq!(log.committed(), 103);
            assert_eq!(read_ids(&log, 0), (1..=103).collect::<Vec<_>>());
            assert_eq!(read_ids(&log, 100), vec![101, 102, 103]);
        }
        let (log, _) = Log::open(cfg(Some(dir.path()))).unwrap();
        assert_eq!(log.committed(), 103);
        let r = log
            .append(vec![new("a", Some("c5")), new("z", Some("new"))], 4, 65536)
            .unwrap();
        assert_eq!(ids(&r), ["dup9", "new104"]);
        assert_eq!(read_ids(&log, 95), (96..=104).collect::<Vec<_>>());
    }

    #[test]
    fn too_large_is_refused_without_using_an_id() {
        let (log, _) = Log::open(cfg(None)).unwrap();
        let mut big = inc("a", Some("big"));
        big.data = Some(serde_json::value::to_raw_value(&"x".repeat(500)).unwrap());
        let r = log
            .append(vec![new("a", None), big.into(), new("a", None)], 1, 300)
            .unwrap();
        assert_eq!(ids(&r), ["new1", "refused", "new2"]);
        // The refused key is not remembered.
        let r = log.append(vec![new("a", Some("big"))], 1, 300).unwrap();
        assert_eq!(ids(&r), ["new3"]);
    }

    #[test]
    fn retention_trims_whole_segments_and_reports_the_gap() {
        let (log, _) = Log::open(LogConfig {
            retain_events: 40,
            ..cfg(None)
        })
        .unwrap();
        for _ in 0..200 {
            log.append(vec![new("a", None)], 1, 65536).unwrap();
        }
        let st = log.stats();
        assert!(st.events >= 40 && st.events < 60, "{st:?}");
        assert_eq!(st.last_id, 200);
        let b = log.read_after(0, 1000).unwrap();
        assert_eq!(b.gap, Some((1, st.first_id - 1)));
        assert_eq!(b.events.first().unwrap().id(), st.first_id);
        assert_eq!(read_ids(&log, st.first_id - 1).len() as u64, st.events);
    }

    #[test]
    fn age_retention() {
        let (log, _) = Log::open(LogConfig {
            retain_events: 80,
            retain_age: Some(Duration::from_secs(10)),
            ..cfg(None)
        })
        .unwrap();
        let now = crate::event::now_millis();
        for _ in 0..30 {
            log.append(vec![new("a", None)], now, 65536).unwrap();
        }
        assert_eq!(log.stats().first_id, 1);
        log.enforce_retention(now + 9_000);
        assert_eq!(log.stats().first_id, 1);
        log.enforce_retention(now + 11_000);
        let st = log.stats();
        assert_eq!((st.first_id, st.events, st.last_id), (31, 0, 30));
    }

    #[test]
    fn second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Log::open(cfg(Some(dir.path()))).unwrap();
        assert!(matches!(
            Log::open(cfg(Some(dir.path()))),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn task_events_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(cfg(Some(dir.path()))).unwrap();
            let mut t = inc("task:x", None);
            t.kind = Some("task_started".into());
            log.append(vec![t.into(), new("log:y", None)], 1, 65536)
                .unwrap();
        }
        let (_, rec) = Log::open(cfg(Some(dir.path()))).unwrap();
        assert_eq!(rec.task_events.len(), 1);
        assert_eq!(rec.task_events[0].topic(), "task:x");
    }
}
