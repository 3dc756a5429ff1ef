//! The HTTP + WebSocket server on one port: routing, the access checks every request
//! passes (Host, Origin, token), limits, and the bounded shutdown. `conn` accepts
//! the connections, counts them and limits the time they take to send a request.
//!
//! [`run`] takes a bound listener and a shutdown token, never an address, so tests
//! and the binary bind however they like.

mod access;
mod conn;
mod http;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use http::parse_body;
mod read_ahead;
mod ws;

use crate::broker::Broker;
use crate::protocol::ErrorCode;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The whole of a shutdown, SIGTERM to exit (SPEC: 5 s).
pub const SHUTDOWN_LIMIT: Duration = Duration::from_millis(4500);
/// Largest `POST /publish` body.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Access rules and limits of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub token: Option<String>,
    /// Origins (`scheme://host[:port]`) whose pages may connect.
    pub allow_origins: Vec<String>,
    /// Host names accepted in the `Host` header besides loopback and IP literals.
    pub allow_hosts: Vec<String>,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub max_event_bytes: usize,
    pub idle_timeout: Duration,
    /// Whether `GET /` and `/dashboard` serve the dashboard (`--no-dashboard`: 404).
    pub dashboard: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            max_connections: 10_000,
            max_subscriptions: 50,
            max_event_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(90),
            dashboard: true,
        }
    }
}

pub(crate) struct App {
    broker: Broker,
    cfg: ServerConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Connections over `--max-connections` being answered 429 / 4429 (see
    /// `conn`); the admitted ones are counted in `Stats::connections`.
    refusing: AtomicUsize,
}

type AppState = Arc<App>;

/// Serves until `shutdown` is cancelled, then closes every WebSocket with 1001 and
/// returns within [`SHUTDOWN_LIMIT`]. The caller flushes the broker afterwards.
///
/// # Errors
/// None today: accept errors (such as running out of file descriptors) are
/// retried after a pause.
pub async fn run(
    listener: TcpListener,
    broker: Broker,
    cfg: ServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Arc::new(App {
        broker,
        cfg,
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        refusing: AtomicUsize::new(0),
    });
    let mut router = Router::new();
    if app.cfg.dashboard {
        for path in crate::dashboard::PATHS {
            router = router.route(path, get(crate::dashboard::serve));
        }
    }
    let router = router
        .route("/ws", any(ws::upgrade))
        .route("/publish", post(http::publish))
        .route("/events", get(http::events))
        .route("/tasks", get(http::tasks))
        .route("/health", get(http::health))
        .route("/status", get(http::status))
        .route("/metrics", get(http::metrics))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            access::guard,
        ))
        .with_state(app.clone());
    let listener = read_ahead::ReadAheadListener(listener);
    let served = tokio::spawn(conn::accept_loop(
        listener,
        router,
        app.clone(),
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    // Plain HTTP connections finish the request in flight and close (long polls
    // watch the token too); WebSocket connections send 1001 and end.
    app.tracker.close();
    let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        app.tracker.wait().await;
        let _ = served.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not close in time; exiting anyway");
    }
    Ok(())
}

/// A JSON error answer: `{"code":..., "message":...}`.
pub(crate) fn error_response(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = serde_json::json!({"code": code.as_str(), "message": message.into()});
    (status, axum::Json(body)).into_response()
}
