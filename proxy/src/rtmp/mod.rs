//! RTMP: clients publish and play through the proxy; each session is relayed to the origin
//! that owns its stream.
//!
//! Codecs are pure and fuzzed ([`handshake`], [`chunk`], [`amf0`], [`control`], [`command`],
//! [`stream_key`]); I/O lives in [`connection`], [`origin`], [`session`] and [`relay`].

pub mod amf0;
pub mod chunk;
pub mod command;
pub mod connection;
pub mod control;
pub mod handshake;
pub mod origin;
pub mod relay;
pub mod resolver;
pub mod session;
pub mod stream_key;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
};

pub use self::{
    resolver::{Intent, OriginResolver, ResolveError, ResolvedOrigin},
    stream_key::RtmpStreamKey,
};
use crate::{config::RtmpConfig, lifecycle::Lifecycle};

/// Bounds on what one client may cost.
#[derive(Debug, Clone)]
pub struct RtmpLimits {
    /// Handshake, commands, origin resolution and the origin's setup must finish within this.
    pub handshake_timeout: Duration,
    /// A relay with no bytes in either direction (or a peer not reading) for this long ends.
    pub idle_timeout: Duration,
    /// Largest RTMP message accepted from a client or an origin.
    pub max_message_size: u32,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl RtmpLimits {
    /// The `PROXY_RTMP_*` settings.
    pub fn from_config(config: &RtmpConfig) -> Self {
        Self {
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            max_message_size: config.max_message_size,
            max_connections: config.max_connections,
        }
    }
}

impl Default for RtmpLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_message_size: 8 * 1024 * 1024,
            max_connections: 10_000,
        }
    }
}

impl RtmpLimits {
    pub fn decoder_limits(&self) -> chunk::DecoderLimits {
        chunk::DecoderLimits {
            max_message_size: self.max_message_size,
            ..Default::default()
        }
    }
}

/// Relayed sessions by intent and relayed bytes, counted by the sessions themselves (per
/// session, bytes in batches; never per message) and read by the proxy's metrics at scrape
/// time. An SRS edge's pull is a play.
#[derive(Debug, Default)]
pub struct RtmpStats {
    pub publish: IntentCounters,
    pub play: IntentCounters,
    /// Client connections held now, from accept to close (handshaking ones included).
    pub connections: AtomicU64,
    /// `PROXY_RTMP_MAX_CONNECTIONS` of the listener: more are closed on accept.
    pub connections_limit: AtomicU64,
    /// Bytes relayed each way, added by the relays in batches.
    pub bytes: relay::RelayBytes,
}

#[derive(Debug, Default)]
pub struct IntentCounters {
    /// Sessions relaying to an origin now.
    pub active: AtomicU64,
    /// Sessions that reached an origin and started relaying.
    pub total: AtomicU64,
}

impl RtmpStats {
    pub fn of(&self, intent: Intent) -> &IntentCounters {
        match intent {
            Intent::Publish => &self.publish,
            Intent::Play => &self.play,
        }
    }

    /// Counts a session as relaying until the returned guard is dropped.
    pub(crate) fn relaying(self: &Arc<Self>, intent: Intent) -> RelayingGuard {
        let counters = self.of(intent);
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.total.fetch_add(1, Ordering::Relaxed);
        RelayingGuard {
            stats: self.clone(),
            intent,
        }
    }
}

/// A client connection's place under the connection limit; counted while it lives.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<RtmpStats>,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<RtmpStats>) -> Self {
        stats.connections.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            stats,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct RelayingGuard {
    stats: Arc<RtmpStats>,
    intent: Intent,
}

impl Drop for RelayingGuard {
    fn drop(&mut self) {
        self.stats
            .of(self.intent)
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts RTMP clients until the proxy drains; every session is tracked by `lifecycle` and
/// told to stop when the grace period ends.
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<dyn OriginResolver>,
    limits: RtmpLimits,
    stats: Arc<RtmpStats>,
    lifecycle: Lifecycle,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    stats
        .connections_limit
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let limits = Arc::new(limits);
    loop {
        let accepted = tokio::select! {
            _ = lifecycle.draining().cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, client) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "RTMP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(client = %client, limit = limits.max_connections, "too many RTMP connections, closing this one");
            continue;
        };
        lifecycle.spawn_session(session::run(
            socket,
            client,
            resolver.clone(),
            limits.clone(),
            stats.clone(),
            lifecycle.terminate().clone(),
            ConnectionSlot::new(slot, stats.clone()),
        ));
    }
    tracing::info!("RTMP listener stopped accepting");
}
