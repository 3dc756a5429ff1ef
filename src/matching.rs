//! Which events a subscription wants (SPEC §2): topic globs OR-ed, types OR-ed, and
//! `FIELD=VALUE` / `FIELD!=VALUE` filters AND-ed. Pure code; the broker applies a
//! [`Matcher`] before anything is queued for a subscriber.

use crate::event::Fields;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::Value;
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

/// Topic patterns (OR), types (OR) and filters (AND) of one subscription.
#[derive(Debug, Clone)]
pub struct Matcher {
    topics: Option<GlobSet>,
    /// Exact topics need no glob engine; most subscriptions name one topic.
    exact: Option<String>,
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
        let mut exact = None;
        let mut set = None;
        let is_glob = |p: &str| p.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if topics.len() == 1 && !is_glob(&topics[0]) {
            exact = Some(topics[0].clone());
        } else if !topics.is_empty() && !topics.iter().any(|t| t == "*") {
            let mut b = GlobSetBuilder::new();
            for p in topics {
                let glob = GlobBuilder::new(p)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| MatchError::Pattern {
                        pattern: p.clone(),
                        reason: e.kind().to_string(),
                    })?;
                b.add(glob);
            }
            set = Some(b.build().map_err(|e| MatchError::Pattern {
                pattern: topics.join(" "),
                reason: e.to_string(),
            })?);
        }
        let filters = filters
            .iter()
            .map(|f| f.parse())
            .collect::<Result<Vec<Filter>, _>>()?;
        Ok(Matcher {
            topics: set,
            exact,
            types: types.to_vec(),
            filters,
        })
    }

    /// A matcher that takes every event.
    pub fn all() -> Self {
        Matcher {
            topics: None,
            exact: None,
            types: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// True when this matcher takes every event.
    pub fn is_all(&self) -> bool {
        self.topics.is_none()
            && self.exact.is_none()
            && self.types.is_empty()
            && self.filters.is_empty()
    }

    /// True when the event's topic matches (ignoring types and filters).
    pub fn matches_topic(&self, topic: &str) -> bool {
        if let Some(e) = &self.exact {
            return e == topic;
        }
        match &self.topics {
            Some(set) => set.is_match(topic),
            None => true,
        }
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
}
