//! Publishing events into the stream: the payload form, `Nats-Msg-Id`, pipelined
//! publishes and what their acks mean.
//!
//! The payload is the event without its stamp: `{` and the prepared text after the
//! stamp (`{"topic":…,"type":…,"data":…}`), readable with `nats sub`. The stream adds
//! the id (its sequence) and the ts (its stored time), and [`super::stamped`] puts the
//! stamp back exactly as [`StoredEvent::stamp`] writes it.
//!
//! `Nats-Msg-Id` is `k:<key>` for a key of printable ASCII without space, else
//! `k64:<base64url(key)>` (keys may hold CR/LF, which headers cannot), and for a
//! keyless event `n:<node>:<counter>`, unique to this node, so that resending it
//! after a lost ack never stores it twice.

use super::{EVENT_SUBJECT, JsStore, TASK_SUBJECT, error_chain};
use crate::event::Prepared;
#[cfg(doc)]
use crate::event::StoredEvent;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// An event the stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its id: the stream sequence.
    pub id: u64,
    /// JetStream had the same `Nats-Msg-Id` already (within its duplicate window):
    /// `id` is the original's. A resend of this call's own publish after a lost ack
    /// does not count.
    pub duplicate: bool,
}

/// Why an event was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error(
        "event too large: {size} bytes, stream {stream} takes at most {limit} bytes per message, headers included"
    )]
    TooLarge {
        stream: String,
        size: usize,
        limit: i64,
    },
    #[error("stream {stream} refused the event: {description} (JetStream error {code})")]
    Refused {
        stream: String,
        code: u64,
        description: String,
    },
    #[error("NATS {urls} did not acknowledge the event within {after:?} (last: {cause})")]
    Unavailable {
        urls: String,
        after: Duration,
        cause: String,
    },
}

/// The payload of an event in the stream: the event without `id` and `ts`, that is
/// `{` and the text [`StoredEvent::stamp`] writes after the stamp.
pub fn payload(p: &Prepared) -> Vec<u8> {
    let tail = p.tail();
    let mut out = Vec::with_capacity(tail.len() + 1);
    out.push(b'{');
    out.extend_from_slice(tail.as_bytes());
    out
}

/// The `Nats-Msg-Id` of an event with this key; `None`: a keyless event, whose id
/// is the node's (`n:<node>:<counter>`).
pub fn msg_id(key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_graphic()) {
        format!("k:{key}")
    } else {
        format!("k64:{}", base64url(key.as_bytes()))
    }
}

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// One event on its way.
struct Outgoing {
    subject: &'static str,
    payload: bytes::Bytes,
    id: String,
}

/// A publish that could not be sent.
enum Unsent {
    /// Above the server's `max_payload`.
    TooLarge,
    /// The client could not queue it (worth resending): why.
    Failed(String),
}

/// Where an attempt ended.
enum Attempt {
    Done(Result<Published, PublishError>),
    /// Worth resending (no answer, no stream leader yet, connection down): why.
    Retry(String),
}

/// Publishes sent, their acks still to come ([`JsStore::send_all`]).
pub struct Sending {
    flight: Vec<(Outgoing, Result<PublishAckFuture, Unsent>)>,
    deadline: Instant,
}

impl JsStore {
    /// Publishes `events` in order, pipelined, and returns one outcome per event once
    /// JetStream has acknowledged it (with replicas: once a quorum holds it):
    /// [`JsStore::send_all`] then [`JsStore::settle_all`].
    pub async fn publish(&self, events: &[Prepared]) -> Vec<Result<Published, PublishError>> {
        let sending = self.send_all(events).await;
        self.settle_all(sending).await
    }

    /// Sends `events` in order without awaiting their acks, so that the next run can
    /// be sent while this one's acks come back (async-nats bounds the acks awaited at
    /// once: a send waits while 5,000 are).
    pub async fn send_all(&self, events: &[Prepared]) -> Sending {
        let deadline = Instant::now() + self.cfg.publish_timeout;
        let mut flight = Vec::with_capacity(events.len());
        for p in events {
            let m = self.outgoing(p);
            let sent = self.send(&m).await;
            flight.push((m, sent));
        }
        Sending { flight, deadline }
    }

    /// The outcomes of a run sent by [`JsStore::send_all`], in its order. An event
    /// whose ack does not come is resent with the same `Nats-Msg-Id` until
    /// [`super::NatsConfig::publish_timeout`] after it was first sent; a resent event
    /// gets an id above events sent after it, so ids follow the order sent only while
    /// no resend was needed.
    ///
    /// The acks are awaited together: an ack that does not come is given up on
    /// after 2 s, counted from when it is first awaited, so awaiting them one after
    /// another would make a run sent just before a leader died wait 2 s per event.
    /// Resends then run concurrently too, so resent events get ids in no set order.
    pub async fn settle_all(&self, sending: Sending) -> Vec<Result<Published, PublishError>> {
        let deadline = sending.deadline;
        futures_util::future::join_all(
            sending
                .flight
                .into_iter()
                .map(|(m, sent)| async move { self.settle(&m, sent, deadline).await }),
        )
        .await
    }

    fn outgoing(&self, p: &Prepared) -> Outgoing {
        let id = match p.key() {
            Some(k) => msg_id(k),
            None => format!(
                "{}{}",
                self.node,
                self.counter.fetch_add(1, Ordering::Relaxed)
            ),
        };
        Outgoing {
            subject: if crate::event::is_task_type(p.kind()) {
                TASK_SUBJECT
            } else {
                EVENT_SUBJECT
            },
            payload: payload(p).into(),
            id,
        }
    }

    async fn send(&self, m: &Outgoing) -> Result<PublishAckFuture, Unsent> {
        let msg = PublishMessage::build()
            .payload(m.payload.clone())
            .message_id(&m.id);
        self.js_pub
            .send_publish(m.subject, msg)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => Unsent::TooLarge,
                _ => Unsent::Failed(error_chain(&e)),
            })
    }

    /// Awaits one ack, resending until the deadline when it does not come.
    async fn settle(
        &self,
        m: &Outgoing,
        mut sent: Result<PublishAckFuture, Unsent>,
        deadline: Instant,
    ) -> Result<Published, PublishError> {
        let mut attempt = 0u32;
        loop {
            let verdict = match sent {
                Ok(ack) => self.judge(m, ack.await, attempt),
                Err(Unsent::TooLarge) => Attempt::Done(Err(self.too_large(m))),
                Err(Unsent::Failed(cause)) => Attempt::Retry(cause),
            };
            let cause = match verdict {
                Attempt::Done(r) => return r,
                Attempt::Retry(cause) => cause,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(PublishError::Unavailable {
                    urls: self.urls(),
                    after: self.cfg.publish_timeout,
                    cause,
                });
            }
            let pause = Duration::from_millis(50 << attempt.min(4)).min(deadline - now);
            tracing::debug!("resending {} in {pause:?}: {cause}", m.id);
            tokio::time::sleep(pause).await;
            attempt += 1;
            sent = self.send(m).await;
        }
    }

    fn judge(
        &self,
        m: &Outgoing,
        ack: Result<PublishAck, async_nats::jetstream::context::PublishError>,
        attempt: u32,
    ) -> Attempt {
        let stream = &self.cfg.stream;
        let e = match ack {
            Ok(ack) if ack.stream == *stream && ack.sequence > 0 => {
                return Attempt::Done(Ok(Published {
                    id: ack.sequence,
                    duplicate: ack.duplicate && attempt == 0,
                }));
            }
            // 2.10.x clusters answer an in-flight duplicate with seq 0.
            Ok(ack) if ack.stream == *stream => {
                return Attempt::Retry(format!("duplicate of {} still in flight", m.id));
            }
            Ok(ack) => {
                return Attempt::Done(Err(PublishError::Refused {
                    stream: stream.clone(),
                    code: 0,
                    description: format!(
                        "the ack came from stream {}: subject {} is taken by another stream",
                        ack.stream, m.subject
                    ),
                }));
            }
            Err(e) => e,
        };
        if e.kind() == PublishErrorKind::MaxPayloadExceeded {
            return Attempt::Done(Err(self.too_large(m)));
        }
        let api = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
        match api {
            Some(api)
                if api.error_code()
                    == async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM =>
            {
                Attempt::Done(Err(self.too_large(m)))
            }
            // 503: no leader or JetStream not ready yet; 10158 (2.11+): a duplicate
            // of this id is still being stored.
            Some(api) if api.code() == 503 || api.error_code().0 == 10158 => {
                Attempt::Retry(api.to_string())
            }
            Some(api) => Attempt::Done(Err(PublishError::Refused {
                stream: stream.clone(),
                code: api.error_code().0,
                description: api.to_string(),
            })),
            None => Attempt::Retry(error_chain(&e)),
        }
    }

    fn too_large(&self, m: &Outgoing) -> PublishError {
        PublishError::TooLarge {
            stream: self.cfg.stream.clone(),
            size: m.payload.len(),
            limit: self.stream.cached_info().config.max_message_size as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{IncomingEvent, StoredEvent, TsField, format_ts};

    fn prepared(json: &str) -> Prepared {
        IncomingEvent::from_json(json).unwrap().into()
    }

    #[test]
    fn payload_is_the_event_without_its_stamp() {
        let p = prepared(r#"{"topic":"ci:x","source":"h","key":"a\nb","data":{"n": 1}}"#);
        let body = String::from_utf8(payload(&p)).unwrap();
        assert_eq!(
            body,
            r#"{"topic":"ci:x","type":"message","source":"h","key":"a\nb","data":{"n":1}}"#
        );
        // Stamped back, it is what the log's writer stores.
        let ts = 1_764_000_000_123;
        let mine = super::super::stamped(42, ts, body.as_bytes()).unwrap();
        let log = StoredEvent::stamp(p, 42, ts, &TsField::new(&format_ts(ts)));
        assert_eq!(mine.json, log.json);
        assert_eq!(mine.ts, ts);
        assert_eq!(crate::event::Fields::key(&mine), Some("a\nb"));
    }

    #[test]
    fn msg_ids() {
        assert_eq!(msg_id("deploy-42"), "k:deploy-42");
        assert_eq!(msg_id("a b"), "k64:YSBi");
        assert_eq!(msg_id("a\r\nb"), "k64:YQ0KYg");
        assert_eq!(msg_id("é"), "k64:w6k");
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
    }
}
