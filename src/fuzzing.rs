//! Checks shared by the property tests (`cargo test`) and the cargo-fuzz targets
//! (`fuzz/`): each takes untrusted input, runs a parser on it and panics when a
//! quick path disagrees with the general one, or an invariant breaks. Built for
//! tests and with the `fuzzing` feature only; not an API.
//!
//! - [`client_frame`]: [`ClientFrame::parse`] and its batch-`publish` quick path
//!   against the full parse: the same result or error message, the same stored
//!   bytes, and the stored event equal to serde's encoding of it.
//! - [`json_text`]: [`crate::json`]'s quick check and special-byte search against
//!   serde_json and a byte-at-a-time search; [`compact_json`] keeps the value.
//! - [`body_line`]: one line of a `POST /publish` body read the hub's way
//!   ([`RawEvent`], checked and prepared in place) against serde's [`NewEvent`].
//! - [`server_frame`]: the client's quick reads of `ack`, `event` and `events`
//!   frames and of event ids against their serde twins.
//! - [`topic_glob`], [`filter`]: the topic matcher against a naive glob;
//!   filter parsing never panics.
//! - [`lines`]: the line splitter of `hub-tail` gives the same lines whatever the
//!   chunking of its input and the budgets of its scans.
//! - [`state_file`]: the `hub-tail` state file loads or says why not, and what
//!   loads saves and loads back the same.
//! - [`segment`]: a segment file of any bytes scans without a panic, every byte
//!   accounted for, and the log over it opens with a next id above all it saw.
//! - [`segment_recovery`]: flips and cuts of a real segment lose only the records
//!   they touched, each named as lost, and a cut alone is a torn tail.

use crate::event::{DEFAULT_TYPE, Event, Fields, NewEvent, RawEvent, StoredEvent, TsField};
use crate::follow::{Budget, Item, Key, Lines, Stepped};
use crate::json::compact_json;
use crate::matching::{Filter, Matcher};
use crate::protocol::ClientFrame;
use serde_json::Value;
use std::borrow::Cow;
use std::path::Path;

/// The receive time every checked event is stamped with.
const TS: u64 = 1_796_256_000_123;

/// What the hub stores of each event: its JSON and the fields read back from it.
fn stored(events: &[RawEvent<'_>]) -> Vec<StoredEvent> {
    let ts = TsField::new(&crate::event::format_ts(TS));
    RawEvent::prepare_all(events)
        .into_iter()
        .enumerate()
        .map(|(i, p)| StoredEvent::stamp(p, 9 + i as u64, TS, &ts))
        .collect()
}

/// A stored event's fields as strings, to compare two of them whole.
fn fields(s: &StoredEvent) -> [Option<String>; 6] {
    [
        Some(&*s.json),
        Some(s.topic()),
        Some(Fields::kind(s)),
        s.source(),
        s.key(),
        Some(s.data_json()),
    ]
    .map(|f| f.map(str::to_string))
}

/// A stored event equals serde's encoding of the same event (read as a
/// [`NewEvent`] from `value`), and its fields read back as serde read them.
fn same_as_serde(s: &StoredEvent, value: Value, what: &str) {
    let Ok(new) = serde_json::from_value::<NewEvent>(value) else {
        return;
    };
    if new.validate().is_err() {
        return;
    }
    let ev = Event::from_new(new, s.id, TS);
    // As values: serde_json's own text of a long number may read back as another
    // float (it parses without round-trip precision), while the hub keeps the text.
    let want = serde_json::to_value(&ev).expect("an event serializes");
    let got: Value = serde_json::from_str(&s.json).expect("a stored event is JSON");
    assert_eq!(got, want, "stored {} for {what}", s.json);
    assert_eq!(s.topic(), ev.topic, "{what}");
    assert_eq!(Fields::kind(s), ev.kind, "{what}");
    assert_eq!(s.source(), ev.source.as_deref(), "{what}");
    assert_eq!(s.key(), ev.key.as_deref(), "{what}");
    assert_eq!(s.data(), &ev.data, "{what}");
    assert!(
        matches!(compact_json(&s.json), Cow::Borrowed(_)),
        "stored JSON is compact: {}",
        s.json
    );
}

/// Parses a client frame both ways and panics where they differ; `true` when the
/// batch-`publish` quick path answered.
pub fn client_frame(text: &str) -> bool {
    let full = ClientFrame::parse_full(text);
    // `parse` is the quick path or else the full parse: its answer, error message
    // included, is the full parse's.
    assert_eq!(ClientFrame::parse(text), full, "{text}");
    let Some((req, events)) = crate::protocol::quick::publish_batch(text) else {
        return false;
    };
    let Ok(ClientFrame::PublishBatch {
        req: full_req,
        events: full_events,
    }) = &full
    else {
        panic!("the quick path read a frame the full parse reads as {full:?}: {text}");
    };
    assert_eq!(&req, full_req, "{text}");
    assert_eq!(&events, full_events, "{text}");
    for (q, f) in events.iter().zip(full_events) {
        assert_eq!(q.validate(), f.validate(), "{text}");
    }
    if events.iter().all(|e| e.validate().is_ok()) {
        let (quick, full) = (stored(&events), stored(full_events));
        for (q, f) in quick.iter().zip(&full) {
            assert_eq!(fields(q), fields(f), "{text}");
        }
        // And what is stored is what serde would have stored.
        if let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text)
            && let Some(Value::Array(values)) = frame.remove("events")
        {
            for (s, v) in quick.iter().zip(values) {
                same_as_serde(s, v, text);
            }
        }
    }
    true
}

/// serde_json's view of a text: the extent of its first value, and whether the
/// whole text parses into a `Value`.
fn serde_extent(text: &str) -> (Option<usize>, bool) {
    let mut de = serde_json::Deserializer::from_str(text);
    let extent =
        serde::Deserialize::deserialize(&mut de)
            .ok()
            .map(|r: &serde_json::value::RawValue| {
                r.get().as_ptr() as usize - text.as_ptr() as usize + r.get().len()
            });
    (extent, serde_json::from_str::<Value>(text).is_ok())
}

/// Checks [`crate::json`] against serde_json on `text`; `true` when the quick
/// check took a value.
pub fn json_text(text: &str) -> bool {
    let b = text.as_bytes();
    let special = |c: &u8| matches!(c, b'"' | b'\\' | 0..0x20);
    for i in (0..b.len().min(24)).chain(b.len().saturating_sub(9)..b.len() + 2) {
        let naive = b
            .get(i..)
            .and_then(|rest| rest.iter().position(special))
            .map(|p| i + p);
        assert_eq!(crate::json::find_special(b, i), naive, "at {i} of {text:?}");
    }
    let (extent, whole) = serde_extent(text);
    if let Some(end) = extent {
        // The copy the hub stores keeps the value and is compact.
        let raw = &text[..end];
        let compact = compact_json(raw.trim_start());
        assert!(
            matches!(compact_json(&compact), Cow::Borrowed(_)),
            "{compact}"
        );
        let (a, b) = (
            serde_json::from_str::<Value>(raw),
            serde_json::from_str::<Value>(&compact),
        );
        if let Ok(a) = a {
            assert_eq!(Some(a), b.ok(), "{raw} compacts to {compact}");
        }
    }
    let Some(len) = crate::json::plain_value_len(b) else {
        return false;
    };
    assert_eq!(Some(len), extent, "the quick check's extent in {text:?}");
    if crate::json::is_plain(text) {
        assert!(whole, "the quick check took {text:?}, serde refuses it");
        assert!(crate::json::check_json(text).is_ok(), "{text:?}");
    }
    true
}

/// One line of a `POST /publish` body: read in place as the hub reads it, checked
/// and stored, against serde's [`NewEvent`]; `true` when it is a valid event.
pub fn body_line(line: &str) -> bool {
    let raw = serde_json::from_str::<RawEvent<'_>>(line);
    let new = serde_json::from_str::<NewEvent>(line);
    let raw_ok = raw.as_ref().is_ok_and(|e| e.validate().is_ok());
    let new_ok = new.as_ref().is_ok_and(|e| e.validate().is_ok());
    assert_eq!(raw_ok, new_ok, "{line}: {raw:?} / {new:?}");
    if !raw_ok {
        return false;
    }
    let s = stored(std::slice::from_ref(raw.as_ref().expect("ok")));
    // (A `Value` cannot hold everything an ignored `id` or `ts` may.)
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        same_as_serde(&s[0], value, line);
    }
    true
}

/// A whole `POST /publish` body read the hub's way ([`crate::server::parse_body`])
/// against its general twin: one object read by serde's [`NewEvent`], or else each
/// non-empty line read so. Accepted exactly when every line is valid (or the whole
/// body is one valid object), with the events in order and stored as serde
/// encodes them; refused naming the first invalid line.
pub fn publish_body(body: &[u8]) {
    let got = crate::server::parse_body(body, usize::MAX >> 1);
    let Ok(text) = std::str::from_utf8(body) else {
        assert!(got.is_err(), "a body that is not UTF-8 was taken");
        return;
    };
    let valid = |s: &str| {
        serde_json::from_str::<NewEvent>(s).is_ok_and(|e| e.validate().is_ok())
            && serde_json::from_str::<RawEvent<'_>>(s).is_ok_and(|e| e.validate().is_ok())
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let want: Result<Vec<&str>, usize> = if lines.is_empty() {
        Err(0)
    } else if serde_json::from_str::<RawEvent<'_>>(text).is_ok() {
        if valid(text) { Ok(vec![text]) } else { Err(0) }
    } else {
        match lines.iter().find(|(_, l)| !valid(l)) {
            Some(&(i, _)) => Err(i + 1),
            None => Ok(lines.iter().map(|&(_, l)| l).collect()),
        }
    };
    match (got, want) {
        (Ok(events), Ok(texts)) => {
            assert_eq!(events.len(), texts.len(), "{text}");
            let ts = TsField::new(&crate::event::format_ts(TS));
            for (i, (p, t)) in events.into_iter().zip(texts).enumerate() {
                let s = StoredEvent::stamp(p, 9 + i as u64, TS, &ts);
                if let Ok(value) = serde_json::from_str::<Value>(t) {
                    same_as_serde(&s, value, t);
                }
            }
        }
        (Err(msg), Err(line)) if line > 0 => {
            assert!(
                msg.starts_with(&format!("line {line}: ")),
                "{msg} (want line {line}): {text}"
            );
        }
        (Err(_), Err(_)) => {}
        (got, want) => panic!(
            "the hub read {:?}, serde {want:?}: {text}",
            got.map(|e| e.len())
        ),
    }
}

/// The frames a client reads quickly, each against its serde twin (beside it in
/// `protocol/`): an `ack` ([`crate::protocol::parse_ack`]), a batch `ack`
/// ([`crate::protocol::parse_batch_ack`]), an `event` frame
/// ([`crate::protocol::split_event_frame`]) and an `events` frame
/// ([`crate::protocol::split_events_frame`]), both of subscription `sub`, and the id
/// of each event in them ([`crate::protocol::event_id`]). Where a quick read
/// answers, serde reads the same; `true` when one did.
pub fn server_frame(text: &str, sub: &str) -> bool {
    use crate::protocol::*;
    let mut answered = false;
    if let Some(ack) = parse_ack(text) {
        assert_eq!(Some(ack), ack_by_serde(text), "parse_ack: {text}");
        answered = true;
    }
    if let Some(ack) = parse_batch_ack(text) {
        assert_eq!(
            Some(&ack),
            batch_ack_by_serde(text).as_ref(),
            "parse_batch_ack: {text}"
        );
        answered = true;
    }
    let sub_json = serde_json::to_string(sub).expect("a string serializes");
    // The events are the hub's to get right; where each is JSON, the split is the
    // frame's own, and a quick id is serde's.
    let events = |ranges: &[std::ops::Range<usize>]| -> Option<Vec<Value>> {
        ranges
            .iter()
            .map(|r| {
                let json = &text[r.clone()];
                let quick_id = event_id(json);
                if let Some(id) = quick_id {
                    // It reads a prefix only: its number is one serde reads so.
                    let number = json.split([':', ',']).nth(1).unwrap_or_default();
                    assert_eq!(
                        serde_json::from_str(number).ok(),
                        Some(id),
                        "event_id: {json}"
                    );
                }
                let v = serde_json::from_str(json).ok()?;
                if let Some(id) = quick_id {
                    match event_id_by_serde(json) {
                        Ok(by_serde) => assert_eq!(id, by_serde, "event_id: {json}"),
                        // An object with a key twice is no event (the hub never
                        // writes one; an event's serde read refuses it); the quick
                        // read takes the first `id`, whose number is checked above.
                        Err(e) if e.starts_with("duplicate field") => {}
                        Err(e) => panic!("event_id: {json}: quick {id}, serde: {e}"),
                    }
                }
                Some(v)
            })
            .collect()
    };
    if let Some(range) = split_event_frame(text, &event_frame_prefix(&sub_json)) {
        if let Some(mut events) = events(std::slice::from_ref(&range)) {
            let want = Some((sub.to_string(), events.remove(0)));
            assert_eq!(event_by_serde(text), want, "split_event_frame: {text}");
        }
        answered = true;
    }
    if let Some(ranges) = split_events_frame(text, &events_frame_prefix(&sub_json)) {
        if let Some(events) = events(&ranges) {
            let want = Some((sub.to_string(), events));
            assert_eq!(events_by_serde(text), want, "split_events_frame: {text}");
        }
        answered = true;
    }
    answered
}

/// A glob as SPEC §2 has it, matched the naive way: `*` any run, `?` one
/// character, `[abc]` a class (with `!` or `^` first to negate, `a-c` ranges),
/// `\` making the next character literal. `None` for a pattern that is not one
/// (a class not closed or with a range backwards, a pattern ending in `\`), and
/// for one with a brace, which the matcher's glob engine reads as `{a,b}`
/// alternation (beyond SPEC; no topic holds a brace).
pub fn naive_glob(pattern: &str, topic: &str) -> Option<bool> {
    if pattern.contains(['{', '}']) {
        return None;
    }
    #[derive(Debug)]
    enum Tok {
        Lit(char),
        Any,
        One,
        Class(bool, Vec<(char, char)>),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        toks.push(match c {
            '*' => Tok::Any,
            '?' => Tok::One,
            '\\' => Tok::Lit(it.next()?),
            '[' => {
                let negate = it.next_if(|&c| c == '!' || c == '^').is_some();
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = it.next()?;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    if it.peek() == Some(&'-') {
                        it.next();
                        match it.next()? {
                            ']' => {
                                ranges.extend([(c, c), ('-', '-')]);
                                break;
                            }
                            // A range backwards is no class (the matcher says so).
                            hi if hi < c => return None,
                            hi => ranges.push((c, hi)),
                        }
                    } else {
                        ranges.push((c, c));
                    }
                }
                Tok::Class(negate, ranges)
            }
            c => Tok::Lit(c),
        });
    }
    fn go(p: &[Tok], t: &[char]) -> bool {
        let Some((tok, rest)) = p.split_first() else {
            return t.is_empty();
        };
        match tok {
            Tok::Any => (0..=t.len()).any(|k| go(rest, &t[k..])),
            _ if t.is_empty() => false,
            Tok::One => go(rest, &t[1..]),
            Tok::Lit(c) => t[0] == *c && go(rest, &t[1..]),
            Tok::Class(negate, ranges) => {
                let inside = ranges.iter().any(|&(lo, hi)| lo <= t[0] && t[0] <= hi);
                inside != *negate && go(rest, &t[1..])
            }
        }
    }
    let topic: Vec<char> = topic.chars().collect();
    Some(go(&toks, &topic))
}

/// The matcher built from `patterns` takes `topic` exactly when one of the
/// patterns does by [`naive_glob`]; a pattern that is no glob is refused.
pub fn topic_glob(patterns: &[String], topic: &str) {
    let naive: Option<Vec<bool>> = patterns.iter().map(|p| naive_glob(p, topic)).collect();
    let m = Matcher::new(patterns, &[], &[]);
    match (naive, m) {
        (Some(each), Ok(m)) => {
            let want = patterns.is_empty() || each.iter().any(|&b| b);
            assert_eq!(m.matches_topic(topic), want, "{patterns:?} on {topic:?}");
        }
        (None, Err(_)) => {}
        (Some(_), Err(e)) => panic!("{patterns:?} refused: {e}"),
        (None, Ok(m)) => {
            // A pattern the naive glob cannot read: taken or not, no panic.
            let _ = m.matches_topic(topic);
        }
    }
}

/// Parses a filter (never a panic), and matches it against an event when it parses.
pub fn filter(text: &str) -> Option<Filter> {
    let f = text.parse::<Filter>().ok()?;
    let ev = Event {
        id: 7,
        ts: TS,
        topic: "t".into(),
        kind: DEFAULT_TYPE.into(),
        source: None,
        key: Some("k".into()),
        data: serde_json::json!({"a": [1, {"b": "c"}], "n": 50.0, "s": "x"}),
    };
    let _ = f.matches(&ev);
    Some(f)
}

/// A line as [`lines`] collects it: start, end, text, partial.
pub type Line = (u64, u64, Vec<u8>, bool);

/// Splits `input` into lines with [`Lines`], fed in pieces cut at `cuts` (offsets,
/// any order) and scanned with budgets of `budgets` items in turn (unbounded when
/// empty), as `hub-tail` reads a file or stdin: read a piece, scan until all of it
/// is scanned, and at the end flush.
pub fn split_lines(input: &[u8], cuts: &[usize], budgets: &[usize], max_line: usize) -> Vec<Line> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut lines = Lines::new(0);
    let mut got = Vec::new();
    let key = Key {
        prefix: "k:",
        uid: 1,
    };
    let mut budgets = budgets.iter().cycle();
    let mut budget = || Budget {
        items: budgets.next().map_or(usize::MAX, |&n| n.max(1)),
        bytes: usize::MAX,
    };
    let mut emit = |item: Item<'_>| {
        if let Item::Line {
            start,
            end,
            bytes,
            partial,
            ..
        } = item
        {
            got.push((start, end, bytes.to_vec(), partial));
        }
    };
    let mut at = 0;
    for cut in cuts {
        lines.buf.extend_from_slice(&input[at..cut]);
        at = cut;
        while lines.unscanned() {
            lines.scan(
                key,
                max_line,
                &mut budget(),
                &mut emit,
                &mut Stepped::default(),
            );
        }
    }
    lines.flush(key, &mut budget(), &mut emit, &mut Stepped::default());
    got
}

/// [`split_lines`] in pieces and with budgets gives the lines it gives of the
/// whole input at once.
pub fn lines(input: &[u8], cuts: &[usize], budgets: &[usize], max_line: usize) {
    let whole = split_lines(input, &[], &[], max_line);
    let pieces = split_lines(input, cuts, budgets, max_line);
    assert_eq!(
        pieces,
        whole,
        "{:?} cut at {cuts:?}, budgets {budgets:?}, max_line {max_line}",
        String::from_utf8_lossy(input)
    );
}

/// Loads `bytes` as a `hub-tail` state file (in `dir`): no panic, and a state that
/// loads saves and loads back the same.
pub fn state_file(bytes: &[u8], dir: &Path) {
    use crate::follow::state::StateFile;
    let path = dir.join("state.json");
    std::fs::write(&path, bytes).expect("writing the state file");
    let Ok(loaded) = StateFile::load(&path) else {
        return;
    };
    let again = dir.join("again.json");
    let _ = std::fs::remove_file(&again);
    let mut copy = StateFile::load(&again).expect("a missing state file is an empty one");
    copy.state = loaded.state.clone();
    assert!(copy.save().expect("saving the state"));
    let back = StateFile::load(&again).expect("a saved state loads");
    assert_eq!(back.state, loaded.state);
}

/// Opens `bytes` as the segment file of ids from `first_id` on, as the newest
/// segment of a log in `dir`: the scan does not panic, sees strictly increasing ids
/// from `first_id`, accounts for every byte (intact, damaged or torn); the log
/// opens, keeps every intact record, serves exactly them, and gives a next id above
/// every id the scan saw. Returns the ids the scan saw.
pub fn segment(bytes: &[u8], first_id: u64, dir: &Path) -> Vec<u64> {
    use crate::store::segment::{scan, segment_file_name};
    use crate::store::{FsyncMode, Log, LogConfig};
    let first_id = first_id.clamp(1, u64::MAX / 2);
    let mut ids = Vec::new();
    let report = scan(bytes, first_id, None, |r| ids.push(r.id));
    assert!(ids.first().is_none_or(|&id| id >= first_id), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(report.meta.count, ids.len() as u64);
    let intact: u64 = report.intact.iter().map(|r| r.end - r.start).sum();
    let damaged: u64 = report.damage.iter().map(|d| d.len).sum();
    let torn = report.torn.map_or(0, |at| bytes.len() as u64 - at);
    assert_eq!(intact + damaged + torn, bytes.len() as u64, "{report:?}");
    let _ = std::fs::remove_dir_all(dir.join("log"));
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir).expect("a log dir");
    std::fs::write(log_dir.join(segment_file_name(first_id)), bytes).expect("writing it");
    let cfg = LogConfig {
        dir: Some(log_dir),
        fsync: FsyncMode::Never,
        retain_events: u64::MAX,
        retain_bytes: u64::MAX,
        retain_age: None,
        cache_events: 16,
    };
    let (log, _) = Log::open(cfg).expect("the log opens");
    let mut served = Vec::new();
    let mut after = first_id - 1;
    loop {
        let b = log.read_after(after, 1000).expect("reading");
        if b.events.is_empty() && b.gap.is_none() {
            break;
        }
        served.extend(b.events.iter().map(|e| e.id()));
        after = b.next_after;
    }
    // A record is served when its JSON decodes; the scan checked only its bytes.
    assert!(
        served.iter().all(|id| ids.contains(id)),
        "{served:?} vs {ids:?}"
    );
    let max_seen = ids.last().copied().unwrap_or(0);
    assert!(log.committed() >= max_seen);
    assert!(log.stats().last_id >= max_seen);
    ids
}

/// Writes records `first_id..first_id + n` (of varied sizes), applies `flips`
/// (position, xor mask) and an optional cut, and scans: every record the changes did
/// not touch is found, in order; every id of a touched record is inside a damaged
/// region's lost ids or a torn tail; a cut alone is a torn tail, never damage.
pub fn segment_recovery(first_id: u64, sizes: &[u8], flips: &[(usize, u8)], cut: Option<usize>) {
    use crate::store::segment::{encode_record, scan};
    let first_id = first_id.clamp(1, u64::MAX / 2);
    let mut bytes = Vec::new();
    let mut at = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let id = first_id + i as u64;
        let json = format!(
            r#"{{"id":{id},"ts":"2026-12-03T00:00:00.000Z","topic":"t","type":"message","data":"{}"}}"#,
            "x".repeat(size as usize)
        );
        let start = bytes.len();
        encode_record(
            &mut bytes,
            id,
            1,
            0,
            format!("k{id}").as_bytes(),
            json.as_bytes(),
        );
        at.push(start..bytes.len());
    }
    let original = bytes.clone();
    for &(pos, mask) in flips {
        if !bytes.is_empty() {
            let pos = pos % bytes.len();
            bytes[pos] ^= mask;
        }
    }
    let len = cut.map_or(bytes.len(), |c| c % (bytes.len() + 1));
    let touched: Vec<bool> = at
        .iter()
        .map(|r| r.end > len || bytes[r.clone()] != original[r.clone()])
        .collect();
    let mut seen = Vec::new();
    let report = scan(&bytes[..len], first_id, None, |r| seen.push(r.id));
    let want: Vec<u64> = (0..at.len())
        .filter(|&i| !touched[i])
        .map(|i| first_id + i as u64)
        .collect();
    assert_eq!(seen, want, "flips {flips:?} cut {cut:?}");
    let lost: Vec<(u64, u64)> = report
        .damage
        .iter()
        .filter_map(|d| d.lost_ids(report.format, None))
        .collect();
    // Records wholly past the cut were never in these bytes.
    for i in (0..at.len()).filter(|&i| touched[i] && at[i].start < len) {
        let id = first_id + i as u64;
        let in_torn = report.torn.is_some_and(|t| at[i].start as u64 >= t);
        let in_damage = lost.iter().any(|&(a, b)| a <= id && id <= b);
        assert!(in_torn || in_damage, "id {id}: {report:?}");
    }
    if bytes == original {
        assert!(report.damage.is_empty(), "a cut is not damage: {report:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::encode_record;

    /// The segment check sees what the scan keeps: every record of an intact
    /// file, all but one cut short at the end, every record but the damaged one,
    /// none whose id does not increase or lies below the segment's first id.
    #[test]
    fn segment_check_sees_what_the_scan_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        let mut ends = Vec::new();
        for id in 10..16 {
            encode_record(&mut file, id, id, 0, b"k", br#"{"a":1}"#);
            ends.push(file.len());
        }
        assert_eq!(segment(&file, 10, dir.path()), (10..16).collect::<Vec<_>>());
        assert_eq!(
            segment(&file[..file.len() - 3], 10, dir.path()),
            (10..15).collect::<Vec<_>>()
        );
        let mut flipped = file.clone();
        flipped[ends[2] + 12] ^= 1;
        assert_eq!(segment(&flipped, 10, dir.path()), [10, 11, 12, 14, 15]);
        let mut repeated = file[..ends[1]].to_vec();
        encode_record(&mut repeated, 11, 0, 0, b"", b"{}");
        assert_eq!(segment(&repeated, 10, dir.path()), [10, 11]);
        assert_eq!(segment(&file, 12, dir.path()), [12, 13, 14, 15]);
        assert_eq!(segment(b"", 1, dir.path()), Vec::<u64>::new());
    }

    /// Found by the `segment_recovery` fuzz target (an out-of-memory): a record
    /// length that a damaged disk made huge had the log's open grow its read buffer
    /// to that length, up to 4 GiB and zero-filled, before it found the file shorter.
    #[test]
    fn a_damaged_length_does_not_make_open_allocate_it() {
        let peak_kib = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        encode_record(&mut file, 10, 10, 0, b"", br#"{"a":1}"#);
        file[0..4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let before = peak_kib();
        assert_eq!(segment(&file, 10, dir.path()), Vec::<u64>::new());
        let grew = peak_kib().saturating_sub(before);
        assert!(
            grew < 256 << 10,
            "opening a 33-byte segment took {grew} KiB more"
        );
    }
}
