//! The broker over a JetStream stream (`hub-serve --nats`): the stream is the log,
//! and every node keeps a copy of it in memory ([`Log::replica`]) that everything
//! else reads (catch-up, `last`, `GET /events`, gaps, the `/tasks` board, the key
//! index), so readers see exactly what they see over the embedded log.
//!
//! ```text
//!  publish ─▶ publish task ─▶ JetStream ─ack─▶ wait until the feed has it ─▶ ack
//!                                  │
//!                                  └─▶ feed task ─▶ replica (append_copies) ─▶ fan-out
//! ```
//!
//! - **Publishing**: one task takes every request queued while it was busy and
//!   sends them pipelined, in order ([`JsStore::send_all`]); their acks are awaited
//!   in a task of their own, so the next run goes out meanwhile. A key this node has
//!   seen (the replica remembers the newest [`crate::store::DEDUP_KEYS`] keys of the
//!   whole stream, from every node) is answered with its id and not sent; a key
//!   published on two nodes at once is caught by JetStream's `Nats-Msg-Id` window.
//!   A publish is answered only after JetStream has acknowledged it and this node's
//!   feed has copied it, so the publisher can read it back here at once.
//! - **The feed**: one ordered consumer from the stream's first sequence at start;
//!   each batch is appended under the broker's turn and fanned out as over the
//!   embedded log. Ids the stream does not have (a message deleted by an operator,
//!   something not an event on `hub.ev`) are skipped in the replica, and every live
//!   subscriber is turned to catch-up, so each reads the hole as a `gap`.
//! - **Durable cursors**: KV bucket `hub_cursors`; read from it when a subscription
//!   names one, written through one task that keeps the newest value per name.
//! - **When NATS is down**: a publish is answered with [`BrokerError::Unavailable`]
//!   (HTTP 503, WebSocket close 4500: clients retry with the same keys); readers go on
//!   reading the replica; the feed resumes by itself.

use super::{Broker, BrokerError, Failed, MAX_BATCH, PublishReq};
use crate::event::{EventError, Prepared};
use crate::nats::{Feed, JsStore, KvCursors, PublishError, Sending};
use crate::store::Appended;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a publish acknowledged by JetStream may wait for this node's feed to
/// copy it before it is answered as unavailable.
const FEED_WAIT: Duration = Duration::from_secs(10);

/// A run of publishes on its way: an outcome for each event decided before
/// sending (`Some`), the acks of the others still to come.
struct Run {
    out: Vec<Option<Appended>>,
    sending: Sending,
}

/// What the broker holds of the NATS side.
pub(crate) struct NatsSide {
    pub(crate) store: Arc<JsStore>,
    pub(crate) cursors: KvCursors,
    pub(crate) cursor_tx: mpsc::UnboundedSender<(String, u64)>,
}

impl Broker {
    /// The publish task: every request queued while it was busy, published as one
    /// pipelined run, answered once the feed has copied the events.
    pub(super) async fn nats_publish_loop(self, mut rx: mpsc::Receiver<PublishReq>) {
        while let Some(first) = rx.recv().await {
            let mut reqs = vec![first];
            let mut n = reqs[0].events.len();
            while n < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => {
                        n += r.events.len();
                        reqs.push(r);
                    }
                    Err(_) => break,
                }
            }
            let mut all = Vec::with_capacity(n);
            let mut counts = Vec::with_capacity(reqs.len());
            for r in &mut reqs {
                counts.push(r.events.len());
                all.append(&mut r.events);
            }
            let run = self.send_run(all).await;
            self.shared.queued.fetch_sub(reqs.len(), Ordering::AcqRel);
            // The next run is sent while this one's acks come back and the feed
            // copies it.
            let b = self.clone();
            tokio::spawn(async move {
                let result = match b.settle_run(run).await {
                    Ok((outcomes, highest)) => b.wait_fed(highest).await.map(|()| outcomes),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(outcomes) => {
                        let mut it = outcomes.into_iter();
                        for (r, c) in reqs.into_iter().zip(counts) {
                            let _ = r.reply.send(Ok(it.by_ref().take(c).collect()));
                        }
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        for r in reqs {
                            let _ = r.reply.send(Err(Failed::Unavailable(e.clone())));
                        }
                    }
                }
            });
        }
    }

    /// Waits until this node's feed has copied id `highest`.
    async fn wait_fed(&self, highest: u64) -> Result<(), String> {
        if highest <= self.shared.log.committed() {
            return Ok(());
        }
        let mut rx = self.shared.committed.subscribe();
        match tokio::time::timeout(FEED_WAIT, rx.wait_for(|&c| c >= highest)).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let c = self.nats().expect("with --nats").store.config();
                Err(format!(
                    "stream {} acknowledged id {highest}, but this hub's feed from NATS {} has not brought it within {}s",
                    c.stream,
                    c.urls.join(","),
                    FEED_WAIT.as_secs()
                ))
            }
        }
    }

    /// Sends `events` into the stream: the outcome of each event decided here (a
    /// key the replica knows, too large), the others sent.
    async fn send_run(&self, events: Vec<Prepared>) -> Run {
        let side = self.nats().expect("the publish task runs with --nats");
        let log = &self.shared.log;
        let keys: Vec<&str> = events.iter().filter_map(|p| p.key()).collect();
        let mut known = log.known_keys(&keys).into_iter();
        let max = self.shared.cfg.max_event_bytes;
        let next = log.committed() + 1;
        // The stamp the event will get, but for its id's digits.
        let stamp = crate::nats::stamp_text(0, crate::event::now_millis()).len() - 1;
        let mut out: Vec<Option<Appended>> = Vec::with_capacity(events.len());
        let mut send = Vec::with_capacity(events.len());
        for p in events {
            if p.key().is_some()
                && let Some(id) = known.next().flatten()
            {
                out.push(Some(Appended::Duplicate(id)));
                continue;
            }
            // The size the event will have stored: its stamp and the payload.
            let id = next + send.len() as u64;
            let size = stamp + itoa::Buffer::new().format(id).len() + p.tail().len();
            if size > max {
                out.push(Some(Appended::Refused(EventError::TooLarge {
                    size,
                    limit: max,
                })));
                continue;
            }
            out.push(None);
            send.push(p);
        }
        let sending = side.store.send_all(&send).await;
        Run { out, sending }
    }

    /// Awaits the acks of a run: one outcome per event, and the highest id
    /// acknowledged.
    async fn settle_run(&self, run: Run) -> Result<(Vec<Appended>, u64), String> {
        let side = self.nats().expect("the publish task runs with --nats");
        let max = self.shared.cfg.max_event_bytes;
        let Run { mut out, sending } = run;
        let mut highest = 0;
        let mut dups = 0;
        let mut sent = side.store.settle_all(sending).await.into_iter();
        for slot in out.iter_mut().filter(|o| o.is_none()) {
            let a = match sent.next().expect("one outcome per event sent") {
                Ok(p) => {
                    highest = highest.max(p.id);
                    if p.duplicate {
                        dups += 1;
                        Appended::Duplicate(p.id)
                    } else {
                        Appended::New(p.id)
                    }
                }
                Err(PublishError::TooLarge { size, .. }) => {
                    Appended::Refused(EventError::TooLarge { size, limit: max })
                }
                Err(e @ PublishError::Refused { .. }) => {
                    Appended::Refused(EventError::Json(e.to_string()))
                }
                Err(e @ PublishError::Unavailable { .. }) => return Err(e.to_string()),
            };
            *slot = Some(a);
        }
        self.shared
            .stats
            .dedup_total
            .fetch_add(dups, Ordering::Relaxed);
        let outcomes = out
            .into_iter()
            .map(|o| o.expect("every slot filled"))
            .collect();
        Ok((outcomes, highest))
    }

    /// The feed task: the stream, in order, into the replica and out to subscribers.
    pub(super) async fn nats_feed_loop(self, mut feeder: crate::nats::Feeder) {
        let mut failing = false;
        while !self.shared.stop.load(Ordering::Acquire) {
            match feeder.next(MAX_BATCH).await {
                Ok(Feed::Events(events)) => {
                    failing = false;
                    let turn = self.shared.turn.lock().unwrap();
                    match self.shared.log.append_copies(events) {
                        Ok(w) => {
                            self.fan_out(w);
                        }
                        Err(e) => {
                            tracing::error!("copying the stream into this hub failed: {e}");
                            std::process::abort();
                        }
                    }
                    drop(turn);
                }
                Ok(Feed::Gap(gap)) => {
                    failing = false;
                    let _turn = self.shared.turn.lock().unwrap();
                    self.shared.log.skip_to(gap.to + 1);
                    // Live subscribers read on from the replica, which has the hole.
                    let mut reg = self.shared.registry.lock().unwrap();
                    reg.fanned = gap.to;
                    for e in reg.entries.values() {
                        e.live.store(false, Ordering::Release);
                    }
                    drop(reg);
                    self.shared.committed.send_replace(gap.to);
                }
                Err(e) => {
                    if !failing {
                        tracing::error!("reading the stream: {e}; retrying");
                    }
                    failing = true;
                    if matches!(e, crate::nats::NatsError::Recreated { .. }) {
                        tracing::error!("{e}; stopping the hub");
                        std::process::exit(1);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The cursor task: the newest position of each durable cursor, into KV.
    pub(super) async fn nats_cursor_loop(
        cursors: KvCursors,
        mut rx: mpsc::UnboundedReceiver<(String, u64)>,
    ) {
        while let Some((name, id)) = rx.recv().await {
            let mut newest = HashMap::from([(name, id)]);
            while let Ok((name, id)) = rx.try_recv() {
                newest.insert(name, id);
            }
            for (name, id) in newest {
                if let Err(e) = cursors.set(&name, id).await {
                    tracing::warn!("saving durable cursor {name:?} in NATS failed: {e}");
                }
            }
        }
    }

    pub(crate) fn nats(&self) -> Option<&NatsSide> {
        self.shared.nats.as_ref()
    }

    /// [`Broker::load_cursor`] with `--nats`.
    pub(super) async fn nats_load_cursor(&self, name: &str) -> Result<(), BrokerError> {
        let Some(side) = self.nats() else {
            return Ok(());
        };
        match side.cursors.get(name).await {
            Ok(Some(id)) => {
                self.shared.cursors.set(name, id);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(BrokerError::Unavailable(e.to_string())),
        }
    }

    /// [`Broker::caught_up`] with `--nats`.
    pub(super) async fn nats_caught_up(&self) {
        let Some(side) = self.nats() else {
            return;
        };
        if let Ok(st) = side.store.stats().await
            && st.last_id > self.shared.log.committed()
        {
            self.wait_for_new(st.last_id - 1, Duration::from_secs(2))
                .await;
        }
    }
}
