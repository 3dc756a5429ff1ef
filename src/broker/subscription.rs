//! One subscription's life: catch-up from the log, then live, and back to catch-up
//! whenever it falls behind.
//!
//! ```text
//!   CatchUp ──(read the log up to the newest fanned-out id)──▶ Live
//!      ▲                                                         │
//!      └──────(its outbox was full when the broker fanned out)───┘
//! ```
//!
//! The broker's fan-out never waits for a subscriber: it `try_send`s into the bounded
//! outbox and, when that is full, flips the subscriber's `live` flag off. The
//! subscription then drains what its outbox holds and reads on from the log at its own
//! pace. It rejoins live only under the registry lock, after checking that nothing was
//! fanned out past its position, so nothing falls between the two; ids it has already
//! delivered are dropped, so nothing comes twice. A `gap` is reported only when
//! retention has removed events it had not yet read.

use super::{Broker, Entry};
use crate::event::StoredEvent;
use crate::matching::Matcher;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// What a subscription hands its connection, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<StoredEvent>),
    /// Ids `from..=to` were removed by retention before they were delivered.
    Gap {
        from: u64,
        to: u64,
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
    pub(super) rx: mpsc::Receiver<Arc<StoredEvent>>,
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
        rx: mpsc::Receiver<Arc<StoredEvent>>,
        live: Arc<AtomicBool>,
        cursor: u64,
        last_id_at_start: u64,
    ) -> Self {
        Subscription {
            key,
            broker,
            matcher,
            rx,
            live,
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
                    let ev = match self.rx.try_recv() {
                        Ok(ev) => ev,
                        Err(mpsc::error::TryRecvError::Empty) => {
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
                                Some(ev) => ev,
                                None => std::future::pending().await,
                            }
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            std::future::pending().await
                        }
                    };
                    if ev.id() > self.cursor {
                        self.cursor = ev.id();
                        return Ok(Delivery::Event(ev));
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
        while let Ok(ev) = self.rx.try_recv() {
            if ev.id() > self.cursor {
                self.cursor = ev.id();
                return Some(ev);
            }
        }
        None
    }

    /// Reads one batch from the log into `pending`, or switches to live when there is
    /// nothing left to read.
    fn catch_up_step(&mut self) -> std::io::Result<()> {
        let log = self.broker.log();
        let batch = log.read_after(self.cursor, CATCH_UP_BATCH)?;
        if let Some((from, to)) = batch.gap {
            self.broker
                .stats()
                .gaps_total
                .fetch_add(1, Ordering::Relaxed);
            self.pending.push_back(Delivery::Gap { from, to });
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
        let rejoined = self.broker.try_go_live(self.key, self.cursor, &self.live);
        if rejoined {
            // Anything still queued predates the switch and is at or below the cursor.
            while self.rx.try_recv().is_ok() {}
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

/// Registry entry for a new subscription and the receiving half of its outbox.
pub(super) fn entry(
    matcher: Arc<Matcher>,
    capacity: usize,
) -> (Entry, mpsc::Receiver<Arc<StoredEvent>>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel(capacity);
    let live = Arc::new(AtomicBool::new(false));
    (
        Entry {
            matcher,
            tx,
            live: live.clone(),
        },
        rx,
        live,
    )
}
