//! Links `hub-emit` as a position-dependent executable on Linux.
//!
//! A one-shot `hub-emit` (cron, CI steps, hooks) spends much of its life starting
//! up. As a PIE, the dynamic loader first applies its many relative relocations,
//! writing to (and so copying) every page of its relocated read-only data. Without
//! PIE the linker resolves them all. The other commands stay PIE
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
