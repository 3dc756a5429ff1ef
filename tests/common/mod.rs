//! Shared by the integration tests: start the real `hub-serve` on a free loopback
//! port with a temp data dir, find the binaries, and wait on conditions with bounds.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `Command` for one of the crate's binaries, with the user's hub settings removed
/// so that tests never reach a hub they did not start.
pub fn bin(name: &str) -> Command {
    let path = match name {
        "hub-serve" => env!("CARGO_BIN_EXE_hub-serve"),
        "hub-emit" => option_env!("CARGO_BIN_EXE_hub-emit").unwrap_or("hub-emit"),
        "hub-sub" => option_env!("CARGO_BIN_EXE_hub-sub").unwrap_or("hub-sub"),
        "hub-tail" => option_env!("CARGO_BIN_EXE_hub-tail").unwrap_or("hub-tail"),
        other => panic!("unknown binary {other}"),
    };
    let mut c = Command::new(path);
    c.env_remove("HUB_URL")
        .env_remove("HUB_TOKEN")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    c
}

/// A running `hub-serve`, killed when dropped.
pub struct Hub {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    /// Every line the hub wrote on stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    /// `GET /status`, as JSON.
    pub fn status(&self) -> serde_json::Value {
        let mut r = http()
            .get(&format!("{}/status", self.http_url()))
            .call()
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// `POST /publish` of a body of JSON lines; asserts 200 and returns the answer.
    pub fn publish_body(&self, body: &str) -> serde_json::Value {
        post_publish(&self.http_url(), None, body)
    }

    /// Publishes events (JSON values) with one `POST /publish`; returns their ids.
    pub fn publish_events(&self, events: &[serde_json::Value]) -> Vec<u64> {
        ids_of(&post_publish(&self.http_url(), None, &json_lines(events)))
    }

    /// Starts a hub on `127.0.0.1:0` with a fresh temp data dir and `extra` flags.
    pub fn start(extra: &[&str]) -> Hub {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut hub = Hub::spawn(&dir, "127.0.0.1:0", extra);
        hub._tmp = Some(tmp);
        hub
    }

    /// Starts a hub on `listen` with data in `dir`.
    pub fn spawn(dir: &Path, listen: &str, extra: &[&str]) -> Hub {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, stderr) = launch(dir, listen, &args);
        Hub {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            _tmp: None,
            args,
            stderr,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9` the hub and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("hub is running");
        signal(c.id(), "TERM");
        wait_child(&mut c, Duration::from_secs(10))
            .expect("hub-serve did not exit within 10 s of SIGTERM")
    }

    /// Starts the hub again on the same port and data dir (after `kill9`/`terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        let listen = self.addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port can stay busy for a moment after the old process died.
            match try_launch(&self.dir, &listen, &self.args) {
                Ok((child, addr, stderr)) => {
                    self.child = Some(child);
                    self.addr = addr;
                    self.stderr = stderr;
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("hub-serve did not restart: {e}"),
            }
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Waits for a child to exit, at most `limit`.
pub fn wait_child(c: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` every 10 ms until it holds, at most `limit`; panics with `what`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

type Launched = (Child, SocketAddr, Arc<Mutex<Vec<String>>>);

fn launch(dir: &Path, listen: &str, args: &[String]) -> Launched {
    try_launch(dir, listen, args).unwrap_or_else(|e| panic!("{e}"))
}

fn try_launch(dir: &Path, listen: &str, args: &[String]) -> Result<Launched, String> {
    let mut cmd = bin("hub-serve");
    cmd.arg("--listen").arg(listen);
    if !args.iter().any(|a| a == "--memory" || a == "--nats") {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start hub-serve: {e}"))?;
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line
                .strip_prefix("hub-serve: listening on ws://")
                .and_then(|rest| rest.split_whitespace().next())
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.to_string());
            }
            sink.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => Ok((child, addr.parse().unwrap(), lines)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "hub-serve did not report its address; stderr:\n{}",
                lines.lock().unwrap().join("\n")
            ))
        }
    }
}

/// A blocking HTTP agent for tests that does not turn 4xx/5xx into errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A WebSocket test client over tokio-tungstenite, reading JSON frames.
pub mod nats;

pub mod ws {
    use futures_util::{SinkExt, StreamExt};
    use serde_json::Value;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    pub type Stream = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub struct Client {
        pub ws: Stream,
    }

    /// What came back from the server.
    #[derive(Debug)]
    pub enum Got {
        Frame(Value),
        Closed(Option<u16>),
    }

    impl Client {
        pub async fn connect(url: &str) -> Client {
            let (ws, _) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
            Client { ws }
        }

        pub async fn send(&mut self, v: Value) {
            self.ws.send(Message::text(v.to_string())).await.unwrap();
        }

        pub async fn send_raw(&mut self, m: Message) {
            self.ws.send(m).await.unwrap();
        }

        /// The next text frame as JSON or the close, within 10 s.
        pub async fn next(&mut self) -> Got {
            loop {
                let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                    .await
                    .expect("no frame within 10 s");
                match m {
                    None => return Got::Closed(None),
                    Some(Err(_)) => return Got::Closed(None),
                    Some(Ok(Message::Text(t))) => {
                        return Got::Frame(serde_json::from_str(t.as_str()).unwrap());
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Got::Closed(f.map(|f: CloseFrame| u16::from(f.code)));
                    }
                    Some(Ok(_)) => continue,
                }
            }
        }

        /// The next frame, which must be JSON.
        pub async fn frame(&mut self) -> Value {
            match self.next().await {
                Got::Frame(v) => v,
                Got::Closed(c) => panic!("closed ({c:?}) while waiting for a frame"),
            }
        }

        /// The next frame whose type is not `live`.
        pub async fn frame_skip_live(&mut self) -> Value {
            loop {
                let f = self.frame().await;
                if f["type"] != "live" {
                    return f;
                }
            }
        }

        /// Waits for the close (within `limit`, skipping frames): its code and reason.
        pub async fn close_frame(&mut self, limit: Duration) -> (Option<u16>, String) {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let m = tokio::time::timeout_at(deadline, self.ws.next())
                    .await
                    .expect("no close within the limit");
                match m {
                    None | Some(Err(_)) => return (None, String::new()),
                    Some(Ok(Message::Close(f))) => {
                        return match f {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                    }
                    Some(Ok(_)) => continue,
                }
            }
        }

        /// Waits for the close and returns its code.
        pub async fn closed(&mut self) -> Option<u16> {
            loop {
                if let Got::Closed(c) = self.next().await {
                    return c;
                }
            }
        }
    }
}

/// Chromium (Debian's package, or Chrome where that is what is installed), if any.
pub fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// The browser to use, or `None` (after saying so) to skip outside CI.
pub fn browser_or_skip() -> Option<&'static str> {
    match chromium() {
        Some(b) => Some(b),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have chromium (.ci/run installs it)"
            );
            eprintln!("SKIPPED: chromium is not installed");
            None
        }
    }
}

/// The flags every test browser runs with: headless, no sandbox (CI runs as root),
/// and nothing that talks to any other host.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Events as a body of JSON lines.
pub fn json_lines(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// The `ids` of a `POST /publish` answer.
pub fn ids_of(answer: &serde_json::Value) -> Vec<u64> {
    answer["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}

/// `POST {base}/publish` (with a bearer token if given); asserts 200 and returns the
/// answer.
pub fn post_publish(base: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    let mut req = http().post(&format!("{base}/publish"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send(body).unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "{text}");
    serde_json::from_str(&text).unwrap()
}
