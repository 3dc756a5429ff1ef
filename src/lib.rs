//! hub: a local, real-time event hub for shell pipelines, bots, cron/systemd units and
//! CI scripts. This library is shared by the four commands in `src/bin/`.
//!
//! # Layout
//! - [`event`]: the event model and its validation (SPEC §1).
//! - [`json`]: the quick JSON validity check of the hot paths.
//! - [`matching`]: topic globs, types and `FIELD=VALUE` filters (SPEC §2).
//! - [`protocol`]: WebSocket frames, error and close codes (SPEC §3).
//! - [`client`]: the reconnecting WebSocket client (Publisher, Subscriber) of the
//!   client commands.
//! - [`exit`]: the SPEC §4 exit-code table and the mapping from errors to it.
//! - [`cli`]: command-line flags of the client commands (`hub-emit`, `hub-sub`, `hub-tail`).
//! - [`follow`]: following log files like `tail -F` for `hub-tail`: rotation, positions,
//!   wake-ups.
//! - [`output`]: how `hub-sub` prints events (json, data, text, progress bars).
//! - [`dashboard`]: the browser dashboard `hub-serve` serves at `/`: its embedded
//!   page, script and style, with their headers (CSP, ETag).
//! - [`stdin`]: standard input read by a thread of its own (`hub-emit`, `hub-tail -`).

pub mod broker;
pub mod cli;
pub mod client;
pub mod dashboard;
pub mod event;
pub mod exit;
pub mod follow;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
pub mod matching;
#[cfg(feature = "nats")]
pub mod nats;
pub mod output;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod stdin;
pub mod store;
#[cfg(test)]
mod testgen;

/// Where the hub listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7357";
/// Where clients connect unless told otherwise.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:7357";
