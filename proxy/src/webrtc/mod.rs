//! WebRTC through the proxy: WHIP/WHEP signalling on `PROXY_HTTP_API`, media on
//! `PROXY_WEBRTC_SERVER` (UDP).
//!
//! ```text
//! client ── POST offer ──► proxy (any replica) ── offer ──► owner origin's API
//! client ◄─ answer ──────  candidates → the proxy's address; ICE ufrag/pwd stored
//! client ── STUN (USERNAME origin-ufrag:client-ufrag) ──► proxy (any replica)
//!                          finds the session by ufrag (here, else the load balancer),
//!                          checks MESSAGE-INTEGRITY, opens a UDP socket to the origin
//! client ◄════ STUN, DTLS, SRTP relayed both ways ════► origin
//! ```
//!
//! ICE, DTLS and SRTP stay end to end between client and origin; the proxy never decrypts.
//!
//! Modules: [`stun`], [`demux`] and [`sdp`] are pure codecs; [`directory`] holds the
//! session records; the signalling handlers, the listener loop and the per-session tasks
//! do the I/O.

mod demux;
pub mod directory;
mod listener;
pub mod sdp;
mod session;
mod signalling;
pub mod stun;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::net::{TcpListener, UdpSocket};

pub use demux::{Kind, classify};
pub use directory::{Directory, RecordTimes, SessionRecord};
pub use listener::serve as serve_media;
pub use signalling::Conn;

use crate::{config::Config, lifecycle::Lifecycle, origins::Origins};

/// What WebRTC signalling and media work with.
#[derive(Clone)]
pub struct WebRtc {
    pub config: Arc<Config>,
    pub origins: Arc<Origins>,
    pub lifecycle: Lifecycle,
    pub offers: OfferMetrics,
    pub stats: Arc<WebRtcStats>,
}

/// How a WebRTC offer (WHIP, WHEP, SRS RTC API) ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users spell them
pub enum WebRtcOffer {
    ok,
    bad_request,
    no_origin,
    origin_error,
    backend_error,
    overloaded,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfferLabels {
    api: &'static str,
    result: WebRtcOffer,
}

/// WebRTC offers by API and result. The `Default` set records for nobody.
#[derive(Clone, Debug, Default)]
pub struct OfferMetrics {
    offers: Family<OfferLabels, Counter>,
}

impl OfferMetrics {
    /// A set registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "webrtc_offers",
            "WebRTC offers (WHIP, WHEP, SRS RTC API), by API and result",
            metrics.offers.clone(),
        );
        metrics
    }

    fn record(&self, api: &'static str, result: WebRtcOffer) {
        self.offers
            .get_or_create(&OfferLabels { api, result })
            .inc();
    }
}

/// Counters of the WebRTC relay (exported on `/metrics`, read by tests).
#[derive(Debug, Default)]
pub struct WebRtcStats {
    /// Sessions relaying now.
    pub sessions_active: AtomicU64,
    /// Sessions ever started (first binding request verified).
    pub sessions_total: AtomicU64,
    /// Datagrams relayed client → origin and origin → client.
    pub to_origin: AtomicU64,
    pub to_client: AtomicU64,
    /// Bytes of those datagrams, each way.
    pub bytes_to_origin: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Datagrams from addresses no session knows that were not a binding request for one.
    pub dropped_unknown: AtomicU64,
    /// Binding requests refused: unknown ufrag, failed MESSAGE-INTEGRITY, limits.
    pub stun_rejected: AtomicU64,
    /// Datagrams dropped because a session's queue was full.
    pub queue_drops: AtomicU64,
    /// Client addresses accepted for a running session (NAT rebinding, more candidates).
    pub rebinds: AtomicU64,
    /// Sessions closed because one side went silent.
    pub idle_closed: AtomicU64,
}

impl WebRtcStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves signalling on `api` (in a task of its own) and media on `media` (in this future,
/// so the caller chooses the thread that receives every datagram) until the proxy stops.
pub async fn serve(api: TcpListener, media: UdpSocket, proxy: WebRtc) -> std::io::Result<()> {
    let media_port = media.local_addr()?.port();
    let config = proxy.config.webrtc.clone();
    let directory = Directory::new(
        proxy.origins.clone(),
        RecordTimes {
            setup: config.setup_timeout,
            live: config.idle_timeout * 2,
        },
    );
    let router = signalling::router(proxy.clone(), directory.clone(), media_port);
    let (stats, lifecycle) = (proxy.stats.clone(), proxy.lifecycle.clone());
    tokio::spawn(signalling::serve(api, router, proxy));
    serve_media(media, directory, config, stats, lifecycle).await;
    Ok(())
}
