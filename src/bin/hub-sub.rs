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

// No `#[global_allocator]`: the system allocator. With mimalloc hub-sub started
// ~0.9 ms slower (2.7 ms vs 1.8 ms for `--last 1 --count 1`) and held 17 MiB of RSS
// instead of 5.6 MiB printing 200,000 events, at the same CPU time: W2 runs 50 of
// them.
