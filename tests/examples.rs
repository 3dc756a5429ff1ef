//! The scripts in examples/ run as shipped, against a real hub. The tools they wrap
//! (`cargo build`, `tar` of /etc) are replaced by stand-ins placed first on PATH, so
//! what is checked is the scripts' use of hub-emit and hub-sub. The systemd units
//! are checked by examples/systemd/verify.sh when systemd-analyze is installed.

mod common;
mod shell;

use common::Hub;
use shell::{Scratch, run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// Puts an executable `name` in `dir/fake-bin` that prints its arguments and exits
/// `code`; returns the directory, for PATH.
fn stand_in(dir: &Path, name: &str, code: i32) -> PathBuf {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\"\nexit {code}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `sh SCRIPT` with the stand-ins before the hub binaries on PATH.
fn script(scratch: &Scratch, hub: &Hub, fake: &Path, file: &str) -> Command {
    let mut c = scratch.sh(
        &format!(
            "PATH={}:$PATH; sh {}",
            fake.display(),
            example(file).display()
        ),
        &hub.addr.to_string(),
    );
    c.env("CI_PIPELINE_ID", "77");
    c
}

/// The events of a topic, as JSON values.
fn events(hub: &Hub, topic: &str) -> Vec<serde_json::Value> {
    let out = common::bin("hub-sub")
        .args(["--url", &hub.ws_url(), topic, "--all", "--drain"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn types(evs: &[serde_json::Value]) -> Vec<&str> {
    evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn ci_pipeline_deploys_only_a_completed_build() {
    for (build_code, want_code, want_out, want_last) in [
        (
            0,
            0,
            "build ci:build-77 completed: deploying",
            "task_completed",
        ),
        (3, 1, "", "task_failed"),
    ] {
        let hub = Hub::start(&["--memory"]);
        let scratch = Scratch::new();
        let fake = stand_in(scratch.dir.path(), "cargo", build_code);
        let (code, out, err) = run(script(&scratch, &hub, &fake, "ci/pipeline.sh"));
        assert_eq!(
            code,
            Some(want_code),
            "cargo exit {build_code}\n{out}\n{err}"
        );
        assert!(out.contains(want_out), "{out}");
        assert!(
            out.contains("cargo build --release"),
            "output passed through: {out}"
        );
        if build_code != 0 {
            assert!(err.contains("not deploying"), "{err}");
        }
        let evs = events(&hub, "ci:build-77");
        assert_eq!(types(&evs), ["task_started", want_last], "{evs:?}");
    }
}

#[test]
fn cron_backup_reports_its_result() {
    let hub = Hub::start(&["--memory"]);
    let scratch = Scratch::new();
    let fake = stand_in(scratch.dir.path(), "tar", 0);
    let mut c = script(&scratch, &hub, &fake, "cron/nightly-backup.sh");
    c.env("BACKUP_DIR", scratch.dir.path().join("backups"));
    let (code, out, err) = run(c);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("tar --create --gzip --file "), "{out}");
    let evs = events(&hub, "cron:nightly-backup");
    assert_eq!(
        types(&evs),
        ["task_started", "log", "task_completed"],
        "{evs:?}"
    );
    assert_eq!(evs[1]["data"]["stream"], "stdout");
}

#[test]
fn systemd_units_verify() {
    let found = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED examples/systemd/verify.sh: systemd-analyze is not installed");
        return;
    }
    let out = Command::new("sh")
        .arg(example("systemd/verify.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
