//! `hub-serve`: open the log, serve until SIGINT/SIGTERM, flush (SPEC §3); and
//! `hub-serve --check`, the log's report.

use crate::cli::serve::ServeArgs;

/// Recent events kept in memory for readers a little behind (a subscriber back
/// from its full outbox of 1,024, `--last`, `/events`); older ones are read from
/// the log. Eight outboxes, and a whole writer batch. Not larger: an event evicted
/// that much later is out of the CPU caches, and freeing it costs the writer more
/// than the cache saves readers.
pub const CACHE_EVENTS: usize = 8192;

/// Runs `hub-serve` to completion: opens the log, binds, prints the listening line
/// (first on stderr), serves until SIGINT/SIGTERM, then flushes.
///
/// # Errors
/// The log cannot be opened, the address cannot be bound, or serving failed.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    #[cfg(feature = "nats")]
    if let Some(cfg) = args.nats_config() {
        return run_nats(args, cfg).await;
    }
    #[cfg(not(feature = "nats"))]
    if args.nats.is_some() {
        anyhow::bail!("--nats: this hub-serve was built without the nats feature");
    }
    run_embedded(args).await
}

/// `hub-serve --nats`: connects to the servers, copies the stream, then serves.
#[cfg(feature = "nats")]
async fn run_nats(args: ServeArgs, cfg: crate::nats::NatsConfig) -> anyhow::Result<()> {
    use std::io::Write;
    let server_cfg = args.server_config()?;
    let log_cfg = args.replica_config();
    crate::cli::serve::init_logging(args.verbose, args.quiet);
    let store = crate::nats::connect(cfg).await?;
    let what = format!(
        "nats: stream {} on {} (nats-server {})",
        store.config().stream,
        store.config().urls.join(","),
        store.server_version()
    );
    let broker = crate::broker::Broker::start_nats(store, log_cfg, args.broker_config()).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let _ = writeln!(
        std::io::stderr(),
        "hub-serve: listening on ws://{addr} ({what})"
    );
    serve(listener, broker, server_cfg).await
}

/// Serves until SIGINT/SIGTERM, then shuts the broker down.
async fn serve(
    listener: tokio::net::TcpListener,
    broker: crate::broker::Broker,
    server_cfg: crate::server::ServerConfig,
) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::on_signal();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!("ready: last id {}", broker.log().committed());
    crate::server::run(listener, broker.clone(), server_cfg, shutdown).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tokio::task::spawn_blocking(move || broker.shutdown()).await?;
    Ok(())
}

/// `hub-serve` over the log of its data dir (or `--memory`).
async fn run_embedded(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let log_cfg = args.log_config()?;
    let server_cfg = args.server_config()?;
    let dir = log_cfg.dir.clone();
    let opened = tokio::task::spawn_blocking(move || crate::store::Log::open(log_cfg)).await?;
    let (log, recovery) = opened.context("cannot open the event log")?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let place = match &dir {
        Some(d) => format!("data: {}", d.display()),
        None => "memory: nothing is kept on disk".to_string(),
    };
    // Not eprintln!: a closed stderr must not stop the hub.
    let _ = writeln!(
        std::io::stderr(),
        "hub-serve: listening on ws://{addr} ({place})"
    );
    crate::cli::serve::init_logging(args.verbose, args.quiet);
    if recovery.dropped_bytes > 0 {
        tracing::warn!(
            "dropped a torn record of {} bytes at the end of the log (a write cut short by a crash, never acknowledged)",
            recovery.dropped_bytes
        );
    }
    for d in &recovery.damage {
        let lost = match d.lost {
            Some((from, to)) if from == to => format!("id {from} lost"),
            Some((from, to)) => format!("ids {from}-{to} lost"),
            None => "no id lost".to_string(),
        };
        let copy = d.copy.as_ref().map_or(String::new(), |c| {
            format!("; the damaged file is kept as {}", c.display())
        });
        tracing::error!(
            "damaged log: {} at byte {} ({} bytes): {lost}; every intact record before and after it is kept and served{copy}",
            d.file.display(),
            d.offset,
            d.bytes
        );
    }
    if !addr.ip().is_loopback() && server_cfg.token.is_none() {
        tracing::warn!(
            "listening on {addr}, beyond loopback, without --token: anyone who can reach this port can publish and read"
        );
    }
    let broker = crate::broker::Broker::start(log, recovery, args.broker_config())?;
    serve(listener, broker, server_cfg).await
}

/// `hub-serve --check`: prints the report on stdout and returns the exit code (0
/// intact, 1 damaged, 2 no such dir or held by a running hub).
pub fn run_check(args: &ServeArgs) -> u8 {
    use std::io::Write;
    let dir = match args.data_dir() {
        Ok(Some(d)) => d,
        Ok(None) | Err(_) => {
            eprintln!(
                "hub-serve: --check needs a data dir: give --data-dir DIR (no $XDG_STATE_HOME or $HOME to find the default)"
            );
            return 2;
        }
    };
    let report = match crate::store::check::check(&dir) {
        Ok(r) => r,
        Err(e @ crate::store::StoreError::Locked(_)) => {
            eprintln!("hub-serve: --check: {e}");
            return 2;
        }
        Err(e) => {
            eprintln!("hub-serve: --check: cannot read the log: {e}");
            return 2;
        }
    };
    let text = render_check(&dir, &report);
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return 2;
    }
    u8::from(report.is_damaged())
}

fn ids_text(ids: Option<(u64, u64)>) -> String {
    match ids {
        Some((a, b)) if a == b => format!("{a}"),
        Some((a, b)) => format!("{a}-{b}"),
        None => "-".into(),
    }
}

/// The text of `hub-serve --check`.
fn render_check(dir: &std::path::Path, r: &crate::store::check::CheckReport) -> String {
    use crate::store::segment::Format;
    use std::fmt::Write;
    let name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let mut s = String::new();
    let _ = writeln!(s, "log in {}", dir.display());
    let _ = writeln!(
        s,
        "{:<28} {:>6} {:>10} {:>23} {:>12}",
        "SEGMENT", "FORMAT", "EVENTS", "IDS", "BYTES"
    );
    for seg in &r.segments {
        let _ = writeln!(
            s,
            "{:<28} {:>6} {:>10} {:>23} {:>12}",
            name(&seg.path),
            match seg.format {
                Format::V1 => 1,
                Format::V2 => 2,
            },
            seg.events,
            ids_text(seg.ids),
            seg.bytes
        );
    }
    let mut regions = 0;
    let mut lost_ids = 0;
    for seg in &r.segments {
        for d in &seg.damage {
            regions += 1;
            let lost = match d.lost {
                Some(l) => {
                    lost_ids += l.1 - l.0 + 1;
                    let what = if l.0 == l.1 { "id" } else { "ids" };
                    format!("{what} {} lost", ids_text(Some(l)))
                }
                None => "no id lost".into(),
            };
            let _ = writeln!(
                s,
                "DAMAGED {} at byte {} ({} bytes): {lost}",
                seg.path.display(),
                d.offset,
                d.bytes
            );
        }
        if let Some((at, n)) = seg.torn
            && seg.damage.iter().all(|d| d.offset != at)
        {
            let _ = writeln!(
                s,
                "TORN    {} at byte {at} ({n} bytes): a write cut short by a crash, never acknowledged; dropped at the next start (not damage)",
                seg.path.display()
            );
        }
    }
    for &m in &r.missing {
        let _ = writeln!(
            s,
            "MISSING ids {}: lost to damage that an earlier start repaired",
            ids_text(Some(m))
        );
    }
    for c in &r.copies {
        let _ = writeln!(
            s,
            "COPY    {}: a damaged segment kept by a repair",
            c.display()
        );
    }
    let _ = writeln!(
        s,
        "total: {} segments, {} events, ids {}, {} damaged regions, {} ids lost",
        r.segments.len(),
        r.events(),
        ids_text(r.ids()),
        regions,
        lost_ids
    );
    if r.is_damaged() {
        let _ = writeln!(
            s,
            "the log is DAMAGED: the next hub-serve start keeps a copy of each damaged segment (NAME.damaged), repairs it and serves every intact record"
        );
    } else {
        let _ = writeln!(s, "the log is intact");
    }
    s
}
