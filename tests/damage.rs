//! The log on a disk that lies: real segments written by a real hub-serve, bytes
//! flipped in them as a bad sector or a stray write would, then a restart. Intact
//! events are all served, lost ids are named (log, gap frames, X-Hub-Gap, /status),
//! ids are never reused, and `hub-serve --check` reports it all without changing a
//! byte.

mod common;

use common::ws::Client;
use common::{Hub, bin, http};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Segments of 1,000 events (a segment holds an eighth of --retain-events).
const SMALL_SEGMENTS: &[&str] = &["--retain-events", "8000"];

/// Publishes `n` events in POSTs of 100 (a segment is sealed between writes).
fn publish_n(hub: &Hub, n: usize) {
    for start in (0..n).step_by(100) {
        let body: String = (start..n.min(start + 100))
            .map(|i| format!("{{\"topic\":\"t:{}\",\"data\":{{\"i\":{i}}}}}\n", i % 3))
            .collect();
        let mut r = http()
            .post(&format!("{}/publish", hub.http_url()))
            .send(&body)
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 200, "{}", r.body_mut().read_to_string().unwrap());
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// GET /events from `since` to the end: the ids, and every X-Hub-Gap header seen.
fn poll_all(hub: &Hub, since: u64) -> (Vec<u64>, Vec<String>) {
    let (mut ids, mut gaps) = (Vec::new(), Vec::new());
    let mut since = since;
    loop {
        let mut r = http()
            .get(&format!(
                "{}/events?since={since}&limit=5000",
                hub.http_url()
            ))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        if let Some(g) = r.headers().get("x-hub-gap") {
            let reason = r.headers().get("x-hub-gap-reason").unwrap();
            gaps.push(format!(
                "{} {}",
                g.to_str().unwrap(),
                reason.to_str().unwrap()
            ));
        }
        let last: u64 = r.headers()["x-hub-last-id"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        ids.extend(body.lines().map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        }));
        if last == since {
            return (ids, gaps);
        }
        since = last;
    }
}

fn check(dir: &Path) -> (i32, String, String) {
    let out = bin("hub-serve")
        .args(["--check", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn post_one(hub: &Hub) -> u64 {
    let mut r = http()
        .post(&format!("{}/publish", hub.http_url()))
        .send("{\"topic\":\"after\"}")
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v["ids"][0].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_in_an_older_segment_loses_one_event_and_every_reader_is_told() {
    let mut hub = Hub::start(SMALL_SEGMENTS);
    publish_n(&hub, 3500);
    hub.kill9();
    let segs = segments(&hub.dir);
    assert!(segs.len() >= 4, "{segs:?}");
    let victim = segs[1].clone();
    let (code, text, _) = check(&hub.dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("the log is intact"), "{text}");
    assert!(text.contains("3500 events, ids 1-3500"), "{text}");

    let len = std::fs::metadata(&victim).unwrap().len();
    flip(&victim, len / 2);
    let damaged = std::fs::read(&victim).unwrap();

    // --check names the file, the offset and the one id lost, and changes nothing.
    let (code, text, _) = check(&hub.dir);
    assert_eq!(code, 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("DAMAGED"))
        .unwrap_or_else(|| panic!("no DAMAGED line in:\n{text}"));
    assert!(line.contains(&victim.display().to_string()), "{line}");
    let lost: u64 = line
        .rsplit_once("id ")
        .and_then(|(_, rest)| rest.strip_suffix(" lost"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("one id lost in: {line}"));
    assert!((1001..=2000).contains(&lost), "{line}");
    assert_eq!(std::fs::read(&victim).unwrap(), damaged);

    hub.restart();
    common::wait_until("the damage logged", Duration::from_secs(10), || {
        hub.stderr_text().contains("damaged log")
    });
    let log = hub.stderr_text();
    let err = log.lines().find(|l| l.contains("damaged log")).unwrap();
    assert!(err.contains("ERROR"), "{err}");
    assert!(err.contains(&victim.display().to_string()), "{err}");
    assert!(err.contains(&format!("id {lost} lost")), "{err}");
    assert!(err.contains("at byte "), "{err}");
    assert!(!log.contains("torn"), "{log}");
    // The damaged segment is kept as it was found.
    let copy = PathBuf::from(format!("{}.damaged", victim.display()));
    assert_eq!(std::fs::read(&copy).unwrap(), damaged);

    // Every intact event is served, before and after the damage.
    let (ids, gaps) = poll_all(&hub, 0);
    let want: Vec<u64> = (1..=3500).filter(|&i| i != lost).collect();
    assert_eq!(ids, want);
    assert_eq!(gaps, vec![format!("{lost}-{lost} corrupt")]);
    let st = hub.status();
    assert_eq!(
        (st["first_id"].as_u64(), st["damaged_events"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    let mut r = http()
        .get(&format!("{}/metrics", hub.http_url()))
        .call()
        .unwrap();
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("hub_damaged_events 1")
    );

    // A WebSocket replay gets a gap frame for it, in order.
    let mut c = Client::connect(&format!("{}/ws?since={}", hub.ws_url(), lost - 2)).await;
    assert_eq!(c.frame().await["type"], "subscribed");
    assert_eq!(c.frame().await["event"]["id"], lost - 1);
    assert_eq!(
        c.frame().await,
        json!({"type":"gap","sub":"q","from":lost,"to":lost,"reason":"corrupt"})
    );
    assert_eq!(c.frame().await["event"]["id"], lost + 1);

    // New ids follow the newest.
    assert_eq!(post_one(&hub), 3501);
    hub.kill9();
    // The repaired log checks clean, and says what was lost before.
    let (code, text, _) = check(&hub.dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("MISSING ids {lost}")), "{text}");
    assert!(text.contains(".damaged"), "{text}");
}

#[test]
fn damage_to_the_newest_records_never_lets_an_id_be_given_twice() {
    let mut hub = Hub::start(SMALL_SEGMENTS);
    publish_n(&hub, 2500);
    hub.kill9();
    let newest = segments(&hub.dir).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    // Three bytes in the last few records: the last ids cannot be read back.
    for back in [30, 200, 400] {
        flip(&newest, len - back);
    }
    hub.restart();
    common::wait_until("the damage logged", Duration::from_secs(10), || {
        hub.stderr_text().contains("damaged log")
    });
    let (ids, gaps) = poll_all(&hub, 0);
    assert!(ids.len() >= 2490 && ids.len() < 2500, "{}", ids.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(
        !gaps.is_empty() && gaps.iter().all(|g| g.ends_with("corrupt")),
        "{gaps:?}"
    );
    let first_new = post_one(&hub);
    assert!(
        first_new > 2500,
        "id {first_new} was given out before the damage"
    );
    // A restart with nothing else written still gives new ids only.
    hub.restart();
    let second = post_one(&hub);
    assert!(second > first_new);
    let (ids, _) = poll_all(&hub, 2400);
    assert_eq!(&ids[ids.len() - 2..], &[first_new, second]);
}

#[test]
fn a_torn_final_record_is_dropped_quietly() {
    let mut hub = Hub::start(&[]);
    publish_n(&hub, 10);
    hub.kill9();
    let newest = segments(&hub.dir).pop().unwrap();
    // What a crash in the middle of writing record 11 leaves: its first bytes.
    let mut rec = Vec::new();
    let json = br#"{"id":11,"ts":"2026-12-03T00:00:00.000Z","topic":"t","type":"message"}"#;
    hub::store::segment::encode_record(&mut rec, 11, 1, 0, b"", json);
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&rec[..rec.len() / 2]);
    std::fs::write(&newest, &bytes).unwrap();
    let (code, text, _) = check(&hub.dir);
    assert_eq!(code, 0, "a torn tail is not damage:\n{text}");
    assert!(text.contains("TORN"), "{text}");
    hub.restart();
    common::wait_until("the torn record logged", Duration::from_secs(10), || {
        hub.stderr_text().contains("torn")
    });
    assert!(
        !hub.stderr_text().contains("ERROR"),
        "{}",
        hub.stderr_text()
    );
    assert_eq!(poll_all(&hub, 0).0, (1..=10).collect::<Vec<_>>());
    assert_eq!(post_one(&hub), 11);
    assert_eq!(hub.status()["damaged_events"], 0);
}

#[test]
fn check_refuses_a_dir_in_use_or_missing() {
    let hub = Hub::start(&[]);
    publish_n(&hub, 3);
    let (code, _, err) = check(&hub.dir);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use by another hub-serve"), "{err}");
    let (code, _, err) = check(&hub.dir.join("nope"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
    let out = bin("hub-serve")
        .args(["--check", "--memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
