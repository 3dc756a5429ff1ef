//! The `hub-tail --state` file: any bytes load or are refused with a reason, and
//! a state that loads saves and loads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory of this process's own under the temp dir.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hub-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("creating the scratch dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    hub::fuzzing::state_file(data, dir());
});
