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

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use tokio::net::{TcpListener, UdpSocket};

pub use demux::{Kind, classify};
pub use directory::{Directory, RecordTimes, SessionRecord};
pub use listener::serve as serve_media;
pub use signalling::Conn;

use crate::Proxy;

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

/// Serves signalling on `api` and media on `media` until the proxy stops.
pub async fn serve(api: TcpListener, media: UdpSocket, proxy: Proxy) -> std::io::Result<()> {
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
    tokio::spawn(serve_media(
        media,
        directory,
        config,
        proxy.metrics.webrtc.clone(),
        proxy.lifecycle.clone(),
    ));
    signalling::serve(api, router, proxy).await;
    Ok(())
}

/// `PROXY_WEBRTC_CANDIDATE`: an IP clients can reach (not a wildcard, not multicast) or a
/// host name, without a port.
pub fn parse_candidate_host(value: &str) -> Result<String, String> {
    let value = value.trim();
    if let Ok(ip) = value.trim_matches(['[', ']']).parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "{ip} is not an address clients can send media to; give the proxy's public IP or host name"
            ));
        }
        return Ok(ip.to_string());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.len() <= 253 && value.split('.').all(valid_label) {
        return Ok(value.to_ascii_lowercase());
    }
    Err(format!(
        "expected an IP address or a host name without port, got {value:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_hosts() {
        assert_eq!(parse_candidate_host("203.0.113.9").unwrap(), "203.0.113.9");
        assert_eq!(
            parse_candidate_host("[2001:db8::1]").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_candidate_host("Media.Example.com").unwrap(),
            "media.example.com"
        );
        assert!(parse_candidate_host("0.0.0.0").is_err());
        assert!(parse_candidate_host("::").is_err());
        assert!(parse_candidate_host("1.2.3.4:8000").is_err());
        assert!(parse_candidate_host("bad_host").is_err());
        assert!(parse_candidate_host("").is_err());
    }
}
