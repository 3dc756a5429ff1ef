//! The client side of the wire, shared by `hub-emit`, `hub-sub` and `hub-tail`: one
//! reconnecting WebSocket client that only moves [`crate::protocol`] frames.
//!
//! - [`normalize_url`]: `ws://h:p`, `ws://h:p/ws`, `http://h:p` and `h:p` all name the
//!   same endpoint; `/ws` is added when missing.
//! - Every connection sets TCP_NODELAY and sends the token as
//!   `Authorization: Bearer` (never in the URL, so it stays out of server logs).
//! - [`parse_hub_list`]: `--url a,b,c` names several hubs; a client uses the first
//!   that answers, tries the next at once when an attempt fails, waits the backoff
//!   only after a whole round failed, and moves to the next hub when a connection
//!   drops. Ids are global across hub nodes, so resuming by id works on any of them.
//! - [`Backoff`]: 0.5 s doubling to 30 s, with ±20 % jitter, reset after a success.
//! - Close codes keep the retry meaning of SPEC §3 ([`close::is_retryable`](crate::protocol::close::is_retryable)): after
//!   1001, 1006, 4429, 4500 the client reconnects; after 1003, 1008, 1009, 4400, 4401
//!   and 4403 it stops with [`ClientError::Refused`].
//! - [`Publisher`]: a handle to a background task that owns the connection. Events
//!   are pipelined (up to [`WINDOW`] unacknowledged), written in batches, and kept
//!   until the hub acknowledges them; after a reconnect the unacknowledged ones are
//!   sent again with the same idempotency `key`, so the hub stores each once.
//! - [`Subscriber`]: one subscription that resumes `since` the last event it handed
//!   out, so a hub restart neither loses nor repeats an event.
//! - [`publish_once`] (`post.rs`): one event in one `POST /publish`, for a one-shot
//!   publisher; the same keys, retries and errors as [`Publisher`].
//!
//! What this module is not: it does not print anything (callers decide what a person
//! sees; reconnect attempts are reported through `tracing` and [`SubEvent`]), and it
//! parses no command lines, and it writes or reads no frame bytes by hand: those are
//! [`crate::protocol`]'s.
//!
//! Files: `connect.rs` (URL, one attempt, retry, close codes), `publisher.rs`
//! ([`Publisher`] and its task), `in_flight.rs` (outcomes back to the caller,
//! [`InFlight`]), `pool.rs` (the strings of acknowledged events, reused),
//! `subscriber.rs` ([`Subscriber`]), `post.rs` ([`publish_once`]).

mod connect;
mod in_flight;
mod pool;
mod post;
mod publisher;
mod subscriber;

/// Re-exported for `cli/emit.rs`, which names them from here.
pub use crate::protocol::{EventHead, RawJson};
pub use crate::protocol::{Start, Subscribe};

/// What a [`Subscriber`] asks for: the one [`Subscribe`] type, by the name
/// `cli/sub.rs` uses. Its `batch` is not read: the subscriber asks for batches
/// whenever the hub offers them.
pub type SubscribeOptions = Subscribe;
pub use connect::{Backoff, normalize_url, parse_hub_list, seconds};
pub use in_flight::{Encoded, InFlight, WINDOW};
pub use post::publish_once;
pub use publisher::{Publisher, Ticket};
pub use subscriber::{Received, SubEvent, Subscriber};

use crate::event::EventError;
use std::time::Duration;

/// Why a client operation failed. Cheap to clone: a publisher that gives up hands the
/// same error to every event it still held.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Bad input given to the client (URL, token): retrying cannot help.
    #[error("{0}")]
    Usage(String),
    /// An event failed local validation before it was sent.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// No connection could be made before the timeout.
    /// `url` names every hub tried (`ws://a/ws, ws://b/ws` for a list).
    #[error("cannot reach {} (gave up after {}): {cause}", hub_at(url), seconds(*waited))]
    Unreachable {
        url: String,
        cause: String,
        waited: Duration,
    },
    /// The connection dropped and reconnecting was not allowed.
    #[error("lost the connection to the hub at {url}: {cause}")]
    Disconnected { url: String, cause: String },
    /// The hub said no: auth, limits, an invalid event or subscription.
    #[error("the hub at {url} refused: {message} ({code})")]
    Refused {
        url: String,
        code: String,
        message: String,
    },
    /// The publisher task is gone (the handle outlived its runtime).
    #[error("the connection to the hub was closed")]
    Closed,
}

/// "the hub at URL", or "any hub at URL, URL" for a list.
fn hub_at(url: &str) -> String {
    if url.contains(", ") {
        format!("any hub at {url}")
    } else {
        format!("the hub at {url}")
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The hub URL in any accepted spelling (see [`normalize_url`]), or several
    /// separated by commas: the client fails over between them (see
    /// [`parse_hub_list`]).
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// How long one outage may last before the client gives up with
    /// [`ClientError::Unreachable`]; `None` retries forever (hub-tail: the file is the
    /// buffer). Measured from the first failed attempt of that outage.
    pub timeout: Option<Duration>,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token: None,
            timeout: Some(Duration::from_secs(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Publisher>();
        shared::<Subscriber>();
        shared::<ClientError>();
    }
}
