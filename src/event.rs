//! The event model: what a publisher sends ([`NewEvent`]), what the hub stores and
//! delivers ([`Event`]), and the validation rules of SPEC §1.
//!
//! An event is encoded to JSON exactly once, when the broker assigns its id; the
//! encoded form travels in [`StoredEvent`] and is shared (behind an `Arc`) by the log
//! cache and every subscriber, so fan-out never re-serializes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Longest type, in bytes.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest source, in bytes.
pub const MAX_SOURCE_LEN: usize = 255;
/// The type an event gets when the publisher names none.
pub const DEFAULT_TYPE: &str = "message";

/// Why an event was refused. The message says what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(
        "invalid topic {0:?}: a topic is 1-255 bytes of A-Z a-z 0-9 _ - . : / @ (e.g. task:build-42)"
    )]
    Topic(String),
    #[error("invalid type {0:?}: a type is 1-64 bytes of a-z 0-9 _ . - (e.g. progress)")]
    Type(String),
    #[error("invalid key: a key is 1-128 bytes (got {0} bytes)")]
    Key(usize),
    #[error("invalid source: a source is at most 255 bytes (got {0} bytes)")]
    Source(usize),
    #[error(
        "event too large: {size} bytes encoded, the limit is {limit} bytes (--max-event-bytes)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("invalid event: {0}")]
    Json(String),
}

/// Checks a topic against SPEC §1.
pub fn validate_topic(topic: &str) -> Result<(), EventError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EventError::Topic(topic.to_string()))
    }
}

/// Checks a type against SPEC §1.
pub fn validate_type(kind: &str) -> Result<(), EventError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_TYPE_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EventError::Type(kind.to_string()))
    }
}

/// An event as a publisher sends it (`POST /publish`, a `publish` frame, `hub-emit
/// --events`). `id` and `ts` are accepted and ignored so that an event printed by
/// `hub-sub` can be published again as it is; any other unknown field is refused, so a
/// typo (`"dat"`) is an error instead of lost data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub topic: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing)]
    pub id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub ts: Option<Value>,
}

impl NewEvent {
    /// A new event with the default type and `null` data.
    pub fn new(topic: impl Into<String>) -> Self {
        NewEvent {
            topic: topic.into(),
            kind: None,
            source: None,
            key: None,
            data: Value::Null,
            id: None,
            ts: None,
        }
    }

    /// The type, or [`DEFAULT_TYPE`].
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(DEFAULT_TYPE)
    }

    /// Checks topic, type, source and key (not the encoded size: see [`Event::encode`]).
    pub fn validate(&self) -> Result<(), EventError> {
        validate_topic(&self.topic)?;
        validate_type(self.kind())?;
        if let Some(k) = &self.key
            && (k.is_empty() || k.len() > MAX_KEY_LEN)
        {
            return Err(EventError::Key(k.len()));
        }
        if let Some(s) = &self.source
            && s.len() > MAX_SOURCE_LEN
        {
            return Err(EventError::Source(s.len()));
        }
        Ok(())
    }

    /// Parses one event object from JSON text, with a message fit for a user.
    pub fn from_json(text: &str) -> Result<Self, EventError> {
        let ev: NewEvent =
            serde_json::from_str(text).map_err(|e| EventError::Json(describe_json_error(&e)))?;
        ev.validate()?;
        Ok(ev)
    }
}

/// Turns a serde error into a sentence that names what is accepted.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field `topic`") {
        "missing field \"topic\": an event is an object {\"topic\":..., \"type\":..., \"data\":..., \"source\":..., \"key\":...}".to_string()
    } else if msg.starts_with("unknown field") {
        msg
    } else if msg.starts_with("invalid type") {
        format!("{msg}; an event is a JSON object with a string \"topic\"")
    } else {
        format!("not valid JSON: {msg}")
    }
}

/// An event the hub has stored. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    #[serde(with = "ts_millis")]
    pub ts: u64,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub data: Value,
}

impl Event {
    /// Stamps a validated [`NewEvent`] with its id and receive time.
    pub fn from_new(new: NewEvent, id: u64, ts: u64) -> Self {
        let kind = new.kind.unwrap_or_else(|| DEFAULT_TYPE.to_string());
        Event {
            id,
            ts,
            topic: new.topic,
            kind,
            source: new.source,
            key: new.key,
            data: new.data,
        }
    }

    /// Encodes the event as compact JSON.
    pub fn encode(&self) -> String {
        self.encode_with_ts(&format_ts(self.ts))
    }

    /// Encodes the event with its `ts` already formatted (the broker formats it
    /// once per batch). Same bytes as serde would write, without serde's envelope
    /// machinery on the hot path.
    pub fn encode_with_ts(&self, ts: &str) -> String {
        fn put_str(out: &mut Vec<u8>, s: &str) {
            serde_json::to_writer(&mut *out, s).expect("a string serializes");
        }
        let mut out = Vec::with_capacity(96 + self.topic.len() + self.kind.len());
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(self.id.to_string().as_bytes());
        out.extend_from_slice(b",\"ts\":");
        put_str(&mut out, ts);
        out.extend_from_slice(b",\"topic\":");
        put_str(&mut out, &self.topic);
        out.extend_from_slice(b",\"type\":");
        put_str(&mut out, &self.kind);
        if let Some(src) = &self.source {
            out.extend_from_slice(b",\"source\":");
            put_str(&mut out, src);
        }
        if let Some(key) = &self.key {
            out.extend_from_slice(b",\"key\":");
            put_str(&mut out, key);
        }
        out.extend_from_slice(b",\"data\":");
        serde_json::to_writer(&mut out, &self.data).expect("a JSON value serializes");
        out.push(b'}');
        String::from_utf8(out).expect("JSON output is UTF-8")
    }
}

/// An event together with its one JSON encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: Event,
    pub json: Box<str>,
}

impl StoredEvent {
    /// Encodes `event` once and keeps both forms.
    pub fn new(event: Event) -> Self {
        let json = event.encode().into_boxed_str();
        StoredEvent { event, json }
    }

    /// Like [`StoredEvent::new`], with `ts` already formatted.
    pub fn with_ts(event: Event, ts: &str) -> Self {
        let json = event.encode_with_ts(ts).into_boxed_str();
        StoredEvent { event, json }
    }

    /// Decodes a stored JSON encoding (from the log).
    pub fn decode(json: &str) -> Result<Self, serde_json::Error> {
        let event: Event = serde_json::from_str(json)?;
        Ok(StoredEvent {
            event,
            json: json.into(),
        })
    }

    pub fn id(&self) -> u64 {
        self.event.id
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ts(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_ts(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

mod ts_millis {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_ts(&s).ok_or_else(|| serde::de::Error::custom("ts is not RFC 3339"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topics() {
        for ok in [
            "task:build-42",
            "log:nginx",
            "a",
            "A/b@c.d_e-f:9",
            &"x".repeat(255),
        ] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "é", "a*", &"x".repeat(256), "a\nb"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types() {
        for ok in ["message", "task_failed", "a.b-c_9"] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Upper", "with space", "x:y", &"x".repeat(65)] {
            assert!(validate_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_event_parsing() {
        let e = NewEvent::from_json(r#"{"topic":"t","data":{"a":1}}"#).unwrap();
        assert_eq!(e.kind(), "message");
        assert_eq!(e.data, json!({"a":1}));
        // id and ts of a re-published event are ignored
        assert!(NewEvent::from_json(r#"{"id":3,"ts":"x","topic":"t"}"#).is_ok());
        let err = NewEvent::from_json(r#"{"topic":"t","dat":1}"#).unwrap_err();
        assert!(err.to_string().contains("dat"), "{err}");
        assert!(NewEvent::from_json(r#"{"type":"x"}"#).is_err());
        assert!(NewEvent::from_json(r#"{"topic":"bad topic"}"#).is_err());
        assert!(NewEvent::from_json(r#"[1]"#).is_err());
        let long_key = format!(r#"{{"topic":"t","key":"{}"}}"#, "k".repeat(129));
        assert!(NewEvent::from_json(&long_key).is_err());
    }

    #[test]
    fn event_round_trip_and_order() {
        let mut n = NewEvent::new("task:x");
        n.data = json!({"percent": 50});
        let ev = Event::from_new(n, 42, 1_795_300_200_123);
        let s = StoredEvent::new(ev.clone());
        assert!(s.json.starts_with(r#"{"id":42,"ts":"20"#), "{}", s.json);
        assert!(
            s.json
                .contains(r#".123Z","topic":"task:x","type":"message","data":{"percent":50}}"#)
        );
        assert_eq!(StoredEvent::decode(&s.json).unwrap().event, ev);
    }

    #[test]
    fn hand_encoding_matches_serde() {
        let mut ev = Event::from_new(NewEvent::new("a:b"), 1, 1_795_300_200_123);
        assert_eq!(ev.encode(), serde_json::to_string(&ev).unwrap());
        ev.source = Some("h\"ost\n".into());
        ev.key = Some("k\u{1}é".into());
        ev.data = json!({"z": [1, 2.5, null, "x\"y"], "a": {"b": true}});
        ev.id = u64::MAX;
        assert_eq!(ev.encode(), serde_json::to_string(&ev).unwrap());
    }
}
