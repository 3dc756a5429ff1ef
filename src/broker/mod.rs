//! The broker: publish → log → fan-out, subscriptions, the `/tasks` board, durable
//! cursors and the counters of `/status`.
//!
//! Appending and fan-out take turns under one lock, so ids reach subscribers in
//! order. When nobody holds the turn and nothing is queued, a small publish is
//! written right where it arrives (no hand-off to another thread: a one-shot
//! `hub-emit` gets its ack sooner). Otherwise it is queued for the writer thread,
//! which takes every request queued while it was busy and writes them as one batch
//! (one fsync with `--fsync always`, which always goes through the writer: group
//! commit), then fans the new events out and answers the publishers. Fan-out hands
//! each live subscriber the batch's new events it matches as one message (the
//! events shared behind `Arc`s, each with its one JSON encoding); a subscriber whose
//! outbox already holds its capacity is turned to catch-up from the log (see
//! [`subscription`]) instead of slowing anyone.
//!
//! A housekeeping thread fsyncs (`--fsync batch`, every 100 ms), applies
//! `--retain-age` and saves durable cursors.

pub mod cursors;
#[cfg(feature = "nats")]
mod nats;
pub mod subscription;
pub mod tasks;

use crate::event::{EventError, Prepared, now_millis};
use crate::matching::{MatchError, Matcher};
use crate::protocol::Subscribe;
use crate::store::{Appended, Log, Recovery, Written};
use cursors::Cursors;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subscription::Subscription;
use tasks::{TaskBoard, TaskState};
use tokio::sync::{mpsc, oneshot, watch};

/// Most events the writer takes into one batch.
const MAX_BATCH: usize = 8192;
/// Most events a publish may hold to be written inline. Larger batches come from a
/// stream, which goes faster with the writer thread appending while the runtime
/// reads the next frames.
const INLINE_MAX: usize = 8;

/// Settings of the broker that are not the log's.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub max_event_bytes: usize,
    /// Capacity of each subscription's outbox, in events.
    pub outbox: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_event_bytes: 64 * 1024,
            outbox: 1024,
        }
    }
}

/// Counters shown by `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub subscriptions: AtomicU64,
    pub lagged_total: AtomicU64,
    pub gaps_total: AtomicU64,
    pub dedup_total: AtomicU64,
    pub published_total: AtomicU64,
}

/// Why a publish or subscribe failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("writing the log failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error("give either since or last, not both")]
    SinceAndLast,
    /// The place events are kept cannot be reached (`--nats`: the NATS servers);
    /// worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a queued publish failed as a whole (cloned to every request of a batch).
#[derive(Debug, Clone)]
pub enum Failed {
    Io(String),
    Unavailable(String),
}

impl From<Failed> for BrokerError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Io(e) => BrokerError::Io(std::io::Error::other(e)),
            Failed::Unavailable(e) => BrokerError::Unavailable(e),
        }
    }
}

pub(crate) struct Entry {
    matcher: Arc<Matcher>,
    /// Chunks go boxed: a channel allocates its first block of 32 slots up front,
    /// so a thin item keeps an idle subscription small (W5).
    tx: mpsc::UnboundedSender<Box<subscription::Chunk>>,
    /// Events in the subscriber's outbox; it takes no more once this reaches
    /// `capacity` (so it holds at most `capacity` plus one batch).
    queued: Arc<AtomicUsize>,
    capacity: usize,
    live: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    next_key: u64,
    /// The newest id handed to the fan-out.
    fanned: u64,
    entries: HashMap<u64, Entry>,
}

struct PublishReq {
    events: Vec<Prepared>,
    reply: oneshot::Sender<Result<Vec<Appended>, Failed>>,
}

/// Where the writer's answer to a [`PublishReq`] arrives.
type WriterReply = oneshot::Receiver<Result<Vec<Appended>, Failed>>;

/// A publish handed to the broker ([`Broker::submit`]): its outcomes, now or once
/// the writer thread has written it.
pub enum Submitted {
    Done(Result<Vec<Appended>, BrokerError>),
    Queued(WriterReply),
}

impl Submitted {
    /// One outcome per event, in order: the event's id (the original id for a
    /// known key) or why it was refused.
    ///
    /// # Errors
    /// The hub is shutting down or the log could not be written: nothing was
    /// acknowledged.
    pub async fn outcomes(self) -> Result<Vec<Result<u64, EventError>>, BrokerError> {
        let appended = match self {
            Submitted::Done(result) => result?,
            Submitted::Queued(rx) => rx
                .await
                .map_err(|_| BrokerError::ShuttingDown)?
                .map_err(BrokerError::from)?,
        };
        Ok(appended
            .into_iter()
            .map(|a| match a {
                Appended::New(id) => Ok(id),
                Appended::Duplicate(id) => Ok(id),
                Appended::Refused(e) => Err(e),
            })
            .collect())
    }
}

struct Shared {
    log: Arc<Log>,
    cfg: BrokerConfig,
    writer: Mutex<Option<mpsc::Sender<PublishReq>>>,
    /// Held while a batch is appended and fanned out (by the writer thread, or by
    /// a publisher writing inline).
    turn: Mutex<()>,
    /// Requests sent to the writer and not yet written: while there are any, a
    /// publish queues behind them rather than writing inline.
    queued: AtomicUsize,
    /// Whether a publish may be written inline (not with `--fsync always`, whose
    /// fsync must not block a runtime thread, and which gains from group commit).
    inline: bool,
    registry: Mutex<Registry>,
    tasks: Mutex<TaskBoard>,
    cursors: Cursors,
    stats: Stats,
    committed: watch::Sender<u64>,
    started: Instant,
    stop: AtomicBool,
    /// With `--nats`: the stream this broker publishes into and feeds from.
    #[cfg(feature = "nats")]
    nats: Option<nats::NatsSide>,
}

/// A cheap, clonable handle to the broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// Starts the writer and housekeeping threads over an opened log.
    pub fn start(log: Log, recovery: Recovery, cfg: BrokerConfig) -> std::io::Result<Broker> {
        let mut board = TaskBoard::default();
        for ev in &recovery.task_events {
            board.apply(ev);
        }
        let cursors = Cursors::open(log.config().dir.as_deref())?;
        let inline = log.config().fsync != crate::store::FsyncMode::Always;
        let (tx, rx) = mpsc::channel::<PublishReq>(4096);
        let broker = Broker::assemble(log, board, cursors, cfg, inline, tx);
        let b = broker.clone();
        std::thread::Builder::new()
            .name("hub-writer".into())
            .spawn(move || or_abort("writer", || b.writer_loop(rx)))?;
        broker.start_housekeeping()?;
        Ok(broker)
    }

    /// The broker's state over `log`, with no thread started yet.
    fn assemble(
        log: Log,
        board: TaskBoard,
        cursors: Cursors,
        cfg: BrokerConfig,
        inline: bool,
        writer: mpsc::Sender<PublishReq>,
    ) -> Broker {
        let log = Arc::new(log);
        let committed = log.committed();
        let shared = Arc::new(Shared {
            log,
            cfg,
            writer: Mutex::new(Some(writer)),
            turn: Mutex::new(()),
            queued: AtomicUsize::new(0),
            inline,
            registry: Mutex::new(Registry {
                fanned: committed,
                ..Default::default()
            }),
            tasks: Mutex::new(board),
            cursors,
            stats: Stats::default(),
            committed: watch::channel(committed).0,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            #[cfg(feature = "nats")]
            nats: None,
        });
        Broker { shared }
    }

    fn start_housekeeping(&self) -> std::io::Result<()> {
        let b = self.clone();
        std::thread::Builder::new()
            .name("hub-housekeeping".into())
            .spawn(move || or_abort("housekeeping", || b.housekeeping_loop()))?;
        Ok(())
    }

    /// `hub-serve --nats`: starts a broker whose log is the JetStream stream of
    /// `store` (see [`nats`](self::nats)), copies what the stream holds, and returns
    /// once it has the stream's newest event as of the call. `log_cfg` gives the
    /// retention of the copy kept in memory.
    ///
    /// # Errors
    /// NATS did not answer, or the copy made no progress for 30 s.
    #[cfg(feature = "nats")]
    pub async fn start_nats(
        store: crate::nats::JsStore,
        log_cfg: crate::store::LogConfig,
        cfg: BrokerConfig,
    ) -> Result<Broker, crate::nats::NatsError> {
        let store = Arc::new(store);
        let st = store.stats().await?;
        let first = if st.events == 0 {
            st.last_id + 1
        } else {
            st.first_id
        };
        let log = Log::replica(log_cfg, first);
        let cursors =
            Cursors::open(None).map_err(|e| crate::nats::NatsError::Config(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<PublishReq>(4096);
        let mut broker = Broker::assemble(log, TaskBoard::default(), cursors, cfg, false, tx);
        let (cursor_tx, cursor_rx) = mpsc::unbounded_channel();
        let side = nats::NatsSide {
            store: store.clone(),
            cursors: store.cursors().await?,
            cursor_tx,
        };
        Arc::get_mut(&mut broker.shared)
            .expect("not shared yet")
            .nats = Some(side);
        tokio::spawn(Broker::nats_cursor_loop(store.cursors().await?, cursor_rx));
        tokio::spawn(broker.clone().nats_publish_loop(rx));
        tokio::spawn(broker.clone().nats_feed_loop(store.feeder(first - 1)));
        broker
            .start_housekeeping()
            .map_err(|e| crate::nats::NatsError::Config(e.to_string()))?;
        // The copy of what the stream holds, with progress for a long one.
        let target = st.last_id;
        let mut rx = broker.shared.committed.subscribe();
        let stall = Duration::from_secs(30);
        loop {
            let at = *rx.borrow_and_update();
            if at >= target {
                break;
            }
            match tokio::time::timeout(stall, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(crate::nats::NatsError::Timeout {
                        urls: store.config().urls.join(","),
                        stage: format!(
                            "copying stream {} (at id {at} of {target})",
                            store.config().stream
                        ),
                        after: stall,
                    });
                }
            }
        }
        Ok(broker)
    }

    pub fn log(&self) -> &Log {
        &self.shared.log
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Publishes events; one outcome per event, in order. Each outcome is the
    /// event's id (the original id for a known key) or why it was refused.
    ///
    /// # Errors
    /// The hub is shutting down or the log could not be written: nothing was
    /// acknowledged.
    pub async fn publish(
        &self,
        events: Vec<Prepared>,
    ) -> Result<Vec<Result<u64, EventError>>, BrokerError> {
        self.submit(events).await.outcomes().await
    }

    /// Hands events over for writing and returns once they have their place in
    /// the order of writes: written already, or queued for the writer thread
    /// (waiting only while its queue is full). A publisher that submits again
    /// before the first [`Submitted`] is answered gets its batches written in
    /// the order it submitted them, and the writer never waits for its answers.
    pub async fn submit(&self, events: Vec<Prepared>) -> Submitted {
        match self.try_inline(events) {
            Ok(result) => Submitted::Done(result),
            Err(events) => match self.enqueue(events).await {
                Ok(rx) => Submitted::Queued(rx),
                Err(e) => Submitted::Done(Err(e)),
            },
        }
    }

    /// Writes `events` here and now if the turn is free and nothing is queued for
    /// the writer (queued requests go first: small publishes arriving one after
    /// another must not keep the writer's queue waiting). Gives the events back
    /// otherwise. A publisher's own order needs no check here: a batch it
    /// submitted earlier is counted in `queued` until it is written, so a later one
    /// cannot overtake it inline.
    fn try_inline(
        &self,
        events: Vec<Prepared>,
    ) -> Result<Result<Vec<Appended>, BrokerError>, Vec<Prepared>> {
        let sh = &self.shared;
        if !sh.inline || events.len() > INLINE_MAX {
            return Err(events);
        }
        let Ok(_turn) = sh.turn.try_lock() else {
            return Err(events);
        };
        // `stop` is read under the turn: shutdown sets it, then waits for the turn.
        if sh.queued.load(Ordering::Acquire) != 0 || sh.stop.load(Ordering::Acquire) {
            return Err(events);
        }
        let result = sh
            .log
            .append(events, now_millis(), sh.cfg.max_event_bytes)
            .map(|w| self.fan_out(w))
            .map_err(BrokerError::Io);
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        Ok(result)
    }

    /// Hands `events` to the writer thread; the receiver gets its answer.
    async fn enqueue(&self, events: Vec<Prepared>) -> Result<WriterReply, BrokerError> {
        let tx = self
            .shared
            .writer
            .lock()
            .unwrap()
            .clone()
            .ok_or(BrokerError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(PublishReq { events, reply }).await.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(BrokerError::ShuttingDown);
        }
        Ok(rx)
    }

    fn writer_loop(self, mut rx: mpsc::Receiver<PublishReq>) {
        let log = self.shared.log.clone();
        while let Some(first) = rx.blocking_recv() {
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
            let turn = self.shared.turn.lock().unwrap();
            let result = log
                .append(all, now_millis(), self.shared.cfg.max_event_bytes)
                .map(|w| self.fan_out(w));
            self.shared.queued.fetch_sub(reqs.len(), Ordering::AcqRel);
            drop(turn);
            match result {
                Ok(outcomes) => {
                    let mut it = outcomes.into_iter();
                    for (r, c) in reqs.into_iter().zip(counts) {
                        let _ = r.reply.send(Ok(it.by_ref().take(c).collect()));
                    }
                }
                Err(e) => {
                    tracing::error!("writing the log failed: {e}");
                    for r in reqs {
                        let _ = r.reply.send(Err(Failed::Io(e.to_string())));
                    }
                }
            }
        }
    }

    /// Hands the events just written to the task board and to every live
    /// subscriber; gives back the outcomes.
    fn fan_out(&self, written: Written) -> Vec<Appended> {
        let Written { outcomes, stored } = written;
        let dups = outcomes
            .iter()
            .filter(|a| matches!(a, Appended::Duplicate(_)))
            .count() as u64;
        let st = &self.shared.stats;
        st.dedup_total.fetch_add(dups, Ordering::Relaxed);
        let Some(last) = stored.last().map(|s| s.id()) else {
            return outcomes;
        };
        let published = stored.len() as u64;
        {
            let mut tasks = None;
            for s in &stored {
                if crate::event::is_task_type(crate::event::Fields::kind(s.as_ref())) {
                    tasks
                        .get_or_insert_with(|| self.shared.tasks.lock().unwrap())
                        .apply(s.as_ref());
                }
            }
        }
        // The new events, listed once for every subscriber (and not at all when
        // nobody is subscribed live).
        let mut stored = Some(stored);
        let mut new: Option<Arc<[Arc<crate::event::StoredEvent>]>> = None;
        let mut reg = self.shared.registry.lock().unwrap();
        reg.fanned = last;
        for e in reg.entries.values() {
            if !e.live.load(Ordering::Relaxed) {
                continue;
            }
            let new = new.get_or_insert_with(|| stored.take().unwrap_or_default().into());
            let Some(chunk) = subscription::Chunk::matching(new, &e.matcher) else {
                continue;
            };
            if e.queued.load(Ordering::Acquire) >= e.capacity {
                // Full: this subscriber reads on from the log by itself.
                e.live.store(false, Ordering::Release);
                continue;
            }
            e.queued.fetch_add(chunk.len(), Ordering::AcqRel);
            if e.tx.send(Box::new(chunk)).is_err() {
                e.live.store(false, Ordering::Release);
            }
        }
        drop(reg);
        st.published_total.fetch_add(published, Ordering::Relaxed);
        self.shared.committed.send_replace(last);
        outcomes
    }

    fn housekeeping_loop(self) {
        let mut last_retention = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
            if let Err(e) = self.shared.log.sync_if_dirty() {
                tracing::error!("fsync failed: {e}");
            }
            if let Err(e) = self.shared.cursors.save_if_dirty() {
                tracing::warn!("saving durable cursors failed: {e}");
            }
            if last_retention.elapsed() >= Duration::from_secs(1) {
                last_retention = Instant::now();
                self.shared.log.enforce_retention(now_millis());
            }
        }
    }

    /// Stops taking publishes, then flushes the log and the cursors to disk.
    pub fn shutdown(&self) {
        self.shared.writer.lock().unwrap().take();
        self.shared.stop.store(true, Ordering::Release);
        // Waits for a batch being written (inline or by the writer) to finish.
        drop(self.shared.turn.lock().unwrap());
        if let Err(e) = self.shared.log.sync_if_dirty() {
            tracing::error!("final fsync failed: {e}");
        }
        if let Err(e) = self.shared.cursors.save_if_dirty() {
            tracing::warn!("saving durable cursors failed: {e}");
        }
    }

    /// Registers a subscription positioned as `spec` asks.
    ///
    /// # Errors
    /// A pattern or filter is invalid, or both `since` and `last` were given.
    pub fn subscribe(&self, spec: &Subscribe) -> Result<Subscription, BrokerError> {
        if spec.since.is_some() && spec.last.is_some() {
            return Err(BrokerError::SinceAndLast);
        }
        let matcher = Arc::new(Matcher::new(&spec.topics, &spec.types, &spec.filters)?);
        let committed = self.shared.log.committed();
        let stored = spec
            .durable
            .as_deref()
            .and_then(|d| self.shared.cursors.get(d));
        let cursor = match (stored, spec.since, spec.last) {
            (Some(c), _, _) => c,
            (None, Some(s), _) => s,
            (None, None, Some(n)) => self.position_for_last(&matcher, n, committed)?,
            (None, None, None) => committed,
        };
        if let Some(d) = &spec.durable
            && stored.is_none()
        {
            self.set_cursor(d, cursor);
        }
        let (entry, outbox) = subscription::entry(matcher.clone(), self.shared.cfg.outbox);
        let key = {
            let mut reg = self.shared.registry.lock().unwrap();
            reg.next_key += 1;
            let key = reg.next_key;
            reg.entries.insert(key, entry);
            key
        };
        self.shared
            .stats
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        Ok(Subscription::new(
            key,
            self.clone(),
            matcher,
            outbox,
            cursor,
            committed,
        ))
    }

    /// The position after which the last `n` matching events lie.
    fn position_for_last(&self, m: &Matcher, n: u64, committed: u64) -> std::io::Result<u64> {
        let log = &self.shared.log;
        let first = log.stats().first_id;
        if n == 0 || committed < first {
            return Ok(committed);
        }
        if m.is_all() {
            return Ok(committed.saturating_sub(n).max(first - 1));
        }
        // Walk back in growing windows, counting matches.
        let mut hi = committed;
        let mut window = 1024u64;
        let mut need = n;
        while hi >= first {
            let lo = hi.saturating_sub(window).max(first - 1);
            let mut ids = Vec::new();
            let mut after = lo;
            while after < hi {
                let b = log.read_after(after, 4096)?;
                if b.events.is_empty() && b.gap.is_none() {
                    break;
                }
                for e in &b.events {
                    if e.id() <= hi && m.matches(e.as_ref()) {
                        ids.push(e.id());
                    }
                }
                after = b.next_after;
            }
            if ids.len() as u64 >= need {
                return Ok(ids[ids.len() - need as usize] - 1);
            }
            need -= ids.len() as u64;
            if lo < first {
                break;
            }
            hi = lo;
            window = window.saturating_mul(2);
        }
        Ok(first - 1)
    }

    /// Lets a caught-up subscription take live events again, unless something was
    /// fanned out past `cursor` in the meantime.
    fn try_go_live(&self, key: u64, cursor: u64, live: &AtomicBool) -> bool {
        let reg = self.shared.registry.lock().unwrap();
        if reg.fanned <= cursor && reg.entries.contains_key(&key) {
            live.store(true, Ordering::Release);
            true
        } else {
            false
        }
    }

    fn unregister(&self, key: u64) {
        if self
            .shared
            .registry
            .lock()
            .unwrap()
            .entries
            .remove(&key)
            .is_some()
        {
            self.shared
                .stats
                .subscriptions
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Moves a durable cursor (`hub-sub --durable`).
    pub fn set_cursor(&self, name: &str, id: u64) {
        self.shared.cursors.set(name, id);
        #[cfg(feature = "nats")]
        if let Some(side) = self.nats() {
            let _ = side.cursor_tx.send((name.to_string(), id));
        }
    }

    /// With `--nats`: reads durable cursor `name` from the shared KV bucket, so a
    /// subscription placed next resumes where it was on any node. Nothing to do
    /// over the embedded log.
    ///
    /// # Errors
    /// NATS did not answer ([`BrokerError::Unavailable`]).
    pub async fn load_cursor(&self, name: &str) -> Result<(), BrokerError> {
        #[cfg(feature = "nats")]
        if self.nats().is_some() {
            return self.nats_load_cursor(name).await;
        }
        let _ = name;
        Ok(())
    }

    /// With `--nats`: waits (a bounded time) until this node has copied every event
    /// the stream held when asked, so what is read next (`/tasks`) is the same on
    /// every node. Returns at once over the embedded log.
    pub async fn caught_up(&self) {
        #[cfg(feature = "nats")]
        self.nats_caught_up().await;
    }

    /// `/status`'s view of where events are kept, beyond the log's counters: with
    /// `--nats`, the servers, the stream, the server's version and the replicas.
    /// Asks the place events are kept for what [`Broker::backend`] reports that may
    /// change (with `--nats`: the stream's leader), waiting at most 250 ms so that
    /// `/status` answers at once even while NATS does not.
    pub async fn refresh_backend(&self) {
        #[cfg(feature = "nats")]
        if let Some(side) = self.nats() {
            let _ = tokio::time::timeout(Duration::from_millis(250), side.store.stats()).await;
        }
    }

    pub fn backend(&self) -> serde_json::Value {
        #[cfg(feature = "nats")]
        if let Some(side) = self.nats() {
            let c = side.store.config();
            return serde_json::json!({
                "kind": "nats",
                "urls": c.urls,
                "stream": c.stream,
                "replicas": c.replicas,
                "server_version": side.store.server_version(),
                "leader": side.store.stream_leader(),
            });
        }
        serde_json::json!({ "kind": if self.shared.log.config().dir.is_some() { "disk" } else { "memory" } })
    }

    /// The `/tasks` view.
    pub fn tasks(&self) -> Vec<TaskState> {
        self.shared.tasks.lock().unwrap().list()
    }

    /// The `/tasks` view and the newest id folded into it, read together.
    pub fn tasks_snapshot(&self) -> (Vec<TaskState>, u64) {
        let board = self.shared.tasks.lock().unwrap();
        (board.list(), board.last_id())
    }

    /// Waits until the newest id is above `after` or `limit` passes.
    pub async fn wait_for_new(&self, after: u64, limit: Duration) {
        let mut rx = self.shared.committed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|&c| c > after)).await;
    }
}

/// Runs a broker thread; if it panics, the process stops instead of living on as
/// a hub that answers /health but can no longer store or sync events (a service
/// manager restarts it, and the log recovers as after any crash).
fn or_abort(name: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("the {name} thread panicked; stopping the hub");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::subscription::Delivery;
    use super::*;
    use crate::store::{FsyncMode, LogConfig};
    use serde_json::json;

    fn broker(outbox: usize, retain_events: u64) -> Broker {
        let (log, rec) = Log::open(LogConfig {
            dir: None,
            fsync: FsyncMode::Never,
            retain_events,
            retain_bytes: 1 << 30,
            retain_age: None,
            cache_events: 64,
        })
        .unwrap();
        Broker::start(
            log,
            rec,
            BrokerConfig {
                max_event_bytes: 65536,
                outbox,
            },
        )
        .unwrap()
    }

    fn ev(topic: &str, n: u64) -> Prepared {
        inc(topic, n).into()
    }

    fn inc(topic: &str, n: u64) -> crate::event::IncomingEvent {
        let mut e = crate::event::NewEvent::new(topic);
        e.data = json!({ "n": n });
        e.into()
    }

    async fn next_event(s: &mut Subscription) -> u64 {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .unwrap()
                .unwrap()
            {
                Delivery::Event(e) => return e.id(),
                Delivery::Live { .. } => continue,
                Delivery::Gap { from, to, .. } => panic!("unexpected gap {from}..{to}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn since_replays_then_goes_live_without_gap_or_duplicate() {
        let b = broker(8, 1_000_000);
        for i in 0..100 {
            b.publish(vec![ev("a", i)]).await.unwrap();
        }
        let mut s = b
            .subscribe(&Subscribe {
                since: Some(50),
                ..Default::default()
            })
            .unwrap();
        let pubber = {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..2000 {
                    b.publish(vec![ev("a", i)]).await.unwrap();
                }
            })
        };
        let mut expect = 51;
        while expect <= 2100 {
            assert_eq!(next_event(&mut s).await, expect);
            expect += 1;
        }
        pubber.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_subscriber_catches_up_in_order() {
        let b = broker(4, 1_000_000);
        let mut s = b.subscribe(&Subscribe::default()).unwrap();
        assert!(matches!(
            s.next().await.unwrap(),
            Delivery::Live { last_id: 0 }
        ));
        // Nothing is read while 5000 events pass: the outbox of 4 overflows.
        for i in 0..50 {
            let batch = (0..100).map(|j| ev("a", i * 100 + j)).collect();
            b.publish(batch).await.unwrap();
        }
        for want in 1..=5000 {
            assert_eq!(next_event(&mut s).await, want);
        }
        assert!(b.stats().lagged_total.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_n_with_filter_and_gap_after_retention() {
        let b = broker(1024, 16);
        for i in 0..100 {
            b.publish(vec![ev(if i % 2 == 0 { "even" } else { "odd" }, i)])
                .await
                .unwrap();
        }
        let spec = Subscribe {
            topics: vec!["odd".into()],
            last: Some(3),
            ..Default::default()
        };
        let mut s = b.subscribe(&spec).unwrap();
        assert_eq!(next_event(&mut s).await, 96);
        assert_eq!(next_event(&mut s).await, 98);
        assert_eq!(next_event(&mut s).await, 100);
        let mut s = b
            .subscribe(&Subscribe {
                since: Some(0),
                ..Default::default()
            })
            .unwrap();
        match s.next().await.unwrap() {
            Delivery::Gap { from: 1, to, .. } => assert!(to > 50, "{to}"),
            other => panic!("{other:?}"),
        }
    }

    /// Single events (written inline when the turn is free) and batches (always
    /// queued for the writer) from four publishers at once: every id reaches the
    /// subscriber once and in order, and each publisher's events keep its order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_and_queued_publishes_fan_out_in_id_order() {
        let b = broker(1 << 16, 1_000_000);
        let mut s = b.subscribe(&Subscribe::default()).unwrap();
        let pubbers: Vec<_> = (0..4u64)
            .map(|p| {
                let b = b.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    for round in 0..100 {
                        let size = if round % 3 == 0 { INLINE_MAX + 5 } else { 1 };
                        let batch: Vec<_> = (0..size)
                            .map(|j| ev(&format!("p{p}"), n + j as u64))
                            .collect();
                        n += size as u64;
                        b.publish(batch).await.unwrap();
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for p in pubbers {
            total += p.await.unwrap();
        }
        let mut next = [0u64; 4];
        for want in 1..=total {
            let e = loop {
                match s.next().await.unwrap() {
                    Delivery::Event(e) => break e,
                    Delivery::Live { .. } => continue,
                    Delivery::Gap { from, to, .. } => panic!("unexpected gap {from}..{to}"),
                }
            };
            assert_eq!(e.id(), want);
            let p = crate::event::Fields::topic(e.as_ref())[1..]
                .parse::<usize>()
                .unwrap();
            assert_eq!(
                crate::event::Fields::data(e.as_ref())["n"],
                next[p],
                "in order"
            );
            next[p] += 1;
        }
        assert_eq!(b.log().committed(), total);
    }

    /// Batches submitted one after another without waiting for answers (a
    /// WebSocket publisher does this) are written in the order submitted, also
    /// when a later one is small enough to be written inline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitted_batches_keep_their_order() {
        let b = broker(1024, 1_000_000);
        let mut n = 0;
        let mut submitted = Vec::new();
        for round in 0..200 {
            let size = if round % 2 == 0 { INLINE_MAX * 50 } else { 1 };
            let batch: Vec<_> = (0..size).map(|j| ev("t", n + j as u64)).collect();
            n += size as u64;
            submitted.push((size, b.submit(batch).await));
        }
        let mut next = 1;
        let mut queued = 0;
        for (size, s) in submitted {
            queued += usize::from(matches!(s, Submitted::Queued(_)));
            let ids: Vec<u64> = s
                .outcomes()
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(ids, (next..next + size as u64).collect::<Vec<_>>());
            next += size as u64;
        }
        assert!(queued > 0, "some batches went to the writer thread");
        assert_eq!(b.log().committed(), n);
    }

    /// One fan-out hands each subscriber the events of a batch it matches: a topic
    /// subscriber gets only its own (none of a batch without any), in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fan_out_hands_each_subscriber_its_part_of_a_batch() {
        let b = broker(1024, 1_000_000);
        let spec = |t: &str| Subscribe {
            topics: vec![t.into()],
            ..Default::default()
        };
        let mut odd = b.subscribe(&spec("odd")).unwrap();
        let mut all = b.subscribe(&Subscribe::default()).unwrap();
        for s in [&mut odd, &mut all] {
            assert!(matches!(s.next().await.unwrap(), Delivery::Live { .. }));
        }
        let batch = (0..10)
            .map(|i| ev(if i % 2 == 1 { "odd" } else { "even" }, i))
            .collect();
        b.publish(batch).await.unwrap();
        b.publish(vec![ev("even", 10), ev("even", 11)])
            .await
            .unwrap();
        b.publish(vec![ev("odd", 12)]).await.unwrap();
        for want in [2, 4, 6, 8, 10, 13] {
            assert_eq!(next_event(&mut odd).await, want);
        }
        for want in 1..=13 {
            assert_eq!(next_event(&mut all).await, want);
        }
        assert!(odd.try_next_event().is_none());
        assert!(all.try_next_event().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicate_keys_answer_the_first_id() {
        let b = broker(16, 1000);
        let mut e = inc("a", 1);
        e.key = Some("k".into());
        let r = b
            .publish(vec![e.clone().into(), e.clone().into()])
            .await
            .unwrap();
        assert_eq!(r, vec![Ok(1), Ok(1)]);
        let r = b.publish(vec![e.into()]).await.unwrap();
        assert_eq!(r, vec![Ok(1)]);
        assert_eq!(b.log().committed(), 1);
    }
}
