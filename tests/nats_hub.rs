//! `hub-serve --nats`: real hub-serve nodes over a real `nats-server -js` on loopback
//! free ports, driven as users drive them (HTTP, hub-sub): one id sequence on every
//! node, the same bytes, cross-node fan-out, dedup across nodes, `/tasks` and
//! durable cursors shared, a fresh node serving the whole history, `kill -9` of a
//! node and of the nats-server, a missing server at start, and the refused flags.
//!
//! Skipped when `nats-server` is not installed, except under CI (see common/nats.rs).
#![cfg(feature = "nats")]

mod common;

use common::nats::{NatsServer, free_port};
use common::{Hub, bin, http, wait_until};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn node(url: &str) -> Hub {
    Hub::start(&["--nats", url])
}

fn event(topic: &str, n: u64) -> Value {
    json!({"topic": topic, "type": "log", "data": {"n": n}})
}

/// `GET /events?since=…` of a node: its body as text (the bytes a poller sees).
fn events_text(hub: &Hub, since: u64) -> String {
    let mut r = http()
        .get(&format!(
            "{}/events?since={since}&limit=10000",
            hub.http_url()
        ))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.body_mut().read_to_string().unwrap()
}

fn ids_in(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn nodes_share_one_sequence_the_same_bytes_keys_tasks_and_cursors() {
    let Some(nats) = NatsServer::start("nats_hub") else {
        return;
    };
    let a = node(&nats.url());
    let b = node(&nats.url());
    let s = b.status();
    assert_eq!(s["backend"]["kind"], "nats", "{s}");
    assert_eq!(s["backend"]["stream"], "HUB", "{s}");

    // One sequence, whichever node takes the publish.
    let mut ids = a.publish_events(&[event("x", 1), event("x", 2)]);
    ids.extend(b.publish_events(&[event("y", 3)]));
    ids.extend(a.publish_events(&[event("x", 4)]));
    assert_eq!(ids, [1, 2, 3, 4]);

    // The acknowledging node serves its own event at once, and the other node gets
    // it live (a long poll waiting on B for what A takes).
    let poll = {
        let url = format!("{}/events?since=4&wait=20s", b.http_url());
        std::thread::spawn(move || {
            let mut r = http().get(&url).call().unwrap();
            r.body_mut().read_to_string().unwrap()
        })
    };
    // (Published while the poll waits or just before it: either way it gets id 5.)
    assert_eq!(a.publish_events(&[event("live", 5)]), [5]);
    let got = poll.join().unwrap();
    assert_eq!(ids_in(&got), [5], "{got}");

    // A key published on both nodes gets one id.
    let keyed = json!({"topic": "k", "type": "log", "key": "deploy-7", "data": {}});
    let first = a.publish_events(std::slice::from_ref(&keyed));
    let again = b.publish_events(std::slice::from_ref(&keyed));
    assert_eq!(first, again);
    assert_eq!(first, [6]);

    // /tasks agrees.
    let started = json!({"topic": "task:build", "type": "task_started", "data": {}});
    assert_eq!(a.publish_events(&[started]), [7]);
    for hub in [&a, &b] {
        let mut r = http()
            .get(&format!("{}/tasks", hub.http_url()))
            .call()
            .unwrap();
        let t: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(t["tasks"][0]["topic"], "task:build", "{t}");
        assert_eq!(t["last_id"], 7, "{t}");
    }

    // The same bytes on every node, and on a fresh node started now.
    let c = node(&nats.url());
    let on_a = events_text(&a, 0);
    assert_eq!(ids_in(&on_a), (1..=7).collect::<Vec<_>>());
    assert_eq!(events_text(&b, 0), on_a);
    assert_eq!(events_text(&c, 0), on_a);
    assert_eq!(c.status()["last_id"], 7);

    // A durable cursor moves between nodes.
    let sub = |hub: &Hub, n: &str| {
        let out = bin("hub-sub")
            .args(["--url", &hub.ws_url(), "--durable", "d1", "--count", n])
            .args(["--timeout", "20s"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<u64>>()
    };
    // A new durable cursor starts at the newest id: take the next two.
    let publisher = {
        let url = a.http_url();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut n = 100;
            // Keep publishing until both subscribers are done (bounded).
            while Instant::now() < deadline && n < 400 {
                common::post_publish(&url, None, &event("d", n).to_string());
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let on_a = sub(&a, "2");
    let on_b = sub(&b, "2");
    assert_eq!(on_a.len(), 2);
    assert_eq!(
        on_b[0],
        on_a[1] + 1,
        "B resumes after A's last: {on_a:?} {on_b:?}"
    );
    publisher.join().unwrap();
}

#[test]
fn kill_9_of_a_node_or_the_nats_server_loses_nothing_acknowledged() {
    let Some(mut nats) = NatsServer::start("nats_hub") else {
        return;
    };
    let mut a = node(&nats.url());
    let b = node(&nats.url());
    let batch: Vec<Value> = (0..200).map(|n| event("a", n)).collect();
    let ids = a.publish_events(&batch);
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    a.kill9();
    wait_until(
        "B has every event A acknowledged",
        Duration::from_secs(10),
        || b.status()["last_id"] == 200,
    );
    assert_eq!(ids_in(&events_text(&b, 0)), ids);

    // The NATS server dies: publishes are refused with 503 naming it; reads go on.
    nats.kill9();
    let mut r = http()
        .post(&format!("{}/publish", b.http_url()))
        .send(event("down", 0).to_string())
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 503, "{body}");
    assert!(body.contains(&nats.url().replace("nats://", "")), "{body}");
    // Over WebSocket: close 4500, its reason naming the server; the client retries.
    let ws_url = format!("{}/ws", b.ws_url());
    let (code, reason) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = common::ws::Client::connect(&ws_url).await;
        c.send(json!({"type": "publish", "req": 1, "event": event("down-ws", 0)}))
            .await;
        c.close_frame(Duration::from_secs(30)).await
    });
    assert_eq!(code, Some(4500), "{reason}");
    assert!(
        reason.contains(&nats.url().replace("nats://", "")),
        "{reason}"
    );
    assert_eq!(ids_in(&events_text(&b, 190)).len(), 10);

    // Back: the node recovers by itself, nothing acknowledged is lost, ids go on.
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let mut r = http()
            .post(&format!("{}/publish", b.http_url()))
            .send(json!({"topic": "up", "type": "log", "key": "up-1", "data": {}}).to_string())
            .unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        if r.status() == 200 {
            break serde_json::from_str::<Value>(&body).unwrap()["ids"][0]
                .as_u64()
                .unwrap();
        }
        assert!(Instant::now() < deadline, "no recovery within 30 s: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The refused publishes may still land once the server is back (its client
    // had them queued; the 503 says so): then they are 201 and 202, and "up" 203.
    assert!((201..=203).contains(&id), "{id}");
    let all = ids_in(&events_text(&b, 0));
    assert_eq!(all, (1..=id).collect::<Vec<_>>());
    assert!(body_has_key_once(&events_text(&b, 0), "up-1"));
}

fn body_has_key_once(text: &str, key: &str) -> bool {
    text.lines()
        .filter(|l| l.contains(&format!("\"key\":\"{key}\"")))
        .count()
        == 1
}

#[test]
fn no_nats_server_exits_1_naming_the_url_and_fsync_is_refused() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = bin("hub-serve")
        .args(["--listen", "127.0.0.1:0", "--nats", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(40));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains("listening"), "{err}");

    let out = bin("hub-serve")
        .args(["--nats", &url, "--fsync", "always"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nats-replicas"), "{err}");

    let out = bin("hub-serve")
        .args(["--nats", &url, "--memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A 3-server cluster with `--nats-replicas 3` loses one server (the stream's
/// leader) in the middle of a stream of publishes: every acknowledged event is
/// there once on both nodes, and publishing resumes after the election.
#[test]
fn an_r3_cluster_loses_a_server_mid_stream_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut servers) = NatsServer::cluster("nats_hub_r3", 3, tmp.path()) else {
        return;
    };
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let list = urls.join(",");
    let reversed: Vec<String> = urls.iter().rev().cloned().collect();
    let a = Hub::start(&["--nats", &list, "--nats-replicas", "3"]);
    let b = Hub::start(&["--nats", &reversed.join(","), "--nats-replicas", "3"]);
    let total = 300u64;
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let publisher = {
        let url = a.http_url();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut retried = 0;
            for n in 0..total {
                let body = json!({"topic": "r3", "type": "log", "key": format!("r3-{n}"), "data": {"n": n}});
                // As a client rides out an election: the same key until it is taken.
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "event {n} not taken within 120 s"
                    );
                    let r = http()
                        .post(&format!("{url}/publish"))
                        .send(body.to_string());
                    match r {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_string();
                            break;
                        }
                        Ok(mut r) => {
                            let text = r.body_mut().read_to_string().unwrap_or_default();
                            assert_eq!(r.status(), 503, "{text}");
                            retried += 1;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(_) => {
                            retried += 1;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                let _ = tx.send(n);
            }
            retried
        })
    };
    // A third of the way in, the server node A talks to dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.recv_timeout(Duration::from_secs(60)).unwrap() < total / 3 {
        assert!(Instant::now() < deadline);
    }
    // The server leading the stream (as node A's /status names it) dies: the worst
    // case, an election before anything more is stored.
    let leader = a.status()["backend"]["leader"]
        .as_str()
        .expect("/status names the stream's leader")
        .to_string();
    let i: usize = leader
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("leader {leader:?} is not one of n0..n2"));
    let killed = Instant::now();
    servers[i].kill9();
    let retried = publisher.join().unwrap();
    eprintln!(
        "killed the leader {leader} at {}/{total}; the rest took {:?}, {retried} retries",
        total / 3,
        killed.elapsed()
    );
    wait_until("B has every event", Duration::from_secs(30), || {
        b.status()["events"] == total
    });
    for hub in [&a, &b] {
        let text = events_text(hub, 0);
        let ids = ids_in(&text);
        assert_eq!(
            ids,
            (1..=total).collect::<Vec<_>>(),
            "one sequence, no hole"
        );
        let mut ns: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["data"]["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        ns.sort();
        assert_eq!(ns, (0..total).collect::<Vec<_>>(), "each event once");
    }
}

/// `kill -9` of the node clients talk to, mid-stream: `hub-sub --url A,B` and
/// `hub-emit --lines --url A,B` move to B and resume by id; every line is stored
/// once and the subscriber prints every id once, in order.
#[test]
fn clients_fail_over_when_their_node_is_killed() {
    use std::io::{BufRead, BufReader, Write};
    let Some(nats) = NatsServer::start("nats_hub") else {
        return;
    };
    let mut a = node(&nats.url());
    let b = node(&nats.url());
    let list = format!("{},{}", a.ws_url(), b.ws_url());
    let total = 300usize;
    let mut sub = bin("hub-sub")
        .args([
            "--url",
            &list,
            "fo",
            "--since",
            "0",
            "--count",
            &total.to_string(),
        ])
        .args(["--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let reader = {
        let out = sub.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let _ = tx.send(v["id"].as_u64().unwrap());
            }
        })
    };
    let mut emit = bin("hub-emit")
        .args(["--url", &list, "fo", "--lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = emit.stdin.take().unwrap();
    let mut seen = Vec::new();
    let recv = |seen: &mut Vec<u64>, upto: usize| {
        while seen.len() < upto {
            seen.push(
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| panic!("hub-sub printed {} of {upto}", seen.len())),
            );
        }
    };
    for n in 0..total / 3 {
        writeln!(stdin, "line {n}").unwrap();
    }
    stdin.flush().unwrap();
    recv(&mut seen, total / 3);
    a.kill9();
    for n in total / 3..total {
        writeln!(stdin, "line {n}").unwrap();
    }
    drop(stdin);
    let st = common::wait_child(&mut emit, Duration::from_secs(60)).expect("hub-emit ends");
    assert!(st.success(), "hub-emit: {st}");
    recv(&mut seen, total);
    assert_eq!(
        seen,
        (1..=total as u64).collect::<Vec<_>>(),
        "every id once, in order"
    );
    let st = common::wait_child(&mut sub, Duration::from_secs(30)).expect("hub-sub ends");
    assert!(st.success(), "hub-sub: {st}");
    reader.join().unwrap();
    // Stored once each, on the node that is left.
    let text = events_text(&b, 0);
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]["line"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    lines.sort();
    let mut want: Vec<String> = (0..total).map(|n| format!("line {n}")).collect();
    want.sort();
    assert_eq!(lines, want);
}
