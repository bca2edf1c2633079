//! The load-balancer contract both backends (memory, Redis) fulfil identically; the shared
//! test suite in `proxy/tests/load_balancer.rs` runs every rule below against each.
//!
//! Rules:
//! - An origin is *alive* while its last heartbeat is at most `origin_ttl` old and its
//!   incarnation (`service`/`pid`) is the one the registry holds.
//! - A stream's owner is valid while its lease has not expired and the owner is alive in the
//!   incarnation that claimed it. A draining owner keeps its streams.
//! - Picking a stream with a valid owner returns that owner (and renews the lease when less
//!   than half of it is left; holders renew it anyway). Otherwise the
//!   live, non-draining origins are ranked by fewest owned streams, then lowest load figure;
//!   equal ranks are broken at random; the winner is claimed in one atomic step.
//! - Renewing extends a lease its holder still has; a stream nobody holds any more (its lease
//!   ran out, or Redis restarted empty) is claimed back for the holder's owner if that owner is
//!   registered in the same incarnation, because the holder's sessions still relay there. A
//!   stream another owner took meanwhile is reported lost.
//! - A heartbeat with a new incarnation for a known `server` drops every stream it owned.
//! - Discovery states the origins it sees with [`LoadBalancer::refresh_discovered`]: any
//!   number of replicas may state the same origin. While the registry holds that `server` in
//!   the same incarnation at the same addresses, a refresh only extends liveness and sets the
//!   draining flag, so the load figures a heartbeat stored are kept; otherwise it stores the
//!   origin as a heartbeat would.
//! - Origins silent for `forget_after` leave the registry; at most [`MAX_ORIGINS`] are kept.
//! - A backend whose store can lose its data (Redis restarting empty) writes back, when it
//!   finds the registry lost, the origins it stored within `origin_ttl` with the age they had,
//!   and claims no stream for anyone until it has (a pick answers
//!   [`BackendError::RegistryRestored`]); [`LoadBalancer::registry_restorations`] counts these
//!   losses so the caller claims back the streams it relays before picking again.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::{Origin, StreamKey};

/// The registry refuses new origins beyond this many, so registrations with made-up names
/// cannot grow it without bound.
pub const MAX_ORIGINS: usize = 4096;

/// The times every backend works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// An origin without a heartbeat for this long is dead.
    pub origin_ttl: Duration,
    /// How long a stream stays owned after the last renewal.
    pub stream_lease: Duration,
    /// A dead origin is dropped from the registry after this much silence.
    pub forget_after: Duration,
}

impl Timing {
    /// Lease and forgetting derived from the origin TTL: a stream outlives a publisher's quick
    /// reconnect, a dead origin stays visible to operators for a while.
    pub fn from_origin_ttl(origin_ttl: Duration) -> Self {
        Self {
            origin_ttl,
            stream_lease: origin_ttl,
            forget_after: (origin_ttl * 10).max(Duration::from_secs(300)),
        }
    }
}

/// What a heartbeat did to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registered {
    /// A server the registry did not know.
    New,
    /// A known server in the same incarnation.
    Refreshed,
    /// A known server with a new `service`/`pid`: its streams were released.
    Restarted,
}

/// The owner of a stream as stored by the backend: server and incarnation. Renewals compare it,
/// so a replica never extends a lease another replica has moved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerToken(pub(crate) String);

impl OwnerToken {
    pub(crate) fn new(origin: &Origin) -> Self {
        Self(format!("{}\n{}", origin.server, origin.incarnation()))
    }

    pub fn server(&self) -> &str {
        self.0
            .split_once('\n')
            .map_or(self.0.as_str(), |(server, _)| server)
    }
}

/// How a pick found its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKind {
    /// The stream already had a live owner.
    Owned,
    /// The stream had no owner (or its lease had run out).
    New,
    /// The previous owner (named) was dead, restarted, removed or drained away.
    Failover { previous: String },
}

/// The answer to a pick.
#[derive(Debug, Clone)]
pub struct Claim {
    pub origin: Origin,
    pub kind: ClaimKind,
    pub owner: OwnerToken,
}

/// An origin as listed by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct OriginStatus {
    #[serde(flatten)]
    pub origin: Origin,
    pub alive: bool,
    /// Its own heartbeat arrived within the origin TTL (see [`Origin::last_report_ms`]).
    pub reporting: bool,
    pub draining: bool,
    pub streams_owned: u64,
}

/// A stream with a current lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamOwner {
    pub stream: String,
    pub origin: String,
    pub lease_expires_ms: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("Redis {operation} failed: {cause}")]
    Redis {
        operation: &'static str,
        cause: String,
    },
    #[error("Redis did not answer {operation} within {timeout:?}")]
    Timeout {
        operation: &'static str,
        timeout: Duration,
    },
    #[error(
        "Redis returned data this proxy cannot read ({0}); does another program write under the same key prefix?"
    )]
    Corrupt(String),
    #[error(
        "the registry already holds {MAX_ORIGINS} origins; remove dead ones or raise the limit"
    )]
    RegistryFull,
    #[error(
        "Redis had lost the origin registry (restarted empty?); the origins this replica heard within the origin TTL were written back and nothing was claimed: try again"
    )]
    RegistryRestored,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PickError {
    #[error(
        "no live origin can take stream {stream}: none heartbeated within {ttl:?}, or all are draining"
    )]
    NoOrigin { stream: String, ttl: Duration },
    #[error("cannot pick an origin for stream {stream}: {source}")]
    Backend {
        stream: String,
        #[source]
        source: BackendError,
    },
}

/// Where registry, stream ownership and session state live. Implementations must follow the
/// rules in this module's documentation; they are shared by all proxy replicas using the same
/// store.
#[async_trait]
pub trait LoadBalancer: Send + Sync + 'static {
    /// Stores a heartbeat (the backend stamps `last_heartbeat_ms` with its own clock).
    async fn register(&self, origin: &Origin) -> Result<Registered, BackendError>;

    /// Discovery's word that it sees `origin` (and whether it is draining); see the module rules.
    /// Idempotent: several replicas refreshing the same origin leave it as one refresh does.
    async fn refresh_discovered(
        &self,
        origin: &Origin,
        draining: bool,
    ) -> Result<Registered, BackendError>;

    /// Forgets an origin and its streams (discovery saw it go). Returns whether it was known.
    async fn remove_origin(&self, server: &str) -> Result<bool, BackendError>;

    /// A draining origin keeps the streams it owns but takes no new ones.
    async fn set_draining(&self, server: &str, draining: bool) -> Result<(), BackendError>;

    async fn origins(&self) -> Result<Vec<OriginStatus>, BackendError>;

    /// Returns the stream's live owner, or claims one atomically (see the module rules).
    async fn pick(&self, stream: &StreamKey) -> Result<Claim, PickError>;

    /// Extends the leases still held by `owner` (claiming back streams nobody holds); returns
    /// the streams whose lease was lost (moved to another origin, or the owner restarted or
    /// left the registry).
    async fn renew(
        &self,
        leases: &[(StreamKey, OwnerToken)],
    ) -> Result<Vec<StreamKey>, BackendError>;

    /// Streams with a current lease and their owner.
    async fn streams(&self) -> Result<Vec<StreamOwner>, BackendError>;

    /// Stores follow-up state (HLS playback id, ICE ufrag) that any replica may need.
    async fn put_session(
        &self,
        kind: &str,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), BackendError>;

    async fn get_session(&self, kind: &str, id: &str) -> Result<Option<String>, BackendError>;

    /// Extends a stored session's lifetime to `ttl` from now without rewriting its value (so
    /// it cannot undo a concurrent update); `false` when it is unknown or expired.
    async fn touch_session(
        &self,
        kind: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, BackendError>;

    /// Succeeds when the backend can serve requests now.
    async fn ping(&self) -> Result<(), BackendError>;

    /// How many times this backend has found its store had lost the registry and written back
    /// the origins it remembered (see the module rules). When it grows, the caller claims back
    /// the streams its sessions relay ([`LoadBalancer::renew`]) before it picks again. Stores
    /// that cannot lose their data (memory) stay at 0.
    fn registry_restorations(&self) -> u64 {
        0
    }
}
