//! Chaos: publishers and subscribers keep going while hub-serve is killed with
//! SIGKILL and restarted on the same data dir and port, several times.
//!
//! Three `hub-emit TOPIC --lines` publishers are fed known lines in paced bursts;
//! three `hub-sub --all` subscribers (everything; one topic; a `--where` filter)
//! print what they get. The hub is killed whenever it has stored another share of
//! the lines. Afterwards every publisher has exited 0, every line is stored exactly
//! once and in the order it was written, and every subscriber has printed exactly
//! the stored events it matches, each once, in id order.

mod common;

use common::{Hub, bin, http, wait_child, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUBLISHERS: usize = 3;
/// Lines each publisher is fed.
const LINES: u64 = 6000;
/// Lines a publisher is fed at once, then [`PACE`]: many are in flight when the
/// hub is killed, some written and not yet acknowledged.
const BURST: u64 = 30;
/// The pause after each burst: about 4 s of publishing, 1,500 lines/s each.
const PACE: Duration = Duration::from_millis(20);
/// Times the hub is killed and restarted while the lines go out.
const KILLS: u64 = 4;

/// A child whose stdout is collected line by line and whose stderr goes to a file.
struct Proc {
    name: String,
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: PathBuf,
}

impl Proc {
    fn spawn(name: &str, dir: &std::path::Path, cmd: &mut std::process::Command) -> Proc {
        let err = dir.join(format!("{name}.err"));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            name: name.to_string(),
            child,
            out,
            err,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the exit, at most `limit`, and asserts it was 0.
    fn expect_success(&mut self, limit: Duration) {
        let st = wait_child(&mut self.child, limit)
            .unwrap_or_else(|| panic!("{} still running after {limit:?}", self.name));
        assert!(
            st.success(),
            "{} exited with {st}; stderr:\n{}",
            self.name,
            self.stderr()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The line publisher `p` writes as its `n`th (from 0); `--lines` makes it the data.
fn line(p: usize, n: u64) -> Value {
    json!({"p": p, "n": n, "odd": n % 2 == 1})
}

/// The hub's `/status`, or `None` while it does not answer.
fn status(hub: &Hub) -> Option<Value> {
    let mut r = http()
        .get(&format!("{}/status", hub.http_url()))
        .call()
        .ok()?;
    serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
}

/// Every event the hub holds, in id order.
fn stored(hub: &Hub) -> Vec<Value> {
    let mut r = http()
        .get(&format!("{}/events?since=0&limit=100000", hub.http_url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut()
        .read_to_string()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What a subscriber was asked for, as a test of a stored event.
struct Wanted {
    name: &'static str,
    args: &'static [&'static str],
    matches: fn(&Value) -> bool,
}

const SUBSCRIBERS: [Wanted; 3] = [
    Wanted {
        name: "sub-all",
        args: &[],
        matches: |_| true,
    },
    Wanted {
        name: "sub-p1",
        args: &["chaos:p1"],
        matches: |e| e["topic"] == "chaos:p1",
    },
    Wanted {
        name: "sub-odd",
        args: &["chaos:*", "--where", "data.odd=true"],
        matches: |e| e["topic"].as_str().unwrap().starts_with("chaos:") && e["data"]["odd"] == true,
    },
];

/// Differences between what a subscriber printed and what it should have, named
/// by id: the empty string when they agree.
fn compare(printed: &[Value], expected: &[Value]) -> String {
    let mut problems = Vec::new();
    let ids: Vec<u64> = printed.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(*id, i) {
            problems.push(format!(
                "id {id} printed twice (lines {} and {})",
                first + 1,
                i + 1
            ));
        }
        if i > 0 && ids[i - 1] >= *id {
            problems.push(format!(
                "out of order at line {}: id {} after {}",
                i + 1,
                id,
                ids[i - 1]
            ));
        }
    }
    let want: HashMap<u64, &Value> = expected
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e))
        .collect();
    let missing: Vec<u64> = expected
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .filter(|id| !seen.contains_key(id))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} stored event(s) never printed, ids {:?}{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            if missing.len() > 20 { " ..." } else { "" }
        ));
    }
    for e in printed {
        let id = e["id"].as_u64().unwrap();
        match want.get(&id) {
            None => problems.push(format!(
                "printed an event the hub does not hold as matching: {e}"
            )),
            Some(w) if *w != e => problems.push(format!("id {id} printed as {e}, stored as {w}")),
            Some(_) => {}
        }
    }
    problems.truncate(40);
    problems.join("\n")
}

#[test]
fn kill9_and_restart_while_publishing_and_subscribing() {
    let started = Instant::now();
    // fsync before each ack: events are then written a while before their ack goes
    // out, so a kill often falls in between and the publishers' resends must be
    // recognised by their keys.
    let mut hub = Hub::start(&["--fsync", "always"]);
    let dir = tempfile::tempdir().unwrap();
    let url = hub.ws_url();

    let mut subs: Vec<(Proc, &Wanted)> = SUBSCRIBERS
        .iter()
        .map(|w| {
            let mut cmd = bin("hub-sub");
            cmd.args(w.args)
                .args(["--all", "--until", "data.end=true", "--url", &url])
                .stdin(Stdio::null());
            (Proc::spawn(w.name, dir.path(), &mut cmd), w)
        })
        .collect();

    let mut pubs: Vec<Proc> = Vec::new();
    let mut feeders = Vec::new();
    for p in 0..PUBLISHERS {
        let mut cmd = bin("hub-emit");
        cmd.args([
            &format!("chaos:p{p}"),
            "--lines",
            "--timeout",
            "60s",
            "--url",
            &url,
        ])
        .stdin(Stdio::piped());
        let mut proc = Proc::spawn(&format!("hub-emit-p{p}"), dir.path(), &mut cmd);
        let mut stdin = proc.child.stdin.take().unwrap();
        feeders.push(std::thread::spawn(move || {
            for n in 0..LINES {
                // A failed write means hub-emit is gone; its exit status says why.
                if writeln!(stdin, "{}", line(p, n)).is_err() {
                    return;
                }
                if n % BURST == BURST - 1 {
                    std::thread::sleep(PACE);
                }
            }
        }));
        pubs.push(proc);
    }

    // Kill the hub each time it has stored another share of the lines, so that
    // every restart happens with publishers and subscribers busy.
    let total = PUBLISHERS as u64 * LINES;
    // Resends the hub recognised by their keys (events written, then the hub was
    // killed before their ack went out), summed over the hub's lives.
    let mut resent = 0;
    for k in 1..=KILLS {
        let target = total * k / (KILLS + 1);
        wait_until(
            &format!("the hub to store {target} events before kill {k}"),
            Duration::from_secs(30),
            || status(&hub).is_some_and(|st| st["last_id"].as_u64().unwrap() >= target),
        );
        resent += status(&hub).map_or(0, |st| st["dedup_total"].as_u64().unwrap());
        hub.kill9();
        hub.restart();
    }
    for f in feeders {
        f.join().unwrap();
    }
    for p in &mut pubs {
        p.expect_success(Duration::from_secs(60));
    }

    // The end marker matches every subscriber: each exits after printing it.
    let mut r = http()
        .post(&format!("{}/publish", hub.http_url()))
        .send(r#"{"topic":"chaos:p1","data":{"end":true,"odd":true}}"#)
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    for (s, _) in &mut subs {
        s.expect_success(Duration::from_secs(30));
    }

    resent += status(&hub).unwrap()["dedup_total"].as_u64().unwrap();
    let events = stored(&hub);
    // Every line stored exactly once, in the order its publisher wrote it.
    for p in 0..PUBLISHERS {
        let got: Vec<u64> = events
            .iter()
            .filter(|e| e["topic"] == format!("chaos:p{p}") && e["data"]["end"].is_null())
            .map(|e| {
                assert_eq!(e["data"]["p"], p, "{e}");
                assert_eq!(e["data"], line(p, e["data"]["n"].as_u64().unwrap()), "{e}");
                e["data"]["n"].as_u64().unwrap()
            })
            .collect();
        if got != (0..LINES).collect::<Vec<_>>() {
            let mut count: HashMap<u64, usize> = HashMap::new();
            for n in &got {
                *count.entry(*n).or_default() += 1;
            }
            let twice: Vec<_> = count
                .iter()
                .filter(|(_, c)| **c > 1)
                .map(|(n, _)| *n)
                .collect();
            let lost: Vec<_> = (0..LINES).filter(|n| !count.contains_key(n)).collect();
            panic!(
                "publisher {p}: {} line(s) stored, lost {lost:?}, stored more than once {twice:?}, \
                 in order: {}",
                got.len(),
                got.windows(2).all(|w| w[0] < w[1])
            );
        }
    }
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not increasing");
    assert_eq!(
        events.len() as u64,
        total + 1,
        "the lines and the end marker"
    );

    for (s, w) in &subs {
        let printed: Vec<Value> = s
            .out
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected: Vec<Value> = events.iter().filter(|e| (w.matches)(e)).cloned().collect();
        let problems = compare(&printed, &expected);
        assert!(
            problems.is_empty(),
            "{}: printed {} event(s), expected {}:\n{problems}\nstderr:\n{}",
            s.name,
            printed.len(),
            expected.len(),
            s.stderr()
        );
    }
    eprintln!(
        "chaos: {} events, {KILLS} kills, {resent} resends recognised, {:?}",
        events.len(),
        started.elapsed()
    );
}
