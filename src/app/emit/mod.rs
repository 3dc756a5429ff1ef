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

mod lines;
mod template;
mod wrap;

use lines::*;
use template::*;
use wrap::*;

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
