//! One subscription's life: catch-up from the log, then live, and back to catch-up
//! whenever it falls behind.
//!
//! ```text
//!   CatchUp ──(read the log up to the newest fanned-out id)──▶ Live
//!      ▲                                                         │
//!      └──────(its outbox was full when the broker fanned out)───┘
//! ```
//!
//! The broker's fan-out never waits for a subscriber: it hands each live subscriber
//! the batch's new events as one `Chunk` (shared by all subscribers, with the
//! positions this one takes), unless the subscriber's outbox already holds its
//! capacity in events; then it flips the subscriber's `live` flag off instead. The
//! subscription drains what its outbox holds and reads on from the log at its own
//! pace. It rejoins live only under the registry lock, after checking that nothing was
//! fanned out past its position, so nothing falls between the two; ids it has already
//! delivered are dropped, so nothing comes twice. A `gap` is reported only when
//! retention has removed events it had not yet read.

use super::{Broker, Entry};
use crate::event::StoredEvent;
use crate::matching::Matcher;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// What one fan-out hands one subscriber: the new events of a batch (one list,
/// shared by every subscriber) and which of them this subscriber takes.
pub(crate) struct Chunk {
    events: Arc<[Arc<StoredEvent>]>,
    /// Positions in `events`, ascending; `None`: all of them.
    pick: Option<Box<[u32]>>,
}

impl Chunk {
    /// The events of `events` that `matcher` takes, or `None` if it takes none.
    pub(super) fn matching(events: &Arc<[Arc<StoredEvent>]>, matcher: &Matcher) -> Option<Chunk> {
        if matcher.is_all() {
            return Some(Chunk {
                events: events.clone(),
                pick: None,
            });
        }
        let pick: Box<[u32]> = (0..events.len() as u32)
            .filter(|&i| matcher.matches(events[i as usize].as_ref()))
            .collect();
        match pick.len() {
            0 => None,
            n => Some(Chunk {
                events: events.clone(),
                pick: (n < events.len()).then_some(pick),
            }),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.pick.as_ref().map_or(self.events.len(), |p| p.len())
    }

    fn get(&self, i: usize) -> &Arc<StoredEvent> {
        match &self.pick {
            Some(p) => &self.events[p[i] as usize],
            None => &self.events[i],
        }
    }
}

/// What a subscription hands its connection, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<StoredEvent>),
    /// Ids `from..=to` are gone (removed by retention, or lost to damage on disk)
    /// and will never be delivered.
    Gap {
        from: u64,
        to: u64,
        reason: crate::store::GapReason,
    },
    /// Replay is done; what follows is live. Sent once.
    Live {
        last_id: u64,
    },
}

/// Events read from the log per catch-up step.
const CATCH_UP_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CatchUp,
    Live,
}

/// A subscription registered with the broker. Dropping it unregisters it.
pub struct Subscription {
    pub(super) key: u64,
    pub(super) broker: Broker,
    pub(super) matcher: Arc<Matcher>,
    pub(super) rx: mpsc::UnboundedReceiver<Box<Chunk>>,
    /// Events in the outbox (`rx` and `current`), as the fan-out counts them.
    pub(super) queued: Arc<AtomicUsize>,
    /// The chunk being delivered, and the position of its next event.
    current: Option<(Box<Chunk>, usize)>,
    pub(super) live: Arc<AtomicBool>,
    /// The last id delivered or skipped: everything at or below it is done.
    pub(super) cursor: u64,
    mode: Mode,
    announced: bool,
    pending: VecDeque<Delivery>,
    /// The id the `subscribed` frame names.
    pub last_id_at_start: u64,
}

impl Subscription {
    pub(super) fn new(
        key: u64,
        broker: Broker,
        matcher: Arc<Matcher>,
        outbox: Outbox,
        cursor: u64,
        last_id_at_start: u64,
    ) -> Self {
        Subscription {
            key,
            broker,
            matcher,
            rx: outbox.rx,
            queued: outbox.queued,
            current: None,
            live: outbox.live,
            cursor,
            mode: Mode::CatchUp,
            announced: false,
            pending: VecDeque::new(),
            last_id_at_start,
        }
    }

    /// The next delivery.
    ///
    /// # Cancel safety
    /// Cancel safe: a delivery is only taken out of the subscription when this
    /// returns it.
    ///
    /// # Errors
    /// The log could not be read.
    pub async fn next(&mut self) -> std::io::Result<Delivery> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Ok(d);
            }
            match self.mode {
                Mode::CatchUp => self.catch_up_step()?,
                Mode::Live => {
                    if let Some(ev) = self.take_live() {
                        return Ok(Delivery::Event(ev));
                    }
                    if !self.live.load(Ordering::Acquire) {
                        // The broker found our outbox full: read on from the log.
                        self.mode = Mode::CatchUp;
                        self.broker
                            .stats()
                            .lagged_total
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match self.rx.recv().await {
                        Some(chunk) => self.current = Some((chunk, 0)),
                        None => std::future::pending().await,
                    }
                }
            }
        }
    }

    /// The next delivery if it is an event that is ready now, without waiting or
    /// reading the log; `None` otherwise (call [`next`](Subscription::next)).
    pub fn try_next_event(&mut self) -> Option<Arc<StoredEvent>> {
        match self.pending.front() {
            Some(Delivery::Event(_)) => match self.pending.pop_front() {
                Some(Delivery::Event(ev)) => return Some(ev),
                _ => unreachable!("front was an event"),
            },
            Some(_) => return None,
            None => {}
        }
        if self.mode != Mode::Live {
            return None;
        }
        self.take_live()
    }

    /// The next live event past the cursor that the outbox holds now, if any.
    fn take_live(&mut self) -> Option<Arc<StoredEvent>> {
        loop {
            if let Some((chunk, pos)) = &mut self.current {
                while *pos < chunk.len() {
                    let ev = chunk.get(*pos);
                    *pos += 1;
                    if ev.id() > self.cursor {
                        self.cursor = ev.id();
                        return Some(ev.clone());
                    }
                }
                self.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
                self.current = None;
            }
            match self.rx.try_recv() {
                Ok(chunk) => self.current = Some((chunk, 0)),
                Err(_) => return None,
            }
        }
    }

    /// Reads one batch from the log into `pending`, or switches to live when there is
    /// nothing left to read.
    fn catch_up_step(&mut self) -> std::io::Result<()> {
        let log = self.broker.log();
        let batch = log.read_after(self.cursor, CATCH_UP_BATCH)?;
        if let Some(gap) = batch.gap {
            self.broker
                .stats()
                .gaps_total
                .fetch_add(1, Ordering::Relaxed);
            self.pending.push_back(Delivery::Gap {
                from: gap.from,
                to: gap.to,
                reason: gap.reason,
            });
        }
        let read_any = !batch.events.is_empty();
        for ev in batch.events {
            if self.matcher.matches(ev.as_ref()) {
                self.pending.push_back(Delivery::Event(ev));
            }
        }
        self.cursor = self.cursor.max(batch.next_after);
        if read_any || batch.gap.is_some() {
            return Ok(());
        }
        // Nothing more in the log: rejoin live unless the fan-out has moved past us.
        // The outbox may still hold a chunk sent just before this subscription left
        // live; what keeps delivery exact is that events at or below the cursor are
        // dropped when taken from it (`ev.id() > self.cursor` in take_live).
        let rejoined = self.broker.try_go_live(self.key, self.cursor, &self.live);
        if rejoined {
            self.mode = Mode::Live;
            if !self.announced {
                self.announced = true;
                self.pending.push_back(Delivery::Live {
                    last_id: self.cursor,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.broker.unregister(self.key);
    }
}

/// A subscription's side of its outbox.
pub(super) struct Outbox {
    rx: mpsc::UnboundedReceiver<Box<Chunk>>,
    queued: Arc<AtomicUsize>,
    live: Arc<AtomicBool>,
}

/// Registry entry for a new subscription, with an outbox of `capacity` events, and
/// the subscription's side of it.
pub(super) fn entry(matcher: Arc<Matcher>, capacity: usize) -> (Entry, Outbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let live = Arc::new(AtomicBool::new(false));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Entry {
            matcher,
            tx,
            queued: queued.clone(),
            capacity,
            live: live.clone(),
        },
        Outbox { rx, queued, live },
    )
}
