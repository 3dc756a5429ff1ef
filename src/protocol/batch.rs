//! Beyond SPEC: the batch frames (several events in one `publish`, `ack` or
//! `events` frame), and the client's quick reads of the hub's `ack` and `events`
//! frames.

use super::ErrorCode;
#[cfg(any(test, feature = "fuzzing"))]
use super::ServerFrame;
use serde::Deserialize;
use serde_json::Value;

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

/// [`split_events_frame`]'s serde twin: the subscription and events of an `events`
/// frame, read by serde.
#[cfg(any(test, feature = "fuzzing"))]
pub fn events_by_serde(text: &str) -> Option<(String, Vec<Value>)> {
    match serde_json::from_str(text).ok()? {
        ServerFrame::Events { sub, events } => Some((sub, events)),
        _ => None,
    }
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
    batch_ack_by_serde(text)
}

/// [`parse_batch_ack`]'s serde twin, and its path for what the quick read leaves.
pub fn batch_ack_by_serde(text: &str) -> Option<BatchAck> {
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

/// [`parse_ack`]'s serde twin: an `ack` frame with a whole-number `req`, read by
/// serde (the publisher's general path reads it as a [`ServerFrame`]).
#[cfg(any(test, feature = "fuzzing"))]
pub fn ack_by_serde(text: &str) -> Option<(u64, u64)> {
    match serde_json::from_str(text).ok()? {
        ServerFrame::Ack { req: Some(req), id } => Some((req.as_u64()?, id)),
        _ => None,
    }
}

/// A whole JSON number that fits a `u64`, as serde reads one: digits only, no
/// leading zero (`u64::from_str` also takes `+7` and `007`, which are not JSON).
pub(super) fn json_u64(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let plain = !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1);
    plain.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;
    use serde_json::json;

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

    /// Found by the `server_frame` fuzz target: an event with its `id` key twice.
    /// serde refuses it as an event; the quick read takes the first `id` (the hub
    /// never writes a key twice, so no cursor of a hub's event differs).
    #[test]
    fn an_event_with_its_id_twice_is_read_by_its_first_id() {
        let json = r#"{"id":1,"t":"t","type":"message","id":2,"data":{}}"#;
        assert_eq!(event_id(json), Some(1));
        assert!(
            event_id_by_serde(json)
                .unwrap_err()
                .starts_with("duplicate field")
        );
        let prefix = events_frame_prefix("\"s1\"");
        let text = format!("{prefix}{json}\n]}}");
        assert_eq!(split_events_frame(&text, &prefix).map(|r| r.len()), Some(1));
        assert!(crate::fuzzing::server_frame(&text, "s1"));
        let crash = concat!(
            r#"{"type":"events","sub":"s1","events":["#,
            "\n",
            r#"{"id":1,"t":"t","type":"message","id":1,"t":"t","type":"messagedatsage","#,
            r#""data":{"a":"x      ,\":1ny"}}"#,
            "\n]}"
        );
        crate::fuzzing::server_frame(crash, "s1");
    }
}
