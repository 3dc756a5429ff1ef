//! The event model: what a publisher sends ([`NewEvent`]), what the hub stores and
//! delivers ([`Event`]), and the validation rules of SPEC §1.
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

/// Everything of an encoded event but its id, ts and data: the one place that
/// writes the stored JSON form, for [`Event::encode`] and [`Prepared`]. The stored
/// form is `{"id":ID,"ts":TS,` ([`write_stamp`]) followed by what [`Tail::encode`]
/// writes, so the hub encodes that part where an event comes in and stamps it
/// when the log assigns its id.
struct Tail<'a> {
    topic: &'a str,
    kind: &'a str,
    source: Option<&'a str>,
    key: Option<&'a str>,
}

/// Where the parts of an encoded event sit in its JSON. A string field is `None`
/// when it had to be escaped (its JSON text is not its value).
struct Spans {
    topic: Option<(u32, u32)>,
    kind: Option<(u32, u32)>,
    source: Option<(u32, u32)>,
    key: Option<(u32, u32)>,
    data: (u32, u32),
}

/// A JSON string: copied between quotes when nothing in it needs escaping (topics
/// and types never do; the span of the copy is returned), else through serde_json.
fn put_str(out: &mut String, s: &str) -> Option<(u32, u32)> {
    // What serde_json escapes: control characters, `"` and `\`; nothing else (not
    // DEL, not non-ASCII). One branch-free pass, which the compiler vectorizes.
    let escape = s.bytes().fold(false, |esc, b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escape {
        out.reserve(s.len() + 2);
        out.push('"');
        let start = out.len() as u32;
        out.push_str(s);
        let end = out.len() as u32;
        out.push('"');
        Some((start, end))
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string serializes"));
        None
    }
}

impl Tail<'_> {
    /// Bytes [`Tail::encode_into`] writes with data of at most `data_len` bytes,
    /// or a little more.
    fn size_hint(&self, data_len: usize) -> usize {
        let opt = |o: Option<&str>| o.map_or(0, |s| s.len() + 12);
        40 + self.topic.len() + self.kind.len() + opt(self.source) + opt(self.key) + data_len
    }

    /// `"topic":...,"data":DATA}` with `data` (already compact JSON text) spliced
    /// in, and where its fields sit in it.
    fn encode(&self, data: &str) -> (String, Spans) {
        let mut out = String::with_capacity(self.size_hint(data.len()));
        let spans = self.encode_into(&mut out, data);
        (out, spans)
    }

    /// [`Tail::encode`], appended to `out`; the spans count from where it starts.
    fn encode_into(&self, out: &mut String, data: &str) -> Spans {
        let base = out.len() as u32;
        let rel = |span: Option<(u32, u32)>| span.map(|(a, b)| (a - base, b - base));
        out.push_str("\"topic\":");
        let topic = rel(put_str(out, self.topic));
        out.push_str(",\"type\":");
        let kind = rel(put_str(out, self.kind));
        let source = self.source.and_then(|src| {
            out.push_str(",\"source\":");
            rel(put_str(out, src))
        });
        let key = self.key.and_then(|key| {
            out.push_str(",\"key\":");
            rel(put_str(out, key))
        });
        out.push_str(",\"data\":");
        let start = out.len() as u32 - base;
        out.push_str(data);
        let end = out.len() as u32 - base;
        out.push('}');
        Spans {
            topic,
            kind,
            source,
            key,
            data: (start, end),
        }
    }
}

/// Room for a stamp, `{"id":ID,"ts":TS,`: 20 digits of id and a 24-character ts
/// take 59 bytes.
const STAMP_ROOM: usize = 64;

/// The part of a stamp all events of a batch share, `,"ts":TS,`: written once.
pub struct TsField(String);

impl TsField {
    /// From `ts` formatted ([`format_ts`]).
    pub fn new(ts_text: &str) -> TsField {
        let mut s = String::with_capacity(ts_text.len() + 9);
        s.push_str(",\"ts\":");
        put_str(&mut s, ts_text);
        s.push(',');
        TsField(s)
    }
}

/// Writes the stamp `{"id":ID,"ts":TS,` that goes in front of an encoded tail.
fn write_stamp(out: &mut String, id: u64, ts: &TsField) {
    out.push_str("{\"id\":");
    out.push_str(itoa::Buffer::new().format(id));
    out.push_str(&ts.0);
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

/// An event as the hub receives it (`POST /publish`, a `publish` frame): like
/// [`NewEvent`], but `data` stays the JSON text it came as. The hub never needs the
/// tree of a published event's data to store and deliver it, so it does not build
/// one (see [`StoredEvent`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    pub topic: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// `id` and `ts` of a re-published event are accepted and ignored.
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "ts")]
    _ts: Option<serde::de::IgnoredAny>,
}

impl PartialEq for IncomingEvent {
    fn eq(&self, o: &Self) -> bool {
        self.topic == o.topic
            && self.kind == o.kind
            && self.source == o.source
            && self.key == o.key
            && self.data_json() == o.data_json()
    }
}

impl From<NewEvent> for IncomingEvent {
    fn from(n: NewEvent) -> Self {
        let data = serde_json::value::to_raw_value(&n.data).expect("a JSON value serializes");
        IncomingEvent {
            topic: n.topic,
            kind: n.kind,
            source: n.source,
            key: n.key,
            data: Some(data),
            _id: None,
            _ts: None,
        }
    }
}

impl IncomingEvent {
    /// The type, or [`DEFAULT_TYPE`].
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(DEFAULT_TYPE)
    }

    /// The data's JSON text (`null` when absent), compact.
    pub fn data_json(&self) -> Cow<'_, str> {
        match &self.data {
            Some(d) => compact_json(d.get()),
            None => Cow::Borrowed("null"),
        }
    }

    /// This event as a [`RawEvent`] (borrowing it).
    pub fn as_raw(&self) -> RawEvent<'_> {
        fn b(s: &Option<String>) -> Option<CowStr<'_>> {
            s.as_deref().map(|s| CowStr(Cow::Borrowed(s)))
        }
        RawEvent {
            topic: CowStr(Cow::Borrowed(&self.topic)),
            kind: b(&self.kind),
            source: b(&self.source),
            key: b(&self.key),
            data: self.data.as_deref().map(RawData::from),
            _id: None,
            _ts: None,
            canon: None,
        }
    }

    /// Checks topic, type, source and key, as [`NewEvent::validate`], and that the
    /// data can be decoded (a raw value may hold numbers a `Value` cannot).
    pub fn validate(&self) -> Result<(), EventError> {
        self.as_raw().validate()
    }

    /// Parses one event object from JSON text, with a message fit for a user.
    pub fn from_json(text: &str) -> Result<Self, EventError> {
        let ev: IncomingEvent =
            serde_json::from_str(text).map_err(|e| EventError::Json(describe_json_error(&e)))?;
        ev.validate()?;
        Ok(ev)
    }
}

impl From<IncomingEvent> for Prepared {
    /// Encodes the event as it is (check it first with [`IncomingEvent::validate`]).
    fn from(inc: IncomingEvent) -> Prepared {
        inc.as_raw().prepare()
    }
}

/// A string read from JSON, borrowed from the text when it had no escapes. (serde
/// borrows a `Cow<str>` field, but not one inside an `Option`.)
#[derive(Debug, Clone, PartialEq)]
pub struct CowStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An event's `data` as the JSON text it came in: read by serde_json as a
/// [`RawValue`], or taken by the quick check ([`crate::json::plain_value_len`]),
/// which also settles that it parses into a `Value`.
#[derive(Debug, Clone, Copy)]
pub struct RawData<'a> {
    text: &'a str,
    /// Taken by the quick check: [`may_fail_value_parse`] need not look.
    plain: bool,
}

impl<'a> RawData<'a> {
    /// The JSON text.
    pub fn get(&self) -> &'a str {
        self.text
    }

    /// Text that [`crate::json::plain_value_len`] took whole.
    pub(crate) fn plain(text: &'a str) -> Self {
        RawData { text, plain: true }
    }
}

impl<'a> From<&'a RawValue> for RawData<'a> {
    fn from(raw: &'a RawValue) -> Self {
        RawData {
            text: raw.get(),
            plain: false,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawData<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(RawData::from)
    }
}

/// An event as a publisher sent it, read in place from the frame or body it came in
/// (strings borrowed unless escaped, `data` as its raw JSON text): no allocation for
/// a plain event. The hub checks it ([`RawEvent::validate`]) and encodes it
/// ([`RawEvent::prepare`]) on the connection that received it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent<'a> {
    #[serde(borrow)]
    pub topic: CowStr<'a>,
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<CowStr<'a>>,
    #[serde(default, borrow)]
    pub source: Option<CowStr<'a>>,
    #[serde(default, borrow)]
    pub key: Option<CowStr<'a>>,
    #[serde(default, borrow)]
    pub data: Option<RawData<'a>>,
    /// `id` and `ts` of a re-published event are accepted and ignored.
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "ts")]
    _ts: Option<serde::de::IgnoredAny>,
    /// `"topic":...,"data":DATA}` as the frame held it, where that text is already
    /// this event's encoding (but for a missing `type`): copied whole instead of
    /// field by field. Set only by the quick path ([`RawEvent::new`]), which checks.
    #[serde(skip)]
    canon: Option<&'a str>,
}

impl PartialEq for RawEvent<'_> {
    fn eq(&self, o: &Self) -> bool {
        // No data is `null` data, as stored.
        let data = |e: &Self| {
            e.data
                .map_or(Cow::Borrowed("null"), |d| compact_json(d.get()))
        };
        self.topic == o.topic
            && self.kind == o.kind
            && self.source == o.source
            && self.key == o.key
            && data(self) == data(o)
    }
}

impl<'a> RawEvent<'a> {
    /// An event read by other means than its `Deserialize` (the quick path of
    /// [`ClientFrame::parse`](crate::protocol::ClientFrame::parse)).
    ///
    /// `canon`, if given, is the event's text from its first field to its closing
    /// brace, and must be its encoding but for a missing type: the fields in the
    /// order `topic`, `type`, `source`, `key`, `data`, no whitespace, strings with
    /// nothing to escape, `data` present, compact and not `null`, and every string
    /// field borrowed from this very text.
    pub(crate) fn new(
        topic: CowStr<'a>,
        kind: Option<CowStr<'a>>,
        source: Option<CowStr<'a>>,
        key: Option<CowStr<'a>>,
        data: Option<RawData<'a>>,
        canon: Option<&'a str>,
    ) -> Self {
        RawEvent {
            topic,
            kind,
            source,
            key,
            data,
            _id: None,
            _ts: None,
            canon,
        }
    }
}

impl RawEvent<'_> {
    /// The type, or [`DEFAULT_TYPE`].
    pub fn kind(&self) -> &str {
        self.kind.as_ref().map_or(DEFAULT_TYPE, |k| &k.0)
    }

    fn opt<'s>(s: &'s Option<CowStr<'_>>) -> Option<&'s str> {
        s.as_ref().map(|s| &*s.0)
    }

    /// Checks topic, type, source and key, as [`NewEvent::validate`], and that the
    /// data can be decoded (a raw value may hold numbers a `Value` cannot).
    pub fn validate(&self) -> Result<(), EventError> {
        validate_fields(
            &self.topic.0,
            self.kind(),
            Self::opt(&self.source),
            Self::opt(&self.key),
        )?;
        if let Some(d) = &self.data
            && !d.plain
            && may_fail_value_parse(d.get())
        {
            check_json(d.get()).map_err(|e| EventError::Json(format!("data: {e}")))?;
            // Stored, the data sits one level down in its event, which clients read
            // whole: it must parse there too.
            if long_number_or_deep(d.get().as_bytes())
                && check_json(&format!("[{}]", d.get())).is_err()
            {
                return Err(EventError::Json(format!(
                    "data: nested too deeply (at most {MAX_DATA_DEPTH} levels of arrays and objects)"
                )));
            }
        }
        Ok(())
    }

    /// `data` as compact JSON text.
    fn data_text(&self) -> Cow<'_, str> {
        match self.data {
            Some(d) => compact_json(d.get()),
            None => Cow::Borrowed("null"),
        }
    }

    fn tail(&self) -> Tail<'_> {
        Tail {
            topic: &self.topic.0,
            kind: self.kind(),
            source: Self::opt(&self.source),
            key: Self::opt(&self.key),
        }
    }

    /// Encodes the event, all but its stamp (check it first with
    /// [`validate`](RawEvent::validate)).
    pub fn prepare(&self) -> Prepared {
        Self::prepare_all(std::slice::from_ref(self))
            .pop()
            .expect("one event")
    }

    /// Whether the event will be encoded by copying its text whole.
    #[cfg(test)]
    pub(crate) fn is_canon(&self) -> bool {
        self.canon.is_some()
    }

    /// [`Tail::encode_into`] for an event with a `canon` text: the same bytes, as
    /// one copy (two around the default type if the event has none).
    fn encode_canon(&self, out: &mut String, text: &str) -> Spans {
        const TOPIC: usize = r#""topic":""#.len();
        const TYPE: &str = r#","type":""#;
        let topic_end = TOPIC + self.topic.0.len() + 1;
        let gap = match self.kind {
            Some(_) => 0,
            None => TYPE.len() + DEFAULT_TYPE.len() + 1,
        };
        out.reserve(text.len() + gap);
        out.push_str(&text[..topic_end]);
        if gap > 0 {
            out.push_str(TYPE);
            out.push_str(DEFAULT_TYPE);
            out.push('"');
        }
        out.push_str(&text[topic_end..]);
        // A field's place in `text`, moved past the inserted type if after it.
        let at = |s: &str| {
            let a = s.as_ptr() as usize - text.as_ptr() as usize;
            debug_assert!(a + s.len() <= text.len(), "{s:?} is not in {text:?}");
            let a = if a >= topic_end { a + gap } else { a };
            (a as u32, (a + s.len()) as u32)
        };
        let field = |f: &Option<CowStr<'_>>| f.as_ref().map(|v| at(&v.0));
        let default_at = (topic_end + TYPE.len()) as u32;
        Spans {
            topic: Some(at(&self.topic.0)),
            kind: field(&self.kind).or(Some((default_at, default_at + DEFAULT_TYPE.len() as u32))),
            source: field(&self.source),
            key: field(&self.key),
            data: at(self.data.map_or("null", |d| d.get())),
        }
    }

    /// Encodes events, all but their stamps, into one shared buffer (check them
    /// first with [`validate`](RawEvent::validate)): one allocation for a batch,
    /// not one per event, and one free once the last of them is stored.
    pub fn prepare_all(events: &[RawEvent<'_>]) -> Vec<Prepared> {
        let data = RawEvent::data_text;
        let tail = RawEvent::tail;
        // The raw data's length bounds its compact form's: no compaction twice.
        let raw_len = |e: &RawEvent<'_>| e.data.map_or(4, |d| d.get().len());
        let size = events.iter().map(|e| tail(e).size_hint(raw_len(e))).sum();
        let mut buf = String::with_capacity(size);
        let mut parts = Vec::with_capacity(events.len());
        for e in events {
            let start = buf.len();
            let at = match e.canon {
                Some(text) => e.encode_canon(&mut buf, text),
                None => tail(e).encode_into(&mut buf, &data(e)),
            };
            parts.push((start, buf.len() - start, at));
        }
        let buf = Arc::new(buf);
        events
            .iter()
            .zip(parts)
            .map(|(e, (start, len, at))| {
                let t = tail(e);
                Prepared {
                    buf: buf.clone(),
                    start: start as u32,
                    len: len as u32,
                    topic: Text::new(at.topic, t.topic),
                    kind: Text::new(at.kind, t.kind),
                    source: t.source.map(|v| Text::new(at.source, v)),
                    key: t.key.map(|v| Text::new(at.key, v)),
                    data_at: at.data,
                }
            })
            .collect()
    }
}

/// An event checked and encoded where it came in, all but the stamp
/// (`{"id":ID,"ts":TS,`) that only the log can give it: the log's writer writes
/// the stamp and then this text ([`StoredEvent::stamp`]). Events prepared together
/// share one buffer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Holds this event's `"topic":...,"data":DATA}` at `start`, `len` bytes.
    buf: Arc<String>,
    start: u32,
    len: u32,
    /// Spans count from `start`.
    topic: Text,
    kind: Text,
    source: Option<Text>,
    key: Option<Text>,
    data_at: (u32, u32),
}

impl Prepared {
    /// `"topic":...,"data":DATA}`.
    fn tail(&self) -> &str {
        &self.buf[self.start as usize..(self.start + self.len) as usize]
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_ref().map(|t| t.get(self.tail()))
    }

    pub fn kind(&self) -> &str {
        self.kind.get(self.tail())
    }

    /// The size of the stored encoding with the widest id: an upper bound, so a
    /// body can be checked whole before anything is stored.
    pub fn max_encoded_len(&self) -> usize {
        // `{"id":` 20 digits `,"ts":"` 24 characters `",`
        6 + 20 + 7 + 24 + 2 + self.len as usize
    }
}

/// Whether raw JSON that serde_json has read already (as a [`RawValue`]: its
/// structure, string escapes and characters are valid) may still hold what parsing
/// it into a `Value` refuses: a number beyond f64's range (that takes an exponent,
/// or 309 digits), an escaped lone surrogate (that takes a `\u` escape), or nesting
/// past serde_json's recursion limit of 128 (that takes 128 brackets). Where this
/// says no, [`check_json`] would pass: one quick pass over the bytes instead of a
/// second parse, for most data.
fn may_fail_value_parse(text: &str) -> bool {
    let b = text.as_bytes();
    // `\u`, or a digit and then `e`/`E`: one branch-free pass over byte pairs, which
    // the compiler vectorizes.
    let pairs = b.iter().zip(b.iter().skip(1)).fold(false, |hit, (&x, &y)| {
        hit | ((x == b'\\') & (y == b'u')) | ((x.wrapping_sub(b'0') < 10) & ((y | 0x20) == b'e'))
    });
    // 300 digits or 100 open brackets need as many bytes.
    pairs || (b.len() >= 200 && long_number_or_deep(b))
}

/// 300 digits in a row, or 100 open brackets.
fn long_number_or_deep(b: &[u8]) -> bool {
    let (mut digits, mut opens) = (0u32, 0u32);
    for &c in b {
        if c.is_ascii_digit() {
            digits += 1;
        } else {
            digits = 0;
            opens += u32::from(c == b'[' || c == b'{');
        }
        if digits >= 300 || opens >= 100 {
            return true;
        }
    }
    false
}

/// Checks that `text` is exactly one JSON value, as strictly as parsing it into a
/// [`serde_json::Value`] would (numbers in range, escapes valid), without building
/// one. The hub keeps published data as text and decodes it only on demand, so it
/// must be sure at intake that it can.
///
/// # Errors
/// The text is not one valid JSON value.
pub fn check_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(text).map(|_| ())
}

/// A JSON value read and thrown away, checked as strictly as parsing it into a
/// [`serde_json::Value`] would (numbers in range, string escapes valid), without
/// building anything. (`serde::de::IgnoredAny` would skip nested values without
/// those checks: `{"a":1e999}` would pass.)
pub struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Removes the insignificant whitespace of a valid JSON text, borrowing when there
/// is none (the common case: machines send compact JSON). Stored events must be
/// compact: each is one line of `hub-sub`'s output and of `/events`.
pub fn compact_json(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    // In valid JSON a byte at or below b' ' is whitespace (strings cannot hold raw
    // control characters), so text without one is compact: one branch-free pass
    // the compiler vectorizes, before the scan that tracks strings.
    if !bytes.iter().fold(false, |ws, &b| ws | (b <= b' ')) {
        return Cow::Borrowed(raw);
    }
    let mut in_str = false;
    let mut escaped = false;
    let mut first_ws = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            first_ws = Some(i);
            break;
        }
    }
    let Some(start) = first_ws else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..start]);
    let mut in_str = false;
    let mut escaped = false;
    for c in raw[start..].chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if matches!(c, ' ' | '\n' | '\r' | '\t') {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
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

/// An event the hub has stored: its fields, its one JSON encoding (shared by the
/// log cache and every subscriber, behind an `Arc`), and its data, decoded from
/// that encoding only when something asks for it (a `data.*` filter, `/tasks`).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: u64,
    /// Receive time, ms since the epoch.
    pub ts: u64,
    topic: Text,
    kind: Text,
    source: Option<Text>,
    key: Option<Text>,
    /// Kept as the `String` it was built in (a `Box<str>` would cost a copy).
    pub json: String,
    /// Where `data` sits in `json`.
    data_at: (u32, u32),
    data: OnceLock<Value>,
}

/// A string field of a [`StoredEvent`]: where its value sits in the event's JSON
/// (no allocation; a value with nothing to escape is its own JSON text, as topics and
/// types always are), or, for a value that was escaped, the value itself.
#[derive(Debug, Clone)]
enum Text {
    At(u32, u32),
    Owned(Box<str>),
}

impl Text {
    /// `span` if the value sits there in the JSON, else the value itself.
    fn new(span: Option<(u32, u32)>, value: &str) -> Text {
        match span {
            Some((a, b)) => Text::At(a, b),
            None => Text::Owned(value.into()),
        }
    }

    /// A field read from stored JSON: borrowed text is its own span in `json`.
    fn decoded(json: &str, value: Cow<'_, str>) -> Text {
        match value {
            Cow::Borrowed(b) => {
                let a = b.as_ptr() as usize - json.as_ptr() as usize;
                Text::At(a as u32, (a + b.len()) as u32)
            }
            Cow::Owned(o) => Text::Owned(o.into_boxed_str()),
        }
    }

    /// The same field in a text with `n` bytes put in front.
    fn shifted(self, n: usize) -> Text {
        match self {
            Text::At(a, b) => Text::At(a + n as u32, b + n as u32),
            owned => owned,
        }
    }

    fn get<'a>(&'a self, json: &'a str) -> &'a str {
        match self {
            Text::At(a, b) => &json[*a as usize..*b as usize],
            Text::Owned(s) => s,
        }
    }
}

impl PartialEq for StoredEvent {
    fn eq(&self, o: &Self) -> bool {
        self.json == o.json
    }
}

impl Fields for StoredEvent {
    fn id(&self) -> u64 {
        self.id
    }
    fn ts(&self) -> u64 {
        self.ts
    }
    fn topic(&self) -> &str {
        self.topic.get(&self.json)
    }
    fn kind(&self) -> &str {
        self.kind.get(&self.json)
    }
    fn source(&self) -> Option<&str> {
        self.source.as_ref().map(|t| t.get(&self.json))
    }
    fn key(&self) -> Option<&str> {
        self.key.as_ref().map(|t| t.get(&self.json))
    }
    fn data(&self) -> &Value {
        // Data is checked at intake, so this cannot fail for events this hub stored;
        // should a log hold something else, its data reads as null, never a panic.
        self.data.get_or_init(|| {
            serde_json::from_str(self.data_json()).unwrap_or_else(|e| {
                tracing::warn!(
                    "event {}: data cannot be decoded ({e}); read as null",
                    self.id
                );
                Value::Null
            })
        })
    }
}

/// The stored form's envelope, read without decoding `data`.
#[derive(Deserialize)]
struct Envelope<'a> {
    id: u64,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl StoredEvent {
    /// Stamps an incoming event with its id and receive time (`ts_text` is `ts`
    /// formatted, once per batch) and encodes it, once.
    pub fn encode(inc: IncomingEvent, id: u64, ts: u64, ts_text: &str) -> StoredEvent {
        StoredEvent::stamp(inc.into(), id, ts, &TsField::new(ts_text))
    }

    /// Gives a prepared event its id and receive time (`ts_field` holds `ts`
    /// formatted, once per batch): its stored JSON is the stamp and then its
    /// encoding.
    pub fn stamp(p: Prepared, id: u64, ts: u64, ts_field: &TsField) -> StoredEvent {
        // A string of its own (on the writer's thread, where the cache also frees
        // it): `p`'s buffer is shared with the rest of its batch.
        let tail = p.tail();
        let mut json = String::with_capacity(STAMP_ROOM + tail.len());
        write_stamp(&mut json, id, ts_field);
        let n = json.len();
        json.push_str(tail);
        StoredEvent {
            id,
            ts,
            topic: p.topic.shifted(n),
            kind: p.kind.shifted(n),
            source: p.source.map(|t| t.shifted(n)),
            key: p.key.map(|t| t.shifted(n)),
            json,
            data_at: (p.data_at.0 + n as u32, p.data_at.1 + n as u32),
            data: OnceLock::new(),
        }
    }

    /// Stores a client-side [`Event`] as it is (tests and tools).
    pub fn new(event: Event) -> Self {
        let ts_text = format_ts(event.ts);
        let (id, ts) = (event.id, event.ts);
        let new = NewEvent {
            topic: event.topic,
            kind: Some(event.kind),
            source: event.source,
            key: event.key,
            data: event.data,
            id: None,
            ts: None,
        };
        StoredEvent::encode(new.into(), id, ts, &ts_text)
    }

    /// Reads a stored encoding (from the log) without decoding its data.
    pub fn decode(json: &str) -> Result<Self, serde_json::Error> {
        let env: Envelope<'_> = serde_json::from_str(json)?;
        let ts = parse_ts(&env.ts).ok_or_else(|| serde::de::Error::custom("ts is not RFC 3339"))?;
        let start = env.data.get().as_ptr() as usize - json.as_ptr() as usize;
        let end = start + env.data.get().len();
        Ok(StoredEvent {
            id: env.id,
            ts,
            topic: Text::decoded(json, env.topic),
            kind: Text::decoded(json, env.kind),
            source: env.source.map(|v| Text::decoded(json, v)),
            key: env.key.map(|v| Text::decoded(json, v)),
            json: json.into(),
            data_at: (start as u32, end as u32),
            data: OnceLock::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The data's JSON text.
    pub fn data_json(&self) -> &str {
        &self.json[self.data_at.0 as usize..self.data_at.1 as usize]
    }

    /// The client-side form.
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id,
            ts: self.ts,
            topic: self.topic().to_string(),
            kind: self.kind().to_string(),
            source: self.source().map(str::to_string),
            key: self.key().map(str::to_string),
            data: self.data().clone(),
        }
    }
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
