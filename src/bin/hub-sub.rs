//! `hub-sub`: subscribe and print events. Everything is in [`hub::app::sub`].
//!
//! A current-thread runtime: one connection, one event loop, stdout written from
//! the same thread that reads the socket.

use clap::Parser;
use hub::app::sub::run;
use hub::cli::sub::SubArgs;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hub::cli::docs::generate_if_asked("hub-sub");
    let args = SubArgs::parse();
    args.hub.init_logging("hub-sub");
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => ExitCode::from(hub::exit::report("hub-sub", &err)),
    }
}

// No `#[global_allocator]`: the system allocator. mimalloc makes hub-sub start
// slower and hold more memory for no CPU gain, and a workload runs many of them.
