//! `--lines` and `--events`: each stdin line becomes an event, sent in chunks within
//! the publisher's window; what is refused is reported with its line number.

use super::*;

/// Most events `--lines` / `--events` hand the publisher at once.
pub(super) const STREAM_CHUNK: usize = 256;

/// The event of one stdin line.
pub(super) enum LineEvent<'a> {
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
pub(super) fn line_event<'a>(
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
pub(super) fn not_json(e: &serde_json::Error) -> String {
    format!(
        "looks like a JSON object but is not valid JSON ({e}); \
         lines are either JSON objects or plain text"
    )
}

/// `--lines` / `--events`: read stdin, pipeline the events, report malformed lines
/// with their numbers, wait for every ack.
pub(super) async fn stream_stdin(
    args: &EmitArgs,
    t: &Template,
    publisher: Publisher,
) -> anyhow::Result<u8> {
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
pub(super) struct Tally {
    pub(super) published: u64,
    pub(super) malformed: u64,
    pub(super) refused: u64,
}

impl Tally {
    /// Records the outcomes that are in, in line order.
    pub(super) fn settle(
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
    pub(super) fn record(
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

pub(super) fn strip_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

// ---------------------------------------------------------------------------------
// --run
// ---------------------------------------------------------------------------------
