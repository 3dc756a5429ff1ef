//! [`Subscribe`]: what a subscription takes and where it starts, in one type. It is
//! the body of a `subscribe` frame ([`ClientFrame::Subscribe`](super::ClientFrame::Subscribe)),
//! the query of `/ws` and `/events` (`server::http::parse_query`), what the broker
//! registers (`Broker::subscribe`) and what a client asks for
//! (`client::Subscriber::connect`). A new field is added here, to
//! [`Subscribe::FIELDS`] and to the frame's full parse (`FlatFrame`), which the
//! test `every_subscribe_field_reads_back` checks.

use serde::{Deserialize, Serialize};

/// What to subscribe to and where to start. In a frame its fields sit beside `sub`:
/// `{"type":"subscribe","sub":"s1","topics":["task:*"],"since":40}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Topic globs, OR-ed; empty means every topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// `FIELD=VALUE` / `FIELD!=VALUE` filters, AND-ed (`where` on the wire).
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Event types, OR-ed; empty means every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Every matching event with an id greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The last N matching events, then live. Not with `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// A cursor name kept by the hub: the subscription starts after the stored
    /// cursor if there is one, else at `since`/`last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<String>,
    /// Beyond SPEC: events that are ready together may come in one `events` frame
    /// (see [`events_frame`](super::events_frame)). A property of the delivery, not
    /// of what is matched: the broker does not read it, and
    /// [`Subscriber`](crate::client::Subscriber) sets it from what the hub offers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

impl Subscribe {
    /// The field names as the wire spells them, in the order they are written.
    pub const FIELDS: [&'static str; 7] = [
        "topics", "where", "types", "since", "last", "durable", "batch",
    ];

    /// Where the subscription starts, read from `since` and `last`.
    pub fn start(&self) -> Start {
        match (self.since, self.last) {
            (Some(s), _) => Start::Since(s),
            (None, Some(n)) => Start::Last(n),
            (None, None) => Start::Live,
        }
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// New events only.
    #[default]
    Live,
    /// Every matching event with an id greater than this (`0`: all retained).
    Since(u64),
    /// The last N matching events, then live.
    Last(u64),
}

/// A subscription to everything that starts at `start`.
impl From<Start> for Subscribe {
    fn from(start: Start) -> Subscribe {
        let (since, last) = match start {
            Start::Live => (None, None),
            Start::Since(s) => (Some(s), None),
            Start::Last(n) => (None, Some(n)),
        };
        Subscribe {
            since,
            last,
            ..Subscribe::default()
        }
    }
}
