//! One event in one HTTP request: `POST /publish`, for a publisher that has only one
//! event to send (`hub-emit TOPIC ...` from cron, CI or a hook). A WebSocket
//! publisher needs two round trips (the upgrade, then `publish` → `ack`); this needs
//! one, and the hub answers only once the event is in its log, as with an `ack`.
//!
//! Retries as [`super::Publisher`] does, with the same idempotency key each time, so
//! a resend after a lost answer is stored once.

use super::connect::{Failure, Hubs, refusal, with_retry};
use super::publisher::random_prefix;
use super::{Backoff, ClientError, ConnectOptions, seconds};
use crate::event::NewEvent;
use crate::protocol::event_json;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where `POST /publish` goes for a hub URL.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// `host:port` to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// The request path: the WebSocket path with `/ws` replaced by `/publish`.
    path: String,
}

impl Target {
    fn of(ws_url: &str) -> Result<Target, ClientError> {
        let bad = |e: &dyn std::fmt::Display| {
            ClientError::Usage(format!("invalid hub URL {ws_url}: {e}"))
        };
        let uri: Uri = ws_url.parse().map_err(|e| bad(&e))?;
        let authority = uri.authority().ok_or_else(|| bad(&"no host"))?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let prefix = uri.path().strip_suffix("/ws").unwrap_or("");
        Ok(Target {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_string(),
            path: format!("{prefix}/publish"),
        })
    }
}

/// Publishes `event` with `POST /publish` and returns its id, retrying while the hub
/// is unreachable until `opts.timeout`. With several hubs in `opts.url`, an
/// unreachable one or one that answers 503 (or another 5xx, or 429) is followed by
/// the next, with the same key. `Ok(None)`: nothing at that address takes
/// `POST /publish` (404 or 405, e.g. a proxy that forwards only the WebSocket path);
/// nothing was stored, and the caller may publish over a WebSocket instead.
///
/// # Errors
/// As [`super::Publisher::publish`]: [`ClientError::InvalidEvent`] before anything is
/// sent, [`ClientError::Refused`] (auth, limits, an invalid event),
/// [`ClientError::Unreachable`] after the timeout, [`ClientError::Usage`] for a bad URL
/// or token.
pub async fn publish_once(
    opts: &ConnectOptions,
    mut event: NewEvent,
) -> Result<Option<u64>, ClientError> {
    event.validate()?;
    if event.key.is_none() {
        event.key = Some(format!("{}-1", random_prefix()));
    }
    let mut hubs = Hubs::parse(&opts.url)?;
    let targets = hubs
        .urls()
        .iter()
        .map(|url| Ok((url.clone(), Target::of(url)?)))
        .collect::<Result<Vec<_>, ClientError>>()?;
    let token = match &opts.token {
        Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
            ClientError::Usage("invalid token: a token is printable ASCII without spaces".into())
        })?),
        None => None,
    };
    let body = Bytes::from(event_json(&event));
    with_retry(
        &mut hubs,
        opts.timeout,
        &mut Backoff::new(),
        |url, cause, delay| {
            tracing::info!(
                "cannot reach the hub at {url}: {cause}; retrying in {}",
                seconds(delay)
            )
        },
        |url, limit| {
            let (url, target) = targets
                .iter()
                .find(|(u, _)| u == url)
                .expect("a target for every hub");
            post(url, target, token.as_ref(), body.clone(), limit)
        },
    )
    .await
}

/// One attempt, bounded by `limit`.
async fn post(
    url: &str,
    target: &Target,
    token: Option<&HeaderValue>,
    body: Bytes,
    limit: Duration,
) -> Result<Option<u64>, Failure> {
    let transient = |e: &dyn std::fmt::Display| Failure::Transient(e.to_string());
    let attempt = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| transient(&e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| transient(&e))?;
        // Drives the connection; ends when the request is done and `sender` dropped.
        let conn = tokio::spawn(conn);
        let mut req = Request::post(target.path.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, t.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| {
            Failure::Fatal(ClientError::Usage(format!("invalid hub URL {url}: {e}")))
        })?;
        let resp = sender.send_request(req).await.map_err(|e| transient(&e))?;
        let status = resp.status().as_u16();
        let answer = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transient(&e))?
            .to_bytes();
        drop(sender);
        conn.abort();
        match status {
            200 => stored_id(&answer).map(Some).ok_or_else(|| {
                Failure::Transient(format!(
                    "unexpected answer to POST {}: {}",
                    target.path,
                    String::from_utf8_lossy(&answer)
                ))
            }),
            404 | 405 => Ok(None),
            400 | 413 => Err(Failure::Fatal(event_refused(url, status, &answer))),
            _ => Err(refusal(url, status, &answer)),
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Transient(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))),
    }
}

/// The id in `{"ids":[ID]}`.
fn stored_id(answer: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Ids {
        ids: Vec<u64>,
    }
    match serde_json::from_slice::<Ids>(answer).ok()?.ids[..] {
        [id] => Some(id),
        _ => None,
    }
}

/// The event itself was refused (invalid, too large): said as a WebSocket `error`
/// frame would say it. The hub names the line of a refused body (`line 1: ...`);
/// with one event there is only one.
fn event_refused(url: &str, status: u16, answer: &[u8]) -> ClientError {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Refusal {
        code: String,
        message: String,
    }
    let r: Refusal = serde_json::from_slice(answer).unwrap_or_default();
    ClientError::Refused {
        url: url.to_string(),
        code: if r.code.is_empty() {
            status.to_string()
        } else {
            r.code
        },
        message: match r.message.strip_prefix("line 1: ") {
            Some(m) => m.to_string(),
            None if r.message.is_empty() => format!("HTTP {status}"),
            None => r.message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_goes_beside_the_websocket_path() {
        let t = Target::of("ws://127.0.0.1:7357/ws").unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 7357,
                authority: "127.0.0.1:7357".into(),
                path: "/publish".into(),
            }
        );
        let t = Target::of("ws://[::1]:80/hub/ws").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("[::1]:80", "/hub/publish")
        );
        assert_eq!(Target::of("ws://example.org/ws").unwrap().port, 80);
    }

    /// A hub that answers one request with `status` and `body`; returns the
    /// request it got.
    async fn answer_once(
        listener: tokio::net::TcpListener,
        status: &'static str,
        body: &'static str,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then a body of Content-Length bytes.
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body_so_far)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body_so_far.len() >= len {
                    break;
                }
            }
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(got).unwrap()
    }

    /// A 503 from the first hub: the same event, with the same key, goes to the next.
    #[tokio::test]
    async fn a_503_moves_to_the_next_hub_with_the_same_key() {
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let urls = format!("{},{}", a.local_addr().unwrap(), b.local_addr().unwrap());
        let hub_a = tokio::spawn(answer_once(
            a,
            "503 Service Unavailable",
            r#"{"code":"unavailable","message":"the store is down"}"#,
        ));
        let hub_b = tokio::spawn(answer_once(b, "200 OK", r#"{"ids":[9]}"#));
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            publish_once(&ConnectOptions::new(urls), NewEvent::new("t")),
        )
        .await
        .unwrap();
        assert_eq!(got, Ok(Some(9)));
        let key = |req: &str| {
            let body = req.split_once("\r\n\r\n").unwrap().1;
            serde_json::from_str::<serde_json::Value>(body).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (req_a, req_b) = (hub_a.await.unwrap(), hub_b.await.unwrap());
        assert!(req_a.starts_with("POST /publish "), "{req_a}");
        assert_eq!(key(&req_a), key(&req_b), "the same key on both hubs");
    }

    #[test]
    fn the_answer_names_one_id() {
        assert_eq!(stored_id(br#"{"ids":[42]}"#), Some(42));
        assert_eq!(stored_id(br#"{"ids":[1,2]}"#), None);
        assert_eq!(stored_id(b"ok"), None);
    }

    #[test]
    fn a_refused_event_is_named_as_over_a_websocket() {
        let e = event_refused(
            "ws://h/ws",
            400,
            br#"{"code":"bad_request","message":"line 1: topic: empty"}"#,
        );
        assert_eq!(
            e.to_string(),
            "the hub at ws://h/ws refused: topic: empty (bad_request)"
        );
        let e = event_refused("ws://h/ws", 413, b"");
        assert_eq!(
            e.to_string(),
            "the hub at ws://h/ws refused: HTTP 413 (413)"
        );
    }
}
