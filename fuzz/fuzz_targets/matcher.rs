//! Topic patterns and filters: the first line is a topic, each further line a
//! pattern (together OR-ed) and a filter. The matcher takes the topic exactly when
//! a naive glob does; no filter text panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let topic = lines.next().unwrap_or("");
    let patterns: Vec<String> = lines.map(str::to_string).collect();
    for p in &patterns {
        hub::fuzzing::filter(p);
    }
    // The naive glob backtracks: keep its work small.
    let stars = patterns.iter().map(|p| p.matches('*').count()).sum::<usize>();
    if topic.len() <= 64 && stars <= 8 {
        hub::fuzzing::topic_glob(&patterns, topic);
    }
});
