//! The WebSocket side of hub-serve, driven by a real WebSocket client:
//! subscriptions, replay/live hand-over, slow consumers, publishes, errors and
//! close codes.

mod common;

use common::Hub;
use common::ws::{Client, Got};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn many(topic: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"topic\":\"{topic}\",\"data\":{{\"n\":{i}}}}}\n"))
        .collect()
}

#[tokio::test]
async fn query_string_subscription_needs_no_frame() {
    let hub = Hub::start(&[]);
    hub.publish_body(&many("log:a", 3));
    let mut c = Client::connect(&format!("{}/ws?topic=log:*&since=1", hub.ws_url())).await;
    assert_eq!(
        c.frame().await,
        json!({"type":"subscribed","sub":"q","last_id":3})
    );
    for id in [2, 3] {
        let f = c.frame_skip_live().await;
        assert_eq!(
            (
                f["type"].as_str(),
                f["sub"].as_str(),
                f["event"]["id"].as_u64()
            ),
            (Some("event"), Some("q"), Some(id))
        );
    }
    hub.publish_body(&many("other", 1));
    hub.publish_body(&many("log:b", 1));
    let f = c.frame_skip_live().await;
    assert_eq!(f["event"]["id"], 5);
    assert_eq!(f["event"]["topic"], "log:b");
}

#[tokio::test]
async fn subscribe_frames_since_last_and_filters() {
    let hub = Hub::start(&[]);
    hub.publish_body("{\"topic\":\"task:a\",\"data\":{\"status\":\"failed\"}}\n{\"topic\":\"task:b\",\"data\":{\"status\":\"ok\"}}\n{\"topic\":\"task:c\",\"data\":{\"status\":\"failed\"}}\n{\"topic\":\"log:x\"}\n",
    );
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send(json!({"type":"subscribe","sub":"s1","topics":["task:*"],"where":["data.status=failed"],"since":0})).await;
    assert_eq!(
        c.frame().await,
        json!({"type":"subscribed","sub":"s1","last_id":4})
    );
    assert_eq!(c.frame().await["event"]["topic"], "task:a");
    assert_eq!(c.frame().await["event"]["topic"], "task:c");
    assert_eq!(
        c.frame().await,
        json!({"type":"live","sub":"s1","last_id":4})
    );
    c.send(json!({"type":"subscribe","sub":"s2","last":2}))
        .await;
    assert_eq!(c.frame().await["type"], "subscribed");
    assert_eq!(c.frame().await["event"]["id"], 3);
    assert_eq!(c.frame().await["event"]["id"], 4);
    c.send(json!({"type":"unsubscribe","sub":"s2"})).await;
    c.send(json!({"type":"ping"})).await;
    loop {
        let f = c.frame().await;
        if f["type"] == "pong" {
            break;
        }
    }
    hub.publish_body("{\"topic\":\"task:d\",\"data\":{\"status\":\"failed\"}}\n");
    let f = c.frame_skip_live().await;
    assert_eq!(
        (f["sub"].as_str(), f["event"]["id"].as_u64()),
        (Some("s1"), Some(5)),
        "s2 is gone, s1 live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_hands_over_to_live_under_concurrent_publishing() {
    let hub = Hub::start(&[]);
    hub.publish_body(&many("t", 2000));
    // A publisher pipelines 3000 more over its own socket while we replay.
    let url = format!("{}/ws", hub.ws_url());
    let publisher = tokio::spawn(async move {
        let mut p = Client::connect(&url).await;
        for i in 0..3000 {
            p.send(json!({"type":"publish","req":i,"event":{"topic":"t","data":{"n":i}}}))
                .await;
        }
        let mut acked = 0;
        while acked < 3000 {
            if p.frame().await["type"] == "ack" {
                acked += 1;
            }
        }
    });
    let mut c = Client::connect(&format!("{}/ws?since=0", hub.ws_url())).await;
    assert_eq!(c.frame().await["type"], "subscribed");
    let mut expect = 1;
    while expect <= 5000 {
        let f = c.frame_skip_live().await;
        assert_eq!(f["event"]["id"], expect, "no gap, no duplicate, in order");
        expect += 1;
    }
    publisher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_still_gets_everything_in_order() {
    let hub = Hub::start(&[]);
    let mut slow = Client::connect(&format!("{}/ws?topic=t", hub.ws_url())).await;
    assert_eq!(slow.frame().await["type"], "subscribed");
    assert_eq!(slow.frame().await["type"], "live");
    let mut fast = Client::connect(&format!("{}/ws?topic=t", hub.ws_url())).await;
    assert_eq!(fast.frame().await["type"], "subscribed");
    // 30,000 events (30 MB) pass while `slow` reads nothing; `fast` keeps up.
    let pad = "p".repeat(1000);
    let body: String = (0..1000)
        .map(|i| format!("{{\"topic\":\"t\",\"data\":{{\"n\":{i},\"pad\":\"{pad}\"}}}}\n"))
        .collect();
    let mut fast_seen = 0u64;
    for _ in 0..30 {
        hub.publish_body(&body);
        while fast_seen < 1000 * 30 {
            let f = fast.frame_skip_live().await;
            fast_seen = f["event"]["id"].as_u64().unwrap();
            if fast_seen.is_multiple_of(1000) {
                break;
            }
        }
    }
    assert_eq!(fast_seen, 30_000);
    for expect in 1..=30_000u64 {
        let f = slow.frame_skip_live().await;
        assert_eq!(f["event"]["id"], expect);
    }
    let st: Value = serde_json::from_str(
        &common::http()
            .get(&format!("{}/status", hub.http_url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert!(st["lagged_total"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["gaps_total"], 0);
}

/// Batch frames (written by the writer thread) and single events (written at once
/// when nothing is queued) pipelined on one socket: the answers come in the order
/// the frames were sent, and the ids follow that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_and_single_events_are_answered_in_order() {
    let hub = Hub::start(&[]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    let mut sizes = Vec::new();
    for req in 0..120u64 {
        let size = if req % 3 == 0 { 200 } else { 1 };
        let events: Vec<Value> = (0..size)
            .map(|i| json!({"topic":"t","data":{"req":req,"i":i}}))
            .collect();
        c.send(json!({"type":"publish","req":req,"events":events}))
            .await;
        sizes.push(size);
    }
    let mut next_id = 1;
    for (req, size) in sizes.into_iter().enumerate() {
        let f = c.frame().await;
        assert_eq!(
            (f["type"].as_str(), f["req"].as_u64()),
            (Some("ack"), Some(req as u64)),
            "{f}"
        );
        let want: Vec<u64> = (next_id..next_id + size).collect();
        assert_eq!(f["ids"], json!(want), "req {req}");
        next_id += size;
    }
}

#[tokio::test]
async fn publish_frames_are_acked_and_keys_deduplicate() {
    let hub = Hub::start(&[]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send(json!({"type":"publish","req":7,"event":{"topic":"task:build-42","type":"progress","data":{"percent":50}}})).await;
    assert_eq!(c.frame().await, json!({"type":"ack","req":7,"id":1}));
    c.send(json!({"type":"publish","req":"a","event":{"topic":"x","key":"once"}}))
        .await;
    c.send(json!({"type":"publish","req":"b","event":{"topic":"x","key":"once"}}))
        .await;
    assert_eq!(c.frame().await, json!({"type":"ack","req":"a","id":2}));
    assert_eq!(c.frame().await, json!({"type":"ack","req":"b","id":2}));
    c.send(json!({"type":"publish","req":8,"event":{"topic":"bad topic"}}))
        .await;
    let f = c.frame().await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str(), f["req"].as_u64()),
        (Some("error"), Some("bad_request"), Some(8))
    );
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays() {
    let hub = Hub::start(&[]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    for bad in [
        "not json".to_string(),
        json!({"type":"shout"}).to_string(),
        json!({"type":"subscribe","sub":"s1","topicz":["a"]}).to_string(),
        json!({"type":"subscribe","sub":"s1","where":["nofield"]}).to_string(),
        json!({"type":"subscribe","sub":"s1","since":1,"last":2}).to_string(),
        json!({"type":"unsubscribe","sub":"nope"}).to_string(),
    ] {
        c.send_raw(Message::text(bad.clone())).await;
        let f = c.frame().await;
        assert_eq!(f["type"], "error", "{bad}");
        assert_eq!(f["code"], "bad_request", "{bad}");
        if bad.contains("topicz") {
            assert!(f["message"].as_str().unwrap().contains("topicz"), "{f}");
        }
    }
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.frame().await, json!({"type":"pong"}));
}

#[tokio::test]
async fn binary_and_oversize_frames_close_the_connection() {
    let hub = Hub::start(&["--max-event-bytes", "1KiB"]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(c.closed().await, Some(1003));
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send_raw(Message::text("x".repeat(64 * 1024))).await;
    assert_eq!(c.closed().await, Some(1009));
    // An event just over the limit in a frame under it: an error, not a close.
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send(json!({"type":"publish","req":1,"event":{"topic":"a","data":"y".repeat(1100)}}))
        .await;
    let f = c.frame().await;
    assert_eq!(
        (f["code"].as_str(), f["req"].as_u64()),
        (Some("too_large"), Some(1))
    );
}

#[tokio::test]
async fn close_codes_for_bad_query_token_and_limits() {
    let hub = Hub::start(&[
        "--token",
        "tok",
        "--max-connections",
        "2",
        "--max-subscriptions",
        "1",
    ]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    assert_eq!(c.closed().await, Some(4401));
    let mut c = Client::connect(&format!("{}/ws?token=tok&since=x", hub.ws_url())).await;
    assert_eq!(c.closed().await, Some(4400));
    // The refused connections are counted until the server has closed them.
    let status_url = format!("{}/status?token=tok", hub.http_url());
    common::wait_until(
        "refused connections to end",
        Duration::from_secs(10),
        || {
            let body = common::http()
                .get(&status_url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            // Only the connection asking is left.
            serde_json::from_str::<Value>(&body).unwrap()["connections"] == 1
        },
    );
    let mut a = Client::connect(&format!("{}/ws?token=tok", hub.ws_url())).await;
    // The asking connection may still hold its slot for a moment after the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let _b = loop {
        let mut b = Client::connect(&format!("{}/ws?token=tok&topic=b", hub.ws_url())).await;
        match b.next().await {
            Got::Frame(f) if f["type"] == "subscribed" => break b,
            Got::Closed(Some(4429)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("second connection not served: {other:?}"),
        }
    };
    let mut c = Client::connect(&format!("{}/ws?token=tok", hub.ws_url())).await;
    assert_eq!(c.closed().await, Some(4429));
    a.send(json!({"type":"subscribe","sub":"one"})).await;
    assert_eq!(a.frame().await["type"], "subscribed");
    a.send(json!({"type":"subscribe","sub":"two"})).await;
    let f = a.frame_skip_live().await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("too_many"))
    );
}

#[tokio::test]
async fn foreign_origin_cannot_upgrade() {
    let hub = Hub::start(&[]);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/ws", hub.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = format!("{}/ws", hub.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Host", "rebind.evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn idle_clients_are_closed_with_1001() {
    let hub = Hub::start(&["--idle-timeout", "600ms"]);
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    // Read nothing (so no pong goes back) for longer than the timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(c.closed().await, Some(1001));
}

#[tokio::test]
async fn durable_cursor_resumes_where_the_last_run_stopped() {
    let hub = Hub::start(&[]);
    hub.publish_body(&many("job", 5));
    let url = format!("{}/ws", hub.ws_url());
    let mut c = Client::connect(&url).await;
    c.send(json!({"type":"subscribe","sub":"d","durable":"nightly","since":0}))
        .await;
    assert_eq!(c.frame().await["type"], "subscribed");
    for _ in 0..3 {
        c.frame_skip_live().await;
    }
    c.send(json!({"type":"cursor","durable":"nightly","id":3}))
        .await;
    c.send(json!({"type":"ping"})).await;
    loop {
        if c.frame().await["type"] == "pong" {
            break;
        }
    }
    drop(c);
    let mut c = Client::connect(&url).await;
    c.send(json!({"type":"subscribe","sub":"d","durable":"nightly"}))
        .await;
    assert_eq!(c.frame().await["type"], "subscribed");
    assert_eq!(c.frame_skip_live().await["event"]["id"], 4);
    // A new name without since starts live.
    let mut n = Client::connect(&url).await;
    n.send(json!({"type":"subscribe","sub":"d","durable":"fresh"}))
        .await;
    assert_eq!(n.frame().await["type"], "subscribed");
    assert_eq!(n.frame().await["type"], "live");
    hub.publish_body(&many("job", 1));
    assert_eq!(n.frame().await["event"]["id"], 6);
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut hub = Hub::start(&[]);
    let mut c = Client::connect(&format!("{}/ws?topic=a", hub.ws_url())).await;
    assert_eq!(c.frame().await["type"], "subscribed");
    let start = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let st = hub.terminate();
        (st, hub)
    });
    assert_eq!(c.closed().await, Some(1001));
    let (st, _hub) = status.await.unwrap();
    assert!(st.success(), "{st:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let _ = Got::Closed(None);
}

/// Beyond SPEC: several events in one `publish` frame, one `ack` with their ids; the
/// hub names its frame limit in the handshake so clients know how much fits.
#[tokio::test]
async fn batch_publish_frames() {
    let hub = Hub::start(&["--max-event-bytes", "1KiB"]);
    let url = format!("{}/ws", hub.ws_url());
    let (ws, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(
        response.headers()["x-hub-max-frame"].to_str().unwrap(),
        (1024 + 4096).to_string()
    );
    let mut c = Client { ws };
    let mut s = Client::connect(&format!("{url}?topic=b:*")).await;
    assert_eq!(s.frame().await["type"], "subscribed");

    c.send(json!({"type":"publish","req":1,"events":[
        {"topic":"b:1","data":{"n":1}},
        {"topic":"b:2","type":"progress","data":{"percent":5}},
        {"topic":"b:3","key":"k"},
        {"topic":"b:4","key":"k"},
    ]}))
    .await;
    // The repeated key is stored once and answered with the first id.
    assert_eq!(
        c.frame().await,
        json!({"type":"ack","req":1,"ids":[1,2,3,3]})
    );
    for (id, topic) in [(1, "b:1"), (2, "b:2"), (3, "b:3")] {
        let f = s.frame_skip_live().await;
        assert_eq!(
            (f["event"]["id"].as_u64(), f["event"]["topic"].as_str()),
            (Some(id), Some(topic))
        );
    }

    // One invalid event refuses the whole frame: nothing of it is stored.
    c.send(json!({"type":"publish","req":2,"events":[
        {"topic":"b:5"},
        {"topic":"bad topic"},
    ]}))
    .await;
    let f = c.frame().await;
    assert_eq!(
        (f["type"].as_str(), f["req"].as_u64()),
        (Some("error"), Some(2))
    );
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("events[1]") && msg.contains("nothing"),
        "{msg}"
    );

    // An event the log refuses (too large once encoded) is refused alone.
    let big = "x".repeat(1000);
    c.send(json!({"type":"publish","req":3,"events":[
        {"topic":"b:6"},
        {"topic":"b:7","data":{"big":big}},
    ]}))
    .await;
    let f = c.frame().await;
    assert_eq!(f["ids"], json!([4, null]), "{f}");
    assert_eq!(f["errors"][0]["index"], 1);
    assert_eq!(f["errors"][0]["code"], "too_large");
    let f = s.frame_skip_live().await;
    assert_eq!(
        (f["event"]["id"].as_u64(), f["event"]["topic"].as_str()),
        (Some(4), Some("b:6"))
    );

    for (bad, says) in [
        (json!({"type":"publish","req":4,"events":[]}), "empty"),
        (
            json!({"type":"publish","req":5,"event":{"topic":"a"},"events":[{"topic":"a"}]}),
            "not both",
        ),
    ] {
        c.send(bad).await;
        let f = c.frame().await;
        assert_eq!(f["type"], "error");
        assert!(f["message"].as_str().unwrap().contains(says), "{f}");
    }
    let status = common::http()
        .get(&format!("{}/status", hub.http_url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["last_id"], 4);
}

/// Beyond SPEC: a `"batch":true` subscription gets the events that are ready
/// together in `events` frames, one event per line, all in order.
#[tokio::test]
async fn batch_subscriptions_get_events_frames() {
    let hub = Hub::start(&[]);
    hub.publish_body(&many("b:old", 300));
    let mut c = Client::connect(&format!("{}/ws", hub.ws_url())).await;
    c.send(json!({"type":"subscribe","sub":"s","topics":["b:*"],"since":0,"batch":true}))
        .await;
    assert_eq!(c.frame().await["type"], "subscribed");
    hub.publish_body(&many("b:new", 300));
    let mut ids = Vec::new();
    let mut frames = 0;
    let mut batched = false;
    while ids.len() < 600 {
        let t = match tokio::time::timeout(Duration::from_secs(10), c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            other => panic!("no frame: {other:?}"),
        };
        let f: Value = serde_json::from_str(t.as_str()).unwrap();
        match f["type"].as_str().unwrap() {
            "event" => ids.push(f["event"]["id"].as_u64().unwrap()),
            "events" => {
                batched = true;
                assert!(
                    t.as_str()
                        .starts_with("{\"type\":\"events\",\"sub\":\"s\",\"events\":[\n{")
                );
                for e in f["events"].as_array().unwrap() {
                    ids.push(e["id"].as_u64().unwrap());
                }
            }
            "live" => continue,
            other => panic!("unexpected {other}: {f}"),
        }
        frames += 1;
    }
    assert_eq!(ids, (1..=600).collect::<Vec<u64>>());
    assert!(batched && frames < 600, "{frames} frames for 600 events");
}
