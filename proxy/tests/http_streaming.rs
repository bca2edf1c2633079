//! HTTP-FLV/TS and HLS through the real proxy binary with real peers: nginx-rtmp origins with
//! HLS, ffmpeg publishing, ffprobe playing, redis-server shared by two proxy replicas, and a
//! plain HTTP origin that streams an endless chunked body.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use originstack_e2e::{
    Expect, NginxRtmpOrigin, ProxyProcess, Publisher, assert_playable, eventually, free_port,
    http_request, redis::RedisServer,
};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

fn redis_proxy(redis: &RedisServer) -> ProxyProcess {
    ProxyProcess::start(
        PROXY,
        &[
            ("PROXY_LOAD_BALANCER_TYPE", "redis".into()),
            ("PROXY_REDIS_URL", redis.url()),
        ],
    )
    .unwrap()
}

/// Publish through proxy A over RTMP, play through proxy B over RTMP, read the HLS playlist
/// through A and fetch its segment through B: every replica agrees through Redis.
#[test]
fn hls_playlist_through_one_replica_segments_through_another() {
    let redis = RedisServer::start().unwrap();
    let origin = NginxRtmpOrigin::start().unwrap();
    let a = redis_proxy(&redis);
    let b = redis_proxy(&redis);
    // Only A hears the heartbeat; B learns the origin from Redis.
    a.register("origin-1", origin.rtmp_port(), origin.http_port())
        .unwrap();

    let mut publisher = Publisher::start(format!("rtmp://{}/live/cam", a.rtmp)).unwrap();
    publisher.wait_sending(Duration::from_secs(20)).unwrap();
    assert_playable(
        &format!("rtmp://{}/live/cam", b.rtmp),
        &Expect::h264_aac(320, 240),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|err| panic!("{err}\nA:\n{}\nB:\n{}", a.log(), b.log()));
    assert!(origin.has_stream("live", "cam").unwrap());

    let playlist = wait_for_playlist(a.http, "/live/cam.m3u8");
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(!uris.is_empty(), "{playlist}");
    for uri in &uris {
        assert!(
            uri.starts_with("/live/") && uri.contains("spbhid="),
            "not rewritten: {uri}\n{playlist}"
        );
    }
    let (status, segment) = http_request(b.http, "GET", uris[0], &[], "").unwrap();
    assert_eq!(status, 200, "segment through B: {segment}");
    assert!(
        segment.starts_with('G'),
        "an MPEG-TS segment starts with the 0x47 sync byte"
    );
    let metrics = b.metrics().unwrap();
    assert!(
        metrics.contains("http_requests_total{kind=\"segment\"} 1"),
        "B served the segment:\n{metrics}"
    );

    assert_playable(
        &format!("http://{}/live/cam.m3u8", a.http),
        &Expect::h264_aac(320, 240),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|err| panic!("{err}\nA:\n{}", a.log()));
    // The origin's 404 passes through.
    assert_eq!(
        http_request(a.http, "GET", "/live/nothing-here.m3u8", &[], "")
            .unwrap()
            .0,
        404
    );
}

fn wait_for_playlist(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_request(addr, "GET", path, &[], "").unwrap();
        if status == 200 && body.lines().any(|l| l.contains(".ts")) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no playlist at {path}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// An HTTP origin that answers every request with a never-ending chunked FLV-like body and
/// records the request head and when its client went away.
struct EndlessOrigin {
    port: u16,
    request: Arc<Mutex<String>>,
    client_gone: Arc<AtomicBool>,
}

impl EndlessOrigin {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let request = Arc::new(Mutex::new(String::new()));
        let client_gone = Arc::new(AtomicBool::new(false));
        let (seen, gone) = (request.clone(), client_gone.clone());
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            while reader.read_line(&mut head).map(|n| n > 2).unwrap_or(false) {}
            *seen.lock().unwrap() = head;
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(b"9\r\nFLV\x01\x05\0\0\0\x09\r\n");
            // Bounded: at most 60 s of chunks, so a broken test cannot leave it running.
            for _ in 0..1200 {
                if stream.write_all(&out).is_err() {
                    gone.store(true, Ordering::SeqCst);
                    return;
                }
                out = b"4\r\n\0\0\0\0\r\n".to_vec();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            port,
            request,
            client_gone,
        }
    }
}

#[test]
fn http_flv_streams_at_once_and_closing_the_player_closes_the_origin_request() {
    let origin = EndlessOrigin::start();
    let proxy = ProxyProcess::start(PROXY, &[]).unwrap();
    proxy.register("endless", free_port(), origin.port).unwrap();

    let started = Instant::now();
    let mut player = TcpStream::connect(proxy.http).unwrap();
    player
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    player
        .write_all(b"GET /live/feed.flv?token=abc HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(3).any(|w| w == b"FLV") {
        let n = player
            .read(&mut buf)
            .expect("first bytes of a body that never ends");
        assert!(
            n > 0,
            "proxy closed: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
    let first_bytes = started.elapsed();
    assert!(
        first_bytes < Duration::from_secs(3),
        "first bytes after {first_bytes:?}"
    );
    let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: video/x-flv"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let seen = origin.request.lock().unwrap().to_ascii_lowercase();
    assert!(
        seen.starts_with("get /live/feed.flv?token=abc "),
        "query forwarded: {seen}"
    );
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http"),
        "{seen}"
    );

    let sample = |name: &str| -> f64 {
        let metrics = proxy.metrics().unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
    };
    assert_eq!(sample("originstack_proxy_http_live_sessions_active"), 1.0);

    drop(player);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !origin.client_gone.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the origin request outlived the player"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The player is gone: no longer counted, and what was sent to it is.
    assert!(eventually(Duration::from_secs(5), || sample(
        "originstack_proxy_http_live_sessions_active"
    ) == 0.0));
    assert!(sample("originstack_proxy_http_bytes_to_client_total") >= 3.0);
}

#[test]
fn http_error_answers() {
    let proxy = ProxyProcess::start(PROXY, &[]).unwrap();
    // No origin at all: 503 with a JSON body.
    let (status, body) = http_request(proxy.http, "GET", "/live/a.flv", &[], "").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    // An origin whose HTTP port refuses connections is gone: taken out of the registry, so
    // the stream has no origin left (503).
    proxy.register("dead", free_port(), free_port()).unwrap();
    let (status, body) = http_request(proxy.http, "GET", "/live/a.ts", &[], "").unwrap();
    assert_eq!(status, 503, "{body}");
    let (_, listed) = http_request(proxy.system, "GET", "/api/v1/origins", &[], "").unwrap();
    assert!(!listed.contains("\"dead\""), "{listed}");
    // One that accepts and hangs up without an answer: 502.
    let broken = TcpListener::bind("127.0.0.1:0").unwrap();
    let broken_port = broken.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for connection in broken.incoming() {
            drop(connection);
        }
    });
    proxy.register("broken", free_port(), broken_port).unwrap();
    let (status, body) = http_request(proxy.http, "GET", "/live/a.ts", &[], "").unwrap();
    assert_eq!(status, 502, "{body}");
    // Path tricks and absurd paths: 400; oversized heads: 431.
    for target in ["/live/%2e%2e/a.flv", "/live/..%5c/a.flv", "/a.flv"] {
        let (status, body) = http_request(proxy.http, "GET", target, &[], "").unwrap();
        assert_eq!(status, 400, "{target}: {body}");
    }
    let long = format!("/live/{}.flv", "x".repeat(5000));
    assert_eq!(
        http_request(proxy.http, "GET", &long, &[], "").unwrap().0,
        400
    );
    let huge = "v".repeat(40 * 1024);
    assert_eq!(
        http_request(proxy.http, "GET", "/live/a.flv", &[("X-Big", &huge)], "")
            .unwrap()
            .0,
        431
    );
    // CORS preflight and unknown files.
    let (status, _) = http_request(proxy.http, "OPTIONS", "/live/a.flv", &[], "").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        http_request(proxy.http, "GET", "/index.html", &[], "")
            .unwrap()
            .0,
        404
    );
    assert_eq!(
        http_request(proxy.http, "POST", "/live/a.flv", &[], "x")
            .unwrap()
            .0,
        405
    );
}

#[test]
fn static_files_are_served_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>player</h1>").unwrap();
    let proxy = ProxyProcess::start(
        PROXY,
        &[("PROXY_STATIC_FILES", dir.path().display().to_string())],
    )
    .unwrap();
    let (status, body) = http_request(proxy.http, "GET", "/index.html", &[], "").unwrap();
    assert_eq!((status, body.as_str()), (200, "<h1>player</h1>"));
    assert_eq!(
        http_request(proxy.http, "GET", "/missing.html", &[], "")
            .unwrap()
            .0,
        404
    );
}
