//! A real headless browser (Chromium) loads a page from another port and tries to
//! drive the hub: open a WebSocket, publish, read events. Without `--allow-origin`
//! nothing gets in; with it, the same page gets in (so the test can fail).
//!
//! Needs `chromium` (`.ci/run` installs it). Outside CI, the test is skipped with a
//! message when Chromium is missing; in CI (`CI` set) a missing Chromium fails it.

mod common;

use common::{Hub, http};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const hub = new URLSearchParams(location.search).get("hub");
const results = {ws: "pending", publish: "pending", events: "pending"};
function show() { document.getElementById("out").textContent = "RESULT " + JSON.stringify(results); }
try {
  const ws = new WebSocket("ws://" + hub + "/ws?topic=*&since=0");
  ws.onopen = () => { results.ws = "open"; ws.send(JSON.stringify({type: "publish", req: 1, event: {topic: "evil:ws"}})); show(); };
  ws.onmessage = (m) => { results.ws = "message:" + m.data.slice(0, 40); show(); };
  ws.onerror = () => { if (results.ws === "pending") results.ws = "error"; show(); };
} catch (e) { results.ws = "exception"; }
fetch("http://" + hub + "/publish", {method: "POST", mode: "no-cors", body: '{"topic":"evil:fetch"}'})
  .then(r => { results.publish = "sent:" + r.type; show(); }, e => { results.publish = "failed"; show(); });
fetch("http://" + hub + "/events?since=0")
  .then(r => r.text()).then(t => { results.events = "read:" + t.length; show(); }, e => { results.events = "failed"; show(); });
show();
</script></body></html>"#;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// Serves PAGE on a free port of its own; returns its origin (`http://127.0.0.1:P`).
/// The page takes the hub's address from its `?hub=` query.
fn serve_page() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(|| async { axum::response::Html(PAGE) }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

/// Loads `url` in headless Chromium and returns what the page reported.
fn run_page(browser: &str, url: &str) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--timeout=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split("RESULT ")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no result in the page; stdout:\n{dom}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(&json.replace("&quot;", "\"").replace("&amp;", "&")).unwrap()
}

fn events(hub: &Hub) -> u64 {
    let mut r = http()
        .get(&format!("{}/status", hub.http_url()))
        .call()
        .unwrap();
    let st: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    st["events"].as_u64().unwrap()
}

#[test]
fn a_page_from_another_origin_cannot_drive_the_hub() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed");
        return;
    };
    let origin = serve_page();
    // Refused: a hub that allows no origin.
    let hub = Hub::start(&["--memory"]);
    let got = run_page(browser, &format!("{origin}/?hub={}", hub.addr));
    assert_eq!(got["ws"], "error", "{got}");
    assert_eq!(got["events"], "failed", "{got}");
    assert_eq!(events(&hub), 0, "nothing published from the page: {got}");

    // Allowed: the same page, its origin given with --allow-origin, gets in.
    let hub = Hub::start(&["--memory", "--allow-origin", &origin]);
    let got = run_page(browser, &format!("{origin}/?hub={}", hub.addr));
    assert!(got["ws"].as_str().unwrap().starts_with("message"), "{got}");
    assert!(
        got["events"].as_str().unwrap().starts_with("read:"),
        "{got}"
    );
    common::wait_until("the page's publishes", Duration::from_secs(10), || {
        events(&hub) >= 1
    });
}
