//! Echoing peers for the UDP relay measurements (SRT and WebRTC media), and the echo rate
//! with a window of datagrams in flight.
//!
//! The peers speak just enough of each protocol for the proxy to route them: the SRT
//! handshake (through the proxy's own codec), and for WebRTC a WHIP answer with ICE
//! credentials and a STUN binding request carrying its ufrag. They are not libsrt or a WebRTC
//! stack: libsrt paces live traffic and holds packets for its TSBPD latency, and SRTP and
//! pacing would hide the relay's microseconds; the proxy never looks past an SRT header or a
//! media datagram's first byte anyway.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use originstack_proxy::{
    srt::{
        handshake::{Extension, Handshake, HandshakeType, SRT_MAGIC, ext, peer_ip_words},
        packet::{HEADER_LEN, Header, PacketKind, set_destination},
    },
    webrtc::{sdp, stun},
};
use tokio::net::TcpListener;

/// Payload of an SRT data packet: 7 TS packets, what live SRT carries.
pub const SRT_PAYLOAD: usize = 1316;
/// A WebRTC media datagram the size of a video packet.
pub const RTC_PAYLOAD: usize = 1200;
const ORIGIN_SOCKET_ID: u32 = 0x0123_4567;
const CLIENT_SOCKET_ID: u32 = 0x0765_4321;
const ICE_PWD: &str = "bench-password-0123456789";

/// An SRT listener that accepts any caller and echoes its data packets back (on a thread of
/// its own, for the life of the process).
pub fn srt_echo_origin() -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
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
            if let PacketKind::Data { .. } = header.kind {
                if let Some(&peer) = peers.get(&from) {
                    set_destination(&mut buf[..len], peer);
                    let _ = socket.send_to(&buf[..len], from);
                }
                continue;
            }
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
    });
    Ok(addr)
}

/// Connects to `to` as an SRT caller publishing `stream` (`r=` of the stream id); returns the
/// connected socket and the listener's socket id.
pub fn srt_connect(to: SocketAddr, stream: &str) -> anyhow::Result<(UdpSocket, u32)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
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
    socket.send(&request.encode_packet(0, 0))?;
    let len = socket.recv(&mut buf)?;
    let (_, induction) = Handshake::decode_packet(&buf[..len])
        .map_err(|err| anyhow::anyhow!("SRT induction answer: {err}"))?;
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
            Extension::stream_id(&format!("#!::r={stream},m=publish"))
                .map_err(|err| anyhow::anyhow!("stream id: {err}"))?,
        ],
        ..request
    };
    socket.send(&request.encode_packet(1, 0))?;
    let len = socket.recv(&mut buf)?;
    let (_, answer) = Handshake::decode_packet(&buf[..len])
        .map_err(|err| anyhow::anyhow!("SRT conclusion answer: {err}"))?;
    anyhow::ensure!(
        answer.kind == HandshakeType::Conclusion,
        "SRT connection refused: {:?}",
        answer.kind
    );
    Ok((socket, answer.socket_id))
}

/// An SRT data packet of [`SRT_PAYLOAD`] bytes to `destination`.
pub fn srt_data_packet(sequence: u32, destination: u32) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER_LEN + SRT_PAYLOAD);
    Header {
        kind: PacketKind::Data { sequence },
        info: 0xc000_0001,
        timestamp: sequence,
        destination,
    }
    .encode(&mut packet);
    packet.resize(HEADER_LEN + SRT_PAYLOAD, 0x47);
    packet
}

/// Echoes every datagram to its sender (on a thread of its own, for the life of the process).
pub fn echo() -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    Ok(addr)
}

/// A WebRTC media datagram (first byte 0x80: RTP/SRTP) of [`RTC_PAYLOAD`] bytes carrying
/// `sequence`.
pub fn rtc_datagram(sequence: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 111];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.resize(RTC_PAYLOAD, 0xab);
    packet
}

/// An origin's WebRTC API as the proxy uses it: every WHIP or WHEP offer gets `201` and an
/// answer with fresh ICE credentials and one host candidate, the UDP port `rtc` on loopback.
pub async fn whip_origin(rtc: u16) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        static SESSIONS: AtomicU64 = AtomicU64::new(0);
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<_>| async move {
                    let ufrag = format!("bench{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
                    let answer = format!(
                        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
                         m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
                         a=ice-ufrag:{ufrag}\r\na=ice-pwd:{ICE_PWD}\r\n\
                         a=candidate:0 1 udp 2130706431 127.0.0.1 {rtc} typ host generation 0\r\n"
                    );
                    let mut response = Response::new(Full::new(Bytes::from(answer)));
                    *response.status_mut() = StatusCode::CREATED;
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/sdp"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The ICE ufrag and password of an SDP answer.
pub fn ice_credentials(answer: &str) -> anyhow::Result<(String, String)> {
    let credentials = sdp::ice_credentials(answer);
    let first = credentials
        .first()
        .ok_or_else(|| anyhow::anyhow!("no ICE credentials in the answer: {answer:?}"))?;
    Ok((first.ufrag.clone(), first.pwd.clone()))
}

/// A socket connected to `to` that has sent the ICE connectivity check of the session
/// `ufrag`/`pwd` and got it echoed back (what finds the session in the proxy's relay).
pub fn rtc_connect(to: SocketAddr, ufrag: &str, pwd: &str) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let request = stun::binding_request([3; 12], &format!("{ufrag}:client"), pwd, true);
    socket.send(&request)?;
    let mut buf = [0u8; 2048];
    let len = socket.recv(&mut buf)?;
    anyhow::ensure!(
        buf[..len] == request[..],
        "the binding request did not come back"
    );
    Ok(socket)
}

/// Echoed datagrams per second with `window` in flight for `run`; a lost one frees its slot
/// after 50 ms. Returns the rate and the datagrams lost.
pub fn echo_rate(
    socket: &UdpSocket,
    window: usize,
    run: Duration,
    make: impl Fn(u32) -> Vec<u8>,
) -> std::io::Result<(f64, u64)> {
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = [0u8; 2048];
    let (mut sequence, mut in_flight, mut echoed, mut lost) = (0u32, 0usize, 0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < run {
        while in_flight < window {
            socket.send(&make(sequence))?;
            sequence = sequence.wrapping_add(1);
            in_flight += 1;
        }
        match socket.recv(&mut buf) {
            Ok(_) => {
                echoed += 1;
                in_flight -= 1;
            }
            Err(_) => {
                lost += in_flight as u64;
                in_flight = 0;
            }
        }
    }
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok((echoed as f64 / started.elapsed().as_secs_f64(), lost))
}
