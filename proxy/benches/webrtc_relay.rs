//! WebRTC UDP relay cost, proxy vs direct, measured in the same run:
//! `cargo bench -p originstack-proxy --bench webrtc_relay`
//!
//! A client and an echoing origin exchange 1200-byte SRTP-shaped datagrams (first byte 0x80,
//! the size of a video packet) over loopback UDP, once directly and once through the
//! proxy's media relay (the session is found by the ufrag of a STUN binding request, as a
//! real client's first check finds it):
//! - latency: one datagram in flight, round-trip time per datagram (the proxy is crossed
//!   twice);
//! - throughput: a window of datagrams in flight, datagrams relayed per second.
//!
//! The peers are not a WebRTC stack: SRTP encryption and pacing would hide the proxy's
//! microseconds, and the proxy never looks past the first byte of media anyway.

use std::{
    net::{SocketAddr, UdpSocket},
    thread,
    time::Duration,
};

use originstack_bench::udp_echo::{
    RTC_PAYLOAD as PAYLOAD, echo, echo_rate, rtc_datagram as datagram,
};
use support::{measure, ping_pong, print_comparison};

mod support;

use originstack_proxy::{
    Proxy,
    config::Config,
    lifecycle::Lifecycle,
    webrtc::{self, Directory, RecordTimes, SessionRecord, WebRtcStats, stun},
};

const PING_PONGS: usize = 20_000;
const WINDOW: usize = 32;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);
const UFRAG: &str = "benchufrag";
const PWD: &str = "bench-password-0123456789";

fn connect(to: SocketAddr, through_proxy: bool) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(to).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if through_proxy {
        // The first binding request starts the session; the origin's echo of it comes back.
        let request = stun::binding_request([3; 12], &format!("{UFRAG}:client"), PWD, true);
        socket.send(&request).unwrap();
        let mut buf = [0u8; 2048];
        let len = socket.recv(&mut buf).expect("session started");
        assert_eq!(&buf[..len], &request[..]);
    }
    socket
}

fn sequence_of(buf: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(2..6)?.try_into().ok()?))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = echo().unwrap();
    let (proxy_addr, stats) = runtime.block_on(async {
        use clap::Parser;
        let config = Config::try_parse_from(["originstack-proxy"]).unwrap();
        let lifecycle = Lifecycle::new(Duration::from_secs(1), Duration::from_secs(2));
        let proxy = Proxy::new(config.clone(), lifecycle.clone()).unwrap();
        let directory = Directory::new(
            proxy.origins.clone(),
            RecordTimes {
                setup: Duration::from_secs(60),
                live: Duration::from_secs(60),
            },
        );
        let record = SessionRecord {
            stream: "__defaultVhost__/bench/echo".into(),
            origin: "echo".into(),
            rtc: origin,
            pwd: PWD.into(),
            resource: None,
        };
        directory
            .publish(&[(UFRAG.to_owned(), record)], None, None)
            .await
            .unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = proxy.metrics.webrtc.clone();
        runtime.spawn(webrtc::serve_media(
            socket,
            directory,
            config.webrtc.clone(),
            stats.clone(),
            lifecycle,
        ));
        // Keep the proxy's shared state alive for the whole run.
        std::mem::forget(proxy);
        (addr, stats)
    });

    let (direct, proxied) = (connect(origin, false), connect(proxy_addr, true));
    let is_echo = |buf: &[u8], sequence| sequence_of(buf) == Some(sequence);
    let (direct, proxied) = measure(
        &direct,
        &proxied,
        |socket| ping_pong(socket, PING_PONGS, datagram, is_echo),
        |socket| echo_rate(socket, WINDOW, THROUGHPUT_FOR, datagram).unwrap(),
    );
    print_comparison(
        &format!("WebRTC relay, {PAYLOAD}-byte datagrams over loopback"),
        "datagram",
        WINDOW,
        &direct,
        &proxied,
    );
    // The relay flushes its counters about once a second.
    thread::sleep(Duration::from_millis(1200));
    println!(
        "proxy counters: to origin {}, to client {}, queue drops {}",
        WebRtcStats::get(&stats.to_origin),
        WebRtcStats::get(&stats.to_client),
        WebRtcStats::get(&stats.queue_drops)
    );
}
