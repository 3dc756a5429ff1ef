//! A glob input: the files it matches now, looked up again on every directory
//! change, bounded by [`MAX_GLOB_ENTRIES`].

use super::*;

/// Directory entries a glob looks at per scan, at most.
pub(super) const MAX_GLOB_ENTRIES: usize = 100_000;

/// A glob and the directory it is rooted in.
#[derive(Debug)]
pub(super) struct GlobInput {
    pub(super) base: PathBuf,
    pub(super) matcher: globset::GlobMatcher,
    /// Directory levels below `base` to look at (`None`: any, for `**`).
    pub(super) depth: Option<usize>,
}

impl GlobInput {
    pub(super) fn new(pattern: &str) -> Result<GlobInput, Exit> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Exit::usage(format!("invalid glob {pattern:?}: {e}")))?;
        let mut base = PathBuf::new();
        let mut rest = 0;
        let mut deep = false;
        for c in Path::new(pattern).components() {
            let s = c.as_os_str().to_string_lossy();
            if rest == 0 && !s.contains(['*', '?', '[', '{']) {
                base.push(c);
            } else {
                rest += 1;
                deep |= s.contains("**");
            }
        }
        Ok(GlobInput {
            base,
            matcher: glob.compile_matcher(),
            depth: if deep { None } else { Some(rest) },
        })
    }

    /// Files matching now; every directory visited is watched.
    pub(super) fn scan(&self, watch: &mut Watch, found: &mut Vec<PathBuf>) {
        let mut budget = MAX_GLOB_ENTRIES;
        let mut stack = vec![(self.base.clone(), 1usize)];
        while let Some((dir, level)) = stack.pop() {
            watch.watch_dir(&dir);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                let p = entry.path();
                let Ok(meta) = std::fs::metadata(&p) else {
                    continue;
                };
                if meta.is_dir() {
                    if self.depth.is_none_or(|d| level < d) {
                        stack.push((p, level + 1));
                    }
                } else if self.matcher.is_match(&p) {
                    found.push(p);
                }
            }
        }
    }
}
