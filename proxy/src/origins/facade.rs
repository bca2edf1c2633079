//! [`Origins`]: what protocol code and the system API call. It wraps a [`LoadBalancer`] with
//! lease bookkeeping (renew while sessions live, let go a grace period after the last ends),
//! metrics and input checks.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    Origin, StreamKey, Vhosts,
    balancer::{
        BackendError, Claim, ClaimKind, LoadBalancer, OriginStatus, OwnerToken, PickError,
        Registered, StreamOwner, Timing,
    },
    metrics::OriginsMetrics,
};

/// Session ids come from clients (ICE ufrags) or from us (HLS ids); bound what is stored.
const MAX_SESSION_ID_LEN: usize = 256;
const MAX_SESSION_VALUE_LEN: usize = 64 * 1024;

/// Bound on the readiness probe's backend check, well under Kubernetes' probe timeout.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared registry, ownership and session store as protocol code sees it.
pub struct Origins {
    backend: Arc<dyn LoadBalancer>,
    timing: Timing,
    metrics: OriginsMetrics,
    /// Which vhosts own their streams apart; any other is the default vhost's.
    vhosts: Vhosts,
    leases: Arc<LeaseTable>,
    /// The backend's [`LoadBalancer::registry_restorations`] this proxy has claimed back after.
    restorations_seen: AtomicU64,
}

/// Streams this proxy holds sessions on, with the owner token to renew.
struct LeaseTable {
    entries: Mutex<HashMap<StreamKey, LocalLease>>,
    /// The last holder of a stream dropped its lease: renew once more so the grace period
    /// starts now, then stop.
    released: mpsc::UnboundedSender<StreamKey>,
    /// An origin (re)appeared in the registry, e.g. after Redis restarted empty: renew now so
    /// the streams relayed to it are claimed back before a pick places them elsewhere.
    renew_now: tokio::sync::Notify,
}

struct LocalLease {
    holders: usize,
    owner: OwnerToken,
    /// Logged once when a renewal finds the stream moved elsewhere.
    lost: bool,
}

impl LeaseTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, LocalLease>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The streams sessions hold now, with their owner token.
    fn held(&self) -> Vec<(StreamKey, OwnerToken)> {
        self.lock()
            .iter()
            .filter(|(_, lease)| lease.holders > 0)
            .map(|(stream, lease)| (stream.clone(), lease.owner.clone()))
            .collect()
    }

    /// Notes streams a renewal reported lost (logged once per owner).
    fn mark_lost(&self, lost: Vec<StreamKey>) {
        let mut entries = self.lock();
        for stream in lost {
            if let Some(lease) = entries.get_mut(&stream)
                && lease.holders > 0
                && !lease.lost
            {
                lease.lost = true;
                tracing::warn!(stream = %stream, origin = %lease.owner.server(), "stream lease lost: its owner changed or it expired; running sessions continue");
            }
        }
    }
}

/// Ownership of a stream held by one client session. While any lease on a stream lives in this
/// proxy, the stream's ownership is renewed; when the last is dropped, ownership ends a grace
/// period (the stream lease time) later unless someone takes a new lease.
pub struct StreamLease {
    stream: StreamKey,
    origin: Origin,
    kind: ClaimKind,
    table: Arc<LeaseTable>,
}

impl StreamLease {
    pub fn stream(&self) -> &StreamKey {
        &self.stream
    }

    /// The origin that owns the stream: relay the session there.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether the stream was already owned, newly claimed or moved from a dead origin.
    pub fn kind(&self) -> &ClaimKind {
        &self.kind
    }
}

impl std::fmt::Debug for StreamLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLease")
            .field("stream", &self.stream.to_string())
            .field("origin", &self.origin.server)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let mut entries = self.table.lock();
        if let Some(entry) = entries.get_mut(&self.stream) {
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                // The renewer may be gone at shutdown; the lease then simply expires.
                let _ = self.table.released.send(self.stream.clone());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "session id is empty, longer than {MAX_SESSION_ID_LEN} bytes or holds control characters"
    )]
    BadId,
    #[error("session value is larger than {MAX_SESSION_VALUE_LEN} bytes")]
    ValueTooLarge,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why the proxy is not ready for new sessions.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the load balancer backend is unreachable: {0}")]
    Backend(BackendError),
    #[error("the load balancer backend did not answer within {PING_TIMEOUT:?}")]
    Timeout,
}

impl Origins {
    /// Starts the lease renewer (it stops when the returned `Origins` is dropped). The origins
    /// configure no vhost besides the default one.
    pub fn new(
        backend: Arc<dyn LoadBalancer>,
        timing: Timing,
        metrics: OriginsMetrics,
    ) -> Arc<Self> {
        Self::with_vhosts(backend, timing, metrics, Vhosts::default())
    }

    /// As [`Origins::new`], for origins that configure `vhosts`.
    pub fn with_vhosts(
        backend: Arc<dyn LoadBalancer>,
        timing: Timing,
        metrics: OriginsMetrics,
        vhosts: Vhosts,
    ) -> Arc<Self> {
        let (released, released_rx) = mpsc::unbounded_channel();
        let origins = Arc::new(Self {
            backend,
            timing,
            metrics,
            vhosts,
            leases: Arc::new(LeaseTable {
                entries: Mutex::default(),
                released,
                renew_now: tokio::sync::Notify::new(),
            }),
            restorations_seen: AtomicU64::new(0),
        });
        tokio::spawn(renew_leases(Arc::downgrade(&origins), released_rx));
        origins
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Finds the origin that owns `stream`, claiming one when needed, and holds the ownership
    /// for as long as the returned lease lives (plus the grace period).
    pub async fn lease(&self, stream: &StreamKey) -> Result<StreamLease, PickError> {
        let stream = &*self.vhosts.owner_key(stream);
        let started = Instant::now();
        let mut result = self.backend.pick(stream).await;
        if matches!(
            result,
            Err(PickError::Backend {
                source: BackendError::RegistryRestored,
                ..
            })
        ) {
            // The backend found the registry lost and wrote back what it knew, claiming
            // nothing: claim back the streams relayed from here first, so this pick cannot
            // place one of them elsewhere, then pick again.
            self.claim_back_if_restored().await;
            result = self.backend.pick(stream).await;
        } else {
            self.claim_back_if_restored().await;
        }
        self.metrics
            .record_pick(result.as_ref().map(|claim| &claim.kind), started.elapsed());
        let Claim {
            mut origin,
            kind,
            owner,
        } = result?;
        // A lease lives as long as its session and needs the origin's identity and addresses,
        // not the heartbeat's figures: a thousand sessions would hold a thousand copies.
        origin.summaries = None;
        match &kind {
            ClaimKind::Failover { previous } => {
                tracing::info!(stream = %stream, from = %previous, to = %origin.server, "stream moved to a live origin");
            }
            ClaimKind::New => {
                tracing::debug!(stream = %stream, origin = %origin.server, "stream claimed")
            }
            ClaimKind::Owned => {}
        }
        {
            let mut entries = self.leases.lock();
            let entry = entries.entry(stream.clone()).or_insert_with(|| LocalLease {
                holders: 0,
                owner: owner.clone(),
                lost: false,
            });
            entry.holders += 1;
            if entry.owner != owner {
                entry.owner = owner;
                entry.lost = false;
            }
        }
        Ok(StreamLease {
            stream: stream.clone(),
            origin,
            kind,
            table: self.leases.clone(),
        })
    }

    pub async fn register(&self, origin: &Origin) -> Result<Registered, BackendError> {
        let outcome = self.backend.register(origin).await?;
        // Before answering: a player arriving right after this heartbeat finds its stream.
        self.claim_back_if_restored().await;
        match outcome {
            Registered::New => {
                tracing::info!(server = %origin.server, ip = %origin.ip, "origin registered");
                self.leases.renew_now.notify_one();
            }
            Registered::Restarted => {
                tracing::info!(server = %origin.server, service = %origin.service, pid = %origin.pid, "origin restarted; its streams were released");
            }
            Registered::Refreshed => tracing::trace!(server = %origin.server, "heartbeat"),
        }
        Ok(outcome)
    }

    /// For discovery: states an origin it sees, alive and draining or not, keeping the load
    /// figures heartbeats add (see [`LoadBalancer::refresh_discovered`]).
    pub async fn refresh_discovered(
        &self,
        origin: &Origin,
        draining: bool,
    ) -> Result<Registered, BackendError> {
        let outcome = self.backend.refresh_discovered(origin, draining).await?;
        self.claim_back_if_restored().await;
        if outcome == Registered::New {
            // As for a heartbeat: claim back what sessions still relay to it (Redis restarted).
            self.leases.renew_now.notify_one();
        }
        Ok(outcome)
    }

    /// When the backend has written back a lost registry since this was last asked (Redis
    /// restarted empty), claims back at once the streams this proxy's sessions relay: they
    /// stay on the origins that carry them. The periodic renewal would do it too, up to a third
    /// of the lease time later, after picks could have placed them elsewhere.
    async fn claim_back_if_restored(&self) {
        let restorations = self.backend.registry_restorations();
        if self
            .restorations_seen
            .fetch_max(restorations, Ordering::AcqRel)
            >= restorations
        {
            return;
        }
        let held = self.leases.held();
        if held.is_empty() {
            return;
        }
        match self.backend.renew(&held).await {
            Ok(lost) => {
                tracing::info!(
                    streams = held.len(),
                    lost = lost.len(),
                    "claimed back the streams relayed from here after Redis lost the registry"
                );
                self.leases.mark_lost(lost);
            }
            Err(err) => {
                tracing::warn!(error = %err, streams = held.len(), "cannot claim back stream leases after Redis lost the registry; the periodic renewal tries again");
            }
        }
    }

    /// For discovery: the origin is gone; its streams move on their next pick.
    pub async fn remove_origin(&self, server: &str) -> Result<bool, BackendError> {
        self.backend.remove_origin(server).await
    }

    /// A connection to origin `server` was refused: nothing listens on its port, so its process is
    /// gone (a live SRS accepts and refuses at protocol level instead). Takes it out of the
    /// registry now rather than after its heartbeat TTL, so its streams move on their next
    /// pick; its next heartbeat, if one comes, brings it back. Returns whether it was removed.
    pub async fn origin_refused(&self, server: &str) -> bool {
        match self.backend.remove_origin(server).await {
            Ok(removed) => {
                if removed {
                    self.metrics.origin_refused();
                    tracing::warn!(
                        server,
                        "origin refused a connection: out of the registry until it heartbeats again"
                    );
                }
                removed
            }
            Err(err) => {
                tracing::warn!(server, error = %err, "cannot take a refusing origin out of the registry");
                false
            }
        }
    }

    /// For discovery: a draining origin keeps its streams and takes no new ones.
    pub async fn set_draining(&self, server: &str, draining: bool) -> Result<(), BackendError> {
        self.backend.set_draining(server, draining).await
    }

    /// The registry, refreshing the registry gauges on the way.
    pub async fn origins(&self) -> Result<Vec<OriginStatus>, BackendError> {
        let result = self.backend.origins().await;
        self.metrics.set_registry(result.as_deref().ok());
        result
    }

    pub async fn streams(&self) -> Result<Vec<StreamOwner>, BackendError> {
        self.backend.streams().await
    }

    /// Stores state a follow-up request may need on any replica (`kind`: e.g. `"hls"`,
    /// `"rtc-ufrag"`; a fixed name chosen by the protocol module).
    pub async fn put_session(
        &self,
        kind: &str,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        check_session_id(id)?;
        if value.len() > MAX_SESSION_VALUE_LEN {
            return Err(SessionError::ValueTooLarge);
        }
        Ok(self.backend.put_session(kind, id, value, ttl).await?)
    }

    /// A session stored by any replica, `None` when unknown or expired.
    pub async fn get_session(&self, kind: &str, id: &str) -> Result<Option<String>, SessionError> {
        check_session_id(id)?;
        Ok(self.backend.get_session(kind, id).await?)
    }

    /// Extends a stored session to `ttl` from now, value untouched; `false` when it is gone.
    pub async fn touch_session(
        &self,
        kind: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        check_session_id(id)?;
        Ok(self.backend.touch_session(kind, id, ttl).await?)
    }

    /// Ready when the backend answers now.
    pub async fn check_ready(&self) -> Result<(), NotReady> {
        let result = match tokio::time::timeout(PING_TIMEOUT, self.backend.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(NotReady::Backend(err)),
            Err(_) => Err(NotReady::Timeout),
        };
        if result.is_err() {
            self.metrics.set_registry(None);
        }
        result
    }

    /// Heartbeats a fixed origin (`PROXY_DEFAULT_BACKEND_*`) for as long as the proxy runs.
    pub fn keep_registered(self: &Arc<Self>, origin: Origin) -> tokio::task::JoinHandle<()> {
        let origins = Arc::downgrade(self);
        let every = (self.timing.origin_ttl / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            let mut failing = false;
            loop {
                ticker.tick().await;
                let Some(origins) = origins.upgrade() else {
                    return;
                };
                match origins.register(&origin).await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!(server = %origin.server, "default backend registered again");
                    }
                    Ok(_) => {}
                    Err(err) if !failing => {
                        failing = true;
                        tracing::warn!(server = %origin.server, error = %err, "cannot register the default backend");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

fn check_session_id(id: &str) -> Result<(), SessionError> {
    if id.is_empty() || id.len() > MAX_SESSION_ID_LEN || id.chars().any(char::is_control) {
        return Err(SessionError::BadId);
    }
    Ok(())
}

/// Renews held leases every third of the lease time, and once more right after the last holder
/// of a stream lets go (then forgets it).
async fn renew_leases(origins: Weak<Origins>, mut released: mpsc::UnboundedReceiver<StreamKey>) {
    let Some(every) = origins
        .upgrade()
        .map(|o| (o.timing.stream_lease / 3).max(Duration::from_millis(50)))
    else {
        return;
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let Some(table) = origins.upgrade().map(|o| o.leases.clone()) else {
            return;
        };
        let let_go: Vec<StreamKey> = tokio::select! {
            _ = ticker.tick() => Vec::new(),
            _ = table.renew_now.notified() => Vec::new(),
            first = released.recv() => {
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while let Ok(more) = released.try_recv() {
                    batch.push(more);
                }
                batch
            }
        };
        let Some(origins) = origins.upgrade() else {
            return;
        };
        let batch: Vec<(StreamKey, OwnerToken)> = if let_go.is_empty() {
            origins.leases.held()
        } else {
            let entries = origins.leases.lock();
            let_go
                .iter()
                .filter_map(|stream| {
                    entries
                        .get(stream)
                        .map(|lease| (stream.clone(), lease.owner.clone()))
                })
                .collect()
        };
        if !batch.is_empty() {
            match origins.backend.renew(&batch).await {
                Ok(lost) => {
                    failing = false;
                    origins.leases.mark_lost(lost);
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, streams = batch.len(), "cannot renew stream leases");
                }
                Err(_) => {}
            }
        }
        if !let_go.is_empty() {
            let mut entries = origins.leases.lock();
            for stream in let_go {
                if entries.get(&stream).is_some_and(|lease| lease.holders == 0) {
                    entries.remove(&stream);
                }
            }
        }
    }
}
