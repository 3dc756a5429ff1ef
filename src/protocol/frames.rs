//! The frames of SPEC §3 as types: what a client sends ([`ClientFrame`], with the
//! hub's own parse of it), what the server sends ([`ServerFrame`]), the error codes
//! and the close codes.

use super::quick;
use super::subscribe::Subscribe;
use crate::event::{NewEvent, RawEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A frame a client sends. `E` is the event of a `publish`: clients build
/// [`NewEvent`]s; the hub reads [`RawEvent`]s, read in place from the frame's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame<E = NewEvent> {
    Subscribe {
        sub: String,
        #[serde(flatten)]
        spec: Subscribe,
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
    pub fn parse(text: &'a str) -> Result<ClientFrame<RawEvent<'a>>, FrameError> {
        match quick::publish_batch(text) {
            Some((req, events)) => Ok(ClientFrame::PublishBatch { req, events }),
            None => Self::parse_full(text),
        }
    }

    /// [`ClientFrame::parse`] without its quick path for batch `publish` frames.
    pub(crate) fn parse_full(text: &'a str) -> Result<ClientFrame<RawEvent<'a>>, FrameError> {
        let f: FlatFrame<'a> = serde_json::from_str(text).map_err(|e| {
            // The error path only: is the text JSON at all?
            match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => FrameError::NotAFrame(e.to_string()),
                Err(_) => FrameError::NotJson(e.to_string()),
            }
        })?;
        Self::from_flat(f).map_err(FrameError::NotAFrame)
    }

    /// The frame `f` holds, checked: its type known, its fields that type's.
    fn from_flat(f: FlatFrame<'a>) -> Result<ClientFrame<RawEvent<'a>>, String> {
        let kind = f.kind.as_str();
        let allowed: &[&str] = match kind {
            "subscribe" => &SUBSCRIBE_FIELDS,
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
                spec: Subscribe {
                    topics: f.topics.unwrap_or_default(),
                    filters: f.filters.unwrap_or_default(),
                    types: f.types.unwrap_or_default(),
                    since: f.since,
                    last: f.last,
                    durable: f.durable,
                    batch: f.batch.unwrap_or(false),
                },
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

/// Why [`ClientFrame::parse`] refused a text; the message is serde's, or names the
/// frame's type and the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The text is not JSON.
    #[error("{0}")]
    NotJson(String),
    /// JSON, but no frame the hub takes: not an object, an unknown type, an unknown
    /// or missing field, a field of the wrong type.
    #[error("{0}")]
    NotAFrame(String),
}

/// The fields of a `subscribe` frame: `sub` and those of [`Subscribe`].
const SUBSCRIBE_FIELDS: [&str; 8] = {
    let mut all = ["sub"; 8];
    let mut i = 0;
    while i < Subscribe::FIELDS.len() {
        all[i + 1] = Subscribe::FIELDS[i];
        i += 1;
    }
    all
};

/// Every field any client frame may have; see [`ClientFrame::parse`]. The
/// subscribe fields are [`Subscribe`]'s, each an `Option` here to tell which were
/// given.
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
    s.push_str(EVENT_FRAME_TYPE);
    s.push_str(sub_json);
    s.push_str(EVENT_FRAME_EVENT);
    s.push_str(event_json);
    s.push('}');
    s
}

/// What [`event_frame`] writes before the subscription's name, and between it and
/// the event.
const EVENT_FRAME_TYPE: &str = r#"{"type":"event","sub":"#;
const EVENT_FRAME_EVENT: &str = r#","event":"#;

/// The start of the `event` frames of subscription `sub_json` (its name as a JSON
/// string) up to the event, as [`event_frame`] writes them.
pub fn event_frame_prefix(sub_json: &str) -> String {
    [EVENT_FRAME_TYPE, sub_json, EVENT_FRAME_EVENT].concat()
}

/// The event of an `event` frame that starts with `prefix` (see
/// [`event_frame_prefix`]), as a byte range of `text`, sliced without a JSON parser;
/// `None` for any other frame.
pub fn split_event_frame(text: &str, prefix: &str) -> Option<std::ops::Range<usize>> {
    (text.starts_with(prefix) && text.ends_with('}')).then(|| prefix.len()..text.len() - 1)
}

/// The id of an event encoded the hub's way (`{"id":42,"ts":...`), without a
/// parser; `None` for any other shape, and for a number serde would refuse.
pub fn event_id(json: &str) -> Option<u64> {
    let rest = json.strip_prefix(r#"{"id":"#)?;
    let end = rest.bytes().take_while(u8::is_ascii_digit).count();
    if rest.as_bytes().get(end) != Some(&b',') {
        return None;
    }
    super::batch::json_u64(&rest[..end])
}

/// [`event_id`]'s serde twin, and the path for events in another shape.
///
/// # Errors
/// The text is not a JSON object with a whole-number `id`.
pub fn event_id_by_serde(json: &str) -> Result<u64, String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_str::<IdOnly>(json)
        .map(|e| e.id)
        .map_err(|e| e.to_string())
}

/// [`split_event_frame`]'s serde twin: the subscription and event of an `event`
/// frame, read by serde.
#[cfg(any(test, feature = "fuzzing"))]
pub fn event_by_serde(text: &str) -> Option<(String, Value)> {
    match serde_json::from_str(text).ok()? {
        ServerFrame::Event { sub, event } => Some((sub, event)),
        _ => None,
    }
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
            matches!(f, ClientFrame::Subscribe { ref spec, .. } if spec.since == Some(40) && spec.filters.len() == 1)
        );
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","sub":"s2","topics":["log:nginx"],"last":100}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ClientFrame::Subscribe { ref spec, .. } if spec.last == Some(100)
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
                ClientFrame::Subscribe { sub, spec } => ClientFrame::Subscribe { sub, spec },
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
        assert!(e.to_string().contains("topicz"), "{e}");
        let e = ClientFrame::parse(r#"{"type":"ping","sub":"s"}"#).unwrap_err();
        assert!(e.to_string().contains("`sub` in ping"), "{e}");
        // What is not JSON is told apart from JSON that is no frame.
        for text in [
            "nope",
            r#"{"type":"ping""#,
            r#"{"type":"ping"} x"#,
            r#"{"typ":1,"#,
        ] {
            assert!(
                matches!(ClientFrame::parse(text), Err(FrameError::NotJson(_))),
                "{text}"
            );
        }
        for text in [
            "[1]",
            "5",
            r#"{"type":"shout"}"#,
            r#"{"type":"ping","sub":"s"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","sub":"s","since":-1}"#,
        ] {
            assert!(
                matches!(ClientFrame::parse(text), Err(FrameError::NotAFrame(_))),
                "{text}"
            );
        }
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
            assert!(e.to_string().contains(says), "{bad}: {e}");
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

    /// A `subscribe` frame with every field of [`Subscribe`] set: serde writes the
    /// fields [`Subscribe::FIELDS`] names, in that order, and the hub's parse reads
    /// each of them back (a field added to the struct but not to `FlatFrame` fails
    /// here).
    #[test]
    fn every_subscribe_field_reads_back() {
        let spec = Subscribe {
            topics: vec!["task:*".into()],
            filters: vec!["data.a=1".into()],
            types: vec!["progress".into()],
            since: Some(4),
            last: Some(5),
            durable: Some("d".into()),
            batch: true,
        };
        let frame: ClientFrame = ClientFrame::Subscribe {
            sub: "s".into(),
            spec: spec.clone(),
        };
        let text = serde_json::to_string(&frame).unwrap();
        let mut keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        let mut want = vec!["sub".to_string(), "type".to_string()];
        want.extend(Subscribe::FIELDS.map(String::from));
        want.sort();
        assert_eq!(keys, want, "{text}");
        let order: Vec<usize> = Subscribe::FIELDS
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).unwrap())
            .collect();
        assert!(order.is_sorted(), "{text}");
        let parsed = ClientFrame::parse(&text).unwrap();
        assert_eq!(
            parsed,
            ClientFrame::Subscribe {
                sub: "s".into(),
                spec: spec.clone()
            }
        );
        // The bytes clients have always written: `type`, `sub`, then the rest.
        let some: ClientFrame = ClientFrame::Subscribe {
            sub: "s1".into(),
            spec: Subscribe {
                topics: vec!["task:*".into()],
                since: Some(40),
                batch: true,
                ..Subscribe::default()
            },
        };
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"type":"subscribe","sub":"s1","topics":["task:*"],"since":40,"batch":true}"#
        );
        assert_eq!(serde_json::from_str::<ClientFrame>(&text).unwrap(), frame);
        // Absent fields take their defaults both ways, and unknown ones are refused.
        let bare = r#"{"type":"subscribe","sub":"s"}"#;
        assert_eq!(
            serde_json::from_str::<ClientFrame>(bare).unwrap(),
            ClientFrame::Subscribe {
                sub: "s".into(),
                spec: Subscribe::default()
            }
        );
        let odd = r#"{"type":"subscribe","sub":"s","topicz":[]}"#;
        assert!(serde_json::from_str::<ClientFrame>(odd).is_err());
        assert!(ClientFrame::parse(odd).is_err());
    }

    /// Found by the differential harness (`quick_server_frame_reads_on_changed_frames`):
    /// `event_id` read `{"id":041,` as 41 (`u64::from_str` takes leading zeros),
    /// though serde refuses the number, so a client took an id out of an event that
    /// is not JSON.
    #[test]
    fn event_ids_are_read_only_as_serde_reads_them() {
        for json in [
            r#"{"id":041,"topic":"t"}"#,
            r#"{"id":00,"topic":"t"}"#,
            r#"{"id":+4,"topic":"t"}"#,
            r#"{"id":,"topic":"t"}"#,
            r#"{"id":-1,"topic":"t"}"#,
            r#"{"id":18446744073709551616,"topic":"t"}"#,
        ] {
            assert_eq!(event_id(json), None, "{json}");
            assert!(event_id_by_serde(json).is_err(), "{json}");
        }
        for (json, id) in [
            (r#"{"id":0,"topic":"t"}"#, 0),
            (r#"{"id":40,"topic":"t"}"#, 40),
            (r#"{"id":18446744073709551615,"topic":"t"}"#, u64::MAX),
        ] {
            assert_eq!(event_id(json), Some(id), "{json}");
            assert_eq!(event_id_by_serde(json), Ok(id), "{json}");
        }
        // Another field order: no quick read, serde finds it.
        assert_eq!(event_id(r#"{"topic":"t","id":7}"#), None);
        assert_eq!(event_id_by_serde(r#"{"topic":"t","id":7}"#), Ok(7));
    }
}
