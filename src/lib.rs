//! hub: a local, real-time event hub for shell pipelines, bots, cron/systemd units and
//! CI scripts. This library is shared by the four commands in `src/bin/`.
//!
//! # Layout
//! - [`event`]: the event model and its validation (SPEC §1).
//! - [`json`]: the quick JSON validity check of the hot paths.
//! - [`matching`]: topic globs, types and `FIELD=VALUE` filters (SPEC §2).
//! - [`protocol`]: WebSocket frames, error and close codes (SPEC §3): the only module
//!   that knows the wire bytes, with one subscription type ([`protocol::Subscribe`]).
//! - [`client`]: the reconnecting WebSocket client (Publisher, Subscriber) of the
//!   client commands: transport only, one file per concern.
//! - [`exit`]: the SPEC §4 exit-code table and the mapping from errors to it.
//! - [`app`]: the four programs, one folder each (`serve`, `emit`, `sub`, `tail`):
//!   each loop with its input handling and output; `hub-sub`'s printing is
//!   [`app::sub::output`].
//! - [`cli`]: command-line flags of the four commands (clap), the shared hub flags,
//!   the duration and size grammar, man pages and completions.
//! - [`follow`]: following log files like `tail -F` for `hub-tail`: rotation, positions,
//!   wake-ups.
//! - [`dashboard`]: the browser dashboard `hub-serve` serves at `/`: its embedded
//!   page, script and style, with their headers (CSP, ETag).
//! - [`stdin`]: standard input read by a thread of its own (`hub-emit`, `hub-tail -`).
//! - [`store`]: the durable event log of `hub-serve` (segments, checksums, repair,
//!   retention, idempotency keys) and `hub-serve --check`.
//! - [`broker`]: publish → log → fan-out, subscriptions (catch-up ⇄ live), the
//!   `/tasks` board, durable cursors and the counters of `/status`.
//! - [`server`]: the HTTP and WebSocket server on one port: accept loop and limits,
//!   `/ws`, `/publish`, `/events`, `/status`, `/metrics`, access rules.
//! - [`nats`] (feature `nats`): the JetStream counterpart of [`store`] for running
//!   several hubs over one NATS stream; not yet wired into `hub-serve`.
//! - [`shutdown`]: SIGINT/SIGTERM into one cancellation token.
//! - `fuzzing` (tests and the `fuzzing` feature) and `testgen` (tests): the checks
//!   the fuzz targets and property tests share, and their input generators.

pub mod app;
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
