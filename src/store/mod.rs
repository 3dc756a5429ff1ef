//! The durable event log: append-only segments under the data dir (or in memory with
//! `--memory`), id assignment, idempotency keys, retention and reads by id.
//!
//! Appends happen under the broker's turn (its writer thread, or a small publish
//! written inline where it arrives), one at a time; any task may read. Ids are
//! assigned here, consecutively, so a gap in what a reader sees can only come from
//! retention (which [`Log::read_after`] reports).
//!
//! Durability: [`Log::append`] returns once the records are written to the file (and
//! fsynced with [`FsyncMode::Always`]); only then does [`Log::committed`] move, so no
//! reader ever sees an event that could still vanish in a crash of the process.
//!
//! # When the disk lies
//! [`Log::open`] scans every segment ([`segment::scan`]). A record cut short at the
//! very end of the newest segment (a crash in the middle of a write, never
//! acknowledged) is cut off quietly. Anything else that is not an intact record is
//! damage: the segment is first copied to `NAME.damaged` (`NAME.damaged.2`, … when
//! that exists), then rewritten (to a temporary file, fsynced, renamed over it) with
//! exactly its intact records, before and after the damage. Intact data is never cut
//! out of a file; each damaged region is reported in [`Recovery::damage`] with its
//! offset and the ids it held.
//!
//! Ids are consecutive in what is written (a refused event gives its id back), so
//! after a repair the lost ids are exactly the holes between intact records, and
//! between a segment's last record and the next segment's first id. Readers get those
//! holes as gaps with [`GapReason::Corrupt`]; [`LogStats::damaged`] counts them.
//!
//! The next id is above every id ever written: the highest intact id, or any id a
//! checked header inside damage names, or, for damage that reaches the end of the
//! newest segment, as many ids as records could fit in the damaged bytes (every
//! record is at least [`segment::MIN_RECORD`] bytes). No separate high-water mark is
//! kept: after such damage the log starts a new segment named by the next id, so the
//! mark is the file name, and it survives the next start even with nothing written.

pub mod check;
mod dedup;
pub mod segment;

use crate::event::{EventError, Fields, Prepared, StoredEvent};
use dedup::Dedup;
use segment::{
    Damage, FLAG_TASK, Format, Report, Segment, SegmentRef, encode_record, parse_segment_name,
};
// `scan_file` reads whole files only when they are not clean; see its doc.
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

/// Why ids are missing from what a reader gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// Trimmed by retention.
    Retention,
    /// Lost to damage on disk.
    Corrupt,
}

impl GapReason {
    /// The `reason` of a `gap` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Retention => "retention",
            GapReason::Corrupt => "corrupt",
        }
    }
}

/// Ids `from..=to` that a reader will never get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
    pub reason: GapReason,
}

/// What reading found: a gap (if any) comes before the events, and the events that
/// follow it are consecutive.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub events: Vec<Arc<StoredEvent>>,
    /// Ids right after the asked position that are gone.
    pub gap: Option<Gap>,
    /// Position to ask from next (the last id looked at).
    pub next_after: u64,
}

/// A damaged region found and repaired at open.
#[derive(Debug, Clone)]
pub struct DamageReport {
    pub file: PathBuf,
    /// Byte offset of the region in the file as it was found.
    pub offset: u64,
    pub bytes: u64,
    /// Ids it held (inclusive), or `None` when it held no id.
    pub lost: Option<(u64, u64)>,
    /// Where the segment was copied before its repair.
    pub copy: Option<PathBuf>,
}

/// What opening the log found, for the broker to rebuild its state from.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every stored task lifecycle event, oldest first.
    pub task_events: Vec<StoredEvent>,
    /// Bytes of a torn tail cut off (an unacknowledged write cut short).
    pub dropped_bytes: u64,
    /// Damage found and repaired.
    pub damage: Vec<DamageReport>,
    pub segments: usize,
}

/// Counters for `/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub events: u64,
    pub bytes: u64,
    pub first_id: u64,
    pub last_id: u64,
    /// Ids between `first_id` and `last_id` lost to damage.
    pub damaged: u64,
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

impl Log {
    /// Opens (or creates) the log: scans every segment, drops a torn tail, repairs
    /// damage (see the module doc) and sets the next id above every id ever given.
    ///
    /// # Errors
    /// The data dir cannot be created, locked, read, or a damaged segment cannot be
    /// repaired (then nothing of it was changed).
    pub fn open(cfg: LogConfig) -> Result<(Log, Recovery), StoreError> {
        let mut rec = Recovery::default();
        let mut segments = VecDeque::new();
        let mut lock = None;
        let mut keys: VecDeque<(Box<str>, u64)> = VecDeque::new();
        let mut next_id = 1;
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
            let found = list_segments(dir).map_err(io)?;
            for (i, (first_id, path)) in found.iter().enumerate() {
                let upper = found.get(i + 1).map(|s| s.0);
                let (mut report, bytes) = segment::scan_file(path, *first_id, upper, |r| {
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
                let file_len = bytes.as_ref().map_or(report.meta.bytes, |b| b.len() as u64);
                let newest = upper.is_none();
                // A record cut short is a torn tail only at the end of the newest
                // segment; at the end of an older one it is damage.
                if let Some(at) = report.torn.filter(|_| !newest) {
                    report.damage.push(Damage {
                        offset: at,
                        len: file_len - at,
                        after_id: report.meta.last_id,
                        next_id: None,
                        max_header_id: 0,
                    });
                    report.torn = None;
                }
                if newest {
                    next_id = report.meta.last_id + 1;
                    for d in &report.damage {
                        if let Some((_, to)) = d.lost_ids(report.format, None) {
                            next_id = next_id.max(to + 1);
                        }
                    }
                }
                if let (false, Some(bytes)) = (report.damage.is_empty(), &bytes) {
                    let copy = repair(path, bytes, &report).map_err(io)?;
                    for d in &report.damage {
                        rec.damage.push(DamageReport {
                            file: path.clone(),
                            offset: d.offset,
                            bytes: d.len,
                            lost: d.lost_ids(report.format, upper),
                            copy: copy.clone(),
                        });
                    }
                    let repaired = std::fs::read(path).map_err(io)?;
                    report = segment::scan(&repaired, *first_id, upper, |_| {});
                    debug_assert!(report.damage.is_empty() && report.torn.is_none());
                } else if let Some(at) = report.torn {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io)?;
                    f.set_len(at).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    rec.dropped_bytes += file_len - at;
                    report.torn = None;
                }
                segments.push_back(Arc::new(
                    Segment::open(path, *first_id, report).map_err(io)?,
                ));
            }
            // New records go to a format 2 segment whose name is the next id: after
            // damage at the end of the newest segment, or after one of format 1.
            let start_new = match segments.back() {
                None => true,
                Some(s) => {
                    (s.format == Format::V1 && s.meta().count > 0)
                        || next_id != s.meta().last_id + 1
                }
            };
            if start_new {
                next_id = next_id.max(segments.back().map_or(1, |s| s.first_id));
                segments.push_back(Arc::new(Segment::create(dir, next_id).map_err(io)?));
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
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
        let next_id = next_id.max(segments.back().unwrap().meta().last_id + 1);
        let log = Log {
            inner: Mutex::new(Inner {
                segments,
                next_id,
                cache: VecDeque::new(),
                dedup,
                total_events,
                total_bytes,
                dirty: false,
                _lock: lock,
                buf: Vec::new(),
            }),
            committed: AtomicU64::new(next_id - 1),
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
            let flags = if crate::event::is_task_type(s.kind()) {
                FLAG_TASK
            } else {
                0
            };
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
        self.commit(inner, buf, &recs, &stored, keyed, id)?;
        Ok(Written {
            outcomes: out,
            stored,
        })
    }

    /// Writes the encoded records `buf` (`recs`: id, ts, length of each) of the
    /// events `stored` to the active segment, remembers their keys, moves the next
    /// id to `next_id` and [`Log::committed`] to the one before it, and seals the
    /// segment once it is full.
    fn commit(
        &self,
        inner: &mut Inner,
        buf: Vec<u8>,
        recs: &[(u64, u64, u32)],
        stored: &[Arc<StoredEvent>],
        keyed: Vec<([u64; 2], u64)>,
        next_id: u64,
    ) -> std::io::Result<()> {
        let id = next_id;
        let active = inner.segments.back().unwrap().clone();
        active.append(&buf, recs)?;
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
        Ok(())
    }

    /// A log in memory that holds a copy of events whose ids and bytes were given
    /// elsewhere (the JetStream stream of `hub-serve --nats`), starting at id
    /// `first_id`: ids below it read as trimmed by retention. Fill it with
    /// [`Log::append_copies`] and [`Log::skip_to`].
    pub fn replica(mut cfg: LogConfig, first_id: u64) -> Log {
        cfg.dir = None;
        let first_id = first_id.max(1);
        Log {
            inner: Mutex::new(Inner {
                segments: VecDeque::from([Arc::new(Segment::memory(first_id))]),
                next_id: first_id,
                cache: VecDeque::new(),
                dedup: Dedup::new(),
                total_events: 0,
                total_bytes: 0,
                dirty: false,
                _lock: None,
                buf: Vec::new(),
            }),
            committed: AtomicU64::new(first_id - 1),
            cfg,
        }
    }

    /// Stores copies of events that already have their ids and bytes, in id order
    /// and each above [`Log::committed`] (ids left out in between read as lost, like
    /// damage). Their keys are remembered as the log's own are.
    ///
    /// # Errors
    /// The ids are not increasing past the newest one stored.
    pub fn append_copies(&self, events: Vec<Arc<StoredEvent>>) -> std::io::Result<Written> {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        let mut next = inner.next_id;
        if events.first().is_some_and(|e| e.id() != next) {
            // The cache holds consecutive ids only.
            inner.cache.clear();
        }
        let mut buf = std::mem::take(&mut inner.buf);
        buf.clear();
        let mut recs = Vec::with_capacity(events.len());
        let mut keyed = Vec::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for (i, s) in events.iter().enumerate() {
            let id = s.id();
            if id < next || (i > 0 && id != next) {
                inner.buf = buf;
                return Err(std::io::Error::other(format!(
                    "copied event {id} does not follow {} in the log",
                    next - 1
                )));
            }
            let key = s.key().unwrap_or("");
            if !key.is_empty() {
                keyed.push((inner.dedup.hash(key), id));
            }
            let flags = if crate::event::is_task_type(s.kind()) {
                FLAG_TASK
            } else {
                0
            };
            let before = buf.len();
            encode_record(
                &mut buf,
                id,
                s.ts(),
                flags,
                key.as_bytes(),
                s.json.as_bytes(),
            );
            recs.push((id, s.ts(), (buf.len() - before) as u32));
            outcomes.push(Appended::New(id));
            next = id + 1;
        }
        if events.is_empty() {
            inner.buf = buf;
        } else {
            self.commit(inner, buf, &recs, &events, keyed, next)?;
        }
        Ok(Written {
            outcomes,
            stored: events,
        })
    }

    /// Moves the next id of a [`Log::replica`] to `next_id`: the ids skipped are
    /// lost (readers get them as a `corrupt` gap).
    pub fn skip_to(&self, next_id: u64) {
        let mut inner = self.inner.lock().unwrap();
        if next_id > inner.next_id {
            inner.next_id = next_id;
            inner.cache.clear();
            self.committed.store(next_id - 1, Ordering::Release);
        }
    }

    /// The ids of the events already stored under these keys, as far as the
    /// log remembers keys ([`DEDUP_KEYS`]).
    pub fn known_keys(&self, keys: &[&str]) -> Vec<Option<u64>> {
        let inner = self.inner.lock().unwrap();
        let hashes: Vec<[u64; 2]> = keys.iter().map(|k| inner.dedup.hash(k)).collect();
        inner.dedup.get_many(&hashes)
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

    /// The first id retention has kept: the oldest segment's first id (a segment
    /// whose records were all lost to damage still holds its ids' place).
    fn first_id_locked(inner: &Inner) -> u64 {
        inner.segments[0].first_id.min(inner.next_id)
    }

    /// Counters for `/status`.
    pub fn stats(&self) -> LogStats {
        let inner = self.inner.lock().unwrap();
        let first_id = Self::first_id_locked(&inner);
        let last_id = self.committed();
        LogStats {
            events: inner.total_events,
            bytes: inner.total_bytes,
            first_id,
            last_id,
            damaged: (last_id + 1)
                .saturating_sub(first_id)
                .saturating_sub(inner.total_events),
        }
    }

    /// Reads committed events with id > `after`, at most `max`. Ids that are gone
    /// right after `after` come first as the batch's gap; the batch stops before the
    /// next hole, so a reader that asks again from `next_after` meets each gap once.
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
        let segments: Vec<SegmentRef> = {
            let inner = self.inner.lock().unwrap();
            let first = Self::first_id_locked(&inner);
            if after + 1 < first {
                out.gap = Some(Gap {
                    from: after + 1,
                    to: first - 1,
                    reason: GapReason::Retention,
                });
                out.next_after = first - 1;
                return Ok(out);
            }
            if let Some(front) = inner.cache.front()
                && front.id() <= after + 1
            {
                // The cache holds consecutive ids (it is filled by appends).
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
        let mut from = after;
        for seg in segments {
            let want = max - out.events.len();
            if want == 0 {
                break;
            }
            let events = &mut out.events;
            if let Some(last) =
                seg.read_range(from, upto, want, 4 << 20, |e| events.push(Arc::new(e)))?
            {
                from = last;
            }
        }
        // Holes are ids lost to damage: report the one right after `after`, and
        // stop before any later one.
        let mut expect = after + 1;
        match out.events.first() {
            None => {
                // Every id up to `upto` is committed, so none of them is left.
                out.gap = Some(Gap {
                    from: expect,
                    to: upto,
                    reason: GapReason::Corrupt,
                });
                out.next_after = upto;
                return Ok(out);
            }
            Some(e) if e.id() > expect => {
                out.gap = Some(Gap {
                    from: expect,
                    to: e.id() - 1,
                    reason: GapReason::Corrupt,
                });
                expect = e.id();
            }
            Some(_) => {}
        }
        let run = out
            .events
            .iter()
            .zip(expect..)
            .take_while(|(e, want)| e.id() == *want)
            .count();
        out.events.truncate(run);
        out.next_after = out.events.last().map_or(after, |e| e.id());
        Ok(out)
    }
}

/// The segment files of `dir`, by first id.
fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let id = parse_segment_name(e.file_name().to_str()?)?;
            Some((id.max(1), e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Keeps a copy of the damaged segment at `path` (whose contents are `bytes`) and
/// rewrites it with exactly the intact records `report` found. Returns the copy's
/// path. The rewrite goes through a temporary file renamed over the segment, so a
/// crash leaves either the old file or the new one.
fn repair(path: &Path, bytes: &[u8], report: &Report) -> std::io::Result<Option<PathBuf>> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut copy = dir.join(format!("{name}.damaged"));
    let mut n = 2;
    while copy.exists() {
        copy = dir.join(format!("{name}.damaged.{n}"));
        n += 1;
    }
    std::fs::write(&copy, bytes)?;
    File::open(&copy)?.sync_all()?;
    let tmp = dir.join(format!("{name}.repair"));
    let mut f = File::create(&tmp)?;
    for r in &report.intact {
        f.write_all(&bytes[r.start as usize..r.end as usize])?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(Some(copy))
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
        read_all(log, after).0
    }

    /// Every id a reader from `after` gets, and the gaps it is told of.
    fn read_all(log: &Log, after: u64) -> (Vec<u64>, Vec<Gap>) {
        let mut out = Vec::new();
        let mut gaps = Vec::new();
        let mut after = after;
        loop {
            let b = log.read_after(after, 7).unwrap();
            if b.events.is_empty() && b.gap.is_none() {
                return (out, gaps);
            }
            gaps.extend(b.gap);
            out.extend(b.events.iter().map(|e| e.id()));
            assert!(b.next_after > after);
            after = b.next_after;
        }
    }

    fn small_segments(dir: &Path) -> LogConfig {
        LogConfig {
            retain_events: 800, // segments of 100 events
            ..cfg(Some(dir))
        }
    }

    /// Writes events 1..=n (each keyed `kI`) and closes the log.
    fn fill(dir: &Path, n: u64) {
        let (log, _) = Log::open(small_segments(dir)).unwrap();
        for i in 1..=n {
            log.append(vec![new("t", Some(&format!("k{i}")))], i, 65536)
                .unwrap();
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|s| s.1)
            .collect()
    }

    /// The byte range of record `id` in the segment file at `path`.
    fn record_at(path: &Path, first: u64, id: u64) -> std::ops::Range<usize> {
        let bytes = std::fs::read(path).unwrap();
        let mut at = Vec::new();
        let mut off = 0usize;
        segment::scan(&bytes, first, None, |r| {
            let len = segment::HEADER_LEN + 10 + r.key.len() + r.json.len();
            at.push((r.id, off..off + len));
            off += len;
        });
        at.into_iter().find(|a| a.0 == id).unwrap().1
    }

    fn flip(path: &Path, at: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x5a;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn damage_in_an_older_segment_loses_only_its_record_and_readers_are_told() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 350);
        let files = segment_files(dir.path());
        assert!(files.len() >= 4, "{files:?}");
        let r = record_at(&files[1], 101, 150);
        flip(&files[1], r.start + 40);
        let before = std::fs::read(&files[1]).unwrap();
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
        let d = &rec.damage[0];
        assert_eq!(
            (d.file.clone(), d.offset, d.lost),
            (files[1].clone(), r.start as u64, Some((150, 150)))
        );
        // The damaged file is kept as it was; the segment keeps its intact records.
        assert_eq!(std::fs::read(d.copy.as_ref().unwrap()).unwrap(), before);
        assert_eq!(
            std::fs::metadata(&files[1]).unwrap().len() as usize,
            before.len() - r.len()
        );
        let (ids, gaps) = read_all(&log, 0);
        let want: Vec<u64> = (1..=350).filter(|&i| i != 150).collect();
        assert_eq!(ids, want);
        assert_eq!(
            gaps,
            vec![Gap {
                from: 150,
                to: 150,
                reason: GapReason::Corrupt
            }]
        );
        assert_eq!(log.stats().damaged, 1);
        assert_eq!(log.stats().first_id, 1);
        // The next id follows the last; the keys of intact records still dedup.
        let w = log
            .append(vec![new("t", Some("k149")), new("t", None)], 1, 65536)
            .unwrap();
        assert_eq!(ids_of(&w), ["dup149", "new351"]);
        drop(log);
        // A second start finds nothing to repair and the same hole.
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert!(rec.damage.is_empty());
        assert_eq!(
            read_all(&log, 140).1,
            vec![Gap {
                from: 150,
                to: 150,
                reason: GapReason::Corrupt
            }]
        );
        assert_eq!(log.committed(), 351);
    }

    fn ids_of(w: &Written) -> Vec<String> {
        ids(w)
    }

    #[test]
    fn damage_at_the_end_of_the_newest_segment_never_reuses_an_id() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 250);
        let files = segment_files(dir.path());
        let newest = files.last().unwrap().clone();
        let first = list_segments(dir.path()).unwrap().last().unwrap().0;
        // Damage the header of the second-to-last record: its id is unknown, and
        // the last record is found again after it.
        let (r249, r250) = (
            record_at(&newest, first, 249),
            record_at(&newest, first, 250),
        );
        flip(&newest, r249.start + 5);
        flip(&newest, r250.start + 2);
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
        let (_, to) = rec.damage[0].lost.unwrap();
        assert!(to >= 250, "{:?}", rec.damage);
        let w = log.append(vec![new("t", None)], 1, 65536).unwrap();
        let Appended::New(id) = w.outcomes[0] else {
            panic!()
        };
        assert!(id > 250, "{id}");
        drop(log);
        // Nothing written since: the next start still gives out new ids only.
        let (log, _) = Log::open(small_segments(dir.path())).unwrap();
        let w = log.append(vec![new("t", None)], 1, 65536).unwrap();
        let Appended::New(next) = w.outcomes[0] else {
            panic!()
        };
        assert!(next > id);
        let (ids, gaps) = read_all(&log, 240);
        assert_eq!(ids.first(), Some(&241));
        assert!(ids.contains(&id) && ids.contains(&next));
        assert!(!ids.contains(&249) && !ids.contains(&250));
        assert!(
            gaps.iter().all(|g| g.reason == GapReason::Corrupt),
            "{gaps:?}"
        );
    }

    #[test]
    fn a_restart_with_nothing_written_after_tail_damage_keeps_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 50);
        let path = segment_files(dir.path())[0].clone();
        let r = record_at(&path, 1, 50);
        flip(&path, r.start + 30); // body of the newest record
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert_eq!(rec.damage[0].lost.map(|l| l.0), Some(50));
        let committed = log.committed();
        assert!(committed >= 50);
        drop(log);
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert!(rec.damage.is_empty());
        assert_eq!(log.committed(), committed);
        let (ids, gaps) = read_all(&log, 45);
        assert_eq!(ids, vec![46, 47, 48, 49]);
        assert_eq!(
            gaps,
            vec![Gap {
                from: 50,
                to: committed,
                reason: GapReason::Corrupt
            }]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_quietly() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 20);
        let path = segment_files(dir.path())[0].clone();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert!(rec.damage.is_empty());
        assert!(rec.dropped_bytes > 0);
        assert_eq!(log.committed(), 19);
        assert_eq!(log.stats().damaged, 0);
        assert!(
            !dir.path()
                .join(format!(
                    "{}.damaged",
                    path.file_name().unwrap().to_string_lossy()
                ))
                .exists()
        );
    }

    #[test]
    fn a_log_of_format_1_still_opens_and_new_records_go_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for id in 1..=30u64 {
            let json = format!(
                r#"{{"id":{id},"ts":"2026-01-01T00:00:00.000Z","topic":"t","type":"message","data":{{"n":{id}}}}}"#
            );
            segment::encode_record_v1(
                &mut bytes,
                id,
                5,
                0,
                format!("k{id}").as_bytes(),
                json.as_bytes(),
            );
        }
        let path = dir.path().join(segment::segment_file_name(1));
        // Damage record 10 of the old format too.
        let mut damaged = bytes.clone();
        let mut off = 0;
        for _ in 1..10 {
            off += 8 + u32::from_le_bytes(damaged[off..off + 4].try_into().unwrap()) as usize;
        }
        damaged[off + 20] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let (log, rec) = Log::open(small_segments(dir.path())).unwrap();
        assert_eq!(
            rec.damage.iter().map(|d| d.lost).collect::<Vec<_>>(),
            vec![Some((10, 10))]
        );
        let w = log
            .append(vec![new("t", Some("k3")), new("t", None)], 1, 65536)
            .unwrap();
        assert_eq!(ids_of(&w), ["dup3", "new31"]);
        assert!(dir.path().join(segment::segment_file_name(31)).exists());
        let (ids, _) = read_all(&log, 0);
        assert_eq!(ids, (1..=31).filter(|&i| i != 10).collect::<Vec<_>>());
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

    /// A copy of events numbered elsewhere (`--nats`): ids below its start read as
    /// retention, ids skipped as corrupt, keys are known, and ids must go up.
    #[test]
    fn a_replica_keeps_the_ids_it_is_given_and_reads_holes_as_gaps() {
        let log = Log::replica(cfg(None), 5);
        let copies = |ids: &[u64]| -> Vec<Arc<StoredEvent>> {
            ids.iter()
                .map(|&id| {
                    let ts = 1_700_000_000_000 + id;
                    let tf = crate::event::TsField::new(&crate::event::format_ts(ts));
                    let key = format!("key{id}");
                    Arc::new(StoredEvent::stamp(new("t", Some(&key)), id, ts, &tf))
                })
                .collect()
        };
        assert_eq!(log.committed(), 4);
        assert_eq!(
            ids(&log.append_copies(copies(&[5, 6])).unwrap()),
            ["new5", "new6"]
        );
        log.skip_to(9);
        assert_eq!(log.committed(), 8);
        log.append_copies(copies(&[9, 10])).unwrap();
        let (got, gaps) = read_all(&log, 0);
        assert_eq!(got, [5, 6, 9, 10]);
        assert_eq!(
            gaps,
            [
                Gap {
                    from: 1,
                    to: 4,
                    reason: GapReason::Retention
                },
                Gap {
                    from: 7,
                    to: 8,
                    reason: GapReason::Corrupt
                },
            ]
        );
        assert_eq!(
            log.known_keys(&["key6", "key7", "key10"]),
            [Some(6), None, Some(10)]
        );
        // Not above the newest, or not consecutive within a batch: refused, nothing kept.
        assert!(log.append_copies(copies(&[10])).is_err());
        assert!(log.append_copies(copies(&[11, 13])).is_err());
        assert_eq!(log.committed(), 10);
        assert_eq!(log.stats().events, 4);
        // Each copy is stored with its own bytes.
        let b = log.read_after(4, 1).unwrap();
        assert_eq!(b.events[0].json, copies(&[5])[0].json);
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
        let gap = Gap {
            from: 1,
            to: st.first_id - 1,
            reason: GapReason::Retention,
        };
        assert_eq!(b.gap, Some(gap));
        assert!(b.events.is_empty());
        let b = log.read_after(b.next_after, 1000).unwrap();
        assert_eq!(b.gap, None);
        assert_eq!(b.events.first().unwrap().id(), st.first_id);
        assert_eq!(st.damaged, 0);
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

    /// Every type of `event::TASK_TYPES` is flagged on disk, so a restart hands each
    /// to the task board; other types are not.
    #[test]
    fn every_task_type_is_flagged_for_the_board() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(cfg(Some(dir.path()))).unwrap();
            let mut evs = Vec::new();
            for kind in crate::event::TASK_TYPES
                .iter()
                .chain(&["message", "rotated"])
            {
                let mut t = inc("task:x", None);
                t.kind = Some(kind.to_string());
                evs.push(t.into());
            }
            log.append(evs, 1, 65536).unwrap();
        }
        let (_, rec) = Log::open(cfg(Some(dir.path()))).unwrap();
        let kinds: Vec<&str> = rec.task_events.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, crate::event::TASK_TYPES);
        let mut board = crate::broker::tasks::TaskBoard::default();
        for e in &rec.task_events {
            board.apply(e);
        }
        assert_eq!(board.list().len(), 1);
        assert_eq!(
            board.last_id(),
            4,
            "the four task events, not the two others"
        );
    }
}
