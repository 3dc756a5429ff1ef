//! The `--state` file of `hub-tail`: where each followed file was left, so a restart
//! resumes exactly after the last line the hub acknowledged.
//!
//! Not for anything else: the follower decides what an entry means (see
//! [`crate::follow`]); this module only loads and saves it.
//!
//! # Format
//! One JSON object, rewritten whole each time (written to `FILE.tmp`, then renamed
//! over `FILE`, so a crash at any moment leaves either the old or the new state,
//! never a torn one):
//!
//! ```json
//! {"version":1,"files":{
//!   "/var/log/app.log":{"dev":2049,"ino":1311,"uid":"5f0c1e7a9b2d4c33",
//!                       "offset":40960,"fp_len":256,"fp":"8d1c2a0f"}}}
//! ```
//!
//! - `dev`, `ino`: the identity of the file the path named when it was saved.
//! - `uid`: a random id given to this incarnation of the file when hub-tail first saw
//!   it; part of every event key, so two files that reuse an inode never share keys.
//! - `offset`: the first byte not yet acknowledged by the hub.
//! - `fp_len`, `fp`: CRC-32 of the first `fp_len` (≤ 256) bytes of the file, to tell
//!   an inode reused by a new file from the old one after a restart.
//! - `rotated` (only while there are any): files renamed away from this path that are
//!   still read during `--rotate-wait`, each with the same fields (without `rotated`).
//!   After a restart they are looked for next to the path by identity and first bytes.
//!
//! Entries for paths this run does not follow are kept as they are, so one state file
//! may be shared by runs over different files (not by concurrent runs).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The current format version.
pub const VERSION: u32 = 1;

/// Where one file was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub dev: u64,
    pub ino: u64,
    pub uid: String,
    pub offset: u64,
    pub fp_len: u32,
    pub fp: String,
    /// Rotated files still read in their grace period (`--rotate-wait`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated: Vec<FileState>,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub files: BTreeMap<PathBuf, FileState>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not a hub-tail state file ({reason}); move it away or pass another --state"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The state file on disk and its last saved content.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    pub state: State,
    /// The encoding last written, to skip writes that change nothing.
    last_written: Option<String>,
}

impl StateFile {
    /// Loads `path`, or starts empty when it does not exist yet.
    ///
    /// # Errors
    /// An unreadable or unparsable file is an error: starting over silently would
    /// repeat or skip lines.
    pub fn load(path: &Path) -> Result<StateFile, StateError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let (state, last_written) = match std::fs::read_to_string(path) {
            Ok(text) => {
                let state: State =
                    serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                if state.version != VERSION {
                    return Err(StateError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!(
                            "version {} (this hub-tail reads {VERSION})",
                            state.version
                        ),
                    });
                }
                (state, Some(text))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                State {
                    version: VERSION,
                    files: BTreeMap::new(),
                },
                None,
            ),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(StateFile {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
            state,
            last_written,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, file: &Path) -> Option<&FileState> {
        self.state.files.get(file)
    }

    pub fn set(&mut self, file: &Path, st: FileState) {
        self.state.files.insert(file.to_path_buf(), st);
    }

    pub fn remove(&mut self, file: &Path) {
        self.state.files.remove(file);
    }

    /// Writes the state atomically (temp file + rename) unless it is unchanged since
    /// the last write. Not fsynced: a killed process loses nothing (the page cache
    /// survives it), and after a power loss an older state only makes hub-tail send
    /// lines again under the same keys, which the hub deduplicates.
    ///
    /// # Errors
    /// Any I/O error creating the directory, writing or renaming.
    pub fn save(&mut self) -> Result<bool, StateError> {
        let text = serde_json::to_string(&self.state).expect("state always serializes");
        if self.last_written.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let werr = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let mut f = std::fs::File::create(&self.tmp).map_err(werr)?;
        f.write_all(text.as_bytes()).map_err(werr)?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(werr)?;
        self.last_written = Some(text);
        Ok(true)
    }
}

/// The default state file for a set of followed patterns: one file per distinct set,
/// under `$XDG_STATE_HOME/hub/tail/` (else `~/.local/state/hub/tail/`), so two
/// `hub-tail` services over different files never share one.
pub fn default_path(patterns: &[PathBuf]) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut sorted: Vec<_> = patterns.iter().map(|p| p.to_string_lossy()).collect();
    sorted.sort();
    let mut h = crc32fast::Hasher::new();
    for p in &sorted {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    base.join("hub")
        .join("tail")
        .join(format!("{:08x}.json", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64) -> FileState {
        FileState {
            dev: 1,
            ino: 2,
            uid: "00ff".into(),
            offset,
            fp_len: 3,
            fp: "abcd".into(),
            rotated: Vec::new(),
        }
    }

    #[test]
    fn round_trip_and_skip_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut s = StateFile::load(&path).unwrap();
        assert!(s.state.files.is_empty());
        s.set(Path::new("/x/a.log"), entry(10));
        assert!(s.save().unwrap());
        assert!(!s.save().unwrap(), "unchanged state is not rewritten");
        let s2 = StateFile::load(&path).unwrap();
        assert_eq!(s2.get(Path::new("/x/a.log")), Some(&entry(10)));
        assert!(!dir.path().join("sub/state.json.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"version":1,"files":{"/x/a.log":{"dev":1"#),
            "{text}"
        );
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = StateFile::load(&path).unwrap_err();
        assert!(e.to_string().contains("not a hub-tail state file"), "{e}");
        std::fs::write(&path, r#"{"version":9,"files":{}}"#).unwrap();
        assert!(StateFile::load(&path).is_err());
    }

    #[test]
    fn default_path_depends_on_the_set_not_the_order() {
        let a = default_path(&["/a".into(), "/b".into()]);
        let b = default_path(&["/b".into(), "/a".into()]);
        let c = default_path(&["/a".into()]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.to_string_lossy().contains("hub/tail/"));
    }

    /// State files as saved and changed a little: each loads or is refused with a
    /// reason, never a panic, and what loads saves and loads back the same (the
    /// checks of [`crate::fuzzing::state_file`]).
    #[test]
    fn generated_state_files_load_or_say_why_not() {
        use crate::testgen::{count, mutate_all, mutations};
        use proptest::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let entry = (any::<u64>(), any::<u64>(), any::<u32>(), 0usize..3).prop_map(
            |(dev, offset, fp, n)| {
                let mut e = entry(offset);
                e.dev = dev;
                e.fp = format!("{fp:08x}");
                e.rotated = (0..n).map(|k| entry(k as u64)).collect();
                e
            },
        );
        let state = prop::collection::btree_map(
            prop::collection::vec(prop::sample::select(vec!['/', 'a', 'z', '.', 'é']), 1..12)
                .prop_map(|c| PathBuf::from(c.into_iter().collect::<String>())),
            entry,
            0..4,
        )
        .prop_map(|files| State {
            version: VERSION,
            files,
        });
        let texts = (state, prop::option::of(mutations())).prop_map(|(st, ms)| {
            let text = serde_json::to_string(&st).unwrap();
            match ms {
                Some(ms) => mutate_all(&text, &ms),
                None => text,
            }
        });
        count(texts, |text| {
            crate::fuzzing::state_file(text.as_bytes(), dir.path());
            true
        });
    }
}
