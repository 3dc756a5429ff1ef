//! The stored form: [`StoredEvent`], an event with its id and ts and its one JSON
//! encoding, and the writer of that encoding ([`Tail`] for everything but the id
//! and ts, [`write_stamp`] for those), shared by the client's [`Event::encode`] and
//! the hub's [`Prepared`].

use super::*;

/// Everything of an encoded event but its id, ts and data: the one place that
/// writes the stored JSON form, for [`Event::encode`] and [`Prepared`]. The stored
/// form is `{"id":ID,"ts":TS,` ([`write_stamp`]) followed by what [`Tail::encode`]
/// writes, so the hub encodes that part where an event comes in and stamps it
/// when the log assigns its id.
pub(super) struct Tail<'a> {
    pub(super) topic: &'a str,
    pub(super) kind: &'a str,
    pub(super) source: Option<&'a str>,
    pub(super) key: Option<&'a str>,
}

/// Where the parts of an encoded event sit in its JSON. A string field is `None`
/// when it had to be escaped (its JSON text is not its value).
pub(super) struct Spans {
    pub(super) topic: Option<(u32, u32)>,
    pub(super) kind: Option<(u32, u32)>,
    pub(super) source: Option<(u32, u32)>,
    pub(super) key: Option<(u32, u32)>,
    pub(super) data: (u32, u32),
}

/// A JSON string: copied between quotes when nothing in it needs escaping (topics
/// and types never do; the span of the copy is returned), else through serde_json.
pub(super) fn put_str(out: &mut String, s: &str) -> Option<(u32, u32)> {
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
    pub(super) fn size_hint(&self, data_len: usize) -> usize {
        let opt = |o: Option<&str>| o.map_or(0, |s| s.len() + 12);
        40 + self.topic.len() + self.kind.len() + opt(self.source) + opt(self.key) + data_len
    }

    /// `"topic":...,"data":DATA}` with `data` (already compact JSON text) spliced
    /// in, and where its fields sit in it.
    pub(super) fn encode(&self, data: &str) -> (String, Spans) {
        let mut out = String::with_capacity(self.size_hint(data.len()));
        let spans = self.encode_into(&mut out, data);
        (out, spans)
    }

    /// [`Tail::encode`], appended to `out`; the spans count from where it starts.
    pub(super) fn encode_into(&self, out: &mut String, data: &str) -> Spans {
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
pub(super) const STAMP_ROOM: usize = 64;

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
pub(super) fn write_stamp(out: &mut String, id: u64, ts: &TsField) {
    out.push_str("{\"id\":");
    out.push_str(itoa::Buffer::new().format(id));
    out.push_str(&ts.0);
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
pub(super) enum Text {
    At(u32, u32),
    Owned(Box<str>),
}

impl Text {
    /// `span` if the value sits there in the JSON, else the value itself.
    pub(super) fn new(span: Option<(u32, u32)>, value: &str) -> Text {
        match span {
            Some((a, b)) => Text::At(a, b),
            None => Text::Owned(value.into()),
        }
    }

    /// A field read from stored JSON: borrowed text is its own span in `json`.
    pub(super) fn decoded(json: &str, value: Cow<'_, str>) -> Text {
        match value {
            Cow::Borrowed(b) => {
                let a = b.as_ptr() as usize - json.as_ptr() as usize;
                Text::At(a as u32, (a + b.len()) as u32)
            }
            Cow::Owned(o) => Text::Owned(o.into_boxed_str()),
        }
    }

    /// The same field in a text with `n` bytes put in front.
    pub(super) fn shifted(self, n: usize) -> Text {
        match self {
            Text::At(a, b) => Text::At(a + n as u32, b + n as u32),
            owned => owned,
        }
    }

    pub(super) fn get<'a>(&'a self, json: &'a str) -> &'a str {
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
