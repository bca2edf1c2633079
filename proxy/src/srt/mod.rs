//! SRT through the proxy (`PROXY_SRT_SERVER`, UDP).
//!
//! The proxy is the SRT listener the client sees and an SRT caller towards the origin:
//!
//! ```text
//! client ── induction ──►  proxy answers itself with a SYN cookie (no state kept)
//! client ── conclusion ─►  proxy checks the cookie, reads the stream id, resolves the origin,
//!                          then, from a backend UDP socket of its own for this session:
//!                            ── induction ──► origin ── cookie ──►
//!                            ── conclusion (the client's extensions) ──► origin ── answer ──►
//! client ◄─ conclusion ──  the origin's answer, with the proxy's socket id
//! then every datagram is relayed with its destination socket id translated.
//! ```
//!
//! Sequence numbers, timestamps, ACKs and retransmissions stay end to end between client and
//! origin; the proxy only rewrites the header's destination socket id. The two handshakes carry
//! timestamps on the clock of the peer they stand for, because libsrt derives its TSBPD time
//! base from the handshake's timestamp.
//!
//! Modules: [`packet`], [`handshake`], [`streamid`] and [`cookie`] are pure codecs; the
//! listener loop and the per-session tasks do the I/O.

pub mod cookie;
pub mod handshake;
mod listener;
pub mod packet;
mod session;
pub mod streamid;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use futures::future::BoxFuture;

pub use listener::serve;
pub use streamid::{StreamId, StreamIdError};

use handshake::RejectReason;

/// Finds the origin that owns a stream; implemented by the proxy core (stream ownership).
pub trait OriginResolver: Send + Sync + 'static {
    /// The origin that serves `stream` (publish or play, as the stream id says).
    fn resolve<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>>;
}

/// Where a session goes, and what keeps the stream assigned there.
pub struct ResolvedOrigin {
    /// The origin's SRT listener.
    pub addr: SocketAddr,
    /// Held for the session's lifetime and dropped when it ends (e.g. a stream lease).
    pub guard: Box<dyn Send + Sync>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No origin can take the stream now (none registered, or none with an SRT port).
    #[error("no origin with an SRT port is available for {stream}")]
    NoOrigin { stream: String },
    /// The stream may not be used this way (e.g. already published elsewhere).
    #[error("{stream} is refused: {reason}")]
    Refused { stream: String, reason: String },
    /// The ownership store failed (e.g. Redis unreachable).
    #[error("looking up the origin of {stream} failed: {source}")]
    Backend {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ResolveError {
    /// What the SRT client is told.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::NoOrigin { .. } => RejectReason::DOWN,
            Self::Refused { .. } => RejectReason::FORBIDDEN,
            Self::Backend { .. } => RejectReason::INTERNAL_ERROR,
        }
    }
}

/// Counters of the SRT relay (read by metrics and tests).
#[derive(Debug, Default)]
pub struct SrtStats {
    /// Sessions relaying or connecting now.
    pub sessions_active: AtomicU64,
    /// Sessions ever accepted (conclusion with a valid cookie and stream id).
    pub sessions_total: AtomicU64,
    /// Handshakes refused (any reason, including origins that refused).
    pub rejected: AtomicU64,
    /// Of those, refused because the caller's IP already had its most sessions.
    pub refused_per_client: AtomicU64,
    /// Datagrams that were not SRT, or not for any session of their sender.
    pub garbage: AtomicU64,
    /// Datagrams dropped because a session's queue was full.
    pub queue_drops: AtomicU64,
    /// Datagrams relayed client → origin and origin → client.
    pub to_origin: AtomicU64,
    pub to_client: AtomicU64,
    /// Bytes of those datagrams, each way.
    pub bytes_to_origin: AtomicU64,
    pub bytes_to_client: AtomicU64,
}

impl SrtStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Stream ownership from the proxy core. `r=live/sub/cam` names the same stream as
/// `/live/sub/cam.flv` over HTTP: app `live/sub`, stream `cam`.
impl OriginResolver for crate::origins::Origins {
    fn resolve<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            let path = format!("{}/{}", stream.app, stream.stream);
            let name = format!(
                "{}/{path}",
                stream
                    .vhost
                    .as_deref()
                    .unwrap_or(crate::origins::DEFAULT_VHOST)
            );
            let key = crate::origins::StreamKey::from_path(stream.vhost.as_deref(), &path)
                .map_err(|err| ResolveError::Refused {
                    stream: name.clone(),
                    reason: err.to_string(),
                })?;
            let lease = self.lease(&key).await.map_err(|err| match err {
                crate::origins::PickError::NoOrigin { .. } => ResolveError::NoOrigin {
                    stream: key.to_string(),
                },
                other => ResolveError::Backend {
                    stream: key.to_string(),
                    source: Box::new(other),
                },
            })?;
            let addr = lease
                .origin()
                .endpoint(crate::origins::Protocol::Srt)
                .ok_or_else(|| ResolveError::NoOrigin {
                    stream: key.to_string(),
                })?;
            Ok(ResolvedOrigin {
                addr,
                guard: Box::new(lease),
            })
        })
    }
}
