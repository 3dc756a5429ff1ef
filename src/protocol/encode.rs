//! The client's hand-written encoders: an event's JSON as a `publish` frame carries
//! it, the head shared by a stream of events that differ only in their data, and the
//! single `publish` frame around one event. Each writes the bytes serde writes for
//! the same [`ClientFrame::Publish`](super::ClientFrame::Publish).

use crate::event::{EventError, NewEvent};

/// JSON text known to be exactly one valid JSON value, to be sent as it is (see
/// [`Publisher::encode_with_head`](crate::client::Publisher::encode_with_head)): a line that is already a JSON object is checked,
/// not parsed into a tree and written out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// Checks that `text` is one JSON value (the same grammar and limits as parsing
    /// it into a [`serde_json::Value`], without building one).
    ///
    /// # Errors
    /// The text is not valid JSON, or has something after the value.
    pub fn new(text: &'a str) -> Result<Self, serde_json::Error> {
        if !crate::json::is_plain(text) {
            crate::json::check_json(text)?;
        }
        Ok(RawJson(text))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// The event's JSON as a `publish` frame carries it, written by hand: the same bytes
/// serde writes for the `event` of [`ClientFrame::Publish`](super::ClientFrame::Publish) (fields in the order
/// topic, type, source, key, data; absent options left out).
pub(crate) fn event_json(event: &NewEvent) -> String {
    let mut out = Vec::with_capacity(64 + event.topic.len());
    event_head(event, &mut out);
    if let Some(key) = &event.key {
        out.extend_from_slice(br#","key":"#);
        json_str(&mut out, key);
    }
    out.extend_from_slice(br#","data":"#);
    serde_json::to_writer(&mut out, &event.data).expect("a value serializes");
    out.push(b'}');
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// `{"topic":T[,"type":K][,"source":S]`: an event's JSON up to its key.
fn event_head(event: &NewEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"topic":"#);
    json_str(out, &event.topic);
    for (name, value) in [
        (&br#","type":"#[..], &event.kind),
        (br#","source":"#, &event.source),
    ] {
        if let Some(v) = value {
            out.extend_from_slice(name);
            json_str(out, v);
        }
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// What a stream of events that differ only in their data (`hub-emit --lines`)
/// shares: its topic, type and source, checked and encoded once, for
/// [`Publisher::encode_with_head`](crate::client::Publisher::encode_with_head).
#[derive(Debug, Clone)]
pub struct EventHead(String);

impl EventHead {
    /// The head of `event` (its key and data are not part of it).
    ///
    /// # Errors
    /// The topic, type or source is invalid.
    pub fn new(event: &NewEvent) -> Result<EventHead, EventError> {
        let mut e = NewEvent::new(event.topic.clone());
        e.kind = event.kind.clone();
        e.source = event.source.clone();
        e.validate()?;
        let mut out = Vec::with_capacity(64 + e.topic.len());
        event_head(&e, &mut out);
        Ok(EventHead(String::from_utf8(out).expect("JSON is UTF-8")))
    }

    /// The JSON of the event with this head, the key `PREFIX-N` (both plain
    /// `[0-9a-z]`: nothing to escape) and `data` spliced in as it is.
    /// Written into `e` (empty; a reused string).
    pub(crate) fn event_json(
        &self,
        mut e: String,
        prefix: &str,
        n: &str,
        data: RawJson<'_>,
    ) -> String {
        let data = data.as_str();
        e.reserve(self.0.len() + prefix.len() + n.len() + 20 + data.len());
        e.push_str(&self.0);
        e.push_str(r#","key":""#);
        e.push_str(prefix);
        e.push('-');
        e.push_str(n);
        e.push_str(r#"","data":"#);
        e.push_str(data);
        e.push('}');
        e
    }
}

/// `{"type":"publish","req":REQ,"event":EVENT}` around one event's JSON.
pub fn publish_frame(req: u64, event: &str) -> String {
    let mut f = String::with_capacity(40 + event.len());
    f.push_str(r#"{"type":"publish","req":"#);
    f.push_str(&req.to_string());
    f.push_str(r#","event":"#);
    f.push_str(event);
    f.push('}');
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientFrame;

    #[test]
    fn publish_frames_are_what_serde_writes() {
        let mut full = NewEvent::new("task:b-1");
        full.kind = Some("progress".into());
        full.source = Some("host \"q\" \u{7}é".into());
        full.key = Some("k-1".into());
        full.data = serde_json::json!({"b": [1, 2.5, null], "a": "x\ny", "ü": {}});
        for ev in [NewEvent::new("t"), full] {
            let want = serde_json::to_string(&ClientFrame::Publish {
                req: Some(7.into()),
                event: ev.clone(),
            })
            .unwrap();
            assert_eq!(publish_frame(7, &event_json(&ev)), want);
            // The same event from a head, a key and raw data spliced in as it is
            // (hub-emit --lines): the same bytes, and the frame parses back to it.
            let mut keyed = ev.clone();
            keyed.key = Some("p0-17".into());
            let want = serde_json::to_string(&ClientFrame::Publish {
                req: Some(7.into()),
                event: keyed.clone(),
            })
            .unwrap();
            let raw_text = serde_json::to_string(&ev.data).unwrap();
            let raw = RawJson::new(&raw_text).unwrap();
            let headed = EventHead::new(&ev)
                .unwrap()
                .event_json(String::new(), "p0", "17", raw);
            assert_eq!(publish_frame(7, &headed), want);
            let text = publish_frame(9, &headed);
            let parsed = ClientFrame::parse(&text).unwrap();
            let keyed: crate::event::IncomingEvent = keyed.into();
            assert_eq!(
                parsed,
                ClientFrame::Publish {
                    req: Some(9.into()),
                    event: keyed.as_raw()
                }
            );
        }
        let spaced = RawJson::new(r#"{"a": [1, 2]}"#).unwrap();
        let head = EventHead::new(&NewEvent::new("t")).unwrap();
        let f = publish_frame(1, &head.event_json(String::new(), "p", "1", spaced));
        assert_eq!(
            f,
            r#"{"type":"publish","req":1,"event":{"topic":"t","key":"p-1","data":{"a": [1, 2]}}}"#
        );
        for bad in ["", "{", "{} {}", "[1,]", "1e999", r#""\ud800""#] {
            assert!(RawJson::new(bad).is_err(), "{bad}");
        }
    }
}
