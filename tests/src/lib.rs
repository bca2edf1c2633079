//! Real peers for tests (redis-server, nginx with the RTMP module, ffmpeg/ffprobe,
//! srt-live-transmit, the OriginStack binaries), started on free loopback ports and stopped on
//! drop.
//!
//! Every helper here starts a real process; nothing is mocked. Tests using them run in
//! parallel: ports come from [`free_port`], files from a per-peer temporary directory.
//! The APIs block (std::process, std::net) so sync and async tests share them; an async
//! test calls them during setup or inside `tokio::task::spawn_blocking`.

/// A real one-node Kubernetes with the chart installed from locally built images.
pub mod cluster;
/// Generated documentation sections and their drift checks.
pub mod docs;
/// ffmpeg publishers (testsrc2 + sine, H.264/AAC to RTMP, SRT or HTTP) and ffprobe checks
/// that a URL plays with the expected codecs and size.
pub mod ffmpeg;
/// Helm rendering the repository's chart.
pub mod helm;
/// Container images for the one-node cluster (proxy, operator, Redis, the SRS stand-in, pause),
/// built with buildah from local files into cached docker-archives; nothing is pulled.
pub mod images;
/// A real Kubernetes control plane (etcd + kube-apiserver) handing out kube clients.
pub mod kube;
/// YAML manifests server-side applied (or dry-run) through API discovery.
pub mod manifests;
/// nginx with the RTMP module: an RTMP + HLS origin standing in for SRS, with its stat page.
pub mod nginx_rtmp;
pub mod process;
/// The real originstack-proxy binary on free loopback ports.
pub mod proxy;
/// redis-server without persistence, with stop/start for outage tests.
pub mod redis;
/// SRS origins' heartbeats, exactly as SRS sends them.
pub mod srs;
/// srt-live-transmit (libsrt) as SRT origins, players and publishers.
pub mod srt;
/// `srs-standin`: SRS 7 as OriginStack depends on it (srs.conf and `SRS_*` overrides, RTMP and
/// HLS through nginx-rtmp, HTTP-FLV through ffmpeg, SRS's HTTP API and heartbeat).
pub mod standin;
/// Polling a condition until it holds.
pub mod wait;
/// A real WebRTC stack (str0m) as WHIP/WHEP client and as a minimal SRS-like origin.
pub mod webrtc;

pub use ffmpeg::{
    Container, Expect, Player, ProbeResult, ProbedStream, Publisher, assert_playable,
    assert_plays_published, probe, probe_with_options, srt_caller_url,
};
pub use nginx_rtmp::{NginxRtmpConfig, NginxRtmpOrigin, OriginStream, carriers};
pub use process::{
    ChildGuard, free_port, free_udp_port, local_address, wait_for_tcp, wait_for_udp,
};
pub use proxy::{Heartbeat, ProxyProcess, http_request, proxy_binary};
pub use srt::LiveTransmit;
pub use wait::eventually;
