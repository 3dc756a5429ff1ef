//! The client side of the wire, shared by `hub-emit`, `hub-sub` and `hub-tail`: one
//! reconnecting WebSocket client that only moves [`crate::protocol`] frames.
//!
//! - [`normalize_url`]: `ws://h:p`, `ws://h:p/ws`, `http://h:p` and `h:p` all name the
//!   same endpoint; `/ws` is added when missing.
//! - Every connection sets TCP_NODELAY and sends the token as
//!   `Authorization: Bearer` (never in the URL, so it stays out of server logs).
//! - [`Backoff`]: 0.5 s doubling to 30 s, with ±20 % jitter, reset after a success.
//! - Close codes keep the retry meaning of SPEC §3 ([`close::is_retryable`]): after
//!   1001, 1006, 4429, 4500 the client reconnects; after 1003, 1008, 1009, 4400, 4401
//!   and 4403 it stops with [`ClientError::Refused`].
//! - [`Publisher`]: a handle to a background task that owns the connection. Events
//!   are pipelined (up to [`WINDOW`] unacknowledged), written in batches, and kept
//!   until the hub acknowledges them; after a reconnect the unacknowledged ones are
//!   sent again with the same idempotency `key`, so the hub stores each once.
//! - [`Subscriber`]: one subscription that resumes `since` the last event it handed
//!   out, so a hub restart neither loses nor repeats an event.
//! - [`publish_once`] (`post.rs`): one event in one `POST /publish`, for a one-shot
//!   publisher; the same keys, retries and errors as [`Publisher`].
//!
//! What this module is not: it does not print anything (callers decide what a person
//! sees; reconnect attempts are reported through `tracing` and [`SubEvent`]), and it
//! parses no command lines.

mod post;

/// Re-exported for `cli/emit.rs`, which names them from here.
pub use crate::protocol::{EventHead, RawJson};
pub use post::publish_once;

use crate::event::{Event, EventError, NewEvent};
use crate::protocol::{ClientFrame, ServerFrame, close, event_id, event_json, publish_frame};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The most events a [`Publisher`] keeps in flight (sent, not yet acknowledged).
/// Enough to keep a loopback link busy; small enough that a reconnect resends little.
pub const WINDOW: usize = 4096;
/// The longest one connection attempt (TCP connect + handshake) may take.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(10);
/// How long a graceful close waits for the hub's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a client operation failed. Cheap to clone: a publisher that gives up hands the
/// same error to every event it still held.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Bad input given to the client (URL, token): retrying cannot help.
    #[error("{0}")]
    Usage(String),
    /// An event failed local validation before it was sent.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// No connection could be made before the timeout.
    #[error("cannot reach the hub at {url} (gave up after {}): {cause}", seconds(*waited))]
    Unreachable {
        url: String,
        cause: String,
        waited: Duration,
    },
    /// The connection dropped and reconnecting was not allowed.
    #[error("lost the connection to the hub at {url}: {cause}")]
    Disconnected { url: String, cause: String },
    /// The hub said no: auth, limits, an invalid event or subscription.
    #[error("the hub at {url} refused: {message} ({code})")]
    Refused {
        url: String,
        code: String,
        message: String,
    },
    /// The publisher task is gone (the handle outlived its runtime).
    #[error("the connection to the hub was closed")]
    Closed,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The hub URL in any accepted spelling (see [`normalize_url`]).
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// How long one outage may last before the client gives up with
    /// [`ClientError::Unreachable`]; `None` retries forever (hub-tail: the file is the
    /// buffer). Measured from the first failed attempt of that outage.
    pub timeout: Option<Duration>,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token: None,
            timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Turns any accepted spelling of the hub address into the WebSocket URL:
/// `ws://h:p`, `ws://h:p/`, `ws://h:p/ws`, `http://h:p`, `h:p` → `ws://h:p/ws`.
/// A path other than `/ws` gets `/ws` appended (a hub behind a path prefix); a query
/// string is kept.
///
/// # Errors
/// [`ClientError::Usage`] for an empty host, an unknown scheme, or TLS (`wss://`,
/// `https://`), which this build does not speak.
pub fn normalize_url(input: &str) -> Result<String, ClientError> {
    let s = input.trim();
    let bad = |reason: &str| {
        ClientError::Usage(format!(
            "invalid hub URL {input:?}: {reason} (accepted: ws://HOST:PORT, ws://HOST:PORT/ws, http://HOST:PORT)"
        ))
    };
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("ws".to_string(), s),
    };
    match scheme.as_str() {
        "ws" | "http" => {}
        "wss" | "https" => {
            return Err(bad(
                "TLS is not supported; the hub speaks plain ws:// (put a TLS proxy in front of it)",
            ));
        }
        _ => return Err(bad("unknown scheme")),
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(split);
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(bad("missing or invalid host"));
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let path = path.trim_end_matches('/');
    let mut url = format!("ws://{authority}{path}");
    if !path.ends_with("/ws") {
        url.push_str("/ws");
    }
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// Reconnect delays: 0.5 s doubling to 30 s, each with ±20 % jitter so that many
/// clients of a restarted hub do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(Self::MAX);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of one failed connection attempt.
enum Failure {
    /// Worth retrying (refused, reset, 429, 503, ...). The text names the cause.
    Transient(String),
    /// Retrying cannot help.
    Fatal(ClientError),
}

/// One connection attempt: TCP (with TCP_NODELAY) + WebSocket handshake, bounded by
/// `limit`.
/// An open connection and the largest frame the hub said it takes (its
/// `X-Hub-Max-Frame` header; `None` from a hub that does not say, which gets no
/// batch frames).
type Opened = (Ws, Option<usize>);

/// tungstenite's read buffer, the most it reads at once. tungstenite zeroes the
/// free part of it before every read: its default of 128 KiB would be cleared for
/// each ack of a few KiB, and for each read of a subscriber's event frames, which
/// then cost as much zeroing as the copying of what came in. Larger frames still
/// come whole, in several reads.
const READ_BUFFER: usize = 16 << 10;

async fn open(url: &str, token: Option<&str>, limit: Duration) -> Result<Opened, Failure> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Failure::Fatal(ClientError::Usage(format!("invalid hub URL {url}: {e}"))))?;
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().map_err(|_| {
            Failure::Fatal(ClientError::Usage(
                "invalid token: a token is printable ASCII without spaces".into(),
            ))
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err(Failure::Transient(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))),
        Ok(Ok((ws, response))) => {
            let max_frame = response
                .headers()
                .get(crate::protocol::MAX_FRAME_HEADER)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            Ok((ws, max_frame))
        }
        Ok(Err(e)) => Err(classify(url, e)),
    }
}

/// Sorts a handshake error into retry or stop, with a cause a person can act on.
fn classify(url: &str, e: tungstenite::Error) -> Failure {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            refusal(url, resp.status().as_u16(), body)
        }
        E::Url(u) => Failure::Fatal(ClientError::Usage(format!("invalid hub URL {url}: {u}"))),
        E::Io(io) => Failure::Transient(io.to_string()),
        other => Failure::Transient(other.to_string()),
    }
}

/// Sorts a hub's non-success HTTP answer (a refused handshake, or a refused
/// `POST /publish`) into retry or stop; the message is the hub's own (`code`,
/// `message` of its JSON body).
fn refusal(url: &str, status: u16, body: &[u8]) -> Failure {
    let (code, message) = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => (
            v["code"].as_str().unwrap_or_default().to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        ),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(body).trim().to_string(),
        ),
    };
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    let code = if code.is_empty() {
        status.to_string()
    } else {
        code
    };
    match status {
        429 | 500..=599 => Failure::Transient(message),
        404 => Failure::Fatal(ClientError::Refused {
            url: url.to_string(),
            code,
            message: format!("{message} (is this a hub? its WebSocket path is /ws)"),
        }),
        _ => Failure::Fatal(ClientError::Refused {
            url: url.to_string(),
            code,
            message,
        }),
    }
}

/// Connects, retrying transient failures with `backoff` until `timeout` has passed
/// since the first attempt. `on_retry(cause, delay)` is told about each retry.
async fn connect_with_retry(
    url: &str,
    token: Option<&str>,
    timeout: Option<Duration>,
    backoff: &mut Backoff,
    on_retry: impl FnMut(&str, Duration),
) -> Result<Opened, ClientError> {
    with_retry(url, timeout, backoff, on_retry, |limit| {
        open(url, token, limit)
    })
    .await
}

/// Runs `attempt(limit)` until it succeeds or fails for good, retrying transient
/// failures with `backoff` until `timeout` has passed since the first attempt (then
/// [`ClientError::Unreachable`] naming `url`). `limit` bounds each attempt.
async fn with_retry<T, F: Future<Output = Result<T, Failure>>>(
    url: &str,
    timeout: Option<Duration>,
    backoff: &mut Backoff,
    mut on_retry: impl FnMut(&str, Duration),
    mut attempt: impl FnMut(Duration) -> F,
) -> Result<T, ClientError> {
    let start = Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let limit = left
            .unwrap_or(ATTEMPT_LIMIT)
            .clamp(Duration::from_millis(100), ATTEMPT_LIMIT);
        match attempt(limit).await {
            Ok(done) => {
                backoff.reset();
                return Ok(done);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(cause)) => {
                let mut delay = backoff.next_delay();
                if let Some(t) = timeout {
                    let elapsed = start.elapsed();
                    if elapsed >= t {
                        return Err(ClientError::Unreachable {
                            url: url.to_string(),
                            cause,
                            waited: round_duration(elapsed),
                        });
                    }
                    // One last attempt right at the deadline.
                    delay = delay.min(t - elapsed);
                }
                on_retry(&cause, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// `1.1s`, for messages.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Rounds to 0.1 s for messages.
fn round_duration(d: Duration) -> Duration {
    Duration::from_millis((d.as_millis() as u64).div_ceil(100) * 100)
}

/// A close frame's code and reason, from a received message.
fn close_parts(frame: Option<tungstenite::protocol::CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_string()),
        None => (close::ABNORMAL, String::new()),
    }
}

/// A person-readable name for a close code.
fn describe_close(code: u16, reason: &str) -> String {
    let what = match code {
        close::NORMAL => "closed",
        close::GOING_AWAY => "going away (restart or shutdown)",
        close::UNSUPPORTED => "unsupported frame",
        close::ABNORMAL => "connection dropped",
        close::POLICY => "policy violation",
        close::TOO_BIG => "frame too big",
        close::BAD_REQUEST => "bad request",
        close::UNAUTHORIZED => "unauthorized (check --token / HUB_TOKEN)",
        close::FORBIDDEN => "forbidden",
        close::TOO_MANY => "too many connections or subscriptions",
        close::INTERNAL => "internal error",
        _ => "closed",
    };
    if reason.is_empty() {
        format!("close {code}: {what}")
    } else {
        format!("close {code}: {what}: {reason}")
    }
}

/// The error `code` name of a refusal close code.
fn close_code_name(code: u16) -> &'static str {
    match code {
        close::UNAUTHORIZED => "unauthorized",
        close::FORBIDDEN => "forbidden",
        close::BAD_REQUEST | close::UNSUPPORTED | close::POLICY => "bad_request",
        close::TOO_BIG => "too_large",
        close::TOO_MANY => "too_many",
        _ => "closed",
    }
}

/// Sends a close frame and waits (briefly) for the hub's reply, so that every frame
/// sent before it is processed before the connection goes.
async fn close_gracefully(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------------

/// The id the hub assigned to an event, once it is acknowledged.
///
/// A `Ticket` is a future: `ticket.await` gives the id, or the reason the event was
/// not stored. Dropping it does not cancel the event.
pub struct Ticket(oneshot::Receiver<Result<u64, ClientError>>);

impl Ticket {
    /// The outcome if it is already known, without waiting.
    pub fn try_take(&mut self) -> Option<Result<u64, ClientError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(ClientError::Closed)),
        }
    }
}

impl Future for Ticket {
    type Output = Result<u64, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// The publisher task's connection state, watched by [`Publisher::connect`].
#[derive(Debug, Clone)]
enum ConnState {
    Connecting,
    Connected,
    Failed(ClientError),
}

/// Where the outcome of one event goes.
enum Reply {
    /// Its [`Ticket`].
    Ticket(oneshot::Sender<Result<u64, ClientError>>),
    /// The stream's receiver ([`InFlight`]); the event's number.
    Stream(u64),
}

/// Where the publisher task reports the outcomes of stream events ([`InFlight`]):
/// `(n, outcomes)` for the events numbered `n`, `n + 1`, ..., one message per run
/// of consecutive events the hub answered together. Runs come as
/// the hub answers, mostly but not always in the order sent (an event of a batch
/// the hub refused as a whole is sent again alone, after the others).
type Outcomes = mpsc::UnboundedSender<(u64, Vec<Result<u64, ClientError>>)>;

/// The publisher task's side of the outcomes: each ticket's at once, the stream's
/// gathered into runs.
#[derive(Default)]
struct Replies {
    stream: Option<Outcomes>,
    run: Option<(u64, Vec<Result<u64, ClientError>>)>,
    /// Strings of acknowledged events, on their way to `spare`.
    done: Vec<String>,
    spare: Spare,
}

/// The strings of acknowledged events, for the next ones
/// [`Publisher::encode_with_head`] writes. With thousands in flight, glibc's
/// per-thread cache of freed blocks (seven per size) overflows and every event paid
/// a trip through its slower bins (a sixth of `hub-emit --lines`' CPU).
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<String>>>);

impl Spare {
    /// Strings kept at most: a window's worth (acks come back a few batches at a
    /// time).
    const MAX: usize = WINDOW;
    /// Larger strings are freed, not kept: the pool holds at most 8 MiB (under
    /// 1 MiB with events of the usual size), besides the window itself.
    const MAX_LEN: usize = 2048;

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap().pop()
    }

    fn put(&self, done: &mut Vec<String>) {
        let mut spare = self.0.lock().unwrap();
        let room = Self::MAX.saturating_sub(spare.len());
        let small = done.drain(..).filter(|s| s.capacity() <= Self::MAX_LEN);
        spare.extend(small.take(room).map(|mut s| {
            s.clear();
            s
        }));
    }
}

impl Replies {
    fn send(&mut self, reply: Reply, r: Result<u64, ClientError>) {
        match reply {
            Reply::Ticket(tx) => {
                let _ = tx.send(r);
            }
            Reply::Stream(n) => match &mut self.run {
                Some((first, rs)) if *first + rs.len() as u64 == n => rs.push(r),
                _ => {
                    self.flush();
                    self.run = Some((n, vec![r]));
                }
            },
        }
    }

    /// Sends the run gathered so far.
    fn flush(&mut self) {
        if let Some(run) = self.run.take()
            && let Some(to) = &self.stream
        {
            let _ = to.send(run);
        }
        if !self.done.is_empty() {
            self.spare.put(&mut self.done);
        }
    }

    /// An acknowledged event's string, for reuse.
    fn recycle(&mut self, event: String) {
        if self.done.len() < Spare::MAX {
            self.done.push(event);
        }
    }

    /// Outcomes of stream events go to `to` from now on.
    fn stream_to(&mut self, to: Outcomes) {
        if !self.stream.as_ref().is_some_and(|s| s.same_channel(&to)) {
            self.flush();
            self.stream = Some(to);
        }
    }
}

/// Events encoded by [`Publisher::encode`] or [`Publisher::encode_with_head`], for
/// [`InFlight::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(String);

/// A stream of events sent through a [`Publisher`] and not yet answered,
/// oldest first, each with what the caller keeps for it (`T`: a line number, a
/// file position) and, once it is in, its outcome; taken out in the order sent
/// (`hub-emit --lines`, `hub-tail`).
pub struct InFlight<T> {
    items: VecDeque<(T, Option<Result<u64, ClientError>>)>,
    /// The stream number of the oldest.
    front: u64,
    /// `None` once [`finish`](InFlight::finish)ed.
    to: Option<Outcomes>,
    outcomes: mpsc::UnboundedReceiver<(u64, Vec<Result<u64, ClientError>>)>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        let (to, outcomes) = mpsc::unbounded_channel();
        InFlight {
            items: VecDeque::new(),
            front: 0,
            to: Some(to),
            outcomes,
        }
    }
}

impl<T> InFlight<T> {
    /// Events sent and not yet taken out.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends `batch` (emptied) through `publisher`, in order.
    ///
    /// # Errors
    /// The error that made the publisher give up earlier; nothing was sent.
    pub async fn send(
        &mut self,
        publisher: &Publisher,
        batch: &mut Vec<(T, Encoded)>,
    ) -> Result<(), ClientError> {
        let Some(to) = &self.to else {
            return Err(ClientError::Closed);
        };
        let first = self.front + self.items.len() as u64;
        let mut events = Vec::with_capacity(batch.len());
        for (what, ev) in batch.drain(..) {
            events.push(ev);
            self.items.push_back((what, None));
        }
        publisher.send_stream(first, events, to).await
    }

    /// Takes in the outcomes that have arrived, without waiting.
    pub fn collect(&mut self) {
        while let Ok((first, rs)) = self.outcomes.try_recv() {
            self.set(first, rs);
        }
    }

    /// Waits for the next outcomes (forever when nothing is in flight). After
    /// [`finish`](InFlight::finish), an event the publisher will never answer (its
    /// task is gone) gets [`ClientError::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: outcomes are stored as soon as they are received.
    pub async fn answered(&mut self) {
        if self.items.is_empty() {
            return std::future::pending().await;
        }
        match self.outcomes.recv().await {
            Some((first, rs)) => self.set(first, rs),
            None => {
                for (_, r) in &mut self.items {
                    r.get_or_insert(Err(ClientError::Closed));
                }
            }
        }
    }

    /// Sends nothing more: from now on [`answered`](InFlight::answered) also learns
    /// when the publisher is gone.
    pub fn finish(&mut self) {
        self.to = None;
    }

    /// The oldest event's `T` and outcome, once its outcome is in.
    pub fn pop_answered(&mut self) -> Option<(T, Result<u64, ClientError>)> {
        self.items.front()?.1.as_ref()?;
        let (what, r) = self.items.pop_front()?;
        self.front += 1;
        Some((what, r?))
    }

    fn set(&mut self, first: u64, outcomes: Vec<Result<u64, ClientError>>) {
        for (n, r) in (first..).zip(outcomes) {
            if let Some(item) = n
                .checked_sub(self.front)
                .and_then(|i| self.items.get_mut(i as usize))
            {
                item.1 = Some(r);
            }
        }
    }
}

/// Publishes events over one reconnecting connection.
///
/// The connection lives in a background task (spawned on the current runtime); this
/// handle is cheap to share (`&self` methods, `Send + Sync`). Events are sent in the
/// order of [`send`](Publisher::send) calls.
///
/// Every event gets an idempotency `key`: the caller's, or `PREFIX-SEQ` with a random
/// per-publisher prefix. An event the hub has not acknowledged when the connection
/// drops is sent again, with the same key, after reconnecting: the hub acknowledges a
/// duplicate with the original id and stores it once.
///
/// ```no_run
/// # async fn demo() -> Result<(), hub::client::ClientError> {
/// use hub::client::{ConnectOptions, Publisher};
/// use hub::event::NewEvent;
/// let publisher = Publisher::connect(&ConnectOptions::new("ws://127.0.0.1:7357")).await?;
/// let id = publisher.publish(NewEvent::new("task:build-42")).await?;
/// let ids = publisher.publish_batch(vec![NewEvent::new("a"), NewEvent::new("b")]).await?;
/// publisher.close().await?;
/// # Ok(()) }
/// ```
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    state: watch::Receiver<ConnState>,
    task: tokio::task::JoinHandle<()>,
    url: String,
    key_prefix: String,
    seq: AtomicU64,
    spare: Spare,
}

/// Events on their way to the publisher task: their JSON, encoded by the caller.
enum Outgoing {
    One {
        event: String,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    /// Several events of a stream, numbered from `first` on.
    Stream {
        first: u64,
        events: Vec<Encoded>,
        to: Outcomes,
    },
}

impl Outgoing {
    /// Moves the events into `pending`, in order.
    fn push_to(self, pending: &mut VecDeque<Pending>, replies: &mut Replies) {
        match self {
            Outgoing::One { event, reply } => pending.push_back(Pending {
                req: 0,
                event,
                reply: Reply::Ticket(reply),
            }),
            Outgoing::Stream { first, events, to } => {
                replies.stream_to(to);
                for (i, Encoded(event)) in (first..).zip(events) {
                    pending.push_back(Pending {
                        req: 0,
                        event,
                        reply: Reply::Stream(i),
                    });
                }
            }
        }
    }
}

impl Publisher {
    /// Starts a publisher that connects in the background: events sent before the
    /// connection is up wait for it (`hub-emit --run` starts the command at once).
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`ClientError::Usage`] for a URL that cannot be understood.
    pub fn start(opts: &ConnectOptions) -> Result<Publisher, ClientError> {
        let url = normalize_url(&opts.url)?;
        // As many hand-overs as events in flight: a caller that keeps at most WINDOW
        // events unanswered never waits here, even while the task is reconnecting
        // (slots are allocated as they are used).
        let (tx, rx) = mpsc::channel(WINDOW);
        let (state_tx, state) = watch::channel(ConnState::Connecting);
        let spare = Spare::default();
        let task = tokio::spawn(run_publisher(
            rx,
            state_tx,
            url.clone(),
            opts.token.clone(),
            opts.timeout,
            spare.clone(),
        ));
        Ok(Publisher {
            tx,
            state,
            task,
            url,
            key_prefix: random_prefix(),
            seq: AtomicU64::new(0),
            spare,
        })
    }

    /// Starts a publisher and waits until its first connection is up.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] after `opts.timeout`, [`ClientError::Refused`] when
    /// the hub refuses the connection (auth), [`ClientError::Usage`] for a bad URL.
    pub async fn connect(opts: &ConnectOptions) -> Result<Publisher, ClientError> {
        let p = Publisher::start(opts)?;
        let mut state = p.state.clone();
        let s = state
            .wait_for(|s| !matches!(s, ConnState::Connecting))
            .await
            .map(|s| s.clone())
            .unwrap_or(ConnState::Failed(ClientError::Closed));
        match s {
            ConnState::Failed(e) => Err(e),
            _ => Ok(p),
        }
    }

    /// The normalized URL (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The random prefix of generated keys (`PREFIX-SEQ`).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Validates `event`, gives it a key if it has none, and queues it. Waits only
    /// when [`WINDOW`] events are already in flight.
    ///
    /// # Errors
    /// [`ClientError::InvalidEvent`] (nothing is sent), or the error that made the
    /// publisher give up earlier.
    pub async fn send(&self, event: NewEvent) -> Result<Ticket, ClientError> {
        let Encoded(event) = self.encode(event)?;
        self.enqueue(event).await
    }

    /// Validates `event`, gives it a key if it has none, and encodes it, for
    /// [`InFlight::send`].
    ///
    /// # Errors
    /// [`ClientError::InvalidEvent`].
    pub fn encode(&self, mut event: NewEvent) -> Result<Encoded, ClientError> {
        event.validate()?;
        if event.key.is_none() {
            let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            event.key = Some(format!("{}-{n}", self.key_prefix));
        }
        Ok(Encoded(event_json(&event)))
    }

    /// The event made of `head`, a key of this publisher's and `data`, encoded as
    /// the JSON text it is (one allocation, nothing checked or escaped again), for
    /// [`InFlight::send`].
    pub fn encode_with_head(&self, head: &EventHead, data: RawJson<'_>) -> Encoded {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut key = itoa::Buffer::new();
        let out = self.spare.take().unwrap_or_default();
        Encoded(head.event_json(out, &self.key_prefix, key.format(n), data))
    }

    /// Queues encoded events, numbered `first`, `first + 1`, ..., all at once: one
    /// hand-over to the publisher task instead of one per event and no [`Ticket`]
    /// each (see [`InFlight`]). Their outcomes go to `to` (one stream per
    /// publisher: outcomes not yet reported go to the `to` of the latest call).
    ///
    /// # Errors
    /// The error that made the publisher give up earlier.
    async fn send_stream(
        &self,
        first: u64,
        events: Vec<Encoded>,
        to: &Outcomes,
    ) -> Result<(), ClientError> {
        if events.is_empty() {
            return Ok(());
        }
        let to = to.clone();
        if self
            .tx
            .send(Outgoing::Stream { first, events, to })
            .await
            .is_err()
        {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Queues an encoded event for the publisher task. The event is encoded on the
    /// caller's side; the task only frames it (alone, or with others queued beside
    /// it) and keeps it for a resend.
    async fn enqueue(&self, event: String) -> Result<Ticket, ClientError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Outgoing::One { event, reply }).await.is_err() {
            return Err(self.failure());
        }
        Ok(Ticket(rx))
    }

    /// Sends one event and waits for its id.
    pub async fn publish(&self, event: NewEvent) -> Result<u64, ClientError> {
        self.send(event).await?.await
    }

    /// Sends all events pipelined and waits for their ids, in order. Stops at the
    /// first error (events before it are stored).
    pub async fn publish_batch(&self, events: Vec<NewEvent>) -> Result<Vec<u64>, ClientError> {
        let mut tickets = VecDeque::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for ev in events {
            tickets.push_back(self.send(ev).await?);
            while let Some(r) = tickets.front_mut().and_then(Ticket::try_take) {
                tickets.pop_front();
                ids.push(r?);
            }
        }
        for t in tickets {
            ids.push(t.await?);
        }
        Ok(ids)
    }

    /// True once the publisher has given up (hub unreachable past the timeout, or a
    /// refusal of the connection); every later send fails at once.
    pub fn has_failed(&self) -> bool {
        matches!(*self.state.borrow(), ConnState::Failed(_))
    }

    /// Waits until every event sent so far is acknowledged (or failed), then closes
    /// the connection gracefully. With `timeout: None` and the hub down, this waits
    /// for the hub to come back; bound it with `tokio::time::timeout` if needed.
    ///
    /// # Errors
    /// The error that made the publisher give up, if it did.
    pub async fn close(self) -> Result<(), ClientError> {
        let Publisher {
            tx, task, state, ..
        } = self;
        drop(tx);
        let _ = task.await;
        match &*state.borrow() {
            ConnState::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    fn failure(&self) -> ClientError {
        match &*self.state.borrow() {
            ConnState::Failed(e) => e.clone(),
            _ => ClientError::Closed,
        }
    }
}

/// 12 random lowercase letters and digits: with a sequence number, a key no other
/// publisher will make.
fn random_prefix() -> String {
    let mut rng = fastrand::Rng::new();
    (0..12)
        .map(|_| {
            let n = rng.u8(0..36);
            if n < 10 {
                (b'0' + n) as char
            } else {
                (b'a' + n - 10) as char
            }
        })
        .collect()
}

/// An event sent (or to be sent again) and not yet acknowledged.
struct Pending {
    /// The `req` of the frame it went out in (shared by the events of a batch).
    req: u64,
    event: String,
    reply: Reply,
}

/// Most events in one batch `publish` frame.
const BATCH_EVENTS: usize = 512;
/// Most bytes of one batch `publish` frame (less if the hub takes less).
const BATCH_BYTES: usize = 64 << 10;

/// How the publisher task frames what it sends on one connection.
struct Framing {
    /// The largest frame the hub takes; `None`: one event per frame.
    max_frame: Option<usize>,
    /// The `req` of the last frame sent.
    req: u64,
}

impl Framing {
    /// Sends `pending[from..]` as frames: as many events per frame as fit (when the
    /// hub takes batch frames), each frame with a new `req`. Feeds; the caller flushes.
    async fn feed(
        &mut self,
        ws: &mut Ws,
        pending: &mut VecDeque<Pending>,
        from: usize,
    ) -> Result<(), tungstenite::Error> {
        // Frame overhead: `{"type":"publish","req":N,"events":[...]}`.
        let budget = self
            .max_frame
            .map_or(0, |m| m.saturating_sub(64).min(BATCH_BYTES));
        let mut i = from;
        while i < pending.len() {
            let mut end = i + 1;
            let mut size = pending[i].event.len();
            while end < pending.len() && end - i < BATCH_EVENTS {
                size += pending[end].event.len() + 1;
                if size > budget {
                    break;
                }
                end += 1;
            }
            self.req += 1;
            let req = self.req;
            let frame = if end - i == 1 {
                publish_frame(req, &pending[i].event)
            } else {
                let events = pending.range(i..end).map(|p| p.event.as_str());
                crate::protocol::publish_batch_frame(req, events, size)
            };
            for p in pending.range_mut(i..end) {
                p.req = req;
            }
            ws.feed(Message::text(frame)).await?;
            i = end;
        }
        Ok(())
    }
}

/// The publisher task: connect, (re)send what is pending, pipeline new events, match
/// acks to requests, reconnect on transient failures.
async fn run_publisher(
    mut rx: mpsc::Receiver<Outgoing>,
    state: watch::Sender<ConnState>,
    url: String,
    token: Option<String>,
    timeout: Option<Duration>,
    spare: Spare,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut replies = Replies {
        spare,
        ..Replies::default()
    };
    let mut backoff = Backoff::new();
    let mut rx_open = true;
    let mut was_connected = false;
    loop {
        let connected = connect_with_retry(
            &url,
            token.as_deref(),
            timeout,
            &mut backoff,
            |cause, delay| {
                tracing::info!(
                    "cannot reach the hub at {url}: {cause}; retrying in {}",
                    seconds(delay)
                )
            },
        )
        .await;
        let (mut ws, max_frame) = match connected {
            Ok(opened) => opened,
            Err(e) => {
                give_up(e, &mut pending, &mut rx, &state, &mut replies);
                return;
            }
        };
        if was_connected {
            tracing::warn!(
                "reconnected to {url}; sending {} unacknowledged event(s) again",
                pending.len()
            );
        }
        was_connected = true;
        state.send_replace(ConnState::Connected);
        let mut framing = Framing { max_frame, req: 0 };
        if framing.feed(&mut ws, &mut pending, 0).await.is_err() || ws.flush().await.is_err() {
            continue;
        }
        // The connection loop: returns Some(cause) to reconnect, None when done.
        let cause: Option<String> = loop {
            if !rx_open && pending.is_empty() {
                // Every event is acknowledged: nothing is left for the hub to
                // process, so the close frame goes without waiting for its reply.
                let _ = ws.close(None).await;
                return;
            }
            tokio::select! {
                biased;
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let again = handle_publisher_frame(&t, &mut pending, &url, &mut replies);
                        if !again.is_empty() {
                            // A batch refused as a whole: each event alone, to learn
                            // which one the hub refuses.
                            let from = pending.len();
                            pending.extend(again);
                            let single = framing.max_frame.take();
                            let sent = framing.feed(&mut ws, &mut pending, from).await;
                            framing.max_frame = single;
                            if let Err(e) = sent.and(ws.flush().await) {
                                break Some(e.to_string());
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = close_parts(frame);
                        if !close::is_retryable(code) {
                            let e = ClientError::Refused {
                                url: url.clone(),
                                code: close_code_name(code).into(),
                                message: describe_close(code, &reason),
                            };
                            give_up(e, &mut pending, &mut rx, &state, &mut replies);
                            return;
                        }
                        break Some(describe_close(code, &reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Some(e.to_string()),
                    None => break Some("connection closed".into()),
                },
                cmd = rx.recv(), if rx_open && pending.len() < WINDOW => {
                    let Some(first) = cmd else {
                        rx_open = false;
                        continue;
                    };
                    // Batch: everything already queued goes out in one flush, in as
                    // few frames as the hub allows.
                    let from = pending.len();
                    let mut item = Some(first);
                    while let Some(out) = item.take() {
                        out.push_to(&mut pending, &mut replies);
                        if pending.len() < WINDOW {
                            item = rx.try_recv().ok();
                        }
                    }
                    let sent = framing.feed(&mut ws, &mut pending, from).await;
                    if let Err(e) = sent.and(ws.flush().await) {
                        break Some(e.to_string());
                    }
                }
            }
        };
        if let Some(cause) = cause {
            tracing::warn!("lost the connection to {url} ({cause}); reconnecting");
            state.send_replace(ConnState::Connecting);
        }
    }
}

/// Matches an `ack` or an `error` frame to its pending event(s). Returns the events
/// of a batch frame the hub refused as a whole, to be sent again one by one.
fn handle_publisher_frame(
    text: &str,
    pending: &mut VecDeque<Pending>,
    url: &str,
    replies: &mut Replies,
) -> Vec<Pending> {
    let refused = |code: String, message: String| ClientError::Refused {
        url: url.to_string(),
        code,
        message,
    };
    if let Some((req, id)) = crate::protocol::parse_ack(text) {
        if let Some(pos) = pending.iter().position(|p| p.req == req)
            && let Some(p) = pending.remove(pos)
        {
            replies.send(p.reply, Ok(id));
            replies.flush();
        }
        return Vec::new();
    }
    if let Some(ack) = crate::protocol::parse_batch_ack(text) {
        let Some(pos) = pending.iter().position(|p| p.req == ack.req) else {
            return Vec::new();
        };
        let n = ack.ids.len().min(pending.len() - pos);
        let mut errors = ack.errors.into_iter().peekable();
        for (i, (p, id)) in pending.drain(pos..pos + n).zip(ack.ids).enumerate() {
            let r = match id {
                Some(id) => Ok(id),
                None => match errors.next_if(|e| e.index == i) {
                    Some(e) => Err(refused(e.code, e.message)),
                    None => Err(refused(
                        "internal".into(),
                        "refused without a reason".into(),
                    )),
                },
            };
            replies.send(p.reply, r);
            replies.recycle(p.event);
        }
        replies.flush();
        return Vec::new();
    }
    let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
        tracing::debug!("ignoring an unknown frame from the hub: {text}");
        return Vec::new();
    };
    let (req, result) = match frame {
        ServerFrame::Ack { req, id } => (req, Ok(id)),
        ServerFrame::Error {
            req, code, message, ..
        } => {
            if req.is_none() {
                tracing::warn!("the hub reported an error: {message} ({code})");
            }
            (req, Err(refused(code, message)))
        }
        _ => return Vec::new(),
    };
    let Some(req) = req.and_then(|r| r.as_u64()) else {
        return Vec::new();
    };
    let Some(pos) = pending.iter().position(|p| p.req == req) else {
        return Vec::new();
    };
    let end = pending
        .range(pos..)
        .position(|p| p.req != req)
        .map_or(pending.len(), |n| pos + n);
    if end - pos > 1 && result.is_err() {
        return pending.drain(pos..end).collect();
    }
    if let Some(p) = pending.remove(pos) {
        replies.send(p.reply, result);
        replies.flush();
    }
    Vec::new()
}

/// Fails every pending and queued event with `e` and stops accepting new ones.
fn give_up(
    e: ClientError,
    pending: &mut VecDeque<Pending>,
    rx: &mut mpsc::Receiver<Outgoing>,
    state: &watch::Sender<ConnState>,
    replies: &mut Replies,
) {
    state.send_replace(ConnState::Failed(e.clone()));
    for p in pending.drain(..) {
        replies.send(p.reply, Err(e.clone()));
    }
    rx.close();
    while let Ok(out) = rx.try_recv() {
        let mut left = VecDeque::new();
        out.push_to(&mut left, replies);
        for p in left {
            replies.send(p.reply, Err(e.clone()));
        }
    }
    replies.flush();
}

// ---------------------------------------------------------------------------------
// Subscriber
// ---------------------------------------------------------------------------------

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// New events only.
    #[default]
    Live,
    /// Every matching event with an id greater than this (`0`: all retained).
    Since(u64),
    /// The last N matching events, then live.
    Last(u64),
}

/// What to subscribe to.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// Topic globs, OR-ed; empty means every topic.
    pub topics: Vec<String>,
    /// `FIELD=VALUE` / `FIELD!=VALUE` filters, AND-ed.
    pub filters: Vec<String>,
    /// Event types, OR-ed; empty means every type.
    pub types: Vec<String>,
    pub start: Start,
    /// A cursor name kept by the hub: the subscription starts after the stored cursor
    /// if there is one, else at `start`. Moved with [`Subscriber::save_cursor`].
    pub durable: Option<String>,
}

/// What [`Subscriber::next`] hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum SubEvent {
    /// The hub confirmed the subscription (after each (re)connect).
    Subscribed { last_id: u64 },
    /// One event, as the hub sent it.
    Event(Received),
    /// Replay is over; live events follow.
    Live { last_id: u64 },
    /// Events `from..=to` left retention before they could be delivered.
    Gap { from: u64, to: u64, reason: String },
    /// The connection dropped (or an attempt failed); the next call waits `delay`
    /// and tries again.
    Reconnecting { cause: String, delay: Duration },
}

/// One event as received: its id and its JSON exactly as the hub sent it (compact,
/// one line). Nothing else is parsed unless asked for with
/// [`parse`](Received::parse): printing an event as JSON needs no tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    id: u64,
    /// The frame the event came in, and where the event's JSON is in it.
    text: Utf8Bytes,
    range: std::ops::Range<usize>,
}

impl Received {
    /// From an event's JSON text (the text of a frame sliced out, or re-encoded).
    fn new(text: Utf8Bytes, range: std::ops::Range<usize>) -> Result<Received, String> {
        let json = &text.as_str()[range.clone()];
        let id = match event_id(json) {
            Some(id) => id,
            None => {
                #[derive(serde::Deserialize)]
                struct IdOnly {
                    id: u64,
                }
                serde_json::from_str::<IdOnly>(json)
                    .map_err(|e| e.to_string())?
                    .id
            }
        };
        Ok(Received { id, text, range })
    }

    /// The event's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The event's JSON as the hub sent it.
    pub fn json(&self) -> &str {
        &self.text.as_str()[self.range.clone()]
    }

    /// The whole event (for filters, other formats, progress bars).
    ///
    /// # Errors
    /// The JSON is not an event this client can read.
    pub fn parse(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_str(self.json())
    }
}

/// One subscription over a reconnecting connection.
///
/// Events are handed out in id order, each once: after a reconnect the subscription
/// resumes `since` the last event handed out (events at or below it are dropped if
/// the hub sends them again).
pub struct Subscriber {
    url: String,
    token: Option<String>,
    timeout: Option<Duration>,
    reconnect: bool,
    spec: SubscribeOptions,
    ws: Option<Ws>,
    /// The last event handed out.
    last_id: Option<u64>,
    /// For a live start: the hub's newest id when the subscription was confirmed, so
    /// a reconnect before any event resumes there instead of losing the outage.
    live_from: Option<u64>,
    backoff: Backoff,
    sleep: Option<Duration>,
    outage_start: Option<Instant>,
    /// `{"type":"event","sub":"s1","event":`: event frames are sliced, not re-encoded.
    event_prefix: String,
    /// The same for `events` frames.
    events_prefix: String,
    /// Whether the hub sends `events` frames (it named its frame limit).
    batches: bool,
    /// Events of an `events` frame not handed out yet.
    queued: VecDeque<Received>,
    /// The newest event received (handed out or queued): resume after it.
    seen_id: Option<u64>,
}

/// The subscription name this client uses on its connection.
const SUB: &str = "s1";

impl Subscriber {
    /// Connects and subscribes. The first connection is retried until
    /// `opts.timeout`; with `reconnect` false, a single attempt is made and a later
    /// drop ends [`next`](Subscriber::next) with [`ClientError::Disconnected`].
    ///
    /// # Errors
    /// [`ClientError::Unreachable`], [`ClientError::Refused`], [`ClientError::Usage`].
    pub async fn connect(
        opts: &ConnectOptions,
        spec: SubscribeOptions,
        reconnect: bool,
    ) -> Result<Subscriber, ClientError> {
        let url = normalize_url(&opts.url)?;
        let mut backoff = Backoff::new();
        let timeout = if reconnect {
            opts.timeout
        } else {
            Some(Duration::ZERO)
        };
        let (ws, max_frame) = connect_with_retry(
            &url,
            opts.token.as_deref(),
            timeout,
            &mut backoff,
            |c, d| {
                tracing::info!(
                    "cannot reach the hub at {url}: {c}; retrying in {}",
                    seconds(d)
                )
            },
        )
        .await?;
        let mut s = Subscriber {
            url,
            token: opts.token.clone(),
            timeout: opts.timeout,
            reconnect,
            spec,
            ws: Some(ws),
            last_id: None,
            live_from: None,
            backoff,
            sleep: None,
            outage_start: None,
            event_prefix: crate::protocol::event_frame_prefix(&format!("\"{SUB}\"")),
            events_prefix: crate::protocol::events_frame_prefix(&format!("\"{SUB}\"")),
            batches: max_frame.is_some(),
            queued: VecDeque::new(),
            seen_id: None,
        };
        if let Err(e) = s.send_subscribe().await {
            // Let next() find the drop and reconnect (or report it).
            tracing::debug!("subscribe failed: {e}");
        }
        Ok(s)
    }

    /// The normalized URL (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long a later outage may last before [`next`](Subscriber::next) gives up
    /// with [`ClientError::Unreachable`]; `None`: reconnect for ever.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The id of the last event handed out.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The subscribe frame for this (re)connect.
    fn subscribe_frame(&self) -> ClientFrame {
        let (since, last, durable) = match self.seen_id {
            // Resume after what was handed out. The durable cursor in the hub may lag
            // behind it, so it is not used again.
            Some(id) => (Some(id), None, None),
            None => {
                let (since, last) = match (self.spec.start, self.live_from) {
                    (Start::Live, Some(l)) => (Some(l), None),
                    (Start::Live, None) => (None, None),
                    (Start::Since(s), _) => (Some(s), None),
                    (Start::Last(n), _) => (None, Some(n)),
                };
                (since, last, self.spec.durable.clone())
            }
        };
        ClientFrame::Subscribe {
            sub: SUB.into(),
            topics: self.spec.topics.clone(),
            filters: self.spec.filters.clone(),
            types: self.spec.types.clone(),
            since,
            last,
            durable,
            batch: self.batches,
        }
    }

    async fn send_subscribe(&mut self) -> Result<(), tungstenite::Error> {
        let text = serde_json::to_string(&self.subscribe_frame()).expect("a frame serializes");
        match &mut self.ws {
            Some(ws) => ws.send(Message::text(text)).await,
            None => Ok(()),
        }
    }

    /// The next thing that happened: an event, a confirmation, a reconnect notice.
    ///
    /// # Cancel safety
    /// Cancel-safe while connected (no frame is lost); a cancelled reconnect is
    /// simply attempted again by the next call.
    ///
    /// # Errors
    /// [`ClientError::Refused`] (a refusal close code or an `error` frame for this
    /// subscription), [`ClientError::Unreachable`] when an outage outlasts the
    /// timeout, [`ClientError::Disconnected`] on a drop without `reconnect`.
    pub async fn next(&mut self) -> Result<SubEvent, ClientError> {
        if let Some(e) = self.take_queued() {
            return Ok(e);
        }
        loop {
            if self.ws.is_none() {
                if let Some(d) = self.sleep.take() {
                    tokio::time::sleep(d).await;
                }
                let outage = *self.outage_start.get_or_insert_with(Instant::now);
                match open(&self.url, self.token.as_deref(), ATTEMPT_LIMIT).await {
                    Ok((ws, max_frame)) => {
                        self.ws = Some(ws);
                        self.batches = max_frame.is_some();
                        self.backoff.reset();
                        self.outage_start = None;
                        if let Err(e) = self.send_subscribe().await {
                            if let Some(r) = self.dropped(e.to_string()) {
                                return r;
                            }
                            continue;
                        }
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Transient(cause)) => {
                        if let Some(t) = self.timeout
                            && outage.elapsed() >= t
                        {
                            return Err(ClientError::Unreachable {
                                url: self.url.clone(),
                                cause,
                                waited: round_duration(outage.elapsed()),
                            });
                        }
                        let delay = self.backoff.next_delay();
                        self.sleep = Some(delay);
                        return Ok(SubEvent::Reconnecting { cause, delay });
                    }
                }
            }
            let msg = self.ws.as_mut().expect("connected").next().await;
            if let Some(r) = self.handle(msg) {
                return r;
            }
        }
    }

    /// The next thing that is already received, without waiting: `None` when
    /// nothing is pending (time to flush output).
    pub fn next_ready(&mut self) -> Option<Result<SubEvent, ClientError>> {
        if let Some(e) = self.take_queued() {
            return Some(Ok(e));
        }
        loop {
            let msg = self.ws.as_mut()?.next().now_or_never()?;
            if let Some(r) = self.handle(msg) {
                return Some(r);
            }
        }
    }

    /// Tells the hub that everything up to `id` has been printed, for the durable
    /// cursor. Does nothing without `durable`; a failure to send is left for
    /// [`next`](Subscriber::next) to find.
    pub async fn save_cursor(&mut self, id: u64) {
        let (Some(name), Some(ws)) = (&self.spec.durable, &mut self.ws) else {
            return;
        };
        let frame: ClientFrame = ClientFrame::Cursor {
            durable: name.clone(),
            id,
        };
        let text = serde_json::to_string(&frame).expect("a frame serializes");
        let _ = ws.send(Message::text(text)).await;
    }

    /// Closes the connection gracefully: frames sent before (a cursor) are processed
    /// by the hub first.
    pub async fn close(mut self) {
        if let Some(ws) = &mut self.ws {
            close_gracefully(ws).await;
        }
    }

    /// Handles one received message: `Some` when it is something to hand out.
    fn handle(
        &mut self,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<Result<SubEvent, ClientError>> {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = close_parts(frame);
                if !close::is_retryable(code) {
                    self.ws = None;
                    return Some(Err(ClientError::Refused {
                        url: self.url.clone(),
                        code: close_code_name(code).into(),
                        message: describe_close(code, &reason),
                    }));
                }
                return self.dropped(describe_close(code, &reason));
            }
            Some(Ok(_)) => return None,
            Some(Err(e)) => return self.dropped(e.to_string()),
            None => return self.dropped("connection closed".into()),
        };
        if let Some(range) = crate::protocol::split_event_frame(&text, &self.event_prefix) {
            return self.event(Received::new(text, range));
        }
        if let Some(ranges) = crate::protocol::split_events_frame(&text, &self.events_prefix) {
            for range in ranges {
                self.queue(Received::new(text.clone(), range));
            }
            return self.take_queued().map(Ok);
        }
        let frame = match serde_json::from_str::<ServerFrame>(&text) {
            Ok(f) => f,
            Err(_) => {
                tracing::debug!("ignoring an unknown frame from the hub: {text}");
                return None;
            }
        };
        match frame {
            ServerFrame::Subscribed { last_id, .. } => {
                if self.spec.start == Start::Live && self.live_from.is_none() {
                    self.live_from = Some(last_id);
                }
                Some(Ok(SubEvent::Subscribed { last_id }))
            }
            ServerFrame::Live { last_id, .. } => Some(Ok(SubEvent::Live { last_id })),
            ServerFrame::Gap {
                from, to, reason, ..
            } => Some(Ok(SubEvent::Gap { from, to, reason })),
            ServerFrame::Event { event, .. } => {
                let json = Utf8Bytes::from(event.to_string());
                let range = 0..json.len();
                self.event(Received::new(json, range))
            }
            ServerFrame::Events { events, .. } => {
                for event in events {
                    let json = Utf8Bytes::from(event.to_string());
                    let range = 0..json.len();
                    self.queue(Received::new(json, range));
                }
                self.take_queued().map(Ok)
            }
            ServerFrame::Error {
                code, message, req, ..
            } => {
                if req.is_some() {
                    return None;
                }
                Some(Err(ClientError::Refused {
                    url: self.url.clone(),
                    code,
                    message,
                }))
            }
            ServerFrame::Ack { .. } | ServerFrame::Pong => None,
        }
    }

    /// Hands out an event unless it was received before.
    fn event(
        &mut self,
        received: Result<Received, String>,
    ) -> Option<Result<SubEvent, ClientError>> {
        self.queue(received);
        self.take_queued().map(Ok)
    }

    /// Queues an event to hand out unless it was received before.
    fn queue(&mut self, received: Result<Received, String>) {
        let event = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("ignoring an event the client cannot read: {e}");
                return;
            }
        };
        if self.seen_id.is_some_and(|seen| event.id <= seen) {
            return;
        }
        self.seen_id = Some(event.id);
        self.queued.push_back(event);
    }

    /// The next queued event, now handed out.
    fn take_queued(&mut self) -> Option<SubEvent> {
        let event = self.queued.pop_front()?;
        self.last_id = Some(event.id);
        Some(SubEvent::Event(event))
    }

    /// The connection is gone: plan a reconnect, or fail without `reconnect`.
    fn dropped(&mut self, cause: String) -> Option<Result<SubEvent, ClientError>> {
        self.ws = None;
        if !self.reconnect {
            return Some(Err(ClientError::Disconnected {
                url: self.url.clone(),
                cause,
            }));
        }
        self.outage_start = Some(Instant::now());
        let delay = self.backoff.next_delay();
        self.sleep = Some(delay);
        Some(Ok(SubEvent::Reconnecting { cause, delay }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_spellings() {
        for (given, want) in [
            ("ws://127.0.0.1:7357", "ws://127.0.0.1:7357/ws"),
            ("ws://127.0.0.1:7357/", "ws://127.0.0.1:7357/ws"),
            ("ws://127.0.0.1:7357/ws", "ws://127.0.0.1:7357/ws"),
            ("http://127.0.0.1:7357", "ws://127.0.0.1:7357/ws"),
            ("HTTP://localhost:1/", "ws://localhost:1/ws"),
            ("localhost:7357", "ws://localhost:7357/ws"),
            ("ws://h:1/hub", "ws://h:1/hub/ws"),
            ("ws://h:1?x=1", "ws://h:1/ws?x=1"),
            ("ws://[::1]:7357/ws/", "ws://[::1]:7357/ws"),
        ] {
            assert_eq!(normalize_url(given).unwrap(), want, "{given}");
        }
        for bad in ["", "ws://", "wss://h:1", "ftp://h", "https://h"] {
            let e = normalize_url(bad).unwrap_err();
            assert!(e.to_string().contains("accepted: ws://"), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_doubles_to_30s_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(400) && delays[0] <= Duration::from_millis(600));
        assert!(
            delays[1] >= Duration::from_millis(800) && delays[1] <= Duration::from_millis(1200)
        );
        for d in &delays {
            assert!(*d <= Duration::from_secs(36), "{d:?}");
        }
        assert!(delays[9] >= Duration::from_secs(24));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Publisher>();
        shared::<Subscriber>();
        shared::<ClientError>();
    }

    #[test]
    fn keys_are_random_per_publisher() {
        let a = random_prefix();
        assert_eq!(a.len(), 12);
        assert_ne!(a, random_prefix());
    }

    #[test]
    fn received_events_keep_their_json() {
        let json =
            r#"{"id":42,"ts":"2026-11-21T22:30:00.123Z","topic":"t","type":"m","data":{"id":1}}"#;
        let frame = format!(r#"{{"type":"event","sub":"s1","event":{json}}}"#);
        let start = frame.find(r#"{"id""#).unwrap();
        let range = start..frame.len() - 1;
        let r = Received::new(Utf8Bytes::from(frame), range).unwrap();
        assert_eq!((r.id(), r.json()), (42, json));
        let ev = r.parse().unwrap();
        assert_eq!((ev.id, ev.topic.as_str()), (42, "t"));
        // Another field order still finds the id.
        let other = r#"{"topic":"t","id":7,"ts":"2026-11-21T22:30:00.123Z","type":"m"}"#;
        let r = Received::new(Utf8Bytes::from(other), 0..other.len()).unwrap();
        assert_eq!(r.id(), 7);
        assert!(Received::new(Utf8Bytes::from("{}"), 0..2).is_err());
        assert_eq!(event_id(r#"{"id":,"#), None);
        assert_eq!(event_id(r#"{"id":-1,"#), None);
    }

    #[test]
    fn acks_and_errors_reach_their_tickets() {
        let mut pending = VecDeque::new();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        pending.push_back(Pending {
            req: 1,
            event: "x".into(),
            reply: Reply::Ticket(tx1),
        });
        pending.push_back(Pending {
            req: 2,
            event: "y".into(),
            reply: Reply::Ticket(tx2),
        });
        let r = &mut Replies::default();
        handle_publisher_frame(
            r#"{"type":"error","code":"too_large","message":"too big","req":2}"#,
            &mut pending,
            "ws://h/ws",
            r,
        );
        handle_publisher_frame(
            r#"{"type":"ack","req":1,"id":43}"#,
            &mut pending,
            "ws://h/ws",
            r,
        );
        assert!(pending.is_empty());
        assert_eq!(rx1.try_recv().unwrap(), Ok(43));
        assert!(matches!(
            rx2.try_recv().unwrap(),
            Err(ClientError::Refused { code, .. }) if code == "too_large"
        ));
    }

    #[tokio::test]
    async fn events_are_written_into_spare_strings() {
        let publisher = Publisher::start(&ConnectOptions::new("ws://127.0.0.1:9/ws")).unwrap();
        let head = EventHead::new(&NewEvent::new("t")).unwrap();
        let raw = RawJson::new(r#"{"a":1}"#).unwrap();
        let fresh = publisher.encode_with_head(&head, raw);
        // A big string is not kept; one of the usual size is.
        let big = String::with_capacity(Spare::MAX_LEN + 1);
        publisher
            .spare
            .put(&mut vec![String::with_capacity(2000), big]);
        let reused = publisher.encode_with_head(&head, raw);
        assert!(reused.0.capacity() >= 2000 && fresh.0.capacity() < 2000);
        assert_eq!(fresh.0.replace("-1\"", "-2\""), reused.0);
        assert!(publisher.spare.take().is_none());
    }

    #[test]
    fn batch_acks_reach_every_ticket_of_the_frame() {
        let mut pending = VecDeque::new();
        let mut rxs = Vec::new();
        for (req, event) in [(3, "a"), (3, "b"), (3, "c"), (4, "d"), (4, "e")] {
            let (tx, rx) = oneshot::channel();
            pending.push_back(Pending {
                req,
                event: event.into(),
                reply: Reply::Ticket(tx),
            });
            rxs.push(rx);
        }
        let url = "ws://h/ws";
        let r = &mut Replies::default();
        let again = handle_publisher_frame(
            r#"{"type":"ack","req":3,"ids":[10,null,11],"errors":[{"index":1,"code":"too_large","message":"big"}]}"#,
            &mut pending,
            url,
            r,
        );
        assert!(again.is_empty());
        assert_eq!(rxs[0].try_recv().unwrap(), Ok(10));
        assert!(matches!(
            rxs[1].try_recv().unwrap(),
            Err(ClientError::Refused { code, message, .. }) if code == "too_large" && message == "big"
        ));
        assert_eq!(rxs[2].try_recv().unwrap(), Ok(11));
        // The answered events' strings are kept, emptied, for the next ones.
        let spare: Vec<String> = std::mem::take(&mut r.spare.0.lock().unwrap());
        assert_eq!(spare.len(), 3);
        assert!(spare.iter().all(|s| s.is_empty() && s.capacity() > 0));
        // A batch refused as a whole comes back to be sent one by one.
        let again = handle_publisher_frame(
            r#"{"type":"error","code":"bad_request","message":"events[1]: bad","req":4}"#,
            &mut pending,
            url,
            r,
        );
        let events: Vec<_> = again.iter().map(|p| p.event.as_str()).collect();
        assert_eq!(events, ["d", "e"]);
        assert!(pending.is_empty());
    }

    /// Stream events get their outcomes in runs: one message per run of
    /// consecutive numbers answered together, a new run where the numbers jump.
    #[test]
    fn stream_outcomes_come_in_runs() {
        let (to, mut rx) = mpsc::unbounded_channel();
        let mut pending = VecDeque::new();
        let mut replies = Replies::default();
        let events = |n: usize| (0..n).map(|i| Encoded(format!("e{i}"))).collect();
        Outgoing::Stream {
            first: 0,
            events: events(3),
            to: to.clone(),
        }
        .push_to(&mut pending, &mut replies);
        Outgoing::Stream {
            first: 7,
            events: events(2),
            to,
        }
        .push_to(&mut pending, &mut replies);
        for (i, p) in pending.iter_mut().enumerate() {
            p.req = if i < 4 { 1 } else { 2 };
        }
        let url = "ws://h/ws";
        handle_publisher_frame(
            r#"{"type":"ack","req":1,"ids":[5,6,null,8],"errors":[{"index":2,"code":"too_large","message":"big"}]}"#,
            &mut pending,
            url,
            &mut replies,
        );
        let (first, rs) = rx.try_recv().unwrap();
        assert_eq!(first, 0);
        assert_eq!(rs[..2], [Ok(5), Ok(6)]);
        assert!(matches!(&rs[2], Err(ClientError::Refused { code, .. }) if code == "too_large"));
        assert_eq!(rx.try_recv().unwrap(), (7, vec![Ok(8)]));
        handle_publisher_frame(
            r#"{"type":"ack","req":2,"id":9}"#,
            &mut pending,
            url,
            &mut replies,
        );
        assert_eq!(rx.try_recv().unwrap(), (8, vec![Ok(9)]));
        assert!(rx.try_recv().is_err() && pending.is_empty());
    }

    /// Outcomes that come out of order are taken out in the order sent; once
    /// finished, events the publisher can no longer answer fail with Closed.
    #[tokio::test]
    async fn in_flight_events_come_out_in_order() {
        let mut inf: InFlight<&str> = InFlight::default();
        for what in ["a", "b", "c", "d"] {
            inf.items.push_back((what, None));
        }
        let to = inf.to.clone().unwrap();
        to.send((2, vec![Ok(12)])).unwrap();
        inf.collect();
        assert!(inf.pop_answered().is_none(), "a and b are not in yet");
        to.send((0, vec![Ok(10), Ok(11)])).unwrap();
        inf.answered().await;
        let got: Vec<_> = std::iter::from_fn(|| inf.pop_answered()).collect();
        assert_eq!(got, [("a", Ok(10)), ("b", Ok(11)), ("c", Ok(12))]);
        assert_eq!(inf.len(), 1);
        drop(to);
        inf.finish();
        inf.answered().await;
        assert_eq!(inf.pop_answered(), Some(("d", Err(ClientError::Closed))));
        assert!(inf.is_empty());
    }

    /// Reads the next `publish` frame from a mock hub connection.
    async fn next_publish(ws: &mut WebSocketStream<TcpStream>) -> (u64, NewEvent) {
        loop {
            let msg = ws.next().await.unwrap().unwrap();
            if let Message::Text(t) = msg
                && let Ok(ClientFrame::Publish { req, event }) = serde_json::from_str(&t)
            {
                return (req.unwrap().as_u64().unwrap(), event);
            }
        }
    }

    #[tokio::test]
    async fn unacked_events_are_resent_with_the_same_key() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = tokio::spawn(async move {
            let mut keys = Vec::new();
            // First connection: ack the first event, drop before acking the second.
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let (req, ev) = next_publish(&mut ws).await;
            keys.push(ev.key.unwrap());
            let ack = format!(r#"{{"type":"ack","req":{req},"id":1}}"#);
            ws.send(Message::text(ack)).await.unwrap();
            let (_, ev) = next_publish(&mut ws).await;
            keys.push(ev.key.unwrap());
            drop(ws);
            // Second connection: the second event again, with its key.
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let (req, ev) = next_publish(&mut ws).await;
            keys.push(ev.key.unwrap());
            let ack = format!(r#"{{"type":"ack","req":{req},"id":2}}"#);
            ws.send(Message::text(ack)).await.unwrap();
            let _ = ws.next().await;
            keys
        });
        let opts = ConnectOptions::new(format!("http://{addr}"));
        let p = Publisher::connect(&opts).await.unwrap();
        let batch = vec![NewEvent::new("a"), NewEvent::new("b")];
        let ids = tokio::time::timeout(Duration::from_secs(10), p.publish_batch(batch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids, vec![1, 2]);
        p.close().await.unwrap();
        let keys = hub.await.unwrap();
        assert_ne!(keys[0], keys[1]);
        assert_eq!(keys[1], keys[2], "the resent event keeps its key");
    }

    #[tokio::test]
    async fn unreachable_hub_gives_up_after_timeout() {
        // A port nothing listens on: bind, read the port, drop.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = ConnectOptions::new(format!("ws://127.0.0.1:{port}"));
        opts.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let err = Publisher::connect(&opts).await.err().unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        match &err {
            ClientError::Unreachable { url, .. } => assert!(url.contains(&port.to_string())),
            other => panic!("{other:?}"),
        }
        let p = Publisher::start(&opts).unwrap();
        let t = p.send(NewEvent::new("t")).await.unwrap();
        assert!(matches!(t.await, Err(ClientError::Unreachable { .. })));
        assert!(p.has_failed());
        assert!(p.send(NewEvent::new("t")).await.is_err());
    }
}
