//! The committed man pages and completions (`man/`, `completions/`) are what the
//! clap definitions render today. A flag or help text changed without regenerating
//! fails here, with the command that fixes it. Also: each command's clap definition
//! is consistent (`debug_assert`), and `--generate` prints the same bytes.

use hub::cli::docs::{BINS, Kind, command, render};
use std::path::Path;
use std::process::Command;

#[test]
fn committed_docs_match_the_clap_definitions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for bin in BINS {
        for (_, kind) in Kind::ALL {
            let path = kind.path(bin);
            let want = render(bin, kind);
            match std::fs::read_to_string(root.join(&path)) {
                Ok(have) if have == want => {}
                Ok(_) => stale.push(format!("{path} differs")),
                Err(e) => stale.push(format!("{path}: {e}")),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated docs are out of date:\n  {}\nrun `scripts/generate-docs.sh` and commit man/ and completions/",
        stale.join("\n  ")
    );
}

#[test]
fn clap_definitions_are_consistent() {
    for bin in BINS {
        command(bin).0.debug_assert();
    }
}

/// The hidden flag of each binary prints what `render` renders, whatever the
/// environment says (a required FILE of hub-tail, a HUB_URL) and exits 0.
#[test]
fn generate_flag_prints_the_docs() {
    for bin in BINS {
        let exe = match bin {
            "hub-serve" => env!("CARGO_BIN_EXE_hub-serve"),
            "hub-emit" => env!("CARGO_BIN_EXE_hub-emit"),
            "hub-sub" => env!("CARGO_BIN_EXE_hub-sub"),
            _ => env!("CARGO_BIN_EXE_hub-tail"),
        };
        for (name, kind) in [("man", Kind::Man), ("complete-zsh", Kind::Zsh)] {
            let out = Command::new(exe)
                .args(["--generate", name])
                .env("HUB_URL", "ws://127.0.0.1:1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{bin} --generate {name}: {out:?}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), render(bin, kind));
        }
        let out = Command::new(exe)
            .args(["--generate", "pdf"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin} --generate pdf");
        assert!(String::from_utf8_lossy(&out.stderr).contains("complete-bash"));
    }
}

/// What a man page must carry beyond the flags, and --help shows the same text.
#[test]
fn man_pages_have_the_sections_and_help_agrees() {
    for bin in BINS {
        let man = render(bin, Kind::Man);
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(man.contains(section), "{bin}.1 lacks {section}");
        }
        let (mut cmd, page) = command(bin);
        let help = cmd.render_long_help().to_string();
        for (_, example) in page.examples {
            assert!(help.contains(example), "{bin} --help lacks {example}");
        }
        for (code, _) in page.exit_status {
            assert!(man.contains(&format!("\\fB{code}\\fR")), "{bin}.1: {code}");
        }
    }
    assert!(render("hub-serve", Kind::Man).contains(".SH FILES"));
    assert!(render("hub-tail", Kind::Man).contains(".SH FILES"));
}

fn exe(bin: &str) -> &'static str {
    match bin {
        "hub-serve" => env!("CARGO_BIN_EXE_hub-serve"),
        "hub-emit" => env!("CARGO_BIN_EXE_hub-emit"),
        "hub-sub" => env!("CARGO_BIN_EXE_hub-sub"),
        _ => env!("CARGO_BIN_EXE_hub-tail"),
    }
}

/// `--version`, `--help` with examples and exit codes, and NO_COLOR beating even
/// CLICOLOR_FORCE (help and usage errors), in every command.
#[test]
fn help_version_and_no_color() {
    for bin in BINS {
        let out = Command::new(exe(bin)).arg("--version").output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{bin} {}\n", env!("CARGO_PKG_VERSION"))
        );
        for args in [&["--help"][..], &["-h"], &["--no-such-flag"]] {
            let colored = Command::new(exe(bin))
                .args(args)
                .env("CLICOLOR_FORCE", "1")
                .env_remove("NO_COLOR")
                .output()
                .unwrap();
            let plain = Command::new(exe(bin))
                .args(args)
                .env("CLICOLOR_FORCE", "1")
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let text = |o: &std::process::Output| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            };
            assert!(
                text(&colored).contains('\x1b'),
                "{bin} {args:?} colors on demand"
            );
            assert!(
                !text(&plain).contains('\x1b'),
                "{bin} {args:?} with NO_COLOR"
            );
            if args[0] == "--no-such-flag" {
                assert_eq!(plain.status.code(), Some(2), "{bin}: usage error is 2");
            } else {
                assert!(plain.status.success());
                let help = text(&plain);
                assert!(
                    help.contains("Examples:") && help.contains("Exit status:"),
                    "{bin}"
                );
            }
        }
    }
}

/// Splits a shell line into commands (at unquoted `|`, `&`, `;`) of words, with
/// '...' and "..." quoting: enough for the examples in the help texts.
fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let (mut cmds, mut words, mut word) = (Vec::new(), Vec::new(), None::<String>);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => word
                .get_or_insert_default()
                .extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '|' | '&' | ';' | ' ' => {
                words.extend(word.take());
                if c != ' ' && !words.is_empty() {
                    cmds.push(std::mem::take(&mut words));
                }
            }
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    if !words.is_empty() {
        cmds.push(words);
    }
    cmds
}

/// Every example in the help texts parses with the flags as they are now.
#[test]
fn help_examples_parse() {
    assert_eq!(
        shell_commands(r#"a 'b c' "d\"e" | f -x; g"#),
        [vec!["a", "b c", "d\"e"], vec!["f", "-x"], vec!["g"]]
    );
    for bin in BINS {
        for (_, line) in command(bin).1.examples {
            for words in shell_commands(line) {
                if !BINS.contains(&words[0].as_str()) {
                    continue;
                }
                let (cmd, _) = command(&words[0]);
                if let Err(e) = cmd.try_get_matches_from(&words) {
                    panic!("{bin} --help example {line:?} does not parse:\n{e}");
                }
            }
        }
    }
}
