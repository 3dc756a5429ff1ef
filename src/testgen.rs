//! Generators for the property tests beside the parsers (test builds only): JSON
//! values, events and `publish` frames rendered in the many ways a client may write
//! them, and near-valid mutations of any text (a character deleted, doubled or
//! swapped, a field renamed, an escape put in, nesting deepened).
//!
//! Values are generated as a model first and then rendered by [`Style`], a list of
//! random choices (whitespace, escapes, field order), so that most texts are valid
//! and lie where a hand-written scanner has its branches; the mutations then take
//! them just past valid.

use proptest::prelude::*;

/// The configuration of every property test here: few enough cases that the lot
/// runs in seconds in a debug build, and no failure files (a failing case found
/// once is kept as a named test beside the code instead).
/// The cases are the same in every run (`PROPTEST_RNG_SEED=N` and
/// `PROPTEST_CASES=N` explore others).
pub fn config() -> ProptestConfig {
    let set = |var: &str| std::env::var_os(var).is_some();
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") {
            env.cases
        } else {
            256
        },
        rng_seed: match set("PROPTEST_RNG_SEED") {
            true => env.rng_seed,
            false => proptest::test_runner::RngSeed::Fixed(15),
        },
        failure_persistence: None,
        ..env
    }
}

/// Random rendering choices, taken one at a time; once used up every choice is
/// the plain one (compact, unescaped, in order), so a short or empty list renders
/// the layout publishers write.
#[derive(Debug, Clone)]
pub struct Style {
    bytes: Vec<u8>,
    at: usize,
}

impl Style {
    /// Choices from `bytes`.
    pub fn new(bytes: Vec<u8>) -> Style {
        Style { bytes, at: 0 }
    }

    /// One of `n` choices, `0` (the plain one) most often.
    pub fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        if n <= 1 || b < 160 {
            0
        } else {
            1 + b as usize % (n - 1)
        }
    }

    /// One of `n` choices, `0` nearly always: for what, taken often, would make
    /// every text odd (an escape where none is needed).
    pub fn rare(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        if n <= 1 || b < 240 {
            0
        } else {
            1 + b as usize % (n - 1)
        }
    }

    /// Whitespace between two tokens: none most often.
    pub fn ws(&mut self) -> &'static str {
        ["", " ", "\n", "\t", " \r\n  "][self.pick(5)]
    }
}

/// Style choices: none (the plain layout) a third of the time.
pub fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 1..96),
    ]
    .prop_map(Style::new)
}

/// A JSON value as a model, with its numbers as the text they are written as.
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text: valid JSON, but not always within f64's range.
    Num(String),
    Str(String),
    /// A string literal written as it is (lone surrogates and other escapes a
    /// `String` cannot hold).
    RawStr(&'static str),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Characters strings are made of: plain ones and every kind that a scanner
/// treats on its own (quotes, backslashes, control characters, non-ASCII).
pub fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            ' ', '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{1}', '\u{8}', '\u{c}', '\u{1f}',
            '\u{7f}', ':', '-', '.', '{', '}', '[', ']', ',', '0', 'A', 'u',
        ]),
        1 => prop::sample::select(vec!['é', 'ü', 'ж', '✓', '€', '\u{2028}', '😀', '\u{10ffff}']),
    ]
}

/// A string of [`text_char`]s.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(text_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Number texts: integers, decimals, exponents, the edges of u64 and of f64.
pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        2 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).expect("finite")),
        2 => prop::sample::select(vec![
            "0", "-0", "0.0", "-0.000", "1.5", "1e5", "1E5", "-2.5e-3", "1e+2", "1e999",
            "-1e400", "18446744073709551615", "18446744073709551616",
            "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890",
            "4.9e-324", "1.7976931348623157e308",
        ])
        .prop_map(str::to_string),
        1 => (1usize..330).prop_map(|n| "9".repeat(n)),
    ]
}

/// JSON values, nested a few levels.
pub fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Num),
        text(12).prop_map(Json::Str),
        prop::sample::select(vec![
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud83d\ude00""#,
            r#""\u00e9\u0000""#,
            r#""\/\b\f""#,
        ])
        .prop_map(Json::RawStr),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Arr),
            prop::collection::vec((text(6), inner), 0..6).prop_map(Json::Obj),
        ]
    })
}

/// A value nested `depth` levels (arrays and objects taking turns) around `1`.
pub fn deep(depth: usize) -> Json {
    (0..depth).fold(Json::Num("1".into()), |v, i| match i % 3 {
        0 => Json::Obj(vec![("k".into(), v)]),
        _ => Json::Arr(vec![v]),
    })
}

/// A string literal for `s`, escaped as `style` chooses where JSON allows a choice.
pub fn render_str(s: &str, style: &mut Style, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must = c == '"' || c == '\\' || c < ' ';
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '/' => Some("\\/"),
            _ => None,
        };
        let unicode = |out: &mut String| {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        };
        let choice = match must {
            true => style.pick(2),
            false => style.rare(4),
        };
        match (must, choice) {
            (true, 0) => match short {
                Some(e) => out.push_str(e),
                None => unicode(out),
            },
            (true, _) => unicode(out),
            (false, 1) if short.is_some() => out.push_str(short.expect("some")),
            (false, 2) => unicode(out),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// The text of a value, laid out as `style` chooses.
pub fn render(v: &Json, style: &mut Style, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Num(n) => out.push_str(n),
        Json::Str(s) => render_str(s, style, out),
        Json::RawStr(s) => out.push_str(s),
        Json::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(style.ws());
                render(item, style, out);
                out.push_str(style.ws());
            }
            out.push(']');
        }
        Json::Obj(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(style.ws());
                render_str(k, style, out);
                out.push_str(style.ws());
                out.push(':');
                out.push_str(style.ws());
                render(item, style, out);
                out.push_str(style.ws());
            }
            out.push('}');
        }
    }
}

/// [`render`] into a new string.
pub fn rendered(v: &Json, style: &mut Style) -> String {
    let mut s = String::new();
    render(v, style, &mut s);
    s
}

/// A topic: valid most of the time, sometimes not (empty, too long, a space, a
/// character outside the topic set).
pub fn topic() -> impl Strategy<Value = String> {
    let chars = prop::sample::select("abcxyzABZ0129_-.:/@".chars().collect::<Vec<_>>());
    prop_oneof![
        8 => prop::collection::vec(chars, 1..12).prop_map(|v| v.into_iter().collect()),
        1 => prop::sample::select(vec!["", "a b", "é", "a*", "t\"q", "a\\b", "t\n"])
            .prop_map(str::to_string),
        1 => (250usize..260).prop_map(|n| "t".repeat(n)),
    ]
}

/// A type: valid most of the time.
pub fn kind() -> impl Strategy<Value = String> {
    let chars = prop::sample::select("abz09_.-".chars().collect::<Vec<_>>());
    prop_oneof![
        8 => prop::collection::vec(chars, 1..10).prop_map(|v| v.into_iter().collect()),
        1 => prop::sample::select(vec!["", "Upper", "x:y", "message"]).prop_map(str::to_string),
        1 => (60usize..70).prop_map(|n| "k".repeat(n)),
    ]
}

/// An event as a model: its fields (each may be missing), and `id`/`ts` as a
/// re-published event carries them.
#[derive(Debug, Clone)]
pub struct Ev {
    pub topic: Option<String>,
    pub kind: Option<Json>,
    pub source: Option<Json>,
    pub key: Option<Json>,
    pub data: Option<Json>,
    pub id: Option<Json>,
    pub ts: Option<Json>,
    /// The order the fields are written in: a permutation of `0..7`.
    pub order: Vec<usize>,
}

/// A string field, or now and then a value of another type.
fn str_field(s: impl Strategy<Value = String>) -> impl Strategy<Value = Json> {
    prop_oneof![
        8 => s.prop_map(Json::Str),
        1 => Just(Json::Null),
        1 => number().prop_map(Json::Num),
    ]
}

/// Events: mostly valid, in the hub's field order half of the time.
pub fn event() -> impl Strategy<Value = Ev> {
    let data = prop_oneof![
        6 => json(),
        1 => (95usize..130).prop_map(deep),
    ];
    let order = prop_oneof![
        Just((0..7).collect::<Vec<_>>()),
        Just((0..7).collect::<Vec<_>>()).prop_shuffle(),
    ];
    (
        prop::option::weighted(0.95, topic()),
        prop::option::weighted(0.5, str_field(kind())),
        prop::option::weighted(0.4, str_field(text(10))),
        prop::option::weighted(0.4, str_field(text(10))),
        prop::option::weighted(0.85, data),
        prop::option::weighted(0.1, number().prop_map(Json::Num)),
        prop::option::weighted(0.1, Just(Json::Str("2026-12-03T00:00:00.000Z".into()))),
        order,
    )
        .prop_map(|(topic, kind, source, key, data, id, ts, order)| Ev {
            topic,
            kind,
            source,
            key,
            data,
            id,
            ts,
            order,
        })
}

/// Events as publishers write them: valid names, strings with nothing to escape,
/// the hub's field order most of the time.
pub fn plain_event() -> impl Strategy<Value = Ev> {
    let plain = || {
        prop::collection::vec(
            prop::sample::select(vec!['a', 'z', '0', ' ', '-', 'é', '✓']),
            1..10,
        )
        .prop_map(|v| Json::Str(v.into_iter().collect()))
    };
    let order = prop_oneof![
        3 => Just((0..7).collect::<Vec<_>>()),
        1 => Just((0..7).collect::<Vec<_>>()).prop_shuffle(),
    ];
    (
        topic(),
        prop::option::of(kind().prop_map(Json::Str)),
        prop::option::of(plain()),
        prop::option::of(plain()),
        prop::option::weighted(0.9, json()),
        order,
    )
        .prop_map(|(topic, kind, source, key, data, order)| Ev {
            topic: Some(topic),
            kind,
            source,
            key,
            data,
            id: None,
            ts: None,
            order,
        })
}

/// The field names of an event, in [`Ev::order`]'s numbering.
pub const EVENT_FIELDS: [&str; 7] = ["topic", "type", "source", "key", "data", "id", "ts"];

/// The JSON text of an event, laid out as `style` chooses.
pub fn render_event(e: &Ev, style: &mut Style) -> String {
    let topic = e.topic.clone().map(Json::Str);
    let fields = [&topic, &e.kind, &e.source, &e.key, &e.data, &e.id, &e.ts];
    let mut out = String::from("{");
    let mut first = true;
    for &i in &e.order {
        let Some(v) = fields[i] else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(style.ws());
        render_str(EVENT_FIELDS[i], style, &mut out);
        out.push_str(style.ws());
        out.push(':');
        out.push_str(style.ws());
        render(v, style, &mut out);
        out.push_str(style.ws());
    }
    out.push('}');
    out
}

/// A batch `publish` frame of events, in the layout `hub-emit` writes unless
/// `style` says otherwise.
pub fn render_frame(req: u64, events: &[Ev], style: &mut Style) -> String {
    let mut out = String::new();
    match style.rare(4) {
        0 => out.push_str(&format!(r#"{{"type":"publish","req":{req},"events":["#)),
        1 => out.push_str(&format!(
            r#"{{ "type" : "publish", "req":{req},"events":[ "#
        )),
        2 => out.push_str(&format!(r#"{{"req":{req},"type":"publish","events":["#)),
        _ => out.push_str(r#"{"type":"publish","events":["#),
    }
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
            out.push_str(style.ws());
        }
        out.push_str(&render_event(e, style));
    }
    out.push_str("]}");
    out
}

/// One near-valid change to a text.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// A character deleted.
    Delete(usize),
    /// A character written twice.
    Double(usize),
    /// Two neighbouring characters swapped.
    Swap(usize),
    /// A character put in: one that means something to JSON.
    Insert(usize, char),
    /// A quoted name replaced by another (an event field's name, a typo of one).
    Rename(usize, &'static str),
    /// A backslash escape put in at a place.
    Escape(usize, &'static str),
    /// The value after a `:` wrapped in this many more levels of brackets.
    Deepen(usize, usize),
}

/// Mutations; [`mutate`] applies them.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::sample::select(vec![
        '"', '\\', ',', ':', '{', '}', '[', ']', ' ', '\n', '\u{1}', '0', '-', '.', 'e', 'a', 'é',
        '+',
    ]);
    let names = prop::sample::select(vec![
        "\"topic\"",
        "\"type\"",
        "\"source\"",
        "\"key\"",
        "\"data\"",
        "\"id\"",
        "\"ts\"",
        "\"dat\"",
        "\"Topic\"",
        "\"to\\u0070ic\"",
        "\"events\"",
        "\"event\"",
        "\"req\"",
        "\"ids\"",
        "\"\"",
    ]);
    let escapes = prop::sample::select(vec![
        "\\", "\\n", "\\\"", "\\u0041", "\\u00", "\\ud800", "\\x", "\\/",
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Double),
        any::<usize>().prop_map(Mutation::Swap),
        (any::<usize>(), special).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), names).prop_map(|(i, n)| Mutation::Rename(i, n)),
        (any::<usize>(), escapes).prop_map(|(i, e)| Mutation::Escape(i, e)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Deepen(i, n)),
    ]
}

/// One to three mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// `text` with `m` applied (a change with no place to apply leaves it as it is).
pub fn mutate(text: &str, m: &Mutation) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let place = |i: &usize, n: usize| (n > 0).then(|| i % n);
    let mut s = text.to_string();
    match m {
        Mutation::Delete(i) => {
            if let Some(k) = place(i, chars.len()) {
                let (at, c) = chars[k];
                s.replace_range(at..at + c.len_utf8(), "");
            }
        }
        Mutation::Double(i) => {
            if let Some(k) = place(i, chars.len()) {
                let (at, c) = chars[k];
                s.insert(at, c);
            }
        }
        Mutation::Swap(i) => {
            if let Some(k) = place(i, chars.len().saturating_sub(1)) {
                let ((a, x), (_, y)) = (chars[k], chars[k + 1]);
                s.replace_range(a..a + x.len_utf8() + y.len_utf8(), &format!("{y}{x}"));
            }
        }
        Mutation::Insert(i, c) => {
            let at =
                place(i, chars.len() + 1).map_or(0, |k| chars.get(k).map_or(text.len(), |p| p.0));
            s.insert(at, *c);
        }
        Mutation::Escape(i, e) => {
            let at =
                place(i, chars.len() + 1).map_or(0, |k| chars.get(k).map_or(text.len(), |p| p.0));
            s.insert_str(at, e);
        }
        Mutation::Rename(i, name) => {
            // The quoted names of the text: a quote, plain characters, a quote, a colon.
            let names: Vec<(usize, usize)> = quoted_names(text);
            if let Some(k) = place(i, names.len()) {
                let (a, b) = names[k];
                s.replace_range(a..b, name);
            }
        }
        Mutation::Deepen(i, n) => {
            let colons: Vec<usize> = text.match_indices(':').map(|(at, _)| at + 1).collect();
            if let Some(k) = place(i, colons.len()) {
                let at = colons[k];
                let mut de = serde_json::Deserializer::from_str(&text[at..]);
                if let Ok(raw) =
                    <&serde_json::value::RawValue as serde::Deserialize>::deserialize(&mut de)
                {
                    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                    let end = start + raw.get().len();
                    s = format!(
                        "{}{}{}{}{}",
                        &text[..start],
                        "[".repeat(*n),
                        raw.get(),
                        "]".repeat(*n),
                        &text[end..]
                    );
                }
            }
        }
    }
    s
}

/// Where `"name"` followed by a colon sits in `text` (names without escapes).
fn quoted_names(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let end = b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\');
            if let Some(e) = end {
                let close = i + 1 + e;
                if b[close] == b'"' && b.get(close + 1) == Some(&b':') {
                    out.push((i, close + 1));
                }
                i = close + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// `text` with every mutation of `ms` applied in turn.
pub fn mutate_all(text: &str, ms: &[Mutation]) -> String {
    ms.iter().fold(text.to_string(), |t, m| mutate(&t, m))
}

/// A text as generated and, half of the time, mutated.
pub fn maybe_mutated(text: String, ms: &Option<Vec<Mutation>>) -> String {
    match ms {
        Some(ms) => mutate_all(&text, ms),
        None => text,
    }
}

/// Mutations half of the time.
pub fn some_mutations() -> impl Strategy<Value = Option<Vec<Mutation>>> {
    prop::option::of(mutations())
}

/// Runs `check` on `cases` values of `strategy` ([`config`]'s count unless given),
/// shrinking and panicking on the first that fails (panics included); the number
/// of cases for which `check` said `true`, so a test can require that its quick
/// path was taken often enough to mean something.
pub fn count<S: Strategy>(strategy: S, check: impl Fn(S::Value) -> bool) -> u32
where
    S::Value: std::fmt::Debug,
{
    let hits = std::cell::Cell::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, |v| {
        if check(v) {
            hits.set(hits.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    hits.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generators make what they say: valid JSON from [`render`] (when no lone
    /// surrogate or out-of-range number is in it), and mutations that change text.
    #[test]
    fn rendered_values_are_json() {
        let mut runner = proptest::test_runner::TestRunner::new(config());
        runner
            .run(&(json(), style()), |(v, mut st)| {
                let text = rendered(&v, &mut st);
                let raw: Result<&serde_json::value::RawValue, _> = serde_json::from_str(&text);
                prop_assert!(raw.is_ok(), "{text}");
                Ok(())
            })
            .unwrap();
        let m = Mutation::Deepen(0, 2);
        assert_eq!(mutate(r#"{"a":1}"#, &m), r#"{"a":[[1]]}"#);
        let m = Mutation::Rename(0, "\"dat\"");
        assert_eq!(mutate(r#"{"data":1}"#, &m), r#"{"dat":1}"#);
    }
}
