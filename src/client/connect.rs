//! Connecting: the URL spellings, one attempt (TCP_NODELAY, the token, the hub's
//! frame limit), the sorting of failures into retry or stop, the backoff between
//! attempts, and the close codes' meaning.

use super::ClientError;
use crate::protocol::close;
use futures_util::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest one connection attempt (TCP connect + handshake) may take.
pub(super) const ATTEMPT_LIMIT: Duration = Duration::from_secs(10);
/// How long a graceful close waits for the hub's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Turns any accepted spelling of the hub address into the WebSocket URL:
/// `ws://h:p`, `ws://h:p/`, `ws://h:p/ws`, `http://h:p`, `h:p` → `ws://h:p/ws`.
/// A path other than `/ws` gets `/ws` appended (a hub behind a path prefix); a query
/// string is kept.
///
/// # Errors
/// [`ClientError::Usage`] for an empty host, an unknown scheme, or TLS (`wss://`,
/// `https://`), which this build does not speak.
pub fn normalize_url(input: &str) -> Result<String, ClientError> {
    let s = input.trim();
    let bad = |reason: &str| {
        ClientError::Usage(format!(
            "invalid hub URL {input:?}: {reason} (accepted: ws://HOST:PORT, ws://HOST:PORT/ws, http://HOST:PORT)"
        ))
    };
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("ws".to_string(), s),
    };
    match scheme.as_str() {
        "ws" | "http" => {}
        "wss" | "https" => {
            return Err(bad(
                "TLS is not supported; the hub speaks plain ws:// (put a TLS proxy in front of it)",
            ));
        }
        _ => return Err(bad("unknown scheme")),
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(split);
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(bad("missing or invalid host"));
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let path = path.trim_end_matches('/');
    let mut url = format!("ws://{authority}{path}");
    if !path.ends_with("/ws") {
        url.push_str("/ws");
    }
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// Parses a `--url` / `HUB_URL` value: one hub address, or several separated by
/// commas (`ws://a:7000,ws://b:7000`), each normalized by [`normalize_url`].
///
/// # Errors
/// [`ClientError::Usage`] naming the list and the element that is empty or invalid.
pub fn parse_hub_list(input: &str) -> Result<Vec<String>, ClientError> {
    if !input.contains(',') {
        return Ok(vec![normalize_url(input)?]);
    }
    input
        .split(',')
        .enumerate()
        .map(|(i, element)| {
            let n = i + 1;
            if element.trim().is_empty() {
                return Err(ClientError::Usage(format!(
                    "invalid hub URL list {input:?}: element {n} is empty (accepted: URL[,URL...], e.g. ws://a:7357,ws://b:7357)"
                )));
            }
            normalize_url(element).map_err(|e| {
                ClientError::Usage(format!("invalid hub URL list {input:?}: element {n}: {e}"))
            })
        })
        .collect()
}

/// The hubs a client may use, in order, and the one it uses now.
///
/// Failing over: a client starts at the first hub; when an attempt to connect
/// fails it tries the next one at once, and only after a whole round of the list
/// has failed does it wait (the [`Backoff`] delay) before the next round. When an
/// open connection drops, the next attempt goes to the next hub (after the same
/// delay a single hub gets before its reconnect). With one hub this is the plain
/// retry of that hub.
#[derive(Debug, Clone)]
pub(super) struct Hubs {
    urls: Vec<String>,
    current: usize,
    /// Failed attempts since the last round boundary.
    failed: usize,
    /// The causes of this round's failures, for [`ClientError::Unreachable`].
    causes: Vec<String>,
}

impl Hubs {
    pub(super) fn parse(input: &str) -> Result<Hubs, ClientError> {
        Ok(Hubs {
            urls: parse_hub_list(input)?,
            current: 0,
            failed: 0,
            causes: Vec::new(),
        })
    }

    /// The hub to use now.
    pub(super) fn current(&self) -> &str {
        &self.urls[self.current]
    }

    /// Every hub, for messages: `ws://a/ws, ws://b/ws`.
    pub(super) fn all(&self) -> String {
        self.urls.join(", ")
    }

    pub(super) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// A connection was made: a new round starts from here.
    pub(super) fn connected(&mut self) {
        self.failed = 0;
        self.causes.clear();
    }

    /// The open connection to the current hub dropped: move to the next hub and
    /// start a new round there. Returns the hub moved to, when it is another one.
    pub(super) fn dropped(&mut self) -> Option<&str> {
        self.connected();
        self.advance()
    }

    /// An attempt on the current hub failed with `cause`: move to the next hub.
    /// Returns true when that completes a round (every hub failed since the last
    /// connection or the last round), the time to wait before going on.
    pub(super) fn failed(&mut self, cause: &str) -> bool {
        self.causes.push(if self.urls.len() == 1 {
            cause.to_string()
        } else {
            format!("{}: {cause}", self.current())
        });
        self.failed += 1;
        self.advance();
        if self.failed >= self.urls.len() {
            self.failed = 0;
            true
        } else {
            false
        }
    }

    /// [`ClientError::Unreachable`] after a failed round: every hub, every cause.
    pub(super) fn unreachable(&mut self, waited: Duration) -> ClientError {
        let n = self.urls.len();
        let causes = &self.causes[self.causes.len().saturating_sub(n)..];
        let e = ClientError::Unreachable {
            url: self.all(),
            cause: causes.join("; "),
            waited: round_duration(waited),
        };
        self.causes.clear();
        e
    }

    /// The end of a round that is not given up: forget its causes.
    pub(super) fn next_round(&mut self) {
        self.causes.clear();
    }

    fn advance(&mut self) -> Option<&str> {
        if self.urls.len() == 1 {
            return None;
        }
        self.current = (self.current + 1) % self.urls.len();
        Some(self.current())
    }
}

/// Reconnect delays: 0.5 s doubling to 30 s, each with ±20 % jitter so that many
/// clients of a restarted hub do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(Self::MAX);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of one failed connection attempt.
pub(super) enum Failure {
    /// Worth retrying (refused, reset, 429, 503, ...). The text names the cause.
    Transient(String),
    /// Retrying cannot help.
    Fatal(ClientError),
}

/// An open connection and the largest frame the hub said it takes (its
/// `X-Hub-Max-Frame` header; `None` from a hub that does not say, which gets no
/// batch frames).
type Opened = (Ws, Option<usize>);

/// tungstenite's read buffer, the most it reads at once. tungstenite zeroes the
/// free part of it before every read: its default of 128 KiB would be cleared for
/// each ack of a few KiB, and for each read of a subscriber's event frames, which
/// then cost as much zeroing as the copying of what came in. Larger frames still
/// come whole, in several reads.
const READ_BUFFER: usize = 16 << 10;

/// One connection attempt: TCP (with TCP_NODELAY) + WebSocket handshake, bounded by
/// `limit`.
pub(super) async fn open(
    url: &str,
    token: Option<&str>,
    limit: Duration,
) -> Result<Opened, Failure> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Failure::Fatal(ClientError::Usage(format!("invalid hub URL {url}: {e}"))))?;
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().map_err(|_| {
            Failure::Fatal(ClientError::Usage(
                "invalid token: a token is printable ASCII without spaces".into(),
            ))
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err(Failure::Transient(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        ))),
        Ok(Ok((ws, response))) => {
            let max_frame = response
                .headers()
                .get(crate::protocol::MAX_FRAME_HEADER)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            Ok((ws, max_frame))
        }
        Ok(Err(e)) => Err(classify(url, e)),
    }
}

/// Sorts a handshake error into retry or stop, with a cause a person can act on.
fn classify(url: &str, e: tungstenite::Error) -> Failure {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            refusal(url, resp.status().as_u16(), body)
        }
        E::Url(u) => Failure::Fatal(ClientError::Usage(format!("invalid hub URL {url}: {u}"))),
        E::Io(io) => Failure::Transient(io.to_string()),
        other => Failure::Transient(other.to_string()),
    }
}

/// Sorts a hub's non-success HTTP answer (a refused handshake, or a refused
/// `POST /publish`) into retry or stop; the message is the hub's own (`code`,
/// `message` of its JSON body).
pub(super) fn refusal(url: &str, status: u16, body: &[u8]) -> Failure {
    let (code, message) = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => (
            v["code"].as_str().unwrap_or_default().to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        ),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(body).trim().to_string(),
        ),
    };
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    let code = if code.is_empty() {
        status.to_string()
    } else {
        code
    };
    match status {
        429 | 500..=599 => Failure::Transient(message),
        404 => Failure::Fatal(ClientError::Refused {
            url: url.to_string(),
            code,
            message: format!("{message} (is this a hub? its WebSocket path is /ws)"),
        }),
        _ => Failure::Fatal(ClientError::Refused {
            url: url.to_string(),
            code,
            message,
        }),
    }
}

/// Connects to one of `hubs`, retrying transient failures as [`Hubs`] says until
/// `timeout` has passed since the first attempt. `on_retry(url, cause, delay)` is
/// told about each wait before a new round.
pub(super) async fn connect_with_retry(
    hubs: &mut Hubs,
    token: Option<&str>,
    timeout: Option<Duration>,
    backoff: &mut Backoff,
    on_retry: impl FnMut(&str, &str, Duration),
) -> Result<Opened, ClientError> {
    with_retry(hubs, timeout, backoff, on_retry, |url, limit| {
        let url = url.to_string();
        async move { open(&url, token, limit).await }
    })
    .await
}

/// Runs `attempt(url, limit)` on the current hub of `hubs` until it succeeds or
/// fails for good. A transient failure moves to the next hub at once; after a whole
/// round of failures it waits `backoff`'s delay, and gives up with
/// [`ClientError::Unreachable`] (naming every hub) once `timeout` has passed since
/// the first attempt (a round once begun is finished first). `limit` bounds each
/// attempt. On success the hub that answered stays current.
pub(super) async fn with_retry<T, F: Future<Output = Result<T, Failure>>>(
    hubs: &mut Hubs,
    timeout: Option<Duration>,
    backoff: &mut Backoff,
    mut on_retry: impl FnMut(&str, &str, Duration),
    mut attempt: impl FnMut(&str, Duration) -> F,
) -> Result<T, ClientError> {
    let start = Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let limit = left
            .unwrap_or(ATTEMPT_LIMIT)
            .clamp(Duration::from_millis(100), ATTEMPT_LIMIT);
        let url = hubs.current().to_string();
        match attempt(&url, limit).await {
            Ok(done) => {
                backoff.reset();
                hubs.connected();
                return Ok(done);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(cause)) => {
                if !hubs.failed(&cause) {
                    tracing::info!(
                        "cannot reach the hub at {url}: {cause}; moving to hub {}",
                        hubs.current()
                    );
                    continue;
                }
                let mut delay = backoff.next_delay();
                if let Some(t) = timeout {
                    let elapsed = start.elapsed();
                    if elapsed >= t {
                        return Err(hubs.unreachable(elapsed));
                    }
                    // One last round right at the deadline.
                    delay = delay.min(t - elapsed);
                }
                hubs.next_round();
                on_retry(&url, &cause, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// `1.1s`, for messages.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Rounds to 0.1 s for messages.
pub(super) fn round_duration(d: Duration) -> Duration {
    Duration::from_millis((d.as_millis() as u64).div_ceil(100) * 100)
}

/// A close frame's code and reason, from a received message.
pub(super) fn close_parts(frame: Option<tungstenite::protocol::CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_string()),
        None => (close::ABNORMAL, String::new()),
    }
}

/// A person-readable name for a close code.
pub(super) fn describe_close(code: u16, reason: &str) -> String {
    let what = match code {
        close::NORMAL => "closed",
        close::GOING_AWAY => "going away (restart or shutdown)",
        close::UNSUPPORTED => "unsupported frame",
        close::ABNORMAL => "connection dropped",
        close::POLICY => "policy violation",
        close::TOO_BIG => "frame too big",
        close::BAD_REQUEST => "bad request",
        close::UNAUTHORIZED => "unauthorized (check --token / HUB_TOKEN)",
        close::FORBIDDEN => "forbidden",
        close::TOO_MANY => "too many connections or subscriptions",
        close::INTERNAL => "internal error",
        _ => "closed",
    };
    if reason.is_empty() {
        format!("close {code}: {what}")
    } else {
        format!("close {code}: {what}: {reason}")
    }
}

/// The error `code` name of a refusal close code.
pub(super) fn close_code_name(code: u16) -> &'static str {
    match code {
        close::UNAUTHORIZED => "unauthorized",
        close::FORBIDDEN => "forbidden",
        close::BAD_REQUEST | close::UNSUPPORTED | close::POLICY => "bad_request",
        close::TOO_BIG => "too_large",
        close::TOO_MANY => "too_many",
        _ => "closed",
    }
}

/// Sends a close frame and waits (briefly) for the hub's reply, so that every frame
/// sent before it is processed before the connection goes.
pub(super) async fn close_gracefully(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_spellings() {
        for (given, want) in [
            ("ws://127.0.0.1:7357", "ws://127.0.0.1:7357/ws"),
            ("ws://127.0.0.1:7357/", "ws://127.0.0.1:7357/ws"),
            ("ws://127.0.0.1:7357/ws", "ws://127.0.0.1:7357/ws"),
            ("http://127.0.0.1:7357", "ws://127.0.0.1:7357/ws"),
            ("HTTP://localhost:1/", "ws://localhost:1/ws"),
            ("localhost:7357", "ws://localhost:7357/ws"),
            ("ws://h:1/hub", "ws://h:1/hub/ws"),
            ("ws://h:1?x=1", "ws://h:1/ws?x=1"),
            ("ws://[::1]:7357/ws/", "ws://[::1]:7357/ws"),
        ] {
            assert_eq!(normalize_url(given).unwrap(), want, "{given}");
        }
        for bad in ["", "ws://", "wss://h:1", "ftp://h", "https://h"] {
            let e = normalize_url(bad).unwrap_err();
            assert!(e.to_string().contains("accepted: ws://"), "{bad}: {e}");
        }
    }

    #[test]
    fn hub_lists() {
        assert_eq!(parse_hub_list("h:1").unwrap(), ["ws://h:1/ws"]);
        assert_eq!(
            parse_hub_list("ws://a:7000, http://b:7000/ws ,c:1").unwrap(),
            ["ws://a:7000/ws", "ws://b:7000/ws", "ws://c:1/ws"]
        );
        let e = parse_hub_list("a,,b").unwrap_err().to_string();
        assert!(
            e.starts_with(r#"invalid hub URL list "a,,b": element 2 is empty"#),
            "{e}"
        );
        let e = parse_hub_list("a:1,").unwrap_err().to_string();
        assert!(e.contains("element 2 is empty"), "{e}");
        let e = parse_hub_list("a:1,wss://b:1").unwrap_err().to_string();
        assert!(
            e.contains(r#"list "a:1,wss://b:1": element 2: invalid hub URL "wss://b:1""#),
            "{e}"
        );
        // One address is checked as before, with the same message.
        assert_eq!(
            parse_hub_list("ftp://h").unwrap_err(),
            normalize_url("ftp://h").unwrap_err()
        );
    }

    #[test]
    fn hubs_fail_over_in_rounds() {
        let mut hubs = Hubs::parse("a:1,b:1,c:1").unwrap();
        assert_eq!(hubs.current(), "ws://a:1/ws");
        assert!(!hubs.failed("refused"));
        assert_eq!(hubs.current(), "ws://b:1/ws");
        assert!(!hubs.failed("reset"));
        assert!(hubs.failed("timeout"), "the third failure ends the round");
        assert_eq!(hubs.current(), "ws://a:1/ws");
        let e = hubs.unreachable(Duration::from_millis(1234)).to_string();
        assert_eq!(
            e,
            "cannot reach any hub at ws://a:1/ws, ws://b:1/ws, ws://c:1/ws (gave up after 1.3s): \
             ws://a:1/ws: refused; ws://b:1/ws: reset; ws://c:1/ws: timeout"
        );
        // A connection to b, then a drop: c is next, and a new round starts there.
        assert!(!hubs.failed("refused"));
        hubs.connected();
        assert_eq!(hubs.dropped(), Some("ws://c:1/ws"));
        assert!(!hubs.failed("x") && !hubs.failed("y") && hubs.failed("z"));
        assert_eq!(hubs.current(), "ws://c:1/ws");

        // One hub: every failure is a whole round; a drop stays on it.
        let mut one = Hubs::parse("ws://h:1").unwrap();
        assert!(one.failed("refused"));
        assert_eq!(one.dropped(), None);
        assert_eq!(one.current(), "ws://h:1/ws");
        assert!(one.failed("refused"));
        assert_eq!(
            one.unreachable(Duration::from_secs(10)).to_string(),
            "cannot reach the hub at ws://h:1/ws (gave up after 10.0s): refused"
        );
    }

    /// `with_retry` tries the hubs of a round without waiting, the backoff only
    /// between rounds, and stays on the hub that answered.
    #[tokio::test]
    async fn with_retry_moves_along_the_list() {
        let mut hubs = Hubs::parse("a:1,b:1,c:1").unwrap();
        let mut tried = Vec::new();
        let mut waits = 0;
        let started = Instant::now();
        let got = with_retry(
            &mut hubs,
            Some(Duration::from_secs(10)),
            &mut Backoff::new(),
            |_, _, _| waits += 1,
            |url, _| {
                tried.push(url.to_string());
                let ok = tried.len() == 5;
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(Failure::Transient("refused".into()))
                    }
                }
            },
        )
        .await;
        assert!(got.is_ok());
        assert_eq!(waits, 1, "one wait, after the first round");
        assert!(started.elapsed() < Duration::from_secs(3));
        let short: Vec<&str> = tried.iter().map(|u| &u[5..6]).collect();
        assert_eq!(short, ["a", "b", "c", "a", "b"]);
        assert_eq!(hubs.current(), "ws://b:1/ws");
    }

    #[test]
    fn backoff_doubles_to_30s_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(400) && delays[0] <= Duration::from_millis(600));
        assert!(
            delays[1] >= Duration::from_millis(800) && delays[1] <= Duration::from_millis(1200)
        );
        for d in &delays {
            assert!(*d <= Duration::from_secs(36), "{d:?}");
        }
        assert!(delays[9] >= Duration::from_secs(24));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }

    /// `open`, as its doc says: one attempt, TCP_NODELAY set, bounded by `limit`
    /// (against a listener that takes the TCP connection and never answers).
    #[tokio::test]
    async fn open_is_one_bounded_attempt_without_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("ws://{addr}/ws");
        let silent = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // Held open, unanswered, until the attempt gives up.
            let mut buf = [0u8; 512];
            while tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                .await
                .is_ok_and(|n| n > 0)
            {}
            listener
        });
        let started = Instant::now();
        match open(&url, None, Duration::from_millis(300)).await {
            Err(Failure::Transient(cause)) => {
                assert!(cause.contains("no answer within"), "{cause}")
            }
            Err(Failure::Fatal(e)) => panic!("{e}"),
            Ok(_) => panic!("a silent listener answered"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        let listener = tokio::time::timeout(Duration::from_secs(10), silent)
            .await
            .unwrap()
            .unwrap();
        let hub = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(s).await.unwrap()
        });
        let Ok((ws, max_frame)) = open(&url, None, Duration::from_secs(10)).await else {
            panic!("the attempt failed");
        };
        assert_eq!(max_frame, None, "this hub names no frame limit");
        let MaybeTlsStream::Plain(tcp) = ws.get_ref() else {
            panic!("a plain ws:// connection");
        };
        assert!(tcp.nodelay().unwrap(), "TCP_NODELAY is set");
        drop(hub.await.unwrap());
    }
}
