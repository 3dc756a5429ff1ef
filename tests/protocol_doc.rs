//! docs/protocol.md cannot drift from the hub: each of its JSON examples runs here
//! against a real `hub-serve`.
//!
//! A block is marked by an HTML comment on the line before its fence:
//! - `<!-- send: NAME -->` + a ```json fence: client frames, one per line, sent as
//!   written (an invalid one on purpose included);
//! - `<!-- expect: NAME -->` + a ```json fence: the frames the hub answers with,
//!   JSON values one after another (an `events` frame may span lines);
//! - `<!-- http: NAME -->` + a ```http fence: a request (`METHOD PATH`, headers, a
//!   blank line, the body); `<!-- response: NAME -->` + a ```http fence: its answer
//!   (status line, headers that must be there, a blank line, the body).
//!
//! Blocks of one NAME run in document order against one hub, prepared as
//! [`scenarios`] says (flags, events published first, the `/ws` URL), on one
//! WebSocket connection. Expected frames are matched in order per subscription (and
//! per kind for the others: acks with errors that carry a `req`, other errors,
//! pongs), since frames of different subscriptions and acks interleave freely.
//! Values match when they have the same keys and kinds; strings must be equal, but
//! for times (`ts`, `*_at`), `version`, `"..."` (anything), and a `message` that ends
//! in `...` (the real one starts with what comes before). Numbers compare by kind
//! (whole or not), since ids and counters vary. After a scenario's last block, a
//! `ping` must be answered by a `pong` with nothing the doc does not show before it.
//!
//! Also checked: no ```json or ```http fence is unmarked; every scenario here is used
//! in the document and every NAME there is here; JSON in inline code parses (and
//! frames in it parse as the hub's frames); the close-code table lists every code of
//! `hub::protocol::close` with its retry meaning, and the hub really closes with the
//! codes it can be made to send.

mod common;

use common::Hub;
use common::ws::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"))
        .expect("docs/protocol.md")
}

#[derive(Debug)]
struct Block {
    kind: String,
    name: String,
    text: String,
    /// 1-based line of the marker, for messages.
    line: usize,
}

/// The marked blocks, in document order. Panics on an unmarked ```json/```http fence.
fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_fence = false;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("```") {
            if !in_fence && (line == "```json" || line == "```http") {
                let marker = i
                    .checked_sub(1)
                    .and_then(|p| lines[p].strip_prefix("<!-- "))
                    .and_then(|m| m.strip_suffix(" -->"))
                    .and_then(|m| m.split_once(": "));
                let Some((kind, name)) = marker else {
                    panic!(
                        "docs/protocol.md line {}: a {line} block without a marker comment on the line before",
                        i + 1
                    );
                };
                let body: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| **l != "```")
                    .copied()
                    .collect();
                out.push(Block {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    text: body.join("\n"),
                    line: i,
                });
                i += body.len() + 2;
                continue;
            }
            in_fence = !in_fence;
        }
        i += 1;
    }
    out
}

/// How a scenario's hub is started and prepared.
struct Scenario {
    flags: &'static [&'static str],
    /// Event bodies published with `POST /publish` before the blocks run.
    setup: &'static [&'static str],
    /// The WebSocket path and query.
    path: &'static str,
}

fn scenarios() -> BTreeMap<&'static str, Scenario> {
    let plain = |setup| Scenario {
        flags: &[],
        setup,
        path: "/ws",
    };
    let build_42 = &[
        r#"{"topic":"task:build-42","type":"task_started","source":"ci-runner-3","data":{"command":"cargo build"}}"#,
        r#"{"topic":"task:build-42","type":"progress","source":"ci-runner-3","data":{"percent":25}}"#,
    ];
    BTreeMap::from([
        ("tour", plain(build_42)),
        (
            "event",
            Scenario {
                flags: &[],
                setup: &build_42[..1],
                path: "/ws?topic=task:*&since=0",
            },
        ),
        (
            "last",
            plain(&[
                r#"{"topic":"log:nginx","type":"log","data":{"line":"GET / 200"}}"#,
                r#"{"topic":"log:app","type":"log","data":{"line":"started"}}"#,
                r#"{"topic":"log:nginx","type":"log","data":{"line":"GET /login 302"}}"#,
                r#"{"topic":"log:nginx","type":"log","data":{"line":"GET /health 200"}}"#,
                r#"{"topic":"log:nginx","type":"log","data":{"line":"GET /api 500"}}"#,
            ]),
        ),
        (
            "durable",
            plain(&[
                r#"{"topic":"cron:backup","type":"task_completed","data":{"duration_seconds":4.2,"exit_code":0}}"#,
                r#"{"topic":"cron:backup","type":"task_completed","data":{"duration_seconds":3.9,"exit_code":0}}"#,
            ]),
        ),
        (
            "query",
            Scenario {
                flags: &[],
                setup: &[
                    r#"{"topic":"deploy:web","type":"deployed","data":{"version":"1.4.1"}}"#,
                    r#"{"topic":"deploy:web","type":"deployed","data":{"version":"1.4.2"}}"#,
                ],
                path: "/ws?topic=deploy:*&last=1",
            },
        ),
        ("publish", plain(&[])),
        ("ping", plain(&[])),
        (
            "batch",
            Scenario {
                flags: &["--max-event-bytes", "200"],
                setup: &[],
                path: "/ws",
            },
        ),
        (
            "gap",
            Scenario {
                flags: &["--retain-events", "16"],
                setup: &[GAP_SETUP],
                path: "/ws",
            },
        ),
        (
            "errors",
            Scenario {
                flags: &["--max-subscriptions", "1"],
                setup: &[],
                path: "/ws",
            },
        ),
        ("http", plain(&[])),
        (
            "tasks",
            plain(&[
                r#"{"topic":"task:build-42","type":"task_started"}"#,
                r#"{"topic":"task:build-42","type":"progress","data":{"percent":50,"message":"compiling"}}"#,
            ]),
        ),
        (
            "token",
            Scenario {
                flags: &["--token", "s3cret"],
                setup: &[],
                path: "/ws",
            },
        ),
    ])
}

/// 39 events on `old:x`, then one on `gap:x`, one per request so that retention
/// trims as it would under a stream of publishes.
const GAP_SETUP: &str = "gap";

fn post(hub: &Hub, body: &str) -> (u16, String) {
    let mut r = common::http()
        .post(&format!("{}/publish", hub.http_url()))
        .header("Authorization", "Bearer s3cret")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn prepare(hub: &Hub, s: &Scenario) {
    for body in s.setup {
        if *body == GAP_SETUP {
            for _ in 0..39 {
                assert_eq!(post(hub, r#"{"topic":"old:x"}"#).0, 200);
            }
            assert_eq!(post(hub, r#"{"topic":"gap:x"}"#).0, 200);
        } else {
            let (status, text) = post(hub, body);
            assert_eq!(status, 200, "setup {body}: {text}");
        }
    }
}

const TIME_KEYS: &[&str] = &["ts", "started_at", "updated_at", "ended_at"];

fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && s.ends_with('Z')
}

/// Whether `real` has the shape of `want` (see the module docs); the first
/// difference otherwise.
fn same_shape(want: &Value, real: &Value, key: &str, at: &str) -> Result<(), String> {
    let differ = || Err(format!("at {at}: the doc has {want}, the hub sent {real}"));
    match (want, real) {
        (Value::Object(w), Value::Object(r)) => {
            let wk: Vec<&String> = w.keys().collect();
            let rk: Vec<&String> = r.keys().collect();
            if wk.iter().collect::<std::collections::BTreeSet<_>>()
                != rk.iter().collect::<std::collections::BTreeSet<_>>()
            {
                return Err(format!(
                    "at {at}: the doc has keys {wk:?}, the hub sent {rk:?} ({real})"
                ));
            }
            for (k, v) in w {
                same_shape(v, &r[k], k, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(r)) => {
            if w.len() != r.len() {
                return differ();
            }
            for (i, (a, b)) in w.iter().zip(r).enumerate() {
                same_shape(a, b, key, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(w), Value::Number(r)) if w.is_f64() == r.is_f64() => Ok(()),
        (Value::String(w), Value::String(r)) => {
            let ok = if w == "..." || key == "version" {
                true
            } else if TIME_KEYS.contains(&key) {
                is_time(w) && is_time(r)
            } else if key == "message" && w.ends_with("...") {
                r.starts_with(w.trim_end_matches("..."))
            } else {
                w == r
            };
            if ok { Ok(()) } else { differ() }
        }
        (w, r) if w == r => Ok(()),
        _ => differ(),
    }
}

/// Which frames keep their order among themselves (see the module docs).
fn channel(f: &Value) -> String {
    if let Some(s) = f.get("sub").and_then(Value::as_str)
        && f["type"] != "error"
    {
        return format!("sub {s}");
    }
    match f["type"].as_str().unwrap_or("") {
        "ack" => "acks".into(),
        "error" if f.get("req").is_some() => "acks".into(),
        // Refusals come from the connection's reader, in the order of the frames,
        // also those naming a subscription.
        "error" => "errors".into(),
        other => other.to_string(),
    }
}

fn json_values(text: &str, what: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: not JSON values: {e}"))
}

/// Reads frames until every one of `want` has come, matching in channel order.
async fn expect(c: &mut Client, want: Vec<Value>, what: &str) {
    let mut left: Vec<Option<Value>> = want.into_iter().map(Some).collect();
    while left.iter().any(Option::is_some) {
        let got = c.frame().await;
        let ch = channel(&got);
        let Some(slot) = left
            .iter_mut()
            .find(|w| w.as_ref().is_some_and(|w| channel(w) == ch))
        else {
            panic!("{what}: the hub sent {got}, which the doc does not show here");
        };
        if let Err(e) = same_shape(slot.as_ref().unwrap(), &got, "", "frame") {
            panic!("{what}: {e}");
        }
        *slot = None;
    }
}

/// A request or response block: its first line, headers, body.
fn http_parts(text: &str) -> (String, Vec<(String, String)>, String) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for l in lines.by_ref() {
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(": ").expect("a header line is `Name: value`");
        headers.push((k.to_string(), v.to_string()));
    }
    let body: Vec<&str> = lines.collect();
    let body = if body.is_empty() {
        String::new()
    } else {
        body.join("\n") + "\n"
    };
    (first, headers, body)
}

fn http_exchange(hub: &Hub, request: &Block, response: &Block) {
    let what = format!("docs/protocol.md line {}", request.line);
    let (first, headers, body) = http_parts(&request.text);
    let (method, path) = first.split_once(' ').expect("METHOD PATH");
    let url = format!("{}{path}", hub.http_url());
    let agent = common::http();
    let result = match method {
        "GET" => {
            let mut r = agent.get(&url);
            for (k, v) in &headers {
                r = r.header(k, v);
            }
            r.call()
        }
        "POST" => {
            let mut r = agent.post(&url);
            for (k, v) in &headers {
                r = r.header(k, v);
            }
            r.send(&body)
        }
        other => panic!("{what}: method {other} is not handled by this test"),
    };
    let mut r = result.unwrap_or_else(|e| panic!("{what}: {e}"));
    let (status_line, want_headers, want_body) = http_parts(&response.text);
    let want_status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP/1.1 CODE REASON");
    let status = r.status();
    let got_body = r.body_mut().read_to_string().unwrap();
    assert_eq!(
        status.as_u16(),
        want_status,
        "{what}: status (body {got_body})"
    );
    assert_eq!(
        status
            .canonical_reason()
            .map(|c| format!("HTTP/1.1 {} {c}", status.as_u16())),
        Some(status_line.clone()),
        "{what}: status line"
    );
    for (k, v) in &want_headers {
        let got = r.headers().get(k.as_str()).and_then(|g| g.to_str().ok());
        assert_eq!(got, Some(v.as_str()), "{what}: header {k}");
    }
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ctype.contains("json") {
        let want = json_values(&want_body, &what);
        let got = json_values(&got_body, &format!("{what}: the hub's answer"));
        assert_eq!(want.len(), got.len(), "{what}: answer\n{got_body}");
        for (w, g) in want.iter().zip(&got) {
            if let Err(e) = same_shape(w, g, "", "body") {
                panic!("{what}: {e}");
            }
        }
    } else {
        assert_eq!(got_body, want_body, "{what}: body");
    }
}

#[test]
fn every_scenario_is_used_and_every_block_has_one() {
    let doc = doc();
    let used: std::collections::BTreeSet<String> =
        blocks(&doc).into_iter().map(|b| b.name).collect();
    let known: std::collections::BTreeSet<String> =
        scenarios().into_keys().map(String::from).collect();
    assert_eq!(
        used, known,
        "scenario names in docs/protocol.md vs tests/protocol_doc.rs"
    );
    for b in blocks(&doc) {
        assert!(
            ["send", "expect", "http", "response"].contains(&b.kind.as_str()),
            "line {}: unknown marker {}",
            b.line,
            b.kind
        );
    }
}

#[test]
fn the_examples_are_what_a_real_hub_does() {
    let doc = doc();
    let all = blocks(&doc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, scenario) in scenarios() {
        let mut flags = vec!["--memory"];
        flags.extend(scenario.flags);
        let hub = Hub::start(&flags);
        prepare(&hub, &scenario);
        let mine: Vec<&Block> = all.iter().filter(|b| b.name == name).collect();
        rt.block_on(async {
            let mut ws: Option<Client> = None;
            let mut i = 0;
            while i < mine.len() {
                let b = mine[i];
                let what = format!("docs/protocol.md line {} ({name})", b.line);
                match b.kind.as_str() {
                    "send" | "expect" => {
                        if ws.is_none() {
                            let url = format!("{}{}", hub.ws_url(), scenario.path);
                            ws = Some(Client::connect(&url).await);
                        }
                        let c = ws.as_mut().unwrap();
                        if b.kind == "send" {
                            for line in b.text.lines() {
                                c.send_raw(Message::text(line)).await;
                            }
                        } else {
                            expect(c, json_values(&b.text, &what), &what).await;
                        }
                    }
                    "http" => {
                        let resp = mine.get(i + 1).filter(|r| r.kind == "response");
                        let resp = resp.unwrap_or_else(|| {
                            panic!("{what}: an http block is followed by its response block")
                        });
                        http_exchange(&hub, b, resp);
                        i += 1;
                    }
                    other => panic!("{what}: a {other} block without its request"),
                }
                i += 1;
            }
            // Nothing the doc does not show is left waiting before a pong.
            if let Some(c) = ws.as_mut() {
                c.send(serde_json::json!({"type":"ping"})).await;
                let f = c.frame().await;
                assert_eq!(
                    f["type"], "pong",
                    "{name}: a frame the doc does not show: {f}"
                );
            }
        });
    }
}

/// JSON in inline code (`{"type":"ping"}`) parses, and frames parse as the hub reads
/// (client frames) or writes (server frames) them.
#[test]
fn inline_json_is_valid() {
    let doc = doc();
    let mut checked = 0;
    let mut in_fence = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        for (k, span) in line.split('`').enumerate() {
            if k % 2 == 0 || !span.starts_with("{\"") {
                continue;
            }
            let v: Value = serde_json::from_str(span)
                .unwrap_or_else(|e| panic!("inline JSON `{span}` does not parse: {e}"));
            checked += 1;
            let Some(kind) = v.get("type").and_then(Value::as_str) else {
                continue;
            };
            let client = ["subscribe", "unsubscribe", "publish", "cursor", "ping"];
            if client.contains(&kind) {
                if let Err(e) = hub::protocol::ClientFrame::parse(span) {
                    panic!("inline frame `{span}`: the hub would refuse it: {e}");
                }
            } else if kind == "ack" && v.get("ids").is_some() {
                assert!(hub::protocol::parse_batch_ack(span).is_some(), "`{span}`");
            } else {
                serde_json::from_value::<hub::protocol::ServerFrame>(v.clone())
                    .unwrap_or_else(|e| panic!("inline frame `{span}`: {e}"));
            }
        }
    }
    assert!(checked >= 3, "found {checked} inline JSON spans");
}

/// The rows of the close-code table: code → "reconnect" | "stop".
fn close_table(doc: &str) -> BTreeMap<u16, String> {
    let section = doc
        .split("\n## Close codes\n")
        .nth(1)
        .expect("a Close codes section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(3)?.to_string()))
        })
        .collect()
}

#[test]
fn the_close_code_table_is_the_hubs() {
    use hub::protocol::close;
    let table = close_table(&doc());
    let codes = [
        close::NORMAL,
        close::GOING_AWAY,
        close::UNSUPPORTED,
        close::ABNORMAL,
        close::POLICY,
        close::TOO_BIG,
        close::BAD_REQUEST,
        close::UNAUTHORIZED,
        close::FORBIDDEN,
        close::TOO_MANY,
        close::INTERNAL,
    ];
    assert_eq!(
        table.keys().copied().collect::<Vec<_>>(),
        codes.to_vec(),
        "the table's codes"
    );
    for (code, retry) in &table {
        let want = if close::is_retryable(*code) {
            "reconnect"
        } else {
            "stop"
        };
        assert_eq!(retry, want, "retry meaning of {code}");
    }
}

/// The codes the hub can be made to send, sent as the table says.
#[test]
fn the_hub_closes_with_the_documented_codes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::start(&[
            "--memory",
            "--token",
            "s3cret",
            "--max-connections",
            "1",
            "--max-event-bytes",
            "1KiB",
        ]);
        let url = format!("{}/ws?token=s3cret", hub.ws_url());
        let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
        assert_eq!(c.closed().await, Some(4401), "no token");
        let mut c = Client::connect(&format!("{url}&topicz=a")).await;
        assert_eq!(c.closed().await, Some(4400), "bad query");
        let mut c = connect_when_free(&url).await;
        let mut second = Client::connect(&url).await;
        assert_eq!(second.closed().await, Some(4429), "past --max-connections");
        c.send_raw(Message::binary(vec![1, 2, 3])).await;
        assert_eq!(c.closed().await, Some(1003), "binary frame");
        let mut c = connect_when_free(&url).await;
        c.send_raw(Message::text("x".repeat(1024 + 4096 + 1))).await;
        assert_eq!(c.closed().await, Some(1009), "frame too big");
        // (--idle-timeout closes only peers that answer no pings: tungstenite does.)
        let mut c = connect_when_free(&url).await;
        common::signal(hub.pid(), "TERM");
        assert_eq!(c.closed().await, Some(1001), "shutdown");
    });
}

/// Connects once the hub has let the previous connection go (`--max-connections 1`).
async fn connect_when_free(url: &str) -> Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(url).await;
        c.send(serde_json::json!({"type":"ping"})).await;
        match c.next().await {
            common::ws::Got::Frame(f) if f["type"] == "pong" => return c,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("no free connection: {other:?}"),
        }
    }
}
