//! `hub-emit`: publish events from a shell, a bot or a CI script (SPEC §4).
//!
//! Four modes over one [`Publisher`]: one event from the arguments; `--lines` (each
//! stdin line is one event); `--events` (each stdin line is a whole event object);
//! `--run -- CMD ARGS` (report a command's lifecycle and exit with its code).
//! Every event carries an idempotency key, so a resend after a lost ack is stored
//! once.

use crate::cli::emit::EmitArgs;
use crate::client::{
    ClientError, Encoded, EventHead, InFlight, Publisher, RawJson, Ticket, WINDOW,
};
use crate::event::NewEvent;
use crate::exit::{self, Exit};
use anyhow::Context;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Most events `--lines` / `--events` hand the publisher at once.
const STREAM_CHUNK: usize = 256;

/// Runs `hub-emit` and returns its exit code.
pub async fn run(args: EmitArgs) -> anyhow::Result<u8> {
    let opts = args.hub.connect_options(Some(args.timeout))?;
    if args.run {
        return run_command(&args, opts).await;
    }
    if !args.command.is_empty() {
        return Err(Exit::usage(format!(
            "unexpected arguments after --: {:?} (only --run takes a command)",
            args.command
        ))
        .into());
    }
    let template = Template::from_args(&args)?;
    if args.lines || args.events {
        return stream_stdin(&args, &template, Publisher::start(&opts)?).await;
    }
    let mut event = template.event(template.data.clone());
    event.key = args.key.clone();
    // One event: one HTTP request (a round trip fewer than a WebSocket); over a
    // WebSocket only where POST /publish is not served.
    let id = match crate::client::publish_once(&opts, event.clone()).await? {
        Some(id) => id,
        None => {
            let publisher = Publisher::start(&opts)?;
            let id = publisher.publish(event).await?;
            let _ = publisher.close().await;
            id
        }
    };
    if args.print_id {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{id}").and_then(|_| out.flush())?;
    }
    tracing::info!("published event {id} to {}", opts.url);
    Ok(exit::OK)
}

/// What every event of this invocation shares: topic, type, source, base data.
struct Template {
    topic: String,
    kind: Option<String>,
    source: Option<String>,
    data: Value,
    /// KEY=VALUE / KEY:=JSON fields, merged into each event's data.
    fields: Map<String, Value>,
}

impl Template {
    fn from_args(args: &EmitArgs) -> Result<Template, Exit> {
        let topic = args.topic.clone().unwrap_or_default();
        if args.events && (args.topic.is_some() || !args.rest.is_empty()) {
            return Err(Exit::usage(
                "--events takes no TOPIC, TYPE or fields: each stdin line names its own topic",
            ));
        }
        if !args.events {
            crate::event::validate_topic(&topic).map_err(|e| Exit::usage(e.to_string()))?;
        }
        let mut rest = args.rest.as_slice();
        let mut kind = None;
        if let Some(first) = rest.first()
            && !first.contains('=')
        {
            crate::event::validate_type(first).map_err(|e| Exit::usage(e.to_string()))?;
            kind = Some(first.clone());
            rest = &rest[1..];
        }
        let mut fields = Map::new();
        for f in rest {
            let (k, v) = parse_field(f)?;
            fields.insert(k, v);
        }
        let data = match &args.data {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Exit::usage(format!(
                    "--data is not valid JSON ({e}): give e.g. '{{\"a\":1}}'"
                ))
            })?,
            None => Value::Null,
        };
        if !fields.is_empty() && !matches!(data, Value::Null | Value::Object(_)) {
            return Err(Exit::usage(
                "KEY=VALUE fields need --data to be a JSON object (or no --data)",
            ));
        }
        let data = merge(data, &fields);
        Ok(Template {
            topic,
            kind,
            source: Some(
                args.source
                    .clone()
                    .unwrap_or_else(crate::event::default_source),
            ),
            data,
            fields,
        })
    }

    /// An event of this invocation with `data`.
    fn event(&self, data: Value) -> NewEvent {
        let mut e = NewEvent::new(self.topic.clone());
        e.kind = self.kind.clone();
        e.source = self.source.clone();
        e.data = data;
        e
    }

    /// An event of this invocation with another type.
    fn typed(&self, kind: &str, data: Value) -> NewEvent {
        let mut e = self.event(data);
        e.kind = Some(kind.to_string());
        e
    }
}

/// `KEY=VALUE` → string, `KEY:=JSON` → JSON value.
fn parse_field(f: &str) -> Result<(String, Value), Exit> {
    let eq = f.find('=').ok_or_else(|| {
        Exit::usage(format!(
            "unexpected argument {f:?}: after TOPIC [TYPE] come data fields KEY=VALUE (string) or KEY:=JSON"
        ))
    })?;
    let (key, raw) = (&f[..eq], &f[eq + 1..]);
    let (key, value) = match key.strip_suffix(':') {
        Some(k) => {
            let v = serde_json::from_str(raw).map_err(|e| {
                Exit::usage(format!(
                    "field {f:?}: {raw:?} is not valid JSON ({e}); use KEY=VALUE for a string"
                ))
            })?;
            (k, v)
        }
        None => (key, Value::String(raw.to_string())),
    };
    if key.is_empty() {
        return Err(Exit::usage(format!(
            "field {f:?} has an empty KEY: use KEY=VALUE or KEY:=JSON"
        )));
    }
    Ok((key.to_string(), value))
}

/// `data` with `fields` set in it (`data` is an object or null).
fn merge(data: Value, fields: &Map<String, Value>) -> Value {
    if fields.is_empty() {
        return data;
    }
    let mut obj = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in fields {
        obj.insert(k.clone(), v.clone());
    }
    Value::Object(obj)
}

/// The event of one stdin line.
enum LineEvent<'a> {
    /// The invocation's event with this line, a JSON object, as its data.
    Data(RawJson<'a>),
    /// A whole event: a `--events` line, or a `--lines` line parsed into data.
    Event(NewEvent),
}

/// One stdin line as an event (`--lines` / `--events`); `Ok(None)` skips it.
///
/// A `--lines` line that is a JSON object, with no KEY=VALUE fields to merge in, is
/// only checked: it is sent as the data as it is ([`RawJson`]), not parsed into a
/// tree and written out again. Its text is one line and valid JSON; the hub stores
/// it compact.
fn line_event<'a>(
    args: &EmitArgs,
    t: &Template,
    line: &'a [u8],
) -> Result<Option<LineEvent<'a>>, String> {
    let line = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 ({e})"))?;
    if args.events {
        if line.trim().is_empty() {
            return Ok(None);
        }
        let mut ev = NewEvent::from_json(line).map_err(|e| e.to_string())?;
        if ev.source.is_none() {
            ev.source = t.source.clone();
        }
        return Ok(Some(LineEvent::Event(ev)));
    }
    let trimmed = line.trim();
    if t.fields.is_empty() && trimmed.starts_with('{') {
        // Valid JSON that starts with `{` is an object.
        return match RawJson::new(trimmed) {
            Ok(raw) => Ok(Some(LineEvent::Data(raw))),
            Err(e) if trimmed.ends_with('}') => Err(not_json(&e)),
            Err(_) => Ok(Some(LineEvent::Event(t.event(json!({ "line": line }))))),
        };
    }
    let data = if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => json!({ "line": line }),
            Err(e) if trimmed.ends_with('}') => return Err(not_json(&e)),
            Err(_) => json!({ "line": line }),
        }
    } else {
        json!({ "line": line })
    };
    Ok(Some(LineEvent::Event(t.event(merge(data, &t.fields)))))
}

/// What is said about a line that looks like a JSON object and is not one.
fn not_json(e: &serde_json::Error) -> String {
    format!(
        "looks like a JSON object but is not valid JSON ({e}); \
         lines are either JSON objects or plain text"
    )
}

/// `--lines` / `--events`: read stdin, pipeline the events, report malformed lines
/// with their numbers, wait for every ack.
async fn stream_stdin(args: &EmitArgs, t: &Template, publisher: Publisher) -> anyhow::Result<u8> {
    let stdin = crate::stdin::ThreadStdin::spawn().context("reading stdin")?;
    let mut reader = BufReader::with_capacity(64 * 1024, stdin);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Events sent and not yet answered, with their line numbers.
    let mut sent: InFlight<u64> = InFlight::default();
    // Events encoded and not yet handed over: they go together once the lines
    // already read are used up (no waiting for more input) or there are STREAM_CHUNK.
    let mut chunk: Vec<(u64, Encoded)> = Vec::with_capacity(STREAM_CHUNK);
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(1024);
    let mut lineno: u64 = 0;
    // What every --lines event shares, encoded once (--events lines name their own).
    let head = match args.events {
        true => None,
        false => Some(EventHead::new(&t.event(Value::Null))?),
    };
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .await
            .context("reading stdin")?;
        if n > 0 {
            lineno += 1;
            let line = strip_newline(&buf);
            let encoded = match line_event(args, t, line) {
                Ok(Some(LineEvent::Data(raw))) => {
                    let head = head
                        .as_ref()
                        .expect("raw data lines come only with --lines");
                    Some(Ok(publisher.encode_with_head(head, raw)))
                }
                Ok(Some(LineEvent::Event(ev))) => match publisher.encode(ev) {
                    Ok(e) => Some(Ok(e)),
                    Err(ClientError::InvalidEvent(e)) => Some(Err(e.to_string())),
                    Err(e) => return Err(e.into()),
                },
                Ok(None) => None,
                Err(msg) => Some(Err(msg)),
            };
            match encoded {
                None => {}
                Some(Ok(e)) => chunk.push((lineno, e)),
                Some(Err(msg)) => {
                    eprintln!("hub-emit: stdin line {lineno}: {msg}");
                    tally.malformed += 1;
                }
            }
            // Lines already read go together; none waits for more input.
            if chunk.len() < STREAM_CHUNK && !reader.buffer().is_empty() {
                continue;
            }
        }
        // At most WINDOW events unanswered (plus a chunk): what waits for a hub
        // that is away stays bounded, and stdin is read no further meanwhile.
        while sent.len() >= WINDOW {
            sent.answered().await;
            tally.settle(&mut sent, args.print_id, &mut out, &publisher)?;
        }
        sent.send(&publisher, &mut chunk).await?;
        sent.collect();
        tally.settle(&mut sent, args.print_id, &mut out, &publisher)?;
        if sent.is_empty() {
            out.flush()?;
        }
        if n == 0 {
            break;
        }
    }
    sent.finish();
    while !sent.is_empty() {
        sent.answered().await;
        tally.settle(&mut sent, args.print_id, &mut out, &publisher)?;
    }
    out.flush()?;
    let _ = publisher.close().await;
    if args.hub.verbose > 0 {
        eprintln!(
            "hub-emit: published {} event(s) from {lineno} line(s)",
            tally.published
        );
    }
    if tally.refused > 0 {
        Err(Exit::new(
            exit::REFUSED,
            format!(
                "the hub refused {} event(s) (see above); {} published",
                tally.refused, tally.published
            ),
        )
        .into())
    } else if tally.malformed > 0 {
        Err(Exit::usage(format!(
            "{} malformed line(s) were not published (see above); {} published",
            tally.malformed, tally.published
        ))
        .into())
    } else {
        Ok(exit::OK)
    }
}

/// Counts of a `--lines` / `--events` run.
#[derive(Default)]
struct Tally {
    published: u64,
    malformed: u64,
    refused: u64,
}

impl Tally {
    /// Records the outcomes that are in, in line order.
    fn settle(
        &mut self,
        sent: &mut InFlight<u64>,
        print_id: bool,
        out: &mut impl Write,
        publisher: &Publisher,
    ) -> anyhow::Result<()> {
        while let Some((line, r)) = sent.pop_answered() {
            self.record(line, r, print_id, out, publisher)?;
        }
        Ok(())
    }

    /// Records one outcome: an id is counted (and printed); a refusal of this one
    /// event is reported with its line; anything else ends the run.
    fn record(
        &mut self,
        lineno: u64,
        r: Result<u64, ClientError>,
        print_id: bool,
        out: &mut impl Write,
        publisher: &Publisher,
    ) -> anyhow::Result<()> {
        match r {
            Ok(id) => {
                self.published += 1;
                if print_id {
                    writeln!(out, "{id}")?;
                }
                Ok(())
            }
            Err(ClientError::Refused { code, message, .. }) if !publisher.has_failed() => {
                eprintln!("hub-emit: stdin line {lineno}: refused by the hub: {message} ({code})");
                self.refused += 1;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn strip_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

// ---------------------------------------------------------------------------------
// --run
// ---------------------------------------------------------------------------------

/// A line of the command's output, for `--capture` / `--progress-regex`.
struct OutputLine {
    stream: &'static str,
    line: String,
}

/// `--run -- CMD ARGS`: report the lifecycle, pass the output through, exit with the
/// command's status. The command runs even when the hub cannot be reached; what could
/// not be reported is said on stderr.
async fn run_command(args: &EmitArgs, opts: crate::client::ConnectOptions) -> anyhow::Result<u8> {
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
fn final_report(
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

fn signal_name(sig: i32) -> &'static str {
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
async fn wait_forwarding_signals(
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
fn forward(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
        // child that has exited already makes it fail with ESRCH, which is fine.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Copies the command's output to ours unchanged, and queues its lines.
async fn pass_through(
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
fn percent(re: &regex::Regex, line: &str) -> Option<f64> {
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
fn number(p: f64) -> Value {
    if p.fract() == 0.0 {
        json!(p as u64)
    } else {
        json!(p)
    }
}

/// Queues an event; what cannot even be queued is noted as unsent.
async fn report(
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
async fn finish(
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
fn shell_words(words: &[String]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::Parser;

    fn args(argv: &[&str]) -> EmitArgs {
        EmitArgs::try_parse_from(std::iter::once("hub-emit").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn cli_is_consistent() {
        EmitArgs::command().debug_assert();
    }

    #[test]
    fn fields_and_type() {
        let a = args(&[
            "task:b",
            "progress",
            "percent:=50",
            "message=compiling now",
            "tags:=[\"a\"]",
        ]);
        let t = Template::from_args(&a).unwrap();
        assert_eq!(t.kind.as_deref(), Some("progress"));
        assert_eq!(
            t.data,
            json!({"percent":50,"message":"compiling now","tags":["a"]})
        );
        let a = args(&["t", "x=1", "--data", r#"{"y":2}"#]);
        let t = Template::from_args(&a).unwrap();
        assert_eq!(t.kind, None);
        assert_eq!(t.data, json!({"x":"1","y":2}));
        for bad in [
            vec!["t", "Bad Type"],
            vec!["t", "msg", "noequals"],
            vec!["t", "k:=nope"],
            vec!["bad topic"],
            vec!["t", "x=1", "--data", "[1]"],
            vec!["t", "--data", "{"],
        ] {
            let err = Template::from_args(&args(&bad)).err().unwrap();
            assert_eq!(err.code, exit::USAGE, "{bad:?}");
        }
    }

    /// The event of a line that is not sent as raw data.
    fn event(l: Result<Option<LineEvent<'_>>, String>) -> NewEvent {
        match l {
            Ok(Some(LineEvent::Event(ev))) => ev,
            _ => panic!("expected an event"),
        }
    }

    #[test]
    fn lines_become_data() {
        let a = args(&["log:x", "--lines", "host=web1"]);
        let t = Template::from_args(&a).unwrap();
        let ev = event(line_event(&a, &t, br#"{"a":1}"#));
        assert_eq!(ev.data, json!({"a":1,"host":"web1"}));
        let ev = event(line_event(&a, &t, b"plain {text}"));
        assert_eq!(ev.data, json!({"line":"plain {text}","host":"web1"}));
        let ev = event(line_event(&a, &t, b""));
        assert_eq!(ev.data["line"], "");
        assert!(line_event(&a, &t, br#"{"a":}"#).is_err());
        assert!(line_event(&a, &t, b"\xff\xfe").is_err());
        // Without fields, a JSON object line is sent as it is, after a check.
        let a = args(&["log:x", "--lines"]);
        let t = Template::from_args(&a).unwrap();
        match line_event(&a, &t, br#" {"a": [1, 2]} "#) {
            Ok(Some(LineEvent::Data(raw))) => assert_eq!(raw.as_str(), r#"{"a": [1, 2]}"#),
            _ => panic!("a JSON object line is sent as it is"),
        }
        for bad in [&br#"{"a":}"#[..], br#"{"a":1e999}"#, br#"{"a":1} x}"#] {
            let e = line_event(&a, &t, bad).err().unwrap();
            assert!(e.contains("not valid JSON"), "{e}");
        }
        let ev = event(line_event(&a, &t, b"{not json"));
        assert_eq!(ev.data, json!({"line": "{not json"}));
        let ev = event(line_event(&a, &t, b"[1]"));
        assert_eq!(ev.data, json!({"line": "[1]"}));
        let a = args(&["--events"]);
        let t = Template::from_args(&a).unwrap();
        let ev = event(line_event(&a, &t, br#"{"topic":"a","type":"b"}"#));
        assert_eq!((ev.topic.as_str(), ev.kind()), ("a", "b"));
        assert!(ev.source.is_some());
        assert!(line_event(&a, &t, b"  ").unwrap().is_none());
        assert!(line_event(&a, &t, br#"{"type":"b"}"#).is_err());
    }

    #[test]
    fn progress_percent() {
        let re = regex::Regex::new(crate::cli::emit::DEFAULT_PROGRESS_REGEX).unwrap();
        assert_eq!(percent(&re, "[#####     ] 50% copying"), Some(50.0));
        assert_eq!(percent(&re, "12.5 % done"), Some(12.5));
        assert_eq!(percent(&re, "no number"), None);
        assert_eq!(percent(&re, "250%"), None);
        assert_eq!(number(50.0), json!(50));
    }

    #[test]
    fn run_needs_a_command() {
        let a = args(&["task:x", "--run", "--capture", "--", "make", "-j4"]);
        assert_eq!(a.command, vec!["make", "-j4"]);
        assert!(
            EmitArgs::try_parse_from(["hub-emit", "t", "--capture", "--", "x"]).is_err(),
            "--capture requires --run"
        );
        assert_eq!(
            shell_words(&["echo".into(), "a b".into(), "it's".into()]),
            r#"echo 'a b' 'it'\''s'"#
        );
    }
}
