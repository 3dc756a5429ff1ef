//! Checks every request passes before it reaches a handler: the `Host` header
//! (against DNS rebinding), the `Origin` header (so no web page can drive a hub on
//! localhost), the token, and shutdown. The token is compared in constant time and
//! never logged or echoed.

use super::{AppState, error_response};
use crate::protocol::ErrorCode;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Whether the request carried the right token (or none was needed). WebSocket
/// upgrades are let through either way, to be closed with 4401 so that WebSocket
/// clients (browsers included) see why.
#[derive(Debug, Clone, Copy)]
pub struct Authorized(pub bool);

pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(host, &app.cfg.allow_hosts) {
            return error_response(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "Host {host:?} is not this hub's: accepted are localhost, IP addresses and names given with --allow-host"
                ),
            );
        }
    }
    let Some(origin) = headers.get(header::ORIGIN).cloned() else {
        return authorize(app, req, next).await;
    };
    let origin_text = origin.to_str().unwrap_or("");
    if !origin_allowed(origin_text, headers, &app.cfg.allow_origins) {
        return error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "Origin {origin_text:?} may not use this hub: allow it with --allow-origin {origin_text}"
            ),
        );
    }
    // An allowed page may read the answers (CORS); its preflights are answered here,
    // before the token check, since browsers send them without credentials.
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        authorize(app, req, next).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    resp
}

/// The token check (all but `/health` and the dashboard's files) and the shutdown
/// check.
async fn authorize(app: AppState, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let headers = req.headers();
    // The dashboard's files hold no data: the page asks for the token itself.
    if path == "/health" || crate::dashboard::PATHS.contains(&path) {
        return next.run(req).await;
    }
    let ok = match &app.cfg.token {
        None => true,
        Some(t) => presented_token(headers, req.uri().query())
            .is_some_and(|p| constant_time_eq::constant_time_eq(p.as_bytes(), t.as_bytes())),
    };
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let ws_upgrade = is_upgrade && path == "/ws";
    if !ok && !ws_upgrade {
        return error_response(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong token: send Authorization: Bearer <token> or ?token=<token>",
        );
    }
    if app.shutdown.is_cancelled() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the hub is shutting down; retry shortly",
        );
    }
    req.extensions_mut().insert(Authorized(ok));
    next.run(req).await
}

/// The token from `Authorization: Bearer T` or the `token` query parameter.
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim().to_string());
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Splits `host[:port]` (with `[v6]` brackets) and returns the host part.
fn host_part(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hostport,
    }
}

/// Loopback names, IP literals (a rebinding attack needs a DNS name) and
/// `--allow-host` names.
fn host_allowed(hostport: &str, allowed: &[String]) -> bool {
    let host = host_part(hostport).trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
}

/// An Origin is allowed when listed, or when it is the hub's own address (the page
/// was served by the hub itself, same host and port as the request's Host).
fn origin_allowed(origin: &str, headers: &HeaderMap, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "localhost:7357",
            "127.0.0.1:1",
            "[::1]:7357",
            "10.1.2.3",
            "app.localhost",
        ] {
            assert!(host_allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:7357",
            "localhost.evil.com",
            "127.0.0.1.nip.io:80",
        ] {
            assert!(!host_allowed(bad, &[]), "{bad}");
        }
        assert!(host_allowed("hub.lan:7357", &["hub.lan".into()]));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7357"));
        assert!(origin_allowed("http://127.0.0.1:7357", &h, &[]));
        assert!(!origin_allowed("http://127.0.0.1:8080", &h, &[]));
        assert!(!origin_allowed("https://evil.com", &h, &[]));
        assert!(!origin_allowed("null", &h, &[]));
        assert!(origin_allowed(
            "https://ok.example",
            &h,
            &["https://ok.example".into()]
        ));
    }
}
