//! `hub-serve`: the broker. Parses the command line and hands it to the library.

use clap::Parser;
use hub::cli::serve::{ServeArgs, execute};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    hub::cli::docs::generate_if_asked("hub-serve");
    let args = ServeArgs::parse();
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub-serve: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// mimalloc pays off here (and only here): the broker allocates per event on several
/// threads for as long as it runs. The short-lived clients use the system allocator
/// (see src/bin/hub-emit.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
