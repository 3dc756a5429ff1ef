//! A quick validity check of JSON text for the hot paths: every line `hub-emit
//! --lines` sends, every event's `data` the hub takes in.
//!
//! serde_json checks a value token by token through its visitor machinery, which
//! costs more than the rest of a small event's handling. [`plain_value_len`] walks
//! the bytes once, for the values machines usually write, and answers only where it
//! is sure: a value it takes is one serde_json parses into a `Value` too. Anything
//! else (a `\u` escape, which may be a lone surrogate; a number with an exponent or
//! of 100 characters, which may be out of range; nesting past 100 levels; anything
//! invalid) gets `None`, and the caller asks serde_json, whose answer and error
//! message count.

use std::borrow::Cow;

/// Nesting taken here; serde_json refuses past 128 levels, counted from the top of
/// the text it parses (a frame's `data` sits three levels down).
const MAX_DEPTH: u32 = 100;

/// The length of the JSON value at the start of `b` (after any whitespace before
/// it), if it is valid and plainly so (see the module docs); `None` otherwise.
/// What follows the value is not looked at.
pub fn plain_value_len(b: &[u8]) -> Option<usize> {
    // One bit per open container, innermost lowest: 1 for an object.
    let (mut open, mut depth) = (0u128, 0u32);
    let mut i = 0;
    loop {
        // A value at `i`.
        i = ws(b, i);
        match *b.get(i)? {
            c @ (b'{' | b'[') => {
                // Empty ones count too, as serde_json counts them.
                if depth == MAX_DEPTH {
                    return None;
                }
                i = ws(b, i + 1);
                let close = if c == b'{' { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                } else {
                    depth += 1;
                    open = open << 1 | u128::from(c == b'{');
                    if c == b'{' {
                        i = key(b, i)?;
                    }
                    continue;
                }
            }
            b'"' => i = string(b, i)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // A value ended at `i`: close what it ends, or go on to the next one.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = ws(b, i);
            let in_object = open & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i += 1;
                    if in_object {
                        i = key(b, i)?;
                    }
                    break;
                }
                b'}' if in_object => {}
                b']' if !in_object => {}
                _ => return None,
            }
            i += 1;
            depth -= 1;
            open >>= 1;
        }
    }
}

/// Whether `text` is one JSON value (with whitespace around it at most) that
/// [`plain_value_len`] takes: `false` leaves the answer to serde_json.
pub fn is_plain(text: &str) -> bool {
    let b = text.as_bytes();
    plain_value_len(b).is_some_and(|end| ws(b, end) == b.len())
}

/// Skips JSON whitespace.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// An object's key and its colon, after whitespace; the index after the colon.
fn key(b: &[u8], i: usize) -> Option<usize> {
    let i = ws(b, string(b, ws(b, i))?);
    (*b.get(i)? == b':').then_some(i + 1)
}

/// A string at `i` (its opening quote); the index after its closing quote. Escapes
/// other than `\u` are taken; raw control characters are not JSON.
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    i += 1;
    loop {
        let at = find_special(b, i)?;
        match b[at] {
            b'"' => return Some(at + 1),
            b'\\' => {
                if !matches!(
                    *b.get(at + 1)?,
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
                ) {
                    return None;
                }
                i = at + 2;
            }
            _ => return None,
        }
    }
}

/// The index of the first byte at or after `i` that ends a string, starts an
/// escape or may not be in one: a quote, a backslash or a control character.
pub(crate) fn find_special(b: &[u8], mut i: usize) -> Option<usize> {
    // Eight bytes at a time; byte by byte only in the last few of the text.
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        match specials(word) {
            0 => i += 8,
            m => return Some(i + (m.trailing_zeros() / 8) as usize),
        }
    }
    let special = |c: &u8| matches!(c, b'"' | b'\\' | 0..0x20);
    Some(i + b.get(i..)?.iter().position(special)?)
}

/// The high bit of each byte of `word` (little-endian) that is special (see
/// [`find_special`]), exact for the lowest such byte (a borrow may mark bytes after
/// it): the classic "has a zero byte" test, for `"`, `\` and anything below 0x20.
fn specials(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        | below(word, 0x20)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b[i..].starts_with(word).then_some(i + word.len())
}

/// A number without an exponent, shorter than 100 characters (so within f64's
/// range): `-? (0 | [1-9][0-9]*) (. [0-9]+)?`.
fn number(b: &[u8], start: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = start + usize::from(b[start] == b'-');
    i = match *b.get(i)? {
        // serde_json refuses a digit after a leading zero (not JSON either).
        b'0' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => return None,
        b'0' => i + 1,
        b'1'..=b'9' => digits(i + 1),
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) || i - start >= 100 {
        return None;
    }
    Some(i)
}

/// Whether raw JSON that serde_json has read already (as a [`RawValue`]: its
/// structure, string escapes and characters are valid) may still hold what parsing
/// it into a `Value` refuses: a number beyond f64's range (that takes an exponent,
/// or 309 digits), an escaped lone surrogate (that takes a `\u` escape), or nesting
/// past serde_json's recursion limit of 128 (that takes 128 brackets). Where this
/// says no, [`check_json`] would pass: one quick pass over the bytes instead of a
/// second parse, for most data.
pub(crate) fn may_fail_value_parse(text: &str) -> bool {
    let b = text.as_bytes();
    // `\u`, or a digit and then `e`/`E`: one branch-free pass over byte pairs, which
    // the compiler vectorizes.
    let pairs = b.iter().zip(b.iter().skip(1)).fold(false, |hit, (&x, &y)| {
        hit | ((x == b'\\') & (y == b'u')) | ((x.wrapping_sub(b'0') < 10) & ((y | 0x20) == b'e'))
    });
    // 300 digits or 100 open brackets need as many bytes.
    pairs || (b.len() >= 200 && long_number_or_deep(b))
}

/// 300 digits in a row, or 100 open brackets.
pub(crate) fn long_number_or_deep(b: &[u8]) -> bool {
    let (mut digits, mut opens) = (0u32, 0u32);
    for &c in b {
        if c.is_ascii_digit() {
            digits += 1;
        } else {
            digits = 0;
            opens += u32::from(c == b'[' || c == b'{');
        }
        if digits >= 300 || opens >= 100 {
            return true;
        }
    }
    false
}

/// Checks that `text` is exactly one JSON value, as strictly as parsing it into a
/// [`serde_json::Value`] would (numbers in range, escapes valid), without building
/// one. The hub keeps published data as text and decodes it only on demand, so it
/// must be sure at intake that it can.
///
/// # Errors
/// The text is not one valid JSON value.
pub fn check_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(text).map(|_| ())
}

/// A JSON value read and thrown away, checked as strictly as parsing it into a
/// [`serde_json::Value`] would (numbers in range, string escapes valid), without
/// building anything. (`serde::de::IgnoredAny` would skip nested values without
/// those checks: `{"a":1e999}` would pass.)
pub struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Removes the insignificant whitespace of a valid JSON text, borrowing when there
/// is none (the common case: machines send compact JSON). Stored events must be
/// compact: each is one line of `hub-sub`'s output and of `/events`.
pub fn compact_json(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    // In valid JSON a byte at or below b' ' is whitespace (strings cannot hold raw
    // control characters), so text without one is compact: one branch-free pass
    // the compiler vectorizes, before the scan that tracks strings.
    if !bytes.iter().fold(false, |ws, &b| ws | (b <= b' ')) {
        return Cow::Borrowed(raw);
    }
    let mut in_str = false;
    let mut escaped = false;
    let mut first_ws = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            first_ws = Some(i);
            break;
        }
    }
    let Some(start) = first_ws else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..start]);
    let mut in_str = false;
    let mut escaped = false;
    for c in raw[start..].chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if matches!(c, ' ' | '\n' | '\r' | '\t') {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::value::RawValue;

    /// The eight-byte test finds the first special byte wherever it sits, and
    /// nothing else: every byte value, at every place of a word and across words.
    #[test]
    fn find_special_finds_the_first_special_byte() {
        let special = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
        for c in 0..=255u8 {
            for at in 0..20 {
                let mut b = vec![b'a'; 24];
                b[at] = c;
                // A second special byte after it must not hide or move the first.
                b[at + 2] = b'"';
                let want = if special(c) { at } else { at + 2 };
                assert_eq!(find_special(&b, 0), Some(want), "byte {c:#x} at {at}");
                assert_eq!(find_special(&b, at + 1), Some(at + 2));
            }
        }
        assert_eq!(find_special(b"no special bytes here", 0), None);
        assert_eq!(find_special(b"ab", 5), None);
    }

    /// What serde_json says of a text: the extent of its first value, and whether
    /// the whole text parses into a `Value`.
    fn serde(text: &str) -> (Option<usize>, bool) {
        let mut de = serde_json::Deserializer::from_str(text);
        let extent = serde::Deserialize::deserialize(&mut de)
            .ok()
            .map(|r: &RawValue| r.get().as_ptr() as usize - text.as_ptr() as usize + r.get().len());
        (extent, serde_json::from_str::<Value>(text).is_ok())
    }

    const TEXTS: [&str; 12] = [
        r#"{"seq":1,"src":"bench","msg":"xxxxxxxx"}"#,
        r#" { "a" : [ 1 , -2.5 , 0 , -0.0 , true , false , null ] , "b" : { } , "c" : [ ] } "#,
        r#"{"line":"say \"hi\" \\ \/ \b\f\n\r\t","é":"ключ ✓"}"#,
        r#"[[[[{"x":[{"y":"z"}]}]]]]"#,
        r#""just a string""#,
        "12345678901234567890123",
        "-0.000001",
        "true",
        "null",
        r#"{"a":{"a":{"a":{"a":1}}},"b":[[],[[]],{}]}"#,
        r#"{"dup":1,"dup":2}"#,
        "[1,2,3]",
    ];

    #[test]
    fn takes_plain_values_as_serde_does() {
        for text in TEXTS {
            let (extent, whole) = serde(text);
            let end = plain_value_len(text.as_bytes()).expect(text);
            assert_eq!(Some(end), extent, "{text}");
            assert!(whole, "{text}");
        }
        // What follows the value is left to the caller; is_plain takes whitespace.
        assert_eq!(plain_value_len(b"[1] x"), Some(3));
        assert_eq!(plain_value_len(b"1,2"), Some(1));
        assert!(is_plain(" [1] \n") && !is_plain("[1] x") && !is_plain("[1]\u{c}"));
    }

    #[test]
    fn leaves_to_serde_what_it_cannot_be_sure_of() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for text in [
            r#""\u00e9""#.to_string(),
            r#""\ud800""#.to_string(),
            "1e5".to_string(),
            "[2E-3]".to_string(),
            "9".repeat(100),
            deep(101),
            // Not JSON at all.
            "01".to_string(),
            "[1,]".to_string(),
            "{\"a\":1,}".to_string(),
            "{\"a\" 1}".to_string(),
            "[1 2]".to_string(),
            "-".to_string(),
            "1.".to_string(),
            ".5".to_string(),
            "tru".to_string(),
            "\"a\tb\"".to_string(),
            "\"a\\x\"".to_string(),
            "{'a':1}".to_string(),
            "[1}".to_string(),
            "{\"a\":1]".to_string(),
            "".to_string(),
            "[".to_string(),
            "\"open".to_string(),
        ] {
            assert_eq!(plain_value_len(text.as_bytes()), None, "{text}");
        }
        assert_eq!(plain_value_len(deep(100).as_bytes()), Some(200));
        assert_eq!(plain_value_len("9".repeat(99).as_bytes()), Some(99));
    }

    /// Every text made by changing one byte of a valid one: where the quick check
    /// takes a value, serde_json takes the same value, and the whole text when the
    /// value is all of it.
    #[test]
    fn never_takes_what_serde_refuses() {
        let alphabet = [
            "", "\"", "\\", ",", ":", "{", "}", "[", "]", " ", "\n", "\u{1}", "0", "1", "-", ".",
            "e", "a", "t", "n", "u", "/",
        ];
        let mut taken = 0;
        for text in TEXTS {
            for at in (0..=text.len()).filter(|&at| text.is_char_boundary(at)) {
                for b in alphabet {
                    for cut in [0, 1] {
                        let end = (at + cut).min(text.len());
                        if !text.is_char_boundary(end) {
                            continue;
                        }
                        let changed = format!("{}{b}{}", &text[..at], &text[end..]);
                        let Some(len) = plain_value_len(changed.as_bytes()) else {
                            continue;
                        };
                        let (extent, whole) = serde(&changed);
                        assert_eq!(Some(len), extent, "{changed}");
                        if is_plain(&changed) {
                            assert!(whole, "{changed}");
                        }
                        taken += 1;
                    }
                }
            }
        }
        assert!(taken > 2000, "{taken}");
    }

    /// Generated values, laid out every way JSON allows and then changed a little
    /// (and with text after them): where the quick check takes a value, serde_json
    /// takes the same (the checks of [`crate::fuzzing::json_text`]).
    #[test]
    fn generated_values_agree_with_serde() {
        use crate::testgen::*;
        use proptest::prelude::*;
        let texts = (
            json(),
            style(),
            some_mutations(),
            prop::sample::select(vec!["", " ", ",1", "]"]),
        )
            .prop_map(|(v, mut st, ms, tail)| maybe_mutated(rendered(&v, &mut st), &ms) + tail);
        let taken = count(texts, |text| crate::fuzzing::json_text(&text));
        assert!(taken > 60, "the quick check took {taken} of 256");
    }
}
