//! OriginStack proxy: accepts every client protocol, finds the origin that owns the stream
//! and relays the bytes.
//!
//! Protocol modules get a [`Proxy`] (shared state) and serve one listener each:
//! `mod rtmp;` with `pub async fn serve(listener, proxy: Proxy)`, spawned from [`run`]. They
//! take a [`origins::StreamLease`] per session from `proxy.origins` (see [`origins`]) and
//! spawn sessions with `proxy.lifecycle.spawn_session` so shutdown waits for them.

pub mod api;
pub mod config;
pub mod discovery;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod origins;
pub mod rtmp;
pub mod srt;
pub mod telemetry;
pub mod udp;
pub mod webrtc;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    discovery::Discovery,
    lifecycle::Lifecycle,
    metrics::Metrics,
    origins::{Origins, Timing},
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every listener shares.
#[derive(Clone)]
pub struct Proxy {
    pub config: Arc<Config>,
    pub origins: Arc<Origins>,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Lifecycle,
    /// Kubernetes discovery of origins (off unless PROXY_K8S_DISCOVERY=on; the watch is
    /// started by [`run`]).
    pub discovery: Arc<Discovery>,
}

impl Proxy {
    /// Builds the shared state (the load balancer backend is connected lazily). Needs a Tokio
    /// runtime: the lease renewer starts here.
    pub fn new(config: Config, lifecycle: Lifecycle) -> anyhow::Result<Self> {
        let mut timing = Timing::from_origin_ttl(config.origin_ttl);
        if let Some(lease) = config.stream_lease {
            timing.stream_lease = lease;
        }
        let backend = origins::backend_from_config(&config, timing)
            .context("cannot set up the load balancer backend")?;
        let discovery = Discovery::new(&config.discovery)?;
        let metrics = Arc::new(Metrics::new());
        let origins = Origins::new(backend, timing, metrics.clone());
        Ok(Self {
            config: Arc::new(config),
            origins,
            metrics,
            lifecycle,
            discovery,
        })
    }
}

/// Runs the proxy until SIGTERM/SIGINT, then drains as configured.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let lifecycle = Lifecycle::new(config.grace_quit_timeout, config.force_quit_timeout);
    let proxy = Proxy::new(config, lifecycle.clone())?;
    tracing::info!(backend = ?proxy.config.load_balancer_type, origin_ttl = ?proxy.config.origin_ttl, "load balancer ready");

    if proxy.config.default_backend.enabled {
        let origin = origins::default_backend_origin(&proxy.config.default_backend)
            .context("PROXY_DEFAULT_BACKEND_* does not describe a usable origin")?;
        tracing::info!(ip = %origin.ip, rtmp = ?origin.endpoints.rtmp, "default backend enabled");
        proxy.origins.keep_registered(origin);
    }

    if proxy.discovery.enabled() {
        discovery::start(proxy.discovery.clone(), proxy.origins.clone())
            .await
            .context("cannot start Kubernetes discovery of origins (PROXY_K8S_DISCOVERY=on)")?;
    }

    let system_listener = bind(proxy.config.system_api, "the system API").await?;
    api::warn_if_open(&proxy);
    let system = tokio::spawn(api::serve(system_listener, proxy.clone()));

    let rtmp_listener = bind(proxy.config.rtmp_server, "RTMP").await?;
    let resolver: Arc<dyn rtmp::OriginResolver> = proxy.origins.clone();
    tokio::spawn(rtmp::serve(
        rtmp_listener,
        resolver,
        proxy.config.rtmp.limits(),
        lifecycle.clone(),
    ));

    let srt_socket = tokio::net::UdpSocket::bind(proxy.config.srt_server.0)
        .await
        .with_context(|| format!("cannot listen for SRT on {}", proxy.config.srt_server))?;
    tracing::info!(addr = %srt_socket.local_addr()?, "SRT listening");
    let srt_resolver: Arc<dyn srt::OriginResolver> = proxy.origins.clone();
    tokio::spawn(srt::serve(
        srt_socket,
        srt_resolver,
        proxy.config.srt.clone(),
        proxy.metrics.srt.clone(),
        lifecycle.clone(),
    ));

    // WebRTC: signalling on the HTTP API, media on its own UDP port.
    let api_listener = bind(proxy.config.http_api, "the HTTP API (WHIP/WHEP)").await?;
    let webrtc_socket = tokio::net::UdpSocket::bind(proxy.config.webrtc_server.0)
        .await
        .with_context(|| {
            format!(
                "cannot listen for WebRTC media on {}",
                proxy.config.webrtc_server
            )
        })?;
    tracing::info!(addr = %webrtc_socket.local_addr()?, candidate = ?proxy.config.webrtc.candidate, "WebRTC media listening");
    tokio::spawn(webrtc::serve(api_listener, webrtc_socket, proxy.clone()));

    let http_listener = bind(proxy.config.http_server, "HTTP streaming").await?;
    tokio::spawn(http::serve(http_listener, proxy.clone()));

    lifecycle.wait_for_signal().await;
    lifecycle.drain().await;
    system.abort();
    tracing::info!("proxy stopped");
    Ok(())
}

async fn bind(addr: config::ListenAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr.0)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}
