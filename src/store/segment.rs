//! One segment of the log: its on-disk record format, the scan that validates it at
//! open (dropping a torn tail), and positional reads.
//!
//! # Format
//! A segment is a file `<first id, 20 digits>.log` holding records back to back:
//!
//! ```text
//! u32 LE  body length
//! u32 LE  CRC-32 of the body
//! body:   u64 LE id | u64 LE ts (ms) | u8 flags | u8 key length | key | event JSON
//! ```
//!
//! `flags` bit 0: the event is a task lifecycle type (`task_*`, `progress`), so the
//! broker can rebuild `/tasks` at start without decoding other events. The id, time
//! and key sit in the binary header so that opening a log of a million events only
//! hops over headers and never parses JSON for them.
//!
//! A `--memory` hub keeps the same bytes in a `Vec` instead of a file.

use crate::event::StoredEvent;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub const HEADER_LEN: usize = 8;
const BODY_FIXED: usize = 18;
/// Flag: a task lifecycle event.
pub const FLAG_TASK: u8 = 1;
/// Every `INDEX_EVERY`th record's offset is kept in memory for seeks.
const INDEX_EVERY: u64 = 64;

/// A record decoded from a segment.
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    pub id: u64,
    pub ts: u64,
    pub flags: u8,
    pub key: &'a [u8],
    pub json: &'a [u8],
}

/// Appends the encoding of one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, id: u64, ts: u64, flags: u8, key: &[u8], json: &[u8]) {
    let body_len = BODY_FIXED + key.len() + json.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.push(flags);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(json);
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What decoding the start of `buf` found.
pub enum Decoded<'a> {
    /// A whole, valid record and its encoded length.
    Record(RawRecord<'a>, usize),
    /// `buf` ends inside a record; at least this many bytes are needed.
    NeedMore(usize),
    /// Not a valid record (bad length or checksum).
    Corrupt,
}

/// Decodes the record at the start of `buf`, checking its checksum.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::NeedMore(HEADER_LEN);
    }
    let body_len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if body_len < BODY_FIXED {
        return Decoded::Corrupt;
    }
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::NeedMore(total);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let body = &buf[HEADER_LEN..total];
    if crc32fast::hash(body) != crc {
        return Decoded::Corrupt;
    }
    let id = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let ts = u64::from_le_bytes(body[8..16].try_into().unwrap());
    let flags = body[16];
    let key_len = body[17] as usize;
    if BODY_FIXED + key_len > body_len {
        return Decoded::Corrupt;
    }
    let key = &body[BODY_FIXED..BODY_FIXED + key_len];
    let json = &body[BODY_FIXED + key_len..];
    Decoded::Record(
        RawRecord {
            id,
            ts,
            flags,
            key,
            json,
        },
        total,
    )
}

/// Where a segment's bytes live.
#[derive(Debug)]
pub enum Backing {
    File(File),
    Memory(RwLock<Vec<u8>>),
}

/// What is known of a segment's contents; grows as records are appended.
#[derive(Debug, Clone, Default)]
pub struct SegmentMeta {
    /// Id of the last record, or `first_id - 1` when empty.
    pub last_id: u64,
    pub count: u64,
    pub bytes: u64,
    /// Newest receive time in the segment (ms), for `--retain-age`.
    pub max_ts: u64,
    /// (id, offset) of every [`INDEX_EVERY`]th record, ascending.
    pub index: Vec<(u64, u64)>,
}

/// One segment of the log.
#[derive(Debug)]
pub struct Segment {
    /// The first id this segment may hold (its file name).
    pub first_id: u64,
    pub path: Option<PathBuf>,
    pub backing: Backing,
    pub meta: RwLock<SegmentMeta>,
}

/// What [`Segment::open`] learned while validating a segment.
pub struct Scan {
    pub segment: Segment,
    /// Bytes dropped from the end (a torn or corrupt tail).
    pub dropped_bytes: u64,
}

pub fn segment_file_name(first_id: u64) -> String {
    format!("{first_id:020}.log")
}

/// Parses `<20 digits>.log`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Segment {
    /// A new, empty segment in memory.
    pub fn memory(first_id: u64) -> Segment {
        Segment {
            first_id,
            path: None,
            backing: Backing::Memory(RwLock::new(Vec::new())),
            meta: RwLock::new(SegmentMeta {
                last_id: first_id - 1,
                ..Default::default()
            }),
        }
    }

    /// Creates a new, empty segment file in `dir`.
    pub fn create(dir: &Path, first_id: u64) -> io::Result<Segment> {
        let path = dir.join(segment_file_name(first_id));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(Segment {
            first_id,
            path: Some(path),
            backing: Backing::File(file),
            meta: RwLock::new(SegmentMeta {
                last_id: first_id - 1,
                ..Default::default()
            }),
        })
    }

    /// Opens and validates an existing segment file. Records are checked one by one
    /// (length, checksum, ids increasing); the file is cut at the first bad one, so a
    /// torn final record from a crash is never served. `visit` sees every valid record.
    pub fn open(
        path: &Path,
        first_id: u64,
        mut visit: impl FnMut(&RawRecord<'_>),
    ) -> io::Result<Scan> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut meta = SegmentMeta {
            last_id: first_id - 1,
            ..Default::default()
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0usize; // bytes of buf holding data
        let mut start = 0usize; // first unconsumed byte in buf
        let mut offset = 0u64; // file offset of buf[start]
        let mut eof = false;
        loop {
            match decode_record(&buf[start..filled]) {
                Decoded::Record(rec, n) => {
                    if rec.id <= meta.last_id || rec.id < first_id {
                        break; // ids must increase: anything else is damage
                    }
                    if meta.count.is_multiple_of(INDEX_EVERY) {
                        meta.index.push((rec.id, offset));
                    }
                    meta.last_id = rec.id;
                    meta.count += 1;
                    meta.max_ts = meta.max_ts.max(rec.ts);
                    visit(&rec);
                    start += n;
                    offset += n as u64;
                }
                Decoded::NeedMore(need) => {
                    if eof {
                        break;
                    }
                    // Move the partial record to the front, grow if one record is larger.
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    start = 0;
                    if need > buf.len() {
                        buf.resize(need.next_power_of_two(), 0);
                    }
                    let n = file.read(&mut buf[filled..])?;
                    if n == 0 {
                        eof = true;
                    }
                    filled += n;
                }
                Decoded::Corrupt => break,
            }
        }
        meta.bytes = offset;
        let dropped = len - offset;
        if dropped > 0 {
            file.set_len(offset)?;
            file.sync_all()?;
        }
        Ok(Scan {
            segment: Segment {
                first_id,
                path: Some(path.to_path_buf()),
                backing: Backing::File(file),
                meta: RwLock::new(meta),
            },
            dropped_bytes: dropped,
        })
    }

    /// Appends already-encoded records whose ids, times and lengths are given in
    /// `records`. On error nothing of `bytes` remains in the segment.
    pub fn append(&self, bytes: &[u8], records: &[(u64, u64, u32)]) -> io::Result<()> {
        let mut meta = self.meta.write().unwrap();
        match &self.backing {
            Backing::File(f) => {
                let mut w: &File = f;
                if let Err(e) = io::Write::write_all(&mut w, bytes) {
                    // A short write (disk full) must not stay in the file: records
                    // appended after it would sit behind a torn one, and the scan at
                    // the next start stops at the first bad record. Cut back to the
                    // last whole record; nothing of this batch was acknowledged.
                    if let Err(cut) = f.set_len(meta.bytes) {
                        tracing::error!("cannot cut a failed write back out of the log: {cut}");
                    }
                    return Err(e);
                }
            }
            Backing::Memory(v) => v.write().unwrap().extend_from_slice(bytes),
        }
        let mut offset = meta.bytes;
        for &(id, ts, len) in records {
            if meta.count.is_multiple_of(INDEX_EVERY) {
                meta.index.push((id, offset));
            }
            meta.count += 1;
            meta.last_id = id;
            meta.max_ts = meta.max_ts.max(ts);
            offset += len as u64;
        }
        meta.bytes = offset;
        Ok(())
    }

    /// fsyncs the segment's data (a no-op in memory).
    pub fn sync(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File(f) => f.sync_data(),
            Backing::Memory(_) => Ok(()),
        }
    }

    pub fn meta(&self) -> SegmentMeta {
        let m = self.meta.read().unwrap();
        SegmentMeta {
            index: Vec::new(),
            ..m.clone()
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.backing {
            Backing::File(f) => f.read_at(buf, offset),
            Backing::Memory(v) => {
                let v = v.read().unwrap();
                let start = (offset as usize).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
        }
    }

    /// Reads records with `after < id <= upto`, at most `max` of them and about
    /// `max_bytes` of encoding, handing each to `f`. Returns the id of the last
    /// record read (which `f` saw), or `None` if there was none.
    pub fn read_range(
        &self,
        after: u64,
        upto: u64,
        max: usize,
        max_bytes: usize,
        mut f: impl FnMut(StoredEvent),
    ) -> io::Result<Option<u64>> {
        let (mut offset, end) = {
            let meta = self.meta.read().unwrap();
            if meta.last_id <= after || self.first_id > upto {
                return Ok(None);
            }
            let i = meta.index.partition_point(|&(id, _)| id <= after + 1);
            let off = if i == 0 { 0 } else { meta.index[i - 1].1 };
            (off, meta.bytes)
        };
        let mut buf = vec![0u8; (max_bytes.max(4096)).min((end - offset) as usize)];
        let mut filled = 0usize;
        let mut start = 0usize;
        let mut last = None;
        let mut taken = 0usize;
        let mut taken_bytes = 0usize;
        loop {
            match decode_record(&buf[start..filled]) {
                Decoded::Record(rec, n) => {
                    start += n;
                    if rec.id > upto {
                        break;
                    }
                    if rec.id > after {
                        let json = std::str::from_utf8(rec.json)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        let ev = StoredEvent::decode(json)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        f(ev);
                        last = Some(rec.id);
                        taken += 1;
                        taken_bytes += n;
                        if taken >= max || taken_bytes >= max_bytes {
                            break;
                        }
                    }
                }
                Decoded::NeedMore(need) => {
                    if offset >= end {
                        break;
                    }
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    start = 0;
                    if need > buf.len() {
                        buf.resize(need, 0);
                    }
                    let want = (buf.len() - filled).min((end - offset) as usize);
                    let n = self.read_at(&mut buf[filled..filled + want], offset)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                    offset += n as u64;
                }
                Decoded::Corrupt => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt record in segment {}", self.first_id),
                    ));
                }
            }
        }
        Ok(last)
    }
}

/// A cheaply clonable handle to a segment.
pub type SegmentRef = Arc<Segment>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, StoredEvent};

    fn ev(id: u64) -> StoredEvent {
        StoredEvent::new(Event {
            id,
            ts: 1000 + id,
            topic: "t".into(),
            kind: "message".into(),
            source: None,
            key: Some(format!("k{id}")),
            data: serde_json::json!({"n": id}),
        })
    }

    fn write(seg: &Segment, ids: std::ops::RangeInclusive<u64>) {
        let mut buf = Vec::new();
        let mut recs = Vec::new();
        for id in ids {
            let e = ev(id);
            let before = buf.len();
            encode_record(
                &mut buf,
                id,
                e.ts,
                0,
                crate::event::Fields::key(&e).unwrap().as_bytes(),
                e.json.as_bytes(),
            );
            recs.push((id, e.ts, (buf.len() - before) as u32));
        }
        seg.append(&buf, &recs).unwrap();
    }

    fn ids(seg: &Segment, after: u64, upto: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        seg.read_range(after, upto, max, 1 << 20, |e| out.push(e.id()))
            .unwrap();
        out
    }

    #[test]
    fn write_read_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), 5).unwrap();
        write(&seg, 5..=300);
        assert_eq!(ids(&seg, 0, u64::MAX, 3), vec![5, 6, 7]);
        assert_eq!(ids(&seg, 200, 203, 100), vec![201, 202, 203]);
        assert_eq!(ids(&seg, 299, u64::MAX, 100), vec![300]);
        assert!(ids(&seg, 300, u64::MAX, 100).is_empty());
        let path = seg.path.clone().unwrap();
        drop(seg);
        let mut keys = 0;
        let scan = Segment::open(&path, 5, |_| keys += 1).unwrap();
        assert_eq!(keys, 296);
        assert_eq!(scan.dropped_bytes, 0);
        assert_eq!(scan.segment.meta().last_id, 300);
        assert_eq!(ids(&scan.segment, 130, u64::MAX, 2), vec![131, 132]);
    }

    #[test]
    fn torn_tail_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), 1).unwrap();
        write(&seg, 1..=10);
        let path = seg.path.clone().unwrap();
        let full = seg.meta().bytes;
        drop(seg);
        // Cut the last record in half, as a crash mid-write would.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 7).unwrap();
        let scan = Segment::open(&path, 1, |_| {}).unwrap();
        assert!(scan.dropped_bytes > 0);
        assert_eq!(scan.segment.meta().last_id, 9);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            scan.segment.meta().bytes
        );
        // Flip a byte inside record 5: everything from it on is dropped.
        let seg = scan.segment;
        let mut bytes = std::fs::read(&path).unwrap();
        let idx = seg.meta.read().unwrap().bytes as usize / 9 * 4 + 30;
        bytes[idx] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        drop(seg);
        let scan = Segment::open(&path, 1, |_| {}).unwrap();
        assert_eq!(scan.segment.meta().last_id, 4);
    }

    #[test]
    fn memory_segment_reads_like_a_file() {
        let seg = Segment::memory(1);
        write(&seg, 1..=100);
        assert_eq!(ids(&seg, 97, u64::MAX, 10), vec![98, 99, 100]);
    }

    #[test]
    fn names() {
        assert_eq!(parse_segment_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
    }
}
