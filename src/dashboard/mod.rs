//! The live dashboard `hub-serve` serves at `/` (and `/dashboard`): one page of
//! hand-written HTML, CSS and plain JavaScript, embedded in the binary with
//! `include_str!`. No framework, no build step, nothing loaded from another host.
//!
//! The files hold no data: the page reads everything through the hub's own API
//! (`/tasks`, `/status`, one WebSocket on `/ws`, `/events` when WebSockets fail),
//! so they are served without a token; the page asks for the token itself. The
//! script and style are separate same-origin files, so the Content-Security-Policy
//! allows scripts from the hub only, with no inline script, no hashes and no
//! `'unsafe-inline'`. Every file carries an `ETag` (a hash of its bytes) and
//! `Cache-Control: no-cache`: a browser revalidates and gets 304 until the binary
//! changes. What the page does is described in `docs/dashboard.md`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

/// The page's HTML.
pub const INDEX_HTML: &str = include_str!("index.html");
/// The page's script.
pub const SCRIPT: &str = include_str!("dashboard.js");
/// The page's style sheet.
pub const STYLE: &str = include_str!("dashboard.css");

/// Where the dashboard's files are served. The page itself is at the first two.
pub const PATHS: [&str; 4] = ["/", "/dashboard", "/dashboard.js", "/dashboard.css"];

/// The policy every dashboard file is served with: scripts, styles and connections
/// only from the hub itself, no plugins, no frames, no inline script or handlers.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The files: content type and body.
const FILES: [(&str, &str); 3] = [
    ("text/html; charset=utf-8", INDEX_HTML),
    ("text/javascript; charset=utf-8", SCRIPT),
    ("text/css; charset=utf-8", STYLE),
];

/// Which of [`FILES`] is served at `path`, for one of [`PATHS`].
fn file_index(path: &str) -> Option<usize> {
    match path {
        "/" | "/dashboard" => Some(0),
        "/dashboard.js" => Some(1),
        "/dashboard.css" => Some(2),
        _ => None,
    }
}

/// The file served at `path`, as (content type, body), for one of [`PATHS`].
pub fn file(path: &str) -> Option<(&'static str, &'static str)> {
    file_index(path).map(|i| FILES[i])
}

/// A strong ETag for `body`: its 64-bit FNV-1a hash, quoted.
fn etag_of(body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// The ETag of file `i` of [`FILES`], computed once.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<[String; 3]> = OnceLock::new();
    &TAGS.get_or_init(|| FILES.map(|(_, body)| etag_of(body)))[i]
}

/// Whether an `If-None-Match` header names `tag` (or is `*`).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// Serves one of the dashboard's files (routed only for [`PATHS`]).
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let Some(i) = file_index(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (kind, body) = FILES[i];
    let tag = etag(i);
    let mut resp = if not_modified(&headers, tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    /// The page's list of task types is the hub's (`event::TASK_TYPES`).
    #[test]
    fn the_page_knows_the_task_types() {
        let js = include_str!("dashboard.js");
        let list: Vec<String> = crate::event::TASK_TYPES
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect();
        let want = format!("const TASK_TYPES = [{}];", list.join(", "));
        assert!(js.contains(&want), "dashboard.js must say {want}");
    }

    use super::*;

    #[test]
    fn small_and_self_contained() {
        let total = INDEX_HTML.len() + SCRIPT.len() + STYLE.len();
        assert!(total < 150 * 1024, "the dashboard is {total} bytes");
        for (name, text) in [("html", INDEX_HTML), ("js", SCRIPT), ("css", STYLE)] {
            for external in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(external), "{name} names {external}");
            }
        }
        // The CSP forbids inline script and handlers; the HTML has none.
        for inline in ["<script>", " onclick", " onload", " onerror", "style=\""] {
            assert!(!INDEX_HTML.contains(inline), "index.html has {inline}");
        }
        assert!(INDEX_HTML.contains(r#"<script src="dashboard.js""#));
        assert!(INDEX_HTML.contains(r#"href="dashboard.css""#));
    }

    #[test]
    fn the_script_inserts_text_never_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "createContextualFragment",
        ] {
            assert!(!SCRIPT.contains(sink), "dashboard.js uses {sink}");
        }
    }

    #[test]
    fn csp_is_strict() {
        assert!(!CSP.contains('*'));
        assert!(!CSP.contains("unsafe"));
        assert!(CSP.contains("script-src 'self'"));
    }

    #[test]
    fn etags_differ_per_file_and_match_if_none_match() {
        let (a, b, c) = (etag(0), etag(1), etag(2));
        assert_eq!(a, etag_of(INDEX_HTML));
        assert!(a != b && b != c && a != c);
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, a));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{a}")).unwrap(),
        );
        assert!(not_modified(&h, a));
        assert!(!not_modified(&h, b));
    }
}
