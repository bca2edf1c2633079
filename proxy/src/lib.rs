//! OriginStack proxy: accepts every client protocol, finds the origin that owns the stream
//! and relays the bytes.
//!
//! Layers, bottom up; a module imports only from the layers below it:
//!
//! 1. ground: [`config`] (plain settings), [`lifecycle`], [`telemetry`], [`udp`];
//! 2. [`origins`]: the registry and stream ownership (memory or Redis), depending on nothing of
//!    the proxy; [`httpd`]: the HTTP plumbing every HTTP listener shares;
//! 3. [`discovery`] (origins from EndpointSlices) and [`api`] (the system API);
//! 4. the protocol front ends: [`rtmp`], [`http`], [`srt`], [`webrtc`], each serving one
//!    listener with its own state, taking a [`origins::StreamLease`] per session;
//! 5. [`metrics`] registers every layer's own metrics in one registry, and this file wires it
//!    all together ([`Proxy`], [`run`]).

pub mod api;
pub mod config;
pub mod discovery;
pub mod flv;
pub mod http;
pub mod httpd;
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
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::net::TcpListener;

use crate::{
    config::{Config, DefaultBackendConfig, LoadBalancerType},
    discovery::Discovery,
    lifecycle::Lifecycle,
    metrics::Metrics,
    origins::{
        HeartbeatError, LoadBalancer, MemoryBalancer, Origin, Origins, RedisBalancer,
        RedisSettings, RedisSetupError, Timing, Vhosts, parse_heartbeat,
    },
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
        let backend = backend_from_config(&config, timing)
            .context("cannot set up the load balancer backend")?;
        let metrics = Arc::new(Metrics::new());
        let discovery = Discovery::new(&config.discovery, metrics.discovery.clone())?;
        let vhosts = Vhosts::new(&config.vhosts);
        let origins = Origins::with_vhosts(backend, timing, metrics.origins.clone(), vhosts);
        Ok(Self {
            config: Arc::new(config),
            origins,
            metrics,
            lifecycle,
            discovery,
        })
    }
}

impl Proxy {
    /// The system API's share of the proxy.
    pub fn system_api(&self) -> api::SystemApi {
        api::SystemApi {
            config: self.config.clone(),
            origins: self.origins.clone(),
            discovery: self.discovery.clone(),
            lifecycle: self.lifecycle.clone(),
            registrations: self.metrics.registrations.clone(),
            registry: self.metrics.registry.clone(),
        }
    }

    /// HTTP streaming's share of the proxy.
    pub fn streaming(&self) -> http::Streaming {
        http::Streaming {
            config: self.config.clone(),
            origins: self.origins.clone(),
            lifecycle: self.lifecycle.clone(),
            requests: self.metrics.http.clone(),
        }
    }

    /// WebRTC's share of the proxy.
    pub fn webrtc(&self) -> webrtc::WebRtc {
        webrtc::WebRtc {
            config: self.config.clone(),
            origins: self.origins.clone(),
            lifecycle: self.lifecycle.clone(),
            offers: self.metrics.webrtc_offers.clone(),
            stats: self.metrics.webrtc.clone(),
        }
    }
}

/// Runs the proxy until SIGTERM/SIGINT, then drains as configured.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let lifecycle = Lifecycle::new(config.grace_quit_timeout, config.force_quit_timeout);
    let proxy = Proxy::new(config, lifecycle.clone())?;
    tracing::info!(backend = ?proxy.config.load_balancer_type, origin_ttl = ?proxy.config.origin_ttl, "load balancer ready");

    if proxy.config.default_backend.enabled {
        let origin = default_backend_origin(&proxy.config.default_backend)
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
    api::warn_if_open(&proxy.config);
    let system = tokio::spawn(api::serve(system_listener, proxy.system_api()));

    let rtmp_listener = bind(proxy.config.rtmp_server, "RTMP").await?;
    let resolver: Arc<dyn rtmp::OriginResolver> = proxy.origins.clone();
    tokio::spawn(rtmp::serve(
        rtmp_listener,
        resolver,
        rtmp::RtmpLimits::from_config(&proxy.config.rtmp),
        proxy.metrics.rtmp.clone(),
        lifecycle.clone(),
    ));

    let srt_socket = tokio::net::UdpSocket::bind(proxy.config.srt_server.0)
        .await
        .with_context(|| format!("cannot listen for SRT on {}", proxy.config.srt_server))?;
    tracing::info!(addr = %srt_socket.local_addr()?, "SRT listening");
    let srt_resolver: Arc<dyn srt::OriginResolver> = proxy.origins.clone();
    let srt = srt::serve(
        srt_socket,
        srt_resolver,
        proxy.config.srt.clone(),
        proxy.metrics.srt.clone(),
        lifecycle.clone(),
    );

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
    let webrtc = webrtc::serve(api_listener, webrtc_socket, proxy.webrtc());

    let http_listener = bind(proxy.config.http_server, "HTTP streaming").await?;
    tokio::spawn(http::serve(http_listener, proxy.streaming()));

    // The UDP receive loops (SRT, WebRTC media) run in this future, on the thread that runs
    // the proxy (`main`'s), not as tasks on the runtime's workers: every datagram of every
    // session passes through them, and on a worker they wait behind the session tasks they
    // feed. Measured with `make bench` (udp scenario): about 0.75x a plain UDP relay's packet
    // rate as tasks. In a FuturesUnordered, a datagram wakes only the loop it is for.
    let mut listeners: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    listeners.push(Box::pin(srt));
    listeners.push(Box::pin(async move {
        if let Err(err) = webrtc.await {
            tracing::error!(error = %err, "WebRTC stopped serving");
        }
    }));
    let mut shutdown = std::pin::pin!(async {
        lifecycle.wait_for_signal().await;
        lifecycle.drain().await;
    });
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = listeners.next(), if !listeners.is_empty() => {}
        }
    }
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

/// The backend the configuration asks for.
fn backend_from_config(
    config: &Config,
    timing: Timing,
) -> Result<Arc<dyn LoadBalancer>, RedisSetupError> {
    Ok(match config.load_balancer_type {
        LoadBalancerType::Memory => Arc::new(MemoryBalancer::new(timing)),
        LoadBalancerType::Redis => Arc::new(RedisBalancer::new(
            &RedisSettings {
                url: config.redis.connection_url(),
                cluster: config.redis.cluster,
                key_prefix: config.redis.key_prefix.clone(),
                timeout: config.redis.timeout,
                ca_file: config.redis.ca_file.clone(),
            },
            timing,
        )?),
    })
}

/// The fixed origin of `PROXY_DEFAULT_BACKEND_*`, validated like a heartbeat. Its identity is
/// stable (`default-backend`, service `default`, pid `0`) so every replica registers the same one.
fn default_backend_origin(config: &DefaultBackendConfig) -> Result<Origin, HeartbeatError> {
    let list = |value: &Option<String>| value.iter().cloned().collect::<Vec<_>>();
    let heartbeat = serde_json::json!({
        "ip": config.ip,
        "server": "default-backend",
        "service": "default",
        "pid": "0",
        "rtmp": [config.rtmp],
        "http": list(&config.http),
        "api": list(&config.api),
        "rtc": list(&config.rtc),
        "srt": list(&config.srt),
    });
    parse_heartbeat(heartbeat.to_string().as_bytes())
}
