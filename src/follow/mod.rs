//! Following one log file like `tail -F`: the [`Follower`].
//!
//! A follower is bound to a *path*. The file the path names at a given moment is an
//! *incarnation*, known by its identity (device, inode), a random `uid` given when
//! hub-tail first sees it, and a fingerprint of its first bytes. The follower reads
//! the current incarnation from its position, turns complete lines into [`Item`]s,
//! and notices when the incarnation ends:
//!
//! - **truncated** (copytruncate, `> file`): the file is shorter than what was read, or
//!   its first bytes changed. The new content is a new incarnation (new `uid`) of the
//!   same inode, read from offset 0.
//! - **renamed** or **deleted** (rename-and-create, `rm`): checked only once the open
//!   file is read to its end, so the old file is always drained first (the follower
//!   keeps it open, so a deleted file stays readable). Then the path is opened again
//!   from offset 0 when it exists, or watched until it appears.
//!
//! **Grace period** ([`Follower::rotate_wait`], `--rotate-wait`): logrotate renames
//! the file and creates the new one *before* it tells the application to reopen its
//! log, so lines keep arriving in the renamed file for a moment. A renamed file is
//! therefore kept open (by its descriptor, not its name) and read to its end on every
//! step for that long, alongside the new file, with its own identity in the keys. Its
//! partial last line waits until the period ends; then a last read, the partial line,
//! and it is closed once the hub has acknowledged all of it. A rotated file that is
//! deleted meanwhile (nothing can find it again) is read to its end and closed at
//! once. While it is read its position is in the state file (`rotated` of the path's
//! entry), so a restart looks for it next to the path and resumes it. With a zero
//! grace period the renamed file is drained once, as for a deletion.
//!
//! Each ending yields [`Item::Rotated`]. Before moving to the next incarnation the
//! follower waits until the hub has acknowledged everything of the old one (the caller
//! passes the number of events in flight), so the saved position never skips lines.
//!
//! # Lines
//! A line ends at `\n`; a trailing `\r` is dropped, invalid UTF-8 becomes U+FFFD. A
//! partial last line is held until its newline arrives, and published as it is when
//! its file is rotated or truncated away. NUL bytes at the start of a line are skipped:
//! they are the hole a copytruncate leaves when the writer does not append.
//!
//! **Over-long lines**: a line whose JSON-encoded text is longer than `max_line`
//! bytes (default [`DEFAULT_MAX_LINE`], 32 KiB) is split into pieces of at most that
//! size, cut before a UTF-8 character (control characters count by their JSON escape,
//! so every event fits the hub's 64 KiB limit). Every piece but the last carries
//! `"partial": true`. A piece is published as soon as it is full, so a file without
//! newlines never makes hub-tail's memory grow.
//!
//! **Binary files**: a file with a NUL byte in its first 4 KiB (after any leading NUL
//! run) is reported once and not followed; a new file at the same path is checked
//! again.
//!
//! # Event keys
//! Every line is keyed `DEV:INO:UID:OFFSET` (the byte offset where the line or piece
//! starts), a rotation `DEV:INO:UID:OFFSET:rotated`. The same line always gets the
//! same key, so lines sent again after a crash or a dropped connection are
//! deduplicated by the hub, and two files never share a key even when one reuses the
//! other's inode.
//!
//! Not here: publishing and acknowledgements ([`crate::app::tail`]); the state file
//! is [`state`], wake-ups are [`watch`].

pub mod state;
pub mod watch;

use state::FileState;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod incarnation;
mod lines;

pub use incarnation::*;
pub use lines::*;

/// How many leading bytes identify a file's content (the fingerprint).
pub const FP_MAX: usize = 256;

/// Bytes read per `read` call.
pub const READ_CHUNK: usize = 256 * 1024;

/// The default longest line, in JSON-encoded bytes, before it is split.
pub const DEFAULT_MAX_LINE: usize = 32 * 1024;

/// How much of a new file is looked at to decide that it is binary.
const BINARY_SAMPLE: usize = 4096;

/// Directory entries looked at when searching for a file rotated while stopped.
const MAX_DIR_SCAN: usize = 100_000;

/// What identifies a file on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Where to start a file that has no saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the last complete line (new lines only).
    End,
    /// N complete lines before the end.
    Last(u64),
    /// At the first byte.
    FromStart,
}

/// Why an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Renamed,
    Deleted,
    Truncated,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Renamed => "renamed",
            Ending::Deleted => "deleted",
            Ending::Truncated => "truncated",
        }
    }
}

/// One thing to publish, in file order.
#[derive(Debug, PartialEq)]
pub enum Item<'a> {
    /// A line, or a piece of an over-long one.
    Line {
        /// `DEV:INO:UID:` — append the start offset for the key.
        key_prefix: &'a str,
        uid: u64,
        /// Offset of the first byte of the line.
        start: u64,
        /// Offset after the line (and its newline): the position once it is acked.
        end: u64,
        /// The text, without `\n` / `\r\n`.
        bytes: &'a [u8],
        /// More of the same line follows in the next item (over-long line).
        partial: bool,
    },
    /// The incarnation ended; `end` is where it ended.
    Rotated {
        key_prefix: &'a str,
        uid: u64,
        end: u64,
        reason: Ending,
    },
}

/// Limits of one batch, shared by all followers.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub items: usize,
    pub bytes: usize,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.items == 0 || self.bytes == 0
    }
    fn take(&mut self, bytes: usize) {
        self.items = self.items.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes.max(1));
    }
}

/// What one [`Follower::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stepped {
    /// Items emitted.
    pub items: usize,
    /// The follower now reads another incarnation (or stopped reading one): its
    /// [`Follower::file_state`] changed and must be saved before its items are sent.
    pub identity: bool,
    /// The budget ran out before the end of the file.
    pub more: bool,
}

/// Follows one path. See the module documentation.
#[derive(Debug)]
pub struct Follower {
    /// Absolute path, as published in `data.file`.
    pub path: PathBuf,
    pub topic: String,
    start: Start,
    /// No decision about where to start has been made yet in this run.
    initial: bool,
    max_line: usize,
    cur: Option<Incarnation>,
    /// Files renamed away from the path and still read (oldest first).
    old: Vec<Old>,
    /// How long a renamed file is still read after the rotation is noticed; zero:
    /// drained once, then closed. Default zero; `hub-tail` sets `--rotate-wait`.
    pub rotate_wait: Duration,
    /// A binary file at the path (identity, length, mtime), reported once and skipped
    /// until it changes.
    skip: Option<(FileId, u64, i64, i64)>,
    /// The last condition reported on stderr, so each is said once.
    reported: Option<String>,
    /// Say more (-v): rotations, resumes.
    pub verbose: bool,
    /// Say nothing (-q).
    pub quiet: bool,
}

impl Follower {
    pub fn new(path: PathBuf, topic: String, start: Start, max_line: usize) -> Follower {
        Follower {
            path,
            topic,
            start,
            initial: true,
            max_line: max_line.max(16),
            cur: None,
            old: Vec::new(),
            rotate_wait: Duration::ZERO,
            skip: None,
            reported: None,
            verbose: false,
            quiet: false,
        }
    }

    /// Where this follower stands, for the state file (`None` before the first file):
    /// the current file, with the rotated files still read in `rotated`. Without a
    /// current file (the new one not created yet) the newest rotated file stands for
    /// the path: after a restart it is found next to it as a file rotated while stopped.
    pub fn file_state(&self) -> Option<FileState> {
        let mut olds = self.old.iter().map(|o| inc_state(&o.inc));
        let mut fs = match &self.cur {
            Some(c) => inc_state(c),
            None => olds.next_back()?,
        };
        fs.rotated = olds.collect();
        Some(fs)
    }

    /// Bytes of the current file not turned into events yet (at the last step).
    pub fn backlog(&self) -> u64 {
        self.cur
            .iter()
            .chain(self.old.iter().map(|o| &o.inc))
            .map(|c| c.len.saturating_sub(c.lines.line_start))
            .sum()
    }

    /// When the next grace period of a rotated file ends (a step is due then).
    pub fn wake_at(&self) -> Option<Instant> {
        self.old.iter().filter(|o| !o.done).map(|o| o.until).min()
    }

    /// The hub acknowledged everything of incarnation `uid` up to `end`.
    pub fn acked(&mut self, uid: u64, end: u64) {
        for c in self
            .cur
            .iter_mut()
            .chain(self.old.iter_mut().map(|o| &mut o.inc))
        {
            if c.uid == uid && end > c.acked {
                c.acked = end;
            }
        }
    }

    /// Forgets everything read but not acknowledged (the hub went away): the next step
    /// reads again from the acknowledged position, and the keys make the resend safe.
    pub fn rewind(&mut self) {
        if let Some(c) = self.cur.as_mut() {
            c.lines = Lines::new(c.acked);
            c.ending = None;
        }
        for o in &mut self.old {
            o.inc.lines = Lines::new(o.inc.acked);
            o.done = false;
        }
    }

    /// The identity of the file being read and its fingerprint (length, CRC-32 of
    /// its first bytes), if any.
    pub fn current(&self) -> Option<(FileId, usize, u32)> {
        self.cur
            .as_ref()
            .map(|c| (c.id, c.head.len(), crc32fast::hash(&c.head)))
    }

    /// Whether the next step wants this path's saved state (only before the first
    /// file is opened).
    pub fn needs_saved(&self) -> bool {
        self.initial
    }

    fn report(&mut self, msg: String) {
        if self.reported.as_ref() != Some(&msg) && !self.quiet {
            eprintln!("hub-tail: {msg}");
            self.reported = Some(msg);
        }
    }

    fn note(&self, msg: &str) {
        if self.verbose {
            eprintln!("hub-tail: {msg}");
        }
    }

    /// Checks the file and reads what is new, emitting items in file order until the
    /// budget runs out. `saved` is this path's entry in the state file; `inflight` the
    /// number of this follower's items sent and not yet acknowledged.
    pub fn step(
        &mut self,
        saved: Option<&FileState>,
        inflight: usize,
        budget: &mut Budget,
        emit: &mut dyn FnMut(Item<'_>),
    ) -> Stepped {
        self.step_with(saved, inflight, budget, &|_, _| false, emit)
    }

    /// [`step`](Follower::step), where `elsewhere(id, first_bytes)` says that another
    /// follower reads (or read) that file: a file that appears at this path with such
    /// an identity and first bytes is a renamed copy (app.log → app.log.1 under a glob
    /// matching both) and is skipped instead of read a second time.
    pub fn step_with(
        &mut self,
        saved: Option<&FileState>,
        inflight: usize,
        budget: &mut Budget,
        elsewhere: &dyn Fn(FileId, &[u8]) -> bool,
        emit: &mut dyn FnMut(Item<'_>),
    ) -> Stepped {
        let mut out = Stepped::default();
        // Rotated files first: their lines were written before the new file's.
        if !self.old.is_empty() && !self.step_old(budget, emit, &mut out) {
            return out;
        }
        // At most: finish an incarnation, open the next, read it.
        for _ in 0..4 {
            if self.cur.is_none() {
                if !self.open(saved, elsewhere) {
                    return out;
                }
                out.identity = true;
            }
            let c = self.cur.as_mut().expect("opened");
            if let Some(ending) = c.ending {
                if ending == Ending::Renamed && !self.rotate_wait.is_zero() {
                    // Keep reading it for the grace period, next to the new file.
                    let inc = self.cur.take().expect("opened");
                    self.note(&format!(
                        "{}: renamed; following the new file and still reading the old one for {:?}",
                        self.path.display(),
                        self.rotate_wait
                    ));
                    self.old.push(Old {
                        inc,
                        until: Instant::now() + self.rotate_wait,
                        done: false,
                    });
                    out.identity = true;
                    continue;
                }
                if inflight > 0 || out.items > 0 {
                    return out; // move on only once the old file is fully acked
                }
                self.note(&format!(
                    "{}: {}; following the new file",
                    self.path.display(),
                    ending.as_str()
                ));
                self.cur = None;
                out.identity = true;
                if ending == Ending::Truncated {
                    // the same inode, new content: do not take it for the old one
                    self.skip = None;
                }
                continue;
            }
            if budget.exhausted() {
                out.more = true;
                return out;
            }
            match self.read(budget, emit, &mut out) {
                Ok(true) => {}
                Ok(false) => return out,
                Err(e) => {
                    self.report(format!("{}: read error: {e}", self.path.display()));
                    return out;
                }
            }
            if self.cur.as_ref().is_some_and(|c| c.ending.is_none()) {
                return out;
            }
        }
        out
    }

    /// Reads the rotated files in their grace period to their end; ends the period of
    /// those whose time is up (or that were deleted), and closes those done and fully
    /// acknowledged. `false`: the budget ran out.
    fn step_old(
        &mut self,
        budget: &mut Budget,
        emit: &mut dyn FnMut(Item<'_>),
        out: &mut Stepped,
    ) -> bool {
        let now = Instant::now();
        let max_line = self.max_line;
        let mut i = 0;
        while i < self.old.len() {
            let o = &mut self.old[i];
            if !o.done {
                // Decided before reading: what was written before the end is read.
                let (len, gone) = match o.inc.file.metadata() {
                    Ok(m) => (m.len(), m.nlink() == 0),
                    Err(_) => (o.inc.pos(), true),
                };
                let last = gone || now >= o.until;
                o.inc.len = len;
                match drain(&mut o.inc, len, max_line, budget, emit, out) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        if !self.quiet {
                            eprintln!(
                                "hub-tail: {}: reading the rotated file: {e}; closing it",
                                self.path.display()
                            );
                        }
                        o.inc.len = o.inc.pos();
                    }
                }
                if last {
                    if budget.items == 0 {
                        out.more = true;
                        return false;
                    }
                    let key = Key {
                        prefix: &o.inc.key_prefix,
                        uid: o.inc.uid,
                    };
                    o.inc.lines.flush(key, budget, emit, out);
                    o.done = true;
                }
            }
            if o.done && o.inc.acked >= o.inc.pos() {
                let o = self.old.remove(i);
                self.note(&format!(
                    "{}: done with the rotated file (inode {}) at offset {}",
                    self.path.display(),
                    o.inc.id.ino,
                    o.inc.acked
                ));
                out.identity = true;
                continue;
            }
            i += 1;
        }
        true
    }

    /// Reads the current incarnation. `Ok(true)`: it ended (the `rotated` item is out).
    fn read(
        &mut self,
        budget: &mut Budget,
        emit: &mut dyn FnMut(Item<'_>),
        out: &mut Stepped,
    ) -> io::Result<bool> {
        let max_line = self.max_line;
        let grace = !self.rotate_wait.is_zero();
        let c = self.cur.as_mut().expect("open");
        let meta = c.file.metadata()?;
        let len = meta.len();
        c.len = len;
        if len < c.pos() || !head_matches(c)? {
            // What was read before the truncation goes out first.
            if c.lines.unscanned() {
                let key = Key {
                    prefix: &c.key_prefix,
                    uid: c.uid,
                };
                c.lines.scan(key, max_line, budget, emit, out);
            }
            if c.lines.unscanned() || budget.items < 2 {
                out.more = true;
                return Ok(false);
            }
            end_incarnation(c, Ending::Truncated, budget, emit, out);
            return Ok(true);
        }
        if !drain(c, len, max_line, budget, emit, out)? {
            return Ok(false);
        }
        // Drained: does the path still name this file?
        let ending = match std::fs::metadata(&self.path) {
            Ok(m) if FileId::of(&m) == c.id => return Ok(false),
            Ok(_) => Ending::Renamed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if meta.nlink() == 0 {
                    Ending::Deleted
                } else {
                    Ending::Renamed
                }
            }
            Err(_) => return Ok(false),
        };
        if budget.items < 2 {
            // room for the held partial line and the `rotated` item
            out.more = true;
            return Ok(false);
        }
        if grace && ending == Ending::Renamed {
            // Read on during the grace period: the partial line waits, and the
            // acknowledgement of `rotated` must not cover it.
            let end = c.lines.line_start;
            announce_end(c, end, ending, budget, emit, out);
        } else {
            end_incarnation(c, ending, budget, emit, out);
        }
        Ok(true)
    }

    /// Finds a rotated file that was read in its grace period when hub-tail stopped,
    /// and reads it on for a new grace period.
    fn resume_rotated(&mut self, r: &FileState) {
        match find_rotated(&self.path, r) {
            Some((p, inc)) => {
                self.note(&format!(
                    "{}: resuming the rotated file {} at offset {}",
                    self.path.display(),
                    p.display(),
                    inc.acked
                ));
                self.old.push(Old {
                    inc,
                    until: Instant::now() + self.rotate_wait,
                    done: false,
                });
            }
            None => {
                if !self.quiet {
                    eprintln!(
                        "hub-tail: {}: the rotated file that was still read (inode {}) is not next to it any more; its lines after offset {} are lost",
                        self.path.display(),
                        r.ino,
                        r.offset
                    );
                }
            }
        }
    }

    /// Opens the file the path names now. `false`: nothing to read (missing,
    /// unreadable, binary, not a file); the reason is reported.
    fn open(
        &mut self,
        saved: Option<&FileState>,
        elsewhere: &dyn Fn(FileId, &[u8]) -> bool,
    ) -> bool {
        if self.initial
            && let Some(s) = saved
        {
            self.initial = false;
            self.start = Start::FromStart;
            for r in &s.rotated {
                self.resume_rotated(r);
            }
            match resume(&self.path, s) {
                Ok(inc) => {
                    self.note(&format!(
                        "{}: resuming at offset {}",
                        self.path.display(),
                        inc.acked
                    ));
                    self.cur = Some(inc);
                    self.reported = None;
                    return true;
                }
                Err(why) => {
                    if let Some((old, inc)) = find_rotated(&self.path, s) {
                        self.report(format!(
                            "{}: {why}; finishing the rotated file {} first",
                            self.path.display(),
                            old.display()
                        ));
                        self.cur = Some(inc);
                        return true;
                    }
                    self.report(format!(
                        "{}: {why} and the old file was not found next to it; reading the new file from its start",
                        self.path.display()
                    ));
                }
            }
        }
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => {
                if self.initial {
                    // it appears later: all of it is new
                    self.initial = false;
                    self.start = Start::FromStart;
                }
                let msg = if e.kind() == io::ErrorKind::NotFound {
                    format!("{}: no such file yet; waiting for it", self.path.display())
                } else {
                    format!("cannot open {}: {e}", self.path.display())
                };
                self.report(msg);
                return false;
            }
        };
        if meta.is_dir() {
            self.report(format!(
                "{} is a directory: give files or a quoted glob such as '{}/*.log'",
                self.path.display(),
                self.path.display()
            ));
            return false;
        }
        if !meta.is_file() {
            self.report(format!(
                "{} is not a regular file; only files (and - for stdin) are followed",
                self.path.display()
            ));
            return false;
        }
        if self.skip == Some(skip_key(&meta)) {
            return false;
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                self.report(format!("cannot open {}: {e}", self.path.display()));
                return false;
            }
        };
        // The identity of what was opened, not of what the path named a moment ago.
        let (meta, head, binary) = match file
            .metadata()
            .and_then(|m| Ok((read_head(&file, BINARY_SAMPLE)?, m)))
        {
            Ok((sample, m)) => (
                m,
                sample[..sample.len().min(FP_MAX)].to_vec(),
                is_binary(&sample),
            ),
            Err(e) => {
                self.report(format!("cannot read {}: {e}", self.path.display()));
                return false;
            }
        };
        let id = FileId::of(&meta);
        if elsewhere(id, &head) {
            self.skip = Some(skip_key(&meta));
            self.note(&format!(
                "{}: a renamed file that is already followed under its first name; skipping it",
                self.path.display()
            ));
            return false;
        }
        if binary {
            self.skip = Some(skip_key(&meta));
            self.report(format!(
                "{} looks binary (a NUL byte in its first 4 KiB); not following it",
                self.path.display()
            ));
            return false;
        }
        let len = meta.len();
        let offset = match self.start {
            Start::FromStart => Ok(0),
            Start::End => offset_of_last(&file, len, 0),
            Start::Last(n) => offset_of_last(&file, len, n),
        };
        let offset = match offset {
            Ok(o) => o,
            Err(e) => {
                self.report(format!("cannot read {}: {e}", self.path.display()));
                return false;
            }
        };
        if self.reported.is_some() && !self.quiet {
            eprintln!("hub-tail: {}: following it now", self.path.display());
        }
        self.reported = None;
        self.initial = false;
        self.start = Start::FromStart;
        self.cur = Some(Incarnation::new(
            file,
            id,
            fastrand::u64(..),
            offset,
            head,
            len,
        ));
        true
    }
}

#[cfg(test)]
mod tests;
