//! A frame from the hub as a client reads it: the quick reads of `ack`, batch
//! `ack`, `event` and `events` frames and of event ids answer only as serde would.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    hub::fuzzing::server_frame(text, "s1");
});
