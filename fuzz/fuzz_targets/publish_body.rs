//! A `POST /publish` body of JSON lines: each line read in place and stored the
//! hub's way is valid exactly when serde's `NewEvent` is, and is stored as serde
//! would encode it; the whole body as the hub reads it is taken or refused (naming
//! the first invalid line) exactly as serde reads its lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hub::fuzzing::publish_body(data);
    // The hub refuses a body that is not UTF-8 before reading any line.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        hub::fuzzing::body_line(line);
    }
});
