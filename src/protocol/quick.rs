//! The quick path of [`ClientFrame::parse`](super::ClientFrame::parse) for the frame a
//! hub reads most: a batch `publish` laid out as `hub-emit` and `hub-tail` write it,
//! `{"type":"publish","req":N,"events":[{...},...]}`.
//!
//! serde_json spends most of a batch's parse on the events' keys and short strings
//! (a field visitor, a string scan and a borrow decision each). Here the frame's
//! head is matched as text and each event's fields are read by a small scanner;
//! `data` (and an ignored `id` or `ts`) is taken by the quick JSON check
//! ([`crate::json`]) or else read by serde_json, as a [`RawValue`], with all of its
//! checks. The scanner takes only what it is sure of (known keys, each once;
//! strings without escapes or control characters; nothing nested deeply) and
//! answers `None` for anything else, which then goes through the full parse: the
//! result, or the error message, is always serde's.

use crate::event::{CanonText, CowStr, RawData, RawEvent};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The `req` and events of a batch `publish` frame in the layout above, or `None`
/// where the full parse must decide.
pub(crate) fn publish_batch(text: &str) -> Option<(Option<Value>, Vec<RawEvent<'_>>)> {
    let rest = text.strip_prefix(r#"{"type":"publish","req":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    // JSON numbers have no leading zeros; 19 digits always fit in a u64.
    if digits == 0 || digits > 19 || (digits > 1 && rest.starts_with('0')) {
        return None;
    }
    let req: u64 = rest[..digits].parse().ok()?;
    let body = rest[digits..].strip_prefix(r#","events":["#)?;
    let mut s = Scanner {
        text,
        pos: text.len() - body.len(),
        spaced: false,
    };
    let mut events = Vec::with_capacity(body.len() / 128 + 1);
    loop {
        events.push(s.event()?);
        match s.next()? {
            b',' => {}
            b']' => break,
            _ => return None,
        }
    }
    (s.next()? == b'}' && s.at_end()).then_some((Some(Value::from(req)), events))
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Whether [`Scanner::ws`] skipped anything since this was last cleared.
    spaced: bool,
}

impl<'a> Scanner<'a> {
    /// Skips JSON whitespace.
    fn ws(&mut self) {
        let (b, start) = (self.text.as_bytes(), self.pos);
        while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
        self.spaced |= self.pos > start;
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let b = *self.text.as_bytes().get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.text.len()
    }

    /// A string with nothing escaped and no control character (serde_json refuses
    /// those, and borrows such a string as it is), after whitespace.
    fn plain_str(&mut self) -> Option<&'a str> {
        if self.next()? != b'"' {
            return None;
        }
        let (start, b) = (self.pos, self.text.as_bytes());
        // The first byte that ends the string or could not be in a plain one.
        let end = crate::json::find_special(b, start)?;
        if b[end] != b'"' {
            return None;
        }
        self.pos = end + 1;
        // Both ends sit next to an ASCII quote: char boundaries.
        Some(&self.text[start..end])
    }

    /// A field name of an event, as its bit: a known name, written without escapes.
    fn field(&mut self) -> Option<u8> {
        const NAMES: [&[u8]; 7] = [
            br#""topic""#,
            br#""type""#,
            br#""source""#,
            br#""key""#,
            br#""data""#,
            br#""id""#,
            br#""ts""#,
        ];
        self.ws();
        let rest = &self.text.as_bytes()[self.pos..];
        let i = NAMES.iter().position(|n| rest.starts_with(n))?;
        self.pos += NAMES[i].len();
        Some(1 << i)
    }

    /// One JSON value: taken by the quick check, or else read by serde_json with
    /// all its checks.
    fn raw(&mut self) -> Option<RawData<'a>> {
        self.ws();
        let rest = &self.text[self.pos..];
        if let Some(n) = crate::json::plain_value_len(rest.as_bytes()) {
            self.pos += n;
            // The quick check takes at most 100 levels: within serde's limit here.
            return Some(RawData::plain(&rest[..n]));
        }
        let mut de = serde_json::Deserializer::from_str(rest);
        let raw = <&'a RawValue>::deserialize(&mut de).ok()?;
        let got = raw.get();
        // serde_json's nesting limit counts from the frame's top; a deep value is
        // left to the full parse, which counts the same way.
        if got.len() >= 200 && got.bytes().filter(|&b| b == b'[' || b == b'{').count() >= 100 {
            return None;
        }
        self.pos = got.as_ptr() as usize - self.text.as_ptr() as usize + got.len();
        Some(raw.into())
    }

    /// One event object.
    fn event(&mut self) -> Option<RawEvent<'a>> {
        if self.next()? != b'{' {
            return None;
        }
        let start = self.pos;
        self.spaced = false;
        let (mut topic, mut kind, mut source, mut key, mut data) = (None, None, None, None, None);
        let mut seen = 0u8;
        // Fields in the order the hub encodes them, and no `id` or `ts`.
        let mut in_order = true;
        loop {
            let bit = self.field()?;
            if self.next()? != b':' {
                return None;
            }
            match bit {
                1 => topic = Some(self.plain_str()?),
                2 => kind = Some(self.plain_str()?),
                4 => source = Some(self.plain_str()?),
                8 => key = Some(self.plain_str()?),
                // `null` data is no data, as serde reads an `Option`.
                16 => data = Some(self.raw()?).filter(|d| d.get() != "null"),
                _ => _ = self.raw()?, // `id`, `ts`: read and ignored
            }
            if seen & bit != 0 {
                return None;
            }
            in_order &= bit > seen && bit <= 16;
            seen |= bit;
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        // The event's text is its encoding (see `RawEvent::new`): topic first (so
        // `in_order` with data last), strings plain, data there and compact.
        let canon = match (topic, data) {
            (Some(t), Some(d))
                if in_order
                    && !self.spaced
                    && matches!(crate::json::compact_json(d.get()), Cow::Borrowed(_)) =>
            {
                CanonText::new(&self.text[start..self.pos], t, kind, source, key, d.get())
            }
            _ => None,
        };
        let cow = |s: &'a str| CowStr(Cow::Borrowed(s));
        Some(RawEvent::new(
            cow(topic?),
            kind.map(cow),
            source.map(cow),
            key.map(cow),
            data,
            canon,
        ))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::{ClientFrame, publish_batch_frame};

    /// What the full parse makes of a text, as the quick path answers.
    fn full(text: &str) -> Option<(Option<Value>, Vec<RawEvent<'_>>)> {
        match ClientFrame::parse_full(text) {
            Ok(ClientFrame::PublishBatch { req, events }) => Some((req, events)),
            _ => None,
        }
    }

    /// Events as publishers write them, and some they might.
    pub(crate) const EVENTS: [&str; 5] = [
        r#"{"topic":"t","source":"vm","key":"k-1","data":{"seq":1,"msg":"xx"}}"#,
        r#"{"topic":"a:b","type":"progress","data":[1,2.5e3,-0,true,"é\"\u00e9"]}"#,
        r#"{"topic":"t","data":null,"id":5,"ts":"2026-12-02T20:00:00.000Z"}"#,
        r#"{ "key" : "ключ" ,"topic":"t/ü", "data":{"a":{"b":[{}]}} }"#,
        r#"{"topic":"t","source":"","data":"text \\ with escapes\n"}"#,
    ];

    pub(crate) fn frame(req: u64, events: &[&str]) -> String {
        publish_batch_frame(req, events.iter().copied(), 0)
    }

    /// What the hub stores of each event: its JSON and the fields read back.
    fn stored(events: &[RawEvent<'_>]) -> Vec<[Option<String>; 6]> {
        use crate::event::{Fields, StoredEvent, TsField};
        let ts = TsField::new("2026-12-03T00:00:00.000Z");
        RawEvent::prepare_all(events)
            .into_iter()
            .map(|p| {
                let s = StoredEvent::stamp(p, 9, 0, &ts);
                [
                    Some(&*s.json),
                    Some(s.topic()),
                    Some(Fields::kind(&s)),
                    s.source(),
                    s.key(),
                    Some(s.data_json()),
                ]
                .map(|f| f.map(str::to_string))
            })
            .collect()
    }

    /// Events in the hub's own order and layout are encoded by one copy of their
    /// text, into what the field-by-field encoding writes.
    #[test]
    fn copies_events_already_in_the_stored_layout() {
        let events = [
            // hub-emit's --lines layout: no type (the default goes in after topic).
            (
                r#"{"topic":"t","source":"vm","key":"k-1","data":{"seq":1,"msg":"x y"}}"#,
                true,
            ),
            (
                r#"{"topic":"a:b","type":"progress","data":[1,"é",{}]}"#,
                true,
            ),
            (
                r#"{"topic":"t","type":"x","source":"s","key":"k","data":"\u00e9\n"}"#,
                true,
            ),
            (r#"{"topic":"t","data":1.5e3}"#, true),
            // Another order, whitespace, no data, null data, id/ts: field by field.
            (r#"{"topic":"t","key":"k","source":"s","data":1}"#, false),
            (r#"{"type":"x","topic":"t","data":1}"#, false),
            (r#"{"topic":"t","data":{"a": 1}}"#, false),
            (r#"{"topic":"t", "data":1}"#, false),
            (r#"{"topic":"t"}"#, false),
            (r#"{"topic":"t","data":null}"#, false),
            (r#"{"topic":"t","data":1,"id":4}"#, false),
        ];
        let all: Vec<&str> = events.iter().map(|e| e.0).collect();
        let text = frame(3, &all);
        let (_, quick) = publish_batch(&text).expect("the quick path takes it");
        let (_, full) = full(&text).unwrap();
        for ((e, (raw, canon)), stored_full) in quick.iter().zip(events).zip(stored(&full)) {
            assert_eq!(e.is_canon(), canon, "{raw}");
            assert_eq!(stored(std::slice::from_ref(e)), [stored_full], "{raw}");
        }
        assert!(full.iter().all(|e| !e.is_canon()));
    }

    #[test]
    fn takes_what_publishers_write_as_the_full_parse_does() {
        for n in 1..=EVENTS.len() {
            let text = frame(7 + n as u64, &EVENTS[..n]);
            let quick = publish_batch(&text).expect("the quick path takes it");
            assert_eq!(Some(&quick), full(&text).as_ref(), "{text}");
            for (e, raw) in quick.1.iter().zip(EVENTS) {
                assert!(matches!(e.topic.0, Cow::Borrowed(_)), "{raw}");
            }
        }
        let text = frame(1, &EVENTS);
        let (_, events) = publish_batch(&text).unwrap();
        assert!(events[2].data.is_none());
        assert_eq!(events[3].key.as_ref().map(|k| &*k.0), Some("ключ"));
    }

    #[test]
    fn leaves_the_rest_to_the_full_parse() {
        let one = EVENTS[0];
        for text in [
            // Another layout of the frame, an empty batch, a single event.
            format!(r#"{{"req":1,"type":"publish","events":[{one}]}}"#),
            format!(r#"{{"type":"publish","events":[{one}]}}"#),
            format!(r#"{{"type":"publish","req":"a","events":[{one}]}}"#),
            format!(r#"{{"type":"publish","req":01,"events":[{one}]}}"#),
            r#"{"type":"publish","req":1,"events":[]}"#.to_string(),
            format!(r#"{{"type":"publish","req":1,"event":{one}}}"#),
            // Escapes, an unknown or repeated field, a null type, a missing topic.
            r#"{"type":"publish","req":1,"events":[{"topic":"t\u0041"}]}"#.to_string(),
            r#"{"type":"publish","req":1,"events":[{"topic":"t","dat":1}]}"#.to_string(),
            r#"{"type":"publish","req":1,"events":[{"topic":"t","topic":"u"}]}"#.to_string(),
            r#"{"type":"publish","req":1,"events":[{"topic":"t","type":null}]}"#.to_string(),
            r#"{"type":"publish","req":1,"events":[{"data":1}]}"#.to_string(),
            // Deep data: serde counts the frame's own levels.
            format!(
                r#"{{"type":"publish","req":1,"events":[{{"topic":"t","data":{}{}}}]}}"#,
                "[".repeat(126),
                "]".repeat(126)
            ),
        ] {
            assert_eq!(publish_batch(&text), None, "{text}");
        }
    }
}
