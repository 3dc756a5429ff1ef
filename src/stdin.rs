//! Standard input read by a thread of its own (`hub-emit --lines`/`--events`,
//! `hub-tail -`).
//!
//! tokio's `stdin()` hands every read to its blocking pool: a pool thread is woken
//! for the read and wakes the runtime with what it got, two futex calls and a
//! `sched_yield` per read, so per line when lines come one at a time (a pipe fed
//! line by line). Here one thread reads in a loop, blocking in `read(2)` as `cat`
//! does, and hands over whatever each read returned.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Bytes asked of one `read(2)`.
const READ_SIZE: usize = 64 * 1024;

/// Standard input as an [`AsyncRead`], read ahead by at most two reads (one handed
/// over and not yet taken, one in progress) besides what the reader holds.
pub struct ThreadStdin {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    /// The last read handed over, taken from `pos` on.
    chunk: Vec<u8>,
    pos: usize,
    /// End of input (or an error) seen: no more reads.
    done: bool,
}

impl ThreadStdin {
    /// Starts the reading thread. Call once per process: every `ThreadStdin` reads
    /// the same standard input.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn() -> std::io::Result<ThreadStdin> {
        ThreadStdin::spawn_reading(std::io::stdin())
    }

    fn spawn_reading(mut input: impl Read + Send + 'static) -> std::io::Result<ThreadStdin> {
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; READ_SIZE];
                loop {
                    let got = match input.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => Ok(buf[..n].to_vec()),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = got.is_err();
                    // The reader is gone (the command is finishing): stop reading.
                    if tx.blocking_send(got).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(ThreadStdin {
            rx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

impl AsyncRead for ThreadStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.pos == this.chunk.len() {
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => (this.chunk, this.pos) = (chunk, 0),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                None => this.done = true,
            }
        }
        let n = buf.remaining().min(this.chunk.len() - this.pos);
        buf.put_slice(&this.chunk[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Input that arrives in pieces, then fails.
    struct Pieces(Vec<std::io::Result<Vec<u8>>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                Ok(p) => {
                    // A piece larger than `buf` comes in two reads.
                    let n = p.len().min(buf.len());
                    buf[..n].copy_from_slice(&p[..n]);
                    if n < p.len() {
                        self.0.insert(0, Ok(p[n..].to_vec()));
                    }
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        }
    }

    #[tokio::test]
    async fn reads_everything_in_order_then_ends() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let pieces = vec![
            Ok(b"one\n".to_vec()),
            Err(std::io::ErrorKind::Interrupted.into()),
            Ok(b"two\nthr".to_vec()),
            Ok(big.clone()),
        ];
        let mut r = ThreadStdin::spawn_reading(Pieces(pieces)).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        let mut want = b"one\ntwo\nthr".to_vec();
        want.extend_from_slice(&big);
        assert_eq!(all, want);
        // At the end it stays at the end.
        assert_eq!(r.read(&mut [0; 8]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_error_is_reported_after_what_came_before() {
        let pieces = vec![
            Ok(b"a\n".to_vec()),
            Err(std::io::Error::other("gone")),
            Ok(b"never\n".to_vec()),
        ];
        let mut r = ThreadStdin::spawn_reading(Pieces(pieces)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).await.unwrap(), 2);
        let e = r.read(&mut buf).await.unwrap_err();
        assert_eq!(e.to_string(), "gone");
        assert_eq!(r.read(&mut buf).await.unwrap(), 0);
    }

    /// Standard input read in pieces of any size gives the same lines as read
    /// whole, read as `hub-emit --lines` reads it (line by line from a buffered
    /// reader) and as `hub-tail -` does (through [`crate::follow::Lines`]).
    #[test]
    fn lines_do_not_depend_on_how_stdin_arrives() {
        use proptest::prelude::*;
        use tokio::io::AsyncBufReadExt;
        let bytes = prop::collection::vec(
            prop::sample::select(vec![b'a', b'b', b'\n', b'\r', 0, 0xc3, 0xa9, 0xff]),
            0..300,
        );
        let cases = (bytes, prop::collection::vec(1usize..40, 1..20));
        crate::testgen::count(cases, |(input, sizes)| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut pieces = Vec::new();
            let mut rest = &input[..];
            for n in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (a, b) = rest.split_at((*n).min(rest.len()));
                pieces.push(Ok(a.to_vec()));
                rest = b;
            }
            let lines = rt.block_on(async {
                let r = ThreadStdin::spawn_reading(Pieces(pieces)).unwrap();
                let mut r = tokio::io::BufReader::with_capacity(7, r);
                let mut lines = Vec::new();
                loop {
                    let mut line = Vec::new();
                    if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
                        break lines;
                    }
                    lines.push(line);
                }
            });
            let want: Vec<Vec<u8>> = input
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            assert_eq!(lines, want);
            // hub-tail -: the same pieces through the line splitter.
            let mut cuts = Vec::new();
            let mut at = 0;
            for n in sizes.iter().cycle().take(input.len()) {
                at += n;
                cuts.push(at.min(input.len()));
            }
            crate::fuzzing::lines(&input, &cuts, &[], 16);
            true
        });
    }
}
