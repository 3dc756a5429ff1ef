//! [`Subscriber`]: one subscription over a reconnecting connection, resumed after
//! the newest event received, so a hub restart neither loses nor repeats one.

use super::connect::{
    ATTEMPT_LIMIT, Backoff, Failure, Hubs, Ws, close_code_name, close_gracefully, close_parts,
    connect_with_retry, describe_close, open, seconds,
};
use super::{ClientError, ConnectOptions};
use crate::event::Event;
use crate::protocol::{
    ClientFrame, ServerFrame, Start, Subscribe, close, event_id, event_id_by_serde,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

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
            None => event_id_by_serde(json)?,
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
    /// The hubs; the current one is connected (or to be tried next).
    hubs: Hubs,
    /// The current hub's URL, for messages.
    url: String,
    token: Option<String>,
    timeout: Option<Duration>,
    reconnect: bool,
    spec: Subscribe,
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
        spec: Subscribe,
        reconnect: bool,
    ) -> Result<Subscriber, ClientError> {
        let mut hubs = Hubs::parse(&opts.url)?;
        let mut backoff = Backoff::new();
        let timeout = if reconnect {
            opts.timeout
        } else {
            Some(Duration::ZERO)
        };
        let (ws, max_frame) = connect_with_retry(
            &mut hubs,
            opts.token.as_deref(),
            timeout,
            &mut backoff,
            |url, c, d| {
                tracing::info!(
                    "cannot reach the hub at {url}: {c}; retrying in {}",
                    seconds(d)
                )
            },
        )
        .await?;
        let mut s = Subscriber {
            url: hubs.current().to_string(),
            hubs,
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

    /// The normalized URL of the hub in use (for messages).
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
        let mut spec = Subscribe {
            batch: self.batches,
            ..self.spec.clone()
        };
        match self.seen_id {
            // Resume after the newest event received, handed out or still queued
            // (the queued ones are handed out before anything the new connection
            // brings). The durable cursor in the hub may lag behind it, so it is not
            // used again.
            Some(id) => (spec.since, spec.last, spec.durable) = (Some(id), None, None),
            None => {
                if let (Start::Live, Some(l)) = (self.spec.start(), self.live_from) {
                    spec.since = Some(l);
                }
            }
        }
        ClientFrame::Subscribe {
            sub: SUB.into(),
            spec,
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
                self.url = self.hubs.current().to_string();
                match open(&self.url, self.token.as_deref(), ATTEMPT_LIMIT).await {
                    Ok((ws, max_frame)) => {
                        self.ws = Some(ws);
                        self.batches = max_frame.is_some();
                        self.backoff.reset();
                        self.hubs.connected();
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
                        if !self.hubs.failed(&cause) {
                            // The rest of this round: the next hub at once.
                            tracing::info!(
                                "cannot reach the hub at {}: {cause}; moving to hub {}",
                                self.url,
                                self.hubs.current()
                            );
                            let cause = format!(
                                "{}: {cause}; moving to hub {}",
                                self.url,
                                self.hubs.current()
                            );
                            return Ok(SubEvent::Reconnecting {
                                cause,
                                delay: Duration::ZERO,
                            });
                        }
                        if let Some(t) = self.timeout
                            && outage.elapsed() >= t
                        {
                            return Err(self.hubs.unreachable(outage.elapsed()));
                        }
                        self.hubs.next_round();
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
                if self.spec.start() == Start::Live && self.live_from.is_none() {
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
        let cause = match self.hubs.dropped() {
            Some(next) => {
                tracing::warn!(
                    "lost the connection to {} ({cause}); moving to hub {next}",
                    self.url
                );
                format!("{cause}; moving to hub {next}")
            }
            None => cause,
        };
        Some(Ok(SubEvent::Reconnecting { cause, delay }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Reads the next `subscribe` frame from a mock hub connection.
    async fn next_subscribe(
        ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Subscribe {
        loop {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap()
                && let Ok(ClientFrame::Subscribe { spec, .. }) =
                    serde_json::from_str::<ClientFrame>(&t)
            {
                return spec;
            }
        }
    }

    /// After a drop, the subscription asks again after the newest event received
    /// (here the last of an `events` frame), not at its first start or its durable
    /// cursor; what the hub sends again is not handed out twice.
    #[tokio::test]
    async fn resumes_after_the_newest_event_received() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let event =
            |id: u64| format!(r#"{{"id":{id},"ts":"2026-12-03T00:00:00.000Z","topic":"t"}}"#);
        let hub = tokio::spawn(async move {
            let mut asked = Vec::new();
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            asked.push(next_subscribe(&mut ws).await);
            let events = [1, 2, 3].map(event);
            let prefix = crate::protocol::events_frame_prefix("\"s1\"");
            let frame =
                crate::protocol::events_frame(&prefix, events.iter().map(String::as_str), 0);
            ws.send(Message::text(frame)).await.unwrap();
            drop(ws);
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            asked.push(next_subscribe(&mut ws).await);
            for id in [3, 4] {
                let frame = crate::protocol::event_frame("\"s1\"", &event(id));
                ws.send(Message::text(frame)).await.unwrap();
            }
            let _ = ws.next().await;
            asked
        });
        let mut opts = ConnectOptions::new(format!("ws://{addr}"));
        opts.timeout = Some(Duration::from_secs(10));
        let spec = Subscribe {
            durable: Some("d".into()),
            ..Start::Last(5).into()
        };
        let mut sub = Subscriber::connect(&opts, spec.clone(), true)
            .await
            .unwrap();
        let mut ids = Vec::new();
        while ids.len() < 4 {
            let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
            if let SubEvent::Event(e) = next.expect("in time").unwrap() {
                ids.push(e.id());
            }
        }
        assert_eq!(ids, [1, 2, 3, 4]);
        sub.close().await;
        let asked = hub.await.unwrap();
        assert_eq!(asked[0], spec);
        assert_eq!(asked[1], Subscribe::from(Start::Since(3)));
    }
}
