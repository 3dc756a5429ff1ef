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

    /// Sends `batch` (emptied) through `publisher`, in order.
    ///
    /// # Errors
    /// The error that made the publisher give up earlier; nothing was sent.
    pub async fn send(
        &mut self,
        publisher: &Publisher,
        batch: &mut Vec<(T, Encoded)>,
    ) -> Result<(), ClientError> {
        let Some(to) = &self.to else {
            return Err(ClientError::Closed);
        };
        let first = self.front + self.items.len() as u64;
        let mut events = Vec::with_capacity(batch.len());
        for (what, ev) in batch.drain(..) {
            events.push(ev);
            self.items.push_back((what, None));
        }
        publisher.send_stream(first, events, to).await
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
            {
                item.1 = Some(r);
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
}
