//! One WebSocket connection: the frame loop, its subscriptions, pipelined publishes,
//! heartbeat, idle timeout and close codes.
//!
//! Tasks per connection: the reader (this loop), one writer that batches outgoing
//! frames into as few socket writes as it can, one publisher that turns pipelined
//! `publish` frames into batched appends (without waiting for one to be written
//! before it submits the next), one acker that answers those the writer thread
//! writes, in order (started with the first such batch), and one task
//! per subscription that moves deliveries from the broker into the writer's queue.
//! The writer's queue is bounded: a subscriber that cannot keep up stops taking from
//! its broker outbox, and the broker moves it to catch-up from the log.

use super::access::Authorized;
use super::conn::OverLimit;
use super::http::parse_query;
use super::{AppState, error_response};
use crate::broker::Submitted;
use crate::broker::subscription::{Delivery, Subscription};
use crate::event::{EventError, Prepared, RawEvent};
use crate::protocol::{
    BatchOutcome, ClientFrame, ErrorCode, FrameError, MAX_FRAME_HEADER, ServerFrame, Subscribe,
    batch_ack_frame, close, event_frame,
};
use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A frame queued for the socket. Boxed so that the queue's first block (32
/// slots, allocated with the queue) costs 256 bytes per connection, not 1.3 KB.
type Out = Box<Message>;

/// Frames queued for the socket per connection.
const OUT_QUEUE: usize = 256;
/// Initial read buffer per connection; it grows for large frames. Kept small
/// because idle connections are the common case (W5 in BENCHMARKS.md).
const READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before a socket write (the writer task
/// flushes whenever its queue is empty, so this adds no latency).
const WRITE_BUFFER: usize = 64 << 10;
/// Bytes tungstenite may hold for a socket that does not drain; past this the
/// connection's queue backs up and its subscriptions fall back to the log.
const MAX_WRITE_BUFFER: usize = 1 << 20;
/// Pipelined publishes queued per connection before the reader waits.
const PUBLISH_QUEUE: usize = 4096;
/// Events a connection queues for its publisher before it gives way to it.
const YIELD_EVERY: usize = 256;

/// What the connection is told before it is served.
enum Refusal {
    None,
    Close(u16, String),
}

pub async fn upgrade(
    State(app): State<AppState>,
    Extension(Authorized(authorized)): Extension<Authorized>,
    over_limit: Option<Extension<OverLimit>>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let parsed = parse_query(
        query.as_deref(),
        &["topic", "type", "where", "since", "last", "durable"],
    );
    let Ok(ws) = ws else {
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "/ws takes WebSocket upgrades only (Connection: Upgrade, Upgrade: websocket); for polling use GET /events",
        );
    };
    let refusal = if !authorized {
        Refusal::Close(
            close::UNAUTHORIZED,
            "unauthorized: missing or wrong token".into(),
        )
    } else if over_limit.is_some() {
        Refusal::Close(
            close::TOO_MANY,
            format!(
                "too many connections (--max-connections {})",
                app.cfg.max_connections
            ),
        )
    } else {
        match &parsed {
            Err(m) => Refusal::Close(close::BAD_REQUEST, m.clone()),
            Ok(_) => Refusal::None,
        }
    };
    let initial = parsed.ok().filter(|q| q.any).map(|q| q.spec);
    let limit = app.cfg.max_event_bytes + 4096;
    let mut response = ws
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_failed_upgrade(|e| tracing::debug!("WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| {
            let tracker = app.tracker.clone();
            tracker.track_future(async move {
                connection(app, socket, refusal, initial).await;
            })
        });
    // Tells a client how large a batch `publish` frame may be.
    response
        .headers_mut()
        .insert(MAX_FRAME_HEADER, axum::http::HeaderValue::from(limit));
    response
}

fn close_msg(code: u16, reason: &str) -> Out {
    // A close reason is at most 123 bytes.
    let mut r = reason.to_string();
    while r.len() > 123 {
        r.pop();
    }
    Box::new(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(r),
    })))
}

fn text(s: String) -> Out {
    Box::new(Message::Text(Utf8Bytes::from(s)))
}

async fn connection(
    app: AppState,
    socket: WebSocket,
    refusal: Refusal,
    initial: Option<Subscribe>,
) {
    let (mut sink, mut stream) = socket.split();
    if let Refusal::Close(code, reason) = refusal {
        let _ = sink.send(*close_msg(code, &reason)).await;
        return;
    }
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let closing = matches!(*msg, Message::Close(_));
            if sink.feed(*msg).await.is_err() {
                return;
            }
            if !closing {
                while let Ok(m) = out_rx.try_recv() {
                    let closing = matches!(*m, Message::Close(_));
                    if sink.feed(*m).await.is_err() {
                        return;
                    }
                    if closing {
                        break;
                    }
                }
            }
            if sink.flush().await.is_err() || closing {
                let _ = sink.close().await;
                return;
            }
        }
    });
    let mut conn = Conn {
        app: app.clone(),
        out: out_tx.clone(),
        subs: HashMap::new(),
        publish: None,
    };
    if let Some(spec) = initial {
        Box::pin(conn.subscribe("q".into(), spec)).await;
    }
    let idle = app.cfg.idle_timeout;
    // One timer per connection: each ping tick also checks for idleness, so a
    // silent client is closed between idle and idle + idle/3.
    let ping_every = (idle / 3)
        .min(Duration::from_secs(30))
        .max(Duration::from_millis(100));
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_seen = Instant::now();
    let end: Option<(u16, String)> = loop {
        tokio::select! {
            msg = stream.next() => {
                last_seen = Instant::now();
                match msg {
                    None => break None,
                    Some(Err(e)) => {
                        if is_over_size(e) {
                            break Some((close::TOO_BIG, format!("frame over the limit of {} bytes", app.cfg.max_event_bytes + 4096)));
                        }
                        break None;
                    }
                    // Boxed: its state is large and only lives while a frame is handled,
                    // so an idle connection does not carry it.
                    Some(Ok(Message::Text(t))) => Box::pin(conn.handle_text(t.as_str())).await,
                    Some(Ok(Message::Binary(_))) => {
                        break Some((close::UNSUPPORTED, "binary frames are not accepted: send JSON text frames".into()));
                    }
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(_)) => {} // ping (answered by the library) or pong
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= idle {
                    break Some((close::GOING_AWAY, format!("idle for {}s", idle.as_secs())));
                }
                let _ = conn.out.try_send(Box::new(Message::Ping(Default::default())));
            }
            _ = app.shutdown.cancelled() => {
                break Some((close::GOING_AWAY, "the hub is shutting down".into()));
            }
        }
    };
    // Boxed for the same reason as handle_text: only a closing connection needs it.
    Box::pin(finish(conn, out_tx, writer, stream, end)).await;
}

/// Ends a connection: stops its subscriptions, lets pending acks and the close
/// frame out, then waits briefly for the client's Close.
async fn finish(
    mut conn: Conn,
    out_tx: mpsc::Sender<Out>,
    writer: JoinHandle<()>,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    end: Option<(u16, String)>,
) {
    for (_, h) in conn.subs.drain() {
        h.abort();
    }
    if let Some(Publishing {
        tx,
        task: publisher,
        ..
    }) = conn.publish.take().map(|b| *b)
    {
        drop(tx);
        // Let pending acks go out before the close frame.
        let _ = tokio::time::timeout(Duration::from_secs(2), publisher).await;
    }
    if let Some((code, reason)) = &end {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            out_tx.send(close_msg(*code, reason)),
        )
        .await;
    }
    drop(out_tx);
    drop(conn.out);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    if end.is_some() {
        // The closing handshake: wait (briefly) for the client's Close before the
        // socket goes, so the client reads our close frame instead of a reset.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A `publish` frame waiting for its batch: its `req` and its event(s).
enum Pipelined {
    One(Option<Value>, Prepared),
    Many(Option<Value>, Vec<Prepared>),
}

struct Conn {
    app: AppState,
    out: mpsc::Sender<Out>,
    subs: HashMap<String, JoinHandle<()>>,
    /// Started with the first `publish` frame: most connections only subscribe, and
    /// an idle connection should cost little memory (boxed: one word here).
    publish: Option<Box<Publishing>>,
}

/// A connection's publisher task, and what its reader queued for it.
struct Publishing {
    tx: mpsc::Sender<Box<Pipelined>>,
    task: JoinHandle<()>,
    /// Events queued since the reader last gave way.
    unyielded: usize,
}

impl Conn {
    async fn send(&self, f: ServerFrame) {
        let _ = self.out.send(text(f.encode())).await;
    }

    async fn error(
        &self,
        code: ErrorCode,
        message: String,
        req: Option<Value>,
        sub: Option<String>,
    ) {
        self.send(ServerFrame::Error {
            code: code.as_str().into(),
            message,
            req,
            sub,
        })
        .await;
    }

    async fn handle_text(&mut self, t: &str) {
        let frame = match ClientFrame::parse(t) {
            Ok(f) => f,
            Err(e) => {
                // Name the req when the frame had one, so a pipelining client can tell.
                let req = serde_json::from_str::<Value>(t)
                    .ok()
                    .and_then(|v| v.get("req").cloned());
                let msg = match e {
                    FrameError::NotJson(e) => format!("not a JSON object: {e}"),
                    FrameError::NotAFrame(e) => format!(
                        "{e}; frames are {{\"type\":\"subscribe\"|\"unsubscribe\"|\"publish\"|\"cursor\"|\"ping\", ...}}"
                    ),
                };
                self.error(ErrorCode::BadRequest, msg, req, None).await;
                return;
            }
        };
        match frame {
            ClientFrame::Ping => self.send(ServerFrame::Pong).await,
            ClientFrame::Publish { req, event } => {
                if let Err(e) = event.validate() {
                    self.error(ErrorCode::BadRequest, e.to_string(), req, None)
                        .await;
                    return;
                }
                self.pipeline(Pipelined::One(req, event.prepare())).await;
            }
            ClientFrame::PublishBatch { req, events } => {
                // As POST /publish: one invalid event refuses the frame, nothing stored.
                let invalid = events
                    .iter()
                    .enumerate()
                    .find_map(|(i, e)| e.validate().err().map(|e| (i, e)));
                if let Some((i, e)) = invalid {
                    let msg = format!("events[{i}]: {e}; nothing of this frame was stored");
                    self.error(ErrorCode::BadRequest, msg, req, None).await;
                    return;
                }
                let events = RawEvent::prepare_all(&events);
                self.pipeline(Pipelined::Many(req, events)).await;
            }
            ClientFrame::Subscribe { sub, spec } => self.subscribe(sub, spec).await,
            ClientFrame::Unsubscribe { sub } => match self.subs.remove(&sub) {
                Some(h) => h.abort(),
                None => {
                    self.error(
                        ErrorCode::BadRequest,
                        format!("no subscription named {sub:?}"),
                        None,
                        Some(sub),
                    )
                    .await
                }
            },
            ClientFrame::Cursor { durable, id } => self.app.broker.set_cursor(&durable, id),
        }
    }

    /// Queues a publish for the connection's publisher task (started on first use).
    async fn pipeline(&mut self, p: Pipelined) {
        let publishing = self.publish.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
            let task = tokio::spawn(publisher(self.app.clone(), rx, self.out.clone()));
            Box::new(Publishing {
                tx,
                task,
                unyielded: 0,
            })
        });
        publishing.unyielded += match &p {
            Pipelined::One(..) => 1,
            Pipelined::Many(_, evs) => evs.len(),
        };
        let _ = publishing.tx.send(Box::new(p)).await;
        // The publisher task was just woken into this worker's LIFO slot, where no
        // other worker may take it: while frames keep arriving this task would not
        // give way, and the writer thread would wait for events parsed long ago.
        // Giving way once a batch's worth is queued hands them over (and lets
        // another worker take this task); giving way after every frame would make
        // each frame a batch of its own, and under load, when frames queue up, one
        // append and one fan-out per frame, which falls behind with many subscribers.
        if publishing.unyielded >= YIELD_EVERY {
            publishing.unyielded = 0;
            tokio::task::yield_now().await;
        }
    }

    async fn subscribe(&mut self, name: String, spec: Subscribe) {
        let batch = spec.batch;
        self.subs.retain(|_, h| !h.is_finished());
        if self.subs.contains_key(&name) {
            let msg = format!(
                "a subscription named {name:?} exists on this connection; unsubscribe it first or pick another name"
            );
            self.error(ErrorCode::BadRequest, msg, None, Some(name))
                .await;
            return;
        }
        if self.subs.len() >= self.app.cfg.max_subscriptions {
            let msg = format!(
                "too many subscriptions on this connection (--max-subscriptions {})",
                self.app.cfg.max_subscriptions
            );
            self.error(ErrorCode::TooMany, msg, None, Some(name)).await;
            return;
        }
        // Positioning `last=N` with filters may read far back into the log: off
        // the runtime's workers.
        if let Some(d) = &spec.durable
            && let Err(e) = self.app.broker.load_cursor(d).await
        {
            let msg = format!("cannot read durable cursor {d:?}: {e}");
            self.error(ErrorCode::Internal, msg, None, Some(name)).await;
            return;
        }
        let broker = self.app.broker.clone();
        let placed = tokio::task::spawn_blocking(move || broker.subscribe(&spec)).await;
        let sub = match placed {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.error(ErrorCode::BadRequest, e.to_string(), None, Some(name))
                    .await;
                return;
            }
            Err(e) => {
                self.error(
                    ErrorCode::Internal,
                    format!("subscribing failed: {e}"),
                    None,
                    Some(name),
                )
                .await;
                return;
            }
        };
        self.send(ServerFrame::Subscribed {
            sub: name.clone(),
            last_id: sub.last_id_at_start,
        })
        .await;
        let out = self.out.clone();
        let handle = tokio::spawn(deliver(sub, name.clone(), out, batch));
        self.subs.insert(name, handle);
    }
}

/// Most events in one `events` frame.
const BATCH_EVENTS: usize = 256;
/// An `events` frame is closed once it holds this many bytes.
const BATCH_BYTES: usize = 32 << 10;

/// Moves one subscription's deliveries into the connection's queue. With `batch`,
/// events that are ready together go out as one `events` frame.
async fn deliver(mut sub: Subscription, name: String, out: mpsc::Sender<Out>, batch: bool) {
    let name_json = serde_json::to_string(&name).expect("a string serializes");
    let prefix = if batch {
        crate::protocol::events_frame_prefix(&name_json)
    } else {
        String::new()
    };
    let mut ready = Vec::new();
    loop {
        let msg = match sub.next().await {
            Ok(Delivery::Event(ev)) if batch => {
                let mut size = ev.json.len();
                ready.push(ev);
                while ready.len() < BATCH_EVENTS && size < BATCH_BYTES {
                    let Some(ev) = sub.try_next_event() else {
                        break;
                    };
                    size += ev.json.len() + 2;
                    ready.push(ev);
                }
                let msg = if ready.len() == 1 {
                    event_frame(&name_json, &ready[0].json)
                } else {
                    crate::protocol::events_frame(&prefix, ready.iter().map(|e| &*e.json), size)
                };
                ready.clear();
                msg
            }
            Ok(Delivery::Event(ev)) => event_frame(&name_json, &ev.json),
            Ok(Delivery::Gap { from, to, reason }) => ServerFrame::Gap {
                sub: name.clone(),
                from,
                to,
                reason: reason.as_str().into(),
            }
            .encode(),
            Ok(Delivery::Live { last_id }) => ServerFrame::Live {
                sub: name.clone(),
                last_id,
            }
            .encode(),
            Err(e) => {
                tracing::error!("subscription {name}: reading the log failed: {e}");
                let _ = out
                    .send(close_msg(close::INTERNAL, "reading the log failed"))
                    .await;
                return;
            }
        };
        if out.send(text(msg)).await.is_err() {
            return;
        }
    }
}

/// The error code of an event the log refused.
fn refusal_code(e: &EventError) -> ErrorCode {
    if matches!(e, EventError::TooLarge { .. }) {
        ErrorCode::TooLarge
    } else {
        ErrorCode::BadRequest
    }
}

/// Each frame's `req`, and how many events it holds (None: a single `event`).
type Replies = Vec<(Option<Value>, Option<usize>)>;
/// A submitted batch the acker is to answer.
type Answering = (Replies, Submitted);

/// Batches handed to the acker per connection whose answers are not out yet.
/// More than one keeps the writer thread busy while answers travel back.
const SUBMITTED_AHEAD: usize = 8;

/// Turns queued `publish` frames into batched appends. It does not wait for a
/// batch to be written before it submits the next (the broker keeps their order):
/// [`acker`] waits for the answers and sends them, in order. A batch written at
/// once (inline) is answered from here when nothing is waiting before it, as a
/// lone publish usually is: no hand-over, and no acker task unless one is needed.
async fn publisher(app: AppState, mut rx: mpsc::Receiver<Box<Pipelined>>, out: mpsc::Sender<Out>) {
    // Batches handed to the acker and not answered yet.
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut acks: Option<(mpsc::Sender<Answering>, JoinHandle<()>)> = None;
    let mut queued = Vec::with_capacity(1024);
    while rx.recv_many(&mut queued, 1024).await > 0 {
        let mut replies: Replies = Vec::with_capacity(queued.len());
        let events = queued
            .iter()
            .map(|p| match &**p {
                Pipelined::One(..) => 1,
                Pipelined::Many(_, evs) => evs.len(),
            })
            .sum();
        let mut batch: Vec<Prepared> = Vec::with_capacity(events);
        for p in queued.drain(..) {
            match *p {
                Pipelined::One(req, ev) => {
                    replies.push((req, None));
                    batch.push(ev);
                }
                Pipelined::Many(req, evs) => {
                    replies.push((req, Some(evs.len())));
                    batch.extend(evs);
                }
            }
        }
        let submitted = app.broker.submit(batch).await;
        // The acker decrements `waiting` only once its answers are in `out`, so at
        // zero these go after every earlier one.
        if matches!(submitted, Submitted::Done(_)) && waiting.load(Ordering::Acquire) == 0 {
            if !answer(&out, replies, submitted.outcomes().await).await {
                break;
            }
            continue;
        }
        let (tx, _) = acks.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(SUBMITTED_AHEAD);
            (tx, tokio::spawn(acker(rx, out.clone(), waiting.clone())))
        });
        waiting.fetch_add(1, Ordering::AcqRel);
        if tx.send((replies, submitted)).await.is_err() {
            break;
        }
    }
    if let Some((tx, acker)) = acks {
        drop(tx);
        let _ = acker.await;
    }
}

/// Answers submitted batches in the order they were submitted.
async fn acker(
    mut rx: mpsc::Receiver<Answering>,
    out: mpsc::Sender<Out>,
    waiting: Arc<AtomicUsize>,
) {
    while let Some((replies, submitted)) = rx.recv().await {
        if !answer(&out, replies, submitted.outcomes().await).await {
            return;
        }
        waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn send_all(out: &mpsc::Sender<Out>, frames: Vec<String>) -> bool {
    for f in frames {
        if out.send(text(f)).await.is_err() {
            return false;
        }
    }
    true
}

/// Sends the answers to a batch's frames; false when the connection is gone or
/// closed: when the place events are kept cannot be reached
/// ([`BrokerError::Unavailable`](crate::broker::BrokerError::Unavailable)) the
/// connection is closed with 4500, so the client reconnects and sends the
/// unacknowledged events again (with their keys: none is stored twice).
async fn answer(
    out: &mpsc::Sender<Out>,
    replies: Replies,
    outcomes: Result<Vec<Result<u64, EventError>>, crate::broker::BrokerError>,
) -> bool {
    if let Err(crate::broker::BrokerError::Unavailable(m)) = &outcomes {
        let _ = out.send(close_msg(close::INTERNAL, m)).await;
        return false;
    }
    send_all(out, answers(replies, outcomes)).await
}

/// The `ack` (or `error`) frames of a batch's frames, from its outcomes.
fn answers(
    replies: Replies,
    outcomes: Result<Vec<Result<u64, EventError>>, crate::broker::BrokerError>,
) -> Vec<String> {
    match outcomes {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            replies
                .into_iter()
                .map(|(req, many)| match many {
                    None => match outcomes.next().expect("one outcome per event") {
                        Ok(id) => ServerFrame::Ack { req, id }.encode(),
                        Err(e) => ServerFrame::Error {
                            code: refusal_code(&e).as_str().into(),
                            message: e.to_string(),
                            req,
                            sub: None,
                        }
                        .encode(),
                    },
                    Some(n) => {
                        let results: Vec<BatchOutcome> = outcomes
                            .by_ref()
                            .take(n)
                            .map(|o| o.map_err(|e| (refusal_code(&e), e.to_string())))
                            .collect();
                        batch_ack_frame(&req, &results)
                    }
                })
                .collect()
        }
        Err(e) => {
            let (code, msg) = match e {
                crate::broker::BrokerError::ShuttingDown => (
                    ErrorCode::ShuttingDown,
                    "the hub is shutting down; retry after reconnecting".to_string(),
                ),
                other => (ErrorCode::Internal, other.to_string()),
            };
            replies
                .into_iter()
                .map(|(req, _)| {
                    ServerFrame::Error {
                        code: code.as_str().into(),
                        message: msg.clone(),
                        req,
                        sub: None,
                    }
                    .encode()
                })
                .collect()
        }
    }
}

/// Whether reading failed because a frame or message was over the size limit
/// (tungstenite's capacity error), which gets close 1009; other errors end the
/// connection without a close frame.
fn is_over_size(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    e.into_inner()
        .downcast_ref::<Error>()
        .is_some_and(|e| matches!(e, Error::Capacity(_)))
}
