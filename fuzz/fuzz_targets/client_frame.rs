//! A WebSocket text frame from a client: `ClientFrame::parse` (and its quick path
//! for batch `publish` frames) answers as the full parse does, stores the same
//! bytes, and what it stores is serde's encoding of the event; the quick JSON check
//! agrees with serde_json on the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (the socket refuses others).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    hub::fuzzing::client_frame(text);
    hub::fuzzing::json_text(text);
});
