//! `hub-sub` against a real `hub-serve`: filters and formats, stop conditions,
//! reconnect after `kill -9` + restart of the hub, durable cursors across runs
//! (also a killed run), a closed stdout, progress lines, exit codes.

mod common;

use common::{Hub, bin, wait_until};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn ev(topic: &str, kind: &str, data: Value) -> Value {
    json!({"topic": topic, "type": kind, "data": data})
}

fn sub_cmd(hub: &Hub, args: &[&str]) -> Command {
    let mut c = bin("hub-sub");
    c.arg("--url").arg(hub.ws_url()).args(args);
    c
}

/// Runs hub-sub to the end (bounded); returns (status, stdout lines, stderr).
fn run(mut c: Command) -> (ExitStatus, Vec<String>, String) {
    let mut s = Sub::spawn(&mut c);
    let st = s.wait();
    (st, s.lines(), s.err())
}

/// A running hub-sub whose stdout lines and stderr are collected as they come.
struct Sub {
    child: Child,
    readers: Vec<std::thread::JoinHandle<()>>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Sub {
    fn spawn(c: &mut Command) -> Sub {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
        Sub {
            child,
            readers: vec![r1, r2],
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
        ids(&self.lines())
    }

    fn wait_lines(&self, n: usize) {
        wait_until(&format!("{n} lines from hub-sub"), LIMIT, || {
            self.out.lock().unwrap().len() >= n
        });
    }

    fn wait(&mut self) -> ExitStatus {
        let st = common::wait_child(&mut self.child, LIMIT).expect("hub-sub did not exit in time");
        // The pipes close with the process: take the last output.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        st
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn filters_formats_and_count() {
    let hub = Hub::start(&[]);
    hub.publish_events(&[
        ev(
            "task:a",
            "progress",
            json!({"percent": 50, "message": "half"}),
        ),
        ev("log:x", "log", json!({"line": "hello"})),
        ev("task:b", "progress", json!({"percent": 50.0})),
        ev("task:c", "progress", json!({"percent": 10})),
        ev("task:d", "task_started", json!({"percent": 50})),
        ev("task:e", "progress", json!({"percent": 50})),
    ]);
    let (st, lines, err) = run(sub_cmd(
        &hub,
        &[
            "task:*",
            "--where",
            "data.percent=50",
            "--type",
            "progress",
            "--all",
            "--count",
            "2",
        ],
    ));
    assert!(st.success(), "{err}");
    let got: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0]["topic"].clone(), got[1]["topic"].clone()),
        (json!("task:a"), json!("task:b"))
    );
    assert!(!lines[0].contains(": "), "compact JSON: {}", lines[0]);

    let (st, lines, _) = run(sub_cmd(
        &hub,
        &["log:x", "--all", "--drain", "--format", "data"],
    ));
    assert!(st.success());
    assert_eq!(lines, vec![r#"{"line":"hello"}"#]);
    let (st, lines, _) = run(sub_cmd(
        &hub,
        &["task:a", "log:x", "--all", "--drain", "--format", "text"],
    ));
    assert!(st.success());
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("Z task:a progress half"), "{}", lines[0]);
    assert!(lines[1].ends_with("Z log:x log hello"), "{}", lines[1]);
    // --last N, --since ID
    let (_, lines, _) = run(sub_cmd(&hub, &["--last", "2", "--count", "2"]));
    assert_eq!(ids(&lines), vec![5, 6]);
    let (_, lines, _) = run(sub_cmd(&hub, &["--since", "4", "--drain"]));
    assert_eq!(ids(&lines), vec![5, 6]);
}

#[test]
fn ready_file_then_publish_is_received() {
    let hub = Hub::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Sub::spawn(&mut sub_cmd(
        &hub,
        &[
            "t:1",
            "--count",
            "1",
            "--ready-file",
            ready.to_str().unwrap(),
        ],
    ));
    wait_until("the ready file", LIMIT, || ready.exists());
    let id = hub.publish_events(&[ev("t:1", "message", json!({"n": 1}))])[0];
    assert!(s.wait().success(), "{}", s.err());
    assert_eq!(s.ids(), vec![id]);
}

#[test]
fn until_wait_task_drain_and_timeout() {
    let hub = Hub::start(&[]);
    hub.publish_events(&[
        ev("ci:done", "task_started", json!({})),
        ev(
            "ci:done",
            "task_completed",
            json!({"duration_seconds": 1.0}),
        ),
        ev("ci:run", "task_started", json!({})),
        ev("ci:run", "progress", json!({"percent": 30})),
    ]);
    // Already ended before hub-sub started: decided at once, deciding event printed.
    let (st, lines, err) = run(sub_cmd(&hub, &["--wait-task", "ci:done"]));
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(lines.last().unwrap().contains("task_completed"));
    // Still running: waits; a failure exits 1.
    let mut s = Sub::spawn(&mut sub_cmd(&hub, &["--wait-task", "ci:run"]));
    s.wait_lines(1);
    assert!(s.child.try_wait().unwrap().is_none(), "still waiting");
    hub.publish_events(&[ev("ci:run", "task_failed", json!({"exit_code": 2}))]);
    assert_eq!(s.wait().code(), Some(1));
    assert!(s.lines().last().unwrap().contains("task_failed"));
    // --until prints the deciding event.
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Sub::spawn(&mut sub_cmd(
        &hub,
        &[
            "u:*",
            "--until",
            "data.status=done",
            "--ready-file",
            ready.to_str().unwrap(),
        ],
    ));
    wait_until("the ready file", LIMIT, || ready.exists());
    hub.publish_events(&[
        ev("u:1", "x", json!({"status": "busy"})),
        ev("u:1", "x", json!({"status": "done"})),
        ev("u:1", "x", json!({"status": "after"})),
    ]);
    assert!(s.wait().success(), "{}", s.err());
    let lines = s.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains(r#""status":"done""#));
    // --drain on an up-to-date log; --timeout exits 124.
    let (st, lines, _) = run(sub_cmd(&hub, &["ci:*", "--all", "--drain"]));
    assert!(st.success());
    assert_eq!(lines.len(), 5);
    let started = std::time::Instant::now();
    let (st, _, err) = run(sub_cmd(&hub, &["nothing:here", "--timeout", "300ms"]));
    assert_eq!(st.code(), Some(124), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn kill9_and_restart_of_the_hub_loses_and_repeats_nothing() {
    let mut hub = Hub::start(&[]);
    let first = hub.publish_events(
        &(0..100)
            .map(|i| ev("r:1", "m", json!({"i": i})))
            .collect::<Vec<_>>(),
    );
    let mut s = Sub::spawn(&mut sub_cmd(&hub, &["r:*", "--all", "--count", "300"]));
    s.wait_lines(100);
    hub.kill9();
    wait_until("hub-sub to notice", LIMIT, || {
        s.err().contains("reconnecting")
    });
    hub.restart();
    let second = hub.publish_events(
        &(100..300)
            .map(|i| ev("r:1", "m", json!({"i": i})))
            .collect::<Vec<_>>(),
    );
    assert!(s.wait().success(), "{}", s.err());
    let want: Vec<u64> = first.into_iter().chain(second).collect();
    assert_eq!(s.ids(), want, "every event once, in order");
    assert!(s.err().contains("reconnected"), "{}", s.err());
}

#[test]
fn no_reconnect_fails_fast_with_3() {
    let mut hub = Hub::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Sub::spawn(&mut sub_cmd(
        &hub,
        &["--no-reconnect", "--ready-file", ready.to_str().unwrap()],
    ));
    wait_until("the ready file", LIMIT, || ready.exists());
    hub.kill9();
    assert_eq!(s.wait().code(), Some(3), "{}", s.err());
    assert!(s.err().contains("--no-reconnect"), "{}", s.err());
    // Unreachable at start.
    let (st, _, err) = run(sub_cmd(&hub, &["--connect-timeout", "300ms"]));
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains(&hub.ws_url()), "{err}");
}

#[test]
fn durable_cursor_across_runs_even_a_killed_one() {
    let hub = Hub::start(&[]);
    let evs: Vec<Value> = (0..5).map(|i| ev("d:1", "m", json!({"i": i}))).collect();
    let ids1 = hub.publish_events(&evs);
    let (st, lines, err) = run(sub_cmd(
        &hub,
        &["d:*", "--durable", "nightly", "--all", "--count", "2"],
    ));
    assert!(st.success(), "{err}");
    assert_eq!(ids(&lines), ids1[..2]);
    let (st, lines, _) = run(sub_cmd(&hub, &["d:*", "--durable", "nightly", "--drain"]));
    assert!(st.success());
    assert_eq!(
        ids(&lines),
        ids1[2..],
        "the next run starts after the last printed"
    );
    let (_, lines, _) = run(sub_cmd(&hub, &["d:*", "--durable", "nightly", "--drain"]));
    assert!(lines.is_empty(), "{lines:?}");

    // A run killed with -9: the next one starts after what it printed.
    let ids2 = hub.publish_events(&evs[..3]);
    let mut s = Sub::spawn(&mut sub_cmd(&hub, &["d:*", "--durable", "nightly"]));
    s.wait_lines(3);
    assert_eq!(s.ids(), ids2);
    let cursors = hub.dir.join("cursors.json");
    wait_until("the hub to store the cursor", LIMIT, || {
        std::fs::read(&cursors)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v["nightly"] == ids2[2])
    });
    common::signal(s.child.id(), "KILL");
    s.wait();
    let ids3 = hub.publish_events(&evs[..1]);
    let (_, lines, _) = run(sub_cmd(&hub, &["d:*", "--durable", "nightly", "--drain"]));
    assert_eq!(ids(&lines), ids3);

    // A new name starts live.
    let (st, lines, _) = run(sub_cmd(&hub, &["--durable", "fresh", "--drain"]));
    assert!(st.success());
    assert!(lines.is_empty());
}

#[test]
fn closed_stdout_ends_quietly_with_0() {
    let hub = Hub::start(&[]);
    hub.publish_events(&[ev("p:1", "m", json!({}))]);
    let mut child = sub_cmd(&hub, &["p:*", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("p:1"));
    } // `head -1` exits: the pipe's read end is closed.
    // No further event is needed: hub-sub notices the closed pipe by itself.
    wait_until("hub-sub to exit", LIMIT, || {
        child.try_wait().unwrap().is_some()
    });
    let st = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    assert_eq!(err, "", "quietly");
}

#[test]
fn progress_prints_plain_lines_off_a_terminal() {
    let hub = Hub::start(&[]);
    hub.publish_events(&[
        ev("task:b", "task_started", json!({"message": "building"})),
        ev(
            "task:b",
            "progress",
            json!({"percent": 50, "message": "compiling"}),
        ),
        ev(
            "task:b",
            "task_completed",
            json!({"exit_code": 0, "duration_seconds": 2.5}),
        ),
        ev("task:t", "task_started", json!({})),
        ev(
            "task:t",
            "task_failed",
            json!({"error": "tests failed", "exit_code": 1}),
        ),
    ]);
    let (st, lines, err) = run(sub_cmd(&hub, &["task:*", "--all", "--drain", "--progress"]));
    assert!(st.success(), "{err}");
    assert!(lines.is_empty(), "no JSON on stdout: {lines:?}");
    for want in [
        "task:b started: building",
        "task:b  50% compiling",
        "task:b completed (exit 0, 2.5s)",
        "task:t FAILED: tests failed (exit 1)",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
}

#[test]
fn refusals_and_usage_errors() {
    let hub = Hub::start(&["--token", "t0k"]);
    let (st, _, err) = run(sub_cmd(&hub, &["--drain"]));
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(!err.contains("t0k"));
    let (st, _, err) = run(sub_cmd(&hub, &["--drain", "--token", "t0k"]));
    assert_eq!(st.code(), Some(0), "{err}");
    for (args, needle) in [
        (vec!["--where", "nofield"], "FIELD=VALUE"),
        (vec!["[x"], "glob"),
        (vec!["--since", "1", "--last", "1"], "cannot be used with"),
        (vec!["--format", "xml"], "json"),
        (vec!["--timeout", "later"], "500ms"),
    ] {
        let (st, _, err) = run(sub_cmd(&hub, &args));
        assert_eq!(st.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (st, lines, _) = run({
        let mut c = bin("hub-sub");
        c.arg("--help");
        c
    });
    assert!(st.success());
    assert!(lines.iter().any(|l| l.contains("--wait-task")));
}
