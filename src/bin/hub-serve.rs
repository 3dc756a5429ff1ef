//! `hub-serve`: the broker. Parses the command line and hands it to the library.

use clap::Parser;
use hub::app::serve::run;
use hub::cli::serve::ServeArgs;
use std::process::ExitCode;

fn main() -> ExitCode {
    no_huge_pages();
    hub::cli::docs::generate_if_asked("hub-serve");
    let args = ServeArgs::parse();
    if let Some(problem) = args.usage_problem() {
        use clap::CommandFactory;
        ServeArgs::command()
            .error(clap::error::ErrorKind::ArgumentConflict, problem)
            .exit();
    }
    if args.check {
        return ExitCode::from(hub::app::serve::run_check(&args));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub-serve: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Threads for the connections: one core fewer than the machine has (one at
/// least), as the log's writer thread keeps a core busy under load. On two cores a
/// second worker only adds wake-ups (each event wakes both workers) and CPU, with no
/// gain in throughput. `TOKIO_WORKER_THREADS` overrides.
fn worker_threads() -> usize {
    let set = std::env::var("TOKIO_WORKER_THREADS").ok();
    match set.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
    }
}

/// mimalloc pays off here (and only here): the broker allocates per event on several
/// threads for as long as it runs. The short-lived clients use the system allocator
/// (see src/bin/hub-emit.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. Where the system default is
/// `always`, the heap otherwise grows in 2 MiB steps, each zeroed when first touched:
/// an idle hub holds several times the memory it uses, and a fresh hub under a stream
/// spends its time zeroing pages. As Redis and most databases advise; the kernel's
/// setting is not changed.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and touches no memory
    // of ours; on failure (an old kernel) nothing changes and the hub runs as before.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
