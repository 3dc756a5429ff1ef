//! Durable cursors (`hub-sub --durable NAME`): the last id a named subscriber has
//! printed, kept by the hub in `cursors.json` beside the log (written to a temporary
//! file and renamed, so a crash leaves the old or the new file, never half of one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FILE: &str = "cursors.json";

pub struct Cursors {
    path: Option<PathBuf>,
    state: Mutex<(BTreeMap<String, u64>, bool)>,
}

impl Cursors {
    /// Loads `cursors.json` from `dir` (none in memory mode).
    pub fn open(dir: Option<&Path>) -> std::io::Result<Cursors> {
        let path = dir.map(|d| d.join(FILE));
        let map = match &path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::warn!("ignoring unreadable {}: {e}", p.display());
                    BTreeMap::new()
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(e),
            },
            None => BTreeMap::new(),
        };
        Ok(Cursors {
            path,
            state: Mutex::new((map, false)),
        })
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.state.lock().unwrap().0.get(name).copied()
    }

    pub fn set(&self, name: &str, id: u64) {
        let mut st = self.state.lock().unwrap();
        if st.0.get(name) != Some(&id) {
            st.0.insert(name.to_string(), id);
            st.1 = true;
        }
    }

    /// Writes the file if a cursor moved since the last save.
    pub fn save_if_dirty(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let json = {
            let mut st = self.state.lock().unwrap();
            if !st.1 {
                return Ok(());
            }
            st.1 = false;
            serde_json::to_vec_pretty(&st.0).expect("a map of numbers serializes")
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursors::open(Some(dir.path())).unwrap();
        assert_eq!(c.get("nightly"), None);
        c.set("nightly", 57);
        c.save_if_dirty().unwrap();
        let c = Cursors::open(Some(dir.path())).unwrap();
        assert_eq!(c.get("nightly"), Some(57));
    }
}
