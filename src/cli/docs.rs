//! Generated documentation: man pages and shell completions, rendered from the clap
//! definitions of the four commands, and the text after `--help` they share.
//!
//! One source: each command's module holds a [`Page`] (examples, exit status,
//! environment, files, notes). [`Page::help`] and [`Page::long_help`] become the
//! command's `after_help` / `after_long_help`, and [`render`] turns the same `Page`
//! into the man page sections EXAMPLES, EXIT STATUS, ENVIRONMENT, FILES and NOTES
//! after clap_mangen's NAME, SYNOPSIS, DESCRIPTION and OPTIONS. So `--help` and the
//! man page never disagree.
//!
//! Every bin calls [`generate_if_asked`] before parsing its arguments: the hidden
//! `--generate man|complete-bash|complete-zsh|complete-fish` prints to stdout and
//! exits 0 (ripgrep's spelling). `scripts/generate-docs.sh` writes `man/` and
//! `completions/` with it, and `tests/generated.rs` compares the committed files
//! with [`render`], so a flag changed without regenerating fails the tests.
//!
//! Not for: anything a command does at run time.

use clap::CommandFactory;
use std::fmt::Write as _;
use std::io::Write as _;

/// The names of the four commands, in the order the docs list them.
pub const BINS: [&str; 4] = ["hub-serve", "hub-emit", "hub-sub", "hub-tail"];

/// What `--generate` can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The man page, roff (`man -l -` reads it).
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion function (`_hub-sub`).
    Zsh,
    /// A fish completion script.
    Fish,
}

impl Kind {
    /// Every kind, as `--generate` spells it.
    pub const ALL: [(&'static str, Kind); 4] = [
        ("man", Kind::Man),
        ("complete-bash", Kind::Bash),
        ("complete-zsh", Kind::Zsh),
        ("complete-fish", Kind::Fish),
    ];

    /// The kind `--generate NAME` names.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// Where the generated file lives in the repository, relative to its root.
    pub fn path(self, bin: &str) -> String {
        match self {
            Kind::Man => format!("man/{bin}.1"),
            Kind::Bash => format!("completions/{bin}.bash"),
            Kind::Zsh => format!("completions/_{bin}"),
            Kind::Fish => format!("completions/{bin}.fish"),
        }
    }
}

/// The documentation of one command beyond its flags: shown after `--help` and
/// rendered as man page sections.
pub struct Page {
    /// `(what it does, command line)`, in the order a reader needs them.
    pub examples: &'static [(&'static str, &'static str)],
    /// `(code, meaning)`.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// `(variable, meaning)`.
    pub environment: &'static [(&'static str, &'static str)],
    /// `(path, meaning)`.
    pub files: &'static [(&'static str, &'static str)],
    /// `(heading, paragraph)`: anything else a user must know (overflow policy,
    /// endpoints). Shown in `--help` (long) and as NOTES in the man page.
    pub notes: &'static [(&'static str, &'static str)],
}

/// Shared by the client commands' ENVIRONMENT.
pub const CLIENT_ENV: [(&str, &str); 4] = [
    (
        "HUB_URL",
        "The hub to connect to, as --url (default ws://127.0.0.1:7357).",
    ),
    (
        "HUB_TOKEN",
        "The token, as --token (--token-file takes precedence).",
    ),
    (
        "RUST_LOG",
        "Log filter for stderr (e.g. hub=debug); overrides -v and -q.",
    ),
    (
        "NO_COLOR",
        "When set (non-empty), no colors in help or logs.",
    ),
];

impl Page {
    /// The text after `-h`: examples and exit status.
    pub fn help(&self) -> String {
        let mut s = String::new();
        self.examples_text(&mut s);
        s.push('\n');
        self.table_text(&mut s, "Exit status", self.exit_status);
        s.trim_end().to_string()
    }

    /// The text after `--help`: everything of the man page beyond the flags.
    pub fn long_help(&self) -> String {
        let mut s = String::new();
        self.examples_text(&mut s);
        for (heading, rows) in [
            ("Exit status", self.exit_status),
            ("Environment", self.environment),
            ("Files", self.files),
        ] {
            if !rows.is_empty() {
                s.push('\n');
                self.table_text(&mut s, heading, rows);
            }
        }
        for (heading, text) in self.notes {
            let _ = write!(s, "\n{heading}:\n");
            for line in wrap(text, 76) {
                let _ = writeln!(s, "  {line}");
            }
        }
        s.trim_end().to_string()
    }

    fn examples_text(&self, s: &mut String) {
        s.push_str("Examples:\n");
        for (what, cmd) in self.examples {
            let _ = writeln!(s, "  # {what}\n  {cmd}\n");
        }
        if s.ends_with("\n\n") {
            s.pop();
        }
    }

    fn table_text(&self, s: &mut String, heading: &str, rows: &[(&str, &str)]) {
        let _ = writeln!(s, "{heading}:");
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            if width <= 10 {
                let _ = writeln!(s, "  {k:width$}  {v}");
            } else {
                let _ = writeln!(s, "  {k}");
                for line in wrap(v, 72) {
                    let _ = writeln!(s, "      {line}");
                }
            }
        }
    }

    /// The man page sections of this page, in roff.
    fn roff(&self, bin: &str) -> String {
        let mut r = String::new();
        r.push_str(".SH EXAMPLES\n");
        for (what, cmd) in self.examples {
            let _ = write!(
                r,
                ".PP\n{}\n.PP\n.RS 4\n.nf\n\\fB{}\\fR\n.fi\n.RE\n",
                roff_text(what),
                roff_text(cmd)
            );
        }
        for (heading, rows) in [
            ("EXIT STATUS", self.exit_status),
            ("ENVIRONMENT", self.environment),
            ("FILES", self.files),
        ] {
            if rows.is_empty() {
                continue;
            }
            if heading.contains(' ') {
                let _ = writeln!(r, ".SH \"{heading}\"");
            } else {
                let _ = writeln!(r, ".SH {heading}");
            }
            for (k, v) in rows {
                let _ = write!(r, ".TP\n\\fB{}\\fR\n{}\n", roff_text(k), roff_text(v));
            }
        }
        if !self.notes.is_empty() {
            r.push_str(".SH NOTES\n");
            for (heading, text) in self.notes {
                let _ = write!(r, ".SS \"{}\"\n{}\n", roff_text(heading), roff_text(text));
            }
        }
        r.push_str(".SH \"SEE ALSO\"\n");
        let others: Vec<String> = BINS
            .iter()
            .filter(|b| **b != bin)
            .map(|b| format!("\\fB{}\\fR(1)", roff_text(b)))
            .chain(["\\fBjq\\fR(1)".to_string()])
            .collect();
        let _ = writeln!(r, "{}", others.join(", "));
        r
    }
}

/// Escapes text for roff: backslashes, minus signs (so options render as `-`, not a
/// hyphen), and a leading `.` or `'` that roff would read as a request.
fn roff_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split('\n') {
        if !out.is_empty() {
            out.push('\n');
        }
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        for c in line.chars() {
            match c {
                '\\' => out.push_str("\\e"),
                '-' => out.push_str("\\-"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The clap command and the page of `bin`.
///
/// # Panics
/// `bin` is not one of [`BINS`].
pub fn command(bin: &str) -> (clap::Command, &'static Page) {
    match bin {
        "hub-serve" => (super::serve::ServeArgs::command(), &super::serve::PAGE),
        "hub-emit" => (super::emit::EmitArgs::command(), &super::emit::PAGE),
        "hub-sub" => (super::sub::SubArgs::command(), &super::sub::PAGE),
        "hub-tail" => (super::tail::TailArgs::command(), &super::tail::PAGE),
        other => panic!("no such command: {other} (one of {BINS:?})"),
    }
}

/// Renders the man page or a completion script of `bin`, exactly as committed in
/// `man/` and `completions/`.
///
/// # Panics
/// `bin` is not one of [`BINS`].
pub fn render(bin: &str, kind: Kind) -> String {
    let (mut cmd, page) = command(bin);
    let mut buf: Vec<u8> = Vec::new();
    match kind {
        Kind::Man => {
            // Our own sections replace clap_mangen's EXTRA (the after_help text).
            let man = clap_mangen::Man::new(cmd.clone()).manual("hub manual");
            let done: std::io::Result<()> = (|| {
                man.render_title(&mut buf)?;
                man.render_name_section(&mut buf)?;
                man.render_synopsis_section(&mut buf)?;
                man.render_description_section(&mut buf)?;
                man.render_options_section(&mut buf)?;
                buf.extend_from_slice(page.roff(bin).as_bytes());
                man.render_version_section(&mut buf)
            })();
            done.expect("rendering to memory cannot fail");
        }
        Kind::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, bin, &mut buf),
        Kind::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, bin, &mut buf),
        Kind::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, bin, &mut buf),
    }
    String::from_utf8(buf).expect("generated docs are UTF-8")
}

/// Handles the hidden `--generate KIND` (alone on the command line): prints the man
/// page or completion script of `bin` on stdout and exits (0; 2 for an unknown
/// KIND). Otherwise returns and the command runs. Called before the arguments are
/// parsed, so required arguments and `HUB_*` variables do not get in the way.
pub fn generate_if_asked(bin: &str) {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = match args.as_slice() {
        [flag, name] if flag == "--generate" => name.as_str(),
        [one] => match one.strip_prefix("--generate=") {
            Some(name) => name,
            None => return,
        },
        _ => return,
    };
    let Some(kind) = Kind::parse(name) else {
        let names: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "{bin}: invalid --generate {name:?}: one of {}",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(render(bin, kind).as_bytes())
        .and_then(|_| out.flush());
    std::process::exit(if ok.is_ok() { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text(r"a-b \d .x"), r"a\-b \ed .x");
        assert_eq!(roff_text(".start\n'q"), "\\&.start\n\\&'q");
    }

    #[test]
    fn kinds_round_trip() {
        for (name, kind) in Kind::ALL {
            assert_eq!(Kind::parse(name), Some(kind));
        }
        assert_eq!(Kind::parse("complete-powershell"), None);
        assert_eq!(Kind::Zsh.path("hub-sub"), "completions/_hub-sub");
    }

    #[test]
    fn wraps() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
    }
}
