//! The outcomes of published events on their way back to the caller: each
//! [`Ticket`]'s at once, a stream's in runs, taken out in the order sent by
//! [`InFlight`].

#[cfg(doc)]
use super::Ticket;
use super::pool::Spare;
use super::{ClientError, Publisher};
use std::collections::VecDeque;
use tokio::sync::{mpsc, oneshot};

/// The most events a [`Publisher`] keeps in flight (sent, not yet acknowledged).
/// Enough to keep a loopback link busy; small enough that a reconnect resends little.
pub const WINDOW: usize = 4096;

/// Where the outcome of one event goes.
pub(super) enum Reply {
    /// Its [`Ticket`].
    Ticket(oneshot::Sender<Result<u64, ClientError>>),
    /// The stream's receiver ([`InFlight`]); the event's number.
    Stream(u64),
}

/// Where the publisher task reports the outcomes of stream events ([`InFlight`]):
/// `(n, outcomes)` for the events numbered `n`, `n + 1`, ..., one message per run
/// of consecutive events the hub answered together. Runs come as
/// the hub answers, mostly but not always in the order sent (an event of a batch
/// the hub refused as a whole is sent again alone, after the others).
pub(super) type Outcomes = mpsc::UnboundedSender<(u64, Vec<Result<u64, ClientError>>)>;

/// The publisher task's side of the outcomes: each ticket's at once, the stream's
/// gathered into runs.
#[derive(Default)]
pub(super) struct Replies {
    pub(super) stream: Option<Outcomes>,
    pub(super) run: Option<(u64, Vec<Result<u64, ClientError>>)>,
    /// Strings of acknowledged events, on their way to `spare`.
    pub(super) done: Vec<String>,
    pub(super) spare: Spare,
}

impl Replies {
    pub(super) fn send(&mut self, reply: Reply, r: Result<u64, ClientError>) {
        match reply {
            Reply::Ticket(tx) => {
                let _ = tx.send(r);
            }
            Reply::Stream(n) => match &mut self.run {
                Some((first, rs)) if *first + rs.len() as u64 == n => rs.push(r),
                _ => {
                    self.flush();
                    self.run = Some((n, vec![r]));
                }
            },
        }
    }

    /// Sends the run gathered so far.
    pub(super) fn flush(&mut self) {
        if let Some(run) = self.run.take()
            && let Some(to) = &self.stream
        {
            let _ = to.send(run);
        }
        if !self.done.is_empty() {
            self.spare.put(&mut self.done);
        }
    }

    /// An acknowledged event's string, for reuse.
    pub(super) fn recycle(&mut self, event: String) {
        if self.done.len() < Spare::MAX {
            self.done.push(event);
        }
    }

    /// Outcomes of stream events go to `to` from now on.
    pub(super) fn stream_to(&mut self, to: Outcomes) {
        if !self.stream.as_ref().is_some_and(|s| s.same_channel(&to)) {
            self.flush();
            self.stream = Some(to);
        }
    }
}

/// Events encoded by [`Publisher::encode`] or [`Publisher::encode_with_head`], for
/// [`InFlight::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub(super) String);

/// A stream of events sent through a [`Publisher`] and not yet answered,
/// oldest first, each with what the caller keeps for it (`T`: a line number, a
/// file position) and, once it is in, its outcome; taken out in the order sent
/// (`hub-emit --lines`, `hub-tail`).
pub struct InFlight<T> {
    items: VecDeque<(T, Option<Result<u64, ClientError>>)>,
    /// The stream number of the oldest.
    front: u64,
    /// Events sent whose outcome is not in: at most [`WINDOW`] before a send.
    unanswered: usize,
    /// `None` once [`finish`](InFlight::finish)ed.
    to: Option<Outcomes>,
    outcomes: mpsc::UnboundedReceiver<(u64, Vec<Result<u64, ClientError>>)>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        let (to, outcomes) = mpsc::unbounded_channel();
        InFlight {
            items: VecDeque::new(),
            front: 0,
            unanswered: 0,
            to: Some(to),
            outcomes,
        }
    }
}

impl<T> InFlight<T> {
    /// Events sent and not yet taken out.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends `batch` (emptied) through `publisher`, in order. While [`WINDOW`]
    /// events are unanswered it first waits for outcomes, so the publisher never
    /// holds much more than a window (plus this batch).
    ///
    /// # Errors
    /// The error that made the publisher give up earlier; nothing was sent.
    pub async fn send(
        &mut self,
        publisher: &Publisher,
        batch: &mut Vec<(T, Encoded)>,
    ) -> Result<(), ClientError> {
        if self.to.is_none() {
            return Err(ClientError::Closed);
        }
        while self.unanswered >= WINDOW {
            self.answered().await;
        }
        let Some(to) = &self.to else {
            return Err(ClientError::Closed);
        };
        let n = batch.len();
        self.unanswered += n;
        let first = self.front + self.items.len() as u64;
        let mut events = Vec::with_capacity(batch.len());
        for (what, ev) in batch.drain(..) {
            events.push(ev);
            self.items.push_back((what, None));
        }
        let sent = publisher.send_stream(first, events, to).await;
        if sent.is_err() {
            // Given to no one: no outcome will come for them.
            self.unanswered -= n;
        }
        sent
    }

    /// Takes in the outcomes that have arrived, without waiting.
    pub fn collect(&mut self) {
        while let Ok((first, rs)) = self.outcomes.try_recv() {
            self.set(first, rs);
        }
    }

    /// Waits for the next outcomes (forever when nothing is in flight). After
    /// [`finish`](InFlight::finish), an event the publisher will never answer (its
    /// task is gone) gets [`ClientError::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: outcomes are stored as soon as they are received.
    pub async fn answered(&mut self) {
        if self.items.is_empty() {
            return std::future::pending().await;
        }
        match self.outcomes.recv().await {
            Some((first, rs)) => self.set(first, rs),
            None => {
                for (_, r) in &mut self.items {
                    r.get_or_insert(Err(ClientError::Closed));
                }
                self.unanswered = 0;
            }
        }
    }

    /// Sends nothing more: from now on [`answered`](InFlight::answered) also learns
    /// when the publisher is gone.
    pub fn finish(&mut self) {
        self.to = None;
    }

    /// The oldest event's `T` and outcome, once its outcome is in.
    pub fn pop_answered(&mut self) -> Option<(T, Result<u64, ClientError>)> {
        self.items.front()?.1.as_ref()?;
        let (what, r) = self.items.pop_front()?;
        self.front += 1;
        Some((what, r?))
    }

    fn set(&mut self, first: u64, outcomes: Vec<Result<u64, ClientError>>) {
        for (n, r) in (first..).zip(outcomes) {
            if let Some(item) = n
                .checked_sub(self.front)
                .and_then(|i| self.items.get_mut(i as usize))
                && item.1.replace(r).is_none()
            {
                self.unanswered -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outcomes that come out of order are taken out in the order sent; once
    /// finished, events the publisher can no longer answer fail with Closed.
    #[tokio::test]
    async fn in_flight_events_come_out_in_order() {
        let mut inf: InFlight<&str> = InFlight::default();
        for what in ["a", "b", "c", "d"] {
            inf.items.push_back((what, None));
        }
        inf.unanswered = 4;
        let to = inf.to.clone().unwrap();
        to.send((2, vec![Ok(12)])).unwrap();
        inf.collect();
        assert!(inf.pop_answered().is_none(), "a and b are not in yet");
        to.send((0, vec![Ok(10), Ok(11)])).unwrap();
        inf.answered().await;
        let got: Vec<_> = std::iter::from_fn(|| inf.pop_answered()).collect();
        assert_eq!(got, [("a", Ok(10)), ("b", Ok(11)), ("c", Ok(12))]);
        assert_eq!(inf.len(), 1);
        drop(to);
        inf.finish();
        inf.answered().await;
        assert_eq!(inf.pop_answered(), Some(("d", Err(ClientError::Closed))));
        assert!(inf.is_empty());
    }

    /// A send waits while a window's worth of events is unanswered, and goes once
    /// an outcome is in (events answered and not yet taken out do not count).
    #[tokio::test]
    async fn sends_wait_while_a_window_is_unanswered() {
        use crate::client::ConnectOptions;
        use crate::event::NewEvent;
        use crate::protocol::{EventHead, RawJson};
        use std::time::Duration;
        let publisher = Publisher::start(&ConnectOptions::new("ws://127.0.0.1:9/ws")).unwrap();
        let head = EventHead::new(&NewEvent::new("t")).unwrap();
        let raw = RawJson::new("1").unwrap();
        let mut inf: InFlight<usize> = InFlight::default();
        let to = inf.to.clone().unwrap();
        let mut full: Vec<_> = (0..WINDOW)
            .map(|i| (i, publisher.encode_with_head(&head, raw)))
            .collect();
        inf.send(&publisher, &mut full).await.unwrap();
        let mut one = vec![(WINDOW, publisher.encode_with_head(&head, raw))];
        let early =
            tokio::time::timeout(Duration::from_millis(200), inf.send(&publisher, &mut one));
        assert!(early.await.is_err(), "sent with a window unanswered");
        assert_eq!(one.len(), 1, "a send that waited took nothing");
        to.send((0, vec![Ok(1)])).unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), inf.send(&publisher, &mut one));
        sent.await.expect("room once an outcome is in").unwrap();
        assert!(one.is_empty());
        assert_eq!((inf.len(), inf.unanswered), (WINDOW + 1, WINDOW));
    }
}
