//! The plain HTTP endpoints: `POST /publish`, `GET /events` (polling, with long
//! poll), `GET /tasks`, `GET /health`, `GET /status`, `GET /metrics`.

use super::{AppState, MAX_BODY_BYTES, error_response};
use crate::event::{EventError, Prepared, RawEvent, describe_json_error};
use crate::matching::Matcher;
use crate::protocol::{ErrorCode, Subscribe};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Query parameters of `/ws` and `/events`; repeated keys accumulate.
#[derive(Debug, Default)]
pub struct Query {
    pub spec: Subscribe,
    pub limit: Option<usize>,
    pub wait: Option<Duration>,
    /// Whether any subscription parameter was given.
    pub any: bool,
}

/// Parses a query string, accepting only `allowed` keys (and `token`).
pub fn parse_query(q: Option<&str>, allowed: &[&str]) -> Result<Query, String> {
    let mut out = Query::default();
    let num = |k: &str, v: &str| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{k}={v:?} is not a whole number"))
    };
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let (k, v) = (k.as_ref(), v.as_ref());
        if k == "token" {
            continue;
        }
        if !allowed.contains(&k) {
            return Err(format!(
                "unknown query parameter {k:?}; accepted: {}",
                allowed.join(", ")
            ));
        }
        match k {
            "topic" => out.spec.topics.push(v.to_string()),
            "type" => out.spec.types.push(v.to_string()),
            "where" => out.spec.filters.push(v.to_string()),
            "since" => out.spec.since = Some(num(k, v)?),
            "last" => out.spec.last = Some(num(k, v)?),
            "durable" => out.spec.durable = Some(v.to_string()),
            "limit" => out.limit = Some(num(k, v)? as usize),
            "wait" => {
                out.wait = Some(humantime::parse_duration(v).map_err(|e| {
                    format!("wait={v:?} is not a duration ({e}); use e.g. 500ms, 30s, 2m")
                })?)
            }
            _ => unreachable!("checked against allowed"),
        }
        out.any = true;
    }
    if out.spec.since.is_some() && out.spec.last.is_some() {
        return Err("give since or last, not both".into());
    }
    Matcher::new(&out.spec.topics, &out.spec.types, &out.spec.filters)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn bad_request(msg: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg)
}

/// Parses a body: one event object, or JSON lines of them.
pub(crate) fn parse_body(body: &[u8], max_event_bytes: usize) -> Result<Vec<Prepared>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("empty body: send one event object {\"topic\":..., \"type\":..., \"data\":...} or JSON lines of them".into());
    }
    // Events over the size limit, in a batch read and checked already (each with
    // its line number, if it has one): the first one is what the answer names.
    let too_large = |events: &[Prepared], lines: &[usize]| -> Option<String> {
        events.iter().enumerate().find_map(|(k, ev)| {
            let size = ev.max_encoded_len();
            let e = EventError::TooLarge {
                size,
                limit: max_event_bytes,
            };
            (size > max_event_bytes).then(|| match lines.get(k) {
                Some(n) => format!("line {n}: {e}"),
                None => e.to_string(),
            })
        })
    };
    // A single (possibly pretty-printed) object...
    if let Ok(ev) = serde_json::from_str::<RawEvent<'_>>(text) {
        ev.validate().map_err(|e| e.to_string())?;
        let out = vec![ev.prepare()];
        return too_large(&out, &[]).map_or(Ok(out), Err);
    }
    // ...or JSON lines, encoded together into one buffer.
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut invalid = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ev = serde_json::from_str::<RawEvent<'_>>(line)
            .map_err(|e| EventError::Json(describe_json_error(&e)))
            .and_then(|ev| ev.validate().map(|()| ev));
        match ev {
            Ok(ev) => {
                events.push(ev);
                lines.push(i + 1);
            }
            Err(e) => {
                invalid = Some(format!("line {}: {e}", i + 1));
                break;
            }
        }
    }
    let out = RawEvent::prepare_all(&events);
    // A line too large before the first invalid one is the first line refused.
    match too_large(&out, &lines).or(invalid) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub async fn publish(State(app): State<AppState>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!(
                    "body over {} MiB: split it into several requests",
                    MAX_BODY_BYTES >> 20
                ),
            );
        }
    };
    let events = match parse_body(&bytes, app.cfg.max_event_bytes) {
        Ok(e) => e,
        Err(msg) if msg.contains("too large") => {
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, msg);
        }
        Err(msg) => return bad_request(msg),
    };
    match app.broker.publish(events).await {
        Ok(outcomes) => {
            let mut ids = Vec::with_capacity(outcomes.len());
            for (i, o) in outcomes.into_iter().enumerate() {
                match o {
                    Ok(id) => ids.push(id),
                    Err(e) => return bad_request(format!("line {}: {e}", i + 1)),
                }
            }
            axum::Json(serde_json::json!({ "ids": ids })).into_response()
        }
        Err(crate::broker::BrokerError::ShuttingDown) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the hub is shutting down; retry shortly",
        ),
        Err(crate::broker::BrokerError::Unavailable(m)) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            format!(
                "{m}; the event may still be stored once NATS is back: send it again with a key to have it stored once"
            ),
        ),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

/// Events examined per `/events` request at most, so one request cannot hold a
/// worker for long on a huge log.
const MAX_SCAN: usize = 1_000_000;

pub async fn events(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = match parse_query(
        q.as_deref(),
        &["topic", "type", "where", "since", "limit", "wait"],
    ) {
        Ok(q) => q,
        Err(m) => return bad_request(m),
    };
    let matcher = Matcher::new(&q.spec.topics, &q.spec.types, &q.spec.filters).expect("checked");
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let wait = q.wait.unwrap_or_default().min(Duration::from_secs(300));
    let deadline = Instant::now() + wait;
    let log = app.broker.log();
    let mut after = q.spec.since.unwrap_or(0);
    let mut body = String::new();
    let mut n = 0;
    let mut gaps: Vec<crate::store::Gap> = Vec::new();
    loop {
        let mut scanned = 0;
        while n < limit && scanned < MAX_SCAN {
            let batch = match log.read_after(after, 1024) {
                Ok(b) => b,
                Err(e) => {
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::Internal,
                        e.to_string(),
                    );
                }
            };
            if let Some(gap) = batch.gap {
                gaps.push(gap);
                after = batch.next_after;
            }
            if batch.events.is_empty() {
                if batch.gap.is_some() {
                    continue;
                }
                break;
            }
            for ev in &batch.events {
                after = ev.id();
                scanned += 1;
                if matcher.matches(ev.as_ref()) {
                    body.push_str(&ev.json);
                    body.push('\n');
                    n += 1;
                    if n == limit {
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        if n > 0 || now >= deadline || app.shutdown.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = app.broker.wait_for_new(after, deadline - now) => {}
            _ = app.shutdown.cancelled() => {}
        }
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::HeaderName::from_static("x-hub-last-id"),
                after.to_string(),
            ),
        ],
        body,
    )
        .into_response();
    if !gaps.is_empty() {
        // `X-Hub-Gap: 10-19,40-42` and `X-Hub-Gap-Reason: retention,corrupt`: the ids
        // after `since` (up to X-Hub-Last-Id) that are gone, and why.
        let ranges: Vec<String> = gaps
            .iter()
            .map(|g| format!("{}-{}", g.from, g.to))
            .collect();
        let reasons: Vec<&str> = gaps.iter().map(|g| g.reason.as_str()).collect();
        let h = response.headers_mut();
        for (name, value) in [
            ("x-hub-gap", ranges.join(",")),
            ("x-hub-gap-reason", reasons.join(",")),
        ] {
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                h.insert(header::HeaderName::from_static(name), v);
            }
        }
    }
    response
}

/// `{"tasks":[...],"last_id":N}`: every lifecycle event with id up to `last_id` is
/// folded in and none after it, so a client that subscribes `since` it gets the
/// deltas with no gap and no duplicate. It is at least the id before the oldest
/// retained event, so that subscription never starts with a `gap`.
pub async fn tasks(State(app): State<AppState>) -> Response {
    #[derive(serde::Serialize)]
    struct Tasks {
        tasks: Vec<crate::broker::tasks::TaskState>,
        last_id: u64,
    }
    app.broker.caught_up().await;
    let (tasks, folded) = app.broker.tasks_snapshot();
    let first = app.broker.log().stats().first_id;
    axum::Json(Tasks {
        tasks,
        last_id: folded.max(first.saturating_sub(1)),
    })
    .into_response()
}

pub async fn health(State(app): State<AppState>) -> Response {
    if app.shutdown.is_cancelled() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "shutting down",
        );
    }
    ([(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// The counters of `/status` and `/metrics`, in one place.
fn counters(app: &AppState) -> Vec<(&'static str, &'static str, u64)> {
    let st = app.broker.stats();
    let log = app.broker.log().stats();
    vec![
        ("uptime_seconds", "gauge", app.broker.uptime().as_secs()),
        (
            "connections",
            "gauge",
            st.connections.load(Ordering::Relaxed),
        ),
        (
            "subscriptions",
            "gauge",
            st.subscriptions.load(Ordering::Relaxed),
        ),
        ("events", "gauge", log.events),
        ("first_id", "gauge", log.first_id),
        ("last_id", "gauge", log.last_id),
        ("log_bytes", "gauge", log.bytes),
        ("damaged_events", "gauge", log.damaged),
        (
            "lagged_total",
            "counter",
            st.lagged_total.load(Ordering::Relaxed),
        ),
        (
            "gaps_total",
            "counter",
            st.gaps_total.load(Ordering::Relaxed),
        ),
        (
            "dedup_total",
            "counter",
            st.dedup_total.load(Ordering::Relaxed),
        ),
        (
            "published_total",
            "counter",
            st.published_total.load(Ordering::Relaxed),
        ),
    ]
}

pub async fn status(State(app): State<AppState>) -> Response {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    for (k, _, v) in counters(&app) {
        m.insert(k.into(), v.into());
    }
    app.broker.refresh_backend().await;
    m.insert("backend".into(), app.broker.backend());
    axum::Json(serde_json::Value::Object(m)).into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut out = String::new();
    for (k, kind, v) in counters(&app) {
        let _ = writeln!(out, "# TYPE hub_{k} {kind}\nhub_{k} {v}");
    }
    let _ = writeln!(
        out,
        "# TYPE hub_build_info gauge\nhub_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!(
            "no such endpoint {}; the hub serves GET /ws, POST /publish, GET /events, GET /tasks, GET /health, GET /status, GET /metrics",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let allowed = if uri.path() == "/publish" {
        "POST"
    } else {
        "GET"
    };
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        format!("{method} is not accepted on {}; use {allowed}", uri.path()),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    r
}

#[cfg(test)]
mod tests {

    /// Whole bodies of generated events (one to five lines, some changed a little,
    /// blank lines between): taken or refused exactly as serde reads their lines
    /// (the checks of [`crate::fuzzing::publish_body`]).
    #[test]
    fn generated_bodies_are_read_as_serde_reads_their_lines() {
        use crate::testgen::*;
        use proptest::prelude::*;
        let line = (event(), style(), some_mutations())
            .prop_map(|(e, mut st, ms)| maybe_mutated(render_event(&e, &mut st), &ms));
        let bodies = (proptest::collection::vec(line, 1..5), any::<bool>())
            .prop_map(|(ls, blank)| ls.join(if blank { "\n\n" } else { "\n" }));
        let valid = count(bodies, |b| {
            crate::fuzzing::publish_body(b.as_bytes());
            parse_body(b.as_bytes(), 1 << 20).is_ok()
        });
        assert!(valid > 20, "{valid} of the bodies were taken");
    }

    use super::*;

    #[test]
    fn body_forms() {
        let one = parse_body(b"{\n  \"topic\": \"a\",\n  \"data\": 1\n}\n", 65536).unwrap();
        assert_eq!(one.len(), 1);
        let lines = parse_body(
            b"{\"topic\":\"a\"}\n\n{\"topic\":\"b\",\"type\":\"x\"}\n",
            65536,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        let err = parse_body(b"{\"topic\":\"a\"}\n{\"topic\":\"bad topic\"}\n", 65536).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse_body(b"{\"topic\":\"a\"}\nnot json\n", 65536).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse_body(b"  ", 65536).is_err());
        let err = parse_body(b"{\"topic\":\"a\",\"data\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", 100).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn queries() {
        let q = parse_query(
            Some("topic=a&topic=b%3A*&where=type%3Dx&since=4&token=s"),
            &["topic", "where", "since"],
        )
        .unwrap();
        assert_eq!(q.spec.topics, ["a", "b:*"]);
        assert_eq!(q.spec.filters, ["type=x"]);
        assert_eq!(q.spec.since, Some(4));
        assert!(
            parse_query(Some("topicz=a"), &["topic"])
                .unwrap_err()
                .contains("topicz")
        );
        assert!(parse_query(Some("since=x"), &["since"]).is_err());
        assert!(parse_query(Some("where=nofield"), &["where"]).is_err());
        assert!(parse_query(Some("since=1&last=2"), &["since", "last"]).is_err());
    }
}
