//! `--run -- CMD ARGS`: run a command, pass its output through, report its
//! lifecycle (task_started, progress, task_completed / task_failed) and exit with
//! its code; signals are forwarded to it.

use super::*;

/// A line of the command's output, for `--capture` / `--progress-regex`.
pub(super) struct OutputLine {
    pub(super) stream: &'static str,
    pub(super) line: String,
}

/// `--run -- CMD ARGS`: report the lifecycle, pass the output through, exit with the
/// command's status. The command runs even when the hub cannot be reached; what could
/// not be reported is said on stderr.
pub(super) async fn run_command(
    args: &EmitArgs,
    opts: crate::client::ConnectOptions,
) -> anyhow::Result<u8> {
    if args.command.is_empty() {
        return Err(Exit::usage(
            "--run needs a command after `--`: hub-emit TOPIC --run -- CMD ARGS",
        )
        .into());
    }
    if args.rest.iter().any(|r| !r.contains('=')) {
        return Err(Exit::usage(
            "--run publishes its own types (task_started, progress, log, task_completed, task_failed): \
             give only TOPIC and KEY=VALUE fields before --run, and the command after `--`",
        )
        .into());
    }
    let progress_re = match &args.progress_regex {
        Some(re) => Some(regex::Regex::new(re).map_err(|e| {
            Exit::usage(format!(
                "invalid --progress-regex: {e} (its first capture group is the percent)"
            ))
        })?),
        None => None,
    };
    let t = Template::from_args(args)?;
    let publisher = Arc::new(Publisher::start(&opts)?);
    let mut tickets: Vec<(&'static str, Ticket)> = Vec::new();
    let mut unsent: Vec<String> = Vec::new();
    let command_text = shell_words(&args.command);
    let watch_output = args.capture || progress_re.is_some();

    let mut cmd = tokio::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]).stdin(Stdio::inherit());
    if watch_output {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code: u8 = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let error = format!("cannot run {}: {e}", args.command[0]);
            let data = merge(
                json!({"command": command_text, "error": error, "exit_code": code, "duration_seconds": 0.0}),
                &t.fields,
            );
            let ev = t.typed("task_failed", data);
            report(&publisher, "task_failed", ev, &mut tickets, &mut unsent).await;
            finish(publisher, tickets, unsent, args.hub.quiet).await;
            eprintln!("hub-emit: {error}");
            return Ok(code);
        }
    };
    let pid = child.id();
    let start_data = merge(json!({"command": command_text, "pid": pid}), &t.fields);
    report(
        &publisher,
        "task_started",
        t.typed("task_started", start_data),
        &mut tickets,
        &mut unsent,
    )
    .await;

    // Output readers never wait for the hub: the output goes through at once and
    // lines queue for publishing; if the queue is full, lines are counted as unsent.
    let (line_tx, mut line_rx) = mpsc::channel::<OutputLine>(4096);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pass_through(
            out,
            tokio::io::stdout(),
            "stdout",
            line_tx.clone(),
            dropped.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pass_through(
            err,
            tokio::io::stderr(),
            "stderr",
            line_tx.clone(),
            dropped.clone(),
        )));
    }
    drop(line_tx);

    // Publishing of output lines runs beside the command.
    let reporter = {
        let publisher = publisher.clone();
        let t_fields = t.fields.clone();
        let topic = t.topic.clone();
        let source = t.source.clone();
        let capture = args.capture;
        tokio::spawn(async move {
            let mut tickets: Vec<(&'static str, Ticket)> = Vec::new();
            let mut unsent = Vec::new();
            let mut last_percent: Option<f64> = None;
            let template = Template {
                topic,
                kind: None,
                source,
                data: Value::Null,
                fields: t_fields,
            };
            while let Some(l) = line_rx.recv().await {
                if let Some(re) = &progress_re
                    && let Some(p) = percent(re, &l.line)
                    && last_percent != Some(p)
                {
                    last_percent = Some(p);
                    let data = json!({"percent": number(p), "message": l.line.trim()});
                    let ev = template.typed("progress", merge(data, &template.fields));
                    report(&publisher, "progress", ev, &mut tickets, &mut unsent).await;
                }
                if capture {
                    let data = json!({"line": l.line, "stream": l.stream});
                    let ev = template.typed("log", data);
                    report(&publisher, "log", ev, &mut tickets, &mut unsent).await;
                }
            }
            (tickets, unsent)
        })
    };

    let status = wait_forwarding_signals(&mut child).await?;
    for r in readers {
        let _ = r.await;
    }
    let (more_tickets, more_unsent) = reporter.await.unwrap_or_default();
    tickets.extend(more_tickets);
    unsent.extend(more_unsent);
    let n_dropped = dropped.load(std::sync::atomic::Ordering::Relaxed);
    if n_dropped > 0 {
        unsent.push(format!("{n_dropped} output line(s)"));
    }

    let duration = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let (code, final_kind, data) = final_report(&status, duration, &command_text);
    let ev = t.typed(final_kind, merge(data, &t.fields));
    report(&publisher, final_kind, ev, &mut tickets, &mut unsent).await;
    finish(publisher, tickets, unsent, args.hub.quiet).await;
    Ok(code)
}

/// The exit code, final event type and data for a finished command.
pub(super) fn final_report(
    status: &std::process::ExitStatus,
    duration: f64,
    command: &str,
) -> (u8, &'static str, Value) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        let code8 = u8::try_from(code).unwrap_or(1);
        if code == 0 {
            (
                0,
                "task_completed",
                json!({"exit_code": 0, "duration_seconds": duration}),
            )
        } else {
            (
                code8,
                "task_failed",
                json!({"exit_code": code, "duration_seconds": duration,
                       "error": format!("{command} exited with code {code}")}),
            )
        }
    } else {
        let sig = status.signal().unwrap_or(0);
        let code = 128 + sig;
        (
            u8::try_from(code).unwrap_or(255),
            "task_failed",
            json!({"exit_code": code, "signal": sig, "duration_seconds": duration,
                   "error": format!("{command} was killed by signal {sig} ({})", signal_name(sig))}),
        )
    }
}

pub(super) fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}

/// Waits for the child. SIGTERM and SIGHUP to hub-emit are passed on to it; SIGINT
/// (Ctrl-C reaches the whole process group) is left to the command, so hub-emit
/// stays to report how it ended.
pub(super) async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let pid = child.id();
    loop {
        tokio::select! {
            status = child.wait() => return Ok(status?),
            _ = term.recv() => forward(pid, libc::SIGTERM),
            _ = hup.recv() => forward(pid, libc::SIGHUP),
            _ = int.recv() => {}
        }
    }
}

/// Sends `sig` to the child, if it is still there.
pub(super) fn forward(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
        // child that has exited already makes it fail with ESRCH, which is fine.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Copies the command's output to ours unchanged, and queues its lines.
pub(super) async fn pass_through(
    mut from: impl AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    stream: &'static str,
    lines: mpsc::Sender<OutputLine>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut out_ok = true;
    let queue = |bytes: &[u8]| {
        let line = String::from_utf8_lossy(strip_newline(bytes)).into_owned();
        if lines.try_send(OutputLine { stream, line }).is_err() {
            dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if out_ok {
            out_ok = to.write_all(chunk).await.is_ok() && to.flush().await.is_ok();
        }
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                queue(&rest[..pos]);
            } else {
                partial.extend_from_slice(&rest[..pos]);
                queue(&partial);
                partial.clear();
            }
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        // A progress bar redraws with \r: treat each \r-ended piece as a line too.
        if let Some(pos) = partial.iter().rposition(|&b| b == b'\r') {
            let piece: Vec<u8> = partial.drain(..=pos).collect();
            for seg in piece.split(|&b| b == b'\r').filter(|s| !s.is_empty()) {
                queue(seg);
            }
        }
    }
    if !partial.is_empty() {
        queue(&partial);
    }
}

/// The percent in a line, by the first capture group (or the whole match), 0-100.
pub(super) fn percent(re: &regex::Regex, line: &str) -> Option<f64> {
    let caps = re.captures(line)?;
    let m = caps.get(1).or_else(|| caps.get(0))?;
    let digits: String = m
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let p: f64 = digits.parse().ok()?;
    (0.0..=100.0).contains(&p).then_some(p)
}

/// 50.0 → 50, 12.5 → 12.5.
pub(super) fn number(p: f64) -> Value {
    if p.fract() == 0.0 {
        json!(p as u64)
    } else {
        json!(p)
    }
}

/// Queues an event; what cannot even be queued is noted as unsent.
pub(super) async fn report(
    publisher: &Publisher,
    what: &'static str,
    ev: NewEvent,
    tickets: &mut Vec<(&'static str, Ticket)>,
    unsent: &mut Vec<String>,
) {
    match publisher.send(ev).await {
        Ok(t) => tickets.push((what, t)),
        Err(e) => unsent.push(format!("{what} ({e})")),
    }
}

/// Waits for the acks of `--run` and says on stderr what could not be reported.
pub(super) async fn finish(
    publisher: Arc<Publisher>,
    tickets: Vec<(&'static str, Ticket)>,
    mut unsent: Vec<String>,
    quiet: bool,
) {
    let mut cause = None;
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for (what, t) in tickets {
        if let Err(e) = t.await {
            cause.get_or_insert(e.to_string());
            match counts.iter_mut().find(|(w, _)| *w == what) {
                Some((_, n)) => *n += 1,
                None => counts.push((what, 1)),
            }
        }
    }
    for (what, n) in counts {
        unsent.push(if n == 1 {
            what.to_string()
        } else {
            format!("{n} {what} events")
        });
    }
    if !unsent.is_empty() && !quiet {
        let url = publisher.url().to_string();
        eprintln!(
            "hub-emit: could not report to the hub at {url}: {}{}",
            unsent.join(", "),
            cause.map(|c| format!(": {c}")).unwrap_or_default()
        );
    }
    if let Ok(p) = Arc::try_unwrap(publisher) {
        let _ = p.close().await;
    }
}

/// The command as a shell would show it.
pub(super) fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
