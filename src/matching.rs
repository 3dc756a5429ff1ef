//! Which events a subscription wants (SPEC §2): topic globs OR-ed, types OR-ed, and
//! `FIELD=VALUE` / `FIELD!=VALUE` filters AND-ed. Pure code; the broker applies a
//! [`Matcher`] before anything is queued for a subscriber.

use crate::event::Fields;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::Value;
use std::borrow::Cow;
use std::str::FromStr;

/// A pattern or filter that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error(
        "invalid topic pattern {pattern:?}: {reason} (patterns are globs: * any run, ? one character, [abc] a class)"
    )]
    Pattern { pattern: String, reason: String },
    #[error(
        "invalid filter {0:?}: a filter is FIELD=VALUE or FIELD!=VALUE with a dotted FIELD (e.g. type=task_failed, data.percent=50)"
    )]
    Filter(String),
}

/// One `FIELD=VALUE` or `FIELD!=VALUE` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    path: Vec<String>,
    value: Value,
    negate: bool,
}

impl FromStr for Filter {
    type Err = MatchError;

    fn from_str(s: &str) -> Result<Self, MatchError> {
        let bad = || MatchError::Filter(s.to_string());
        let eq = s.find('=').ok_or_else(bad)?;
        let (field, negate) = match s[..eq].strip_suffix('!') {
            Some(f) => (f, true),
            None => (&s[..eq], false),
        };
        let raw = &s[eq + 1..];
        let field = field.trim();
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(bad());
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        Ok(Filter {
            path: field.split('.').map(str::to_string).collect(),
            value,
            negate,
        })
    }
}

impl Filter {
    /// True when the event satisfies this condition (`F!=V` also when F is missing).
    pub fn matches<E: Fields + ?Sized>(&self, ev: &E) -> bool {
        match lookup(ev, &self.path) {
            Some(found) => found.equals(&self.value) != self.negate,
            None => self.negate,
        }
    }
}

/// A field found in an event, borrowed where it can be.
enum Found<'a> {
    Json(&'a Value),
    Str(&'a str),
    Num(u64),
}

impl Found<'_> {
    fn equals(&self, want: &Value) -> bool {
        match self {
            Found::Json(v) => json_eq(v, want),
            Found::Str(s) => want.as_str() == Some(*s),
            Found::Num(n) => json_eq(&Value::from(*n), want),
        }
    }
}

/// Looks the dotted `path` up in `ev`, without building a JSON value for the
/// top-level fields of the event.
fn lookup<'a, E: Fields + ?Sized>(ev: &'a E, path: &[String]) -> Option<Found<'a>> {
    let (first, rest) = path.split_first()?;
    if first != "data" && !rest.is_empty() {
        return None;
    }
    Some(match first.as_str() {
        "data" => {
            let mut v = ev.data();
            for seg in rest {
                v = match v {
                    Value::Object(m) => m.get(seg)?,
                    Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Found::Json(v)
        }
        "topic" => Found::Str(ev.topic()),
        "type" => Found::Str(ev.kind()),
        "source" => Found::Str(ev.source()?),
        "key" => Found::Str(ev.key()?),
        "id" => Found::Num(ev.id()),
        _ => return None,
    })
}

/// JSON equality where numbers compare by value (`50` equals `50.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// `pattern` with each run of unescaped `*` written as one: SPEC's `*` is any run
/// of characters, so `**` is too, where the glob engine would read `**/` as "any
/// directories" and match `x` with `**/x`.
fn one_star_per_run(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains("**") {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let (mut escaped, mut star) = (false, false);
    for c in pattern.chars() {
        if !(c == '*' && star && !escaped) {
            out.push(c);
        }
        star = c == '*' && !escaped;
        escaped = c == '\\' && !escaped;
    }
    Cow::Owned(out)
}

/// A topic pattern that needs no glob engine.
#[derive(Debug, Clone)]
enum Plain {
    Exact(String),
    /// `PREFIX*`.
    Prefix(String),
}

/// Topic patterns (OR), types (OR) and filters (AND) of one subscription.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Patterns that are a literal, or a literal and one trailing `*`: the common
    /// cases, compared as strings (the glob engine costs more than the rest of
    /// matching an event).
    plain: Vec<Plain>,
    /// The other patterns.
    topics: Option<GlobSet>,
    types: Vec<String>,
    filters: Vec<Filter>,
}

impl Matcher {
    /// Builds a matcher. Empty `topics` or `types` match everything.
    pub fn new(
        topics: &[String],
        types: &[String],
        filters: &[String],
    ) -> Result<Self, MatchError> {
        let mut plain = Vec::new();
        let mut set = None;
        let is_glob = |p: &str| p.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if !topics.is_empty() && !topics.iter().any(|t| t == "*") {
            let mut globs = Vec::new();
            for p in topics {
                match p.strip_suffix('*') {
                    _ if !is_glob(p) => plain.push(Plain::Exact(p.clone())),
                    Some(prefix) if !is_glob(prefix) => plain.push(Plain::Prefix(prefix.into())),
                    _ => globs.push(p),
                }
            }
            let mut b = GlobSetBuilder::new();
            for p in globs.iter().copied() {
                let glob = GlobBuilder::new(&one_star_per_run(p))
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| MatchError::Pattern {
                        pattern: p.clone(),
                        reason: e.kind().to_string(),
                    })?;
                b.add(glob);
            }
            if !globs.is_empty() {
                set = Some(b.build().map_err(|e| MatchError::Pattern {
                    pattern: topics.join(" "),
                    reason: e.to_string(),
                })?);
            }
        }
        let filters = filters
            .iter()
            .map(|f| f.parse())
            .collect::<Result<Vec<Filter>, _>>()?;
        Ok(Matcher {
            plain,
            topics: set,
            types: types.to_vec(),
            filters,
        })
    }

    /// A matcher that takes every event.
    pub fn all() -> Self {
        Matcher {
            plain: Vec::new(),
            topics: None,
            types: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// True when this matcher takes every event.
    pub fn is_all(&self) -> bool {
        self.topics.is_none()
            && self.plain.is_empty()
            && self.types.is_empty()
            && self.filters.is_empty()
    }

    /// True when the event's topic matches (ignoring types and filters).
    pub fn matches_topic(&self, topic: &str) -> bool {
        if self.plain.is_empty() && self.topics.is_none() {
            return true;
        }
        self.plain.iter().any(|p| match p {
            Plain::Exact(t) => t == topic,
            Plain::Prefix(pre) => topic.starts_with(pre.as_str()),
        }) || self.topics.as_ref().is_some_and(|set| set.is_match(topic))
    }

    pub fn matches<E: Fields + ?Sized>(&self, ev: &E) -> bool {
        self.matches_topic(ev.topic())
            && (self.types.is_empty() || self.types.iter().any(|t| t == ev.kind()))
            && self.filters.iter().all(|f| f.matches(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    fn ev(topic: &str, kind: &str, data: Value) -> Event {
        Event {
            id: 7,
            ts: 0,
            topic: topic.into(),
            kind: kind.into(),
            source: Some("file".into()),
            key: None,
            data,
        }
    }

    fn m(topics: &[&str], filters: &[&str]) -> Matcher {
        let t: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
        let f: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        Matcher::new(&t, &[], &f).unwrap()
    }

    #[test]
    fn globs_cover_the_whole_topic() {
        let e = ev("task:build-42", "progress", json!({}));
        assert!(m(&["task:*"], &[]).matches(&e));
        assert!(m(&["*"], &[]).matches(&e));
        assert!(m(&[], &[]).matches(&e));
        assert!(m(&["*:build-4?"], &[]).matches(&e));
        assert!(m(&["task:build-4[12]"], &[]).matches(&e));
        assert!(!m(&["task"], &[]).matches(&e));
        assert!(!m(&["task:build"], &[]).matches(&e));
        assert!(!m(&["log:*"], &[]).matches(&e));
        assert!(
            m(&["log:*", "task:*"], &[]).matches(&e),
            "patterns are OR-ed"
        );
        // * crosses ':' and '/'
        assert!(m(&["a*"], &[]).matches(&ev("a:b/c:d", "x", json!({}))));
    }

    /// Literals and `PREFIX*` are compared as strings, the rest goes to the glob
    /// engine: mixed in one subscription they still OR, and an escaped `*` stays
    /// literal.
    #[test]
    fn plain_patterns_and_globs_mix() {
        let mixed = m(&["task:build-42", "log:*", "*:deploy?"], &[]);
        for (topic, want) in [
            ("task:build-42", true),
            ("task:build-4", false),
            ("task:build-421", false),
            ("log:", true),
            ("log:nginx/access", true),
            ("lo", false),
            ("ci:deploy1", true),
            ("ci:deploy", false),
        ] {
            assert_eq!(mixed.matches(&ev(topic, "x", json!({}))), want, "{topic}");
        }
        let escaped = m(&[r"a\*"], &[]);
        assert!(escaped.matches(&ev("a*", "x", json!({}))));
        assert!(!escaped.matches(&ev("ab", "x", json!({}))));
        assert!(m(&["a*", "b"], &[]).matches(&ev("b", "x", json!({}))));
        assert!(!m(&["a*", "b"], &[]).is_all());
    }

    #[test]
    fn bad_pattern_and_filter() {
        assert!(Matcher::new(&["task:[".into()], &[], &[]).is_err());
        for bad in ["nofield", "=x", "a..b=1", "!=3"] {
            assert!(bad.parse::<Filter>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_json_typed() {
        let e = ev(
            "t",
            "task_failed",
            json!({"percent": 50, "success": false, "status": "in_progress", "n": null, "deep": {"a": [1, {"b": "c"}]}}),
        );
        for ok in [
            "type=task_failed",
            "data.percent=50",
            "data.percent=50.0",
            "data.success=false",
            "data.status=in_progress",
            "data.status=\"in_progress\"",
            "data.n=null",
            "source=file",
            "data.deep.a.1.b=c",
            "data.missing!=1",
            "data.percent!=51",
            "id=7",
            "data.deep={\"a\":[1.0,{\"b\":\"c\"}]}",
        ] {
            assert!(m(&[], &[ok]).matches(&e), "{ok}");
        }
        for no in [
            "type=progress",
            "data.percent=\"50\"",
            "data.success=true",
            "data.success=False",
            "data.missing=null",
            "data.percent!=50",
            "key=x",
        ] {
            assert!(!m(&[], &[no]).matches(&e), "{no}");
        }
        assert!(
            !m(&[], &["type=task_failed", "data.percent=1"]).matches(&e),
            "AND"
        );
    }

    #[test]
    fn types_are_or_ed() {
        let e = ev("t", "task_failed", json!({}));
        let mt = Matcher::new(&[], &["task_completed".into(), "task_failed".into()], &[]).unwrap();
        assert!(mt.matches(&e));
        let mt = Matcher::new(&[], &["progress".into()], &[]).unwrap();
        assert!(!mt.matches(&e));
    }

    /// Topic patterns of literals, `*`, `?`, classes and escapes, and topics made to
    /// match them or nearly: the matcher takes a topic exactly when the naive glob
    /// of [`crate::fuzzing::naive_glob`] does, alone or OR-ed.
    #[test]
    fn globs_agree_with_a_naive_glob() {
        use crate::testgen::count;
        use proptest::prelude::*;
        let lit = prop::sample::select(vec!["a", "b", "c", ":", "/", "-", ".", "0", "@", "_", "A"]);
        let class = (
            prop::sample::select(vec!["", "!", "^"]),
            prop::collection::vec(
                prop::sample::select(vec!["a", "b", "0", ":", "/", "a-c", "0-9"]),
                1..4,
            ),
        )
            .prop_map(|(neg, items)| format!("[{neg}{}]", items.concat()));
        let tok = prop_oneof![
            6 => lit.prop_map(str::to_string),
            3 => Just("*".to_string()),
            2 => Just("?".to_string()),
            2 => class,
            1 => prop::sample::select(vec!["\\*", "\\?", "\\[", "\\a", "[", "]", "**"]).prop_map(str::to_string),
        ];
        let pattern = prop::collection::vec(tok, 0..8).prop_map(|t| t.concat());
        let topic_char =
            prop::sample::select(vec!['a', 'b', 'c', ':', '/', '-', '.', '0', '5', '*', '?']);
        let topic = prop::collection::vec(topic_char, 0..10)
            .prop_map(|v| v.into_iter().collect::<String>());
        let cases = (prop::collection::vec(pattern, 1..4), topic);
        let matched = count(cases, |(patterns, topic)| {
            crate::fuzzing::topic_glob(&patterns, &topic);
            Matcher::new(&patterns, &[], &[]).is_ok_and(|m| m.matches_topic(&topic))
        });
        assert!(matched > 20, "{matched} of 256 matched");
    }

    /// Any text parses as a filter or is refused, never a panic; a filter written
    /// from its parts parses back into them.
    #[test]
    fn filters_parse_back_from_their_parts() {
        use crate::testgen::{Style, count, json, rendered, text};
        use proptest::prelude::*;
        count((text(24), any::<String>()), |(a, b)| {
            crate::fuzzing::filter(&a);
            crate::fuzzing::filter(&b);
            true
        });
        let seg = prop::collection::vec(
            prop::sample::select(vec!['a', 'z', '0', '_', '-', ' ', '!', 'é']),
            1..6,
        )
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("no space or ! at the ends", |s| {
            !s.starts_with(' ') && !s.ends_with([' ', '!'])
        });
        let parts = (prop::collection::vec(seg, 1..4), any::<bool>(), json());
        let parsed = count(parts, |(path, negate, value)| {
            let value_text = rendered(&value, &mut Style::new(vec![]));
            let text = format!(
                "{}{}={value_text}",
                path.join("."),
                if negate { "!" } else { "" }
            );
            let f = crate::fuzzing::filter(&text).unwrap_or_else(|| panic!("{text} is refused"));
            let want = serde_json::from_str(&value_text).unwrap_or(Value::String(value_text));
            assert_eq!(
                f,
                Filter {
                    path,
                    value: want,
                    negate
                },
                "{text}"
            );
            true
        });
        assert_eq!(parsed, crate::testgen::config().cases);
    }

    /// Found by `globs_agree_with_a_naive_glob`: `**/` went to the glob engine as
    /// "any directories", so `**/x` matched `x` and `**/` matched the empty topic,
    /// where SPEC's `*` (and so `**`) is any run of characters.
    #[test]
    fn a_run_of_stars_is_one_star() {
        let t = |topic: &str| ev(topic, "x", json!({}));
        assert!(!m(&["**/x"], &[]).matches(&t("x")));
        assert!(m(&["**/x"], &[]).matches(&t("a/b/x")));
        assert!(m(&["**/x"], &[]).matches(&t("/x")));
        assert!(m(&["a**"], &[]).matches(&t("a")));
        assert!(m(&["a/**/b?"], &[]).matches(&t("a/c/d/bb")));
        assert!(!m(&["a/**/b"], &[]).matches(&t("a/b")));
        // An escaped star stays a literal one.
        assert!(m(&[r"\**"], &[]).matches(&t("*")));
        assert!(m(&[r"\**"], &[]).matches(&t("*x")));
        assert!(!m(&[r"\**"], &[]).matches(&t("x")));
        assert!(m(&[r"a\*\*"], &[]).matches(&t("a**")));
        assert!(!m(&[r"a\*\*"], &[]).matches(&t("abc")));
        assert_eq!(one_star_per_run(r"\\**"), r"\\*");
        for p in ["**/", "**/x", "a**", r"\**", r"a\*\*", "a/**/b"] {
            crate::fuzzing::topic_glob(&[p.to_string()], "x");
            crate::fuzzing::topic_glob(&[p.to_string()], "");
        }
    }
}
