//! What hub-tail follows and how: the inputs (paths, globs, `-`), topics and the
//! rest of [`Config`], checked before anything is read.

use super::*;

/// One thing to follow, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Glob(String),
    Stdin,
}

impl Input {
    /// `-` is stdin; an argument with `*`, `?`, `[` or `{` is a glob; anything else a
    /// path. Relative paths and globs are made absolute.
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            return Input::Stdin;
        }
        let abs = absolute(Path::new(arg));
        if arg.contains(['*', '?', '[', '{']) {
            Input::Glob(abs.to_string_lossy().into_owned())
        } else {
            Input::Path(abs)
        }
    }
}

/// Everything `hub-tail` needs besides the connection.
#[derive(Debug, Clone)]
pub struct Config {
    pub inputs: Vec<Input>,
    /// `--topic`; else `log:<file stem>` (`log:stdin`).
    pub topic: Option<String>,
    /// `--type`.
    pub kind: String,
    /// `--json`: JSON object lines become the data.
    pub json: bool,
    pub start: Start,
    pub mode: WatchMode,
    pub poll_interval: Duration,
    /// `--rotate-wait`: how long a renamed file is still read.
    pub rotate_wait: Duration,
    /// `--state`; `None`: the default path for these inputs.
    pub state: Option<PathBuf>,
    pub max_line: usize,
    pub source: Option<String>,
    pub verbose: bool,
    pub quiet: bool,
}

impl Config {
    pub fn new(inputs: Vec<Input>) -> Config {
        Config {
            inputs,
            topic: None,
            kind: "log".into(),
            json: false,
            start: Start::End,
            mode: WatchMode::Native,
            poll_interval: Duration::from_secs(1),
            rotate_wait: DEFAULT_ROTATE_WAIT,
            state: None,
            max_line: DEFAULT_MAX_LINE,
            source: None,
            verbose: false,
            quiet: false,
        }
    }

    /// Checks what can be checked before starting.
    ///
    /// # Errors
    /// [`Exit`] with code 2: no input, `-` mixed with files, an invalid topic or
    /// type, a named path that is a directory, a glob that does not parse.
    pub fn validate(&self) -> Result<(), Exit> {
        if self.inputs.is_empty() {
            return Err(Exit::usage(
                "nothing to follow: give files, quoted globs or -",
            ));
        }
        if self.inputs.contains(&Input::Stdin) && self.inputs.len() > 1 {
            return Err(Exit::usage(
                "- (stdin) cannot be mixed with files; run one hub-tail for each",
            ));
        }
        if let Some(t) = &self.topic {
            crate::event::validate_topic(t).map_err(|e| Exit::usage(e.to_string()))?;
        }
        crate::event::validate_type(&self.kind).map_err(|e| Exit::usage(e.to_string()))?;
        for input in &self.inputs {
            match input {
                Input::Path(p) if p.is_dir() => {
                    return Err(Exit::usage(format!(
                        "{} is a directory: give files or a quoted glob such as '{}/*.log'",
                        p.display(),
                        p.display()
                    )));
                }
                Input::Glob(g) => {
                    GlobInput::new(g)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn topic_for(&self, path: &Path) -> String {
        if let Some(t) = &self.topic {
            return t.clone();
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        topic_from_stem(&stem)
    }

    /// The state file used for these inputs.
    pub fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| {
            let keys: Vec<PathBuf> = self
                .inputs
                .iter()
                .map(|i| match i {
                    Input::Path(p) => p.clone(),
                    Input::Glob(g) => PathBuf::from(g),
                    Input::Stdin => PathBuf::from("-"),
                })
                .collect();
            default_path(&keys)
        })
    }
}

/// `log:<stem>` with characters a topic cannot hold replaced by `_`.
pub fn topic_from_stem(stem: &str) -> String {
    let mut t = String::from("log:");
    for ch in stem.chars() {
        t.push(if ch.is_ascii_alphanumeric() || "_-.:/@".contains(ch) {
            ch
        } else {
            '_'
        });
    }
    if t.len() == 4 {
        t.push_str("file");
    }
    t.truncate(crate::event::MAX_TOPIC_LEN);
    t
}

pub(super) fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Drop `.` and resolve `..` lexically, so the same file has one name.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Files named on the command line, for messages.
pub fn describe_inputs(inputs: &[Input]) -> String {
    let mut v: Vec<String> = inputs
        .iter()
        .map(|i| match i {
            Input::Path(p) => p.display().to_string(),
            Input::Glob(g) => g.clone(),
            Input::Stdin => "-".into(),
        })
        .collect();
    v.dedup();
    v.join(", ")
}
