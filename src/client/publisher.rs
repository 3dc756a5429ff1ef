//! [`Publisher`]: a handle to the task that owns one reconnecting connection,
//! frames what it is given (alone or in batches), matches acks to events and
//! sends again what was not acknowledged.

use super::connect::{
    Backoff, Hubs, Ws, close_code_name, close_parts, connect_with_retry, describe_close, seconds,
};
use super::in_flight::{Encoded, Outcomes, Replies, Reply, WINDOW};
use super::pool::Spare;
use super::{ClientError, ConnectOptions};
use crate::event::NewEvent;
use crate::protocol::{EventHead, RawJson};
use crate::protocol::{ServerFrame, close, event_json, publish_frame};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, Message};

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
        let hubs = Hubs::parse(&opts.url)?;
        let url = hubs.all();
        // As many hand-overs as events in flight: a caller that keeps at most WINDOW
        // events unanswered never waits here, even while the task is reconnecting
        // (slots are allocated as they are used).
        let (tx, rx) = mpsc::channel(WINDOW);
        let (state_tx, state) = watch::channel(ConnState::Connecting);
        let spare = Spare::default();
        let task = tokio::spawn(run_publisher(
            rx,
            state_tx,
            hubs,
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

    /// The normalized URL (for messages); every hub, `ws://a/ws, ws://b/ws`, for a
    /// list.
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
    /// [`InFlight::send`](super::InFlight::send).
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
    /// [`InFlight::send`](super::InFlight::send).
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
    pub(super) async fn send_stream(
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
pub(super) fn random_prefix() -> String {
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
    mut hubs: Hubs,
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
            &mut hubs,
            token.as_deref(),
            timeout,
            &mut backoff,
            |url, cause, delay| {
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
        let url = hubs.current().to_string();
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
            hubs.dropped();
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
            match hubs.dropped() {
                Some(next) => tracing::warn!(
                    "lost the connection to {url} ({cause}); moving to hub {next}, sending {} unacknowledged event(s) again there",
                    pending.len()
                ),
                None => tracing::warn!("lost the connection to {url} ({cause}); reconnecting"),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientFrame;
    use std::time::Instant;
    use tokio::net::TcpStream;
    use tokio_tungstenite::WebSocketStream;

    #[test]
    fn keys_are_random_per_publisher() {
        let a = random_prefix();
        assert_eq!(a.len(), 12);
        assert_ne!(a, random_prefix());
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

    /// With two hubs, an event hub A took and dropped unacknowledged is sent to hub
    /// B with the same key.
    #[tokio::test]
    async fn a_drop_moves_to_the_next_hub_with_the_same_key() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let urls = format!("{},{}", a.local_addr().unwrap(), b.local_addr().unwrap());
        let hub_a = tokio::spawn(async move {
            let (s, _) = a.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let (_, ev) = next_publish(&mut ws).await;
            drop(ws);
            ev.key.unwrap()
        });
        let hub_b = tokio::spawn(async move {
            let (s, _) = b.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let (req, ev) = next_publish(&mut ws).await;
            let ack = format!(r#"{{"type":"ack","req":{req},"id":7}}"#);
            ws.send(Message::text(ack)).await.unwrap();
            let _ = ws.next().await;
            ev.key.unwrap()
        });
        let p = Publisher::connect(&ConnectOptions::new(urls))
            .await
            .unwrap();
        let id = tokio::time::timeout(Duration::from_secs(10), p.publish(NewEvent::new("a")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id, 7, "acknowledged by hub B");
        p.close().await.unwrap();
        let (key_a, key_b) = (hub_a.await.unwrap(), hub_b.await.unwrap());
        assert_eq!(key_a, key_b, "the resent event keeps its key");
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
