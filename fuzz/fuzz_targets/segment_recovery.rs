//! A segment file of the log as a damaged disk may leave it: the scan does not
//! panic, accounts for every byte and keeps records with ids strictly increasing
//! from the file's first id; the log over it opens and gives out ids above them
//! (`hub::fuzzing::segment`).
//!
//! Input: a first byte whose low bit chooses the form. Even: the rest is the
//! file as it is. Odd: the rest is records, each `[id step][length][json]`,
//! written with the log's own encoder, then damaged by the last three bytes
//! (a place and a byte to xor there; a place of 0xffff cuts the file in half).
#![no_main]

use hub::store::segment::encode_record;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hub-fuzz-segment-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("creating the scratch dir");
        d
    })
}

/// The file the odd form describes.
fn written(spec: &[u8]) -> Vec<u8> {
    let (body, damage) = spec.split_at(spec.len().saturating_sub(3));
    let mut out = Vec::new();
    let (mut id, mut rest) = (10u64, body);
    while let [step, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        id += u64::from(*step);
        encode_record(&mut out, id, id * 1000, 0, b"", &tail[..n]);
        rest = &tail[n..];
    }
    if let [a, b, x] = damage {
        let at = u16::from_le_bytes([*a, *b]) as usize;
        if at == 0xffff {
            out.truncate(out.len() / 2);
        } else if !out.is_empty() {
            let at = at % out.len();
            out[at] ^= x;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let file = match form & 1 {
        0 => rest.to_vec(),
        _ => written(rest),
    };
    hub::fuzzing::segment(&file, 10, dir());
});
