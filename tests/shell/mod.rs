//! Running shell scripts (README blocks, examples/) as a user would: `sh -c` in a
//! scratch directory, the built binaries first on PATH, the hub's address in
//! `HUB_URL`, every wait bounded, background jobs killed at the end.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a script may run.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The directory of the built binaries, for PATH.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_hub-serve"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A scratch home for one script: cwd, HOME and XDG_STATE_HOME, with a copy of the
/// README (the cron recipe archives it, as it would in a clone).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
            dir.path().join("README.md"),
        )
        .unwrap();
        Scratch { dir }
    }

    /// `sh -c SCRIPT` in its own process group, with the hub at `addr`.
    pub fn sh(&self, script: &str, addr: &str) -> Command {
        let script = script.replace("127.0.0.1:7357", addr);
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("HUB_URL", format!("ws://{addr}"))
            .env("HUB_LISTEN", addr)
            .env_remove("HUB_TOKEN")
            .env_remove("HUB_DATA_DIR")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        c
    }
}

/// Kills a script's whole process group (its background jobs too).
pub fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Runs a script to its end, at most [`LIMIT`]; returns (exit code, stdout, stderr).
/// Background jobs it leaves behind are killed.
pub fn run(c: Command) -> (Option<i32>, String, String) {
    run_then(c, || true)
}

/// As [`run`], but background jobs live on after the script until `done()` holds
/// (at most [`LIMIT`]).
pub fn run_then(mut c: Command, done: impl Fn() -> bool) -> (Option<i32>, String, String) {
    let mut child = c.spawn().expect("sh");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            kill_group(&child);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Background jobs (hub-tail &) hold the pipes open: end them.
    kill_group(&child);
    (status, out.join().unwrap(), err.join().unwrap())
}
