//! The WebSocket wire protocol (SPEC §3): text frames, each one JSON object with a
//! `type` discriminator. Pure serde; the sockets live in `server::ws` and `client`.
//!
//! Client → server: `subscribe`, `unsubscribe`, `publish`, `cursor`, `ping`.
//! Server → client: `subscribed`, `event`, `events`, `live`, `ack`, `gap`, `pong`,
//! `error`.
//!
//! One exchange:
//! ```text
//! → {"type":"subscribe","sub":"s1","topics":["task:*"],"since":40}
//! ← {"type":"subscribed","sub":"s1","last_id":42}
//! ← {"type":"event","sub":"s1","event":{"id":41,...}}
//! ← {"type":"event","sub":"s1","event":{"id":42,...}}
//! ← {"type":"live","sub":"s1","last_id":42}
//! → {"type":"publish","req":7,"event":{"topic":"task:b","type":"progress","data":{"percent":50}}}
//! ← {"type":"ack","req":7,"id":43}
//! ← {"type":"event","sub":"s1","event":{"id":43,...}}
//! ```
//!
//! Beyond SPEC, additions that third-party clients may ignore:
//! - `live` (server): the subscription has replayed everything it asked for and now
//!   receives live events; `hub-sub --drain` exits on it.
//! - `types` in `subscribe` (OR-ed event types) and `durable` (a named cursor kept by
//!   the hub), with the `cursor` frame that moves it:
//!   `{"type":"cursor","durable":"nightly","id":57}`.
//! - A batch publish: `{"type":"publish","req":8,"events":[{...},{...}]}`, answered
//!   by one `{"type":"ack","req":8,"ids":[44,45]}` (ids in the order of the events;
//!   an event the hub refused has `null` there and an entry in `"errors":[{"index":1,
//!   "code":"too_large","message":"..."}]`). An invalid event refuses the whole frame
//!   with one `error` frame and stores nothing, as `POST /publish` does. The hub names
//!   the largest frame it takes in the `X-Hub-Max-Frame` header of its handshake
//!   answer; `hub-emit` batches only when it sees it.
//! - `"batch":true` in `subscribe`: events that are ready together may come in one
//!   `{"type":"events","sub":"s1","events":[...]}` frame (see [`events_frame`]);
//!   `hub-sub` asks for it when the hub sends `X-Hub-Max-Frame`.

use crate::event::{NewEvent, RawEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) mod quick;

/// A frame a client sends. `E` is the event of a `publish`: clients build
/// [`NewEvent`]s; the hub reads [`RawEvent`]s, read in place from the frame's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame<E = NewEvent> {
    Subscribe {
        sub: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        topics: Vec<String>,
        #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
        filters: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        types: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        durable: Option<String>,
        /// Beyond SPEC: events that are ready together may come in one `events`
        /// frame (see [`events_frame`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        batch: bool,
    },
    Unsubscribe {
        sub: String,
    },
    Publish {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        event: E,
    },
    /// Several events in one `publish` frame (beyond SPEC; see the module docs).
    /// Read only by [`ClientFrame::parse`].
    #[serde(rename = "publish", skip_deserializing)]
    PublishBatch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        events: Vec<E>,
    },
    Cursor {
        durable: String,
        id: u64,
    },
    Ping,
}

impl<'a> ClientFrame<RawEvent<'a>> {
    /// Parses a client frame, as the hub does.
    ///
    /// Same result as `serde_json::from_str::<ClientFrame>`, but without serde's
    /// buffering of internally tagged enums (which copies every frame, event and
    /// all, into an intermediate tree first): this is the hub's hottest parse.
    ///
    /// # Errors
    /// The text is not JSON, not a known frame, or has a field that frame does not take.
    pub fn parse(text: &'a str) -> Result<ClientFrame<RawEvent<'a>>, String> {
        match quick::publish_batch(text) {
            Some((req, events)) => Ok(ClientFrame::PublishBatch { req, events }),
            None => Self::parse_full(text),
        }
    }

    /// [`ClientFrame::parse`] without its quick path for batch `publish` frames.
    pub(crate) fn parse_full(text: &'a str) -> Result<ClientFrame<RawEvent<'a>>, String> {
        let f: FlatFrame<'a> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let kind = f.kind.as_str();
        let allowed: &[&str] = match kind {
            "subscribe" => &[
                "sub", "topics", "where", "types", "since", "last", "durable", "batch",
            ],
            "unsubscribe" => &["sub"],
            "publish" => &["req", "event", "events"],
            "cursor" => &["durable", "id"],
            "ping" => &[],
            other => {
                return Err(format!(
                    "unknown frame type {other:?}, expected one of subscribe, unsubscribe, publish, cursor, ping"
                ));
            }
        };
        let present = [
            ("sub", f.sub.is_some()),
            ("topics", f.topics.is_some()),
            ("where", f.filters.is_some()),
            ("types", f.types.is_some()),
            ("since", f.since.is_some()),
            ("last", f.last.is_some()),
            ("durable", f.durable.is_some()),
            ("batch", f.batch.is_some()),
            ("req", f.req.is_some()),
            ("event", f.event.is_some()),
            ("events", f.events.is_some()),
            ("id", f.id.is_some()),
        ];
        if let Some((name, _)) = present.iter().find(|(n, p)| *p && !allowed.contains(n)) {
            return Err(format!(
                "unknown field `{name}` in {kind}, expected one of: {}",
                allowed.join(", ")
            ));
        }
        let missing = |name: &str| format!("missing field `{name}` in {kind}");
        Ok(match kind {
            "subscribe" => ClientFrame::Subscribe {
                sub: f.sub.ok_or_else(|| missing("sub"))?,
                topics: f.topics.unwrap_or_default(),
                filters: f.filters.unwrap_or_default(),
                types: f.types.unwrap_or_default(),
                since: f.since,
                last: f.last,
                durable: f.durable,
                batch: f.batch.unwrap_or(false),
            },
            "unsubscribe" => ClientFrame::Unsubscribe {
                sub: f.sub.ok_or_else(|| missing("sub"))?,
            },
            "publish" => match (f.event, f.events) {
                (Some(event), None) => ClientFrame::Publish { req: f.req, event },
                (None, Some(events)) if !events.is_empty() => {
                    ClientFrame::PublishBatch { req: f.req, events }
                }
                (None, Some(_)) => return Err("`events` in publish is empty".into()),
                (Some(_), Some(_)) => {
                    return Err("publish takes `event` or `events`, not both".into());
                }
                (None, None) => return Err(missing("event")),
            },
            "cursor" => ClientFrame::Cursor {
                durable: f.durable.ok_or_else(|| missing("durable"))?,
                id: f.id.ok_or_else(|| missing("id"))?,
            },
            _ => ClientFrame::Ping,
        })
    }
}

/// Every field any client frame may have; see [`ClientFrame::parse`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatFrame<'a> {
    #[serde(rename = "type")]
    kind: String,
    sub: Option<String>,
    topics: Option<Vec<String>>,
    #[serde(rename = "where")]
    filters: Option<Vec<String>>,
    types: Option<Vec<String>>,
    since: Option<u64>,
    last: Option<u64>,
    durable: Option<String>,
    batch: Option<bool>,
    req: Option<Value>,
    #[serde(borrow)]
    event: Option<RawEvent<'a>>,
    #[serde(borrow)]
    events: Option<Vec<RawEvent<'a>>>,
    id: Option<u64>,
}

/// A frame the server sends. `event` frames are built by [`event_frame`] from the
/// event's shared encoding instead of through this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Subscribed {
        sub: String,
        last_id: u64,
    },
    Event {
        sub: String,
        event: Value,
    },
    /// Beyond SPEC: several events of a `"batch":true` subscription.
    Events {
        sub: String,
        events: Vec<Value>,
    },
    Live {
        sub: String,
        last_id: u64,
    },
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        id: u64,
    },
    Gap {
        sub: String,
        from: u64,
        to: u64,
        reason: String,
    },
    Pong,
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
    },
}

impl ServerFrame {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a ServerFrame always serializes")
    }
}

/// `{"type":"event","sub":SUB,"event":EVENT}` from the event's encoding, without
/// re-serializing the event.
pub fn event_frame(sub_json: &str, event_json: &str) -> String {
    let mut s = String::with_capacity(34 + sub_json.len() + event_json.len());
    s.push_str(r#"{"type":"event","sub":"#);
    s.push_str(sub_json);
    s.push_str(r#","event":"#);
    s.push_str(event_json);
    s.push('}');
    s
}

/// The start of an `events` frame up to its first event; see [`events_frame`].
pub fn events_frame_prefix(sub_json: &str) -> String {
    format!("{{\"type\":\"events\",\"sub\":{sub_json},\"events\":[\n")
}

/// Beyond SPEC, for a subscription made with `"batch":true`: several events in one
/// frame, `{"type":"events","sub":SUB,"events":[EVENT,EVENT]}`, from the events'
/// shared encodings. Each event starts a line of its own (compact JSON has no raw
/// newline), so a client can slice the events out without a JSON parser:
/// ```text
/// {"type":"events","sub":"s1","events":[
/// {"id":1,...},
/// {"id":2,...}
/// ]}
/// ```
pub fn events_frame<'a>(
    prefix: &str,
    events: impl Iterator<Item = &'a str>,
    size: usize,
) -> String {
    let mut s = String::with_capacity(prefix.len() + size + 4);
    s.push_str(prefix);
    for (i, e) in events.enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(e);
    }
    s.push_str("\n]}");
    s
}

/// The events of an `events` frame that starts with `prefix` (the hub's layout, see
/// [`events_frame`]), as byte ranges of `text`; `None` for any other frame.
pub fn split_events_frame(text: &str, prefix: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let body = text.strip_prefix(prefix)?.strip_suffix("\n]}")?;
    let mut at = prefix.len();
    let mut out = Vec::new();
    // memchr's vector search: std's `split` looks for a newline a word at a time.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body.as_bytes()).chain([body.len()]) {
        let line = &body[std::mem::replace(&mut start, end + 1)..end];
        // A comma after every event but the last, as in JSON.
        let json = match end == body.len() {
            true => line,
            false => line.strip_suffix(',')?,
        };
        if !(json.starts_with('{') && json.ends_with('}')) {
            return None;
        }
        out.push(at..at + json.len());
        at += line.len() + 1;
    }
    Some(out)
}

/// The header of the hub's handshake answer naming the largest frame it takes:
/// a client that sees it may send batch `publish` frames up to that size.
pub const MAX_FRAME_HEADER: &str = "x-hub-max-frame";

/// One event's outcome in a batch publish: its id, or why it was refused.
pub type BatchOutcome = Result<u64, (ErrorCode, String)>;

/// The answer to a batch `publish`: `{"type":"ack","req":R,"ids":[...]}`, with
/// `null` ids and an `errors` list for refused events.
pub fn batch_ack_frame(req: &Option<Value>, outcomes: &[BatchOutcome]) -> String {
    let mut s = String::with_capacity(32 + outcomes.len() * 8);
    let mut digits = itoa::Buffer::new();
    s.push_str(r#"{"type":"ack""#);
    if let Some(r) = req {
        s.push_str(r#","req":"#);
        s.push_str(&serde_json::to_string(r).expect("a JSON value serializes"));
    }
    s.push_str(r#","ids":["#);
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match o {
            Ok(id) => s.push_str(digits.format(*id)),
            Err(_) => s.push_str("null"),
        }
    }
    s.push(']');
    if outcomes.iter().any(Result::is_err) {
        let errors: Vec<Value> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(index, o)| {
                let (code, message) = o.as_ref().err()?;
                Some(serde_json::json!({"index": index, "code": code.as_str(), "message": message}))
            })
            .collect();
        s.push_str(r#","errors":"#);
        s.push_str(&serde_json::to_string(&errors).expect("JSON serializes"));
    }
    s.push('}');
    s
}

/// A batch `publish` frame, `{"type":"publish","req":REQ,"events":[EVENT,...]}`, of
/// events already encoded as JSON objects (`size`: their length with a comma each,
/// or about). The layout the hub's quick path reads.
pub fn publish_batch_frame<'e>(
    req: u64,
    events: impl Iterator<Item = &'e str>,
    size: usize,
) -> String {
    let mut f = String::with_capacity(48 + size);
    f.push_str(r#"{"type":"publish","req":"#);
    f.push_str(itoa::Buffer::new().format(req));
    f.push_str(r#","events":["#);
    for (k, e) in events.enumerate() {
        if k > 0 {
            f.push(',');
        }
        f.push_str(e);
    }
    f.push_str("]}");
    f
}

/// A batch `ack` as a client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchAck {
    pub req: u64,
    pub ids: Vec<Option<u64>>,
    #[serde(default)]
    pub errors: Vec<BatchRefusal>,
}

/// One refused event of a batch `ack`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchRefusal {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// Reads a batch `ack` (one with `ids`); `None` for any other frame. All ids
/// present (the common case) is read without a JSON parser.
pub fn parse_batch_ack(text: &str) -> Option<BatchAck> {
    let fast = || {
        let rest = text.strip_prefix(r#"{"type":"ack","req":"#)?;
        let (req, rest) = rest.split_once(',')?;
        let list = rest.strip_prefix(r#""ids":["#)?.strip_suffix("]}")?;
        // Digits and commas, one pass (a publisher reads one id per event).
        let mut ids = Vec::with_capacity(list.len() / 2 + 1);
        let (mut n, mut digits) = (0u64, 0);
        for &b in list.as_bytes() {
            if b.is_ascii_digit() {
                // A digit after a leading zero: not JSON.
                if digits == 1 && n == 0 {
                    return None;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            } else if b == b',' && digits > 0 {
                ids.push(Some(n));
                (n, digits) = (0, 0);
            } else {
                return None;
            }
        }
        if digits == 0 {
            return None;
        }
        ids.push(Some(n));
        Some(BatchAck {
            req: json_u64(req)?,
            ids,
            errors: Vec::new(),
        })
    };
    if let Some(a) = fast() {
        return Some(a);
    }
    if !text.contains(r#""ids""#) {
        return None;
    }
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "type")]
        kind: String,
        #[serde(flatten)]
        ack: BatchAck,
    }
    let t: Tagged = serde_json::from_str(text).ok()?;
    (t.kind == "ack").then_some(t.ack)
}

/// Reads an `ack` frame with a numeric `req` as the hub writes it
/// (`{"type":"ack","req":7,"id":43}`) without a JSON parser; anything else is `None`
/// and goes through the general path. A pipelining publisher reads one per event.
pub fn parse_ack(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(r#"{"type":"ack","req":"#)?;
    let (req, rest) = rest.split_once(',')?;
    let id = rest.strip_prefix(r#""id":"#)?.strip_suffix('}')?;
    Some((json_u64(req)?, json_u64(id)?))
}

/// A whole JSON number that fits a `u64`, as serde reads one: digits only, no
/// leading zero (`u64::from_str` also takes `+7` and `007`, which are not JSON).
fn json_u64(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let plain = !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1);
    plain.then(|| text.parse().ok()).flatten()
}

/// The `code` of an `error` frame or of an HTTP error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    TooLarge,
    TooMany,
    NotFound,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooMany => "too_many",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }
}

/// WebSocket close codes of SPEC §3.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const ABNORMAL: u16 = 1006;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const TOO_MANY: u16 = 4429;
    pub const INTERNAL: u16 = 4500;

    /// Whether a client should reconnect after this close code (SPEC §3 "Retry
    /// meaning"). Codes SPEC does not list are treated as transient.
    pub fn is_retryable(code: u16) -> bool {
        !matches!(
            code,
            UNSUPPORTED | POLICY | TOO_BIG | BAD_REQUEST | UNAUTHORIZED | FORBIDDEN
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::IncomingEvent;
    use serde_json::json;

    #[test]
    fn spec_client_frames_parse() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","sub":"s1","topics":["task:*"],"where":["data.status=failed"],"since":40}"#,
        )
        .unwrap();
        assert!(
            matches!(f, ClientFrame::Subscribe { since: Some(40), ref filters, .. } if filters.len() == 1)
        );
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","sub":"s2","topics":["log:nginx"],"last":100}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ClientFrame::Subscribe {
                last: Some(100),
                ..
            }
        ));
        let f: ClientFrame = serde_json::from_str(r#"{"type":"unsubscribe","sub":"s1"}"#).unwrap();
        assert_eq!(f, ClientFrame::Unsubscribe { sub: "s1".into() });
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"publish","req":7,"event":{"topic":"task:build-42","type":"progress","data":{"percent":50}}}"#,
        )
        .unwrap();
        match f {
            ClientFrame::Publish { req, event } => {
                assert_eq!(req, Some(json!(7)));
                assert_eq!(event.data, json!({"percent":50}));
            }
            _ => panic!(),
        }
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(f, ClientFrame::Ping);
    }

    #[test]
    fn fast_parse_agrees_with_serde() {
        for text in [
            r#"{"type":"subscribe","sub":"s1","topics":["task:*"],"where":["data.status=failed"],"since":40}"#,
            r#"{"type":"subscribe","sub":"s2","last":100,"types":["a"],"durable":"d"}"#,
            r#"{"type":"unsubscribe","sub":"s1"}"#,
            r#"{"type":"publish","req":7,"event":{"topic":"t","type":"progress","data":{"percent":50}}}"#,
            r#"{"event":{"topic":"t"},"type":"publish"}"#,
            r#"{"type":"cursor","durable":"n","id":5}"#,
            r#"{"type":"ping"}"#,
        ] {
            let a = ClientFrame::parse(text).unwrap();
            // serde's tag buffering cannot hold raw values: compare with NewEvent.
            let new = serde_json::from_str::<ClientFrame>(text).unwrap();
            let inc: Option<IncomingEvent> = match &new {
                ClientFrame::Publish { event, .. } => Some(event.clone().into()),
                _ => None,
            };
            let b = match new {
                ClientFrame::Publish { req, .. } => ClientFrame::Publish {
                    req,
                    event: inc.as_ref().unwrap().as_raw(),
                },
                ClientFrame::Subscribe {
                    sub,
                    topics,
                    filters,
                    types,
                    since,
                    last,
                    durable,
                    batch,
                } => ClientFrame::Subscribe {
                    sub,
                    topics,
                    filters,
                    types,
                    since,
                    last,
                    durable,
                    batch,
                },
                ClientFrame::Unsubscribe { sub } => ClientFrame::Unsubscribe { sub },
                ClientFrame::Cursor { durable, id } => ClientFrame::Cursor { durable, id },
                ClientFrame::Ping => ClientFrame::Ping,
                ClientFrame::PublishBatch { .. } => unreachable!("never deserialized"),
            };
            assert_eq!(a, b, "{text}");
        }
        for bad in [
            r#"{"type":"subscribe","sub":"s","topicz":[]}"#,
            r#"{"type":"subscribe","sub":"s","event":{"topic":"t"}}"#,
            r#"{"type":"shout"}"#,
            r#"{"sub":"s"}"#,
            r#"{"type":"publish"}"#,
            r#"{"type":"unsubscribe"}"#,
            "nope",
        ] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<ClientFrame<NewEvent>>(bad).is_err(),
                "{bad}"
            );
        }
        let e = ClientFrame::parse(r#"{"type":"subscribe","sub":"s","topicz":[]}"#).unwrap_err();
        assert!(e.contains("topicz"), "{e}");
        let e = ClientFrame::parse(r#"{"type":"ping","sub":"s"}"#).unwrap_err();
        assert!(e.contains("`sub` in ping"), "{e}");
    }

    #[test]
    fn unknown_fields_and_types_are_errors() {
        let e =
            serde_json::from_str::<ClientFrame>(r#"{"type":"subscribe","sub":"s","topicz":[]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("topicz"), "{e}");
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"shout"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"sub":"s"}"#).is_err());
    }

    #[test]
    fn server_frames_encode_as_spec() {
        assert_eq!(
            ServerFrame::Subscribed {
                sub: "s1".into(),
                last_id: 42
            }
            .encode(),
            r#"{"type":"subscribed","sub":"s1","last_id":42}"#
        );
        assert_eq!(
            ServerFrame::Ack {
                req: Some(json!(7)),
                id: 43
            }
            .encode(),
            r#"{"type":"ack","req":7,"id":43}"#
        );
        assert_eq!(
            ServerFrame::Gap {
                sub: "s1".into(),
                from: 10,
                to: 19,
                reason: "retention".into()
            }
            .encode(),
            r#"{"type":"gap","sub":"s1","from":10,"to":19,"reason":"retention"}"#
        );
        assert_eq!(ServerFrame::Pong.encode(), r#"{"type":"pong"}"#);
        let ev = r#"{"id":1,"topic":"t"}"#;
        let f = event_frame("\"s1\"", ev);
        let parsed: ServerFrame = serde_json::from_str(&f).unwrap();
        assert_eq!(
            parsed,
            ServerFrame::Event {
                sub: "s1".into(),
                event: json!({"id":1,"topic":"t"})
            }
        );
    }

    #[test]
    fn ack_fast_path() {
        let text = ServerFrame::Ack {
            req: Some(json!(7)),
            id: 43,
        }
        .encode();
        assert_eq!(parse_ack(&text), Some((7, 43)));
        assert_eq!(parse_ack(r#"{"type":"ack","req":"a","id":1}"#), None);
        assert_eq!(parse_ack(r#"{"type":"ack","id":1}"#), None);
        assert_eq!(parse_ack(r#"{"type":"pong"}"#), None);
    }

    #[test]
    fn batch_publish_parses_and_round_trips() {
        let frame: ClientFrame = ClientFrame::PublishBatch {
            req: Some(json!(8)),
            events: vec![NewEvent::new("a"), NewEvent::new("b")],
        };
        let text = serde_json::to_string(&frame).unwrap();
        assert!(
            text.starts_with(r#"{"type":"publish","req":8,"events":[{"topic":"a""#),
            "{text}"
        );
        match ClientFrame::parse(&text).unwrap() {
            ClientFrame::PublishBatch { req, events } => {
                assert_eq!(req, Some(json!(8)));
                let topics: Vec<_> = events.iter().map(|e| &*e.topic.0).collect();
                assert_eq!(topics, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
        for (bad, says) in [
            (r#"{"type":"publish","events":[]}"#, "empty"),
            (
                r#"{"type":"publish","event":{"topic":"a"},"events":[{"topic":"b"}]}"#,
                "not both",
            ),
            (r#"{"type":"publish","events":[{"topic":"a","x":1}]}"#, "x"),
            (r#"{"type":"ping","events":[]}"#, "`events` in ping"),
        ] {
            let e = ClientFrame::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn events_frames_split_back_into_events() {
        let prefix = events_frame_prefix("\"s1\"");
        let evs = [
            r#"{"id":1,"data":{"a":"x,\ny"}}"#,
            r#"{"id":2}"#,
            r#"{"id":3}"#,
        ];
        let text = events_frame(&prefix, evs.iter().copied(), 64);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "events");
        assert_eq!(v["events"][2]["id"], 3);
        let ranges = split_events_frame(&text, &prefix).unwrap();
        let got: Vec<&str> = ranges.into_iter().map(|r| &text[r]).collect();
        assert_eq!(got, evs);
        assert_eq!(
            split_events_frame(r#"{"type":"event","sub":"s1","event":{}}"#, &prefix),
            None
        );
        assert_eq!(
            split_events_frame(&format!("{prefix}1,\n2\n]}}"), &prefix),
            None
        );
    }

    #[test]
    fn batch_ack_round_trips() {
        let all = [Ok(44), Ok(45)];
        let text = batch_ack_frame(&Some(json!(8)), &all);
        assert_eq!(text, r#"{"type":"ack","req":8,"ids":[44,45]}"#);
        let a = parse_batch_ack(&text).unwrap();
        assert_eq!((a.req, a.ids), (8, vec![Some(44), Some(45)]));
        let some = [
            Ok(46),
            Err((ErrorCode::TooLarge, "event of 70000 bytes".to_string())),
        ];
        let text = batch_ack_frame(&Some(json!(9)), &some);
        let a = parse_batch_ack(&text).unwrap();
        assert_eq!(a.ids, vec![Some(46), None]);
        assert_eq!(a.errors.len(), 1);
        assert_eq!(
            (a.errors[0].index, a.errors[0].code.as_str()),
            (1, "too_large")
        );
        assert_eq!(parse_batch_ack(r#"{"type":"ack","req":7,"id":43}"#), None);
        assert_eq!(parse_batch_ack(r#"{"type":"pong"}"#), None);
        assert_eq!(parse_ack(r#"{"type":"ack","req":8,"ids":[44,45]}"#), None);
        // The quick path reads digits and commas only; anything else goes to serde.
        let big = format!(r#"{{"type":"ack","req":3,"ids":[{},0,7]}}"#, u64::MAX);
        assert_eq!(
            parse_batch_ack(&big).unwrap().ids,
            [Some(u64::MAX), Some(0), Some(7)]
        );
        let over = r#"{"type":"ack","req":3,"ids":[18446744073709551616]}"#;
        assert_eq!(parse_batch_ack(over), None);
        for odd in ["[]", "[1,,2]", "[1,]", "[ 1, 2 ]", "[1,null]"] {
            let text = format!(r#"{{"type":"ack","req":3,"ids":{odd}}}"#);
            let via_serde: Option<Vec<Option<u64>>> = serde_json::from_str(odd).ok();
            assert_eq!(parse_batch_ack(&text).map(|a| a.ids), via_serde, "{odd}");
        }
    }

    #[test]
    fn retry_meaning() {
        for c in [1001, 1006, 4429, 4500] {
            assert!(close::is_retryable(c));
        }
        for c in [1003, 1008, 1009, 4400, 4401, 4403] {
            assert!(!close::is_retryable(c));
        }
    }

    /// The client's quick reads of `ack`, batch `ack` and `events` frames, on frames
    /// the hub writes and on those changed a little: where a quick read answers,
    /// serde reads the same (the checks of [`crate::fuzzing::server_frame`]).
    #[test]
    fn generated_server_frames_read_as_serde_reads_them() {
        use crate::testgen::*;
        use proptest::prelude::*;
        let id = prop_oneof![0..1000u64, any::<u64>()];
        let outcome = prop::option::weighted(0.9, id.clone());
        let event = json().prop_map(|v| match v {
            Json::Obj(_) => v,
            other => Json::Obj(vec![
                ("id".into(), Json::Num("1".into())),
                ("data".into(), other),
            ]),
        });
        let frame = prop_oneof![
            (id.clone(), id.clone()).prop_map(|(req, id)| {
                ServerFrame::Ack {
                    req: Some(json!(req)),
                    id,
                }
                .encode()
            }),
            (id.clone(), prop::collection::vec(outcome, 1..6)).prop_map(|(req, ids)| {
                let outcomes: Vec<BatchOutcome> = ids
                    .into_iter()
                    .map(|o| o.ok_or((ErrorCode::TooLarge, "too large".to_string())))
                    .collect();
                batch_ack_frame(&Some(json!(req)), &outcomes)
            }),
            prop::collection::vec(event, 1..5).prop_map(|events| {
                let texts: Vec<String> = events
                    .iter()
                    .map(|e| {
                        let v: Value = serde_json::from_str(&rendered(e, &mut Style::new(vec![])))
                            .unwrap_or(Value::Null);
                        serde_json::to_string(&v).expect("a value serializes")
                    })
                    .collect();
                events_frame(
                    &events_frame_prefix("\"s1\""),
                    texts.iter().map(String::as_str),
                    0,
                )
            }),
        ];
        let frames = (frame, some_mutations()).prop_map(|(f, ms)| maybe_mutated(f, &ms));
        let quick = count(frames, |text| crate::fuzzing::server_frame(&text, "s1"));
        assert!(quick > 60, "a quick read answered {quick} of 256");
    }

    /// Found by `generated_server_frames_read_as_serde_reads_them`: the quick reads
    /// of `ack` frames took numbers serde refuses (`u64::from_str` reads `+7` and
    /// `007`), so a client read an id out of a frame that is not JSON.
    #[test]
    fn quick_acks_refuse_numbers_serde_refuses() {
        for text in [
            r#"{"type":"ack","req":010,"id":700}"#,
            r#"{"type":"ack","req":100,"id":0100000000000000000}"#,
            r#"{"type":"ack","req":+7,"id":43}"#,
            r#"{"type":"ack","req":7,"id":+43}"#,
        ] {
            assert_eq!(parse_ack(text), None, "{text}");
            assert!(serde_json::from_str::<ServerFrame>(text).is_err(), "{text}");
        }
        for text in [
            r#"{"type":"ack","req":100,"ids":[100000000000000000,0100]}"#,
            r#"{"type":"ack","req":100,"ids":[00]}"#,
            r#"{"type":"ack","req":+1,"ids":[1]}"#,
            r#"{"type":"ack","req":01,"ids":[1]}"#,
        ] {
            assert_eq!(parse_batch_ack(text), None, "{text}");
        }
        assert_eq!(
            parse_ack(r#"{"type":"ack","req":0,"id":10}"#),
            Some((0, 10))
        );
        let a = parse_batch_ack(r#"{"type":"ack","req":0,"ids":[0,10,0]}"#).unwrap();
        assert_eq!(a.ids, [Some(0), Some(10), Some(0)]);
        for text in [
            r#"{"type":"ack","req":010,"id":700}"#,
            r#"{"type":"ack","req":100,"ids":[1,0100]}"#,
        ] {
            crate::fuzzing::server_frame(text, "s1");
        }
    }

    /// Found by the `server_frame` fuzz target: an `events` frame with a comma
    /// after its last event (or none between two) was split into events, though it
    /// is not JSON.
    #[test]
    fn events_frames_split_only_with_commas_as_json_has_them() {
        let prefix = events_frame_prefix("\"s1\"");
        for bad in [
            "{\"md\":1,\"ts\":\"202e\",\"data\":{\"\":\"x,\\ny\"}},",
            "{\"id\":1}\n{\"id\":2}",
            "{\"id\":1},\n{\"id\":2},",
            "{\"id\":1},,\n{\"id\":2}",
        ] {
            let text = format!("{prefix}{bad}\n]}}");
            assert_eq!(split_events_frame(&text, &prefix), None, "{text}");
            assert!(
                serde_json::from_str::<ServerFrame>(&text).is_err(),
                "{text}"
            );
            crate::fuzzing::server_frame(&text, "s1");
        }
        let text = format!("{prefix}{{\"id\":1}},\n{{\"id\":2}}\n]}}");
        assert_eq!(split_events_frame(&text, &prefix).map(|r| r.len()), Some(2));
    }
}
