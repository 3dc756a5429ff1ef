//! `hub-emit`: publish events to a hub. Everything is in [`hub::app::emit`].
//!
//! A current-thread runtime: one connection and one event loop, and it starts fast
//! (a one-shot `hub-emit` is meant to take a few milliseconds).

use clap::Parser;
use hub::app::emit::run;
use hub::cli::emit::EmitArgs;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hub::cli::docs::generate_if_asked("hub-emit");
    let args = EmitArgs::parse();
    args.hub.init_logging("hub-emit");
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => ExitCode::from(hub::exit::report("hub-emit", &err)),
    }
}

// No `#[global_allocator]`: the system allocator. mimalloc (hub-serve's) slows a
// one-shot `hub-emit TOPIC`'s start-up: its first allocation faults in transparent
// huge pages, and it returns memory at exit.
