//! How `hub-sub` shows events: line writers for stdout (`json`, `data`, `text`) and,
//! with `--progress`, one live progress bar per task on stderr.
//!
//! The writers only write into a caller's buffer; the caller decides when to flush
//! (when no more frames are immediately pending), so a burst of events costs one
//! write system call instead of one per event.

use crate::event::{Event, format_ts};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// What `hub-sub` prints per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The whole event as compact JSON, one per line (for jq).
    #[default]
    Json,
    /// Only the event's `data`, compact JSON, one per line.
    Data,
    /// `TS TOPIC TYPE` then data.message, data.line or the compact data.
    Text,
}

/// Writes one event as a line. `json` is the hub's encoding of `event`.
pub fn write_event(
    out: &mut impl Write,
    format: Format,
    event: &Event,
    json: &str,
) -> io::Result<()> {
    match format {
        Format::Json => {
            out.write_all(json.as_bytes())?;
            out.write_all(b"\n")
        }
        Format::Data => {
            serde_json::to_writer(&mut *out, &event.data)?;
            out.write_all(b"\n")
        }
        Format::Text => writeln!(out, "{}", text_line(event)),
    }
}

/// `TS TOPIC TYPE` then data.message, data.line or the compact data. Control
/// characters are escaped so that a line stays one line on a terminal.
pub fn text_line(event: &Event) -> String {
    let body = match (&event.data["message"], &event.data["line"]) {
        (Value::String(m), _) => m.clone(),
        (_, Value::String(l)) => l.clone(),
        _ if event.data.is_null() => String::new(),
        _ => event.data.to_string(),
    };
    let mut s = format!("{} {} {}", format_ts(event.ts), event.topic, event.kind);
    if !body.is_empty() {
        s.push(' ');
        s.extend(body.chars().flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        }));
    }
    s
}

/// Task progress on stderr: a bar per task topic on a terminal, plain lines otherwise.
pub struct ProgressView {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    /// Last percent printed per topic in plain mode (print changes only).
    plain_last: HashMap<String, Option<u64>>,
}

impl ProgressView {
    /// Bars when stderr is a terminal, plain lines when it is not.
    pub fn new() -> Self {
        let tty = io::stderr().is_terminal();
        ProgressView {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: HashMap::new(),
            plain_last: HashMap::new(),
        }
    }

    /// True for the event types this view draws.
    pub fn wants(kind: &str) -> bool {
        crate::event::is_task_type(kind)
    }

    /// Feeds one event.
    pub fn update(&mut self, ev: &Event) {
        if !Self::wants(&ev.kind) {
            return;
        }
        match &self.multi {
            Some(_) => self.update_bar(ev),
            None => self.update_plain(ev),
        }
    }

    fn bar(&mut self, ev: &Event) -> ProgressBar {
        if let Some(b) = self.bars.get(&ev.topic)
            && (ev.kind != "task_started" || !b.is_finished())
        {
            return b.clone();
        }
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {pos:>3}% {elapsed:>5} {wide_msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        let since = crate::event::now_millis().saturating_sub(ev.ts);
        let bar = ProgressBar::new(100)
            .with_style(style)
            .with_prefix(ev.topic.clone())
            .with_elapsed(Duration::from_millis(since));
        let bar = self.multi.as_ref().expect("bars on a tty").add(bar);
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bars.insert(ev.topic.clone(), bar.clone());
        bar
    }

    fn update_bar(&mut self, ev: &Event) {
        let bar = self.bar(ev);
        let d = &ev.data;
        if let Some(p) = d["percent"].as_f64() {
            bar.set_position(p.clamp(0.0, 100.0) as u64);
        }
        match ev.kind.as_str() {
            "task_started" => bar.set_message(message(d).unwrap_or_else(|| "started".into())),
            "progress" => {
                if let Some(m) = message(d) {
                    bar.set_message(m);
                }
            }
            "task_completed" => {
                bar.set_position(100);
                bar.finish_with_message(format!("completed{}", ending(d)));
            }
            _ => {
                let err = d["error"].as_str().unwrap_or("failed").to_string();
                bar.abandon_with_message(format!("FAILED: {err}{}", ending(d)));
            }
        }
    }

    fn update_plain(&mut self, ev: &Event) {
        let d = &ev.data;
        let percent = d["percent"].as_f64().map(|p| p.clamp(0.0, 100.0) as u64);
        let line = match ev.kind.as_str() {
            "task_started" => {
                self.plain_last.insert(ev.topic.clone(), None);
                format!(
                    "started{}",
                    message(d).map(|m| format!(": {m}")).unwrap_or_default()
                )
            }
            "progress" => {
                let last = self.plain_last.entry(ev.topic.clone()).or_default();
                if percent.is_some() && *last == percent {
                    return;
                }
                *last = percent;
                let p = percent
                    .map(|p| format!("{p:>3}%"))
                    .unwrap_or_else(|| "   -".into());
                format!("{p} {}", message(d).unwrap_or_default())
            }
            "task_completed" => format!("completed{}", ending(d)),
            _ => format!(
                "FAILED: {}{}",
                d["error"].as_str().unwrap_or("failed"),
                ending(d)
            ),
        };
        eprintln!("{} {}", ev.topic, line.trim_end());
    }

    /// Leaves finished bars on screen.
    pub fn finish(&mut self) {
        for b in self.bars.values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

impl Default for ProgressView {
    fn default() -> Self {
        Self::new()
    }
}

fn message(d: &Value) -> Option<String> {
    d["message"]
        .as_str()
        .or_else(|| d["command"].as_str())
        .map(str::to_string)
}

/// ` (exit 0, 1.2s)` from a task's final data.
fn ending(d: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(c) = d["exit_code"].as_i64() {
        parts.push(format!("exit {c}"));
    }
    if let Some(s) = d["duration_seconds"].as_f64() {
        parts.push(format!("{s:.1}s"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(data: Value) -> Event {
        Event {
            id: 7,
            ts: 1_795_300_200_123,
            topic: "task:b".into(),
            kind: "progress".into(),
            source: None,
            key: None,
            data,
        }
    }

    #[test]
    fn formats() {
        let e = ev(json!({"percent": 50, "message": "compiling\nnow"}));
        let json = e.encode();
        let mut out = Vec::new();
        write_event(&mut out, Format::Json, &e, &json).unwrap();
        write_event(&mut out, Format::Data, &e, &json).unwrap();
        write_event(&mut out, Format::Text, &e, &json).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], json);
        // The order it was stored in, as in the json line.
        assert_eq!(lines[1], r#"{"percent":50,"message":"compiling\nnow"}"#);
        assert!(
            lines[2].ends_with("Z task:b progress compiling\\nnow"),
            "{}",
            lines[2]
        );
        assert!(text_line(&ev(json!({"line": "x"}))).ends_with(" x"));
        assert!(text_line(&ev(json!({"a": 1}))).ends_with(r#" {"a":1}"#));
        assert!(text_line(&ev(Value::Null)).ends_with("progress"));
    }

    #[test]
    fn endings() {
        assert_eq!(
            ending(&json!({"exit_code": 0, "duration_seconds": 1.25})),
            " (exit 0, 1.2s)"
        );
        assert_eq!(ending(&json!({})), "");
    }
}
