//! Reading events back: the stamp ([`stamped`]), reads by id
//! ([`JsStore::read_after`]) and the one ordered feed of a node ([`Feeder`]).
//!
//! Every message of the stream becomes the [`StoredEvent`] whose JSON is the stamp
//! `{"id":SEQ,"ts":"TS",` and the payload after its `{`, with SEQ the stream sequence
//! and TS the stream's stored time in ms: the same bytes on every node. A message
//! that is not a hub event (something else published on `hub.ev`) is a one-id gap
//! with reason `corrupt`, as a damaged record is in the embedded log.
//!
//! Ids missing below the stream's first sequence are a `retention` gap; ids missing
//! above it (a message deleted by an operator) a `corrupt` one.

use super::{JsStore, NatsError, error_chain};
use crate::event::{StoredEvent, format_ts};
use crate::store::{Gap, GapReason, ReadBatch};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures_util::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// Idle heartbeat of the feeder's pull requests: a server gone silent is noticed
/// after two of them.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one pull request of the feeder waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Messages asked for by one pull request of the feeder.
const PULL_BATCH: usize = 1024;
/// An ephemeral consumer nobody pulls from goes after this long (a node killed
/// leaves none behind for long).
const INACTIVE: Duration = Duration::from_secs(30);

/// The stamp `{"id":ID,"ts":"TS",` that [`StoredEvent::stamp`] writes in front of a
/// prepared event.
pub fn stamp_text(id: u64, ts: u64) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("{\"id\":");
    s.push_str(itoa::Buffer::new().format(id));
    s.push_str(",\"ts\":\"");
    s.push_str(&format_ts(ts));
    s.push_str("\",");
    s
}

/// A stream message that is not a hub event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {seq} of the stream is not a hub event: {why}")]
pub struct NotAnEvent {
    pub seq: u64,
    pub why: String,
}

/// The stored event of stream message `seq`, stored at `ts` (ms), with `payload`.
///
/// # Errors
/// The payload is not an event without `id` and `ts`.
pub fn stamped(seq: u64, ts: u64, payload: &[u8]) -> Result<StoredEvent, NotAnEvent> {
    let bad = |why: String| NotAnEvent { seq, why };
    let text = std::str::from_utf8(payload).map_err(|e| bad(e.to_string()))?;
    let rest = text
        .strip_prefix('{')
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let mut json = stamp_text(seq, ts);
    json.push_str(rest);
    let ev = StoredEvent::decode(&json).map_err(|e| bad(e.to_string()))?;
    if ev.id != seq || ev.ts != ts {
        return Err(bad("it carries an id or ts of its own".into()));
    }
    Ok(ev)
}

/// A message's stream sequence, consumer sequence and stored time (ms).
fn meta(m: &async_nats::jetstream::Message) -> Result<(u64, u64, u64), String> {
    let info = m.info().map_err(|e| e.to_string())?;
    let ts = info.published.unix_timestamp_nanos() / 1_000_000;
    Ok((
        info.stream_sequence,
        info.consumer_sequence,
        u64::try_from(ts).unwrap_or(0),
    ))
}

/// A consumer of the whole stream from `start`, delivering as fast as it is pulled,
/// acking nothing, kept in memory on one server.
fn consumer_config(start: u64) -> pull::Config {
    pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        },
        ack_policy: AckPolicy::None,
        memory_storage: true,
        num_replicas: 1,
        inactive_threshold: INACTIVE,
        ..Default::default()
    }
}

impl JsStore {
    /// Reads events with id > `after`, at most `max`, as the embedded log's
    /// `read_after` does: ids gone right after `after` come first as the batch's gap,
    /// and the batch stops before the next hole, so a reader that asks again from
    /// `next_after` meets each gap once. Reads up to the stream's last sequence at the
    /// time of the call.
    ///
    /// # Errors
    /// The server did not answer, or the stream was recreated.
    pub async fn read_after(&self, after: u64, max: usize) -> Result<ReadBatch, NatsError> {
        self.read_range(after, u64::MAX, max).await
    }

    /// [`read_after`](Self::read_after), reading no id above `upto`: catch-up reads
    /// up to the node's fanned-out position and no further, so that it hands over to
    /// the live feed without a gap or a duplicate.
    ///
    /// # Errors
    /// The server did not answer, or the stream was recreated.
    pub async fn read_range(
        &self,
        after: u64,
        upto: u64,
        max: usize,
    ) -> Result<ReadBatch, NatsError> {
        let mut out = ReadBatch {
            next_after: after,
            ..Default::default()
        };
        if max == 0 || after >= upto {
            return Ok(out);
        }
        let st = self.state().await?;
        let (first, last) = (st.first_sequence, st.last_sequence.min(upto));
        if after >= last {
            return Ok(out);
        }
        if after + 1 < first {
            out.gap = Some(Gap {
                from: after + 1,
                to: first - 1,
                reason: GapReason::Retention,
            });
            out.next_after = first - 1;
            return Ok(out);
        }
        let want = max.min((last - after) as usize);
        let got = self.drain(consumer_config(after + 1), last, want).await?;
        self.fold(after, got, &mut out).await;
        Ok(out)
    }

    /// Every task lifecycle event in the stream (subject `hub.task`, filtered by the
    /// server), oldest first, up to the stream's last id at the call, and that id:
    /// what a starting node folds into its task board before its feeder goes on
    /// from there. Messages on `hub.task` that are not events are skipped, with a
    /// warning.
    ///
    /// # Errors
    /// The server did not answer, or the stream was recreated.
    pub async fn task_events(&self) -> Result<(Vec<StoredEvent>, u64), NatsError> {
        let last = self.state().await?.last_sequence;
        if last == 0 {
            return Ok((Vec::new(), 0));
        }
        let mut config = consumer_config(1);
        config.deliver_policy = DeliverPolicy::All;
        config.filter_subject = super::TASK_SUBJECT.into();
        let got = self.drain(config, last, usize::MAX).await?;
        let events = got
            .into_iter()
            .filter_map(|(_, ev)| ev.map_err(|e| tracing::warn!("{e}; skipped")).ok())
            .collect();
        Ok((events, last))
    }

    /// Reads up to `want` messages through a consumer made with `config`, stopping at
    /// stream sequence `last` or when the consumer has nothing more; deletes the
    /// consumer afterwards.
    async fn drain(
        &self,
        config: pull::Config,
        last: u64,
        want: usize,
    ) -> Result<Vec<(u64, Result<StoredEvent, NotAnEvent>)>, NatsError> {
        let req = |what: &'static str| {
            let urls = self.urls();
            move |e: &dyn std::error::Error| NatsError::Request {
                urls,
                what,
                cause: error_chain(e),
            }
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| req("creating a consumer to read the stream")(&e))?;
        let mut got = Vec::new();
        let read = async {
            'fetch: while got.len() < want {
                let mut batch = consumer
                    .fetch()
                    .max_messages((want - got.len()).min(PULL_BATCH))
                    .messages()
                    .await
                    .map_err(|e| req("reading the stream")(&e))?;
                let mut n = 0;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(|e| req("reading the stream")(&*e))?;
                    n += 1;
                    let (seq, _, ts) = meta(&m).map_err(|e| NatsError::Request {
                        urls: self.urls(),
                        what: "reading the stream",
                        cause: format!("a message without JetStream metadata: {e}"),
                    })?;
                    if seq > last {
                        break 'fetch;
                    }
                    got.push((seq, stamped(seq, ts, &m.payload)));
                    if seq == last || got.len() >= want {
                        break 'fetch;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            Ok::<(), NatsError>(())
        };
        let r = read.await;
        let name = consumer.cached_info().name.clone();
        if let Err(e) = self.stream.delete_consumer(&name).await {
            tracing::debug!("deleting read consumer {name}: {e}");
        }
        r.map(|()| got)
    }

    /// Turns what a consumer delivered after `after` into a batch: a gap first (a
    /// hole or messages that are not events), then consecutive events.
    async fn fold(
        &self,
        after: u64,
        got: Vec<(u64, Result<StoredEvent, NotAnEvent>)>,
        out: &mut ReadBatch,
    ) {
        let mut expect = after + 1;
        for (seq, ev) in got {
            let at_start = out.events.is_empty();
            if seq < expect {
                continue;
            }
            if !at_start && (seq > expect || ev.is_err()) {
                break;
            }
            if seq > expect {
                out.gap = Some(Gap {
                    from: expect,
                    to: seq - 1,
                    reason: self.hole_reason(seq - 1).await,
                });
            }
            match ev {
                Ok(ev) => out.events.push(Arc::new(ev)),
                Err(e) => {
                    tracing::warn!("{e}; readers get it as a gap");
                    let from = out.gap.map_or(seq, |g| g.from);
                    out.gap = Some(Gap {
                        from,
                        to: seq,
                        reason: GapReason::Corrupt,
                    });
                }
            }
            expect = seq + 1;
        }
        out.next_after = expect - 1;
    }

    /// Why ids up to `to` are missing: trimmed by retention when they are below the
    /// stream's first sequence, else deleted inside the stream.
    async fn hole_reason(&self, to: u64) -> GapReason {
        match self.state().await {
            Ok(st) if to >= st.first_sequence => GapReason::Corrupt,
            _ => GapReason::Retention,
        }
    }

    /// The node's one ordered feed, from the event after `after` on.
    pub fn feeder(self: &Arc<Self>, after: u64) -> Feeder {
        Feeder {
            store: self.clone(),
            after,
            msgs: None,
            cseq: 0,
            held: None,
            failures: 0,
            consumer: None,
        }
    }
}

/// What the feeder yields next.
#[derive(Debug)]
pub enum Feed {
    /// Consecutive events right after the previous position.
    Events(Vec<Arc<StoredEvent>>),
    /// Ids right after the previous position that no one will get.
    Gap(Gap),
}

/// An ordered pull consumer with the hub's own recreate loop (scale-out.md §3):
/// whenever the consumer fails (a missed heartbeat, the server restarted, a
/// consumer sequence that skips), it is made again from the position + 1, never from
/// the start; anything at or below the position is dropped, and a jump past it is
/// reported as a [`Feed::Gap`]. It waits through NATS outages; only a recreated
/// stream ends it.
pub struct Feeder {
    store: Arc<JsStore>,
    /// The last id yielded (or skipped as a gap).
    after: u64,
    msgs: Option<pull::Stream>,
    /// The consumer sequence of the last message from the current consumer.
    cseq: u64,
    /// A message taken but left for the next call: (seq, ts, payload).
    held: Option<(u64, u64, async_nats::jetstream::Message)>,
    /// Failures (making a consumer, or a consumer failing) since the last message.
    failures: u32,
    /// The current consumer's name, deleted when it is replaced.
    consumer: Option<String>,
}

impl Feeder {
    /// The last id yielded or skipped.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Waits for what follows the position: events (at most `max`, as many as are
    /// ready once the first has come) or a gap.
    ///
    /// # Cancel safety
    /// Dropping the future loses no event: the position moves only when the events
    /// are returned, and anything taken from the consumer is either returned or held.
    ///
    /// # Errors
    /// The stream was recreated under the hub (see [`NatsError::Recreated`]).
    pub async fn next(&mut self, max: usize) -> Result<Feed, NatsError> {
        let max = max.max(1);
        let mut events: Vec<Arc<StoredEvent>> = Vec::new();
        loop {
            let (seq, ts, m) = match self.held.take() {
                Some(h) => h,
                None if events.is_empty() => match self.wait().await? {
                    Some(h) => h,
                    None => continue,
                },
                None => match self.ready() {
                    Some(Some(h)) => h,
                    Some(None) => continue,
                    None => return Ok(Feed::Events(events)),
                },
            };
            if seq <= self.after {
                continue;
            }
            if seq > self.after + 1 {
                if !events.is_empty() {
                    self.held = Some((seq, ts, m));
                    return Ok(Feed::Events(events));
                }
                // Held before the await, so a dropped future loses nothing.
                self.held = Some((seq, ts, m));
                let gap = Gap {
                    from: self.after + 1,
                    to: seq - 1,
                    reason: self.store.hole_reason(seq - 1).await,
                };
                tracing::warn!(
                    "the feed jumped from {} to {seq}: ids {}-{} are gone ({})",
                    self.after,
                    gap.from,
                    gap.to,
                    gap.reason.as_str()
                );
                self.after = seq - 1;
                return Ok(Feed::Gap(gap));
            }
            match stamped(seq, ts, &m.payload) {
                Ok(ev) => {
                    self.after = seq;
                    events.push(Arc::new(ev));
                    if events.len() >= max {
                        return Ok(Feed::Events(events));
                    }
                }
                Err(e) if events.is_empty() => {
                    tracing::warn!("{e}; subscribers get it as a gap");
                    self.after = seq;
                    return Ok(Feed::Gap(Gap {
                        from: seq,
                        to: seq,
                        reason: GapReason::Corrupt,
                    }));
                }
                Err(_) => {
                    self.held = Some((seq, ts, m));
                    return Ok(Feed::Events(events));
                }
            }
        }
    }

    /// Checks a delivered message: `None` when the consumer must be made again (it
    /// skipped a delivery or the message has no metadata).
    fn check(
        &mut self,
        m: async_nats::jetstream::Message,
    ) -> Option<(u64, u64, async_nats::jetstream::Message)> {
        match meta(&m) {
            Ok((seq, cseq, ts)) if cseq == self.cseq + 1 => {
                self.cseq = cseq;
                self.failures = 0;
                Some((seq, ts, m))
            }
            Ok((_, cseq, _)) => {
                tracing::warn!(
                    "feed consumer skipped from delivery {} to {cseq}; making it again from {}",
                    self.cseq,
                    self.after + 1
                );
                self.msgs = None;
                self.failures += 1;
                None
            }
            Err(e) => {
                tracing::warn!(
                    "feed message without JetStream metadata ({e}); making the consumer again"
                );
                self.msgs = None;
                self.failures += 1;
                None
            }
        }
    }

    /// The next message, waiting for it (through outages); `None`: try again.
    async fn wait(
        &mut self,
    ) -> Result<Option<(u64, u64, async_nats::jetstream::Message)>, NatsError> {
        if self.msgs.is_none() {
            self.open().await?;
        }
        let msgs = self.msgs.as_mut().expect("just opened");
        match msgs.next().await {
            Some(Ok(m)) => Ok(self.check(m)),
            Some(Err(e)) => {
                tracing::warn!(
                    "feed consumer failed ({}); making it again from {}",
                    error_chain(&e),
                    self.after + 1
                );
                self.msgs = None;
                self.failures += 1;
                Ok(None)
            }
            None => {
                self.msgs = None;
                Ok(None)
            }
        }
    }

    /// A message already delivered, without waiting: `None` when there is none,
    /// `Some(None)` when the consumer had to go.
    fn ready(&mut self) -> Option<Option<(u64, u64, async_nats::jetstream::Message)>> {
        let msgs = self.msgs.as_mut()?;
        match msgs.next().now_or_never()? {
            Some(Ok(m)) => Some(self.check(m)),
            Some(Err(_)) | None => {
                self.msgs = None;
                None
            }
        }
    }

    /// Makes the consumer from the position + 1, retrying until the server answers;
    /// after failures (of making it, or of a consumer that delivered nothing since),
    /// with a backoff of 100 ms doubling up to 1.6 s.
    async fn open(&mut self) -> Result<(), NatsError> {
        loop {
            if self.failures > 0 {
                let pause = Duration::from_millis(100 << (self.failures - 1).min(4));
                tokio::time::sleep(pause).await;
            }
            match self.try_open().await {
                Ok(s) => {
                    if self.failures > 0 {
                        tracing::info!("feed consumer made again from {}", self.after + 1);
                    }
                    self.msgs = Some(s);
                    self.cseq = 0;
                    return Ok(());
                }
                Err(e @ NatsError::Recreated { .. }) => return Err(e),
                Err(e) => {
                    if self.failures.is_multiple_of(10) {
                        tracing::warn!("feed: {e}; retrying");
                    }
                    self.failures += 1;
                }
            }
        }
    }

    async fn try_open(&mut self) -> Result<pull::Stream, NatsError> {
        let store = &self.store;
        // Also the epoch check: a recreated stream is refused here.
        store.state().await?;
        if let Some(old) = self.consumer.take() {
            let _ = store.stream.delete_consumer(&old).await;
        }
        let req = |what: &'static str, e: &dyn std::error::Error| NatsError::Request {
            urls: store.urls(),
            what,
            cause: error_chain(e),
        };
        let consumer = store
            .stream
            .create_consumer(consumer_config(self.after + 1))
            .await
            .map_err(|e| req("creating the feed consumer", &e))?;
        self.consumer = Some(consumer.cached_info().name.clone());
        consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| req("pulling from the feed consumer", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Fields, IncomingEvent, Prepared, TsField};

    #[test]
    fn stamps_as_the_log_does() {
        for (id, ts) in [
            (1, 0),
            (18_446_744_073_709_551_615, 4_102_444_800_999),
            (7, 1_764_000_000_001),
        ] {
            let p: Prepared = IncomingEvent::from_json(r#"{"topic":"t","data":[1]}"#)
                .unwrap()
                .into();
            let log = StoredEvent::stamp(p, id, ts, &TsField::new(&format_ts(ts)));
            assert!(log.json.starts_with(&stamp_text(id, ts)), "{}", log.json);
        }
    }

    #[test]
    fn not_events() {
        let ok = stamped(3, 5, br#"{"topic":"t","type":"message","data":null}"#).unwrap();
        assert_eq!((ok.id(), ok.ts(), ok.topic()), (3, 5, "t"));
        for bad in [
            &b"hello"[..],
            b"{}",
            b"{\"topic\":\"t\"}",
            br#"{"id":9,"topic":"t","type":"m","data":1}"#,
            b"\xff",
        ] {
            let e = stamped(3, 5, bad).unwrap_err();
            assert_eq!(e.seq, 3);
        }
    }
}
