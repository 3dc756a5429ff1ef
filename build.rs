//! Links `hub-emit` as a position-dependent executable on Linux.
//!
//! A one-shot `hub-emit` (cron, CI steps, hooks) spends much of its life starting
//! up. As a PIE, the dynamic loader first applies ~16,000 relative relocations,
//! writing to (and so copying) every page of its 300 KB of relocated read-only data:
//! about 75 page faults, 0.15–0.2 ms of a ~1.6 ms run on a VM (perf stat, 3×200
//! runs). Without PIE the linker resolves them all. The other commands stay PIE
//! (hub-serve above all: it listens on the network and runs for months); hub-emit is
//! short-lived, parses only its own input and the hub's answers, and keeps the
//! address randomization of its libraries, heap and stack.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bin=hub-emit=-no-pie");
    }
}
