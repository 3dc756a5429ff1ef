//! `hub-emit` against a real `hub-serve`: one-shot events, `--lines` / `--events`
//! pipelines, `--run` (success, failure, signal, hub down), and every exit code.

mod common;

use common::{Hub, bin};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Runs a command with `input` on stdin; returns (status, stdout, stderr). Bounded.
fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = common::wait_child(&mut child, limit).expect("command did not finish in time");
    writer.join().unwrap();
    (status, out_t.join().unwrap(), err_t.join().unwrap())
}

fn emit(hub: &Hub, args: &[&str]) -> (ExitStatus, String, String) {
    let mut c = bin("hub-emit");
    c.arg("--url").arg(hub.ws_url()).args(args);
    run(&mut c, b"", Duration::from_secs(20))
}

/// Every stored event matching `query` (GET /events).
fn events(hub: &Hub, query: &str) -> Vec<Value> {
    let url = format!("{}/events?since=0&limit=100000&{query}", hub.http_url());
    let mut resp = common::http().get(&url).call().unwrap();
    assert_eq!(resp.status(), 200);
    resp.body_mut()
        .read_to_string()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_shot_event_is_acknowledged_and_stored() {
    let hub = Hub::start(&[]);
    let (st, out, err) = emit(
        &hub,
        &[
            "task:build-42",
            "progress",
            "percent:=50",
            "message=compiling",
            "--source",
            "ci-3",
            "--print-id",
        ],
    );
    assert!(st.success(), "{err}");
    assert_eq!(err, "", "silent on success");
    let id: u64 = out.trim().parse().unwrap();
    let stored = events(&hub, "topic=task:build-42");
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    assert_eq!(e["id"], id);
    assert_eq!(e["type"], "progress");
    assert_eq!(e["source"], "ci-3");
    assert_eq!(e["data"], json!({"percent": 50, "message": "compiling"}));
    assert!(e["key"].as_str().is_some_and(|k| !k.is_empty()), "{e}");

    // Default type and source; --data merged with fields; http:// URL spelling.
    let mut c = bin("hub-emit");
    c.args([
        "--url",
        &hub.http_url(),
        "deploy:web",
        "--data",
        r#"{"v":"1.4"}"#,
        "ok:=true",
    ]);
    let (st, _, err) = run(&mut c, b"", Duration::from_secs(20));
    assert!(st.success(), "{err}");
    let e = &events(&hub, "topic=deploy:web")[0];
    assert_eq!(e["type"], "message");
    assert!(e["source"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(e["data"], json!({"v": "1.4", "ok": true}));
}

#[test]
fn same_key_is_stored_once() {
    let hub = Hub::start(&[]);
    let (a, out1, _) = emit(&hub, &["cron:x", "--key", "run-2026-11-21", "--print-id"]);
    let (b, out2, _) = emit(&hub, &["cron:x", "--key", "run-2026-11-21", "--print-id"]);
    assert!(a.success() && b.success());
    assert_eq!(out1, out2, "a retry is acknowledged with the original id");
    assert_eq!(events(&hub, "topic=cron:x").len(), 1);
}

#[test]
fn lines_pipeline_10000_complete_and_in_order() {
    let hub = Hub::start(&[]);
    let mut input = String::new();
    for i in 0..10_000 {
        if i % 3 == 0 {
            input.push_str(&format!("{{\"n\":{i}}}\n"));
        } else {
            input.push_str(&format!("line {i}\n"));
        }
    }
    let mut c = bin("hub-emit");
    c.args([
        "--url",
        &hub.ws_url(),
        "log:bulk",
        "log",
        "--lines",
        "--print-id",
        "-v",
    ]);
    let (st, out, err) = run(&mut c, input.as_bytes(), Duration::from_secs(60));
    assert!(st.success(), "{err}");
    assert!(err.contains("published 10000 event(s)"), "{err}");
    let ids: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order");
    let stored = events(&hub, "topic=log:bulk");
    assert_eq!(stored.len(), 10_000);
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e["id"], ids[i]);
        assert_eq!(e["type"], "log");
        if i % 3 == 0 {
            assert_eq!(e["data"], json!({"n": i}));
        } else {
            assert_eq!(e["data"], json!({"line": format!("line {i}")}));
        }
    }
}

#[test]
fn malformed_lines_are_reported_with_their_numbers() {
    let hub = Hub::start(&[]);
    let mut c = bin("hub-emit");
    c.args(["--url", &hub.ws_url(), "log:m", "--lines"]);
    let (st, _, err) = run(
        &mut c,
        b"ok 1\n{\"a\": oops}\nok 3\n",
        Duration::from_secs(20),
    );
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("stdin line 2"), "{err}");
    assert!(err.contains("2 published"), "{err}");
    let lines: Vec<Value> = events(&hub, "topic=log:m")
        .into_iter()
        .map(|e| e["data"]["line"].clone())
        .collect();
    assert_eq!(lines, vec![json!("ok 1"), json!("ok 3")]);

    let mut c = bin("hub-emit");
    c.args(["--url", &hub.ws_url(), "--events", "--print-id"]);
    let input = b"{\"topic\":\"a:1\",\"type\":\"x\",\"data\":{\"k\":1}}\n\n{\"topic\":\"bad topic\"}\n{\"topic\":\"a:2\",\"dat\":1}\n{\"topic\":\"a:3\"}\n";
    let (st, out, err) = run(&mut c, input, Duration::from_secs(20));
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("stdin line 3") && err.contains("invalid topic"),
        "{err}"
    );
    assert!(err.contains("stdin line 4") && err.contains("dat"), "{err}");
    assert_eq!(out.lines().count(), 2);
    let stored = events(&hub, "topic=a:*");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0]["type"].clone(), stored[0]["data"]["k"].clone()),
        (json!("x"), json!(1))
    );
    assert_eq!(stored[1]["topic"], "a:3");
}

/// A line the hub refuses (too large) is reported with its number and exit 4; the
/// lines around it are stored, and their ids printed in line order.
#[test]
fn refused_lines_are_reported_and_the_rest_published() {
    let hub = Hub::start(&["--max-event-bytes", "1024"]);
    let mut input = String::new();
    for i in 1..=300 {
        match i {
            3 | 250 => input.push_str(&format!("{{\"blob\":\"{}\"}}\n", "x".repeat(2000))),
            _ => input.push_str(&format!("{{\"n\":{i}}}\n")),
        }
    }
    let mut c = bin("hub-emit");
    c.args(["--url", &hub.ws_url(), "log:r", "--lines", "--print-id"]);
    let (st, out, err) = run(&mut c, input.as_bytes(), Duration::from_secs(20));
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(err.contains("stdin line 3: refused by the hub"), "{err}");
    assert!(err.contains("stdin line 250: refused by the hub"), "{err}");
    assert!(err.contains("298 published"), "{err}");
    let ids: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
    let stored = events(&hub, "topic=log:r&limit=1000");
    let stored_ids: Vec<u64> = stored.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, stored_ids);
    let ns: Vec<u64> = stored
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=300).filter(|i| *i != 3 && *i != 250).collect();
    assert_eq!(ns, want);
}

#[test]
fn run_reports_success_failure_and_signal() {
    let hub = Hub::start(&[]);
    // Success: output passes through untouched; progress and log events.
    let (st, out, err) = emit(
        &hub,
        &[
            "task:ok",
            "--run",
            "--capture",
            "--progress-regex",
            "--",
            "sh",
            "-c",
            "echo 'step 40% done'; echo to-stderr >&2; printf 'no newline'",
        ],
    );
    assert_eq!(st.code(), Some(0), "{err}");
    assert_eq!(out, "step 40% done\nno newline");
    assert_eq!(err, "to-stderr\n");
    let evs = events(&hub, "topic=task:ok");
    let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"task_started"));
    assert_eq!(kinds.last(), Some(&"task_completed"));
    assert!(
        evs.iter()
            .any(|e| e["type"] == "progress" && e["data"]["percent"] == 40)
    );
    let logs: Vec<&Value> = evs.iter().filter(|e| e["type"] == "log").collect();
    assert_eq!(logs.len(), 3, "{evs:?}");
    let last = evs.last().unwrap();
    assert_eq!(last["data"]["exit_code"], 0);
    assert!(last["data"]["duration_seconds"].is_number());

    // Failure: the command's own exit code.
    let (st, _, _) = emit(&hub, &["task:bad", "--run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(st.code(), Some(7));
    let last = events(&hub, "topic=task:bad").pop().unwrap();
    assert_eq!(last["type"], "task_failed");
    assert_eq!(last["data"]["exit_code"], 7);
    assert!(last["data"]["error"].as_str().unwrap().contains("code 7"));

    // Killed by a signal: reported, exit 128+N.
    let (st, _, _) = emit(&hub, &["task:sig", "--run", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(st.code(), Some(137));
    let last = events(&hub, "topic=task:sig").pop().unwrap();
    assert_eq!(last["type"], "task_failed");
    assert_eq!(last["data"]["signal"], 9);
    assert!(last["data"]["error"].as_str().unwrap().contains("SIGKILL"));

    // A command that cannot start: 127, reported.
    let (st, _, err) = emit(&hub, &["task:nx", "--run", "--", "/nonexistent/cmd"]);
    assert_eq!(st.code(), Some(127));
    assert!(err.contains("cannot run /nonexistent/cmd"), "{err}");
    assert_eq!(events(&hub, "topic=task:nx")[0]["type"], "task_failed");
}

#[test]
fn run_without_hub_still_runs_the_command() {
    let hub = Hub::start(&[]);
    let url = hub.ws_url();
    drop(hub);
    let mut c = bin("hub-emit");
    c.args([
        "--url",
        &url,
        "--timeout",
        "300ms",
        "task:x",
        "--run",
        "--",
        "sh",
        "-c",
        "echo ran; exit 5",
    ]);
    let (st, out, err) = run(&mut c, b"", Duration::from_secs(20));
    assert_eq!(st.code(), Some(5));
    assert_eq!(out, "ran\n");
    assert!(
        err.contains("could not report") && err.contains("task_started"),
        "{err}"
    );
    assert!(err.contains(&url), "{err}");
}

#[test]
fn exit_codes() {
    // 3: unreachable within --timeout, naming the URL and the cause.
    let hub = Hub::start(&[]);
    let url = hub.ws_url();
    drop(hub);
    let mut c = bin("hub-emit");
    c.args(["--url", &url, "--timeout", "700ms", "t"]);
    let started = std::time::Instant::now();
    let (st, _, err) = run(&mut c, b"", Duration::from_secs(20));
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "it retried"
    );
    assert!(
        err.contains(&url) && err.to_lowercase().contains("refused"),
        "{err}"
    );

    // 4: refused by the hub (auth), with the reason; 0 with the token.
    let hub = Hub::start(&["--token", "s3cret"]);
    let (st, _, err) = emit(&hub, &["t"]);
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(err.contains("unauthorized") || err.contains("401"), "{err}");
    assert!(!err.contains("s3cret"));
    let (st, _, err) = emit(&hub, &["t", "--token", "s3cret"]);
    assert!(st.success(), "{err}");
    let mut c = bin("hub-emit");
    c.env("HUB_URL", hub.ws_url())
        .env("HUB_TOKEN", "s3cret")
        .arg("t");
    assert!(run(&mut c, b"", Duration::from_secs(20)).0.success(), "env");
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "s3cret\n").unwrap();
    let (st, _, err) = emit(&hub, &["t", "--token-file", tf.to_str().unwrap()]);
    assert!(st.success(), "{err}");

    // 4: an event too large for the hub.
    let hub = Hub::start(&["--max-event-bytes", "1024"]);
    let big = format!("blob={}", "x".repeat(4000));
    let (st, _, err) = emit(&hub, &["t", &big]);
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(
        err.to_lowercase().contains("large") || err.contains("1024"),
        "{err}"
    );

    // 2: usage and bad input, each saying what is accepted.
    for (args, needle) in [
        (vec!["bad topic"], "A-Z a-z"),
        (vec!["t", "Bad"], "a-z 0-9"),
        (vec!["t", "n:=nope"], "KEY=VALUE"),
        (vec!["t", "--timeout", "soon"], "500ms"),
        (vec!["t", "--run"], "after `--`"),
        (vec!["--url=ftp://x", "t"], "ws://"),
    ] {
        let mut c = bin("hub-emit");
        if !args[0].starts_with("--url") {
            c.arg("--url").arg(hub.ws_url());
        }
        let (st, _, err) = run(c.args(&args), b"", Duration::from_secs(20));
        assert_eq!(st.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let mut c = bin("hub-emit");
    let (st, out, _) = run(c.arg("--help"), b"", Duration::from_secs(10));
    assert!(st.success() && out.contains("Examples:") && out.contains("--lines"));
}

#[test]
fn lines_survive_a_hub_restart_without_duplicates() {
    let mut hub = Hub::start(&[]);
    let mut child = bin("hub-emit")
        .args([
            "--url",
            &hub.ws_url(),
            "--timeout",
            "30s",
            "log:r",
            "--lines",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..500 {
        writeln!(stdin, "a{i}").unwrap();
    }
    stdin.flush().unwrap();
    common::wait_until(
        "the first lines to be stored",
        Duration::from_secs(20),
        || events(&hub, "topic=log:r&limit=1").len() == 1,
    );
    hub.kill9();
    for i in 0..500 {
        writeln!(stdin, "b{i}").unwrap();
    }
    stdin.flush().unwrap();
    hub.restart();
    for i in 0..500 {
        writeln!(stdin, "c{i}").unwrap();
    }
    drop(stdin);
    let st = common::wait_child(&mut child, Duration::from_secs(40)).expect("hub-emit finished");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(st.success(), "{err}");
    let got: Vec<String> = events(&hub, "topic=log:r")
        .iter()
        .map(|e| e["data"]["line"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|p| (0..500).map(move |i| format!("{p}{i}")))
        .collect();
    assert_eq!(got.len(), want.len(), "nothing lost or doubled");
    assert_eq!(got, want);
}

/// A one-shot event goes out as one `POST /publish`; while the hub is down,
/// hub-emit retries (same key) until it is back, and the event is stored once.
#[test]
fn one_shot_waits_for_a_hub_that_comes_back() {
    let mut hub = Hub::start(&[]);
    let url = hub.ws_url();
    hub.kill9();
    let mut child = bin("hub-emit")
        .args([
            "--url",
            &url,
            "--timeout",
            "30s",
            "-v",
            "--print-id",
            "late:t",
            "n:=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("hub-emit says it retries");
    assert!(first.contains("retrying"), "{first}");
    hub.restart();
    let st = common::wait_child(&mut child, Duration::from_secs(40)).expect("hub-emit finished");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(st.success(), "{out}");
    let stored = events(&hub, "topic=late:t");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"].to_string(), out.trim());
}

/// Behind a proxy that forwards only the WebSocket (POST /publish answers 404),
/// a one-shot event is published over the WebSocket instead.
#[test]
fn one_shot_falls_back_to_the_websocket() {
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    let hub = Hub::start(&[]);
    let hub_addr = hub.http_url().trim_start_matches("http://").to_string();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("ws://{}", proxy.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in proxy.incoming() {
            let Ok(mut client) = conn else { return };
            // The request head, byte by byte up to the blank line (the test's own
            // requests are small; only the request line is looked at).
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && client.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let line = text.lines().next().unwrap_or_default().to_string();
            log.lock().unwrap().push(line.clone());
            if !line.starts_with("GET /ws ") {
                let _ = client.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            let mut upstream = TcpStream::connect(&hub_addr).unwrap();
            upstream.write_all(&head).unwrap();
            let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut u2, &mut c2));
            std::thread::spawn(move || std::io::copy(&mut client, &mut upstream));
        }
    });
    let mut c = bin("hub-emit");
    c.args(["--url", &proxy_url, "--print-id", "proxied:t", "via=ws"]);
    let (st, out, err) = run(&mut c, b"", Duration::from_secs(20));
    assert!(st.success(), "{err}");
    let stored = events(&hub, "topic=proxied:t");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"].to_string(), out.trim());
    assert_eq!(stored[0]["data"], json!({"via": "ws"}));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("POST /publish "), "{seen:?}");
    assert!(seen[1].starts_with("GET /ws "), "{seen:?}");
}

/// The stored text of every event matching `query` (GET /events), one per line.
fn stored_lines(hub: &Hub, query: &str) -> Vec<String> {
    let url = format!("{}/events?since=0&limit=100000&{query}", hub.http_url());
    let mut resp = common::http().get(&url).call().unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.body_mut().read_to_string().unwrap();
    text.lines().map(str::to_string).collect()
}

/// `data` keeps the key order it was written in on every path: a raw `--lines`
/// object, one with KEY=VALUE fields merged in (appended in their order), a plain
/// line with fields, `--events`, and a one-shot event with --data and fields.
#[test]
fn data_keeps_its_key_order_on_every_path() {
    let hub = Hub::start(&[]);
    let lines = |args: &[&str], input: &[u8]| {
        let mut c = bin("hub-emit");
        c.arg("--url").arg(hub.ws_url()).args(args);
        let (st, _, err) = run(&mut c, input, Duration::from_secs(20));
        assert!(st.success(), "{err}");
    };
    lines(&["ko:raw", "--lines"], b"{\"z\":1,\"a\":2,\"m\":3}\n");
    lines(
        &["ko:fields", "--lines", "y=b", "b:=[1]"],
        b"{\"z\":1,\"a\":2,\"y\":0}\nplain\n",
    );
    lines(
        &["--events"],
        b"{\"topic\":\"ko:events\",\"data\":{\"z\":1,\"a\":{\"q\":1,\"b\":2}}}\n",
    );
    let (st, _, err) = emit(
        &hub,
        &["ko:one", "--data", r#"{"z":1,"a":2}"#, "m=x", "c=y"],
    );
    assert!(st.success(), "{err}");

    let data_of = |topic: &str| -> Vec<String> {
        stored_lines(&hub, &format!("topic={topic}"))
            .iter()
            .map(|l| {
                // The stored form ends with `"data":DATA}`.
                let at = l.rfind("\"data\":").expect(l) + 7;
                l[at..l.len() - 1].to_string()
            })
            .collect()
    };
    assert_eq!(data_of("ko:raw"), [r#"{"z":1,"a":2,"m":3}"#]);
    assert_eq!(
        data_of("ko:fields"),
        [
            r#"{"z":1,"a":2,"y":"b","b":[1]}"#,
            r#"{"line":"plain","y":"b","b":[1]}"#
        ]
    );
    assert_eq!(data_of("ko:events"), [r#"{"z":1,"a":{"q":1,"b":2}}"#]);
    assert_eq!(data_of("ko:one"), [r#"{"z":1,"a":2,"m":"x","c":"y"}"#]);
}
