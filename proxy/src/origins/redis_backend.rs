//! Redis backend: registry, stream ownership and sessions shared by every proxy replica.
//!
//! Every change is one Lua script (in `lua/`), so each pick or heartbeat is atomic and costs
//! one round trip; nothing reads a value, edits it and writes it back. Times come from the
//! Redis server clock (`TIME`), so replicas with skewed clocks still agree.
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
//! | `{P}:owned:<server>` | zset | stream → lease expiry (ms) |
//! | `{P}:stream:<vhost/app/stream>` | string, PX lease | owner token `server\nservice\npid` |
//! | `P:session:<kind>:<id>` | string, PX ttl | session value (no tag: spreads over a cluster) |

use std::{future::Future, time::Duration};

use ::redis::{
    Cmd, Pipeline, RedisFuture, RedisResult, Script, TlsCertificates, Value,
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
}

struct Scripts {
    pick: Script,
    register: Script,
    remove: Script,
    renew: Script,
    origins: Script,
    streams: Script,
}

struct Keys {
    origins: String,
    beats: String,
    incarnations: String,
    loads: String,
    draining: String,
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
                pick: Script::new(include_str!("lua/pick.lua")),
                register: Script::new(include_str!("lua/register.lua")),
                remove: Script::new(include_str!("lua/remove.lua")),
                renew: Script::new(include_str!("lua/renew.lua")),
                origins: Script::new(include_str!("lua/origins.lua")),
                streams: Script::new(include_str!("lua/streams.lua")),
            },
        })
    }

    /// Runs one Redis call within the timeout, naming the operation in errors.
    async fn call<T, F>(
        &self,
        operation: &'static str,
        call: impl FnOnce(RedisConnection) -> F,
    ) -> Result<T, BackendError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call(self.connection.clone())).await {
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

    /// register.lua: a heartbeat (`refresh` empty) or a discovery refresh (`"0"`/`"1"`: the
    /// draining flag).
    async fn store(&self, origin: &Origin, refresh: &str) -> Result<Registered, BackendError> {
        let json =
            serde_json::to_string(origin).map_err(|err| BackendError::Corrupt(err.to_string()))?;
        let mut invocation = self.scripts.register.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .arg(&origin.server)
            .arg(json)
            .arg(origin.incarnation())
            .arg(origin.load)
            .arg(&self.keys.owned_prefix)
            .arg(Self::millis(self.timing.forget_after))
            .arg(MAX_ORIGINS)
            .arg(refresh);
        let reply: (String, i64) = self
            .call("register", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        match reply.0.as_str() {
            "new" => Ok(Registered::New),
            "refreshed" => Ok(Registered::Refreshed),
            "restarted" => Ok(Registered::Restarted),
            "full" => Err(BackendError::RegistryFull),
            other => Err(BackendError::Corrupt(format!(
                "register script answered {other:?}"
            ))),
        }
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
        self.store(origin, "").await
    }

    async fn refresh_discovered(
        &self,
        origin: &Origin,
        draining: bool,
    ) -> Result<Registered, BackendError> {
        self.store(origin, if draining { "1" } else { "0" }).await
    }

    async fn remove_origin(&self, server: &str) -> Result<bool, BackendError> {
        let mut invocation = self.scripts.remove.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .arg(server)
            .arg(&self.keys.owned_prefix);
        let removed: i64 = self
            .call("remove origin", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(removed > 0)
    }

    async fn set_draining(&self, server: &str, draining: bool) -> Result<(), BackendError> {
        let command = if draining { "SADD" } else { "SREM" };
        let mut cmd = ::redis::cmd(command);
        cmd.arg(&self.keys.draining).arg(server);
        self.call("set draining", |mut c| async move {
            cmd.query_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    async fn origins(&self) -> Result<Vec<OriginStatus>, BackendError> {
        let mut invocation = self.scripts.origins.prepare_invoke();
        invocation
            .key(&self.keys.registry()[..])
            .arg(&self.keys.owned_prefix);
        let reply: Vec<Option<String>> = self
            .call("list origins", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
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
            .arg(stream.to_string())
            .arg(Self::millis(self.timing.origin_ttl))
            .arg(Self::millis(self.timing.stream_lease))
            .arg(rand::rng().random::<u32>())
            .arg(&self.keys.owned_prefix);
        let reply: Vec<Option<String>> = self
            .call("pick", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await
            .map_err(backend_error)?;
        let field = |i: usize| reply.get(i).and_then(Option::as_deref);
        let kind = match field(0) {
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
            let mut invocation = self.scripts.renew.prepare_invoke();
            invocation
                .key(&self.keys.incarnations)
                .arg(Self::millis(self.timing.stream_lease))
                .arg(&self.keys.owned_prefix);
            for (stream, owner) in batch {
                invocation
                    .key(self.keys.stream(stream))
                    .arg(stream.to_string())
                    .arg(&owner.0);
            }
            let positions: Vec<usize> = self
                .call("renew leases", |mut c| async move {
                    invocation.invoke_async(&mut c).await
                })
                .await?;
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
            .call("list streams", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
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
        self.call("store session", |mut c| async move {
            cmd.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn get_session(&self, kind: &str, id: &str) -> Result<Option<String>, BackendError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(format!("{}{kind}:{id}", self.keys.session_prefix));
        self.call("read session", |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await
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
        self.call("extend session", |mut c| async move {
            cmd.query_async::<bool>(&mut c).await
        })
        .await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let cmd = ::redis::cmd("PING");
        self.call("ping", |mut c| async move {
            cmd.query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("live");
        let stream = StreamKey::new(None, "app", "s").unwrap();
        for key in keys
            .registry()
            .iter()
            .map(|k| k.to_string())
            .chain([keys.stream(&stream), keys.owned_prefix.clone()])
        {
            assert!(key.starts_with("{live}:"), "{key}");
        }
        assert!(!keys.session_prefix.contains('{'));
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
