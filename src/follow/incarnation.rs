//! One file at a path (an incarnation) and its end: reading the head, binary files,
//! resuming from a saved position, finding a rotated file, and draining it.

use super::*;

/// The file one path names now, and how far it has been read and acknowledged.
#[derive(Debug)]
pub(super) struct Incarnation {
    pub(super) file: File,
    pub(super) id: FileId,
    pub(super) uid: u64,
    pub(super) key_prefix: String,
    /// The first ≤ FP_MAX bytes seen so far.
    pub(super) head: Vec<u8>,
    /// The first byte the hub has not acknowledged.
    pub(super) acked: u64,
    /// Read but not yet emitted: the partial line.
    pub(super) lines: Lines,
    /// Set once the incarnation is drained and its `rotated` item emitted.
    pub(super) ending: Option<Ending>,
    /// The file length at the last step.
    pub(super) len: u64,
}

/// A file renamed away from the path, still read until its grace period ends.
#[derive(Debug)]
pub(super) struct Old {
    pub(super) inc: Incarnation,
    /// The end of the grace period: then a last read, and the partial line goes out.
    pub(super) until: Instant,
    /// The last read is done: closed once everything of it is acknowledged.
    pub(super) done: bool,
}

pub(super) fn inc_state(inc: &Incarnation) -> FileState {
    let n = inc.head.len().min(FP_MAX);
    FileState {
        dev: inc.id.dev,
        ino: inc.id.ino,
        uid: format!("{:016x}", inc.uid),
        offset: inc.acked,
        fp_len: n as u32,
        fp: format!("{:08x}", crc32fast::hash(&inc.head[..n])),
        rotated: Vec::new(),
    }
}

impl Incarnation {
    pub(super) fn new(
        file: File,
        id: FileId,
        uid: u64,
        offset: u64,
        head: Vec<u8>,
        len: u64,
    ) -> Self {
        Incarnation {
            file,
            id,
            uid,
            key_prefix: format!("{}:{}:{uid:016x}:", id.dev, id.ino),
            head,
            acked: offset,
            lines: Lines::new(offset),
            ending: None,
            len,
        }
    }

    pub(super) fn pos(&self) -> u64 {
        self.lines.pos()
    }
}

pub(super) fn skip_key(meta: &std::fs::Metadata) -> (FileId, u64, i64, i64) {
    (
        FileId::of(meta),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// Reads `c` up to `len`, emitting its complete lines. `Ok(false)`: the budget ran
/// out first.
pub(super) fn drain(
    c: &mut Incarnation,
    len: u64,
    max_line: usize,
    budget: &mut Budget,
    emit: &mut dyn FnMut(Item<'_>),
    out: &mut Stepped,
) -> io::Result<bool> {
    loop {
        if budget.exhausted() {
            out.more = true;
            return Ok(false);
        }
        let key = Key {
            prefix: &c.key_prefix,
            uid: c.uid,
        };
        if c.lines.unscanned() {
            c.lines.scan(key, max_line, budget, emit, out);
            continue;
        }
        if c.pos() >= len {
            return Ok(true);
        }
        let want = READ_CHUNK.min((len - c.pos()) as usize);
        let pos = c.pos();
        let old = c.lines.buf.len();
        c.lines.buf.resize(old + want, 0);
        let n = c.file.read_at(&mut c.lines.buf[old..], pos)?;
        c.lines.buf.truncate(old + n);
        if n == 0 {
            return Ok(true); // shrank meanwhile: the next step sees it
        }
    }
}

/// Emits the held partial line and the `rotated` item, and marks `c` as ended.
pub(super) fn end_incarnation(
    c: &mut Incarnation,
    ending: Ending,
    budget: &mut Budget,
    emit: &mut dyn FnMut(Item<'_>),
    out: &mut Stepped,
) {
    let key = Key {
        prefix: &c.key_prefix,
        uid: c.uid,
    };
    c.lines.flush(key, budget, emit, out);
    let end = c.lines.pos();
    announce_end(c, end, ending, budget, emit, out);
}

/// Emits the `rotated` item, acknowledging the file up to `end`, and marks `c` as
/// ended.
pub(super) fn announce_end(
    c: &mut Incarnation,
    end: u64,
    ending: Ending,
    budget: &mut Budget,
    emit: &mut dyn FnMut(Item<'_>),
    out: &mut Stepped,
) {
    emit(Item::Rotated {
        key_prefix: &c.key_prefix,
        uid: c.uid,
        end,
        reason: ending,
    });
    budget.take(0);
    out.items += 1;
    c.ending = Some(ending);
}

/// Whether the stored fingerprint still matches the first bytes; extends it while
/// the file is shorter than [`FP_MAX`].
pub(super) fn head_matches(c: &mut Incarnation) -> io::Result<bool> {
    let now = read_head(&c.file, FP_MAX)?;
    let n = c.head.len();
    if now.len() < n || now[..n] != c.head[..] {
        return Ok(false);
    }
    if now.len() > n {
        c.head = now;
    }
    Ok(true)
}

/// Up to `n` bytes from the start of the file.
pub(super) fn read_head(file: &File, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match file.read_at(&mut v[got..], got as u64)? {
            0 => break,
            k => got += k,
        }
    }
    v.truncate(got);
    Ok(v)
}

/// A NUL byte in the sample, after any leading run of NULs.
pub(super) fn is_binary(sample: &[u8]) -> bool {
    let text = match sample.iter().position(|&b| b != 0) {
        Some(i) => &sample[i..],
        None => return false,
    };
    text.contains(&0)
}

/// The offset after which `n` complete lines remain (`n = 0`: after the last
/// newline, so a partial last line is read once it is complete).
pub(super) fn offset_of_last(file: &File, len: u64, n: u64) -> io::Result<u64> {
    let mut seen = 0u64;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        let mut hay = &chunk[..];
        while let Some(i) = memchr::memrchr(b'\n', hay) {
            if seen == n {
                return Ok(start + i as u64 + 1);
            }
            seen += 1;
            hay = &hay[..i];
        }
        end = start;
    }
    Ok(0)
}

/// Opens `path` as the saved incarnation `s`, when it still is that file.
pub(super) fn resume(path: &Path, s: &FileState) -> Result<Incarnation, String> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "gone since the last run".to_string(),
        _ => e.to_string(),
    })?;
    open_saved(file, s)
}

pub(super) fn open_saved(file: File, s: &FileState) -> Result<Incarnation, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let id = FileId::of(&meta);
    if id.dev != s.dev || id.ino != s.ino {
        return Err("replaced since the last run".into());
    }
    let head = read_head(&file, FP_MAX).map_err(|e| e.to_string())?;
    let n = s.fp_len as usize;
    if head.len() < n || format!("{:08x}", crc32fast::hash(&head[..n])) != s.fp {
        return Err("rewritten since the last run (its first bytes changed)".into());
    }
    if meta.len() < s.offset {
        return Err("truncated since the last run".into());
    }
    let uid = u64::from_str_radix(&s.uid, 16).map_err(|_| "bad uid in the state file")?;
    Ok(Incarnation::new(file, id, uid, s.offset, head, meta.len()))
}

/// The first bytes of the file at `path` (at most [`FP_MAX`]).
pub fn head_of(path: &Path) -> io::Result<Vec<u8>> {
    read_head(&File::open(path)?, FP_MAX)
}

/// Whether `path` is the file `s` was saved for (same identity and first bytes).
pub fn same_file(path: &Path, s: &FileState) -> bool {
    File::open(path).is_ok_and(|f| open_saved(f, s).is_ok())
}

/// Looks next to `path` for the saved incarnation under another name (rotated while
/// hub-tail was stopped), so its remaining lines are read before the new file.
pub(super) fn find_rotated(path: &Path, s: &FileState) -> Option<(PathBuf, Incarnation)> {
    let dir = path.parent()?;
    for entry in std::fs::read_dir(dir).ok()?.take(MAX_DIR_SCAN) {
        let Ok(entry) = entry else { continue };
        if entry.ino() != s.ino {
            continue;
        }
        let p = entry.path();
        if let Ok(file) = File::open(&p)
            && let Ok(inc) = open_saved(file, s)
        {
            return Some((p, inc));
        }
    }
    None
}
