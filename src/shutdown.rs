//! The one shutdown path: SIGINT or SIGTERM cancels a [`CancellationToken`] that
//! every long-running loop selects on.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. The handlers are installed
/// before this returns, so a signal that arrives right after (say, just after
/// systemd was told the hub is ready) is never lost to the default action.
///
/// Must be called inside a tokio runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        tokio::spawn(async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            t.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}
