//! examples/python/hub_client.py against a real hub: a subscriber that lives through
//! a `kill -9` of the hub prints every event once, a publisher whose connection is
//! cut with events in flight stores every event once, the polling fallback behind a
//! proxy that refuses WebSocket upgrades delivers events (and the client goes back
//! to the WebSocket once upgrades pass), the exit status follows errors, and the
//! README's "From Python" block runs as written.
//!
//! The Python is `$HUB_PYTHON` when set (`.ci/run` points it at a venv), else
//! `python3`; it must import `websockets`. Without it these tests are skipped with a
//! message, except under CI (`CI` set), where they fail.

mod common;

use common::{Hub, wait_child, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The Python to run the client with, or `None` (skip) when it lacks `websockets`.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("HUB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&py)
        .args(["-c", "import websockets.asyncio.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    let why = format!(
        "{} cannot import websockets (13 or newer); set HUB_PYTHON to a venv's python with it (python3 -m venv V && V/bin/pip install websockets)",
        py.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED Python client tests: {why}");
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/hub_client.py")
}

/// `python hub_client.py ARGS`, with the user's hub and proxy settings removed.
fn client(py: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(py);
    c.arg(script()).args(args);
    for var in [
        "HUB_URL",
        "HUB_TOKEN",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        c.env_remove(var);
    }
    c.env("PYTHONUNBUFFERED", "1");
    c
}

/// A running client whose stdout and stderr lines are collected as they come.
struct Running {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Running {
    fn spawn(mut c: Command) -> Running {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start the Python client");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Running { child, out, err }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    fn wait_lines(&self, n: usize, what: &str) {
        let limit = LIMIT;
        let deadline = std::time::Instant::now() + limit;
        while self.out.lock().unwrap().len() < n {
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {what}: {} lines\n--- stdout\n{}\n--- stderr\n{}",
                    self.lines().len(),
                    self.lines().join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter(hub: &Hub, name: &str) -> u64 {
    hub.status()[name].as_u64().unwrap()
}

/// Publishes `{"n": k}` for each k in `ns` on `topic` with hub-emit, directly.
fn emit(hub: &Hub, topic: &str, ns: std::ops::Range<u64>) {
    let mut c = common::bin("hub-emit")
        .args(["--url", &hub.ws_url(), topic, "--lines"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    for n in ns {
        writeln!(stdin, "{{\"n\":{n}}}").unwrap();
    }
    drop(stdin);
    let st = wait_child(&mut c, LIMIT).expect("hub-emit finishes");
    assert!(st.success(), "hub-emit exited {st}");
}

/// The `data.n` of each printed event, checking every id is new.
fn ns_of(lines: &[String]) -> Vec<u64> {
    let mut ids = std::collections::HashSet::new();
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(
                ids.insert(v["id"].as_u64().unwrap()),
                "id printed twice: {l}"
            );
            v["data"]["n"].as_u64().unwrap()
        })
        .collect()
}

/// A TCP proxy in front of a hub that a test can cut, make hold back the hub's
/// answers, or make refuse WebSocket upgrades (as some HTTP proxies do).
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    refuse_upgrades: AtomicBool,
    /// Connections accepted from now on pass the hub's HTTP answer head, then
    /// nothing more from the hub (acks and events are dropped) until cut.
    hold_new: AtomicBool,
    refused: AtomicUsize,
    upgrades_passed: AtomicUsize,
    conns: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = proxy_conn(conn, upstream, &st);
                });
            }
        });
        Proxy { addr, state }
    }

    /// Drops every connection through the proxy (both directions, at once).
    fn cut(&self) {
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// The end of an HTTP head in `buf`, if it holds one.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn proxy_conn(mut client: TcpStream, upstream: SocketAddr, st: &ProxyState) -> std::io::Result<()> {
    // The request head: to see whether it asks for a WebSocket upgrade.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while head_end(&buf).is_none() {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end(&buf).unwrap()]).to_ascii_lowercase();
    let upgrade = head.contains("\r\nupgrade: websocket");
    if upgrade && st.refuse_upgrades.load(Ordering::SeqCst) {
        st.refused.fetch_add(1, Ordering::SeqCst);
        let body = "this proxy does not pass WebSocket upgrades\n";
        write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    if upgrade {
        st.upgrades_passed.fetch_add(1, Ordering::SeqCst);
    }
    let mut up = TcpStream::connect(upstream)?;
    up.set_nodelay(true)?;
    client.set_nodelay(true)?;
    up.write_all(&buf)?;
    {
        let mut conns = st.conns.lock().unwrap();
        conns.push(client.try_clone()?);
        conns.push(up.try_clone()?);
    }
    let hold = st.hold_new.load(Ordering::SeqCst);
    let (mut c_read, mut u_write) = (client.try_clone()?, up.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    // Hub → client, held back after the answer head when asked.
    let mut head = Vec::new();
    let mut passing = true;
    loop {
        let n = up.read(&mut chunk)?;
        if n == 0 {
            let _ = client.shutdown(Shutdown::Write);
            return Ok(());
        }
        if !hold {
            client.write_all(&chunk[..n])?;
            continue;
        }
        if passing {
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&head) {
                let before = head.len() - n;
                client.write_all(&chunk[..end - before])?;
                passing = false;
            } else {
                client.write_all(&chunk[..n])?;
            }
        }
    }
}

#[test]
fn a_subscriber_prints_every_event_once_across_a_kill_9_of_the_hub() {
    let Some(py) = python() else { return };
    let mut hub = Hub::start(&[]);
    let sub = Running::spawn(client(
        &py,
        &[
            "sub",
            "kill:*",
            "--url",
            &hub.ws_url(),
            "--timeout",
            "30",
            "-v",
        ],
    ));
    wait_until("the subscription", LIMIT, || {
        counter(&hub, "subscriptions") >= 1
    });
    emit(&hub, "kill:a", 0..50);
    sub.wait_lines(50, "the events before the kill");
    hub.kill9();
    hub.restart();
    // Published before the client is back: it must read them by resuming.
    emit(&hub, "kill:a", 50..100);
    sub.wait_lines(100, "the events after the restart");
    emit(&hub, "kill:end", 100..101);
    sub.wait_lines(101, "the last event");
    let lines = sub.lines();
    assert_eq!(
        ns_of(&lines),
        (0..101).collect::<Vec<_>>(),
        "{}",
        sub.stderr()
    );
    assert!(
        sub.stderr().contains("resuming after id 50"),
        "says how it resumes:\n{}",
        sub.stderr()
    );
}

/// A `--memory` hub starts its ids at 1 again after a restart: the client sees the
/// hub's newest id below its cursor and reads the new log from its start.
#[test]
fn after_a_memory_hub_restarts_the_subscriber_reads_its_new_log() {
    let Some(py) = python() else { return };
    let mut hub = Hub::start(&["--memory"]);
    let sub = Running::spawn(client(
        &py,
        &["sub", "mem:*", "--since", "0", "--url", &hub.ws_url(), "-v"],
    ));
    emit(&hub, "mem:a", 0..5);
    sub.wait_lines(5, "the events before the restart");
    hub.restart();
    emit(&hub, "mem:a", 5..8);
    sub.wait_lines(8, "the events of the new log");
    let ns: Vec<u64> = sub
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..8).collect::<Vec<_>>(), "{}", sub.stderr());
    assert!(sub.stderr().contains("it lost its log"), "{}", sub.stderr());
}

#[test]
fn a_publisher_cut_with_events_in_flight_stores_every_event_once() {
    let Some(py) = python() else { return };
    let hub = Hub::start(&["--memory"]);
    let proxy = Proxy::start(hub.addr);
    proxy.state.hold_new.store(true, Ordering::SeqCst);
    let url = format!("ws://{}", proxy.addr);
    let mut c = client(
        &py,
        &[
            "pub",
            "--lines",
            "--url",
            &url,
            "--window",
            "200",
            "--timeout",
            "30",
            "-v",
        ],
    );
    c.stdin(Stdio::piped());
    let mut publisher = Running::spawn(c);
    let mut stdin = publisher.child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for n in 0..1000 {
            if writeln!(stdin, r#"{{"topic":"cut:a","data":{{"n":{n}}}}}"#).is_err() {
                return;
            }
        }
    });
    // The first connection's acks never arrive: the window fills, stored, unacked.
    wait_until("a window of stored, unacknowledged events", LIMIT, || {
        counter(&hub, "events") >= 200
    });
    assert_eq!(
        counter(&hub, "events"),
        200,
        "no more than the window in flight"
    );
    proxy.state.hold_new.store(false, Ordering::SeqCst);
    proxy.cut();
    // And once more while events flow (wherever the stream is by then).
    wait_until("more events", LIMIT, || counter(&hub, "events") >= 500);
    proxy.cut();
    let st = wait_child(&mut publisher.child, LIMIT).expect("the publisher finishes");
    assert!(st.success(), "exit {st}\n{}", publisher.stderr());
    assert_eq!(counter(&hub, "events"), 1000, "{}", publisher.stderr());
    assert!(
        counter(&hub, "dedup_total") >= 200,
        "the resent window was deduplicated by key: {}",
        hub.status()
    );
    let out = common::bin("hub-sub")
        .args(["--url", &hub.ws_url(), "cut:a", "--all", "--drain"])
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ns_of(&lines), (0..1000).collect::<Vec<_>>());
    assert!(
        publisher.stderr().contains("unacknowledged events again"),
        "{}",
        publisher.stderr()
    );
}

#[test]
fn behind_a_proxy_that_refuses_upgrades_it_polls_then_goes_back_to_websocket() {
    let Some(py) = python() else { return };
    let hub = Hub::start(&["--memory"]);
    let proxy = Proxy::start(hub.addr);
    proxy.state.refuse_upgrades.store(true, Ordering::SeqCst);
    let url = format!("http://{}", proxy.addr);
    let sub = Running::spawn(client(
        &py,
        &[
            "sub",
            "poll:*",
            "--since",
            "0",
            "--url",
            &url,
            "--ws-retry",
            "1",
            "-v",
        ],
    ));
    emit(&hub, "poll:a", 0..20);
    sub.wait_lines(20, "events by polling");
    // Publishing falls back to POST /publish the same way.
    let mut c = client(&py, &["pub", "--lines", "--url", &url, "-v"]);
    c.stdin(Stdio::piped()).stderr(Stdio::piped());
    let mut p = c.spawn().unwrap();
    let mut stdin = p.stdin.take().unwrap();
    for n in 20..30 {
        writeln!(stdin, r#"{{"topic":"poll:b","data":{{"n":{n}}}}}"#).unwrap();
    }
    drop(stdin);
    let st = wait_child(&mut p, LIMIT).expect("the publisher finishes");
    let mut err = String::new();
    p.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(st.success(), "exit {st}: {err}");
    assert!(err.contains("POST /publish"), "{err}");
    sub.wait_lines(30, "events published by POST");
    assert!(proxy.state.refused.load(Ordering::SeqCst) >= 2);
    assert_eq!(proxy.state.upgrades_passed.load(Ordering::SeqCst), 0);
    proxy.state.refuse_upgrades.store(false, Ordering::SeqCst);
    wait_until("the WebSocket through the proxy", LIMIT, || {
        counter(&hub, "subscriptions") >= 1
    });
    emit(&hub, "poll:a", 30..50);
    sub.wait_lines(50, "events over the WebSocket again");
    assert_eq!(ns_of(&sub.lines()), (0..50).collect::<Vec<_>>());
    let err = sub.stderr();
    assert!(err.contains("long-polling GET /events"), "{err}");
    assert!(err.contains("leaving polling"), "{err}");
}

/// Runs the client to its end; (exit code, stdout, stderr).
fn run(mut c: Command) -> (Option<i32>, String, String) {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let st = wait_child(&mut child, LIMIT).expect("the client exits");
    // The readers finish once the pipes close.
    wait_until("the client's output", LIMIT, || {
        Arc::strong_count(&out) == 1 && Arc::strong_count(&err) == 1
    });
    let text = |l: &Arc<Mutex<Vec<String>>>| l.lock().unwrap().join("\n");
    (st.code(), text(&out), text(&err))
}

#[test]
fn the_exit_status_follows_errors() {
    let Some(py) = python() else { return };
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("ws://{free}");
    for cmd in [&["sub"][..], &["pub", "t:x"]] {
        let mut args = cmd.to_vec();
        args.extend(["--url", &down, "--timeout", "1"]);
        let (code, _, err) = run(client(&py, &args));
        assert_eq!(code, Some(3), "{args:?} against nothing: {err}");
        assert!(err.contains(&format!("{down}/ws")), "names the URL: {err}");
    }
    let hub = Hub::start(&["--memory", "--token", "s3cret"]);
    let url = hub.ws_url();
    for cmd in [&["sub"][..], &["pub", "t:x"]] {
        let mut args = cmd.to_vec();
        args.extend(["--url", &url, "--token", "xyzzy-bad"]);
        let (code, _, err) = run(client(&py, &args));
        assert_eq!(code, Some(4), "{args:?} with a bad token: {err}");
        assert!(err.contains("unauthorized"), "{err}");
        assert!(!err.contains("xyzzy"), "the token is not echoed: {err}");
    }
    let (code, out, err) = run(client(
        &py,
        &[
            "pub",
            "t:x",
            "--url",
            &url,
            "--token",
            "s3cret",
            "--print-ids",
        ],
    ));
    assert_eq!((code, out.as_str()), (Some(0), "1"), "{err}");
    let (code, out, err) = run(client(&py, &["demo", "--url", &url, "--token", "s3cret"]));
    assert_eq!(code, Some(0), "demo: {out}\n{err}");
    for want in ["task_started", "progress", "task_completed"] {
        assert!(out.contains(want), "demo shows {want}:\n{out}");
    }
    let (code, _, err) = run(client(
        &py,
        &["pub", "bad topic", "--url", &url, "--token", "s3cret"],
    ));
    assert_eq!(code, Some(4), "an invalid event: {err}");
    assert!(err.contains("invalid topic"), "{err}");
    for usage in [
        &["sub", "--since", "x"][..],
        &["pub"],
        &["sub", "--since", "1", "--last", "2"],
    ] {
        let mut args = usage.to_vec();
        args.extend(["--url", &url]);
        let (code, _, err) = run(client(&py, &args));
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
}

/// The README's "From Python" block, marked `<!-- python: readme -->`, runs as
/// written against a test hub (only the address is replaced).
#[test]
fn the_readme_python_block_runs() {
    let Some(py) = python() else { return };
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| *l != "<!-- python: readme -->");
    assert!(
        lines.next().is_some(),
        "README has a <!-- python: readme --> block"
    );
    assert_eq!(lines.next(), Some("```python"));
    let block: Vec<&str> = lines.take_while(|l| *l != "```").collect();
    let hub = Hub::start(&["--memory"]);
    let code = block
        .join("\n")
        .replace("127.0.0.1:7357", &hub.addr.to_string());
    let mut c = Command::new(&py);
    c.args(["-c", &code])
        .env("PYTHONPATH", script().parent().unwrap())
        .env_remove("HUB_URL")
        .env_remove("HUB_TOKEN");
    let (code, out, err) = run(c);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for want in ["task_started", "progress", "task_completed"] {
        assert!(out.contains(want), "{want} in\n{out}\n{err}");
    }
}
