//! The WebSocket wire protocol (SPEC §3): text frames, each one JSON object with a
//! `type` discriminator. The only module that knows the frames' bytes, in both
//! directions; the sockets live in `server::ws` and `client`.
//!
//! - `frames.rs`: [`ClientFrame`] (with the hub's own parse of it and
//!   [`FrameError`]), [`ServerFrame`], the `event` frame ([`event_frame`] and the
//!   client's slicing of it), [`ErrorCode`], [`close`] codes.
//! - `subscribe.rs`: [`Subscribe`], the one shape of a subscription (frame, query,
//!   broker, client), and [`Start`].
//! - `batch.rs`: the batch frames (several events in one `publish`, `ack` or
//!   `events` frame) and the client's quick reads of `ack` and `events` frames.
//! - `encode.rs`: the client's hand-built `publish` frames ([`EventHead`],
//!   [`RawJson`], [`publish_frame`]).
//! - `quick.rs`: the hub's quick parse of batch `publish` frames.
//! - `differential.rs` (tests): every hand-written reader and writer here against
//!   its serde twin, which sits beside it.
//!
//! Client → server: `subscribe`, `unsubscribe`, `publish`, `cursor`, `ping`.
//! Server → client: `subscribed`, `event`, `events`, `live`, `ack`, `gap`, `pong`,
//! `error`.
//!
//! One exchange:
//! ```text
//! → {"type":"subscribe","sub":"s1","topics":["task:*"],"since":40}
//! ← {"type":"subscribed","sub":"s1","last_id":42}
//! ← {"type":"event","sub":"s1","event":{"id":41,...}}
//! ← {"type":"event","sub":"s1","event":{"id":42,...}}
//! ← {"type":"live","sub":"s1","last_id":42}
//! → {"type":"publish","req":7,"event":{"topic":"task:b","type":"progress","data":{"percent":50}}}
//! ← {"type":"ack","req":7,"id":43}
//! ← {"type":"event","sub":"s1","event":{"id":43,...}}
//! ```
//!
//! Beyond SPEC, additions that third-party clients may ignore:
//! - `live` (server): the subscription has replayed everything it asked for and now
//!   receives live events; `hub-sub --drain` exits on it.
//! - `types` in `subscribe` (OR-ed event types) and `durable` (a named cursor kept by
//!   the hub), with the `cursor` frame that moves it:
//!   `{"type":"cursor","durable":"nightly","id":57}`.
//! - A batch publish: `{"type":"publish","req":8,"events":[{...},{...}]}`, answered
//!   by one `{"type":"ack","req":8,"ids":[44,45]}` (ids in the order of the events;
//!   an event the hub refused has `null` there and an entry in `"errors":[{"index":1,
//!   "code":"too_large","message":"..."}]`). An invalid event refuses the whole frame
//!   with one `error` frame and stores nothing, as `POST /publish` does. The hub names
//!   the largest frame it takes in the `X-Hub-Max-Frame` header of its handshake
//!   answer; `hub-emit` batches only when it sees it.
//! - `"batch":true` in `subscribe`: events that are ready together may come in one
//!   `{"type":"events","sub":"s1","events":[...]}` frame (see [`events_frame`]);
//!   `hub-sub` asks for it when the hub sends `X-Hub-Max-Frame`.

mod batch;
#[cfg(test)]
mod differential;
mod encode;
mod frames;
pub(crate) mod quick;
mod subscribe;

pub use batch::*;
pub(crate) use encode::event_json;
pub use encode::{EventHead, RawJson, publish_frame};
pub use frames::*;
pub use subscribe::{Start, Subscribe};
