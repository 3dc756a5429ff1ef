//! The JetStream store (src/nats/) against a real `nats-server -js` on a free
//! loopback port with a temp store dir: stream creation and checks, ids and bytes,
//! key dedup, retention gaps, the feeder through `kill -9` of the server, connect
//! failures, durable cursors.
//!
//! Skipped (with a line on stderr) when `nats-server` is not installed, except under
//! CI (env `CI` set), where that fails: `.ci/run` installs Debian's `nats-server`.
#![cfg(feature = "nats")]

mod common;

use common::nats::{NatsServer, free_port};

use hub::event::{Fields, IncomingEvent, Prepared, StoredEvent, TsField, format_ts};
use hub::nats::{self, Feed, JsStore, NatsConfig, NatsError, PublishError};
use hub::store::GapReason;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(url: &str) -> NatsConfig {
    let mut c = NatsConfig::new(vec![url.to_string()]);
    c.connect_timeout = Duration::from_secs(15);
    c
}

async fn open(c: &NatsConfig) -> JsStore {
    nats::connect(c.clone())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn event(topic: &str, kind: &str, key: Option<&str>, n: u64) -> Prepared {
    let mut v =
        serde_json::json!({"topic": topic, "type": kind, "data": {"n": n, "s": "x y\n\u{e9}"}});
    if let Some(k) = key {
        v["key"] = k.into();
    }
    IncomingEvent::from_json(&v.to_string()).unwrap().into()
}

fn events(from: u64, count: u64) -> Vec<Prepared> {
    (from..from + count)
        .map(|n| event("ci:build", "log", None, n))
        .collect()
}

async fn publish_ok(store: &JsStore, evs: &[Prepared]) -> Vec<u64> {
    store
        .publish(evs)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("publish: {e}")).id)
        .collect()
}

/// Runs a test body within a bound.
async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"));
}

fn n_of(e: &StoredEvent) -> u64 {
    e.data()["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_then_checks_the_stream_and_refuses_a_recreated_one() {
    let Some(server) = NatsServer::start("creates_then_checks_the_stream") else {
        return;
    };
    bounded(90, async {
        let c = cfg(&server.url());
        let a = open(&c).await;
        eprintln!(
            "nats-server {} (notes: {:?})",
            a.server_version(),
            a.notes()
        );
        assert_ne!(
            nats::check_version(a.server_version()),
            nats::Version::TooOld
        );
        assert!(
            a.notes().iter().all(|n| !n.contains("differs")),
            "{:?}",
            a.notes()
        );
        let js = async_nats::jetstream::new(a.client().clone());
        let info = js.get_stream("HUB").await.unwrap().cached_info().clone();
        assert_eq!(info.config.subjects, vec!["hub.ev", "hub.task"]);
        assert_eq!(info.config.max_messages, 1_000_000);
        assert!(info.config.deny_delete && info.config.deny_purge);

        // A second node checks the same stream and agrees on its epoch.
        let b = open(&c).await;
        assert_eq!(b.epoch(), a.epoch());
        assert!(
            b.notes().iter().all(|n| !n.contains("differs")),
            "{:?}",
            b.notes()
        );

        // One with other limits uses the stream as it is, with a note.
        let mut other = c.clone();
        other.retain_events = 10;
        let o = open(&other).await;
        assert!(
            o.notes()
                .iter()
                .any(|n| n.contains("max_msgs is 1000000, not 10")),
            "{:?}",
            o.notes()
        );
        let after = js.get_stream("HUB").await.unwrap().cached_info().clone();
        assert_eq!(
            after.config.max_messages, 1_000_000,
            "checked, never updated"
        );

        // A stream that cannot hold hub events is refused, saying why.
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "ELSE".into(),
            subjects: vec!["else.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut unfit = c.clone();
        unfit.stream = "ELSE".into();
        let e = nats::connect(unfit).await.err().expect("refused");
        assert!(matches!(e, NatsError::StreamUnfit { .. }), "{e}");
        assert!(
            e.to_string().contains("does not take subject hub.ev"),
            "{e}"
        );

        // Deleted and made again: its ids start at 1 again, so every node refuses it.
        publish_ok(&a, &events(0, 3)).await;
        js.delete_stream("HUB").await.unwrap();
        let e = nats::connect(c.clone()).await.err().expect("refused");
        assert!(matches!(e, NatsError::Recreated { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("nats kv del hub_meta HUB"), "{text}");
        assert!(text.contains(&server.url()), "{text}");
        let e = a.stats().await.expect_err("the running node notices too");
        assert!(matches!(e, NatsError::Recreated { .. }), "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_the_stream_sequence_and_every_node_reads_the_same_bytes() {
    let Some(server) = NatsServer::start("ids_are_the_stream_sequence") else {
        return;
    };
    bounded(90, async {
        let c = cfg(&server.url());
        let a = open(&c).await;
        let b = open(&c).await;
        let mut sent: Vec<Prepared> = Vec::new();
        let mut ids = Vec::new();
        for (i, node) in [&a, &b, &a].into_iter().enumerate() {
            let mut batch = events(i as u64 * 40, 40);
            batch[7] = event("task:build-1", "task_started", None, i as u64 * 40 + 7);
            let got = publish_ok(node, &batch).await;
            sent.extend(batch);
            ids.extend(got);
        }
        assert_eq!(
            ids,
            (1..=120).collect::<Vec<_>>(),
            "ids are the stream sequence"
        );

        let ra = a.read_after(0, 1000).await.unwrap();
        let rb = b.read_after(0, 1000).await.unwrap();
        assert!(ra.gap.is_none());
        assert_eq!(ra.next_after, 120);
        let ja: Vec<&str> = ra.events.iter().map(|e| e.json.as_str()).collect();
        let jb: Vec<&str> = rb.events.iter().map(|e| e.json.as_str()).collect();
        assert_eq!(ja, jb, "the same bytes on every node");
        let now = hub::event::now_millis();
        for (e, p) in ra.events.iter().zip(&sent) {
            // What the embedded log's writer would have stored, with the stream's ts.
            let log = StoredEvent::stamp(p.clone(), e.id, e.ts, &TsField::new(&format_ts(e.ts)));
            assert_eq!(e.json, log.json);
            assert!(
                e.ts <= now && e.ts + 60_000 > now,
                "ts {} is the stream's",
                e.ts
            );
        }
        // Task events go to hub.task, the rest to hub.ev.
        let js = async_nats::jetstream::new(a.client().clone());
        let stream = js.get_stream("HUB").await.unwrap();
        assert_eq!(
            stream.get_raw_message(8).await.unwrap().subject.as_str(),
            "hub.task"
        );
        assert_eq!(
            stream.get_raw_message(9).await.unwrap().subject.as_str(),
            "hub.ev"
        );
        // ts is the stream's stored time, in ms.
        let raw = stream.get_raw_message(77).await.unwrap();
        let ms = (raw.time.unix_timestamp_nanos() / 1_000_000) as u64;
        assert_eq!(ra.events[76].ts, ms);
        // A starting node replays the task events alone.
        let (tasks, upto) = b.task_events().await.unwrap();
        assert_eq!(
            tasks.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![8, 48, 88]
        );
        assert!(tasks.iter().all(|e| e.kind() == "task_started"));
        assert_eq!(tasks[1].json, ra.events[47].json);
        assert_eq!(upto, 120);

        let part = b.read_after(50, 10).await.unwrap();
        assert_eq!(
            part.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            (51..=60).collect::<Vec<_>>()
        );
        assert_eq!(part.next_after, 60);
        let upto = b.read_range(50, 55, 10).await.unwrap();
        assert_eq!(
            upto.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            (51..=55).collect::<Vec<_>>()
        );
        assert_eq!(upto.next_after, 55);
        let end = a.read_after(120, 10).await.unwrap();
        assert!(end.events.is_empty() && end.gap.is_none() && end.next_after == 120);

        let s = b.stats().await.unwrap();
        assert_eq!(
            (s.events, s.first_id, s.last_id, s.damaged),
            (120, 1, 120, 0)
        );
        assert!(s.bytes > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_dedup_across_nodes_and_oversize_is_refused() {
    let Some(server) = NatsServer::start("keys_dedup_across_nodes") else {
        return;
    };
    bounded(90, async {
        let mut c = cfg(&server.url());
        c.max_event_bytes = 1024;
        let a = open(&c).await;
        let b = open(&c).await;
        let first = a.publish(&[event("t", "m", Some("deploy-42"), 1)]).await;
        let first = first[0].clone().unwrap();
        assert!(!first.duplicate);
        let again = b.publish(&[event("t", "m", Some("deploy-42"), 2)]).await;
        assert_eq!(again[0].clone().unwrap().id, first.id, "same key, same id");
        assert!(again[0].clone().unwrap().duplicate);
        // A key headers cannot carry as it is (k64:).
        let crlf = a.publish(&[event("t", "m", Some("a b\r\nc"), 3)]).await[0]
            .clone()
            .unwrap();
        let crlf2 = b.publish(&[event("t", "m", Some("a b\r\nc"), 4)]).await[0]
            .clone()
            .unwrap();
        assert_eq!(crlf2.id, crlf.id);
        // The same key twice in one pipelined batch, and keyless twins.
        let batch = a
            .publish(&[
                event("t", "m", Some("twice"), 5),
                event("t", "m", Some("twice"), 6),
                event("t", "m", None, 7),
                event("t", "m", None, 7),
            ])
            .await;
        let ids: Vec<u64> = batch.iter().map(|r| r.clone().unwrap().id).collect();
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[2], ids[3]);
        // Duplicates took no sequence: ids stay gap-free.
        assert_eq!(ids, vec![3, 3, 4, 5]);
        let got = b.read_after(0, 100).await.unwrap();
        assert_eq!(
            got.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(got.events[0].key(), Some("deploy-42"));
        assert_eq!(got.events[1].key(), Some("a b\r\nc"));
        assert_eq!(
            n_of(&got.events[0]),
            1,
            "the first publish is what is stored"
        );

        // Above the stream's max_msg_size: refused, typed, and no id is used.
        let big = IncomingEvent::from_json(
            &serde_json::json!({"topic": "t", "data": "x".repeat(4000)}).to_string(),
        )
        .unwrap()
        .into();
        let r = a.publish(&[big]).await;
        match &r[0] {
            Err(PublishError::TooLarge {
                stream,
                size,
                limit,
            }) => {
                assert_eq!(stream, "HUB");
                assert!(*size > 4000 && *limit == 1024 + 512, "{size} {limit}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(r[0].clone().unwrap_err().to_string().contains("too large"));
        assert_eq!(publish_ok(&a, &events(9, 1)).await, vec![6]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_past_retention_give_a_gap() {
    let Some(server) = NatsServer::start("reads_past_retention_give_a_gap") else {
        return;
    };
    bounded(90, async {
        let mut c = cfg(&server.url());
        c.retain_events = 10;
        let a = Arc::new(open(&c).await);
        assert_eq!(
            publish_ok(&a, &events(1, 25)).await,
            (1..=25).collect::<Vec<_>>()
        );
        let r = a.read_after(0, 100).await.unwrap();
        let gap = r.gap.expect("a gap");
        assert_eq!(
            (gap.from, gap.to, gap.reason),
            (1, 15, GapReason::Retention)
        );
        assert!(r.events.is_empty());
        assert_eq!(r.next_after, 15);
        let r = a.read_after(r.next_after, 100).await.unwrap();
        assert!(r.gap.is_none());
        assert_eq!(
            r.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            (16..=25).collect::<Vec<_>>()
        );
        let s = a.stats().await.unwrap();
        assert_eq!((s.events, s.first_id, s.last_id), (10, 16, 25));

        // The feeder from 3 reports the same gap, then the events.
        let mut feeder = a.feeder(3);
        match feeder.next(100).await.unwrap() {
            Feed::Gap(g) => assert_eq!((g.from, g.to, g.reason), (4, 15, GapReason::Retention)),
            other => panic!("expected a gap, got {other:?}"),
        }
        let mut got = Vec::new();
        while got.len() < 10 {
            match feeder.next(100).await.unwrap() {
                Feed::Events(e) => got.extend(e.iter().map(|e| e.id)),
                Feed::Gap(g) => panic!("unexpected {g:?}"),
            }
        }
        assert_eq!(got, (16..=25).collect::<Vec<_>>());
        assert_eq!(feeder.position(), 25);

        // Something that is not a hub event, published on hub.ev by another client:
        // a one-id corrupt gap for readers and for the feed, then on as before.
        let js = async_nats::jetstream::new(a.client().clone());
        let ack = js.publish("hub.ev", "not an event".into()).await.unwrap();
        assert_eq!(ack.await.unwrap().sequence, 26);
        assert_eq!(publish_ok(&a, &events(26, 1)).await, vec![27]);
        let r = a.read_after(25, 100).await.unwrap();
        let gap = r.gap.expect("a gap");
        assert_eq!((gap.from, gap.to, gap.reason), (26, 26, GapReason::Corrupt));
        // The gap comes first, then the consecutive events after it.
        assert_eq!(r.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![27]);
        assert_eq!(r.next_after, 27);
        match feeder.next(100).await.unwrap() {
            Feed::Gap(g) => assert_eq!((g.from, g.to, g.reason), (26, 26, GapReason::Corrupt)),
            other => panic!("expected a gap, got {other:?}"),
        }
        match feeder.next(100).await.unwrap() {
            Feed::Events(e) => assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), vec![27]),
            other => panic!("expected event 27, got {other:?}"),
        }
    })
    .await;
}

/// A publishing task (see [`publisher`]).
struct Publisher {
    /// Gives the acked ids, and how many were acked when the test said it acted.
    task: tokio::task::JoinHandle<(Vec<u64>, usize)>,
    /// Heard once `signal_after` batches are acked.
    reached: tokio::sync::oneshot::Receiver<()>,
    /// Tells the task that the test acted (killed a server).
    acted: tokio::sync::oneshot::Sender<()>,
}

/// Publishes `batches` batches of 10 events (numbered from `first * 10`) in a task,
/// signalling after `signal_after` batches while the rest go on.
fn publisher(store: Arc<JsStore>, first: u64, batches: u64, signal_after: u64) -> Publisher {
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (acted_tx, mut acted_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut reached = Some(reached_tx);
        let mut ids = Vec::new();
        let mut at_act = None;
        for b in first..first + batches {
            ids.extend(publish_ok(&store, &events(b * 10, 10)).await);
            if b + 1 - first == signal_after {
                reached.take().unwrap().send(()).unwrap();
            }
            if at_act.is_none() && acted_rx.try_recv().is_ok() {
                at_act = Some(ids.len());
            }
        }
        (ids, at_act.unwrap_or(usize::MAX))
    });
    Publisher {
        task,
        reached: reached_rx,
        acted: acted_tx,
    }
}

/// Collects what a feeder yields, in a task, until told to stop.
fn collect_feed(
    mut feeder: nats::Feeder,
) -> (
    tokio::task::JoinHandle<Vec<Arc<StoredEvent>>>,
    tokio::sync::watch::Receiver<u64>,
) {
    let (pos_tx, pos_rx) = tokio::sync::watch::channel(feeder.position());
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let next = tokio::select! {
                r = feeder.next(4096) => r,
                _ = pos_tx.closed() => return got,
            };
            match next.expect("the feed goes on") {
                Feed::Events(e) => got.extend(e),
                Feed::Gap(g) => panic!("the feeder reported {g:?}"),
            }
            pos_tx.send_replace(feeder.position());
        }
    });
    (task, pos_rx)
}

async fn wait_position(pos: &mut tokio::sync::watch::Receiver<u64>, at_least: u64, secs: u64) {
    let reached = tokio::time::timeout(Duration::from_secs(secs), pos.wait_for(|p| *p >= at_least))
        .await
        .map(|r| r.is_ok());
    assert!(
        reached == Ok(true),
        "feed did not reach {at_least} within {secs} s (at {})",
        *pos.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feeder_yields_everything_in_order_through_a_kill_9_of_the_server() {
    let Some(mut server) = NatsServer::start("the_feeder_yields_everything_in_order") else {
        return;
    };
    let mut c = cfg(&server.url());
    c.publish_timeout = Duration::from_secs(30);
    let a = Arc::new(open(&c).await);
    let (feed, mut pos) = collect_feed(a.feeder(0));
    let mut acked = Vec::new();
    bounded(150, async {
        for b in 0..10 {
            acked.extend(publish_ok(&a, &events(b * 10, 10)).await);
        }
        wait_position(&mut pos, 100, 20).await;

        // Killed while the feed is idle: it must go on from 101, not from 1.
        server.kill9();
        server.restart();
        for b in 10..20 {
            acked.extend(publish_ok(&a, &events(b * 10, 10)).await);
        }
        wait_position(&mut pos, *acked.iter().max().unwrap(), 30).await;

        // Killed while events are being published (and fed).
        let Publisher {
            task,
            reached,
            acted,
        } = publisher(a.clone(), 20, 40, 5);
        reached.await.unwrap();
        server.kill9();
        acted.send(()).unwrap();
        server.restart();
        let (ids, at_kill) = task.await.unwrap();
        assert!(
            at_kill < ids.len(),
            "publishing went on after the kill ({at_kill} of {})",
            ids.len()
        );
        acked.extend(ids);
        let last = *acked.iter().max().unwrap();
        wait_position(&mut pos, last, 30).await;
    })
    .await;
    drop(pos);
    let got = tokio::time::timeout(Duration::from_secs(10), feed)
        .await
        .expect("the feed task stops")
        .unwrap();
    let ids: Vec<u64> = got.iter().map(|e| e.id).collect();
    let last = *acked.iter().max().unwrap();
    assert_eq!(
        ids,
        (1..=last).collect::<Vec<_>>(),
        "every id once, in order"
    );
    let seen: HashSet<u64> = ids.iter().copied().collect();
    assert!(
        acked.iter().all(|id| seen.contains(id)),
        "every acked id fed"
    );
    // A resend after the restart was caught by Nats-Msg-Id: each event is stored once.
    let ns: Vec<u64> = got.iter().map(|e| n_of(e)).collect();
    assert_eq!(
        ns,
        (0..600).collect::<Vec<_>>(),
        "each published event once"
    );
    // And the feed's bytes are what a fresh connection reads.
    let fresh = open(&c).await;
    let mut after = 0;
    let mut read = Vec::new();
    while after < last {
        let r = fresh.read_after(after, 512).await.unwrap();
        assert!(r.gap.is_none());
        after = r.next_after;
        read.extend(r.events);
    }
    assert_eq!(read.len(), got.len());
    assert!(read.iter().zip(&got).all(|(r, g)| r.json == g.json));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_within_the_bound_naming_the_url() {
    // Nothing listens.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let mut c = NatsConfig::new(vec![url.clone()]);
    c.connect_timeout = Duration::from_secs(30);
    let t = Instant::now();
    let e = nats::connect(c).await.err().expect("no server");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let text = e.to_string();
    eprintln!("no server: {text}");
    assert!(matches!(e, NatsError::Connect { .. }), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");

    // Something listens but never speaks NATS: the bound holds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", silent.local_addr().unwrap());
    let mut c = NatsConfig::new(vec![url.clone()]);
    c.connect_timeout = Duration::from_secs(3);
    let t = Instant::now();
    let e = nats::connect(c).await.err().expect("no NATS there");
    let took = t.elapsed();
    eprintln!("silent server, {took:?}: {e}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(e.to_string().contains(&url), "{e}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_cursors_are_shared_between_connections() {
    let Some(server) = NatsServer::start("durable_cursors_are_shared") else {
        return;
    };
    bounded(60, async {
        let c = cfg(&server.url());
        let a = open(&c).await.cursors().await.unwrap();
        let b_store = open(&c).await;
        let b = b_store.cursors().await.unwrap();
        assert_eq!(a.get("ci:nightly").await.unwrap(), None);
        a.set("ci:nightly", 57).await.unwrap();
        assert_eq!(b.get("ci:nightly").await.unwrap(), Some(57));
        b.set("ci:nightly", 60).await.unwrap();
        assert_eq!(a.get("ci:nightly").await.unwrap(), Some(60));
        // Names that are not KV keys as they are stay apart.
        a.set("ci.nightly", 1).await.unwrap();
        assert_eq!(b.get("ci.nightly").await.unwrap(), Some(1));
        assert_eq!(b.get("ci:nightly").await.unwrap(), Some(60));
        assert!(b.create("new one", 5).await.unwrap());
        assert!(
            !a.create("new one", 9).await.unwrap(),
            "made by the other first"
        );
        assert_eq!(a.get("new one").await.unwrap(), Some(5));
        assert!(a.get("").await.is_err());
        // Reads go to the leader.
        let js = async_nats::jetstream::new(b_store.client().clone());
        let kv = js.get_stream("KV_hub_cursors").await.unwrap();
        assert!(!kv.cached_info().config.allow_direct);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_loses_nothing_when_its_leader_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut servers) = NatsServer::cluster("an_r3_stream_loses_nothing", 3, tmp.path()) else {
        return;
    };
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let mut c = NatsConfig::new(urls.clone());
    c.replicas = 3;
    // A 2.9.10 election takes 4-9 s; a starting cluster has no meta leader at first.
    c.connect_timeout = Duration::from_secs(60);
    c.publish_timeout = Duration::from_secs(40);
    let mut acked = Vec::new();
    let mut fed = Vec::new();
    bounded(180, async {
        let a = Arc::new(open(&c).await);
        // The feeding node talks to the last server first.
        let mut cb = c.clone();
        cb.urls.reverse();
        let b = Arc::new(open(&cb).await);
        let js = async_nats::jetstream::new(a.client().clone());
        let info = js.get_stream("HUB").await.unwrap().cached_info().clone();
        assert_eq!(info.config.num_replicas, 3);
        let leader = info
            .cluster
            .and_then(|c| c.leader)
            .expect("a stream leader");
        let (feed, mut pos) = collect_feed(b.feeder(0));
        let Publisher {
            task,
            reached,
            acted,
        } = publisher(a.clone(), 0, 40, 10);
        reached.await.unwrap();
        let i: usize = leader.trim_start_matches('n').parse().unwrap();
        let killed = Instant::now();
        servers[i].kill9();
        acted.send(()).unwrap();
        let (ids, at_kill) = task.await.unwrap();
        eprintln!(
            "stream leader {leader} killed with {at_kill} of {} acked; the rest took {:?}",
            ids.len(),
            killed.elapsed()
        );
        assert!(at_kill < ids.len(), "publishing went on after the kill");
        acked = ids;
        let last = *acked.iter().max().unwrap();
        wait_position(&mut pos, last, 60).await;
        drop(pos);
        fed = feed.await.unwrap();
    })
    .await;
    let ids: Vec<u64> = fed.iter().map(|e| e.id).collect();
    let last = *acked.iter().max().unwrap();
    assert_eq!(
        ids,
        (1..=last).collect::<Vec<_>>(),
        "every id once, in order"
    );
    assert!(
        acked.iter().all(|id| ids.contains(id)),
        "every acked id fed"
    );
    let ns: Vec<u64> = fed.iter().map(|e| n_of(e)).collect();
    assert_eq!(
        ns,
        (0..400).collect::<Vec<_>>(),
        "each published event once"
    );
}
