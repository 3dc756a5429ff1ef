//! hub-tail against a real hub-serve, on real files in temp dirs. Each test asserts
//! the exact sequence of lines the hub stored: nothing lost, nothing twice, in order.
//! Waits are bounded and on conditions; a test writes a last marker line and waits
//! for it, so that any duplicate before it would be seen.

mod common;

use common::{Hub, bin, http, wait_until};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// A running hub-tail, killed when dropped.
struct Tail {
    child: Option<Child>,
    err: PathBuf,
}

impl Tail {
    fn start(hub: &Hub, dir: &Path, args: &[&str]) -> Tail {
        let err = dir.join(format!("tail-{}.err", fastrand::u32(..)));
        let child = bin("hub-tail")
            .args(args)
            .arg("--url")
            .arg(hub.ws_url())
            .arg("--state")
            .arg(dir.join("state.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("hub-tail starts");
        Tail {
            child: Some(child),
            err,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        common::signal(c.id(), "TERM");
        common::wait_child(&mut c, Duration::from_secs(10))
            .expect("hub-tail exits after SIGTERM")
            .code()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every stored event on `topic`.
fn events(hub: &Hub, topic: &str) -> Vec<Value> {
    let url = format!(
        "{}/events?topic={topic}&since=0&limit=100000",
        hub.http_url()
    );
    let Ok(mut resp) = http().get(&url).call() else {
        return Vec::new();
    };
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    body.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `data.line` of every stored `log` event on `topic`, in id order.
fn lines(hub: &Hub, topic: &str) -> Vec<String> {
    events(hub, topic)
        .iter()
        .filter(|e| e["type"] == "log")
        .map(|e| {
            e["data"]["line"]
                .as_str()
                .unwrap_or("<no line>")
                .to_string()
        })
        .collect()
}

/// Waits until `last` is stored on `topic`, then asserts the whole sequence.
fn expect_lines(hub: &Hub, topic: &str, expected: &[String], tail: &Tail) {
    let last = expected.last().expect("something expected").clone();
    let mut got = Vec::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&format!("line {last:?} on {topic}"), LIMIT, || {
            got = lines(hub, topic);
            got.contains(&last)
        })
    }));
    if ok.is_err() {
        panic!(
            "timed out waiting for {last:?} on {topic}; got {got:?}\nhub-tail stderr:\n{}",
            tail.stderr()
        );
    }
    if got != expected {
        panic!(
            "{}\nhub-tail stderr:\n{}",
            describe_difference(&got, expected),
            tail.stderr()
        );
    }
}

/// Where two sequences part, and which lines are missing or repeated.
fn describe_difference(got: &[String], expected: &[String]) -> String {
    let at = got.iter().zip(expected).take_while(|(a, b)| a == b).count();
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&String> = got.iter().filter(|l| !seen.insert(*l)).take(10).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|l| !got.contains(l))
        .take(10)
        .collect();
    format!(
        "got {} lines, expected {}; first difference at {at}: got {:?}, expected {:?}; repeated: {dups:?}; missing: {missing:?}",
        got.len(),
        expected.len(),
        got.get(at),
        expected.get(at)
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    append(path, &text);
}

fn rotated_events(hub: &Hub, topic: &str) -> Vec<Value> {
    events(hub, topic)
        .into_iter()
        .filter(|e| e["type"] == "rotated")
        .collect()
}

#[test]
fn append_publishes_each_line_once_in_order() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "before start\n");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    let mut expected = vec!["before start".to_string()];
    for round in 0..5 {
        let batch = numbered(&format!("r{round}-"), 0..20);
        write_lines(&log, &batch);
        expected.extend(batch);
    }
    expect_lines(&hub, "log:app", &expected, &tail);
    let ev = &events(&hub, "log:app")[0];
    assert_eq!(ev["data"]["file"], log.to_str().unwrap());
    assert!(ev["key"].as_str().unwrap().ends_with(":0"), "{ev}");
}

#[test]
fn default_start_is_the_end_of_the_file() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "old 1\nold 2\n");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--last", "1"]);
    expect_lines(&hub, "log:app", &["old 2".to_string()], &tail);
    append(&log, "new\n");
    expect_lines(
        &hub,
        "log:app",
        &["old 2".to_string(), "new".to_string()],
        &tail,
    );
}

#[test]
fn rename_rotation_drains_the_old_file_then_follows_the_new_one() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    // --rotate-wait 0: the old file is drained once, its partial line at once
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[log.to_str().unwrap(), "--from-start", "--rotate-wait", "0"],
    );
    let first = numbered("a", 0..3);
    write_lines(&log, &first);
    expect_lines(&hub, "log:app", &first, &tail);
    // written just before the rename: must still be read from the old file
    let late = numbered("a", 3..50);
    write_lines(&log, &late);
    append(&log, "no newline");
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let second = numbered("b", 0..10);
    write_lines(&log, &second);
    let mut expected = first;
    expected.extend(late);
    expected.push("no newline".into());
    expected.extend(second);
    expect_lines(&hub, "log:app", &expected, &tail);
    let rot = rotated_events(&hub, "log:app");
    assert_eq!(rot.len(), 1, "{rot:?}");
    assert_eq!(rot[0]["data"]["reason"], "renamed");
}

#[test]
fn copytruncate_and_truncation_start_over_at_offset_zero() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    let mut expected = numbered("a", 0..20);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    // copytruncate: copy, then truncate in place
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let b = numbered("b", 0..3);
    write_lines(&log, &b);
    expected.extend(b);
    expect_lines(&hub, "log:app", &expected, &tail);
    // `: > file` then more than was there before
    std::fs::write(&log, "").unwrap();
    let c = numbered("c-a-much-longer-line-than-before-", 0..30);
    write_lines(&log, &c);
    expected.extend(c);
    expect_lines(&hub, "log:app", &expected, &tail);
    let rot = rotated_events(&hub, "log:app");
    assert_eq!(rot.len(), 2, "{rot:?}");
    assert!(rot.iter().all(|r| r["data"]["reason"] == "truncated"));
}

#[test]
fn delete_and_recreate() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    let mut expected = numbered("a", 0..5);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    std::fs::remove_file(&log).unwrap();
    wait_until("the rotated event", LIMIT, || {
        !rotated_events(&hub, "log:app").is_empty()
    });
    let b = numbered("b", 0..5);
    write_lines(&log, &b);
    expected.extend(b);
    expect_lines(&hub, "log:app", &expected, &tail);
    assert_eq!(
        rotated_events(&hub, "log:app")[0]["data"]["reason"],
        "deleted"
    );
}

#[test]
fn a_file_that_does_not_exist_yet_is_read_when_it_appears() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("later.log");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap()]);
    wait_until("the waiting message", LIMIT, || {
        tail.stderr().contains("no such file yet")
    });
    let expected = numbered("x", 0..5);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:later", &expected, &tail);
}

#[test]
fn glob_picks_up_new_files() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, "");
    std::fs::write(dir.path().join("ignored.txt"), "not a log\n").unwrap();
    let pattern = format!("{}/*.log", dir.path().display());
    let tail = Tail::start(&hub, dir.path(), &[&pattern, "--from-start"]);
    let la = numbered("a", 0..3);
    write_lines(&a, &la);
    expect_lines(&hub, "log:a", &la, &tail);
    let b = dir.path().join("b.log");
    let lb = numbered("b", 0..3);
    write_lines(&b, &lb);
    expect_lines(&hub, "log:b", &lb, &tail);
    assert!(lines(&hub, "log:ignored").is_empty());
}

#[test]
fn kill9_and_restart_of_hub_tail_mid_stream() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let args = [log.to_str().unwrap(), "--from-start"];
    let mut tail = Tail::start(&hub, dir.path(), &args);
    let all = numbered("line-", 0..3000);
    let writer = {
        let log = log.clone();
        let all = all.clone();
        std::thread::spawn(move || {
            for chunk in all.chunks(100) {
                write_lines(&log, chunk);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_until("some lines", LIMIT, || lines(&hub, "log:app").len() >= 500);
    tail.kill9();
    let mut tail = Tail::start(&hub, dir.path(), &args);
    wait_until("more lines", LIMIT, || lines(&hub, "log:app").len() >= 1500);
    tail.kill9();
    let tail = Tail::start(&hub, dir.path(), &args);
    writer.join().unwrap();
    expect_lines(&hub, "log:app", &all, &tail);
}

#[test]
fn sigterm_then_restart_resumes_after_the_last_acknowledged_line() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let args = [log.to_str().unwrap()];
    let mut tail = Tail::start(&hub, dir.path(), &args);
    wait_until("the state file", LIMIT, || {
        dir.path().join("state.json").exists()
    });
    let mut expected = numbered("a", 0..10);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    assert_eq!(tail.terminate(), Some(0));
    // written while hub-tail is stopped, across a rotation
    let b = numbered("b", 0..10);
    write_lines(&log, &b);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let c = numbered("c", 0..10);
    write_lines(&log, &c);
    expected.extend(b);
    expected.extend(c);
    let tail = Tail::start(&hub, dir.path(), &args);
    expect_lines(&hub, "log:app", &expected, &tail);
}

#[test]
fn hub_down_while_lines_are_written() {
    let mut hub = Hub::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    let mut expected = numbered("a", 0..50);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    hub.kill9();
    // More than hub-tail keeps in flight: the window fills, the rest waits in the
    // file, and nothing blocks hub-tail while the hub is away.
    let b = numbered("b", 0..3000);
    write_lines(&log, &b);
    expected.extend(b);
    let t0 = std::time::Instant::now();
    while !tail.stderr().contains("reading is paused") {
        assert!(
            t0.elapsed() < LIMIT,
            "no paused message; hub-tail stderr:\n{}",
            tail.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.restart();
    let c = numbered("c", 0..50);
    write_lines(&log, &c);
    expected.extend(c);
    expect_lines(&hub, "log:app", &expected, &tail);
    assert!(tail.stderr().contains("is back"), "{}", tail.stderr());
}

#[test]
fn polling_mode_follows_appends_and_rotation() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[
            log.to_str().unwrap(),
            "--from-start",
            "--poll",
            "--poll-interval",
            "50ms",
        ],
    );
    let mut expected = numbered("a", 0..5);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    let late = numbered("a", 5..8);
    write_lines(&log, &late);
    expected.extend(late);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let b = numbered("b", 0..5);
    write_lines(&log, &b);
    expected.extend(b);
    expect_lines(&hub, "log:app", &expected, &tail);
}

#[test]
fn poll_says_so_with_v_and_only_then() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let file = log.to_str().unwrap();
    let polling = "hub-tail: polling every 250ms (--poll)";
    let v = Tail::start(
        &hub,
        dir.path(),
        &[
            file,
            "--from-start",
            "--poll",
            "--poll-interval",
            "250ms",
            "-v",
        ],
    );
    // The first line goes out once the follower runs, so the message came before.
    append(&log, "one\n");
    expect_lines(&hub, "log:app", &["one".to_string()], &v);
    assert!(v.stderr().contains(polling), "stderr:\n{}", v.stderr());
    drop(v);
    // Without -v: silent; -v without --poll: not asked to poll.
    for args in [
        &[file, "--from-start", "--poll", "--poll-interval", "250ms"][..],
        &[file, "--from-start", "-v"][..],
    ] {
        let t = Tail::start(&hub, dir.path(), args);
        let line = format!("{args:?}");
        append(&log, &format!("{line}\n"));
        wait_until("the line to be stored", LIMIT, || {
            lines(&hub, "log:app").contains(&line)
        });
        assert!(!t.stderr().contains("(--poll)"), "{args:?}: {}", t.stderr());
    }
}

#[test]
fn partial_lines_wait_for_their_newline() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    append(&log, "first\nhal");
    expect_lines(&hub, "log:app", &["first".to_string()], &tail);
    append(&log, "f and ");
    append(&log, "half\r\n");
    expect_lines(
        &hub,
        "log:app",
        &["first".to_string(), "half and half".to_string()],
        &tail,
    );
}

#[test]
fn stdin_lines_then_exit_zero_at_eof() {
    let hub = Hub::start(&["--memory"]);
    let mut child = bin("hub-tail")
        .args(["-", "--topic", "log:journal", "--url", &hub.ws_url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let expected = numbered("s", 0..1000);
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in &expected {
            writeln!(stdin, "{l}").unwrap();
        }
        write!(stdin, "last without newline").unwrap();
    }
    let status = common::wait_child(&mut child, LIMIT).expect("hub-tail exits at EOF");
    assert!(status.success(), "{status:?}");
    let mut expected = expected;
    expected.push("last without newline".into());
    // acknowledged before the exit: no wait needed
    assert_eq!(lines(&hub, "log:journal"), expected);
}

#[test]
fn json_lines_become_the_data() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "{\"level\":\"warn\",\"msg\":\"disk\"}\nplain\n");
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[
            log.to_str().unwrap(),
            "--from-start",
            "--json",
            "--topic",
            "log:json",
        ],
    );
    wait_until("two events", LIMIT, || events(&hub, "log:json").len() == 2);
    let ev = events(&hub, "log:json");
    assert_eq!(ev[0]["data"]["level"], "warn", "{}", tail.stderr());
    assert_eq!(ev[0]["data"]["file"], log.to_str().unwrap());
    assert_eq!(ev[1]["data"]["line"], "plain");
}

/// With --json, an object line's keys keep their order in the stored bytes (`file`
/// is appended when missing); a plain line is stored as `{"file":...,"line":...}`.
#[test]
fn json_lines_keep_their_key_order() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    append(&log, "{\"z\":1,\"a\":{\"y\":2,\"b\":3}}\nplain\n");
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[
            log.to_str().unwrap(),
            "--from-start",
            "--json",
            "--topic",
            "log:order",
        ],
    );
    wait_until("two events", LIMIT, || events(&hub, "log:order").len() == 2);
    let url = format!("{}/events?topic=log:order&since=0&limit=10", hub.http_url());
    let body = http()
        .get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let file = serde_json::to_string(log.to_str().unwrap()).unwrap();
    let stored: Vec<&str> = body.lines().collect();
    assert!(
        stored[0].ends_with(&format!(
            "\"data\":{{\"z\":1,\"a\":{{\"y\":2,\"b\":3}},\"file\":{file}}}}}"
        )),
        "{} {}",
        stored[0],
        tail.stderr()
    );
    assert!(
        stored[1].ends_with(&format!(
            "\"data\":{{\"file\":{file},\"line\":\"plain\"}}}}"
        )),
        "{}",
        stored[1]
    );
}

#[test]
fn over_long_lines_are_split_and_nothing_is_lost() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let tail = Tail::start(&hub, dir.path(), &[log.to_str().unwrap(), "--from-start"]);
    let long: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    append(&log, &format!("{long}\nafter\n"));
    wait_until("the line after", LIMIT, || {
        lines(&hub, "log:app").contains(&"after".to_string())
    });
    let ev = events(&hub, "log:app");
    let pieces: Vec<&Value> = ev
        .iter()
        .take_while(|e| e["data"]["line"] != "after")
        .collect();
    assert_eq!(pieces.len(), 4, "100,000 bytes in pieces of 32 KiB");
    let joined: String = pieces
        .iter()
        .map(|e| e["data"]["line"].as_str().unwrap())
        .collect();
    assert_eq!(joined, long, "{}", tail.stderr());
    assert!(pieces[..3].iter().all(|e| e["data"]["partial"] == true));
    assert!(pieces[3]["data"].get("partial").is_none());
}

#[test]
fn bad_input_is_reported() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    // a directory: usage error, exit 2
    let out = bin("hub-tail")
        .arg(dir.path())
        .args(["--url", &hub.ws_url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory"), "{err}");
    // a binary file is reported and skipped, a text file next to it followed
    let bin_file = dir.path().join("core.log");
    std::fs::write(&bin_file, b"\x7fELF\0\0\0binary\n").unwrap();
    let text = dir.path().join("text.log");
    append(&text, "");
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[
            bin_file.to_str().unwrap(),
            text.to_str().unwrap(),
            "--from-start",
        ],
    );
    write_lines(&text, &["ok".to_string()]);
    expect_lines(&hub, "log:text", &["ok".to_string()], &tail);
    assert!(tail.stderr().contains("looks binary"), "{}", tail.stderr());
    assert!(lines(&hub, "log:core").is_empty());
}

#[test]
fn a_glob_matching_rotated_names_reads_each_line_once() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "");
    let pattern = format!("{}/app.log*", dir.path().display());
    let tail = Tail::start(&hub, dir.path(), &[&pattern, "--from-start"]);
    let mut expected = numbered("a", 0..5);
    write_lines(&log, &expected);
    expect_lines(&hub, "log:app", &expected, &tail);
    for round in ["b", "c"] {
        // logrotate: app.log.1 -> app.log.2, app.log -> app.log.1, new app.log
        let one = dir.path().join("app.log.1");
        if one.exists() {
            std::fs::rename(&one, dir.path().join("app.log.2")).unwrap();
        }
        std::fs::rename(&log, &one).unwrap();
        let next = numbered(round, 0..5);
        write_lines(&log, &next);
        expected.extend(next);
        expect_lines(&hub, "log:app", &expected, &tail);
    }
    assert_eq!(
        lines(&hub, "log:app.log"),
        Vec::<String>::new(),
        "{}",
        tail.stderr()
    );
}

/// The `data.line`, key and `data.file` of every stored `log` event on `topic`.
fn keyed_lines(hub: &Hub, topic: &str) -> Vec<(String, String, String)> {
    events(hub, topic)
        .iter()
        .filter(|e| e["type"] == "log")
        .map(|e| {
            (
                e["data"]["line"].as_str().unwrap_or("").to_string(),
                e["key"].as_str().unwrap_or("").to_string(),
                e["data"]["file"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Lines from two files: each file's lines exactly once and in order (they may
/// interleave), all under `file`, and the lines of each file under one key prefix
/// (`DEV:INO:UID:`), different for the two files.
fn expect_two_files(
    hub: &Hub,
    topic: &str,
    file: &Path,
    old: &[String],
    new: &[String],
    tail: &Tail,
) {
    let mut got = Vec::new();
    let done = |got: &[(String, String, String)]| {
        [old.last(), new.last()]
            .into_iter()
            .flatten()
            .all(|l| got.iter().any(|g| &g.0 == l))
    };
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the last line of both files", LIMIT, || {
            got = keyed_lines(hub, topic);
            done(&got)
        })
    }));
    let all: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
    if ok.is_err() {
        panic!(
            "timed out; got {all:?}\nhub-tail stderr:\n{}",
            tail.stderr()
        );
    }
    let prefix = |key: &str| key.rsplit_once(':').map(|(p, _)| p.to_string());
    let mut prefixes = Vec::new();
    for (part, want) in [(old, "old"), (new, "new")] {
        let mine: Vec<&(String, String, String)> =
            got.iter().filter(|g| part.contains(&g.0)).collect();
        let lines: Vec<String> = mine.iter().map(|g| g.0.clone()).collect();
        if lines != part {
            panic!(
                "{want} file: {}\nall: {all:?}\nhub-tail stderr:\n{}",
                describe_difference(&lines, part),
                tail.stderr()
            );
        }
        let p: std::collections::HashSet<Option<String>> =
            mine.iter().map(|g| prefix(&g.1)).collect();
        assert_eq!(p.len(), 1, "{want} file under one identity: {got:?}");
        prefixes.extend(p);
        assert!(
            mine.iter().all(|g| g.2 == file.to_str().unwrap()),
            "data.file is the followed path: {got:?}"
        );
    }
    assert_ne!(prefixes[0], prefixes[1], "two files, two identities");
    assert_eq!(got.len(), old.len() + new.len(), "nothing else: {all:?}");
}

fn write_to(f: &mut std::fs::File, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

fn open_append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

#[test]
fn a_renamed_file_is_read_until_its_writer_reopens_the_log() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // the application's log file, open before the rotation
    let mut app = open_append(&log);
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[log.to_str().unwrap(), "--from-start", "--rotate-wait", "3s"],
    );
    let mut old = numbered("old-", 0..5);
    write_to(&mut app, &old);
    expect_lines(&hub, "log:app", &old, &tail);
    // logrotate: rename, create; the application has not reopened yet
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let mut new = numbered("new-", 0..3);
    write_lines(&log, &new);
    wait_until("the rotation is noticed", LIMIT, || {
        !rotated_events(&hub, "log:app").is_empty()
            && lines(&hub, "log:app").contains(&"new-2".to_string())
    });
    // still written to the old file, after hub-tail moved to the new one
    let late = numbered("late-", 0..20);
    write_to(&mut app, &late);
    old.extend(late);
    app.write_all(b"late partial").unwrap();
    old.push("late partial".into());
    // postrotate: the application reopens its log
    drop(app);
    let more = numbered("new-", 3..10);
    write_lines(&log, &more);
    new.extend(more);
    expect_two_files(&hub, "log:app", &log, &old, &new, &tail);
    let rot = rotated_events(&hub, "log:app");
    assert_eq!(rot.len(), 1, "{rot:?}");
    assert_eq!(rot[0]["data"]["reason"], "renamed");
}

#[test]
fn kill9_during_the_rotate_wait_loses_and_repeats_nothing() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut app = open_append(&log);
    let args = [
        log.to_str().unwrap(),
        "--from-start",
        "--rotate-wait",
        "30s",
    ];
    let mut tail = Tail::start(&hub, dir.path(), &args);
    let mut old = numbered("old-", 0..5);
    write_to(&mut app, &old);
    expect_lines(&hub, "log:app", &old, &tail);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let mut new = numbered("new-", 0..3);
    write_lines(&log, &new);
    let late = numbered("late-", 0..5);
    write_to(&mut app, &late);
    old.extend(late);
    wait_until("lines of both files after the rotation", LIMIT, || {
        let got = lines(&hub, "log:app");
        got.contains(&"new-2".to_string()) && got.contains(&"late-4".to_string())
    });
    // a state file that names the rotated file
    let state = dir.path().join("state.json");
    wait_until("the rotated file in the state", LIMIT, || {
        std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"rotated\""))
    });
    tail.kill9();
    // written while hub-tail is down, to both files
    let down = numbered("down-", 0..5);
    write_to(&mut app, &down);
    old.extend(down);
    let more = numbered("new-", 3..6);
    write_lines(&log, &more);
    new.extend(more);
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[log.to_str().unwrap(), "--from-start", "--rotate-wait", "1s"],
    );
    let after = numbered("after-", 0..5);
    write_to(&mut app, &after);
    old.extend(after);
    // published when the (new) grace period ends
    app.write_all(b"old partial").unwrap();
    old.push("old partial".into());
    drop(app);
    let more = numbered("new-", 6..9);
    write_lines(&log, &more);
    new.extend(more);
    expect_two_files(&hub, "log:app", &log, &old, &new, &tail);
    // the state forgets the rotated file once its grace period is over
    wait_until("no rotated file in the state", LIMIT, || {
        std::fs::read_to_string(&state).is_ok_and(|s| !s.contains("\"rotated\""))
    });
}

#[test]
fn a_rotated_file_deleted_during_the_rotate_wait_is_read_and_closed() {
    let hub = Hub::start(&["--memory"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut app = open_append(&log);
    let tail = Tail::start(
        &hub,
        dir.path(),
        &[
            log.to_str().unwrap(),
            "--from-start",
            "--rotate-wait",
            "60s",
        ],
    );
    let mut old = numbered("old-", 0..3);
    write_to(&mut app, &old);
    expect_lines(&hub, "log:app", &old, &tail);
    let one = dir.path().join("app.log.1");
    std::fs::rename(&log, &one).unwrap();
    let mut new = numbered("new-", 0..3);
    write_lines(&log, &new);
    wait_until("the new file", LIMIT, || {
        lines(&hub, "log:app").contains(&"new-2".to_string())
    });
    let late = numbered("late-", 0..3);
    write_to(&mut app, &late);
    old.extend(late);
    app.write_all(b"cut short").unwrap();
    old.push("cut short".into());
    drop(app);
    // compress without delaycompress: the rotated file is removed
    std::fs::remove_file(&one).unwrap();
    // read to its end and closed well before the 60 s
    let more = numbered("new-", 3..5);
    write_lines(&log, &more);
    new.extend(more);
    expect_two_files(&hub, "log:app", &log, &old, &new, &tail);
}
