//! The exit codes of SPEC §4, in one table, and the mapping from the library's errors
//! to them. Every client command ends through [`code_for`] (or returns one of these
//! constants directly), so a script can rely on the same number meaning the same
//! thing in `hub-emit`, `hub-sub` and `hub-tail`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success; also a closed stdout (`hub-sub \| head -1`) |
//! | 1    | a watched task failed, a condition says failure, or an unexpected error |
//! | 2    | usage or bad input (also a malformed `--lines`/`--events` line) |
//! | 3    | the hub was unreachable within `--timeout` (or dropped with `--no-reconnect`) |
//! | 4    | refused by the hub: auth, limits, an invalid or too large event |
//! | 124  | `--timeout` expired (as `timeout(1)`) |
//!
//! `hub-emit --run` exits with the wrapped command's own code instead.

use crate::client::ClientError;
use crate::event::EventError;
use crate::matching::MatchError;

/// Success.
pub const OK: u8 = 0;
/// A watched task failed, a condition says failure, or an error that fits no other code.
pub const FAILURE: u8 = 1;
/// Usage or bad input.
pub const USAGE: u8 = 2;
/// The hub could not be reached within `--timeout`.
pub const UNREACHABLE: u8 = 3;
/// The hub refused: auth, limits, invalid event.
pub const REFUSED: u8 = 4;
/// `--timeout` expired.
pub const TIMEOUT: u8 = 124;

/// An error that already carries its exit code (for conditions found by a command
/// itself, such as a malformed input line).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }

    /// Usage or bad input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Exit::new(USAGE, message)
    }
}

/// The code for a [`ClientError`].
pub fn code_for_client(err: &ClientError) -> u8 {
    match err {
        ClientError::Usage(_) | ClientError::InvalidEvent(_) => USAGE,
        ClientError::Unreachable { .. } | ClientError::Disconnected { .. } => UNREACHABLE,
        ClientError::Refused { .. } => REFUSED,
        ClientError::Closed => FAILURE,
    }
}

/// True when a closed stdout (or any broken pipe) caused this error: that ends a
/// command quietly with 0, as `head` expects.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code for an error that ends a command. Walks the error chain: a broken
/// pipe anywhere is success; the first typed error decides; anything else is 1.
pub fn code_for(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return OK;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return code_for_client(e);
        }
        if cause.downcast_ref::<EventError>().is_some()
            || cause.downcast_ref::<MatchError>().is_some()
            || cause.downcast_ref::<clap::Error>().is_some()
        {
            return USAGE;
        }
    }
    FAILURE
}

/// Prints `PROGRAM: ERROR` on stderr (unless it is a broken pipe) and returns the
/// exit code. The one place a client command reports the error that ends it.
pub fn report(program: &str, err: &anyhow::Error) -> u8 {
    let code = code_for(err);
    if !is_broken_pipe(err) {
        eprintln!("{program}: {err:#}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn broken_pipe_anywhere_is_success() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed");
        let err = anyhow::Error::from(io).context("writing to stdout");
        assert_eq!(code_for(&err), OK);
        let r: Result<(), std::io::Error> = Err(std::io::ErrorKind::Other.into());
        assert_eq!(code_for(&r.context("x").unwrap_err()), FAILURE);
    }

    #[test]
    fn client_errors_map_to_spec_codes() {
        let unreachable = ClientError::Unreachable {
            url: "ws://127.0.0.1:1/ws".into(),
            cause: "connection refused".into(),
            waited: std::time::Duration::from_secs(10),
        };
        assert_eq!(
            code_for(&anyhow::Error::from(unreachable).context("publishing")),
            UNREACHABLE
        );
        let refused = ClientError::Refused {
            url: "ws://h/ws".into(),
            code: "unauthorized".into(),
            message: "missing token".into(),
        };
        assert_eq!(code_for(&refused.into()), REFUSED);
        assert_eq!(
            code_for(&anyhow::Error::from(Exit::new(TIMEOUT, "timed out"))),
            TIMEOUT
        );
        let bad = crate::event::validate_topic("a b").unwrap_err();
        assert_eq!(code_for(&bad.into()), USAGE);
    }
}
