//! Accepting and serving connections: the accept loop, the `--max-connections`
//! count, and the time a connection gets to send its request headers.
//!
//! Every accepted TCP connection takes one slot of `--max-connections` at accept
//! and gives it back when the socket is closed. The slot travels inside the
//! connection's I/O object ([`Held`]), so a WebSocket upgraded from the connection
//! keeps the same slot (it is never counted twice) and the count goes down however
//! the connection ends: answered, timed out, failed, upgraded and closed later.
//! `/status` shows the count as `connections`.
//!
//! A connection must send complete request headers within [`HEADER_TIMEOUT`] of
//! being accepted, and again within it after each answer (an idle keep-alive
//! connection is closed the same way); hyper closes it otherwise, without an
//! answer. So a client that sends half a request and stops holds its slot for at
//! most that long.
//!
//! Over the limit, a connection is still read so that its client learns why: an
//! HTTP request gets `429` with a JSON error, a WebSocket upgrade is accepted and
//! closed with 4429 (which browsers can see, and on which every hub client backs
//! off and retries), and the connection is closed after that one answer. At most
//! [`REFUSING_MAX`] such connections are served at once; past that, new ones are
//! closed as soon as they are accepted.
//!
//! Not for: routing and the checks every request passes (`mod.rs`, `access.rs`).

use super::read_ahead::{ReadAhead, ReadAheadListener};
use super::{AppState, error_response};
use crate::protocol::ErrorCode;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::serve::Listener;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// How long a connection may take to send complete request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections over the limit that are answered (429 / 4429) at one time.
pub const REFUSING_MAX: usize = 64;
/// After a shutdown, how long a connection with no request being answered gets to
/// close by itself (finish writing an answer) before it is dropped. Without it, a
/// connection still waiting for request headers would hold the shutdown up until
/// [`HEADER_TIMEOUT`].
const SHUTDOWN_IDLE: Duration = Duration::from_millis(500);

/// Marks a request that came on a connection over `--max-connections`: `/ws`
/// upgrades it and closes with 4429.
#[derive(Debug, Clone, Copy)]
pub struct OverLimit;

/// A connection's place in the counts, given back when dropped.
enum Slot {
    /// One of `--max-connections` (`Stats::connections`).
    Counted(AppState),
    /// Over the limit, being answered and closed (`App::refusing`).
    Refused(AppState),
}

impl Slot {
    /// A slot for a new connection, or `None` when it is to be closed unanswered.
    fn take(app: &AppState) -> Option<Slot> {
        let max = app.cfg.max_connections as u64;
        let counted =
            app.broker
                .stats()
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
        if counted.is_ok() {
            return Some(Slot::Counted(app.clone()));
        }
        let refusing = app
            .refusing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < REFUSING_MAX).then_some(n + 1)
            });
        refusing.is_ok().then(|| Slot::Refused(app.clone()))
    }

    fn over_limit(&self) -> bool {
        matches!(self, Slot::Refused(_))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            Slot::Counted(app) => {
                app.broker
                    .stats()
                    .connections
                    .fetch_sub(1, Ordering::AcqRel);
            }
            Slot::Refused(app) => {
                app.refusing.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// A connection's socket together with its slot: the slot is given back when the
/// socket is dropped, by hyper or, after an upgrade, by the WebSocket.
pub struct Held {
    io: ReadAhead<TcpStream>,
    _slot: Slot,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Accepts until `shutdown` is cancelled; each connection is served in a task of
/// `app.tracker`. After the shutdown a connection finishes the request it is
/// answering and closes; one that is answering none is closed within
/// [`SHUTDOWN_IDLE`].
pub async fn accept_loop(
    mut listener: ReadAheadListener,
    router: Router,
    app: AppState,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        // Accept errors (EMFILE and the like) are retried inside, after a pause.
        let (mut io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return,
        };
        let _ = io.get_mut().set_nodelay(true);
        let Some(slot) = Slot::take(&app) else {
            tracing::debug!(
                "connection from {addr} closed at once: over --max-connections {} and {REFUSING_MAX} refusals in flight",
                app.cfg.max_connections
            );
            continue;
        };
        let over_limit = slot.over_limit();
        let held = Held { io, _slot: slot };
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = RequestService {
            router: router.clone(),
            over_limit,
            max_connections: app.cfg.max_connections,
            in_flight: in_flight.clone(),
        };
        let conn = builder
            .serve_connection(TokioIo::new(held), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        app.tracker.spawn(async move {
            let mut conn = pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let grace = tokio::time::sleep(SHUTDOWN_IDLE);
                    tokio::select! {
                        served = conn.as_mut() => served,
                        _ = grace => {
                            if in_flight.load(Ordering::Acquire) == 0 {
                                tracing::debug!("connection from {addr} closed by the shutdown");
                                return;
                            }
                            conn.await
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection from {addr}: {e}");
            }
        });
    }
}

/// The router, as hyper calls it, for one connection.
#[derive(Clone)]
struct RequestService {
    router: Router,
    over_limit: bool,
    max_connections: usize,
    /// Requests of this connection being answered (until their answer is handed
    /// to hyper).
    in_flight: Arc<AtomicUsize>,
}

/// Counts a request in [`RequestService::in_flight`] while it lives.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn new(count: &Arc<AtomicUsize>) -> Answering {
        count.fetch_add(1, Ordering::AcqRel);
        Answering(count.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Either<
        std::future::Ready<Result<Self::Response, Infallible>>,
        Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        if self.over_limit {
            if !is_ws_upgrade(&req) {
                let mut resp = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooMany,
                    format!(
                        "too many connections (--max-connections {}); retry later",
                        self.max_connections
                    ),
                );
                // hyper closes the connection after this answer. (Not with
                // `keep_alive(false)` on the builder: that would also turn the
                // `Connection: upgrade` of a 101 into `close`.)
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Either::Left(std::future::ready(Ok(resp)));
            }
            req.extensions_mut().insert(OverLimit);
        }
        let answering = Answering::new(&self.in_flight);
        // `Router` is always ready: `poll_ready` is not needed.
        let answer = self.router.clone().call(req);
        Either::Right(Box::pin(async move {
            let answer = answer.await;
            drop(answering);
            answer
        }))
    }
}

fn is_ws_upgrade(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}
