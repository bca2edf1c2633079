//! Hostile traffic on every port of one proxy at once, while a healthy stream plays through it:
//! slowloris on the three HTTP ports, half-open RTMP handshakes, random UDP on the WebRTC and
//! SRT ports, oversized SDP offers, and a registration flood from another address. The stream must stay smooth, every
//! attacking connection must be closed, and the proxy's memory must stay bounded.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use originstack_e2e::{NginxRtmpOrigin, Player, ProxyProcess, Publisher, carriers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");
const ATTACK: Duration = Duration::from_secs(10);
/// Limits the attacked proxy runs with, short so the test sees them act.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const REGISTER_RATE: u32 = 50;

/// Counts of one attack, reported at the end.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    /// Closed by the proxy within the deadline it promises.
    closed_in_time: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    limited: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Waits until the proxy closes `socket` (EOF or reset), dribbling `drip` bytes every 500 ms
/// meanwhile; true when that happened before `deadline`.
fn closed_before(mut socket: TcpStream, drip: &[u8], deadline: Instant) -> bool {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if !drip.is_empty() && socket.write_all(drip).is_err() {
            return true;
        }
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// `count` connections to `addr` that each send `opening` and then only `drip` (or nothing)
/// forever; each must be closed within `limit` (plus a second of slack).
fn trickle(
    addr: SocketAddr,
    count: usize,
    opening: &'static [u8],
    drip: &'static [u8],
    limit: Duration,
    tally: Arc<Tally>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..count)
            .map(|_| {
                let tally = tally.clone();
                std::thread::spawn(move || {
                    let Ok(mut socket) = TcpStream::connect(addr) else {
                        return;
                    };
                    tally.opened.fetch_add(1, Ordering::Relaxed);
                    let deadline = Instant::now() + limit + Duration::from_secs(1);
                    let _ = socket.write_all(opening);
                    if closed_before(socket, drip, deadline) {
                        tally.closed_in_time.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
    })
}

/// Random datagrams of random size to `addr` until `stop`.
fn udp_noise(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut datagram = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..100 {
                // xorshift: cheap noise, different every datagram.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = 1 + (state % 1400) as usize;
                for (i, byte) in datagram[..len].iter_mut().enumerate() {
                    *byte = (state >> ((i % 8) * 8)) as u8 ^ i as u8;
                }
                if socket.send_to(&datagram[..len], addr).is_ok() {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// WHIP offers of 8 MiB, one after another until `stop`: each must be refused (413) without
/// the proxy reading it all, and the connection closed.
fn oversized_offers(api: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let sdp = format!(
            "v=0\r\n{}",
            "a=x-padding:0123456789abcdef\r\n".repeat(8 * 1024 * 1024 / 30)
        );
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut socket) = TcpStream::connect(api) else {
                // Refused or backlog full: back off rather than spin a core the healthy
                // stream needs.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = socket.set_write_timeout(Some(Duration::from_secs(5)));
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let head = format!(
                "POST /rtc/v1/whip/?app=live&stream=big HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                sdp.len()
            );
            let _ = socket.write_all(head.as_bytes());
            // The proxy answers and closes before the body is all sent; the write then fails.
            let _ = socket.write_all(sdp.as_bytes());
            let mut answer = Vec::new();
            let _ = socket.read_to_end(&mut answer);
            if String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 413") {
                tally.limited.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// Registrations as fast as `connections` keep-alive connections from 127.0.0.2 can send
/// them, each naming a new origin, until `stop`.
fn register_flood(
    system: SocketAddr,
    connections: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tasks: Vec<_> = (0..connections)
                .map(|c| tokio::spawn(flood_one(system, c, stop.clone(), tally.clone())))
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        });
    })
}

async fn flood_one(
    system: SocketAddr,
    connection: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let Ok(mut stream) = socket.connect(system).await else {
        return;
    };
    let mut reply = Vec::with_capacity(4096);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = format!(
            r#"{{"ip":"10.9.{}.{}","server":"flood-{connection}-{n}","service":"s","pid":"1","rtmp":["1935"]}}"#,
            connection % 250,
            n % 250
        );
        let request = format!(
            "POST /api/v1/srs/register HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return;
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        // One response: head, then Content-Length bytes of body.
        reply.clear();
        let status = loop {
            let mut chunk = [0u8; 2048];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => reply.extend_from_slice(&chunk[..read]),
            }
            let text = String::from_utf8_lossy(&reply);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break head.split(' ').nth(1).unwrap_or("0").to_owned();
                }
            }
        };
        match status.as_str() {
            "200" => tally.accepted.fetch_add(1, Ordering::Relaxed),
            "429" => tally.limited.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

#[test]
fn hostile_traffic_on_every_port_leaves_a_healthy_stream_smooth() {
    let origins = NginxRtmpOrigin::start_rtmp_only(1).unwrap();
    let proxy = ProxyProcess::start(
        PROXY,
        &[
            ("PROXY_ORIGIN_TTL", "120s".into()),
            ("PROXY_HTTP_HEADER_TIMEOUT", "2s".into()),
            ("PROXY_RTMP_HANDSHAKE_TIMEOUT", "2s".into()),
            ("PROXY_REGISTER_RATE_LIMIT", REGISTER_RATE.to_string()),
        ],
    )
    .unwrap();
    proxy
        .register("origin-0", origins[0].rtmp_port(), origins[0].http_port())
        .unwrap();
    let url = proxy.rtmp_url("live", "healthy");
    let mut publisher = Publisher::looping_sample(&url).unwrap();
    let mut player = Player::start(&url).unwrap();
    player
        .wait_played(Duration::from_secs(2), Duration::from_secs(20))
        .unwrap();
    let rss_before = proxy.rss_bytes().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (slow_http, slow_system, slow_api, half_open, udp, flood, offers) = (
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
        Arc::new(Tally::default()),
    );
    let slow_head = b"GET /live/x.flv HTTP/1.1\r\nHost: proxy\r\n";
    let attacks = vec![
        trickle(
            proxy.http,
            150,
            slow_head,
            b"X-A: b\r\n",
            HEADER_TIMEOUT,
            slow_http.clone(),
        ),
        trickle(
            proxy.system,
            100,
            slow_head,
            b"X-A: b\r\n",
            HEADER_TIMEOUT,
            slow_system.clone(),
        ),
        trickle(
            proxy.api,
            100,
            slow_head,
            b"X-A: b\r\n",
            HEADER_TIMEOUT,
            slow_api.clone(),
        ),
        // C0 and a third of C1, then silence.
        trickle(
            proxy.rtmp,
            150,
            &[3u8; 512],
            b"",
            HANDSHAKE_TIMEOUT,
            half_open.clone(),
        ),
        udp_noise(proxy.webrtc, stop.clone(), udp.clone()),
        udp_noise(proxy.srt, stop.clone(), udp.clone()),
        register_flood(proxy.system, 4, stop.clone(), flood.clone()),
        oversized_offers(proxy.api, stop.clone(), offers.clone()),
    ];

    // The healthy stream, sampled while the attack runs; a real origin at another address
    // keeps heartbeating through the flood.
    let started = Instant::now();
    let played_at_start = player.played();
    let (mut last, mut last_change, mut longest_stall) =
        (played_at_start, Instant::now(), Duration::ZERO);
    let mut heartbeats_refused = 0;
    while started.elapsed() < ATTACK {
        std::thread::sleep(Duration::from_millis(250));
        let now = player.played();
        if now > last {
            longest_stall = longest_stall.max(last_change.elapsed());
            (last, last_change) = (now, Instant::now());
        }
        if proxy
            .register("origin-0", origins[0].rtmp_port(), origins[0].http_port())
            .is_err()
        {
            heartbeats_refused += 1;
        }
    }
    longest_stall = longest_stall.max(last_change.elapsed());
    let gained = player.played().saturating_sub(played_at_start);
    stop.store(true, Ordering::Relaxed);
    for attack in attacks {
        attack.join().unwrap();
    }
    let rss_after = proxy.rss_bytes().unwrap();
    let flood_rate = get(&flood.sent) as f64 / ATTACK.as_secs_f64();
    eprintln!(
        "healthy stream: played {gained:?} in {ATTACK:?}, longest stall {longest_stall:?}\n\
         slowloris HTTP {}/{} closed in time, system API {}/{}, WebRTC API {}/{}; half-open RTMP {}/{}\n\
         UDP noise {} datagrams; registrations {} ({flood_rate:.0}/s): {} accepted, {} limited\n\
         8 MiB SDP offers: {} sent, {} refused with 413\n\
         proxy RSS {:.1} MiB -> {:.1} MiB",
        get(&slow_http.closed_in_time),
        get(&slow_http.opened),
        get(&slow_system.closed_in_time),
        get(&slow_system.opened),
        get(&slow_api.closed_in_time),
        get(&slow_api.opened),
        get(&half_open.closed_in_time),
        get(&half_open.opened),
        get(&udp.sent),
        get(&flood.sent),
        get(&flood.accepted),
        get(&flood.limited),
        get(&offers.sent),
        get(&offers.limited),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
    );

    player
        .ensure_running()
        .expect("the healthy player survived");
    publisher
        .ensure_running()
        .expect("the healthy publisher survived");
    assert!(
        longest_stall < Duration::from_secs(2) && gained >= ATTACK - Duration::from_secs(2),
        "the healthy stream stalled: played {gained:?} of {ATTACK:?}, longest stall {longest_stall:?}"
    );
    assert_eq!(carriers(&origins, "live", "healthy").len(), 1);
    for (what, tally) in [
        ("slowloris HTTP", &slow_http),
        ("slowloris system API", &slow_system),
        ("slowloris WebRTC API", &slow_api),
        ("half-open RTMP", &half_open),
    ] {
        assert!(get(&tally.opened) > 0, "{what}: no connection opened");
        assert_eq!(
            get(&tally.closed_in_time),
            get(&tally.opened),
            "{what}: connections left open past the limit"
        );
    }
    assert_eq!(
        heartbeats_refused, 0,
        "the flood from another address throttled a real origin"
    );
    let limit = u64::from(REGISTER_RATE) * (ATTACK.as_secs() + 2);
    assert!(
        get(&flood.limited) > 0 && get(&flood.accepted) <= limit,
        "the flood was not limited: {} accepted (limit {limit})",
        get(&flood.accepted)
    );
    assert!(
        get(&offers.sent) > 0 && get(&offers.limited) == get(&offers.sent),
        "oversized offers: {} sent, {} refused",
        get(&offers.sent),
        get(&offers.limited)
    );
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "memory grew from {rss_before} to {rss_after} bytes"
    );
}
