//! The HTTP/1.1 accept loop every HTTP listener of the proxy shares (streaming, system API,
//! WHIP/WHEP API), with the same defences: a deadline for the request head (slowloris), a cap
//! on the head's size and on connections open at once, and the proxy's drain rules.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_io_timeout::TimeoutStream;

use super::direct::{self, Shortcut};
use crate::{config::HttpConfig, lifecycle::Lifecycle};

/// Both ends of a client's TCP connection: who it is and which proxy address it reached
/// (WebRTC answers name that address when no public one is configured). Routers find it in
/// the request extensions as `ConnectInfo<Connection>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub client: SocketAddr,
    pub local: SocketAddr,
}

/// Bounds of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A client must send each request head within this time, or the connection is closed.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Request heads larger than this are refused by hyper with 431.
    pub max_head_bytes: usize,
    /// A connection whose writes make no progress for this long is closed (a client that
    /// stopped reading a body that never ends); `None`: no limit.
    pub write_timeout: Option<Duration>,
}

impl HttpLimits {
    /// HTTP streaming (`PROXY_HTTP_SERVER`).
    pub fn streaming(config: &HttpConfig) -> Self {
        Self {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
            write_timeout: Some(config.write_timeout),
            ..Default::default()
        }
    }

    /// The WHIP/WHEP API: offers are small, so its connection cap is the system API's.
    pub fn api(config: &HttpConfig) -> Self {
        Self::system(config)
    }

    /// The system API (`PROXY_SYSTEM_API`).
    pub fn system(config: &HttpConfig) -> Self {
        Self {
            header_timeout: config.header_timeout,
            max_connections: config.system_max_connections,
            ..Default::default()
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_head_bytes: 16 * 1024,
            write_timeout: None,
        }
    }
}

/// How a listener takes part in shutdown.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Client sessions (streaming, signalling): accepting stops when the proxy drains, drain
    /// waits for open connections, and they are ended when the grace period is over.
    Sessions,
    /// Probes, metrics and registration: they must keep answering while the proxy drains
    /// (readiness says 503 then), so they accept until the grace period is over.
    Control,
}

/// Serves `handler` on `listener` until the proxy shuts down, as `role` says.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    what: &'static str,
    limits: HttpLimits,
    role: Role,
    lifecycle: Lifecycle,
    handler: H,
) where
    H: Fn(Request<Incoming>, Connection) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with_shortcut(listener, what, limits, role, lifecycle, handler, None).await;
}

/// [`serve`], answering the first request of a connection through `shortcut` when it takes
/// it (see [`direct`]).
pub async fn serve_with_shortcut<H, F, B>(
    listener: TcpListener,
    what: &'static str,
    limits: HttpLimits,
    role: Role,
    lifecycle: Lifecycle,
    handler: H,
    shortcut: Option<Arc<dyn Shortcut>>,
) where
    H: Fn(Request<Incoming>, Connection) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop_accepting = match role {
        Role::Sessions => lifecycle.draining().clone(),
        Role::Control => lifecycle.terminate().clone(),
    };
    loop {
        let (stream, client) = tokio::select! {
            _ = stop_accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = what, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(listener = what, client = %client, limit = limits.max_connections, "too many connections, closing this one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = Connection {
            client,
            local: stream.local_addr().unwrap_or(client),
        };
        let handler = handler.clone();
        let shortcut = shortcut.clone();
        let terminate = lifecycle.terminate().clone();
        let connection = async move {
            let _slot = slot;
            let served = async {
                let stream = match &shortcut {
                    Some(shortcut) => match direct::serve(
                        stream,
                        client,
                        limits.header_timeout,
                        limits.write_timeout,
                        &**shortcut,
                    )
                    .await
                    {
                        Some(stream) => stream,
                        None => return,
                    },
                    None => stream,
                };
                // Boxed: a directly served connection's task does not carry hyper's state.
                Box::pin(serve_hyper(stream, peer, what, limits, handler)).await;
            };
            tokio::select! {
                _ = served => {}
                _ = terminate.cancelled() => {}
            }
        };
        match role {
            Role::Sessions => {
                lifecycle.spawn_session(connection);
            }
            Role::Control => {
                tokio::spawn(connection);
            }
        }
    }
    tracing::info!(listener = what, "stopped accepting");
}

async fn serve_hyper<H, F, B>(
    stream: tokio::net::TcpStream,
    peer: Connection,
    what: &'static str,
    limits: HttpLimits,
    handler: Arc<H>,
) where
    H: Fn(Request<Incoming>, Connection) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handler(req, peer);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    // hyper has no write timeout: the stream enforces it (a body that never ends is not
    // polled while its client reads nothing, so nothing else would notice).
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(limits.write_timeout);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes)
        .serve_connection(TokioIo::new(Box::pin(stream)), service);
    if let Err(err) = connection.await {
        tracing::debug!(listener = what, client = %peer.client, error = %err, "HTTP connection ended with an error");
    }
}

/// Serves an axum `router` with [`serve`]; handlers may extract `ConnectInfo<Connection>`.
pub async fn serve_router(
    listener: TcpListener,
    what: &'static str,
    limits: HttpLimits,
    role: Role,
    lifecycle: Lifecycle,
    router: axum::Router,
) {
    use futures::FutureExt;
    use tower::ServiceExt;
    serve(listener, what, limits, role, lifecycle, move |req, peer| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(req).map(|answer| match answer {
            Ok(response) => response,
            Err(never) => match never {},
        })
    })
    .await;
}
