//! Intake: an event as the hub receives it, from the published text to the
//! [`Prepared`] form that waits for an id. [`IncomingEvent`] is the owned, serde
//! form; [`RawEvent`] borrows from the frame or body it was read from (its strings
//! as [`CowStr`], its data as [`RawData`] text); [`Prepared`] holds the stored
//! encoding without its id and ts, checked once, so the log only stamps it.

use super::*;

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
    canon: Option<CanonText<'a>>,
}

/// The text of a published event from its first field to its closing brace, where
/// that text is already the event's stored encoding but for a missing `type`:
/// `"topic":"T"[,"type":"K"][,"source":"S"][,"key":"Y"],"data":D}`, in that order,
/// without whitespace, each string with nothing to escape, `data` not `null`. Built
/// only by [`CanonText::new`], which checks all of that against the event's fields
/// (each of which must be borrowed from this very text), so the spans the log keeps
/// for them are right in every build.
#[derive(Debug, Clone, Copy)]
pub struct CanonText<'a>(&'a str);

impl<'a> CanonText<'a> {
    /// `text` as a canonical text of the event with these fields, or `None` if it
    /// is not one. The caller checks that `data` is compact (the check here is of
    /// the structure and of where each field lies: O(the string fields' length)).
    pub fn new(
        text: &'a str,
        topic: &str,
        kind: Option<&str>,
        source: Option<&str>,
        key: Option<&str>,
        data: &str,
    ) -> Option<Self> {
        let b = text.as_bytes();
        // Where `s` starts in `text`, if it is a slice of it.
        let offset = |s: &str| -> Option<usize> {
            let a = (s.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            (a + s.len() <= text.len()).then_some(a)
        };
        // Expects `lit` at `pos`; returns the position after it.
        let lit = |pos: usize, lit: &str| -> Option<usize> {
            b.get(pos..pos + lit.len())
                .filter(|got| *got == lit.as_bytes())
                .map(|_| pos + lit.len())
        };
        let mut pos = 0;
        let fields = [
            ("\"topic\":\"", Some(topic)),
            (",\"type\":\"", kind),
            (",\"source\":\"", source),
            (",\"key\":\"", key),
        ];
        for (head, value) in fields {
            let Some(v) = value else { continue };
            let at = lit(pos, head)?;
            let plain = v.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\');
            if offset(v)? != at || !plain {
                return None;
            }
            pos = lit(at + v.len(), "\"")?;
        }
        let at = lit(pos, ",\"data\":")?;
        if pos == 0 || offset(data)? != at || data == "null" || at + data.len() + 1 != b.len() {
            return None;
        }
        lit(at + data.len(), "}")?;
        Some(CanonText(text))
    }

    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
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
    /// `canon`, if given, is the event's text, checked to be its encoding but for a
    /// missing type (see [`CanonText`]): it is then copied whole when stored.
    pub(crate) fn new(
        topic: CowStr<'a>,
        kind: Option<CowStr<'a>>,
        source: Option<CowStr<'a>>,
        key: Option<CowStr<'a>>,
        data: Option<RawData<'a>>,
        canon: Option<CanonText<'a>>,
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

    pub(super) fn tail(&self) -> Tail<'_> {
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
            // In `text`: `CanonText::new` checked that every field is a slice of it.
            let a = s.as_ptr() as usize - text.as_ptr() as usize;
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
                Some(text) => e.encode_canon(&mut buf, text.as_str()),
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
    pub(super) buf: Arc<String>,
    pub(super) start: u32,
    pub(super) len: u32,
    /// Spans count from `start`.
    pub(super) topic: Text,
    pub(super) kind: Text,
    pub(super) source: Option<Text>,
    pub(super) key: Option<Text>,
    pub(super) data_at: (u32, u32),
}

impl Prepared {
    /// `"topic":...,"data":DATA}`: the event's JSON after its stamp.
    pub(crate) fn tail(&self) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of `text` as the scanner borrows them: each a slice of `text`
    /// (the string values between their quotes, then the data after `"data":`).
    fn slices<'t>(text: &'t str, strings: &[&str], data: &str) -> Vec<&'t str> {
        let mut out: Vec<&'t str> = strings
            .iter()
            .map(|p| {
                let a = text.find(&format!(":\"{p}\"")).unwrap() + 2;
                &text[a..a + p.len()]
            })
            .collect();
        let a = text.find("\"data\":").unwrap() + 7;
        out.push(&text[a..a + data.len()]);
        out
    }

    #[test]
    fn canon_text_takes_the_encoding_and_nothing_else() {
        let ok = r#""topic":"t","type":"k","source":"s","key":"y","data":{"a":1}}"#;
        let f = slices(ok, &["t", "k", "s", "y"], r#"{"a":1}"#);
        assert!(CanonText::new(ok, f[0], Some(f[1]), Some(f[2]), Some(f[3]), f[4]).is_some());
        let short = r#""topic":"t","data":[1]}"#;
        let g = slices(short, &["t"], "[1]");
        assert!(CanonText::new(short, g[0], None, None, None, g[1]).is_some());

        // A field that is not a slice of the text (an owned, unescaped copy).
        let owned = String::from("t");
        assert!(CanonText::new(short, &owned, None, None, None, g[1]).is_none());
        let data = String::from("[1]");
        assert!(CanonText::new(short, g[0], None, None, None, &data).is_none());
        // A field the text has but the event does not say (or the other way round).
        assert!(CanonText::new(ok, f[0], None, Some(f[2]), Some(f[3]), f[4]).is_none());
        assert!(CanonText::new(short, g[0], Some(g[0]), None, None, g[1]).is_none());
        // Fields out of order, whitespace, a missing closing brace, trailing bytes,
        // null data, something to escape.
        for bad in [
            r#""type":"k","topic":"t","data":1}"#,
            r#""topic":"t", "data":1}"#,
            r#""topic":"t","data":1"#,
            r#""topic":"t","data":1}x"#,
            r#""topic":"t","data":null}"#,
            r#""topic":"t\u0041","data":1}"#,
        ] {
            let topic_at = bad.find("\"topic\":\"").unwrap() + 9;
            let topic_end = topic_at + bad[topic_at..].find('"').unwrap();
            let data_at = bad.find("\"data\":").unwrap() + 7;
            let data_end = bad[data_at..].find('}').map_or(bad.len(), |e| data_at + e);
            let kind = bad.find("\"type\":\"").map(|a| &bad[a + 8..a + 9]);
            assert!(
                CanonText::new(
                    bad,
                    &bad[topic_at..topic_end],
                    kind,
                    None,
                    None,
                    &bad[data_at..data_end]
                )
                .is_none(),
                "{bad}"
            );
        }
    }
}
