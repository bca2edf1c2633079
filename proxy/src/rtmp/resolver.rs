//! What the RTMP session needs from stream ownership: the origin that owns a stream, and a
//! lease that keeps the ownership while the session lives. The proxy core implements this on
//! top of its origin registry; the RTMP layer depends on nothing more.

use std::net::SocketAddr;

use futures::future::BoxFuture;

use super::stream_key::RtmpStreamKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Publish,
    Play,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Publish => "publish",
            Intent::Play => "play",
        }
    }
}

/// The origin chosen for a session.
pub struct ResolvedOrigin {
    /// The origin's RTMP endpoint.
    pub rtmp: SocketAddr,
    /// The origin's lasting identity (its `server`), for logs and reports.
    pub server: String,
    /// Held for the session's whole life: while it lives the stream's ownership is renewed,
    /// dropping it releases the ownership.
    pub lease: Box<dyn Send>,
}

impl std::fmt::Debug for ResolvedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedOrigin")
            .field("rtmp", &self.rtmp)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no origin is available")]
    NoOrigin,
    #[error("the stream name is not valid: {0}")]
    InvalidStream(String),
    #[error("stream ownership lookup failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub trait OriginResolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        key: &'a RtmpStreamKey,
        intent: Intent,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>>;

    /// `origin`, resolved for `key`, could not be reached (`error`): ownership may take it
    /// out of rotation before the session resolves once more. The default does nothing.
    fn report_unreachable<'a>(
        &'a self,
        _key: &'a RtmpStreamKey,
        _origin: &'a ResolvedOrigin,
        _error: &'a std::io::Error,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Stream ownership from the proxy core: the lease of the stream's owner, kept for the session.
impl OriginResolver for crate::origins::Origins {
    fn resolve<'a>(
        &'a self,
        key: &'a RtmpStreamKey,
        _intent: Intent,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            let stream = crate::origins::StreamKey::new(Some(&key.vhost), &key.app, &key.stream)
                .map_err(|err| ResolveError::InvalidStream(err.to_string()))?;
            let lease = self.lease(&stream).await.map_err(|err| match err {
                crate::origins::PickError::NoOrigin { .. } => ResolveError::NoOrigin,
                other => ResolveError::Backend(Box::new(other)),
            })?;
            let rtmp = lease
                .origin()
                .endpoint(crate::origins::Protocol::Rtmp)
                .ok_or(ResolveError::NoOrigin)?;
            Ok(ResolvedOrigin {
                rtmp,
                server: lease.origin().server.clone(),
                lease: Box::new(lease),
            })
        })
    }

    /// A refused connection means the origin process is gone: out of the registry at once.
    /// Timeouts and other errors may be this proxy's own network trouble, so they wait for
    /// the heartbeat TTL.
    fn report_unreachable<'a>(
        &'a self,
        _key: &'a RtmpStreamKey,
        origin: &'a ResolvedOrigin,
        error: &'a std::io::Error,
    ) -> BoxFuture<'a, ()> {
        let refused = error.kind() == std::io::ErrorKind::ConnectionRefused;
        let server = origin.server.clone();
        Box::pin(async move {
            if refused {
                self.origin_refused(&server).await;
            }
        })
    }
}
