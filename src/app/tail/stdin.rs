//! `hub-tail -`: standard input's lines, published in order until its end.

use super::*;

/// `hub-tail -`: stdin to events, until end of input. Keys are
/// `stdin:RANDOM:OFFSET`, so a resend after a reconnect is stored once.
pub(super) async fn run_stdin(
    cfg: &Config,
    publisher: &Publisher,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Exit> {
    let topic = cfg.topic.clone().unwrap_or_else(|| "log:stdin".into());
    let key_prefix = format!("stdin:{:016x}:", fastrand::u64(..));
    let events = Events { cfg };
    let mut stdin = crate::stdin::ThreadStdin::spawn()
        .map_err(|e| Exit::new(exit::FAILURE, format!("cannot read stdin: {e}")))?;
    let mut lines = Lines::new(0);
    let mut inflight: InFlight<()> = InFlight::default();
    let mut eof = false;
    let mut flushed = false;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut batch: Vec<((), NewEvent)> = Vec::new();
    let mut chunk = vec![0u8; crate::follow::READ_CHUNK];
    let key = Key {
        prefix: &key_prefix,
        uid: 0,
    };
    loop {
        // Lines out, within the window.
        if inflight.len() <= LOW_WATER {
            let mut budget = Budget {
                items: MAX_INFLIGHT - inflight.len(),
                bytes: usize::MAX,
            };
            let mut out = Stepped::default();
            let mut emit = |item: Item<'_>| batch.push(((), events.item_for(&topic, "-", &item)));
            if lines.unscanned() {
                lines.scan(key, cfg.max_line, &mut budget, &mut emit, &mut out);
            }
            if eof && !flushed && !lines.unscanned() && budget.items > 0 {
                lines.flush(key, &mut budget, &mut emit, &mut out);
                flushed = true;
            }
            if let Err(e) = send_batch(&mut inflight, publisher, &mut batch).await {
                return Err(fatal(&e));
            }
        }
        if flushed && inflight.is_empty() {
            return Ok(());
        }
        enum W {
            Ack,
            Read(std::io::Result<usize>),
            Stop,
        }
        let can_read = !eof && !lines.unscanned() && inflight.len() <= LOW_WATER;
        let w = tokio::select! {
            _ = inflight.answered() => W::Ack,
            r = stdin.read(&mut chunk), if can_read => W::Read(r),
            _ = &mut shutdown => W::Stop,
        };
        match w {
            W::Ack => {
                while let Some(((), result)) = inflight.pop_answered() {
                    if let Err(e) = result {
                        if publisher.has_failed() || matches!(e, ClientError::Closed) {
                            return Err(fatal(&e));
                        }
                        eprintln!("hub-tail: the hub refused a line of stdin: {e}; skipping it");
                    }
                }
            }
            W::Read(Ok(0)) => eof = true,
            W::Read(Ok(n)) => lines.buf.extend_from_slice(&chunk[..n]),
            W::Read(Err(e)) => {
                eprintln!("hub-tail: reading stdin: {e}");
                eof = true;
            }
            W::Stop => {
                // Wait briefly for what is in flight; the rest of stdin is not read.
                let wait = async {
                    while !inflight.is_empty() {
                        inflight.answered().await;
                        while inflight.pop_answered().is_some() {}
                    }
                };
                let _ = tokio::time::timeout(DRAIN_LIMIT, wait).await;
                return Ok(());
            }
        }
    }
}
