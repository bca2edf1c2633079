//! Scenario: the UDP relays (SRT and WebRTC media) against a plain UDP relay. A client keeps a
//! window of datagrams in flight to an echoing origin, through the plain relay and through the
//! proxy binary; each relay is a process of its own, so its CPU time is its own.

use std::{net::SocketAddr, time::Duration};

use originstack_e2e::{free_port, http_request};

use super::{Bench, Clock, unique};
use crate::{
    procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    udp_echo::{self, RTC_PAYLOAD, SRT_PAYLOAD},
};

pub const TARGET: &str = "packet rate ≥ 0.9× the plain UDP relay";
/// Datagrams in flight: enough to keep a relay busy, few enough that none is dropped.
const WINDOW: usize = 64;
/// SRT data packets carry a 16-byte header before their payload.
const SRT_DATAGRAM: usize = SRT_PAYLOAD + 16;

/// One path's figures over a window: datagrams relayed per second (both ways) and the
/// relaying process's cores per Gbit/s relayed.
struct Path {
    datagrams_per_second: f64,
    cores_per_gbit: f64,
}

/// Runs the echo rate on `socket` for the bench window while watching `pid`.
async fn measure(
    bench: &Bench,
    pid: u32,
    socket: std::net::UdpSocket,
    datagram_bytes: usize,
    make: fn(u32, u32) -> Vec<u8>,
    peer: u32,
) -> anyhow::Result<Path> {
    let window = bench.window;
    let before = procstat::Sample::take(pid)?;
    let (rate, lost) = tokio::task::spawn_blocking(move || {
        udp_echo::echo_rate(&socket, WINDOW, window, |sequence| make(sequence, peer))
    })
    .await??;
    let cores = procstat::Sample::take(pid)?.cores_since(&before);
    if lost > 0 {
        bench.progress.step(format!(
            "  {lost} datagrams lost (the slot is freed after 50 ms)"
        ));
    }
    let datagrams_per_second = rate * 2.0;
    let gbit_per_second = datagrams_per_second * datagram_bytes as f64 * 8.0 / 1e9;
    Ok(Path {
        datagrams_per_second,
        cores_per_gbit: cores / gbit_per_second,
    })
}

fn rtc_datagram(sequence: u32, _: u32) -> Vec<u8> {
    udp_echo::rtc_datagram(sequence)
}

/// A WebRTC session through the proxy: a WHIP offer to its API, then the connectivity check
/// of the answer's ICE credentials on its media port.
async fn rtc_session_through_proxy(
    api: SocketAddr,
    media: SocketAddr,
) -> anyhow::Result<std::net::UdpSocket> {
    let target = format!("/rtc/v1/whip/?app=bench&stream={}", unique("rtc"));
    tokio::task::spawn_blocking(move || {
        let offer =
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        let (status, answer) = http_request(
            api,
            "POST",
            &target,
            &[("Content-Type", "application/sdp")],
            offer,
        )?;
        anyhow::ensure!(status == 201, "WHIP through the proxy: {status} {answer}");
        let (ufrag, pwd) = udp_echo::ice_credentials(&answer)?;
        udp_echo::rtc_connect(media, &ufrag, &pwd)
    })
    .await?
}

pub async fn run(bench: &Bench) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    let srt_origin = udp_echo::srt_echo_origin()?;
    let rtc_origin = udp_echo::echo()?;
    let api = udp_echo::whip_origin(rtc_origin.port()).await?;
    // Nothing listens on the RTMP port: these sessions never use it.
    let mut origin = Heartbeat::local("udp-echo", free_port(), None);
    origin.api = Some(api.port());
    origin.srt = Some(srt_origin.port());
    origin.rtc = Some(rtc_origin.port());
    let proxy = bench.proxy_with_origin(origin, &[]).await?;
    let (srt_relay, srt_relay_addr) = roles::spawn(&RoleConfig::UdpRelay {
        upstream: srt_origin,
    })?;
    let (rtc_relay, rtc_relay_addr) = roles::spawn(&RoleConfig::UdpRelay {
        upstream: rtc_origin,
    })?;

    let rate = |what: &str| {
        Figure::new(
            &format!("{what}, datagrams relayed per second"),
            "datagrams/s",
            "proxy",
            "plain UDP relay",
        )
        .with_target(Bound::RatioAtLeast, 0.9, TARGET)
    };
    let cpu = |what: &str| {
        Figure::new(
            &format!("{what}, CPU per Gbit/s relayed"),
            "cores per Gbit/s",
            "proxy",
            "plain UDP relay",
        )
    };
    let (mut srt_rate, mut srt_cpu) = (rate("SRT"), cpu("SRT"));
    let (mut rtc_rate, mut rtc_cpu) = (rate("WebRTC"), cpu("WebRTC"));
    for repeat in 1..=bench.repeats {
        progress.step(format!(
            "UDP relays {repeat}/{}: SRT and WebRTC, plain relay then proxy ({:?} each)",
            bench.repeats, bench.window
        ));
        let stream = format!("bench/{}", unique("srt"));
        let (socket, peer) = udp_echo::srt_connect(srt_relay_addr, &stream)?;
        let relayed = measure(
            bench,
            srt_relay.pid(),
            socket,
            SRT_DATAGRAM,
            udp_echo::srt_data_packet,
            peer,
        )
        .await?;
        let (socket, peer) = udp_echo::srt_connect(proxy.proxy.srt, &stream)?;
        let proxied = measure(
            bench,
            proxy.pid(),
            socket,
            SRT_DATAGRAM,
            udp_echo::srt_data_packet,
            peer,
        )
        .await?;
        srt_rate.push(proxied.datagrams_per_second, relayed.datagrams_per_second);
        srt_cpu.push(proxied.cores_per_gbit, relayed.cores_per_gbit);
        progress.step(format!(
            "  SRT: relay {:.0}/s, proxy {:.0}/s",
            relayed.datagrams_per_second, proxied.datagrams_per_second
        ));

        let socket = udp_echo::rtc_connect(rtc_relay_addr, "plain", "relay")?;
        let relayed = measure(bench, rtc_relay.pid(), socket, RTC_PAYLOAD, rtc_datagram, 0).await?;
        let socket = rtc_session_through_proxy(proxy.proxy.api, proxy.proxy.webrtc).await?;
        let proxied = measure(bench, proxy.pid(), socket, RTC_PAYLOAD, rtc_datagram, 0).await?;
        rtc_rate.push(proxied.datagrams_per_second, relayed.datagrams_per_second);
        rtc_cpu.push(proxied.cores_per_gbit, relayed.cores_per_gbit);
        progress.step(format!(
            "  WebRTC: relay {:.0}/s, proxy {:.0}/s",
            relayed.datagrams_per_second, proxied.datagrams_per_second
        ));
        // Sessions of earlier repeats end by their idle timeouts; nothing else is needed.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let method = format!(
        "A client keeps {WINDOW} datagrams in flight to an echoing origin over loopback for \
         {:?}: SRT data packets of {SRT_PAYLOAD} bytes of payload after a real SRT handshake \
         (the proxy's own codec on both ends, not libsrt, whose pacing and 120 ms TSBPD latency \
         would hide the relay), and {RTC_PAYLOAD}-byte media datagrams after a WHIP offer and \
         a STUN connectivity check (not a WebRTC stack: the relay never looks past a \
         datagram's first byte). Paths: the plain UDP relay (tokio, one socket towards \
         clients and one connected socket per client towards the origin, the proxy's shape) \
         and the real `originstack-proxy` binary, each a process of its own. Datagrams relayed \
         per second count both ways; CPU per Gbit/s is the relaying process's CPU time over \
         the same window.",
        bench.window
    );
    Ok(clock.finish(
        "udp",
        "SRT and WebRTC relays against a plain UDP relay",
        method,
        bench.repeats,
        vec![srt_rate, srt_cpu, rtc_rate, rtc_cpu],
        vec![],
    ))
}
