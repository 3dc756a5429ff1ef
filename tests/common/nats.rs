//! A real `nats-server -js` for the tests: one on a free loopback port with a temp
//! store dir, or a JetStream cluster of several; each in its own process group,
//! killed on drop.
//!
//! Skipped (with a line on stderr) when `nats-server` is not installed, except under
//! CI (env `CI` set), where that fails: `.ci/run` installs Debian's `nats-server`.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nats-server` on PATH (or where Debian puts it), if installed.
fn nats_server_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// The nats-server binary, or why the test is skipped (`None`; a failure under CI).
fn bin_or_skip(test: &str) -> Option<PathBuf> {
    let bin = nats_server_bin();
    if bin.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: nats-server is not installed (CI installs Debian's nats-server in .ci/run)"
            );
        }
        eprintln!("skipped {test}: nats-server is not on PATH (apt-get install nats-server)");
    }
    bin
}

/// A `nats-server -js` of this test, in its own process group, killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    /// Its arguments: a store dir on the command line, or a config file.
    args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl NatsServer {
    /// Starts one, or says why not and returns `None` (a failure under CI).
    pub fn start(test: &str) -> Option<NatsServer> {
        let bin = bin_or_skip(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let store = tmp.path().join("js");
        let mut s = NatsServer {
            bin,
            child: None,
            port,
            args: ["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]
                .into_iter()
                .map(String::from)
                .chain([store.display().to_string()])
                .collect(),
            log: tmp.path().join("nats-server.log"),
            _tmp: Some(tmp),
        };
        s.spawn();
        Some(s)
    }

    /// Starts a JetStream cluster of `n` servers on loopback (scale-out.md §6),
    /// every one ready, in `dir`.
    pub fn cluster(test: &str, n: usize, dir: &std::path::Path) -> Option<Vec<NatsServer>> {
        let bin = bin_or_skip(test)?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let mut servers: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, cport))| {
                let conf = dir.join(format!("n{i}.conf"));
                let store = dir.join(format!("n{i}"));
                std::fs::write(
                    &conf,
                    format!(
                        "server_name: n{i}\nlisten: 127.0.0.1:{port}\n\
                         jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 2GB }}\n\
                         cluster {{ name: hubjs, listen: 127.0.0.1:{cport}, routes: [{}] }}\n",
                        store.display(),
                        routes.join(", ")
                    ),
                )
                .unwrap();
                NatsServer {
                    bin: bin.clone(),
                    child: None,
                    port: *port,
                    args: vec!["-c".into(), conf.display().to_string()],
                    _tmp: None,
                    log: dir.join(format!("n{i}.log")),
                }
            })
            .collect();
        // Started together: each waits for the routes to the others.
        for s in &mut servers {
            s.launch();
        }
        for s in &mut servers {
            s.wait_ready(0);
        }
        Some(servers)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let from = self.launch();
        self.wait_ready(from);
    }

    /// Starts the process; gives the log's length before it.
    fn launch(&mut self) -> u64 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let start = std::fs::metadata(&self.log).unwrap().len();
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        start
    }

    /// Waits until its log says it is ready (after JetStream is up), within 30 s.
    fn wait_ready(&mut self, from: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let new = String::from_utf8_lossy(&text[from as usize..]).into_owned();
            if new.contains("Server is ready") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited ({status}) before it was ready:\n{new}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready within 30 s:\n{new}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of its whole process group, and the wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
