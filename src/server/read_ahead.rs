//! Reads a connection in large pieces when its reader asks for small ones.
//!
//! tungstenite reads at most its configured read-buffer size per call, and the
//! server keeps that small (1 KiB) because idle connections are the common case. A
//! publisher streaming batch frames would then cost one `recv` per KiB. This wrapper
//! turns such small reads into one read of up to [`READ_AHEAD`] bytes, served from
//! memory afterwards. The buffer exists only while it holds data: an idle
//! connection keeps nothing here.

use axum::serve::Listener;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read at once for a small read.
pub const READ_AHEAD: usize = 64 << 10;
/// Reads asking for at least this much go to the socket directly (hyper's own
/// buffer, a large WebSocket frame): a copy through here would gain nothing.
const DIRECT: usize = 16 << 10;

/// An I/O object whose small reads are served from one larger read.
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    /// Read but not yet handed out: `buf[pos..]`. Empty (no allocation) when
    /// everything read was handed out.
    buf: Vec<u8>,
    pos: usize,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Copies what is buffered into `dst`; frees the buffer once it is handed out.
    fn hand_out(&mut self, dst: &mut ReadBuf<'_>) {
        let n = dst.remaining().min(self.buf.len() - self.pos);
        dst.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.buf.len() {
            this.hand_out(dst);
            return Poll::Ready(Ok(()));
        }
        if dst.remaining() >= DIRECT {
            return Pin::new(&mut this.inner).poll_read(cx, dst);
        }
        let mut buf = Vec::with_capacity(READ_AHEAD);
        let mut rb = ReadBuf::uninit(buf.spare_capacity_mut());
        // Pending or an error drops the buffer: nothing is kept for a quiet socket.
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        // SAFETY: `poll_read` initialized (filled) the first `n` bytes of the spare
        // capacity `rb` was built on.
        unsafe { buf.set_len(n) };
        if n > 0 {
            this.buf = buf;
            this.pos = 0;
            this.hand_out(dst);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections read ahead.
pub struct ReadAheadListener(pub TcpListener);

impl Listener for ReadAheadListener {
    type Io = ReadAhead<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept: retries, and waits on errors such as EMFILE.
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        (ReadAhead::new(tcp), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reader that counts the reads that reach it.
    struct Counted<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            dst: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, dst)
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_in_order() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::new(Counted {
            inner: &data[..],
            reads: 0,
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        // One read of everything, one that finds the end.
        assert_eq!(r.inner.reads, 2);
        assert!(r.buf.capacity() == 0, "nothing kept once handed out");
    }

    #[tokio::test]
    async fn large_reads_go_straight_through() {
        let data = vec![7u8; 100_000];
        let mut r = ReadAhead::new(Counted {
            inner: &data[..],
            reads: 0,
        });
        let mut dst = vec![0u8; 50_000];
        assert_eq!(r.read(&mut dst).await.unwrap(), 50_000);
        assert_eq!(r.inner.reads, 1);
        assert_eq!(r.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_quiet_socket_keeps_no_buffer_and_writes_pass_through() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut l = ReadAheadListener(listener);
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = Listener::accept(&mut l).await;
        let mut small = [0u8; 100];
        let mut rb = ReadBuf::new(&mut small);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let polled = Pin::new(&mut server).poll_read(&mut cx, &mut rb);
        assert!(polled.is_pending(), "nothing was sent yet");
        assert_eq!(server.buf.capacity(), 0);
        client.write_all(b"hello, hub").await.unwrap();
        let n = server.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"hello, hub");
        assert_eq!(server.buf.capacity(), 0);
        server.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
