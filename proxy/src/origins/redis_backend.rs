//! Redis backend: registry, stream ownership and sessions shared by every proxy replica.
//!
//! Every change is one Lua script (in `lua/`), so each pick or heartbeat is atomic and costs
//! one round trip; nothing reads a value, edits it and writes it back. Times come from the
//! Redis server clock (`TIME`), so replicas with skewed clocks still agree.
//!
//! # Redis restarting
//!
//! A pooled connection found dead (broken pipe, reset, closed: Redis restarted or a proxy in
//! between dropped it) is replaced by redis-rs and the call is sent once more on the new one,
//! within the same timeout; see [`RedisBalancer::call`] for why a replay is safe for each call.
//!
//! When Redis comes back *empty* (no persistence, `FLUSHALL`, failover to an empty node,
//! eviction), the registry is gone while the origins are alive, and would stay gone for each
//! origin until its own next heartbeat (SRS: 10 s by default). So that one heartbeat (or pick,
//! or lease renewal) is enough instead:
//!
//! - **Detection**: the key `{P}:epoch` holds the registry's generation, a string without expiry
//!   that `register.lua`, `pick.lua` and `renew.lua` create when it is missing (server time and a
//!   random number) and return on every call. Only a loss of data removes it, so a value other
//!   than the one this replica last saw means the registry was lost, whichever replica's call
//!   recreated it. It costs one `GET` inside scripts that run anyway: no extra round trip, no
//!   `INFO` (often disabled on managed Redis), and it works per hash slot on a cluster. An empty
//!   registry alone would not tell: it is also what a new deployment or forgotten origins look
//!   like.
//! - **Memory**: each replica keeps the last heartbeat of each origin it stored within the
//!   origin TTL ([`Heard`]: at most [`MAX_ORIGINS`] entries, summaries dropped from large ones).
//! - **Write-back**: on a new epoch the replica writes those origins back (`reseed.lua`) with the
//!   age they had, before it claims anything: an origin the registry already holds with a
//!   fresher heartbeat is left alone, so replicas may write back at once in any order. `pick.lua`
//!   and `renew.lua` take the caller's last epoch and claim nothing under a newer one (they answer
//!   `stale`), so no stream is placed elsewhere before its relaying replica has claimed it back;
//!   [`Origins`](super::Origins) then claims back its streams and picks again.
//!
//! Key layout under the prefix `P` (hash tag `{P}`: every key a script touches lies in one
//! Redis Cluster slot; the per-origin sets are derived inside scripts from the same tag):
//!
//! | key | type | content |
//! |---|---|---|
//! | `{P}:origins` | hash | server → origin JSON |
//! | `{P}:beats` | zset | server → last heartbeat (ms) |
//! | `{P}:incarnations` | hash | server → `service\npid` |
//! | `{P}:loads` | hash | server → load figure |
//! | `{P}:draining` | set | draining servers |
//! | `{P}:epoch` | string | registry generation (see above) |
//! | `{P}:owned:<server>` | zset | stream → lease expiry (ms) |
//! | `{P}:stream:<vhost/app/stream>` | string, PX lease | owner token `server\nservice\npid` |
//! | `P:session:<kind>:<id>` | string, PX ttl | session value (no tag: spreads over a cluster) |

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ::redis::{
    Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, ScriptInvocation,
    TlsCertificates, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
};
use async_trait::async_trait;
use rand::Rng;

use super::{
    Origin, StreamKey,
    balancer::{
        BackendError, Claim, ClaimKind, LoadBalancer, MAX_ORIGINS, OriginStatus, OwnerToken,
        PickError, Registered, StreamOwner, Timing,
    },
};

/// Leases renewed per script call; keeps one call's work (and Redis's pause) small.
const RENEW_BATCH: usize = 256;

/// Origins written back per script call, for the same reason.
const RESEED_BATCH: usize = 256;

/// A remembered origin whose JSON is larger than this is kept without its heartbeat
/// `summaries` (operators' figures, back with its next heartbeat): bounds the memory of
/// [`Heard`] to about `MAX_ORIGINS` times this.
const MAX_REMEMBERED_JSON: usize = 4 * 1024;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; for a cluster, one or more seed node URLs separated by commas.
    pub url: String,
    pub cluster: bool,
    /// Namespace for all keys, so several origin clusters can share one Redis.
    pub key_prefix: String,
    /// Bound on every Redis call, connecting included: a pick fails rather than hangs.
    pub timeout: Duration,
    /// PEM file of the CA that signed Redis's certificate (rediss:// with a private CA);
    /// `None` trusts the system store.
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("the key prefix {0:?} must be 1-64 letters, digits, `-`, `_` or `.`")]
    BadPrefix(String),
    #[error("cannot use Redis URL {url}: {cause}")]
    BadUrl { url: String, cause: String },
    #[error("cannot read the Redis CA file {path}: {cause}")]
    CaFile { path: String, cause: String },
}

pub struct RedisBalancer {
    connection: RedisConnection,
    keys: Keys,
    timing: Timing,
    timeout: Duration,
    scripts: Scripts,
    /// Origins stored through this replica within the origin TTL, to write back.
    heard: Mutex<Heard>,
    /// The registry epoch this replica last reconciled with; `None` before its first answer.
    epoch: Mutex<Option<String>>,
    /// One write-back at a time: callers noticing the same new epoch wait for the first.
    reconciling: tokio::sync::Mutex<()>,
    /// Registry losses this replica has reconciled ([`LoadBalancer::registry_restorations`]).
    restorations: AtomicU64,
}

struct Scripts {
    pick: Script,
    register: Script,
    remove: Script,
    renew: Script,
    reseed: Script,
    origins: Script,
    streams: Script,
}

/// The last heartbeat of each origin this replica stored, kept for the origin TTL (by this
/// replica's monotonic clock) so it can be written back when Redis loses the registry.
/// Bounded: at most [`MAX_ORIGINS`] entries (the registry's own limit), expired ones swept once
/// per TTL, each at most about [`MAX_REMEMBERED_JSON`] bytes.
struct Heard {
    ttl: Duration,
    entries: HashMap<String, HeardOrigin>,
    swept: Instant,
}

#[derive(Clone)]
struct HeardOrigin {
    origin: Origin,
    /// Discovery's draining flag, when this replica stated it.
    draining: bool,
    at: Instant,
}

impl Heard {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
            swept: Instant::now(),
        }
    }

    fn sweep(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries
            .retain(|_, heard| now.duration_since(heard.at) <= ttl);
        self.swept = now;
    }

    /// A stored heartbeat (`discovered: None`) or discovery refresh (`Some(draining)`), as
    /// register.lua stored it (`json_len`: the length of the JSON it stored): a refresh of the
    /// same incarnation at the same addresses keeps the heartbeat's figures.
    fn record(&mut self, origin: &Origin, json_len: usize, discovered: Option<bool>) {
        let now = Instant::now();
        if now.duration_since(self.swept) >= self.ttl {
            self.sweep(now);
        }
        if let Some(heard) = self.entries.get_mut(&origin.server) {
            if let Some(draining) = discovered {
                heard.draining = draining;
                if heard.origin.incarnation() == origin.incarnation()
                    && heard.origin.same_addresses(origin)
                {
                    heard.at = now;
                    return;
                }
            }
            heard.origin = remembered(origin, json_len);
            heard.at = now;
            return;
        }
        if self.entries.len() >= MAX_ORIGINS {
            self.sweep(now);
            if self.entries.len() >= MAX_ORIGINS {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, heard)| heard.at)
                    .map(|(server, _)| server.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(
            origin.server.clone(),
            HeardOrigin {
                origin: remembered(origin, json_len),
                draining: discovered.unwrap_or(false),
                at: now,
            },
        );
    }

    fn forget(&mut self, server: &str) {
        self.entries.remove(server);
    }

    fn set_draining(&mut self, server: &str, draining: bool) {
        if let Some(heard) = self.entries.get_mut(server) {
            heard.draining = draining;
        }
    }

    /// The origins heard within the TTL, but `except`, with their age.
    fn within_ttl(&self, except: Option<&str>) -> Vec<(HeardOrigin, Duration)> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(server, _)| Some(server.as_str()) != except)
            .map(|(_, heard)| (heard.clone(), now.duration_since(heard.at)))
            .filter(|(_, age)| *age <= self.ttl)
            .collect()
    }
}

/// `origin` (`json_len` bytes of JSON) as remembered: without its summaries when large.
fn remembered(origin: &Origin, json_len: usize) -> Origin {
    let mut origin = origin.clone();
    if json_len > MAX_REMEMBERED_JSON {
        origin.summaries = None;
    }
    origin
}

/// One Redis request, so [`RedisBalancer::call`] can send it again.
enum Request<'a> {
    Script(&'a ScriptInvocation<'a>),
    Command(&'a Cmd),
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(&self, connection: &mut RedisConnection) -> RedisResult<T> {
        match self {
            // EVALSHA, loading the script first when Redis does not know it (after a restart).
            Request::Script(invocation) => invocation.invoke_async(connection).await,
            Request::Command(cmd) => cmd.query_async(connection).await,
        }
    }
}

struct Keys {
    origins: String,
    beats: String,
    incarnations: String,
    loads: String,
    draining: String,
    epoch: String,
    owned_prefix: String,
    stream_prefix: String,
    session_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let tagged = format!("{{{prefix}}}");
        Self {
            origins: format!("{tagged}:origins"),
            beats: format!("{tagged}:beats"),
            incarnations: format!("{tagged}:incarnations"),
            loads: format!("{tagged}:loads"),
            draining: format!("{tagged}:draining"),
            epoch: format!("{tagged}:epoch"),
            owned_prefix: format!("{tagged}:owned:"),
            stream_prefix: format!("{tagged}:stream:"),
            session_prefix: format!("{prefix}:session:"),
        }
    }

    fn stream(&self, stream: &StreamKey) -> String {
        format!("{}{stream}", self.stream_prefix)
    }

    /// The registry keys, in the order the scripts expect them.
    fn registry(&self) -> [&str; 5] {
        [
            &self.origins,
            &self.beats,
            &self.incarnations,
            &self.loads,
            &self.draining,
        ]
    }
}

/// A single server (auto-reconnecting) or a cluster; the scripts run unchanged on both.
#[derive(Clone)]
enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Whether [`RedisBalancer::call`] sends a request again after a dropped connection.
    /// `ConnectionManager` hands the error back (and reconnects in the background), so yes.
    /// `ClusterConnection` already reconnects to the node and resends by itself (up to its
    /// `retries`, within our timeout): a second layer would only multiply attempts.
    fn retry_dropped(&self) -> bool {
        matches!(self, RedisConnection::Single(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

impl RedisBalancer {
    /// Prepares the connection without contacting Redis: the proxy starts (not ready) while
    /// Redis is down and connects when it comes up.
    pub fn new(settings: &RedisSettings, timing: Timing) -> Result<Self, RedisSetupError> {
        let prefix = &settings.key_prefix;
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_prefix {
            return Err(RedisSetupError::BadPrefix(prefix.clone()));
        }
        // rediss:// needs a process-wide rustls crypto provider; one may already be installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad_url = |cause: ::redis::RedisError| RedisSetupError::BadUrl {
            url: redact(&settings.url),
            cause: cause.to_string(),
        };
        let root_cert = match &settings.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|err| RedisSetupError::CaFile {
                path: path.display().to_string(),
                cause: err.to_string(),
            })?),
            None => None,
        };
        let connection = if settings.cluster {
            let nodes: Vec<&str> = settings
                .url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(settings.timeout)
                .response_timeout(settings.timeout);
            if let Some(root_cert) = root_cert {
                builder = builder.certs(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                });
            }
            let client = builder.build().map_err(bad_url)?;
            let config = ClusterConfig::new()
                .set_connection_timeout(settings.timeout)
                .set_response_timeout(settings.timeout);
            RedisConnection::Cluster(client.get_pending_async_connection_with_config(config))
        } else {
            let client = match root_cert {
                Some(root_cert) => ::redis::Client::build_with_tls(
                    settings.url.as_str(),
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                ),
                None => ::redis::Client::open(settings.url.as_str()),
            }
            .map_err(bad_url)?;
            // Few, quick reconnect attempts per request: while Redis is down a pick should fail
            // fast with a clear error; the next request tries again.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.timeout))
                .set_response_timeout(Some(settings.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            RedisConnection::Single(
                ConnectionManager::new_lazy_with_config(client, config).map_err(bad_url)?,
            )
        };
        Ok(Self {
            connection,
            keys: Keys::new(prefix),
            timing,
            timeout: settings.timeout,
            scripts: Scripts {
                pick: Script::new(concat!(
                    include_str!("lua/epoch.lua"),
                    include_str!("lua/pick.lua")
                )),
                register: Script::new(concat!(
                    include_str!("lua/epoch.lua"),
                    include_str!("lua/register.lua")
                )),
                remove: Script::new(include_str!("lua/remove.lua")),
                renew: Script::new(concat!(
                    include_str!("lua/epoch.lua"),
                    include_str!("lua/renew.lua")
                )),
                reseed: Script::new(include_str!("lua/reseed.lua")),
                origins: Script::new(include_str!("lua/origins.lua")),
                streams: Script::new(include_str!("lua/streams.lua")),
            },
            heard: Mutex::new(Heard::new(timing.origin_ttl)),
            epoch: Mutex::new(None),
            reconciling: tokio::sync::Mutex::new(()),
            restorations: AtomicU64::new(0),
        })
    }

    /// Runs one Redis request within the timeout, naming the operation in errors.
    ///
    /// A request that fails because the pooled connection was dead (Redis restarted, or the
    /// connection was reset or closed) is sent once more, on the connection redis-rs opened in
    /// its place, within the same timeout. Only such errors are retried: the request did not
    /// reach a live server, or if it did (reset after it ran), a replay is harmless for every
    /// request this backend sends:
    ///
    /// | request | on replay |
    /// |---|---|
    /// | register.lua (heartbeat, discovery refresh) | same writes again; the answer may read `refreshed` for `new` |
    /// | remove.lua, `SADD`/`SREM` draining | same end state; `remove` may answer "was not known" |
    /// | pick.lua | not idempotent (it claims), but a replay finds the first run's claim valid and answers `owned` with the same origin |
    /// | renew.lua | extends or claims back to the same tokens again |
    /// | reseed.lua | writes only what is missing or older |
    /// | `SET .. PX` / `PEXPIRE` sessions | same value, lifetime counted from the replay |
    /// | origins.lua, streams.lua, `GET`, `PING` | reads |
    ///
    /// A request that must not run twice (e.g. an `INCR`) must not go through here.
    /// Timeouts are never retried: the request may be running.
    async fn call<T: FromRedisValue>(
        &self,
        operation: &'static str,
        request: Request<'_>,
    ) -> Result<T, BackendError> {
        let attempts = async {
            match request.send(&mut self.connection.clone()).await {
                Err(err) if err.is_connection_dropped() && self.connection.retry_dropped() => {
                    tracing::info!(operation, error = %err, "the Redis connection was dropped; sending once more on a new one");
                    request.send(&mut self.connection.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(BackendError::Redis {
                operation,
                cause: err.to_string(),
            }),
            Err(_) => Err(BackendError::Timeout {
                operation,
                timeout: self.timeout,
            }),
        }
    }

    /// register.lua: a heartbeat (`discovered: None`) or a discovery refresh (`Some(draining)`).
    async fn store(
        &self,
        origin: &Origin,
        discovered: Option<bool>,
    ) -> Result<Registered, BackendError> {
        let mut origin = origin.clone();
        if discovered.is_none() {
            // This proxy's clock: the script keeps the JSON as given.
            origin.last_report_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
        }
        let origin = &origin;
        let json =
            serde_json::to_string(origin).map_err(|err| BackendError::Corrupt(err.to_string()))?;
        let json_len = json.len();
        let refresh = match discovered {
            None => "",
            Some(true) => "1",
            Some(false) => "0",
        };
        let mut invocation = self.scripts.register.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .key(&self.keys.epoch)
            .arg(&origin.server)
            .arg(json)
            .arg(origin.incarnation())
            .arg(origin.load)
            .arg(&self.keys.owned_prefix)
            .arg(Self::millis(self.timing.forget_after))
            .arg(MAX_ORIGINS)
            .arg(refresh)
            .arg(rand::rng().random::<u32>());
        let (outcome, _now, epoch): (String, i64, String) =
            self.call("register", Request::Script(&invocation)).await?;
        if let Err(err) = self.reconcile(&epoch, Some(&origin.server)).await {
            // This heartbeat is stored; the others come back with their own heartbeats.
            tracing::warn!(server = %origin.server, error = %err, "cannot write back the origins Redis lost");
        }
        let registered = match outcome.as_str() {
            "new" => Registered::New,
            "refreshed" => Registered::Refreshed,
            "restarted" => Registered::Restarted,
            "full" => return Err(BackendError::RegistryFull),
            other => {
                return Err(BackendError::Corrupt(format!(
                    "register script answered {other:?}"
                )));
            }
        };
        self.heard().record(origin, json_len, discovered);
        Ok(registered)
    }

    fn heard(&self) -> MutexGuard<'_, Heard> {
        self.heard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn known_epoch(&self) -> Option<String> {
        self.epoch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Adopts the registry epoch a script answered. A new one after another means Redis lost
    /// the registry: the origins this replica heard within the TTL (but `stored`, just written
    /// by the caller) are written back first. On failure the epoch is not adopted, so the next
    /// call tries again (and picks and renewals keep answering `stale` meanwhile).
    async fn reconcile(&self, epoch: &str, stored: Option<&str>) -> Result<(), BackendError> {
        if epoch.is_empty() || self.known_epoch().as_deref() == Some(epoch) {
            return Ok(());
        }
        let _turn = self.reconciling.lock().await;
        let previous = self.known_epoch();
        if previous.as_deref() == Some(epoch) {
            return Ok(());
        }
        let remembered = self.heard().within_ttl(stored);
        if !remembered.is_empty() {
            let written = self.reseed(&remembered).await?;
            tracing::warn!(
                epoch,
                previous_epoch = previous.as_deref().unwrap_or(""),
                server = stored,
                remembered = remembered.len(),
                written = written.len(),
                "Redis lost the origin registry (restarted empty?): wrote back the origins this replica heard within the origin TTL"
            );
        }
        *self.epoch.lock().unwrap_or_else(|p| p.into_inner()) = Some(epoch.to_owned());
        if previous.is_some() {
            self.restorations.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// reseed.lua over `remembered`, in batches; returns the servers written back.
    async fn reseed(
        &self,
        remembered: &[(HeardOrigin, Duration)],
    ) -> Result<Vec<String>, BackendError> {
        let mut written = Vec::new();
        for batch in remembered.chunks(RESEED_BATCH) {
            let mut invocation = self.scripts.reseed.prepare_invoke();
            invocation
                .key(&self.keys.registry()[..])
                .arg(&self.keys.owned_prefix)
                .arg(Self::millis(self.timing.origin_ttl))
                .arg(MAX_ORIGINS);
            for (heard, age) in batch {
                let origin = &heard.origin;
                let json = serde_json::to_string(origin)
                    .map_err(|err| BackendError::Corrupt(err.to_string()))?;
                invocation
                    .arg(&origin.server)
                    .arg(json)
                    .arg(origin.incarnation())
                    .arg(origin.load)
                    .arg(Self::millis(*age))
                    .arg(if heard.draining { "1" } else { "0" });
            }
            let servers: Vec<String> = self
                .call("write back origins", Request::Script(&invocation))
                .await?;
            for server in &servers {
                let age = batch
                    .iter()
                    .find(|(heard, _)| heard.origin.server == *server)
                    .map(|(_, age)| *age)
                    .unwrap_or_default();
                tracing::info!(server = %server, heard_ago = ?age, "origin written back into the registry");
            }
            written.extend(servers);
        }
        Ok(written)
    }

    fn millis(duration: Duration) -> u64 {
        duration.as_millis() as u64
    }
}

/// Keeps passwords out of error messages and logs.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://***{}", &one[..scheme_end], &one[at..])
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_origin(json: Option<&str>, beat: Option<&str>) -> Result<Origin, BackendError> {
    let json =
        json.ok_or_else(|| BackendError::Corrupt("an owner without a registry entry".into()))?;
    let mut origin: Origin = serde_json::from_str(json)
        .map_err(|err| BackendError::Corrupt(format!("origin record: {err}")))?;
    origin.last_heartbeat_ms = beat.and_then(|b| b.parse::<f64>().ok()).unwrap_or(0.0) as u64;
    Ok(origin)
}

fn parse_u64(text: &str, what: &str) -> Result<u64, BackendError> {
    text.parse::<f64>()
        .map(|value| value as u64)
        .map_err(|_| BackendError::Corrupt(format!("{what} {text:?} is not a number")))
}

#[async_trait]
impl LoadBalancer for RedisBalancer {
    async fn register(&self, origin: &Origin) -> Result<Registered, BackendError> {
        self.store(origin, None).await
    }

    async fn refresh_discovered(
        &self,
        origin: &Origin,
        draining: bool,
    ) -> Result<Registered, BackendError> {
        self.store(origin, Some(draining)).await
    }

    async fn remove_origin(&self, server: &str) -> Result<bool, BackendError> {
        // Gone for this replica too: never written back after a loss of the registry.
        self.heard().forget(server);
        let mut invocation = self.scripts.remove.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .arg(server)
            .arg(&self.keys.owned_prefix);
        let removed: i64 = self
            .call("remove origin", Request::Script(&invocation))
            .await?;
        Ok(removed > 0)
    }

    async fn set_draining(&self, server: &str, draining: bool) -> Result<(), BackendError> {
        let command = if draining { "SADD" } else { "SREM" };
        let mut cmd = ::redis::cmd(command);
        cmd.arg(&self.keys.draining).arg(server);
        self.call::<i64>("set draining", Request::Command(&cmd))
            .await?;
        self.heard().set_draining(server, draining);
        Ok(())
    }

    async fn origins(&self) -> Result<Vec<OriginStatus>, BackendError> {
        let mut invocation = self.scripts.origins.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .arg(&self.keys.owned_prefix);
        let reply: Vec<Option<String>> = self
            .call("list origins", Request::Script(&invocation))
            .await?;
        let (now, rows) = reply
            .split_first()
            .ok_or_else(|| BackendError::Corrupt("empty origin listing".into()))?;
        let now = parse_u64(now.as_deref().unwrap_or(""), "server time")?;
        let ttl = Self::millis(self.timing.origin_ttl);
        let mut list = Vec::with_capacity(rows.len() / 5);
        for row in rows.chunks_exact(5) {
            let origin = parse_origin(row[1].as_deref(), row[2].as_deref())?;
            list.push(OriginStatus {
                alive: now.saturating_sub(origin.last_heartbeat_ms) <= ttl,
                // The proxy that stored the heartbeat stamped it; cluster clocks agree to well
                // within a TTL.
                reporting: now.saturating_sub(origin.last_report_ms) <= ttl,
                draining: row[3].as_deref() == Some("1"),
                streams_owned: parse_u64(row[4].as_deref().unwrap_or(""), "owned count")?,
                origin,
            });
        }
        list.sort_by(|a, b| a.origin.server.cmp(&b.origin.server));
        Ok(list)
    }

    async fn pick(&self, stream: &StreamKey) -> Result<Claim, PickError> {
        let backend_error = |source| PickError::Backend {
            stream: stream.to_string(),
            source,
        };
        let mut invocation = self.scripts.pick.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .key(self.keys.stream(stream))
            .key(&self.keys.epoch)
            .arg(stream.to_string())
            .arg(Self::millis(self.timing.origin_ttl))
            .arg(Self::millis(self.timing.stream_lease))
            .arg(rand::rng().random::<u32>())
            .arg(&self.keys.owned_prefix)
            .arg(self.known_epoch().unwrap_or_default());
        let reply: Vec<Option<String>> = self
            .call("pick", Request::Script(&invocation))
            .await
            .map_err(backend_error)?;
        let field = |i: usize| reply.get(i + 1).and_then(Option::as_deref);
        let epoch = reply.first().and_then(Option::as_deref).unwrap_or_default();
        let reconciled = self.reconcile(epoch, None).await;
        let kind = match field(0) {
            // Nothing was claimed: the registry was lost since this replica's last epoch.
            // It is written back now; the caller claims back its streams and picks again.
            Some("stale") => {
                reconciled.map_err(backend_error)?;
                return Err(backend_error(BackendError::RegistryRestored));
            }
            Some("none") => {
                return Err(PickError::NoOrigin {
                    stream: stream.to_string(),
                    ttl: self.timing.origin_ttl,
                });
            }
            Some("owned") => ClaimKind::Owned,
            Some("new") => ClaimKind::New,
            Some("failover") => ClaimKind::Failover {
                previous: field(4).unwrap_or_default().to_owned(),
            },
            other => {
                return Err(backend_error(BackendError::Corrupt(format!(
                    "pick script answered {other:?}"
                ))));
            }
        };
        if let Err(err) = reconciled {
            // A live owner is valid in any epoch; the write-back is tried again next call.
            tracing::warn!(stream = %stream, error = %err, "cannot write back the origins Redis lost");
        }
        let owner = OwnerToken(field(1).unwrap_or_default().to_owned());
        let origin = parse_origin(field(2), field(3)).map_err(backend_error)?;
        Ok(Claim {
            origin,
            kind,
            owner,
        })
    }

    async fn renew(
        &self,
        leases: &[(StreamKey, OwnerToken)],
    ) -> Result<Vec<StreamKey>, BackendError> {
        let mut lost = Vec::new();
        for batch in leases.chunks(RENEW_BATCH) {
            let mut positions = None;
            // A `stale` answer touched nothing: write back the lost registry, then once more.
            for _ in 0..2 {
                let mut invocation = self.scripts.renew.prepare_invoke();
                invocation
                    .key(&self.keys.incarnations)
                    .key(&self.keys.epoch)
                    .arg(Self::millis(self.timing.stream_lease))
                    .arg(&self.keys.owned_prefix)
                    .arg(self.known_epoch().unwrap_or_default())
                    .arg(rand::rng().random::<u32>());
                for (stream, owner) in batch {
                    invocation
                        .key(self.keys.stream(stream))
                        .arg(stream.to_string())
                        .arg(&owner.0);
                }
                let reply: (String, String, Vec<usize>) = self
                    .call("renew leases", Request::Script(&invocation))
                    .await?;
                self.reconcile(&reply.0, None).await?;
                if reply.1 == "ok" {
                    positions = Some(reply.2);
                    break;
                }
            }
            // Stale twice: Redis lost its data again meanwhile; the next renewal tries again.
            let positions = positions.ok_or(BackendError::RegistryRestored)?;
            lost.extend(
                positions
                    .into_iter()
                    .filter_map(|n| batch.get(n.wrapping_sub(1)))
                    .map(|(s, _)| s.clone()),
            );
        }
        Ok(lost)
    }

    async fn streams(&self) -> Result<Vec<StreamOwner>, BackendError> {
        let mut invocation = self.scripts.streams.prepare_invoke();
        invocation
            .key(&self.keys.origins)
            .arg(&self.keys.owned_prefix);
        let reply: Vec<String> = self
            .call("list streams", Request::Script(&invocation))
            .await?;
        let mut list = reply
            .chunks_exact(3)
            .map(|row| {
                Ok(StreamOwner {
                    stream: row[0].clone(),
                    origin: row[1].clone(),
                    lease_expires_ms: parse_u64(&row[2], "lease expiry")?,
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        list.sort_by(|a, b| a.stream.cmp(&b.stream));
        Ok(list)
    }

    async fn put_session(
        &self,
        kind: &str,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{}{kind}:{id}", self.keys.session_prefix))
            .arg(value)
            .arg("PX")
            .arg(Self::millis(ttl).max(1));
        self.call("store session", Request::Command(&cmd)).await
    }

    async fn get_session(&self, kind: &str, id: &str) -> Result<Option<String>, BackendError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(format!("{}{kind}:{id}", self.keys.session_prefix));
        self.call("read session", Request::Command(&cmd)).await
    }

    async fn touch_session(
        &self,
        kind: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let mut cmd = ::redis::cmd("PEXPIRE");
        cmd.arg(format!("{}{kind}:{id}", self.keys.session_prefix))
            .arg(Self::millis(ttl).max(1));
        self.call("extend session", Request::Command(&cmd)).await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let cmd = ::redis::cmd("PING");
        self.call::<String>("ping", Request::Command(&cmd))
            .await
            .map(|_| ())
    }

    fn registry_restorations(&self) -> u64 {
        self.restorations.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("live");
        let stream = StreamKey::new(None, "app", "s").unwrap();
        for key in keys.registry().iter().map(|k| k.to_string()).chain([
            keys.stream(&stream),
            keys.owned_prefix.clone(),
            keys.epoch.clone(),
        ]) {
            assert!(key.starts_with("{live}:"), "{key}");
        }
        assert!(!keys.session_prefix.contains('{'));
    }

    fn heartbeat(server: &str, pid: u32, load: f64) -> Origin {
        let body = serde_json::json!({
            "ip": "127.0.0.1", "server": server, "service": "svc", "pid": pid.to_string(),
            "rtmp": ["19350"], "summaries": {"self": {"cpu_percent": load}},
        });
        super::super::parse_heartbeat(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn heard_origins_stay_within_the_registry_limit() {
        let mut heard = Heard::new(Duration::from_secs(60));
        for i in 0..MAX_ORIGINS + 10 {
            heard.record(&heartbeat(&format!("o{i}"), 1, 0.0), 200, None);
        }
        assert_eq!(heard.entries.len(), MAX_ORIGINS);
        assert!(heard.entries.contains_key(&format!("o{}", MAX_ORIGINS + 9)));
        assert_eq!(heard.within_ttl(Some("o5000")).len(), MAX_ORIGINS);
    }

    #[test]
    fn heard_origins_expire_after_the_ttl() {
        let mut heard = Heard::new(Duration::from_millis(30));
        heard.record(&heartbeat("a", 1, 0.0), 200, None);
        assert_eq!(heard.within_ttl(None).len(), 1);
        assert!(
            heard.within_ttl(Some("a")).is_empty(),
            "the caller's own is left out"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(heard.within_ttl(None).is_empty());
        heard.record(&heartbeat("b", 1, 0.0), 200, None);
        assert_eq!(heard.entries.len(), 1, "expired entries are swept");
    }

    #[test]
    fn heard_origins_follow_what_register_lua_stores() {
        let mut heard = Heard::new(Duration::from_secs(60));
        heard.record(&heartbeat("a", 1, 42.0), 200, None);
        // A discovery refresh of the same incarnation keeps the heartbeat's figures.
        let mut discovered = heartbeat("a", 1, 0.0);
        discovered.summaries = None;
        heard.record(&discovered, 200, Some(true));
        assert_eq!(heard.entries["a"].origin.load, 42.0);
        assert!(heard.entries["a"].draining);
        // A new incarnation replaces it; the draining flag stays until discovery changes it.
        heard.record(&heartbeat("a", 2, 7.0), 200, None);
        assert_eq!(heard.entries["a"].origin.pid, "2");
        assert!(heard.entries["a"].draining);
        heard.set_draining("a", false);
        assert!(!heard.entries["a"].draining);
        heard.forget("a");
        assert!(heard.entries.is_empty());
    }

    #[test]
    fn large_summaries_are_not_remembered() {
        let mut heard = Heard::new(Duration::from_secs(60));
        let mut big = heartbeat("big", 1, 3.0);
        big.summaries = Some(serde_json::json!({"pad": "x".repeat(MAX_REMEMBERED_JSON)}));
        let json_len = |origin: &Origin| serde_json::to_vec(origin).unwrap().len();
        heard.record(&big, json_len(&big), None);
        let small = heartbeat("small", 1, 3.0);
        heard.record(&small, json_len(&small), None);
        let big = &heard.entries["big"].origin;
        assert!(big.summaries.is_none());
        assert_eq!(big.load, 3.0, "the load figure stays");
        assert!(heard.entries["small"].origin.summaries.is_some());
    }

    #[test]
    fn passwords_redacted() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://u:p@a:1,redis://b:2"),
            "rediss://***@a:1,redis://b:2"
        );
        assert_eq!(redact("redis://host"), "redis://host");
    }
}
