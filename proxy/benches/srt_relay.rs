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
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    thread,
    time::Duration,
};

mod support;

use futures::future::BoxFuture;
use originstack_proxy::{
    config::SrtLimits,
    lifecycle::Lifecycle,
    srt::{
        self, OriginResolver, ResolveError, ResolvedOrigin, SrtStats, StreamId,
        handshake::{Extension, Handshake, HandshakeType, SRT_MAGIC, ext, peer_ip_words},
        packet::{HEADER_LEN, Header, PacketKind, set_destination},
    },
};
use support::{measure, ping_pong, print_comparison, throughput};

const PAYLOAD: usize = 1316;
const PING_PONGS: usize = 20_000;
const WINDOW: usize = 32;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);
const ORIGIN_SOCKET_ID: u32 = 0x0123_4567;
const CLIENT_SOCKET_ID: u32 = 0x0765_4321;

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

/// An SRT listener that accepts any caller and echoes its data packets back.
fn echo_origin() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut peers: HashMap<SocketAddr, u32> = HashMap::new();
        let mut buf = [0u8; 2048];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            let Ok(header) = Header::decode(&buf[..len]) else {
                continue;
            };
            match header.kind {
                PacketKind::Data { .. } => {
                    if let Some(&peer) = peers.get(&from) {
                        set_destination(&mut buf[..len], peer);
                        let _ = socket.send_to(&buf[..len], from);
                    }
                }
                _ => {
                    let Ok(request) = Handshake::decode(&buf[HEADER_LEN..len]) else {
                        continue;
                    };
                    let answer = match request.kind {
                        HandshakeType::Induction => Handshake {
                            version: 5,
                            extension_field: SRT_MAGIC,
                            cookie: 0x00c0_ffee,
                            ..request.clone()
                        },
                        HandshakeType::Conclusion => {
                            peers.insert(from, request.socket_id);
                            Handshake {
                                extension_field: 1,
                                socket_id: ORIGIN_SOCKET_ID,
                                extensions: vec![Extension {
                                    kind: ext::HSRSP,
                                    contents: vec![0x0001_0501, 0xbf, (120 << 16) | 120],
                                }],
                                ..request.clone()
                            }
                        }
                        _ => continue,
                    };
                    let _ = socket.send_to(&answer.encode_packet(0, request.socket_id), from);
                }
            }
        }
    });
    addr
}

/// Connects as an SRT caller; returns the socket and the listener's socket id.
fn connect(to: SocketAddr) -> (UdpSocket, u32) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(to).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = Handshake {
        version: 4,
        encryption: 0,
        extension_field: 2,
        initial_sequence: 1,
        mtu: 1500,
        flow_window: 8192,
        kind: HandshakeType::Induction,
        socket_id: CLIENT_SOCKET_ID,
        cookie: 0,
        peer_ip: peer_ip_words(to.ip()),
        extensions: Vec::new(),
    };
    let mut buf = [0u8; 2048];
    socket.send(&request.encode_packet(0, 0)).unwrap();
    let len = socket.recv(&mut buf).unwrap();
    let (_, induction) = Handshake::decode_packet(&buf[..len]).unwrap();
    request = Handshake {
        version: 5,
        extension_field: 5,
        kind: HandshakeType::Conclusion,
        cookie: induction.cookie,
        extensions: vec![
            Extension {
                kind: ext::HSREQ,
                contents: vec![0x0001_0501, 0xbf, 120 << 16],
            },
            Extension::stream_id("#!::r=bench/echo,m=publish").unwrap(),
        ],
        ..request
    };
    socket.send(&request.encode_packet(1, 0)).unwrap();
    let len = socket.recv(&mut buf).unwrap();
    let (_, answer) = Handshake::decode_packet(&buf[..len]).unwrap();
    assert_eq!(answer.kind, HandshakeType::Conclusion, "connection refused");
    (socket, answer.socket_id)
}

fn data_packet(sequence: u32, destination: u32) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER_LEN + PAYLOAD);
    Header {
        kind: PacketKind::Data { sequence },
        info: 0xc000_0001,
        timestamp: sequence,
        destination,
    }
    .encode(&mut packet);
    packet.resize(HEADER_LEN + PAYLOAD, 0x47);
    packet
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = echo_origin();
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
        throughput(socket, WINDOW, THROUGHPUT_FOR, |sequence| {
            data_packet(sequence, *peer)
        })
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
