//! A real headless browser (Chromium) loads a page from another port and tries to
//! drive the hub: open a WebSocket, publish, read events. Without `--allow-origin`
//! nothing gets in; with it, the same page gets in (so the test can fail).
//!
//! Needs `chromium` (`.ci/run` installs it). Outside CI, the test is skipped with a
//! message when Chromium is missing; in CI (`CI` set) a missing Chromium fails it.

mod common;

use common::{CHROMIUM_FLAGS, Hub, browser_or_skip};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const hub = new URLSearchParams(location.search).get("hub");
const results = {ws: "pending", publish: "pending", events: "pending"};
let reported = false;
// Reports to the page's own server once every probe has its answer (or after 15 s).
function report(force) {
  document.getElementById("out").textContent = "RESULT " + JSON.stringify(results);
  const done = !["pending", "open"].includes(results.ws)
    && results.publish !== "pending" && results.events !== "pending";
  if (reported || !(done || force)) return;
  reported = true;
  fetch("/result", {method: "POST", body: JSON.stringify(results)});
}
try {
  const ws = new WebSocket("ws://" + hub + "/ws?topic=*&since=0");
  ws.onopen = () => { results.ws = "open"; ws.send(JSON.stringify({type: "publish", req: 1, event: {topic: "evil:ws"}})); report(); };
  ws.onmessage = (m) => { results.ws = "message:" + m.data.slice(0, 40); report(); };
  ws.onerror = () => { if (results.ws === "pending") results.ws = "error"; report(); };
  ws.onclose = () => { if (["pending", "open"].includes(results.ws)) results.ws = "closed"; report(); };
} catch (e) { results.ws = "exception"; }
fetch("http://" + hub + "/publish", {method: "POST", mode: "no-cors", body: '{"topic":"evil:fetch"}'})
  .then(r => { results.publish = "sent:" + r.type; report(); }, e => { results.publish = "failed"; report(); });
fetch("http://" + hub + "/events?since=0")
  .then(r => r.text()).then(t => { results.events = "read:" + t.length; report(); }, e => { results.events = "failed"; report(); });
setTimeout(() => report(true), 15000);
report();
</script></body></html>"#;

/// Serves PAGE on a free port of its own; returns its origin (`http://127.0.0.1:P`)
/// and what the page reports to it (`POST /result`, one JSON object per load). The
/// page takes the hub's address from its `?hub=` query.
fn serve_page() -> (String, Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let tx = Arc::new(Mutex::new(tx));
            let app = axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(|| async { axum::response::Html(PAGE) }),
                )
                .route(
                    "/result",
                    axum::routing::post(move |body: String| async move {
                        if let Ok(v) = serde_json::from_str::<Value>(&body) {
                            let _ = tx.lock().unwrap().send(v);
                        }
                    }),
                );
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{addr}"), rx)
}

/// Loads `url` in headless Chromium and returns what the page reported. Waits for
/// the report itself (bounded), not for a fixed time: on a busy machine the hub's
/// answers may take a while.
fn run_page(browser: &str, url: &str, results: &Receiver<Value>) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs");
    let got = results.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let out = child.wait_with_output().expect("chromium is reaped");
    got.unwrap_or_else(|_| {
        panic!(
            "the page reported nothing within 60 s; chromium's stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_page_from_another_origin_cannot_drive_the_hub() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let (origin, results) = serve_page();
    // Refused: a hub that allows no origin.
    let hub = Hub::start(&["--memory"]);
    let got = run_page(browser, &format!("{origin}/?hub={}", hub.addr), &results);
    assert_eq!(got["ws"], "error", "{got}");
    assert_eq!(got["events"], "failed", "{got}");
    assert_eq!(
        hub.status()["events"].as_u64().unwrap(),
        0,
        "nothing published from the page: {got}"
    );

    // Allowed: the same page, its origin given with --allow-origin, gets in.
    let hub = Hub::start(&["--memory", "--allow-origin", &origin]);
    let got = run_page(browser, &format!("{origin}/?hub={}", hub.addr), &results);
    assert!(got["ws"].as_str().unwrap().starts_with("message"), "{got}");
    assert!(
        got["events"].as_str().unwrap().starts_with("read:"),
        "{got}"
    );
    common::wait_until("the page's publishes", Duration::from_secs(10), || {
        hub.status()["events"].as_u64().unwrap() >= 1
    });
}
