//! The event model: what a publisher sends ([`NewEvent`]), what the hub stores and
//! delivers ([`Event`]), and the validation rules of SPEC §1.
//!
//! # Lifecycle
//! ```text
//! NewEvent ──(wire)──▶ RawEvent ──prepare──▶ Prepared ──stamp(id, ts)──▶ StoredEvent ──(wire)──▶ Event
//!  client     (or IncomingEvent)   checked,       log          one JSON encoding,          client
//!             borrowed from the    encoded but                 shared by cache and
//!             frame (`intake`)     id and ts                   subscribers (`stored`)
//! ```
//! - [`NewEvent`]: what a client builds and sends (owned, `data` a `Value`).
//! - [`RawEvent`] / [`IncomingEvent`]: what the hub reads from a frame or body, its
//!   `data` kept as the JSON text it came as ([`intake`](self#lifecycle)).
//! - [`Prepared`]: checked against SPEC §1 and encoded but for id and ts.
//! - [`StoredEvent`]: stamped by the log with its id and ts; fields read in place.
//! - [`Event`]: what a client decodes from an `event` frame.
//!
//! An event is encoded to JSON exactly once, when the broker assigns its id; the
//! encoded form travels in [`StoredEvent`] and is shared (behind an `Arc`) by the log
//! cache and every subscriber, so fan-out never re-serializes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::json::{check_json, compact_json, long_number_or_deep, may_fail_value_parse};

mod intake;
mod stored;
pub use intake::*;
pub use stored::*;

/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Longest type, in bytes.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest source, in bytes.
pub const MAX_SOURCE_LEN: usize = 255;
/// Deepest `data` taken, in levels of arrays and objects: its event, one level
/// more, must still be within serde_json's limit (128) for clients to read it.
pub const MAX_DATA_DEPTH: usize = 126;
/// The type an event gets when the publisher names none.
pub const DEFAULT_TYPE: &str = "message";

/// The types of the task lifecycle (SPEC §1), the one list: `/tasks` folds them,
/// the log flags them on disk so a restart rebuilds the board from them alone,
/// `hub-sub --progress` draws them and the dashboard's task views show them.
pub const TASK_TYPES: [&str; 4] = ["task_started", "progress", "task_completed", "task_failed"];

/// Whether `kind` is one of [`TASK_TYPES`].
pub fn is_task_type(kind: &str) -> bool {
    TASK_TYPES.contains(&kind)
}

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

/// The bytes a topic (1) and a type (2) may hold, as a table: one load per byte.
const NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let lower_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        if lower_digit
            || c.is_ascii_uppercase()
            || matches!(c, b'_' | b'-' | b'.' | b':' | b'/' | b'@')
        {
            t[b] |= 1;
        }
        if lower_digit || matches!(c, b'_' | b'.' | b'-') {
            t[b] |= 2;
        }
        b += 1;
    }
    t
};

/// Whether every byte of `s` is of `class` in [`NAME_BYTES`].
fn all_of(s: &str, class: u8) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (NAME_BYTES[b as usize] & class != 0))
}

/// Checks a topic against SPEC §1.
pub fn validate_topic(topic: &str) -> Result<(), EventError> {
    let ok = !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && all_of(topic, 1);
    if ok {
        Ok(())
    } else {
        Err(EventError::Topic(topic.to_string()))
    }
}

/// Checks a type against SPEC §1.
pub fn validate_type(kind: &str) -> Result<(), EventError> {
    let ok = !kind.is_empty() && kind.len() <= MAX_TYPE_LEN && all_of(kind, 2);
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
    /// Read and thrown away unchecked, as the hub does ([`RawEvent`]).
    #[serde(default, skip_serializing)]
    pub id: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub ts: Option<serde::de::IgnoredAny>,
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

    /// Checks topic, type, source and key (not the encoded size).
    pub fn validate(&self) -> Result<(), EventError> {
        validate_fields(
            &self.topic,
            self.kind(),
            self.source.as_deref(),
            self.key.as_deref(),
        )
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
        let data = serde_json::to_string(&self.data).expect("a JSON value serializes");
        let tail = Tail {
            topic: &self.topic,
            kind: &self.kind,
            source: self.source.as_deref(),
            key: self.key.as_deref(),
        };
        let (tail, _) = tail.encode(&data);
        let mut out = String::with_capacity(STAMP_ROOM + tail.len());
        write_stamp(&mut out, self.id, &TsField::new(ts));
        out.push_str(&tail);
        out
    }
}

/// The fields of an event that matching and the tasks board read, for both the
/// client-side [`Event`] and the hub's [`StoredEvent`].
pub trait Fields {
    fn id(&self) -> u64;
    /// Receive time, ms since the epoch.
    fn ts(&self) -> u64;
    fn topic(&self) -> &str;
    fn kind(&self) -> &str;
    fn source(&self) -> Option<&str>;
    fn key(&self) -> Option<&str>;
    fn data(&self) -> &Value;
}

impl Fields for Event {
    fn id(&self) -> u64 {
        self.id
    }
    fn ts(&self) -> u64 {
        self.ts
    }
    fn topic(&self) -> &str {
        &self.topic
    }
    fn kind(&self) -> &str {
        &self.kind
    }
    fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    fn data(&self) -> &Value {
        &self.data
    }
}

fn validate_fields(
    topic: &str,
    kind: &str,
    source: Option<&str>,
    key: Option<&str>,
) -> Result<(), EventError> {
    validate_topic(topic)?;
    validate_type(kind)?;
    if let Some(k) = key
        && (k.is_empty() || k.len() > MAX_KEY_LEN)
    {
        return Err(EventError::Key(k.len()));
    }
    if let Some(s) = source
        && s.len() > MAX_SOURCE_LEN
    {
        return Err(EventError::Source(s.len()));
    }
    Ok(())
}

/// The default `source` of the client commands: this host's name, or `localhost`
/// when it is empty or longer than [`MAX_SOURCE_LEN`] (so no event is refused for it).
pub fn default_source() -> String {
    source_from_host(gethostname::gethostname().to_string_lossy().into_owned())
}

fn source_from_host(host: String) -> String {
    if host.is_empty() || host.len() > MAX_SOURCE_LEN {
        "localhost".to_string()
    } else {
        host
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

    #[test]
    fn the_default_source_is_always_a_valid_source() {
        assert_eq!(source_from_host("ci-3".into()), "ci-3");
        assert_eq!(source_from_host(String::new()), "localhost");
        assert_eq!(
            source_from_host("h".repeat(MAX_SOURCE_LEN)).len(),
            MAX_SOURCE_LEN
        );
        assert_eq!(
            source_from_host("h".repeat(MAX_SOURCE_LEN + 1)),
            "localhost"
        );
        let mut e = NewEvent::new("t");
        e.source = Some(default_source());
        assert!(e.validate().is_ok());
    }

    use super::*;
    use serde_json::json;

    /// Plain fields are read from the stored JSON in place, escaped ones kept
    /// aside; both read back as given, after encoding and after decoding the log form.
    #[test]
    fn stored_fields_read_back_plain_and_escaped() {
        for (source, key) in [
            ("ci-3", "k-1"),
            ("say \"hi\"\n", "é\\x"),
            ("plain", "tab\there"),
        ] {
            let mut e = NewEvent::new("task:build-42");
            e.kind = Some("progress".into());
            e.source = Some(source.into());
            e.key = Some(key.into());
            e.data = json!({"percent": 50});
            let s = StoredEvent::encode(e.into(), 7, 1_700_000_000_123, "2023-11-14T22:13:20.123Z");
            for got in [s.clone(), StoredEvent::decode(&s.json).unwrap()] {
                assert_eq!(got.topic(), "task:build-42");
                assert_eq!(got.kind(), "progress");
                assert_eq!(got.source(), Some(source));
                assert_eq!(got.key(), Some(key));
                assert_eq!(got.data(), &json!({"percent": 50}));
            }
        }
    }

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

    /// The byte table says what SPEC §1 says, for every character up to U+00FF.
    #[test]
    fn name_bytes_follow_the_spec() {
        for c in (0u8..=255).map(char::from) {
            let s = c.to_string();
            let topic = c.is_ascii_alphanumeric() || "_-.:/@".contains(c);
            let kind = c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
            assert_eq!(validate_topic(&s).is_ok(), topic, "{c:?}");
            assert_eq!(validate_type(&s).is_ok(), kind, "{c:?}");
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
        assert_eq!(s.json, ev.encode());
        let back = StoredEvent::decode(&s.json).unwrap();
        assert_eq!(back.to_event(), ev);
        assert_eq!(back.data_json(), r#"{"percent":50}"#);
    }

    #[test]
    fn incoming_data_is_kept_raw_and_compacted() {
        let inc = IncomingEvent::from_json(
            "{\"topic\":\"t\",\"data\":{ \"a\" : [1, 2],\n \"s\": \"x y\\\" z\" },\"id\":9,\"ts\":\"x\"}",
        )
        .unwrap();
        let s = StoredEvent::encode(inc, 5, 0, &format_ts(0));
        assert_eq!(s.data_json(), r#"{"a":[1,2],"s":"x y\" z"}"#);
        assert_eq!(s.data(), &json!({"a": [1, 2], "s": "x y\" z"}));
        let none = StoredEvent::encode(
            IncomingEvent::from_json(r#"{"topic":"t"}"#).unwrap(),
            6,
            0,
            "ts",
        );
        assert_eq!(none.data_json(), "null");
        assert!(IncomingEvent::from_json(r#"{"topic":"t","dat":1}"#).is_err());
        let huge = IncomingEvent::from_json(r#"{"topic":"t","data":{"n":1e999}}"#).unwrap_err();
        assert!(huge.to_string().contains("out of range"), "{huge}");
        assert!(IncomingEvent::from_json(r#"{"topic":"t","data":[1,"\ud800"]}"#).is_err());
        assert!(IncomingEvent::from_json(r#"{"topic":"bad topic"}"#).is_err());
        assert_eq!(compact_json("[1, \"a b\"]"), "[1,\"a b\"]");
        assert!(matches!(compact_json("{\"a\":1}"), Cow::Borrowed(_)));
        // Spaces inside strings only: compact already.
        assert!(matches!(compact_json("{\"a\":\"x y\"}"), Cow::Borrowed(_)));
        assert_eq!(compact_json("{\"a\":\"x y\"}\n"), "{\"a\":\"x y\"}");
    }

    /// The quick pass lets through only data a `Value` parse takes: each way a raw
    /// value can fail that parse is caught (and the strict check then refuses it),
    /// and ordinary data is not sent to the strict check.
    #[test]
    fn quick_pass_catches_what_a_value_parse_refuses() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let long = |n: usize| "9".repeat(n);
        let refused = [
            "1e999".to_string(),
            "[1E400]".to_string(),
            "-2.5e+309".to_string(),
            r#""\ud800""#.to_string(),
            r#"{"a":"\udc00x"}"#.to_string(),
            deep(200),
            long(400),
            format!("{}.5", long(320)),
        ];
        for text in &refused {
            let raw: &RawValue = serde_json::from_str(text).expect("a raw value takes it");
            assert!(
                check_json(raw.get()).is_err(),
                "a Value parse refuses {text:.40}"
            );
            assert!(may_fail_value_parse(raw.get()), "caught: {text:.40}");
        }
        let fine = [
            r#"{"n":1,"pad":"xxxx"}"#.to_string(),
            r#"{"message":"deploy 42 done","percent":50.5,"ok":true,"x":null}"#.to_string(),
            r#"{"line":"say \"hi\"\n","n":-12.25}"#.to_string(),
            deep(99),
            long(299),
        ];
        for text in &fine {
            assert!(check_json(text).is_ok(), "{text:.40}");
            assert!(
                !may_fail_value_parse(text),
                "not sent to the strict check: {text:.40}"
            );
        }
        // The strict check still runs where it may matter, and passes what is fine.
        for text in ["1e5", "[2E-3]", r#""\u00e9""#] {
            assert!(
                may_fail_value_parse(text) && check_json(text).is_ok(),
                "{text}"
            );
        }
    }

    /// A raw event read in place, prepared and stamped, with this hub's ts, a ts
    /// longer than the usual stamp, or one to escape: fields and data read back the
    /// same either way.
    #[test]
    fn prepared_events_stamp_in_place_or_not() {
        let text = r#"{"topic":"a:b","key":"k\"1","source":"h","data":{"x": 1}}"#;
        let raw: RawEvent<'_> = serde_json::from_str(text).unwrap();
        raw.validate().unwrap();
        assert!(matches!(raw.topic.0, Cow::Borrowed(_)));
        let p = raw.prepare();
        assert_eq!((p.key(), p.kind()), (Some("k\"1"), "message"));
        for ts in [format_ts(1_795_300_200_123), "x".repeat(80), "a\"b".into()] {
            let s = StoredEvent::stamp(p.clone(), u64::MAX, 7, &TsField::new(&ts));
            let v: Value = serde_json::from_str(&s.json).unwrap();
            assert_eq!(v["id"], u64::MAX);
            assert_eq!(v["ts"], ts.as_str());
            assert_eq!(v["key"], "k\"1");
            assert_eq!(v["data"], json!({"x": 1}));
            assert_eq!(
                (s.topic(), s.kind(), s.source()),
                ("a:b", "message", Some("h"))
            );
            assert_eq!(s.key(), Some("k\"1"));
            assert_eq!(s.data_json(), r#"{"x":1}"#);
            if ts.len() == 24 {
                assert_eq!(s.json.len(), p.max_encoded_len());
            }
        }
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
        assert_eq!(StoredEvent::new(ev.clone()).json, ev.encode());
    }

    /// Non-ASCII and DEL need no escape (serde_json writes them as they are): such
    /// a source or key is copied in place, reads back from its span, and the
    /// encoding still matches serde's byte for byte.
    #[test]
    fn non_ascii_strings_are_copied_in_place() {
        let mut ev = Event::from_new(NewEvent::new("a"), 3, 1_795_300_200_123);
        ev.source = Some("héllo\u{7f}wörld".into());
        ev.key = Some("ключ-1".into());
        assert_eq!(ev.encode(), serde_json::to_string(&ev).unwrap());
        let mut out = String::new();
        let span = put_str(&mut out, "ключ-1").expect("copied in place");
        assert_eq!(&out[span.0 as usize..span.1 as usize], "ключ-1");
        assert_eq!(put_str(&mut String::new(), "tab\there"), None);
        let text = r#"{"topic":"a","key":"ключ-1","source":"héllo\u007fwörld"}"#;
        let raw: RawEvent<'_> = serde_json::from_str(text).unwrap();
        let s = StoredEvent::stamp(
            raw.prepare(),
            3,
            1_795_300_200_123,
            &TsField::new(&format_ts(1_795_300_200_123)),
        );
        assert_eq!(
            (s.key(), s.source()),
            (Some("ключ-1"), Some("héllo\u{7f}wörld"))
        );
        assert_eq!(s.json, ev.encode());
    }

    /// Lines of a `POST /publish` body (generated events, in any layout, some changed
    /// a little): read in place, checked and stored as the hub does, each is valid
    /// exactly when serde's [`NewEvent`] is, and is stored as serde would encode it
    /// (the checks of [`crate::fuzzing::body_line`]).
    #[test]
    fn generated_body_lines_are_stored_as_serde_reads_them() {
        use crate::testgen::*;
        use proptest::prelude::*;
        let lines = (event(), style(), some_mutations())
            .prop_map(|(e, mut st, ms)| maybe_mutated(render_event(&e, &mut st), &ms));
        let valid = count(lines, |line| crate::fuzzing::body_line(&line));
        assert!(valid > 40, "{valid} of 256 lines were valid events");
    }

    /// Found by `generated_body_lines_are_stored_as_serde_reads_them`: the hub took
    /// a line whose ignored `id` (or `ts`) a `Value` cannot hold, `hub-emit
    /// --events` refused it as not valid JSON. Both ignore them unchecked now.
    #[test]
    fn new_event_ignores_id_and_ts_unchecked_as_the_hub_does() {
        for line in [
            r#"{"id" : -1e400,"topic":"a","data":"x"}"#,
            r#"{"topic":"a","ts":"\ud800"}"#,
            r#"{"topic":"a","id":[1e999],"ts":{"a":null}}"#,
        ] {
            assert!(NewEvent::from_json(line).is_ok(), "{line}");
            assert!(IncomingEvent::from_json(line).is_ok(), "{line}");
            assert!(crate::fuzzing::body_line(line), "{line}");
        }
    }

    /// Found by `generated_body_lines_are_stored_as_serde_reads_them`: a `POST
    /// /publish` line took data nested 127 levels, whose stored event (one level
    /// more) serde_json refuses to read past its recursion limit, so a client
    /// could not decode an event the hub had acknowledged.
    #[test]
    fn data_is_no_deeper_than_its_stored_event_can_be_read() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let line = |n: usize| format!(r#"{{"topic":"a","data":{}}}"#, deep(n));
        let ok = IncomingEvent::from_json(&line(MAX_DATA_DEPTH)).unwrap();
        let s = StoredEvent::encode(ok, 1, 0, &format_ts(0));
        assert!(serde_json::from_str::<Value>(&s.json).is_ok());
        assert!(serde_json::from_str::<Event>(&s.json).is_ok());
        assert!(NewEvent::from_json(&line(MAX_DATA_DEPTH)).is_ok());
        let e = IncomingEvent::from_json(&line(MAX_DATA_DEPTH + 1)).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
        assert!(NewEvent::from_json(&line(MAX_DATA_DEPTH + 1)).is_err());
        for n in MAX_DATA_DEPTH - 2..MAX_DATA_DEPTH + 3 {
            crate::fuzzing::body_line(&line(n));
        }
    }
}
