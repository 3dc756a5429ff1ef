//! The log under crashes and restarts: kill -9 loses no acknowledged event, a torn
//! tail is dropped, ids keep increasing, keys keep deduplicating, retention trims.

mod common;

use common::ws::Client;
use common::{Hub, http};
use futures_util::SinkExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn all_events(hub: &Hub) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let mut r = http()
            .get(&format!(
                "{}/events?since={since}&limit=10000",
                hub.http_url()
            ))
            .call()
            .unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        let page: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if page.is_empty() {
            return out;
        }
        since = page.last().unwrap()["id"].as_u64().unwrap();
        out.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event() {
    let mut hub = Hub::start(&[]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    // Pipeline publishes and kill the hub while they are in flight.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new(); // n -> id
    let mut sent = 0u64;
    let pid = hub.pid();
    loop {
        let mut dead = false;
        for _ in 0..200 {
            let frame = json!({"type":"publish","req":sent,"event":{"topic":"crash","key":format!("k{sent}"),"data":{"n":sent}}});
            if c.ws.send(Message::text(frame.to_string())).await.is_err() {
                dead = true;
                break;
            }
            sent += 1;
        }
        if dead {
            break;
        }
        if sent == 2000 {
            common::signal(pid, "KILL");
        }
        match tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap()
        {
            common::ws::Got::Frame(f) if f["type"] == "ack" => {
                acked.insert(f["req"].as_u64().unwrap(), f["id"].as_u64().unwrap());
            }
            common::ws::Got::Frame(f) => panic!("{f}"),
            common::ws::Got::Closed(_) => break,
        }
        // Read what else is already there without waiting.
        while let Ok(Some(common::ws::Got::Frame(f))) =
            tokio::time::timeout(Duration::from_millis(1), c.next())
                .await
                .map(Some)
        {
            if f["type"] == "ack" {
                acked.insert(f["req"].as_u64().unwrap(), f["id"].as_u64().unwrap());
            }
        }
        if sent > 20_000 {
            panic!("the hub did not die");
        }
    }
    assert!(!acked.is_empty());
    tokio::task::spawn_blocking(move || {
        hub.restart();
        let events = all_events(&hub);
        let by_id: BTreeMap<u64, &Value> = events
            .iter()
            .map(|e| (e["id"].as_u64().unwrap(), e))
            .collect();
        for (n, id) in &acked {
            let e = by_id
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged event {n} (id {id}) lost"));
            assert_eq!(e["data"]["n"], *n);
        }
        // Ids are consecutive from 1: nothing torn is served.
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["id"], i as u64 + 1);
        }
        // Resending what was not acknowledged stores only what is missing.
        let last = events.len() as u64;
        let body: String = (0..sent)
            .map(|n| format!("{{\"topic\":\"crash\",\"key\":\"k{n}\",\"data\":{{\"n\":{n}}}}}\n"))
            .collect();
        let ids = hub.publish_body(&body);
        let ids: Vec<u64> = ids["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        for (n, id) in &acked {
            assert_eq!(
                ids[*n as usize], *id,
                "a retried key answers its original id"
            );
        }
        let after = all_events(&hub);
        assert_eq!(after.len() as u64, sent);
        assert!(
            after[last as usize..]
                .iter()
                .all(|e| e["id"].as_u64().unwrap() > last)
        );
    })
    .await
    .unwrap();
}

#[test]
fn torn_tail_is_dropped_and_ids_continue() {
    let mut hub = Hub::start(&[]);
    hub.publish_body(&"{\"topic\":\"a\",\"data\":\"x\"}\n".repeat(10));
    hub.kill9();
    // A record cut short by a crash mid-write.
    let seg = std::fs::read_dir(&hub.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let mut rec = Vec::new();
    hub::store::segment::encode_record(&mut rec, 11, 1, 0, b"", br#"{"id":11}"#);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&rec[..11]).unwrap();
    drop(f);
    hub.restart();
    common::wait_until(
        "a warning about the torn record",
        Duration::from_secs(10),
        || hub.stderr_text().contains("torn"),
    );
    assert_eq!(all_events(&hub).len(), 10);
    assert_eq!(hub.publish_body("{\"topic\":\"a\"}"), json!({"ids":[11]}));
    hub.restart();
    assert_eq!(hub.publish_body("{\"topic\":\"a\"}"), json!({"ids":[12]}));
    assert_eq!(all_events(&hub).len(), 12);
}

#[test]
fn sigterm_flushes_and_restart_keeps_everything() {
    let mut hub = Hub::start(&["--fsync", "never"]);
    hub.publish_body(&"{\"topic\":\"a\",\"key\":\"same\"}\n".repeat(3));
    hub.publish_body("{\"topic\":\"b\"}");
    assert!(hub.terminate().success());
    hub.restart();
    assert_eq!(all_events(&hub).len(), 2);
    // The key is remembered across the restart.
    assert_eq!(
        hub.publish_body("{\"topic\":\"a\",\"key\":\"same\"}"),
        json!({"ids":[1]})
    );
}

#[test]
fn fsync_always_acknowledges_after_the_write() {
    let mut hub = Hub::start(&["--fsync", "always"]);
    let ids = hub.publish_body(&"{\"topic\":\"a\"}\n".repeat(50));
    assert_eq!(ids["ids"].as_array().unwrap().len(), 50);
    hub.kill9();
    hub.restart();
    assert_eq!(all_events(&hub).len(), 50);
}

#[tokio::test]
async fn retention_trims_and_a_late_subscriber_gets_a_gap() {
    let hub = Hub::start(&["--retain-events", "100"]);
    for _ in 0..10 {
        hub.publish_body(&"{\"topic\":\"a\"}\n".repeat(50));
    }
    let st = hub.status();
    let first = st["first_id"].as_u64().unwrap();
    assert!(first > 1, "{st}");
    assert!(
        st["events"].as_u64().unwrap() >= 100,
        "at least what was asked is kept: {st}"
    );
    assert_eq!(st["last_id"], 500);
    let mut c = Client::connect(&format!("{}/ws?since=0", hub.ws_url())).await;
    assert_eq!(c.frame().await["type"], "subscribed");
    assert_eq!(
        c.frame().await,
        json!({"type":"gap","sub":"q","from":1,"to":first-1,"reason":"retention"})
    );
    assert_eq!(c.frame().await["event"]["id"], first);
    // Ids keep increasing after trimming.
    assert_eq!(hub.publish_body("{\"topic\":\"a\"}"), json!({"ids":[501]}));
}

#[test]
fn memory_mode_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::spawn(&dir.path().join("unused"), "127.0.0.1:0", &["--memory"]);
    assert_eq!(hub.publish_body("{\"topic\":\"a\"}"), json!({"ids":[1]}));
    assert_eq!(all_events(&hub).len(), 1);
    assert!(!dir.path().join("unused").exists());
    assert!(hub.stderr_text().contains("memory"));
}

#[test]
fn a_second_hub_on_the_same_data_dir_is_refused() {
    let hub = Hub::start(&[]);
    let out = common::bin("hub-serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&hub.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another hub-serve"), "{err}");
}

#[test]
fn busy_port_and_bad_flags_are_clear_errors() {
    let hub = Hub::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin("hub-serve")
        .args(["--listen", &hub.addr.to_string(), "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    let out = common::bin("hub-serve")
        .args(["--fsync", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("always") && err.contains("batch"), "{err}");
}

#[test]
fn tells_systemd_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = common::bin("hub-serve")
        .args(["--listen", "127.0.0.1:0", "--memory"])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification from hub-serve");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    common::signal(child.id(), "TERM");
    let status =
        common::wait_child(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(status.success());
}

#[test]
fn warns_when_listening_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::spawn(dir.path(), "0.0.0.0:0", &["--memory"]);
    common::wait_until("the warning", Duration::from_secs(10), || {
        hub.stderr_text().contains("beyond loopback")
    });
    // With a token: no warning before the hub says it is ready (it warns before).
    let quiet = Hub::spawn(dir.path(), "0.0.0.0:0", &["--memory", "--token", "t"]);
    common::wait_until("ready", Duration::from_secs(10), || {
        quiet.stderr_text().contains("ready")
    });
    assert!(
        !quiet.stderr_text().contains("beyond loopback"),
        "{}",
        quiet.stderr_text()
    );
}
