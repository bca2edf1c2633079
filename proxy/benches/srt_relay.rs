//! SRT relay cost, proxy vs direct, measured in the same run:
//! `cargo bench -p originstack-proxy --bench srt_relay`
//!
//! A caller and an echoing listener, both speaking the SRT handshake through the proxy's own
//! codec, exchange 1316-byte data packets (7 TS packets, what live SRT carries) over loopback
//! UDP, once directly and once through the proxy:
//! - latency: one packet in flight, round-trip time per packet (the proxy is crossed twice);
//! - throughput: a window of packets in flight, datagrams relayed per second.
//!
//! The peers are not libsrt: libsrt paces live traffic and holds packets for its TSBPD latency
//! (120 ms), which would hide the proxy's microseconds.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

mod support;

use futures::future::BoxFuture;
use originstack_bench::udp_echo::{
    SRT_PAYLOAD as PAYLOAD, echo_rate, srt_connect, srt_data_packet as data_packet, srt_echo_origin,
};
use originstack_proxy::{
    config::SrtLimits,
    lifecycle::Lifecycle,
    srt::{
        self, OriginResolver, ResolveError, ResolvedOrigin, SrtStats, StreamId,
        packet::{Header, PacketKind},
    },
};
use support::{measure, ping_pong, print_comparison};
const PING_PONGS: usize = 20_000;
const WINDOW: usize = 32;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);

struct EchoResolver(SocketAddr);

impl OriginResolver for EchoResolver {
    fn resolve<'a>(
        &'a self,
        _: &'a StreamId,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            Ok(ResolvedOrigin {
                addr: self.0,
                guard: Box::new(()),
            })
        })
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = srt_echo_origin().unwrap();
    let stats = Arc::new(SrtStats::default());
    let proxy = runtime.block_on(async {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let lifecycle = Lifecycle::new(Duration::from_secs(1), Duration::from_secs(2));
        let resolver = Arc::new(EchoResolver(origin));
        runtime.spawn(srt::serve(
            socket,
            resolver,
            SrtLimits::default(),
            stats.clone(),
            lifecycle,
        ));
        addr
    });

    let connect = |to| srt_connect(to, "bench/echo").unwrap();
    let (direct, proxied) = (connect(origin), connect(proxy));
    let round_trips = |(socket, peer): &(UdpSocket, u32)| {
        ping_pong(
            socket,
            PING_PONGS,
            |sequence| data_packet(sequence, *peer),
            |buf, sequence| {
                Header::decode(buf).is_ok_and(|h| h.kind == PacketKind::Data { sequence })
            },
        )
    };
    let rate = |(socket, peer): &(UdpSocket, u32)| {
        echo_rate(socket, WINDOW, THROUGHPUT_FOR, |sequence| {
            data_packet(sequence, *peer)
        })
        .unwrap()
    };
    let (direct, proxied) = measure(&direct, &proxied, round_trips, rate);
    print_comparison(
        &format!("SRT relay, {PAYLOAD}-byte data packets over loopback"),
        "packet",
        WINDOW,
        &direct,
        &proxied,
    );
    println!(
        "proxy counters: to origin {}, to client {}, queue drops {}",
        SrtStats::get(&stats.to_origin),
        SrtStats::get(&stats.to_client),
        SrtStats::get(&stats.queue_drops)
    );
}
