//! The dashboard at `/`, in a real headless Chromium driven over the DevTools
//! protocol (raw CDP over tokio-tungstenite): what a person sees (visible text,
//! progress values, the URL) for each view with live updates, filters from the URL,
//! a `kill -9` and restart of the hub with nothing lost or doubled on the page, the
//! polling fallback through a proxy that refuses WebSocket upgrades, the token,
//! hostile data, and the flood bounds. Screenshots of each view are written to
//! `target/dashboard-screenshots/`.
//!
//! Needs `chromium` (`.ci/run` installs it). Outside CI, the tests are skipped with a
//! message when Chromium is missing; in CI (`CI` set) a missing Chromium fails them.
//! The tests take turns (one Chromium at a time): the machine may have 2 cores.

mod common;

use common::{CHROMIUM_FLAGS, Hub, bin, browser_or_skip, http, ids_of, json_lines, post_publish};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// One Chromium at a time.
static TURN: Mutex<()> = Mutex::new(());

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Headless Chromium with a fresh profile, driven over CDP. Its calls block; the
/// socket is served by a runtime of its own.
struct Browser {
    rt: tokio::runtime::Runtime,
    child: Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: AtomicU64,
    /// Exceptions thrown in any page (`Runtime.exceptionThrown`).
    errors: Arc<Mutex<Vec<String>>>,
}

/// One tab, attached with its own CDP session.
struct Page<'a> {
    b: &'a Browser,
    session: String,
}

impl Browser {
    fn launch(path: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(path)
            .args(CHROMIUM_FLAGS)
            .args(["--remote-debugging-port=0", "--window-size=1280,800"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium runs");
        // DevToolsActivePort: the port on line 1, the browser's WebSocket path on 2.
        let file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(t) = std::fs::read_to_string(&file) {
                let mut lines = t.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pending: Pending = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (out, mut rx) = mpsc::unbounded_channel::<String>();
        // connect_async sends no Origin header, which Chromium's DevTools requires.
        let (ws, _) = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_tungstenite::connect_async(url.as_str()),
                )
                .await
            })
            .expect("DevTools connect timed out")
            .expect("DevTools connect");
        let (mut sink, mut stream) = ws.split();
        rt.spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(Message::text(m)).await.is_err() {
                    break;
                }
            }
        });
        let (p, e) = (pending.clone(), errors.clone());
        rt.spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(v);
                    }
                } else if v["method"] == "Runtime.exceptionThrown" {
                    let d = &v["params"]["exceptionDetails"];
                    let text = d["exception"]["description"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| d.to_string());
                    e.lock().unwrap().push(text);
                }
            }
        });
        Browser {
            rt,
            child,
            _profile: profile,
            out,
            pending,
            next: AtomicU64::new(1),
            errors,
        }
    }

    /// One CDP call (on `session`, or the browser itself), answered within 30 s.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out
            .send(msg.to_string())
            .expect("DevTools socket open");
        let v = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx).await })
            .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
            .expect("DevTools answered");
        if let Some(e) = v.get("error") {
            panic!("{method}: {e}");
        }
        v["result"].clone()
    }

    fn page(&self) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let r = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let page = Page {
            b: self,
            session: r["sessionId"].as_str().unwrap().to_string(),
        };
        page.call("Runtime.enable", json!({}));
        page.call("Page.enable", json!({}));
        page
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page<'_> {
    fn call(&self, method: &str, params: Value) -> Value {
        self.b.call(Some(&self.session), method, params)
    }

    fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait(
            "the page to load",
            "document.readyState === 'complete' && !!document.getElementById('main')",
        );
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    fn eval(&self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    fn text(&self, expr: &str) -> String {
        match self.eval(expr) {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// The visible text of the page.
    fn body(&self) -> String {
        self.text("document.body.innerText")
    }

    /// Polls `cond` (a JS expression) every 25 ms until it is true, at most 20 s.
    fn wait(&self, what: &str, cond: &str) {
        self.wait_for(what, cond, Duration::from_secs(20));
    }

    fn wait_for(&self, what: &str, cond: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(&format!("!!({cond})")) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.body();
                panic!(
                    "timed out after {limit:?} waiting for {what} ({cond});\nURL {}\npage text:\n{}\npage errors: {:?}",
                    self.text("location.href"),
                    &body[..body.len().min(3000)],
                    self.b.errors()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the visible text contains `needle`.
    fn wait_text(&self, needle: &str) {
        let js = serde_json::to_string(needle).unwrap();
        self.wait(
            &format!("{needle:?} on the page"),
            &format!("document.body.innerText.includes({js})"),
        );
    }

    fn click(&self, selector: &str) {
        let js = serde_json::to_string(selector).unwrap();
        self.wait(
            &format!("{selector} to click"),
            &format!("document.querySelector({js})"),
        );
        self.eval(&format!("document.querySelector({js}).click()"));
    }

    /// Presses one key (`/`, ` `, `Escape`) on the focused element.
    fn key(&self, key: &str) {
        let (code, text) = match key {
            "/" => ("Slash", "/"),
            " " => ("Space", " "),
            "Escape" => ("Escape", ""),
            other => panic!("no key {other}"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({"type": kind, "key": key, "code": code});
            if kind == "keyDown" && !text.is_empty() {
                p["text"] = text.into();
            }
            self.call("Input.dispatchKeyEvent", p);
        }
    }

    /// Types `text` into the focused element.
    fn type_text(&self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    fn url(&self) -> String {
        self.text("location.href")
    }

    /// Writes a PNG of the page to `target/dashboard-screenshots/NAME.png`, once the
    /// page's animations have finished (waiting at most 2 s for them).
    fn screenshot(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self.eval("document.getAnimations().some(a => a.playState === 'running')")
                == Value::Bool(true)
        {
            std::thread::sleep(Duration::from_millis(25));
        }
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.png")),
            base64_decode(r["data"].as_str().unwrap()),
        )
        .unwrap();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

fn ev(topic: &str, kind: &str, data: Value) -> Value {
    json!({"topic": topic, "type": kind, "data": data, "source": "test"})
}

/// The `data-id`s of the rows shown in the current view, in page order.
fn shown_ids(page: &Page<'_>) -> Vec<u64> {
    let v = page
        .eval("[...document.querySelectorAll('main [data-id]')].map(e => Number(e.dataset.id))");
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}

fn conn_state(page: &Page<'_>) -> String {
    page.text("document.getElementById('conn').dataset.state")
}

#[test]
fn tasks_and_task_views_show_live_progress() {
    let Some(path) = browser_or_skip() else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let hub = Hub::start(&[]);
    hub.publish_events(&[
        ev("task:old", "task_started", json!({})),
        ev(
            "task:old",
            "task_completed",
            json!({"duration_seconds": 2.5}),
        ),
        ev(
            "task:build-1",
            "task_started",
            json!({"command": "make all"}),
        ),
    ]);
    let browser = Browser::launch(path);
    let page = browser.page();
    page.goto(&format!("{}/", hub.http_url()));
    page.wait(
        "the page to be live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    page.wait_text("task:build-1");
    let row = |topic: &str, what: &str| -> String {
        page.text(&format!(
            "document.querySelector('li[data-topic=\"{topic}\"] {what}')?.textContent"
        ))
    };
    assert_eq!(row("task:build-1", ".status"), "running");
    assert_eq!(row("task:old", ".status"), "completed");
    assert!(row("task:old", ".meta").contains("duration 2.5 s"));
    // The task list is a list, running tasks first.
    assert_eq!(
        page.eval("[...document.querySelectorAll('ul.tasks > li')].map(l => l.dataset.topic)"),
        json!(["task:build-1", "task:old"])
    );
    // /tasks names the newest id folded into it.
    let tasks: Value = serde_json::from_str(
        &http()
            .get(&format!("{}/tasks", hub.http_url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(tasks["last_id"], 3, "{tasks}");

    // Live progress: the bar's value and the percent as text.
    let progress = |topic: &str| -> Value {
        page.eval(&format!(
            "document.querySelector('li[data-topic=\"{topic}\"] progress').value"
        ))
    };
    for (pct, msg) in [(25, "fetching"), (50, "compiling")] {
        hub.publish_events(&[ev(
            "task:build-1",
            "progress",
            json!({"percent": pct, "message": msg}),
        )]);
        page.wait(
            &format!("{pct}%"),
            &format!(
                "document.querySelector('li[data-topic=\"task:build-1\"] .pct')?.textContent === '{pct}%'"
            ),
        );
        assert_eq!(progress("task:build-1"), json!(pct));
        assert_eq!(row("task:build-1", ".msg"), msg);
    }
    hub.publish_events(&[ev(
        "task:deploy",
        "task_failed",
        json!({"error": "disk full", "exit_code": 2}),
    )]);
    page.wait(
        "the failed task",
        "document.querySelector('li[data-topic=\"task:deploy\"] .status')?.textContent === 'failed'",
    );
    let meta = row("task:deploy", ".meta");
    assert!(
        meta.contains("exit code 2") && meta.contains("error: disk full"),
        "{meta}"
    );
    page.screenshot("tasks");

    // Keyboard: `/` focuses the filter box; typing filters the list.
    page.eval("document.activeElement.blur()");
    page.key("/");
    assert_eq!(
        page.eval("document.activeElement.matches('[data-filter]')"),
        json!(true)
    );
    page.type_text("deploy");
    page.wait(
        "the filter to leave one task",
        "document.querySelectorAll('ul.tasks > li').length === 1",
    );
    page.key("Escape");
    page.eval("const f = document.querySelector('[data-filter]'); f.value = ''; f.dispatchEvent(new Event('input'))");
    page.wait(
        "all tasks again",
        "document.querySelectorAll('ul.tasks > li').length === 3",
    );

    // Dark mode and reduced motion follow the system settings.
    let bg = "getComputedStyle(document.body).backgroundColor";
    let light = page.text(bg);
    page.call(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    page.wait("dark colours", &format!("{bg} !== '{light}'"));
    assert_eq!(page.text(bg), "rgb(22, 24, 28)");
    page.screenshot("tasks-dark");
    page.eval("document.querySelector('ul.tasks > li').classList.add('fresh')");
    assert_eq!(
        page.text("getComputedStyle(document.querySelector('ul.tasks > li')).animationName"),
        "fresh"
    );
    page.call(
        "Emulation.setEmulatedMedia",
        json!({"features": [
            {"name": "prefers-color-scheme", "value": "light"},
            {"name": "prefers-reduced-motion", "value": "reduce"}
        ]}),
    );
    page.eval("document.querySelector('ul.tasks > li').classList.add('fresh')");
    assert_eq!(
        page.text("getComputedStyle(document.querySelector('ul.tasks > li')).animationName"),
        "none"
    );
    page.call("Emulation.setEmulatedMedia", json!({"features": []}));

    // A click opens the task view: its timeline, then live updates, in order.
    page.click("li[data-topic=\"task:build-1\"]");
    page.wait(
        "the task view",
        "location.search === '?view=task&topic=task%3Abuild-1'",
    );
    page.wait_text("started: make all");
    let timeline = || page.text("document.querySelector('ol.timeline').innerText");
    let tl = timeline();
    let (a, b, c) = (
        tl.find("started: make all").unwrap(),
        tl.find("progress 25% fetching").unwrap(),
        tl.find("progress 50% compiling").unwrap(),
    );
    assert!(a < b && b < c, "{tl}");
    hub.publish_events(&[
        ev("task:build-1", "log", json!({"line": "cc -c main.c"})),
        ev("task:build-1", "log", json!({"line": "ld -o app"})),
        ev(
            "task:build-1",
            "task_completed",
            json!({"exit_code": 0, "duration_seconds": 4.0}),
        ),
    ]);
    page.wait_text("completed (exit code 0) in 4.0 s");
    page.wait_text("ld -o app");
    let log = page.text("document.querySelector('.task-split section:last-child').innerText");
    assert!(
        log.find("cc -c main.c").unwrap() < log.find("ld -o app").unwrap(),
        "{log}"
    );
    assert_eq!(
        page.text("document.querySelector('.task-head .pct').textContent"),
        "100%"
    );
    page.screenshot("task");

    // hub-emit --run --capture: the command's own output shows as the task's log.
    let st = bin("hub-emit")
        .args([
            "--url",
            &hub.ws_url(),
            "task:capture",
            "--run",
            "--capture",
            "--",
        ])
        .args(["sh", "-c", "echo first-line; echo second-line"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    page.goto(&format!("{}/?view=task&topic=task:capture", hub.http_url()));
    page.wait_text("second-line");
    page.wait_text("completed (exit code 0)");
    let body = page.body();
    assert!(body.find("first-line").unwrap() < body.find("second-line").unwrap());

    // Back goes to the previous view.
    page.goto(&format!("{}/?view=tasks", hub.http_url()));
    page.click("a[href=\"?view=events\"]");
    page.wait("the events view", "location.search === '?view=events'");
    page.eval("history.back()");
    page.wait(
        "the tasks view again",
        "location.search === '?view=tasks' && !!document.querySelector('ul.tasks')",
    );
    assert_eq!(browser.errors(), Vec::<String>::new());
}

#[test]
fn events_and_logs_views_follow_the_url_and_survive_a_kill9() {
    let Some(path) = browser_or_skip() else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut hub = Hub::start(&[]);
    let browser = Browser::launch(path);
    let page = browser.page();

    // Filters from the URL: a topic glob and a where filter.
    page.goto(&format!(
        "{}/?view=events&topic=app:*&where=data.level%3Derror",
        hub.http_url()
    ));
    page.wait(
        "live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    assert_eq!(
        page.text("document.querySelector('input[name=topic]').value"),
        "app:*"
    );
    assert_eq!(
        page.text("document.querySelector('input[name=where]').value"),
        "data.level=error"
    );
    hub.publish_events(&[
        ev(
            "app:web",
            "message",
            json!({"level": "info", "message": "not shown"}),
        ),
        ev(
            "other",
            "message",
            json!({"level": "error", "message": "not shown either"}),
        ),
        ev(
            "app:web",
            "message",
            json!({"level": "error", "message": "disk failing"}),
        ),
    ]);
    page.wait_text("disk failing");
    assert!(!page.body().contains("not shown"));
    let row = page.text("document.querySelector('.row .sum').innerText");
    assert!(
        row.contains("app:web") && row.contains("message") && row.contains("test"),
        "{row}"
    );
    assert!(
        page.text("document.querySelector('.row .t').title")
            .ends_with("(UTC)"),
        "the time shows UTC on hover"
    );
    // A click expands the whole event as JSON.
    page.click(".row .sum");
    page.wait_text("\"level\": \"error\"");
    // copy as hub-sub
    page.click(".toolbar button.copy");
    page.wait("the command line", "!!document.querySelector('.cli code')");
    let cli = page.text("document.querySelector('.cli code').textContent");
    assert!(
        cli.starts_with("hub-sub 'app:*' --where data.level=error --url ws://"),
        "{cli}"
    );

    // Space pauses (the page keeps receiving and counts), space again resumes.
    page.eval("document.activeElement.blur()");
    page.key(" ");
    page.wait_text("paused, 0 new");
    hub.publish_events(&[
        ev(
            "app:web",
            "message",
            json!({"level": "error", "message": "while paused 1"}),
        ),
        ev(
            "app:web",
            "message",
            json!({"level": "error", "message": "while paused 2"}),
        ),
    ]);
    page.wait_text("paused, 2 new");
    assert!(!page.body().contains("while paused 1"));
    page.key(" ");
    page.wait_text("while paused 2");
    page.screenshot("events");

    // kill -9 of the hub, restart, more events: each shown once, in order.
    page.goto(&format!("{}/?view=events&topic=seq", hub.http_url()));
    page.wait(
        "live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    let mut ids = hub.publish_events(
        &(0..30)
            .map(|n| ev("seq", "message", json!({"n": n})))
            .collect::<Vec<_>>(),
    );
    page.wait(
        "30 rows",
        "document.querySelectorAll('main .row').length === 30",
    );
    hub.kill9();
    page.wait(
        "the page to notice",
        "document.getElementById('conn').textContent.startsWith('reconnecting')",
    );
    assert!(page.eval("!document.getElementById('retry').hidden") == json!(true));
    page.screenshot("reconnecting");
    hub.restart();
    ids.extend(
        hub.publish_events(
            &(30..60)
                .map(|n| ev("seq", "message", json!({"n": n})))
                .collect::<Vec<_>>(),
        ),
    );
    page.wait_for(
        "60 rows after the restart",
        "document.querySelectorAll('main .row').length >= 60",
        Duration::from_secs(30),
    );
    ids.extend(
        hub.publish_events(
            &(60..65)
                .map(|n| ev("seq", "message", json!({"n": n})))
                .collect::<Vec<_>>(),
        ),
    );
    page.wait(
        "65 rows",
        "document.querySelectorAll('main .row').length >= 65",
    );
    assert_eq!(conn_state(&page), "live");
    assert_eq!(shown_ids(&page), ids, "every event once, in order");
    let ns = page.eval(
        "[...document.querySelectorAll('main .row .txt')].map(e => JSON.parse(e.textContent).n)",
    );
    assert_eq!(ns, json!((0..65).collect::<Vec<_>>()));

    // logs: the last N lines, then live ones, a rotation marker, search.
    for i in 0..5 {
        hub.publish_events(&[ev(
            "log:app",
            "log",
            json!({"line": format!("line {i}"), "file": "/var/log/app.log"}),
        )]);
    }
    page.goto(&format!(
        "{}/?view=logs&topic=log:app&last=3",
        hub.http_url()
    ));
    page.wait_text("line 4");
    let lines = || page.text("document.querySelector('main .rows').innerText");
    assert_eq!(lines(), "line 2\nline 3\nline 4");
    hub.publish_events(&[
        ev("log:app", "rotated", json!({"file": "/var/log/app.log"})),
        ev("log:app", "log", json!({"line": "after rotation ERROR x"})),
        ev("log:app", "log", json!({"line": "an error again"})),
    ]);
    page.wait_text("an error again");
    assert_eq!(
        lines(),
        "line 2\nline 3\nline 4\n— rotated: /var/log/app.log —\nafter rotation ERROR x\nan error again"
    );
    page.eval("document.activeElement.blur()");
    page.key("/");
    page.type_text("error");
    page.wait_text("2 matching lines");
    assert_eq!(
        page.eval("[...document.querySelectorAll('main mark')].map(m => m.textContent)"),
        json!(["ERROR", "error"])
    );
    page.screenshot("logs");
    // last= above 1000 is capped, and says so.
    page.goto(&format!(
        "{}/?view=logs&topic=log:app&last=5000",
        hub.http_url()
    ));
    page.wait_text("last=5000 is more than 1000");

    // Replaying from an id retention has removed: a gap row, then what is left.
    let small = Hub::start(&["--retain-events", "16"]);
    // In separate appends, so that whole segments fill and are trimmed.
    let mut ids = Vec::new();
    for k in 0..25 {
        ids.extend(
            small.publish_events(
                &(0..4)
                    .map(|n| ev("g", "message", json!({"n": k * 4 + n})))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    page.goto(&format!(
        "{}/?view=events&topic=g&since=0",
        small.http_url()
    ));
    page.wait(
        "the gap row and the last event",
        &format!(
            "!!document.querySelector('main .gap') && !!document.querySelector('[data-id=\"{}\"]')",
            ids.last().unwrap()
        ),
    );
    let gap = page.text("document.querySelector('main .gap').textContent");
    let shown = shown_ids(&page);
    assert!(!shown.is_empty(), "events after the gap are shown");
    assert_eq!(*shown.last().unwrap(), *ids.last().unwrap());
    assert_eq!(
        gap,
        format!("ids 1–{} are gone: retention", shown[0] - 1),
        "the gap row names exactly the ids before the first one shown"
    );
    assert_eq!(browser.errors(), Vec::<String>::new());
}

/// A proxy in front of the hub that refuses WebSocket upgrades while `refuse` is
/// set and forwards plain HTTP (one request per connection). Returns its address.
fn proxy(hub: std::net::SocketAddr, refuse: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let refuse = refuse.clone();
            std::thread::spawn(move || {
                let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let upgrade = text.contains("upgrade: websocket");
                if upgrade && refuse.load(Ordering::SeqCst) {
                    let _ = client.write_all(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(hub) else {
                    return;
                };
                let head = if upgrade {
                    head
                } else {
                    // One request per connection: the next one comes through here again.
                    let t = String::from_utf8_lossy(&head).to_string();
                    let mut out: String = t
                        .trim_end()
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    out.push_str("Connection: close\r\n\r\n");
                    out.into_bytes()
                };
                if upstream.write_all(&head).is_err() {
                    return;
                }
                let mut up2 = upstream.try_clone().unwrap();
                let mut c2 = client.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut upstream, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn falls_back_to_polling_when_websockets_are_refused() {
    let Some(path) = browser_or_skip() else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let hub = Hub::start(&[]);
    let refuse = Arc::new(AtomicBool::new(true));
    let via = proxy(hub.addr, refuse.clone());
    let browser = Browser::launch(path);
    let page = browser.page();
    page.goto(&format!("http://{via}/?view=events&topic=poll"));
    page.wait_for(
        "the polling state",
        "document.getElementById('conn').textContent === 'Live updates unavailable -- polling'",
        Duration::from_secs(30),
    );
    let mut ids = hub.publish_events(&[ev("poll", "message", json!({"message": "polled one"}))]);
    page.wait_text("polled one");
    ids.extend(
        hub.publish_events(
            &(0..20)
                .map(|n| ev("poll", "message", json!({"message": format!("p{n}")})))
                .collect::<Vec<_>>(),
        ),
    );
    page.wait_text("p19");
    assert_eq!(shown_ids(&page), ids);
    page.screenshot("polling");
    // The WebSocket works again: "retry now" goes back to it, and nothing repeats.
    refuse.store(false, Ordering::SeqCst);
    page.click("#retry");
    page.wait(
        "live again",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    ids.extend(hub.publish_events(&[ev("poll", "message", json!({"message": "over the socket"}))]));
    page.wait_text("over the socket");
    assert_eq!(shown_ids(&page), ids);
    assert_eq!(browser.errors(), Vec::<String>::new());
}

#[test]
fn token_hostile_data_and_flood_bounds() {
    let Some(path) = browser_or_skip() else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // The files are served without the token, with their headers; data is not.
    let hub = Hub::start(&["--token", "s3cret"]);
    let r = http().get(&format!("{}/", hub.http_url())).call().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains('*'),
        "{csp}"
    );
    assert_eq!(h["cache-control"], "no-cache");
    let etag = h["etag"].to_str().unwrap().to_string();
    let r = http()
        .get(&format!("{}/dashboard", hub.http_url()))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http()
        .get(&format!("{}/tasks", hub.http_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let off = Hub::start(&["--memory", "--no-dashboard"]);
    let r = http().get(&format!("{}/", off.http_url())).call().unwrap();
    assert_eq!(r.status(), 404);

    let browser = Browser::launch(path);
    let page = browser.page();
    // No token: "unauthorized" and a prompt; the prompt's token gets in.
    page.goto(&format!("{}/?view=events&topic=*", hub.http_url()));
    page.wait(
        "unauthorized",
        "document.getElementById('conn').textContent === 'unauthorized' && !document.getElementById('token-form').hidden",
    );
    page.screenshot("unauthorized");
    page.eval("document.getElementById('token-input').focus()");
    page.type_text("s3cret");
    page.eval("document.getElementById('token-form').requestSubmit()");
    page.wait(
        "live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    assert_eq!(page.text("sessionStorage.getItem('hub-token')"), "s3cret");
    assert!(!page.url().contains("s3cret"));

    // From the fragment: kept in sessionStorage, gone from the URL.
    let page2 = browser.page();
    page2.goto(&format!(
        "{}/?view=events&topic=x:*#token=s3cret",
        hub.http_url()
    ));
    page2.wait(
        "live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    assert_eq!(
        page2.url(),
        format!("{}/?view=events&topic=x:*", hub.http_url())
    );
    assert_eq!(page2.text("sessionStorage.getItem('hub-token')"), "s3cret");

    // Hostile data is shown literally and runs nothing.
    let img = "<img src=x onerror=\"window.__pwned=1\">";
    let script = "<script>window.__pwned=2</script>";
    post_publish(
        &hub.http_url(),
        Some("s3cret"),
        &json_lines(&[
            json!({"topic": "x:hostile", "type": "message", "source": img,
                 "data": {"message": script}}),
        ]),
    );
    page2.wait_text(script);
    assert!(page2.body().contains(img));
    assert_eq!(page2.eval("window.__pwned === undefined"), json!(true));
    assert_eq!(
        page2.eval("document.querySelectorAll('main img, main script').length"),
        json!(0)
    );
    page2.click(".row .sum");
    page2.wait("the expanded JSON", "!!document.querySelector('.row pre')");
    assert!(
        page2
            .text("document.querySelector('.row pre').textContent")
            .contains("<img src=x")
    );
    assert_eq!(page2.eval("window.__pwned === undefined"), json!(true));
    page2.screenshot("hostile");

    // A flood: the DOM stays bounded and says what it left out.
    page2.goto(&format!("{}/?view=events&topic=flood", hub.http_url()));
    page2.wait(
        "live",
        "document.getElementById('conn').dataset.state === 'live'",
    );
    let mut last = 0;
    for chunk in 0..5 {
        let evs: Vec<Value> = (0..1000)
            .map(|n| {
                ev(
                    "flood",
                    "message",
                    json!({"message": format!("f{}", chunk * 1000 + n)}),
                )
            })
            .collect();
        last = *ids_of(&post_publish(
            &hub.http_url(),
            Some("s3cret"),
            &json_lines(&evs),
        ))
        .last()
        .unwrap();
    }
    page2.wait_for(
        "the last flood event",
        &format!("!!document.querySelector('[data-id=\"{last}\"]')"),
        Duration::from_secs(30),
    );
    page2.wait_text("3500 older events not shown");
    assert_eq!(
        page2.eval("document.querySelectorAll('main .row').length"),
        json!(1500)
    );
    let dom = page2
        .eval("document.getElementsByTagName('*').length")
        .as_u64()
        .unwrap();
    assert!(dom < 20_000, "{dom} DOM elements");
    assert_eq!(browser.errors(), Vec::<String>::new());
}
