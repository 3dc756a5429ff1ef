//! One segment of the log: its on-disk record format, the scan that validates it at
//! open (finding a torn tail and damage), and positional reads.
//!
//! # Format
//! A segment is a file `<first id, 20 digits>.log` holding records back to back.
//! Records written by this version (format 2):
//!
//! ```text
//! [4]     magic "HUB\xE2"
//! u32 LE  body length
//! u64 LE  id
//! u32 LE  CRC-32 of the body
//! u32 LE  CRC-32 of the 20 header bytes before it
//! body:   u64 LE ts (ms) | u8 flags | u8 key length | key | event JSON
//! ```
//!
//! The magic and the header's own checksum let a scan find the next intact record
//! after damage: it searches for the magic and takes the first header whose checksum,
//! body checksum and id all hold. The id sits in the checked header, so even a record
//! whose body is damaged still names its id. A record's length field holds zero bytes
//! for any body under 16 MiB, and JSON text holds none, so no event's data can be
//! mistaken for a record. Format 2 costs 8 bytes per event more than format 1.
//!
//! Format 1 (logs written before it) is `u32 body length | u32 CRC-32 of the body |
//! body: u64 id | u64 ts | u8 flags | u8 key length | key | JSON`. Such segments are
//! still read; a scan resynchronises in them by trying each offset whose length and
//! id are plausible against the body checksum. New records always go to a format 2
//! segment: at open, a format 1 active segment is sealed and a new one started.
//!
//! `flags` bit 0: the event is a task lifecycle type (`task_*`, `progress`), so the
//! broker can rebuild `/tasks` at start without decoding other events. The id, time
//! and key sit in the binary part so that opening a log of a million events only
//! checks headers and checksums and never parses JSON for them.
//!
//! # Torn tails and damage
//! [`scan`] classifies what is not an intact record. A *torn tail* is a record cut
//! short at the very end of the file (its header, or a prefix of it, is there, but
//! the file ends before the record does): what a crash in the middle of a write
//! leaves. Anything else is *damage*: a bad checksum, a bad magic, an id out of order,
//! garbage. A scan never stops at damage: it resynchronises at the next intact record
//! and reports each damaged region with the ids around it. What to do with them is
//! the log's decision (see the `store` module).
//!
//! A `--memory` hub keeps the same bytes in a `Vec` instead of a file.

use crate::event::StoredEvent;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The first four bytes of every format 2 record.
pub const MAGIC: [u8; 4] = *b"HUB\xE2";
/// Header length of a format 2 record.
pub const HEADER_LEN: usize = 24;
/// Fixed part of a format 2 body (ts, flags, key length).
const BODY_FIXED: usize = 10;
/// Header length and fixed body part of a format 1 record.
const V1_HEADER_LEN: usize = 8;
const V1_BODY_FIXED: usize = 18;
/// No stored event's JSON is shorter than this (`{"id":1,"ts":"…","topic":"a","type":"a"}`
/// is 63 bytes); used to bound how many ids a damaged region can have held.
const MIN_JSON: usize = 40;
/// The shortest possible format 2 record.
pub const MIN_RECORD: u64 = (HEADER_LEN + BODY_FIXED + MIN_JSON) as u64;
const V1_MIN_RECORD: u64 = (V1_HEADER_LEN + V1_BODY_FIXED + MIN_JSON) as u64;
/// Bodies longer than this are not plausible (events are at most
/// `--max-event-bytes`, keys 128 bytes); a header claiming more is damage.
const MAX_BODY: usize = 1 << 30;
/// Flag: a task lifecycle event.
pub const FLAG_TASK: u8 = 1;
/// Every `INDEX_EVERY`th record's offset is kept in memory for seeks.
const INDEX_EVERY: u64 = 64;

const _: () = assert!(crate::event::MAX_KEY_LEN <= u8::MAX as usize);

/// A segment's record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Before the magic and header checksum (read only).
    V1,
    /// What this version writes.
    V2,
}

/// A record decoded from a segment.
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    pub id: u64,
    pub ts: u64,
    pub flags: u8,
    pub key: &'a [u8],
    pub json: &'a [u8],
}

/// Appends the format 2 encoding of one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, id: u64, ts: u64, flags: u8, key: &[u8], json: &[u8]) {
    let body_len = BODY_FIXED + key.len() + json.len();
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&ts.to_le_bytes());
    out.push(flags);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(json);
    let body_crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 16..start + 20].copy_from_slice(&body_crc.to_le_bytes());
    let head_crc = crc32fast::hash(&out[start..start + 20]);
    out[start + 20..start + 24].copy_from_slice(&head_crc.to_le_bytes());
}

/// Appends the format 1 encoding of one record (for tests of old logs).
#[cfg(test)]
pub fn encode_record_v1(out: &mut Vec<u8>, id: u64, ts: u64, flags: u8, key: &[u8], json: &[u8]) {
    let body_len = V1_BODY_FIXED + key.len() + json.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.push(flags);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(json);
    let crc = crc32fast::hash(&out[start + V1_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What decoding the start of a buffer found.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A whole, valid record and its encoded length.
    Record(RawRecord<'a>, usize),
    /// The buffer ends inside a record; at least `need` bytes are needed. `id` is
    /// the record's id when its header was whole and checked (format 2).
    NeedMore { need: usize, id: Option<u64> },
    /// A checked header (format 2) whose body is damaged: the id is known.
    BadBody { id: u64, len: usize },
    /// Not a valid record.
    Corrupt,
}

/// Decodes the format 2 record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        let n = buf.len().min(MAGIC.len());
        if buf[..n] != MAGIC[..n] {
            return Decoded::Corrupt;
        }
        return Decoded::NeedMore {
            need: HEADER_LEN,
            id: None,
        };
    }
    if buf[0..4] != MAGIC {
        return Decoded::Corrupt;
    }
    let head_crc = u32::from_le_bytes(buf[20..24].try_into().unwrap());
    if crc32fast::hash(&buf[0..20]) != head_crc {
        return Decoded::Corrupt;
    }
    let body_len = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
    let id = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    if !(BODY_FIXED..=MAX_BODY).contains(&body_len) {
        return Decoded::Corrupt;
    }
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::NeedMore {
            need: total,
            id: Some(id),
        };
    }
    let body = &buf[HEADER_LEN..total];
    let body_crc = u32::from_le_bytes(buf[16..20].try_into().unwrap());
    let key_len = body[9] as usize;
    if crc32fast::hash(body) != body_crc || BODY_FIXED + key_len > body_len {
        return Decoded::BadBody { id, len: total };
    }
    Decoded::Record(
        RawRecord {
            id,
            ts: u64::from_le_bytes(body[0..8].try_into().unwrap()),
            flags: body[8],
            key: &body[BODY_FIXED..BODY_FIXED + key_len],
            json: &body[BODY_FIXED + key_len..],
        },
        total,
    )
}

/// Decodes the format 1 record at the start of `buf`.
pub fn decode_record_v1(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < V1_HEADER_LEN {
        return Decoded::NeedMore {
            need: V1_HEADER_LEN,
            id: None,
        };
    }
    let body_len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if !(V1_BODY_FIXED..=MAX_BODY).contains(&body_len) {
        return Decoded::Corrupt;
    }
    let total = V1_HEADER_LEN + body_len;
    if buf.len() < total {
        return Decoded::NeedMore {
            need: total,
            id: None,
        };
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let body = &buf[V1_HEADER_LEN..total];
    let key_len = body[17] as usize;
    if crc32fast::hash(body) != crc || V1_BODY_FIXED + key_len > body_len {
        return Decoded::Corrupt;
    }
    Decoded::Record(
        RawRecord {
            id: u64::from_le_bytes(body[0..8].try_into().unwrap()),
            ts: u64::from_le_bytes(body[8..16].try_into().unwrap()),
            flags: body[16],
            key: &body[V1_BODY_FIXED..V1_BODY_FIXED + key_len],
            json: &body[V1_BODY_FIXED + key_len..],
        },
        total,
    )
}

fn decode(format: Format, buf: &[u8]) -> Decoded<'_> {
    match format {
        Format::V1 => decode_record_v1(buf),
        Format::V2 => decode_record(buf),
    }
}

/// A damaged region of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first bad byte.
    pub offset: u64,
    /// Bytes up to the next intact record, or to the end of the file.
    pub len: u64,
    /// Id of the last intact record before it (`first_id - 1` when none).
    pub after_id: u64,
    /// Id of the first intact record after it, if any.
    pub next_id: Option<u64>,
    /// Highest id named by a checked header inside the region (0 if none).
    pub max_header_id: u64,
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Clone)]
pub struct Report {
    pub format: Format,
    /// What the intact records make (offsets are those of the scanned bytes).
    pub meta: SegmentMeta,
    /// Byte ranges of intact records, adjacent ones merged, ascending.
    pub intact: Vec<Range<u64>>,
    pub damage: Vec<Damage>,
    /// Offset of a record the bytes end inside of (a torn tail).
    pub torn: Option<u64>,
}

/// What is plausible for the next record's id.
struct Ids {
    first: u64,
    upper: Option<u64>,
}

impl Ids {
    fn ok(&self, id: u64, last: u64) -> bool {
        id > last && id >= self.first && self.upper.is_none_or(|u| id < u) && id - last <= 1 << 32
    }
}

/// Scans `bytes`, the whole contents of the segment whose first id is `first_id`.
/// Ids must increase and stay below `upper` (the next segment's first id) when
/// given. `visit` sees every intact record, in order. Never fails: what is not an
/// intact record is reported as damage or as a torn tail.
pub fn scan(
    bytes: &[u8],
    first_id: u64,
    upper: Option<u64>,
    mut visit: impl FnMut(&RawRecord<'_>),
) -> Report {
    let ids = Ids {
        first: first_id,
        upper,
    };
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] == MAGIC[..n] {
        return scan_as(Format::V2, bytes, &ids, &mut visit);
    }
    // Not format 2 at its start: format 1, or format 2 damaged there. A format 2
    // scan that finds no record at all visited nothing, so trying format 1 is safe.
    let v2 = scan_as(Format::V2, bytes, &ids, &mut visit);
    if v2.meta.count > 0 {
        return v2;
    }
    scan_as(Format::V1, bytes, &ids, &mut visit)
}

/// [`scan`] of the segment file at `path`, read in pieces of 1 MiB while it holds
/// only intact records (the common case: no more memory than that, and the bytes
/// are not kept). At anything else the whole file is read and scanned, and its
/// bytes are returned with the report so the caller can repair from them; `visit`
/// still sees each intact record once.
///
/// # Errors
/// The file cannot be read.
pub fn scan_file(
    path: &Path,
    first_id: u64,
    upper: Option<u64>,
    mut visit: impl FnMut(&RawRecord<'_>),
) -> io::Result<(Report, Option<Vec<u8>>)> {
    use std::io::Read;
    let ids = Ids {
        first: first_id,
        upper,
    };
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut meta = SegmentMeta {
        last_id: first_id - 1,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut filled, mut start, mut offset, mut eof) = (0usize, 0usize, 0u64, false);
    let mut format = None;
    let clean = loop {
        let avail = &buf[start..filled];
        if format.is_none() {
            if avail.len() < MAGIC.len() && !eof {
                // Read on below.
            } else {
                let n = avail.len().min(MAGIC.len());
                format = Some(if avail[..n] == MAGIC[..n] {
                    Format::V2
                } else {
                    Format::V1
                });
                continue;
            }
        } else {
            let f = format.unwrap_or(Format::V2);
            match decode(f, avail) {
                Decoded::Record(rec, n) if ids.ok(rec.id, meta.last_id) => {
                    if meta.count.is_multiple_of(INDEX_EVERY) {
                        meta.index.push((rec.id, offset));
                    }
                    meta.last_id = rec.id;
                    meta.count += 1;
                    meta.max_ts = meta.max_ts.max(rec.ts);
                    visit(&rec);
                    start += n;
                    offset += n as u64;
                    continue;
                }
                Decoded::NeedMore { .. } if avail.is_empty() && (eof || offset >= file_len) => {
                    break true;
                }
                // A length past the end of the file is read no further (and never
                // allocated): the whole-file scan tells torn from damaged.
                Decoded::NeedMore { need, .. } if eof || offset + need as u64 > file_len => {
                    break false;
                }
                Decoded::NeedMore { need, .. } => {
                    if need > buf.len() {
                        buf.resize(need.next_power_of_two(), 0);
                    }
                }
                _ => break false,
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        start = 0;
        let n = file.read(&mut buf[filled..])?;
        eof = n == 0;
        filled += n;
    };
    if clean {
        meta.bytes = offset;
        let report = Report {
            format: format.unwrap_or(Format::V2),
            meta,
            intact: (offset > 0).then_some(0..offset).into_iter().collect(),
            damage: Vec::new(),
            torn: None,
        };
        return Ok((report, None));
    }
    drop(buf);
    let bytes = std::fs::read(path)?;
    let seen = meta.last_id;
    let report = scan(&bytes, first_id, upper, |r| {
        if r.id > seen {
            visit(r);
        }
    });
    Ok((report, Some(bytes)))
}

fn scan_as(
    format: Format,
    bytes: &[u8],
    ids: &Ids,
    visit: &mut impl FnMut(&RawRecord<'_>),
) -> Report {
    let mut meta = SegmentMeta {
        last_id: ids.first - 1,
        ..Default::default()
    };
    let mut intact: Vec<Range<u64>> = Vec::new();
    let mut damage = Vec::new();
    let mut torn = None;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let mut header_id = 0;
        match decode(format, &bytes[pos..]) {
            Decoded::Record(rec, n) if ids.ok(rec.id, meta.last_id) => {
                if meta.count.is_multiple_of(INDEX_EVERY) {
                    meta.index.push((rec.id, pos as u64));
                }
                meta.last_id = rec.id;
                meta.count += 1;
                meta.max_ts = meta.max_ts.max(rec.ts);
                visit(&rec);
                let (start, end) = (pos as u64, (pos + n) as u64);
                match intact.last_mut() {
                    Some(r) if r.end == start => r.end = end,
                    _ => intact.push(start..end),
                }
                pos += n;
                continue;
            }
            Decoded::BadBody { id, .. } if ids.ok(id, meta.last_id) => header_id = id,
            _ => {}
        }
        let (next, max_header) = resync(format, bytes, pos, meta.last_id, ids);
        // The bytes end inside this record and no intact one follows: a torn tail.
        // (A format 1 length damaged upwards looks the same unless a record follows.)
        if next.is_none()
            && let Decoded::NeedMore { id, .. } = decode(format, &bytes[pos..])
            && id.is_none_or(|id| ids.ok(id, meta.last_id))
        {
            torn = Some(pos as u64);
            break;
        }
        let end = next.map_or(bytes.len(), |(at, _)| at);
        damage.push(Damage {
            offset: pos as u64,
            len: (end - pos) as u64,
            after_id: meta.last_id,
            next_id: next.map(|(_, id)| id),
            max_header_id: header_id.max(max_header),
        });
        pos = end;
    }
    meta.bytes = torn.unwrap_or(bytes.len() as u64);
    Report {
        format,
        meta,
        intact,
        damage,
        torn,
    }
}

/// Finds the first intact record after the damage at `from` whose id is plausible
/// after `last`: its offset and id, and the highest plausible id named by a checked
/// header on the way.
fn resync(
    format: Format,
    bytes: &[u8],
    from: usize,
    last: u64,
    ids: &Ids,
) -> (Option<(usize, u64)>, u64) {
    let mut max_header = 0;
    match format {
        Format::V2 => {
            let finder = memchr::memmem::Finder::new(&MAGIC);
            let mut at = from + 1;
            while at < bytes.len() {
                let Some(i) = finder.find(&bytes[at..]) else {
                    break;
                };
                let c = at + i;
                match decode_record(&bytes[c..]) {
                    Decoded::Record(rec, _) if ids.ok(rec.id, last) => {
                        return (Some((c, rec.id)), max_header);
                    }
                    Decoded::BadBody { id, .. } | Decoded::NeedMore { id: Some(id), .. }
                        if ids.ok(id, last) =>
                    {
                        max_header = max_header.max(id)
                    }
                    _ => {}
                }
                at = c + 1;
            }
        }
        Format::V1 => {
            for c in from + 1..bytes.len().saturating_sub(V1_HEADER_LEN + V1_BODY_FIXED) {
                let len = u32::from_le_bytes(bytes[c..c + 4].try_into().unwrap()) as usize;
                if len < V1_BODY_FIXED || c + V1_HEADER_LEN + len > bytes.len() {
                    continue;
                }
                let id = u64::from_le_bytes(bytes[c + 8..c + 16].try_into().unwrap());
                if !ids.ok(id, last) {
                    continue;
                }
                if let Decoded::Record(..) = decode_record_v1(&bytes[c..]) {
                    return (Some((c, id)), max_header);
                }
            }
        }
    }
    (None, max_header)
}

impl Damage {
    /// The ids this region can have held, inclusive, or `None` when it held none
    /// (bytes between two records with consecutive ids). `upper` is the next
    /// segment's first id; without one (the newest segment) a region that reaches
    /// the end is taken to have held as many records as fit in it.
    pub fn lost_ids(&self, format: Format, upper: Option<u64>) -> Option<(u64, u64)> {
        let to = match (self.next_id, upper) {
            (Some(next), _) => next - 1,
            (None, Some(upper)) => upper - 1,
            (None, None) => {
                let min = match format {
                    Format::V1 => V1_MIN_RECORD,
                    Format::V2 => MIN_RECORD,
                };
                (self.after_id + self.len.div_ceil(min)).max(self.max_header_id)
            }
        };
        (to > self.after_id).then_some((self.after_id + 1, to))
    }
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
    pub format: Format,
    pub backing: Backing,
    pub meta: RwLock<SegmentMeta>,
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
            format: Format::V2,
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
            format: Format::V2,
            backing: Backing::File(file),
            meta: RwLock::new(SegmentMeta {
                last_id: first_id - 1,
                ..Default::default()
            }),
        })
    }

    /// Opens an existing segment file that [`scan`] found clean (the log repairs or
    /// cuts a file before it opens it), with what the scan learned.
    pub fn open(path: &Path, first_id: u64, report: Report) -> io::Result<Segment> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)?;
        Ok(Segment {
            first_id,
            path: Some(path.to_path_buf()),
            format: report.format,
            backing: Backing::File(file),
            meta: RwLock::new(report.meta),
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
            match decode(self.format, &buf[start..filled]) {
                Decoded::Record(rec, n) => {
                    start += n;
                    if rec.id > upto {
                        break;
                    }
                    if rec.id > after {
                        // A record whose checksums hold but whose JSON is not an
                        // event (written by something else) is left out: readers
                        // get its id as a hole, which they are told of as a gap.
                        let decoded = std::str::from_utf8(rec.json)
                            .map_err(|e| e.to_string())
                            .and_then(|json| StoredEvent::decode(json).map_err(|e| e.to_string()));
                        let ev = match decoded {
                            Ok(ev) => ev,
                            Err(e) => {
                                tracing::error!(
                                    "record {} of segment {} is not an event ({e}); it is skipped",
                                    rec.id,
                                    self.first_id
                                );
                                continue;
                            }
                        };
                        f(ev);
                        last = Some(rec.id);
                        taken += 1;
                        taken_bytes += n;
                        if taken >= max || taken_bytes >= max_bytes {
                            break;
                        }
                    }
                }
                Decoded::NeedMore { need, .. } => {
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
                Decoded::Corrupt | Decoded::BadBody { .. } => {
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

    /// Encodes records for `ids`; returns the bytes and each record's byte range.
    fn encode(ids: impl IntoIterator<Item = u64>, format: Format) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut buf = Vec::new();
        let mut at = Vec::new();
        for id in ids {
            let e = ev(id);
            let key = crate::event::Fields::key(&e).unwrap().as_bytes();
            let before = buf.len();
            match format {
                Format::V2 => encode_record(&mut buf, id, e.ts, 0, key, e.json.as_bytes()),
                Format::V1 => encode_record_v1(&mut buf, id, e.ts, 0, key, e.json.as_bytes()),
            }
            at.push(before..buf.len());
        }
        (buf, at)
    }

    fn write(seg: &Segment, ids: std::ops::RangeInclusive<u64>) {
        let (buf, at) = encode(ids.clone(), Format::V2);
        let recs: Vec<_> = ids
            .zip(at)
            .map(|(id, r)| (id, 1000 + id, r.len() as u32))
            .collect();
        seg.append(&buf, &recs).unwrap();
    }

    fn ids(seg: &Segment, after: u64, upto: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        seg.read_range(after, upto, max, 1 << 20, |e| out.push(e.id()))
            .unwrap();
        out
    }

    fn visited(bytes: &[u8], first: u64, upper: Option<u64>) -> (Vec<u64>, Report) {
        let mut seen = Vec::new();
        let r = scan(bytes, first, upper, |rec| seen.push(rec.id));
        (seen, r)
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
        let bytes = std::fs::read(&path).unwrap();
        let (seen, report) = visited(&bytes, 5, None);
        assert_eq!(seen, (5..=300).collect::<Vec<_>>());
        assert!(report.damage.is_empty() && report.torn.is_none());
        assert_eq!(report.format, Format::V2);
        assert_eq!(report.intact, vec![0..bytes.len() as u64]);
        let seg = Segment::open(&path, 5, report).unwrap();
        assert_eq!(seg.meta().last_id, 300);
        assert_eq!(ids(&seg, 130, u64::MAX, 2), vec![131, 132]);
    }

    #[test]
    fn a_record_costs_eight_bytes_more_than_in_format_1() {
        let (v1, _) = encode(1..=1, Format::V1);
        let (v2, _) = encode(1..=1, Format::V2);
        assert_eq!(v2.len(), v1.len() + 8);
    }

    #[test]
    fn a_cut_at_any_byte_is_a_torn_tail_and_loses_only_the_cut_record() {
        for format in [Format::V1, Format::V2] {
            let (bytes, at) = encode(1..=6, format);
            for cut in 0..bytes.len() {
                let (seen, r) = visited(&bytes[..cut], 1, None);
                let whole = at.iter().filter(|r| r.end <= cut).count() as u64;
                assert_eq!(
                    seen,
                    (1..=whole).collect::<Vec<_>>(),
                    "{format:?} cut {cut}"
                );
                assert!(r.damage.is_empty(), "{format:?} cut {cut}: {:?}", r.damage);
                let boundary = at.iter().any(|r| r.end == cut) || cut == 0;
                assert_eq!(r.torn.is_none(), boundary, "{format:?} cut {cut}");
            }
        }
    }

    /// Every single-byte change anywhere: every record it did not touch is still
    /// found, ids stay increasing, and the ids reported lost cover the touched one.
    #[test]
    fn a_flipped_byte_anywhere_loses_only_the_record_it_hit() {
        for format in [Format::V1, Format::V2] {
            let (bytes, at) = encode(1..=8, format);
            for pos in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut b = bytes.clone();
                    b[pos] ^= flip;
                    let hit = at.iter().position(|r| r.contains(&pos)).unwrap() as u64 + 1;
                    let (seen, r) = visited(&b, 1, None);
                    let want: Vec<u64> = (1..=8).filter(|&i| i != hit).collect();
                    // Format 1 has no header checksum: a flipped length or id can
                    // make its record unfindable, never another one.
                    assert_eq!(seen, want, "{format:?} byte {pos} ^ {flip:#x}");
                    if format == Format::V1 && hit == 8 && r.torn.is_some() {
                        // Its length made larger: format 1 cannot tell that from a
                        // record cut short.
                        assert!(r.damage.is_empty());
                        continue;
                    }
                    assert_eq!(r.damage.len(), 1, "{format:?} byte {pos}: {:?}", r.damage);
                    let d = &r.damage[0];
                    assert_eq!(d.offset, at[hit as usize - 1].start as u64);
                    let lost = d.lost_ids(r.format, None).unwrap();
                    assert!(lost.0 <= hit && hit <= lost.1, "{lost:?} vs {hit}");
                    if hit < 8 {
                        assert_eq!(lost, (hit, hit));
                    }
                    assert!(r.torn.is_none());
                }
            }
        }
    }

    #[test]
    fn garbage_between_records_loses_no_id_and_junk_at_the_end_is_damage() {
        let (bytes, at) = encode(1..=4, Format::V2);
        let mut b = bytes[..at[2].start].to_vec();
        b.extend_from_slice(b"\0\0garbage HUB\xE2 more");
        b.extend_from_slice(&bytes[at[2].start..]);
        let (seen, r) = visited(&b, 1, None);
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].lost_ids(r.format, None), None);
        // Zeros where the newest records were (a power loss): damage, and the ids
        // that can have been there are counted as lost.
        let mut b = bytes.clone();
        b.extend_from_slice(&[0; 300]);
        let (seen, r) = visited(&b, 1, None);
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let lost = r.damage[0].lost_ids(r.format, None).unwrap();
        assert_eq!(lost, (5, 4 + 300u64.div_ceil(MIN_RECORD)));
        // With a next segment, the lost ids end below its first.
        assert_eq!(r.damage[0].lost_ids(r.format, Some(20)), Some((5, 19)));
    }

    #[test]
    fn ids_at_or_past_the_next_segment_are_damage() {
        let (bytes, _) = encode(1..=6, Format::V2);
        let (seen, r) = visited(&bytes, 1, Some(5));
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].lost_ids(r.format, Some(5)), None);
    }

    #[test]
    fn event_data_that_holds_a_record_is_not_taken_for_one() {
        // An event whose JSON text carries the magic and bytes of a record: the
        // length field of any real header has zero bytes, which JSON text cannot.
        let (inner, _) = encode(99..=99, Format::V2);
        let text: String = String::from_utf8_lossy(&inner).into_owned();
        let mut buf = Vec::new();
        let e = StoredEvent::new(Event {
            id: 1,
            ts: 1,
            topic: "t".into(),
            kind: "message".into(),
            source: None,
            key: None,
            data: serde_json::json!({ "x": text }),
        });
        encode_record(&mut buf, 1, 1, 0, b"", e.json.as_bytes());
        buf[30] ^= 0xff; // damage the body: the scan must resynchronise past it
        let (seen, r) = visited(&buf, 1, None);
        assert!(seen.is_empty());
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].next_id, None);
        assert_eq!(r.damage[0].max_header_id, 1);
    }

    proptest::proptest! {
        #![proptest_config(crate::testgen::config())]

        /// Random flips (one to four, anywhere, any mask) and cuts of a segment of
        /// records of varied sizes lose only the records they touched, each named.
        #[test]
        fn recovery_loses_only_what_was_touched(
            first in 1u64..1_000_000,
            sizes in proptest::collection::vec(0u8..200, 1..12),
            flips in proptest::collection::vec((0usize..1_000_000, 1u8..=255), 0..4),
            cut in proptest::option::of(0usize..1_000_000),
        ) {
            crate::fuzzing::segment_recovery(first, &sizes, &flips, cut);
        }

        /// Any bytes at all: no panic, every byte accounted for, and a log over them
        /// opens with a next id above every id it saw.
        #[test]
        fn any_bytes_scan_and_open(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            first in 1u64..100,
        ) {
            let dir = tempfile::tempdir().unwrap();
            crate::fuzzing::segment(&bytes, first, dir.path());
        }

        /// Real records with garbage spliced in: the records are all found.
        #[test]
        fn garbage_between_records_is_skipped(
            n in 1u64..8,
            at in 0usize..8,
            junk in proptest::collection::vec(proptest::num::u8::ANY, 1..64),
        ) {
            let (bytes, ranges) = encode(1..=n, Format::V2);
            let at = ranges.get(at).map_or(bytes.len(), |r| r.start);
            let mut b = bytes[..at].to_vec();
            b.extend_from_slice(&junk);
            b.extend_from_slice(&bytes[at..]);
            let (seen, _) = visited(&b, 1, None);
            proptest::prop_assert_eq!(seen, (1..=n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn scan_file_agrees_with_scan_and_reads_whole_files_only_when_not_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        for format in [Format::V1, Format::V2] {
            let (bytes, at) = encode(1..=300, format);
            let mut cases = vec![(bytes.clone(), true), (Vec::new(), true)];
            cases.push((bytes[..bytes.len() - 3].to_vec(), false));
            let mut flipped = bytes.clone();
            flipped[at[150].start + 9] ^= 0x40;
            cases.push((flipped, false));
            for (b, clean) in cases {
                std::fs::write(&path, &b).unwrap();
                let mut streamed = Vec::new();
                let (r, kept) = scan_file(&path, 1, None, |r| streamed.push(r.id)).unwrap();
                let (whole, want) = visited(&b, 1, None);
                assert_eq!(streamed, whole, "{format:?}");
                assert_eq!(kept.is_none(), clean);
                assert_eq!(
                    (r.meta.count, r.meta.last_id, r.meta.bytes),
                    (want.meta.count, want.meta.last_id, want.meta.bytes)
                );
                assert_eq!(r.meta.index, want.meta.index);
                assert_eq!(
                    (r.intact, r.damage, r.torn),
                    (want.intact, want.damage, want.torn)
                );
            }
        }
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
        assert_eq!(parse_segment_name("00000000000000000042.log.damaged"), None);
    }
}
