//! The anchor of the `--nats` benchmarks (bench/harness.py, workloads n1 and n3):
//! the same lines published and consumed directly with async-nats through the same
//! JetStream server, with no hub in between, so the difference is hub's hop.
//!
//!   jetstream-pipe pub URLS STREAM SUBJECT     # stdin lines → JetStream, acked, pipelined
//!   jetstream-pipe sub URLS STREAM COUNT READY # the stream from now on → stdout lines
//!
//! `pub` keeps up to 1,024 acks outstanding (as hub's node does) and exits once every
//! line is acknowledged. `sub` reads with an ordered consumer from the next new
//! message, creates READY once it is in place, and exits after COUNT messages.
//! `pub` creates the stream (file storage, the subject, `JS_REPLICAS` replicas) when
//! it is missing.

use async_nats::jetstream::{self, consumer, stream};
use futures_util::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::io::{BufRead, Write};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: jetstream-pipe pub URLS STREAM SUBJECT | sub URLS STREAM COUNT READY";
    if args.len() < 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let servers: Vec<async_nats::ServerAddr> = args[2]
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let client = async_nats::connect(servers).await?;
    let js = jetstream::new(client);
    let name = args[3].clone();
    match args[1].as_str() {
        "pub" => {
            let subject = args[4].clone();
            let replicas = std::env::var("JS_REPLICAS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            };
            // A cluster that has just elected its leader may refuse for a moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while let Err(e) = js.get_or_create_stream(config.clone()).await {
                if std::time::Instant::now() > deadline {
                    return Err(e.into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4096);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.blocking_send(line.into_bytes()).is_err() {
                        break;
                    }
                }
            });
            let mut flight = VecDeque::new();
            while let Some(line) = rx.recv().await {
                if flight.len() >= 1024 {
                    let ack: jetstream::context::PublishAckFuture =
                        flight.pop_front().expect("full");
                    ack.await?;
                }
                flight.push_back(js.publish(subject.clone(), line.into()).await?);
            }
            for ack in flight {
                ack.await?;
            }
        }
        "sub" if args.len() == 6 => {
            let count: u64 = args[4].parse()?;
            let s = js.get_stream(&name).await?;
            let c = s
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await?;
            let mut msgs = c.messages().await?;
            std::fs::write(&args[5], b"")?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut n = 0;
            let mut next = None;
            while n < count {
                // Flush only when no further message is ready, as hub-sub does.
                let m = match next.take() {
                    Some(m) => m,
                    None => {
                        out.flush()?;
                        match msgs.next().await {
                            Some(m) => m,
                            None => break,
                        }
                    }
                };
                let m = m?;
                out.write_all(&m.payload)?;
                out.write_all(b"\n")?;
                n += 1;
                next = msgs.next().now_or_never().flatten();
            }
            out.flush()?;
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    Ok(())
}
