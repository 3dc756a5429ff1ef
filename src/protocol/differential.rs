//! One harness for every hand-written reader and writer of `protocol/` against its
//! serde twin (test builds only). Each pair is checked two ways: on every text made
//! by changing one character of texts the hub and clients write ([`sweep`]), and on
//! generated texts, valid and near-valid ([`crate::testgen`]).
//!
//! | Hand-written | serde twin | check |
//! |---|---|---|
//! | [`quick::publish_batch`](super::quick) | `ClientFrame::parse_full` | [`fuzzing::client_frame`] |
//! | [`parse_ack`], [`parse_batch_ack`] | [`ack_by_serde`], [`batch_ack_by_serde`] | [`fuzzing::server_frame`] |
//! | [`split_event_frame`], [`split_events_frame`], [`event_id`] | [`event_by_serde`], [`events_by_serde`], [`event_id_by_serde`] | [`fuzzing::server_frame`] |
//! | [`event_json`], [`EventHead`], [`publish_frame`] | `serde_json::to_string` of the same [`ClientFrame::Publish`] | [`encoders`] |
//!
//! A check panics where a pair disagrees and says whether the hand-written side
//! answered, so each test can require that it answered often enough to mean
//! something. The checks of `fuzzing` are also the cargo-fuzz targets' (`fuzz/`).

use super::quick::tests::{EVENTS, frame};
use super::*;
use crate::event::NewEvent;
use crate::fuzzing;
use crate::testgen::*;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Runs `check` on every text made from `text` by inserting one of a few bytes
/// that matter to JSON at a character boundary, or putting it in place of the
/// character there; how many times `check` said `true`.
fn sweep(text: &str, mut check: impl FnMut(&str) -> bool) -> usize {
    let mut answered = 0;
    for at in 0..=text.len() {
        if !text.is_char_boundary(at) {
            continue;
        }
        for b in [
            "", "\"", "\\", ",", ":", "{", "}", "[", "]", " ", "\n", "\u{1}", "0", "e", "a", "-",
            "+",
        ] {
            for cut in [0, 1] {
                let end = (at + cut).min(text.len());
                if !text.is_char_boundary(end) {
                    continue;
                }
                let changed = format!("{}{b}{}", &text[..at], &text[end..]);
                answered += usize::from(check(&changed));
            }
        }
    }
    answered
}

/// The client's hand-written encoders against serde writing the same frame: the
/// event alone ([`event_json`]), from a shared head with a key and its data spliced
/// in ([`EventHead`]), and inside a `publish` frame ([`publish_frame`]); `false`
/// for an event the encoders are not given (an invalid one).
fn encoders(ev: &NewEvent, req: u64) -> bool {
    if ev.validate().is_err() {
        return false;
    }
    let serde_frame = |event: &NewEvent| {
        serde_json::to_string(&ClientFrame::Publish {
            req: Some(req.into()),
            event: event.clone(),
        })
        .expect("a frame serializes")
    };
    let want = serde_frame(ev);
    let json = event_json(ev);
    assert_eq!(json, serde_json::to_string(ev).unwrap(), "event_json");
    assert_eq!(publish_frame(req, &json), want, "publish_frame");
    let mut keyed = ev.clone();
    keyed.key = Some("p0-17".into());
    let data = serde_json::to_string(&ev.data).expect("a value serializes");
    let headed = EventHead::new(ev)
        .expect("a valid event has a valid head")
        .event_json(
            String::new(),
            "p0",
            "17",
            RawJson::new(&data).expect("serde writes JSON"),
        );
    assert_eq!(
        publish_frame(req, &headed),
        serde_frame(&keyed),
        "EventHead"
    );
    true
}

/// The quick batch-`publish` parse against the full parse, on every one-character
/// change of a frame as publishers write it: where the quick path answers, the full
/// parse answers the same, and stores the same; where the full parse refuses, the
/// quick path does not answer.
#[test]
fn quick_publish_parse_on_changed_frames() {
    let answered = sweep(&frame(42, &EVENTS), fuzzing::client_frame);
    // Whitespace and changed string contents keep many of them on the quick path.
    assert!(answered > 1000, "{answered}");
}

/// The same on generated batch frames, in the layout publishers write and others,
/// valid and near-valid.
#[test]
fn quick_publish_parse_on_generated_frames() {
    let frames = (
        any::<u64>(),
        prop_oneof![
            1 => prop::collection::vec(event(), 1..5),
            2 => prop::collection::vec(plain_event(), 1..5),
        ],
        style(),
        some_mutations(),
    )
        .prop_map(|(req, events, mut st, ms)| {
            maybe_mutated(render_frame(req, &events, &mut st), &ms)
        });
    let quick = count(frames, |text| fuzzing::client_frame(&text));
    assert!(quick > 40, "the quick path took {quick} of 256");
}

/// Frames the hub writes, of every kind a client reads quickly.
fn hub_frames() -> Vec<String> {
    let ev =
        r#"{"id":41,"ts":"2026-12-03T00:00:00.000Z","topic":"t","type":"m","data":{"a":[1,"x"]}}"#;
    let outcomes = [Ok(7), Err((ErrorCode::TooLarge, "big".to_string())), Ok(9)];
    vec![
        ServerFrame::Ack {
            req: Some(json!(70)),
            id: 43,
        }
        .encode(),
        batch_ack_frame(&Some(json!(8)), &[Ok(44), Ok(105)]),
        batch_ack_frame(&Some(json!(8)), &outcomes),
        event_frame("\"s1\"", ev),
        events_frame(
            &events_frame_prefix("\"s1\""),
            [ev, r#"{"id":42,"ts":"x","topic":"u"}"#].into_iter(),
            0,
        ),
    ]
}

/// The client's quick reads of `ack`, batch `ack`, `event` and `events` frames and
/// of event ids, on every one-character change of frames the hub writes: where a
/// quick read answers, serde reads the same.
#[test]
fn quick_server_frame_reads_on_changed_frames() {
    let mut answered = 0;
    for text in hub_frames() {
        assert!(fuzzing::server_frame(&text, "s1"), "{text}");
        answered += sweep(&text, |t| fuzzing::server_frame(t, "s1"));
    }
    assert!(answered > 1000, "{answered}");
}

/// The same on generated frames, and those changed a little.
#[test]
fn quick_server_frame_reads_on_generated_frames() {
    let id = prop_oneof![0..1000u64, any::<u64>()];
    let outcome = prop::option::weighted(0.9, id.clone());
    // Events as the hub encodes them (`id` first), and now and then another shape.
    let event = || {
        (prop::option::weighted(0.8, 0..1000u64), json()).prop_map(|(id, v)| {
            let rest = match v {
                Json::Obj(fields) => fields,
                other => vec![("data".into(), other)],
            };
            let id = id.map(|n| ("id".to_string(), Json::Num(n.to_string())));
            let v = Json::Obj(id.into_iter().chain(rest).collect());
            let v: Value =
                serde_json::from_str(&rendered(&v, &mut Style::new(vec![]))).unwrap_or(Value::Null);
            serde_json::to_string(&v).expect("a value serializes")
        })
    };
    let frame = prop_oneof![
        (id.clone(), id.clone()).prop_map(|(req, id)| {
            ServerFrame::Ack {
                req: Some(json!(req)),
                id,
            }
            .encode()
        }),
        (id.clone(), prop::collection::vec(outcome, 1..6)).prop_map(|(req, ids)| {
            let outcomes: Vec<BatchOutcome> = ids
                .into_iter()
                .map(|o| o.ok_or((ErrorCode::TooLarge, "too large".to_string())))
                .collect();
            batch_ack_frame(&Some(json!(req)), &outcomes)
        }),
        event().prop_map(|e: String| event_frame("\"s1\"", &e)),
        prop::collection::vec(event(), 1..5).prop_map(|texts: Vec<String>| {
            events_frame(
                &events_frame_prefix("\"s1\""),
                texts.iter().map(String::as_str),
                0,
            )
        }),
    ];
    let frames = (frame, some_mutations()).prop_map(|(f, ms)| maybe_mutated(f, &ms));
    let quick = count(frames, |text| fuzzing::server_frame(&text, "s1"));
    assert!(quick > 60, "a quick read answered {quick} of 256");
}

/// The client's encoders on generated events (those serde reads as a valid
/// [`NewEvent`]): the bytes serde writes for the same frame.
#[test]
fn encoders_on_generated_events() {
    let events = (any::<u64>(), prop_oneof![event(), plain_event()]).prop_map(|(req, e)| {
        let text = render_event(&e, &mut Style::new(vec![]));
        (req, serde_json::from_str::<NewEvent>(&text).ok())
    });
    let valid = count(events, |(req, ev)| ev.is_some_and(|ev| encoders(&ev, req)));
    assert!(valid > 100, "{valid} of 256 events were valid");
}
