//! The proxy's Prometheus registry, served on the system API's `/metrics`: each part of the
//! proxy owns and records its metrics (origins, discovery, registrations, HTTP streaming,
//! WebRTC offers); this module registers them all in one registry, plus the relays' counters
//! read at scrape time.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    api::RegistrationMetrics,
    discovery::DiscoveryMetrics,
    http::HttpMetrics,
    origins::OriginsMetrics,
    rtmp::{Intent, RtmpStats},
    srt::SrtStats,
    webrtc::{OfferMetrics, WebRtcStats},
};

/// Every metric of the proxy, registered.
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub origins: OriginsMetrics,
    pub discovery: DiscoveryMetrics,
    pub registrations: RegistrationMetrics,
    pub http: HttpMetrics,
    pub webrtc_offers: OfferMetrics,
    /// Counters the RTMP sessions keep themselves; exported at scrape time.
    pub rtmp: Arc<RtmpStats>,
    /// Counters the SRT relay keeps itself; exported at scrape time.
    pub srt: Arc<SrtStats>,
    /// Counters the WebRTC relay keeps itself; exported at scrape time.
    pub webrtc: Arc<WebRtcStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("originstack_proxy");
        let origins = OriginsMetrics::register(&mut registry);
        let registrations = RegistrationMetrics::register(&mut registry);
        let http = HttpMetrics::register(&mut registry);
        let webrtc_offers = OfferMetrics::register(&mut registry);
        let rtmp = Arc::new(RtmpStats::default());
        let srt = Arc::new(SrtStats::default());
        let webrtc = Arc::new(WebRtcStats::default());
        registry.register_collector(Box::new(RelayCollector {
            rtmp: rtmp.clone(),
            srt: srt.clone(),
            webrtc: webrtc.clone(),
        }));
        let discovery = DiscoveryMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            origins,
            discovery,
            registrations,
            http,
            webrtc_offers,
            rtmp,
            srt,
            webrtc,
        }
    }

    /// The Prometheus text exposition, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        crate::api::encode(&self.registry)
    }
}

/// The relays' own counters (atomics they update per session, not per packet) as metrics.
#[derive(Debug)]
struct RelayCollector {
    rtmp: Arc<RtmpStats>,
    srt: Arc<SrtStats>,
    webrtc: Arc<WebRtcStats>,
}

impl RelayCollector {
    /// RTMP sessions by `intent` (publish, play).
    fn encode_rtmp(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        const INTENTS: [Intent; 2] = [Intent::Publish, Intent::Play];
        let mut metric = encoder.encode_descriptor(
            "rtmp_sessions_active",
            "RTMP sessions relaying to an origin now, by intent (an SRS edge's pull is a play)",
            None,
            MetricType::Gauge,
        )?;
        for intent in INTENTS {
            let value = self.rtmp.of(intent).active.load(Ordering::Relaxed);
            ConstGauge::new(value as i64)
                .encode(metric.encode_family(&[("intent", intent.as_str())])?)?;
        }
        let gauges = [
            (
                "rtmp_connections",
                "RTMP client connections held now, handshaking ones included",
                &self.rtmp.connections,
            ),
            (
                "rtmp_connections_limit",
                "RTMP connections accepted at most (PROXY_RTMP_MAX_CONNECTIONS); more are closed on accept",
                &self.rtmp.connections_limit,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value.load(Ordering::Relaxed) as i64).encode(metric)?;
        }
        let counters = [
            (
                "rtmp_bytes_to_origin",
                "Bytes read from RTMP clients and relayed to origins (publishers' media)",
                &self.rtmp.bytes.to_origin,
            ),
            (
                "rtmp_bytes_to_client",
                "Bytes read from origins and relayed to RTMP clients (players' media)",
                &self.rtmp.bytes.to_client,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(metric)?;
        }
        let mut metric = encoder.encode_descriptor(
            "rtmp_sessions",
            "RTMP sessions that reached an origin and started relaying, by intent",
            None,
            MetricType::Counter,
        )?;
        for intent in INTENTS {
            let value = self.rtmp.of(intent).total.load(Ordering::Relaxed);
            ConstCounter::new(value)
                .encode(metric.encode_family(&[("intent", intent.as_str())])?)?;
        }
        Ok(())
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (srt, rtc) = (&self.srt, &self.webrtc);
        self.encode_rtmp(&mut encoder)?;
        let gauges: [(&str, &str, &AtomicU64); 2] = [
            (
                "srt_sessions_active",
                "SRT sessions relaying or connecting now",
                &srt.sessions_active,
            ),
            (
                "webrtc_sessions_active",
                "WebRTC sessions relaying now",
                &rtc.sessions_active,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(SrtStats::get(value) as i64).encode(metric)?;
        }
        let counters: [(&str, &str, &AtomicU64); 19] = [
            (
                "srt_bytes_to_origin",
                "Bytes of SRT datagrams relayed from clients to origins",
                &srt.bytes_to_origin,
            ),
            (
                "srt_bytes_to_client",
                "Bytes of SRT datagrams relayed from origins to clients",
                &srt.bytes_to_client,
            ),
            (
                "webrtc_bytes_to_origin",
                "Bytes of WebRTC datagrams relayed from clients to origins",
                &rtc.bytes_to_origin,
            ),
            (
                "webrtc_bytes_to_client",
                "Bytes of WebRTC datagrams relayed from origins to clients",
                &rtc.bytes_to_client,
            ),
            (
                "srt_sessions",
                "SRT sessions accepted (valid cookie and stream id)",
                &srt.sessions_total,
            ),
            (
                "srt_rejected",
                "SRT handshakes refused, by the proxy or the origin",
                &srt.rejected,
            ),
            (
                "srt_garbage_datagrams",
                "Datagrams on the SRT port that were not SRT or not for a session of their sender",
                &srt.garbage,
            ),
            (
                "srt_queue_drops",
                "SRT datagrams dropped because a session's queue was full",
                &srt.queue_drops,
            ),
            (
                "srt_datagrams_to_origin",
                "SRT datagrams relayed from clients to origins",
                &srt.to_origin,
            ),
            (
                "srt_datagrams_to_client",
                "SRT datagrams relayed from origins to clients",
                &srt.to_client,
            ),
            (
                "webrtc_sessions",
                "WebRTC sessions started (first binding request verified)",
                &rtc.sessions_total,
            ),
            (
                "webrtc_datagrams_to_origin",
                "WebRTC datagrams relayed from clients to origins",
                &rtc.to_origin,
            ),
            (
                "webrtc_datagrams_to_client",
                "WebRTC datagrams relayed from origins to clients",
                &rtc.to_client,
            ),
            (
                "webrtc_dropped_unknown",
                "Datagrams on the WebRTC port from unknown addresses that were not a binding request",
                &rtc.dropped_unknown,
            ),
            (
                "webrtc_stun_rejected",
                "Binding requests refused: unknown ufrag, failed MESSAGE-INTEGRITY or a limit",
                &rtc.stun_rejected,
            ),
            (
                "webrtc_queue_drops",
                "WebRTC datagrams dropped because a session's queue was full",
                &rtc.queue_drops,
            ),
            (
                "webrtc_rebinds",
                "Client addresses accepted for a running WebRTC session (NAT rebinding, more candidates)",
                &rtc.rebinds,
            ),
            (
                "webrtc_idle_closed",
                "WebRTC sessions closed because one side went silent",
                &rtc.idle_closed,
            ),
            (
                "srt_refused_per_client",
                "SRT callers refused because their address has too many sessions",
                &srt.refused_per_client,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(SrtStats::get(value)).encode(metric)?;
        }
        Ok(())
    }
}
