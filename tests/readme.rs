//! README.md works as written: its tour and each recipe block run here with `sh -c`
//! against a real hub, with the built binaries first on PATH, and their output is
//! checked. A block is marked by an HTML comment on the line before its fence:
//! `<!-- recipe: NAME -->` or `<!-- tour: N -->`. Every recipe in the README must have
//! a check below and every check a recipe, so neither side can rot alone.
//!
//! The only change made to a block is the address: `127.0.0.1:7357` becomes the test
//! hub's (and `HUB_URL` points there), so tests never touch a hub of the user's.

mod common;
mod shell;

use common::{Hub, wait_until};
use shell::{LIMIT, Scratch, kill_group, run, run_then};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// The marked blocks of README.md: name → script.
fn blocks(kind: &str) -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut out = BTreeMap::new();
    let mut lines = readme.lines();
    let prefix = format!("<!-- {kind}: ");
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence, "```sh",
            "the block after {line} must be a ```sh fence"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let prev = out.insert(name.to_string(), body.join("\n") + "\n");
        assert!(prev.is_none(), "two README blocks named {kind} {name}");
    }
    out
}

/// Publishes with hub-emit (setup for a recipe).
fn emit(hub: &Hub, args: &[&str]) {
    let st = common::bin("hub-emit")
        .arg("--url")
        .arg(hub.ws_url())
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "hub-emit {args:?}");
}

/// What a recipe must print, given a hub prepared by `setup`.
struct Check {
    setup: fn(&Hub),
    stdout_has: &'static [&'static str],
    /// Tools the recipe needs besides sh and the hub commands; missing → skipped.
    needs: &'static [&'static str],
}

fn checks() -> BTreeMap<&'static str, Check> {
    let none: fn(&Hub) = |_| {};
    BTreeMap::from([
        (
            "jq",
            Check {
                setup: |hub| {
                    emit(hub, &["task:build-42", "progress", "percent:=50"]);
                    emit(hub, &["task:build-42", "progress", "percent:=90"]);
                    emit(
                        hub,
                        &[
                            "task:build-42",
                            "task_failed",
                            "error=tests failed",
                            "exit_code:=1",
                        ],
                    );
                    emit(hub, &["task:deploy-3", "task_started"]);
                },
                stdout_has: &[
                    "task:build-42: tests failed",
                    "50\n90\n",
                    r#"{"topic":"task:build-42","events":3}"#,
                    r#"{"topic":"task:deploy-3","events":1}"#,
                    "\ntask:deploy-3\n",
                ],
                needs: &["jq", "curl"],
            },
        ),
        (
            "cron",
            Check {
                setup: none,
                stdout_has: &[" cron:backup task_completed "],
                needs: &["tar"],
            },
        ),
        (
            "ci",
            Check {
                setup: none,
                stdout_has: &["running the tests\n", "tests passed: deploying\n"],
                needs: &[],
            },
        ),
        (
            "tail",
            Check {
                setup: none,
                stdout_has: &[
                    " log:app log started\n",
                    " log:app log listening on :8080\n",
                ],
                needs: &[],
            },
        ),
        (
            "curl",
            Check {
                setup: none,
                stdout_has: &[r#"{"ids":[1]}"#, r#"{"ids":[2,3]}"#, r#""rps":95"#],
                needs: &["curl"],
            },
        ),
        (
            "websocat",
            Check {
                setup: |hub| emit(hub, &["deploy:web", "deployed", "version=1.4.2"]),
                stdout_has: &[r#""type":"subscribed""#, r#""version":"1.4.2""#],
                needs: &["websocat"],
            },
        ),
    ])
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_recipe_has_a_check_and_every_check_a_recipe() {
    let recipes: Vec<String> = blocks("recipe").into_keys().collect();
    let checks: Vec<String> = checks().into_keys().map(String::from).collect();
    assert_eq!(
        recipes, checks,
        "README recipes vs checks in tests/readme.rs"
    );
}

#[test]
fn recipes_work_as_written() {
    let checks = checks();
    for (name, script) in blocks("recipe") {
        let check = &checks[name.as_str()];
        if let Some(tool) = check.needs.iter().find(|t| !have(t)) {
            eprintln!("SKIPPED README recipe {name}: {tool} is not installed");
            continue;
        }
        let hub = Hub::start(&["--memory"]);
        (check.setup)(&hub);
        let scratch = Scratch::new();
        let script = if name == "websocat" {
            // websocat would stay connected: keep what it printed in 3 s.
            format!("timeout 3 {script}")
        } else {
            script
        };
        let (code, out, err) = run(scratch.sh(&script, &hub.addr.to_string()));
        let ok_code = if name == "websocat" {
            Some(124)
        } else {
            Some(0)
        };
        assert_eq!(
            code, ok_code,
            "README recipe {name} exited {code:?}\n--- stdout\n{out}--- stderr\n{err}"
        );
        for want in check.stdout_has {
            assert!(
                out.contains(want),
                "README recipe {name}: stdout lacks {want:?}\n--- stdout\n{out}--- stderr\n{err}"
            );
        }
    }
}

/// The WebSocket URLs of the websocat and browser recipes subscribe at once by query
/// string and deliver events (checked without websocat or a browser).
#[test]
fn readme_websocket_urls_subscribe() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let urls: Vec<&str> = readme
        .match_indices("ws://127.0.0.1:7357/ws?")
        .map(|(at, _)| {
            let rest = &readme[at..];
            &rest[..rest.find(['\'', '"']).unwrap()]
        })
        .collect();
    assert!(urls.len() >= 2, "websocat and browser URLs: {urls:?}");
    let hub = Hub::start(&["--memory"]);
    emit(&hub, &["deploy:web", "deployed", "version=1.4.2"]);
    emit(&hub, &["task:build-42", "progress", "percent:=50"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for url in urls {
        let url = url.replace("127.0.0.1:7357", &hub.addr.to_string());
        rt.block_on(async {
            let mut c = common::ws::Client::connect(&url).await;
            let first = c.frame().await;
            assert_eq!(first["type"], "subscribed", "{url}: {first}");
            let ev = c.frame_skip_live().await;
            assert_eq!(ev["type"], "event", "{url}: {ev}");
            assert_eq!(ev["sub"], "q", "{url}: {ev}");
        });
    }
}

/// The one-minute tour: terminal 1 starts the hub and a subscriber, terminal 2
/// publishes, wraps a command and ships a file; terminal 1 shows all of it.
#[test]
fn the_tour_works_as_written() {
    let tour = blocks("tour");
    let scratch = Scratch::new();
    // hub-serve reads HUB_LISTEN: a free port instead of 7357.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut t1 = scratch.sh(&tour["1"], &addr).spawn().unwrap();
    let out1 = t1.stdout.take().unwrap();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = shown.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out1).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let status_url = format!("http://{addr}/status");
    wait_until("the tour's hub-sub to subscribe", LIMIT, || {
        common::http()
            .get(&status_url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["subscriptions"].as_u64() >= Some(1))
    });
    let want = [
        " task:demo progress halfway",
        " task:demo task_started ",
        " task:demo task_completed ",
        " log:demo log hello from a log file",
    ];
    let done = || {
        let s = shown.lock().unwrap();
        want.iter().all(|w| s.contains(w))
    };
    let (code, out2, err2) = run_then(scratch.sh(&tour["2"], &addr), done);
    kill_group(&t1);
    let _ = t1.wait();
    let s = shown.lock().unwrap().clone();
    assert_eq!(code, Some(0), "tour terminal 2\n{out2}\n{err2}");
    assert!(out2.contains("built\n"), "--run passes the output: {out2}");
    for w in want {
        assert!(s.contains(w), "tour terminal 1 lacks {w:?}:\n{s}");
    }
}
