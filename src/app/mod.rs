//! The four programs, one folder each: the loop, its input handling and its output.
//! Each entry point is `run(args)`, called by the thin `main` in `src/bin/`; the
//! flags are in [`crate::cli`].
//!
//! - [`serve`]: `hub-serve` (and `--check`).
//! - [`emit`]: `hub-emit`: one event, `--lines`, `--events`, `--run`.
//! - [`sub`]: `hub-sub`: subscribe, print, stop on `--count`/`--until`/`--wait-task`.
//! - [`tail`]: `hub-tail`: follow files (see [`crate::follow`]) or stdin, publish lines.

pub mod emit;
pub mod serve;
pub mod sub;
pub mod tail;
