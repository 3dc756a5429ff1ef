//! hub: a local, real-time event hub for shell pipelines, bots, cron/systemd units and
//! CI scripts. This library is shared by the four commands in `src/bin/`.
//!
//! # Layout
//! - [`event`]: the event model and its validation (SPEC §1).
//! - [`matching`]: topic globs, types and `FIELD=VALUE` filters (SPEC §2).
//! - [`protocol`]: WebSocket frames, error and close codes (SPEC §3).

pub mod broker;
pub mod cli;
pub mod event;
pub mod matching;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod store;

/// Where the hub listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7357";
/// Where clients connect unless told otherwise.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:7357";
