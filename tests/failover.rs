//! Clients with a list of hubs (`--url A,B`) against real `hub-serve` processes:
//! a dead first hub is skipped by `hub-sub` and by both `hub-emit` paths (`POST
//! /publish` and the WebSocket publisher of `--lines`), and a `hub-sub` connected
//! to hub A moves to hub B when A is killed with `kill -9`.
//!
//! The hubs here are independent embedded hubs, each with its own log (and ids),
//! so these tests check the moving between hubs, not id continuity across them.

mod common;

use common::{Hub, bin, wait_until};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// A loopback URL nothing listens on: a port bound, read and released.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ws://127.0.0.1:{port}")
}

/// A running client whose stdout lines and stderr are collected as they come.
struct Proc {
    child: Child,
    readers: Vec<std::thread::JoinHandle<()>>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(c: &mut Command, input: &[u8]) -> Proc {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, e) = (out.clone(), err.clone());
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().unwrap().push(line);
            }
        });
        let r2 = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            child,
            readers: vec![w, r1, r2],
            out,
            err,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn ids(&self) -> Vec<u64> {
        self.lines()
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    fn wait(&mut self) -> ExitStatus {
        let st =
            common::wait_child(&mut self.child, LIMIT).expect("the client did not exit in time");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        st
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ev(topic: &str, n: u64) -> Value {
    json!({"topic": topic, "type": "m", "data": {"n": n}})
}

/// Every stored event of `topic` on `hub` (GET /events).
fn stored(hub: &Hub, topic: &str) -> Vec<Value> {
    let url = format!("{}/events?since=0&limit=1000&topic={topic}", hub.http_url());
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
fn hub_sub_skips_a_dead_first_hub() {
    let live = Hub::start(&[]);
    let dead = dead_url();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Proc::spawn(
        bin("hub-sub")
            .arg("--url")
            .arg(format!("{dead},{}", live.ws_url()))
            .args(["t:1", "--count", "2", "--ready-file"])
            .arg(&ready),
        b"",
    );
    wait_until("the ready file", LIMIT, || ready.exists());
    let ids = live.publish_events(&[ev("t:1", 1), ev("t:1", 2)]);
    assert!(s.wait().success(), "{}", s.err());
    assert_eq!(s.ids(), ids);
}

#[test]
fn hub_emit_skips_a_dead_first_hub_on_both_paths() {
    let live = Hub::start(&[]);
    let urls = format!("{},{}", dead_url(), live.ws_url());
    // One event: POST /publish.
    let mut one = Proc::spawn(
        bin("hub-emit").args(["--url", &urls, "once:1", "--data", r#"{"n":1}"#]),
        b"",
    );
    assert!(one.wait().success(), "{}", one.err());
    let got = stored(&live, "once:1");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"], json!({"n": 1}));
    // A pipeline: the WebSocket publisher.
    let mut lines = Proc::spawn(
        bin("hub-emit").args(["--url", &urls, "lines:1", "--lines"]),
        b"a\nb\nc\n",
    );
    assert!(lines.wait().success(), "{}", lines.err());
    assert_eq!(stored(&live, "lines:1").len(), 3);
}

#[test]
fn a_list_of_dead_hubs_is_named_whole() {
    let (a, b) = (dead_url(), dead_url());
    let mut e = Proc::spawn(
        bin("hub-emit").args(["--url", &format!("{a},{b}"), "--timeout", "1s", "t:1"]),
        b"",
    );
    let st = e.wait();
    assert_eq!(st.code(), Some(3), "{}", e.err());
    let err = e.err();
    assert!(
        err.contains(&format!("cannot reach any hub at {a}/ws, {b}/ws")),
        "{err}"
    );
    let mut bad = Proc::spawn(bin("hub-sub").args(["--url", "a:1,,b:1", "t"]), b"");
    assert_eq!(bad.wait().code(), Some(2), "{}", bad.err());
    assert!(
        bad.err()
            .contains(r#"invalid hub URL list "a:1,,b:1": element 2 is empty"#),
        "{}",
        bad.err()
    );
}

#[test]
fn hub_sub_moves_to_the_next_hub_when_its_hub_is_killed() {
    let mut a = Hub::start(&[]);
    let b = Hub::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Proc::spawn(
        bin("hub-sub")
            .arg("--url")
            .arg(format!("{},{}", a.ws_url(), b.ws_url()))
            .args(["f:*", "--count", "3", "--ready-file"])
            .arg(&ready),
        b"",
    );
    wait_until("the ready file", LIMIT, || ready.exists());
    // Connected to A: an event published there arrives.
    let on_a = a.publish_events(&[ev("f:1", 1)]);
    wait_until("the event from hub A", LIMIT, || s.lines().len() == 1);
    assert_eq!(s.ids(), on_a);
    a.kill9();
    let b_url = format!("{}/ws", b.ws_url());
    wait_until("hub-sub to reconnect to hub B", LIMIT, || {
        s.err().contains(&format!("reconnected to {b_url}"))
    });
    assert!(
        s.err().contains(&format!("moving to hub {b_url}")),
        "{}",
        s.err()
    );
    // B's log is its own: its ids start at 1 again, below the one seen on A, so
    // the ids of B's events must be past A's for the resume `since` A's id to
    // deliver them. Publish filler on another topic first to get there.
    let filler: Vec<Value> = (0..on_a[0]).map(|n| ev("other:1", n)).collect();
    b.publish_events(&filler);
    let on_b = b.publish_events(&[ev("f:2", 2), ev("f:3", 3)]);
    assert!(on_b[0] > on_a[0]);
    assert!(s.wait().success(), "{}", s.err());
    let want: Vec<u64> = on_a.iter().chain(&on_b).copied().collect();
    assert_eq!(s.ids(), want);
    let topics: Vec<String> = s
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["topic"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(topics, ["f:1", "f:2", "f:3"]);
}
