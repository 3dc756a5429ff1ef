//! The HTTP side of hub-serve, driven with a real HTTP client: publish, poll,
//! tasks, health, status, metrics, and the access checks.

mod common;

use common::{Hub, http};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn post(hub: &Hub, body: &str) -> (u16, Value) {
    let mut r = http()
        .post(&format!("{}/publish", hub.http_url()))
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn get(hub: &Hub, path: &str) -> (u16, String) {
    let mut r = http()
        .get(&format!("{}{path}", hub.http_url()))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn publish_one_or_many_then_poll() {
    let hub = Hub::start(&[]);
    let (s, v) = post(
        &hub,
        r#"{"topic":"task:build-42","type":"progress","data":{"percent":50}}"#,
    );
    assert_eq!((s, v), (200, json!({"ids":[1]})));
    let (s, v) = post(
        &hub,
        "{\"topic\":\"log:a\",\"data\":1}\n\n{\"topic\":\"log:b\",\"source\":\"me\"}\n",
    );
    assert_eq!((s, v), (200, json!({"ids":[2,3]})));
    let (s, body) = get(&hub, "/events?since=0");
    assert_eq!(s, 200);
    let evs = lines(&body);
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0]["type"], "progress");
    assert_eq!(evs[1]["type"], "message", "default type");
    assert_eq!(evs[2]["source"], "me");
    let ts = evs[0]["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == 24,
        "RFC 3339 UTC with ms: {ts}"
    );
    let (_, body) = get(&hub, "/events?topic=log:*&since=2");
    assert_eq!(
        lines(&body)
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3]
    );
    let (_, body) = get(&hub, "/events?where=data.percent%3D50.0&since=0");
    assert_eq!(lines(&body).len(), 1);
    let (_, body) = get(&hub, "/events?since=0&limit=2");
    assert_eq!(lines(&body).len(), 2);
    // Pretty-printed data is stored compact: one event, one line.
    let (s, _) = post(
        &hub,
        "{\n  \"topic\": \"pretty\",\n  \"data\": {\n    \"a\": [1, 2],\n    \"s\": \"keep  this\"\n  }\n}\n",
    );
    assert_eq!(s, 200);
    let (_, body) = get(&hub, "/events?topic=pretty");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(
        body.contains(r#""data":{"a":[1,2],"s":"keep  this"}}"#),
        "{body}"
    );
}

#[test]
fn a_body_with_one_bad_event_stores_nothing() {
    let hub = Hub::start(&[]);
    let (s, v) = post(
        &hub,
        "{\"topic\":\"a\"}\n{\"topic\":\"has space\"}\n{\"topic\":\"c\"}\n",
    );
    assert_eq!(s, 400);
    assert_eq!(v["code"], "bad_request");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("line 2:") && msg.contains("topic"), "{msg}");
    for bad in [
        "not json",
        "[1,2]",
        "",
        "{\"type\":\"x\"}",
        "{\"topic\":\"a\",\"type\":\"Bad\"}",
        "{\"topic\":\"a\",\"dat\":1}",
        "{\"topic\":\"task:a\",\"type\":\"progress\",\"data\":{\"percent\":1e999}}",
    ] {
        let (s, v) = post(&hub, bad);
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    let (_, body) = get(&hub, "/status");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["events"], 0);
    assert_eq!(st["last_id"], 0);
    // The hub is still whole: a good event goes through.
    assert_eq!(
        post(
            &hub,
            r#"{"topic":"task:a","type":"progress","data":{"percent":5}}"#
        )
        .0,
        200
    );
}

#[test]
fn size_limits() {
    let hub = Hub::start(&["--max-event-bytes", "1KiB"]);
    let big = json!({"topic":"a","data":"x".repeat(2000)}).to_string();
    let (s, v) = post(&hub, &big);
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "too_large");
    // In JSON lines, the first line refused is the one named: too large before
    // invalid, or invalid before too large.
    let ok = json!({"topic":"a"}).to_string();
    let (s, v) = post(&hub, &format!("{ok}\n{big}\nnot json\n"));
    let msg = v["message"].as_str().unwrap();
    assert_eq!((s, msg.starts_with("line 2:")), (413, true), "{v}");
    let (s, v) = post(&hub, &format!("{ok}\nnot json\n{big}\n"));
    let msg = v["message"].as_str().unwrap();
    assert_eq!((s, msg.starts_with("line 2:")), (400, true), "{v}");
    // A body over 16 MiB is refused whole.
    let line = json!({"topic":"a","data":"y".repeat(900)}).to_string() + "\n";
    let body = line.repeat((17 << 20) / line.len());
    // The hub answers 413 as soon as the limit is passed and closes the
    // connection; a client still sending may see the close before the answer.
    match http()
        .post(&format!("{}/publish", hub.http_url()))
        .send(&body)
    {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(
            e.to_string().contains("roken pipe") || e.to_string().contains("reset"),
            "{e}"
        ),
    }
    let (_, body) = get(&hub, "/status");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["events"], 0);
    let (s, v) = post(&hub, &line);
    assert_eq!((s, v), (200, json!({"ids":[1]})));
}

#[test]
fn long_poll_returns_when_an_event_arrives() {
    let hub = Hub::start(&[]);
    let url = hub.http_url();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let mut r = http()
            .get(&format!("{url}/events?topic=late&since=0&wait=20s"))
            .call()
            .unwrap();
        (start.elapsed(), r.body_mut().read_to_string().unwrap())
    });
    // The poll is waiting; an unrelated event does not end it, a matching one does.
    std::thread::sleep(Duration::from_millis(300));
    post(&hub, r#"{"topic":"other"}"#);
    post(&hub, r#"{"topic":"late","data":"here"}"#);
    let (took, body) = t.join().unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(lines(&body)[0]["data"], "here");
    // Nothing arrives: the wait expires with an empty answer.
    let start = Instant::now();
    let (s, body) = get(&hub, "/events?since=2&wait=300ms");
    assert_eq!((s, body.as_str()), (200, ""));
    assert!(start.elapsed() >= Duration::from_millis(290));
}

#[test]
fn tasks_fold_the_lifecycle() {
    let hub = Hub::start(&[]);
    post(&hub, r#"{"topic":"task:build","type":"task_started"}"#);
    post(
        &hub,
        r#"{"topic":"task:build","type":"progress","data":{"percent":40,"message":"compiling"}}"#,
    );
    post(&hub, r#"{"topic":"task:deploy","type":"task_started"}"#);
    post(
        &hub,
        r#"{"topic":"task:deploy","type":"task_failed","data":{"error":"no space","exit_code":3,"duration_seconds":1.5}}"#,
    );
    let (_, body) = get(&hub, "/tasks");
    let v: Value = serde_json::from_str(&body).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let build = tasks.iter().find(|t| t["topic"] == "task:build").unwrap();
    assert_eq!(build["status"], "running");
    assert_eq!(build["percent"], 40.0);
    assert_eq!(build["message"], "compiling");
    let deploy = tasks.iter().find(|t| t["topic"] == "task:deploy").unwrap();
    assert_eq!(deploy["status"], "failed");
    assert_eq!(deploy["exit_code"], 3);
    assert_eq!(deploy["error"], "no space");
    assert_eq!(deploy["duration_seconds"], 1.5);
    assert_eq!(deploy["last_id"], 4);
    for k in ["started_at", "updated_at", "ended_at"] {
        assert!(deploy[k].is_string(), "{k}");
    }
}

#[test]
fn health_status_metrics() {
    let hub = Hub::start(&[]);
    assert_eq!(get(&hub, "/health"), (200, "ok\n".to_string()));
    post(&hub, r#"{"topic":"a","key":"k1"}"#);
    post(&hub, r#"{"topic":"a","key":"k1"}"#);
    let (_, body) = get(&hub, "/status");
    let st: Value = serde_json::from_str(&body).unwrap();
    for k in [
        "version",
        "uptime_seconds",
        "connections",
        "subscriptions",
        "events",
        "first_id",
        "last_id",
        "log_bytes",
        "lagged_total",
        "gaps_total",
        "dedup_total",
    ] {
        assert!(!st[k].is_null(), "/status lacks {k}: {st}");
    }
    assert_eq!(st["events"], 1);
    assert_eq!(st["dedup_total"], 1);
    let (s, m) = get(&hub, "/metrics");
    assert_eq!(s, 200);
    assert!(
        m.contains("\nhub_last_id 1\n") && m.contains("# TYPE hub_dedup_total counter"),
        "{m}"
    );
    let (s, body) = get(&hub, "/nowhere");
    assert_eq!(s, 404);
    assert!(body.contains("/publish"));
}

#[test]
fn token_is_required_everywhere_but_health() {
    let hub = Hub::start(&["--token", "s3cret"]);
    assert_eq!(get(&hub, "/health").0, 200);
    let (s, body) = get(&hub, "/status");
    assert_eq!(s, 401);
    assert!(!body.contains("s3cret"));
    let (s, _) = get(&hub, "/status?token=wrong");
    assert_eq!(s, 401);
    assert_eq!(get(&hub, "/status?token=s3cret").0, 200);
    let r = http()
        .post(&format!("{}/publish", hub.http_url()))
        .header("Authorization", "Bearer s3cret")
        .send(r#"{"topic":"a"}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(post(&hub, r#"{"topic":"a"}"#).0, 401);
    assert!(!hub.stderr_text().contains("s3cret"));
}

#[test]
fn token_file_keeps_it_out_of_argv() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "from-file\n").unwrap();
    let hub = Hub::start(&["--token-file", f.to_str().unwrap()]);
    assert_eq!(get(&hub, "/status").0, 401);
    assert_eq!(get(&hub, "/status?token=from-file").0, 200);
}

#[test]
fn foreign_host_and_origin_are_refused() {
    let hub = Hub::start(&["--allow-origin", "https://dash.example"]);
    let r = http()
        .get(&format!("{}/status", hub.http_url()))
        .header("Host", "evil.example:7357")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http()
        .post(&format!("{}/publish", hub.http_url()))
        .header("Origin", "http://evil.example")
        .send(r#"{"topic":"a"}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let own = format!("http://{}", hub.addr);
    for ok in [own.as_str(), "https://dash.example"] {
        let r = http()
            .post(&format!("{}/publish", hub.http_url()))
            .header("Origin", ok)
            .send(r#"{"topic":"a"}"#)
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{ok}");
    }
    let r = http()
        .get(&format!("{}/status", hub.http_url()))
        .header("Host", "localhost")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn bad_queries_are_400() {
    let hub = Hub::start(&[]);
    for q in [
        "/events?since=abc",
        "/events?where=nofield",
        "/events?topicz=a",
        "/events?topic=[",
        "/events?wait=soon",
    ] {
        let (s, body) = get(&hub, q);
        assert_eq!(s, 400, "{q}");
        assert!(body.contains("bad_request"), "{body}");
    }
}

#[test]
fn token_file_wins_over_hub_token_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "file-token\n").unwrap();
    // A systemd drop-in may set HUB_TOKEN; --token-file must still start the hub.
    let mut cmd = common::bin("hub-serve");
    cmd.env("HUB_TOKEN", "env-token")
        .args(["--listen", "127.0.0.1:0", "--memory", "--token-file"])
        .arg(&f)
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .strip_prefix("hub-serve: listening on ws://")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // The pipe to our end of stderr is closed now: the hub must keep serving.
    let status = |tok: &str| {
        http()
            .get(&format!("http://{addr}/status?token={tok}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("file-token"), 200);
    assert_eq!(status("env-token"), 401);
    let _ = child.kill();
    let _ = child.wait();
}
