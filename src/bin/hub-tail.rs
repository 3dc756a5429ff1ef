//! `hub-tail`: follow log files and publish each line to the hub. See
//! [`hub::app::tail`] and [`hub::follow`].

use clap::Parser;
use hub::app::tail::run;
use hub::cli::tail::TailArgs;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    hub::cli::docs::generate_if_asked("hub-tail");
    let args = TailArgs::parse();
    args.hub.init_logging("hub-tail");
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub-tail: {e}");
            ExitCode::from(e.code)
        }
    }
}

// No `#[global_allocator]`: the system allocator. hub-tail allocates little per
// line; mimalloc only adds start-up time and resident memory, as in hub-emit and
// hub-sub.
