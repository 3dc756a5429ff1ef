//! [`Spare`]: the strings of acknowledged events, kept for the next ones.

#[cfg(doc)]
use super::Publisher;
use super::WINDOW;
use std::sync::{Arc, Mutex};

/// The strings of acknowledged events, for the next ones
/// [`Publisher::encode_with_head`] writes. With thousands in flight, glibc's
/// per-thread cache of freed blocks (seven per size) overflows, and every event
/// would take a trip through its slower bins.
#[derive(Clone, Default)]
pub(super) struct Spare(pub(super) Arc<Mutex<Vec<String>>>);

impl Spare {
    /// Strings kept at most: a window's worth (acks come back a few batches at a
    /// time).
    pub(super) const MAX: usize = WINDOW;
    /// Larger strings are freed, not kept: the pool holds at most 8 MiB (under
    /// 1 MiB with events of the usual size), besides the window itself.
    pub(super) const MAX_LEN: usize = 2048;

    pub(super) fn take(&self) -> Option<String> {
        self.0.lock().unwrap().pop()
    }

    pub(super) fn put(&self, done: &mut Vec<String>) {
        let mut spare = self.0.lock().unwrap();
        let room = Self::MAX.saturating_sub(spare.len());
        let small = done.drain(..).filter(|s| s.capacity() <= Self::MAX_LEN);
        spare.extend(small.take(room).map(|mut s| {
            s.clear();
            s
        }));
    }
}
