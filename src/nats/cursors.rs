//! Durable cursors (`hub-sub --durable NAME`) shared by every node: KV bucket
//! `hub_cursors`, one key per cursor, the last id as decimal text.
//!
//! The bucket's stream is made with `allow_direct: false`, so a get is answered by
//! the stream leader and sees every put acknowledged before it (a direct get may be
//! answered by a follower a few ms behind). Last writer wins, as with `cursors.json`.
//!
//! KV keys take only `[-/_=.A-Za-z0-9]`, so [`kv_key`] writes every other byte, and
//! `.` and `=` themselves, as `=XX` (`ci:nightly` is `ci=3Anightly`).

use super::{NatsError, error_chain};
use async_nats::jetstream::kv;

/// The KV key of a cursor (or stream) name: bytes outside `[A-Za-z0-9_/-]` as `=XX`
/// (upper-case hex), so that different names never share a key.
pub fn kv_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The cursors in KV bucket `hub_cursors` (from [`super::JsStore::cursors`]).
pub struct KvCursors {
    kv: kv::Store,
    urls: String,
}

impl KvCursors {
    pub(crate) fn new(kv: kv::Store, urls: String) -> KvCursors {
        KvCursors { kv, urls }
    }

    fn err(&self, what: &'static str, e: &dyn std::error::Error) -> NatsError {
        NatsError::Request {
            urls: self.urls.clone(),
            what,
            cause: error_chain(e),
        }
    }

    fn key(name: &str) -> Result<String, NatsError> {
        if name.is_empty() {
            return Err(NatsError::Config("a cursor name cannot be empty".into()));
        }
        Ok(kv_key(name))
    }

    /// The cursor's id, `None` when there is no such cursor.
    ///
    /// # Errors
    /// The server did not answer, or the value is not an id.
    pub async fn get(&self, name: &str) -> Result<Option<u64>, NatsError> {
        let key = Self::key(name)?;
        let Some(v) = self
            .kv
            .get(&key)
            .await
            .map_err(|e| self.err("reading a durable cursor", &e))?
        else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&v).ok().map(str::trim);
        match text.and_then(|t| t.parse().ok()) {
            Some(id) => Ok(Some(id)),
            None => Err(NatsError::Request {
                urls: self.urls.clone(),
                what: "reading a durable cursor",
                cause: format!("key {key:?} of bucket hub_cursors holds {v:?}, not an id"),
            }),
        }
    }

    /// Sets the cursor (creating it when new).
    ///
    /// # Errors
    /// The server did not acknowledge the put.
    pub async fn set(&self, name: &str, id: u64) -> Result<(), NatsError> {
        let key = Self::key(name)?;
        self.kv
            .put(&key, id.to_string().into_bytes().into())
            .await
            .map_err(|e| self.err("writing a durable cursor", &e))?;
        Ok(())
    }

    /// Creates the cursor at `id` unless it exists: `false` when another node (or an
    /// earlier run) made it first, so there is no race between two nodes.
    ///
    /// # Errors
    /// The server did not answer.
    pub async fn create(&self, name: &str, id: u64) -> Result<bool, NatsError> {
        let key = Self::key(name)?;
        match self
            .kv
            .create(&key, id.to_string().into_bytes().into())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.err("creating a durable cursor", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped() {
        assert_eq!(kv_key("ci:nightly"), "ci=3Anightly");
        assert_eq!(kv_key("a.b"), "a=2Eb");
        assert_eq!(kv_key("a=2Eb"), "a=3D2Eb");
        assert_eq!(kv_key("HUB"), "HUB");
        assert_eq!(kv_key("x/y_z-1"), "x/y_z-1");
        assert_eq!(kv_key("é *>"), "=C3=A9=20=2A=3E");
    }
}
