//! Cutting bytes into lines and pieces of over-long lines, within a [`Budget`]:
//! pure code, shared by the followers and `hub-tail -`.

use super::*;

/// What every item of one incarnation (or of stdin) is keyed by.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub prefix: &'a str,
    pub uid: u64,
}

/// Splits a byte stream into lines: the bytes read but not yet emitted (a partial
/// line), and the stream offset of the first of them.
#[derive(Debug, Default)]
pub struct Lines {
    /// Offset of `buf[0]`: the start of the line being assembled.
    pub line_start: u64,
    pub buf: Vec<u8>,
    /// `buf[..searched]` is known to hold no newline.
    pub(super) searched: usize,
    /// `buf[0]` continues a line a piece of which went out already: NUL bytes
    /// there are the line's, not a copytruncate hole (skipped only at a line's
    /// start, wherever a read or a budget stopped).
    pub(super) mid_line: bool,
}

impl Lines {
    pub fn new(offset: u64) -> Lines {
        Lines {
            line_start: offset,
            buf: Vec::new(),
            searched: 0,
            mid_line: false,
        }
    }

    /// The offset of the next byte to read.
    pub fn pos(&self) -> u64 {
        self.line_start + self.buf.len() as u64
    }

    /// Whether `buf` holds bytes not yet scanned for lines.
    pub fn unscanned(&self) -> bool {
        self.searched < self.buf.len()
    }

    /// Emits every complete line in `buf`, then full pieces of an over-long partial
    /// line, and keeps the rest. Stops when the budget runs out (then the rest is
    /// scanned again next time; an over-long line may stop between two pieces, and
    /// its cut points do not depend on where it stopped).
    pub fn scan(
        &mut self,
        key: Key<'_>,
        max_line: usize,
        budget: &mut Budget,
        emit: &mut dyn FnMut(Item<'_>),
        out: &mut Stepped,
    ) {
        let buf = std::mem::take(&mut self.buf);
        let base = self.line_start;
        let mut s = 0; // start of the current line in buf
        let mut search = self.searched;
        let mut piece = |s: usize, end: u64, text: &[u8], partial: bool, budget: &mut Budget| {
            emit(Item::Line {
                key_prefix: key.prefix,
                uid: key.uid,
                start: base + s as u64,
                end,
                bytes: text,
                partial,
            });
            budget.take(text.len());
            out.items += 1;
        };
        let mut complete = true;
        let mut mid_line = self.mid_line;
        'lines: loop {
            if budget.exhausted() {
                complete = false;
                break;
            }
            while !mid_line && s < buf.len() && buf[s] == 0 {
                s += 1; // a copytruncate hole
            }
            search = search.max(s);
            let Some(i) = memchr::memchr(b'\n', &buf[search..]) else {
                break;
            };
            let nl = search + i;
            let text_end = if nl > s && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            // A byte escapes to at most 6 in JSON (\u00XX), so text of at most
            // max_line / 6 bytes fits whatever it holds and needs no cut.
            while text_end - s > max_line / 6 {
                let cut = cut_point(&buf[s..text_end], max_line);
                if cut == text_end - s {
                    break;
                }
                let end = base + (s + cut) as u64;
                piece(s, end, &buf[s..s + cut], true, budget);
                s += cut;
                mid_line = true;
                if budget.exhausted() {
                    complete = false;
                    break 'lines;
                }
            }
            piece(s, base + nl as u64 + 1, &buf[s..text_end], false, budget);
            s = nl + 1;
            search = s;
            mid_line = false;
        }
        if complete {
            // An over-long partial line goes out piece by piece.
            // (Same bound as above: 6 = the longest JSON escape of a byte.)
            while buf.len() - s > max_line / 6 {
                if budget.exhausted() {
                    complete = false;
                    break;
                }
                // Only what more input cannot change: a final `\r` may end up
                // part of the line end, the start of a character its rest.
                let settled = settled_len(&buf[s..]);
                let cut = cut_point(&buf[s..s + settled], max_line);
                if cut == settled {
                    break;
                }
                let end = base + (s + cut) as u64;
                piece(s, end, &buf[s..s + cut], true, budget);
                s += cut;
                mid_line = true;
            }
        }
        let mut buf = buf;
        buf.drain(..s);
        self.line_start += s as u64;
        self.searched = if complete { buf.len() } else { 0 };
        self.buf = buf;
        self.mid_line = mid_line;
    }

    /// Emits the held partial line as it is (its file ended). It is never longer
    /// than one piece: [`scan`](Lines::scan) sends full pieces as they fill.
    pub fn flush(
        &mut self,
        key: Key<'_>,
        budget: &mut Budget,
        emit: &mut dyn FnMut(Item<'_>),
        out: &mut Stepped,
    ) {
        let s = match self.mid_line {
            true => 0,
            false => self
                .buf
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(self.buf.len()),
        };
        if s < self.buf.len() {
            emit(Item::Line {
                key_prefix: key.prefix,
                uid: key.uid,
                start: self.line_start + s as u64,
                end: self.pos(),
                bytes: &self.buf[s..],
                partial: false,
            });
            budget.take(self.buf.len() - s);
            out.items += 1;
        }
        self.line_start = self.pos();
        self.buf.clear();
        self.searched = 0;
        self.mid_line = false;
    }
}

/// The longest prefix of `bytes` whose JSON-encoded text (after lossy UTF-8
/// decoding) is at most `limit` bytes, cut before a character. At least one
/// character, so that progress is always made.
pub fn cut_point(bytes: &[u8], limit: usize) -> usize {
    let mut cost = 0usize;
    let mut at = 0usize;
    for chunk in bytes.utf8_chunks() {
        for (j, ch) in chunk.valid().char_indices() {
            let c = match ch {
                '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
                c if (c as u32) < 0x20 => 6,
                c => c.len_utf8(),
            };
            if cost + c > limit {
                return (at + j).max(first_char_len(bytes));
            }
            cost += c;
        }
        at += chunk.valid().len();
        let bad = chunk.invalid().len();
        if bad > 0 {
            if cost + 3 > limit {
                return at.max(first_char_len(bytes));
            }
            cost += 3;
            at += bad;
        }
    }
    bytes.len()
}

/// The bytes at the start of an unfinished line whose text more input cannot
/// change: all but a final `\r` (the start of a `\r\n`, which the line does not
/// keep) or the start of a UTF-8 character whose other bytes have not come yet.
pub(super) fn settled_len(bytes: &[u8]) -> usize {
    let n = bytes.len();
    if bytes.last() == Some(&b'\r') {
        return n - 1;
    }
    // The last byte that starts a character of two to four bytes, in the last three.
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            0x80..=0xbf => continue,
            _ => return n,
        };
        return if back < need { n - back } else { n };
    }
    n
}

pub(super) fn first_char_len(bytes: &[u8]) -> usize {
    match bytes.utf8_chunks().next() {
        Some(c) => c
            .valid()
            .chars()
            .next()
            .map_or(c.invalid().len(), |ch| ch.len_utf8()),
        None => 0,
    }
    .max(1)
    .min(bytes.len())
}
