//! HTTP-FLV fan-out through the proxy binary, in front of an FLV origin of the test's own that
//! numbers its tags: players of one stream share one origin request, every player gets the
//! header, the sequence headers and then every tag from a keyframe on, a player that stops
//! reading is skipped and then closed without holding the others back, and the switch and the
//! query keep requests apart.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use originstack_e2e::{ProxyProcess, eventually, free_port};
use originstack_proxy::flv::{FlvDecoder, FlvItem, TagKind};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");
const KEYFRAME_EVERY: u32 = 10;

/// An FLV origin: every request gets a 200 and a never-ending FLV body (header, onMetaData,
/// AVC and AAC sequence headers, then video tags numbered 0, 1, 2, ... with a keyframe every
/// [`KEYFRAME_EVERY`], each `tag_size` bytes, one per `pace`).
struct FlvOrigin {
    port: u16,
    requests: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn tag(tag_type: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![tag_type];
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    out.extend_from_slice(&[(timestamp >> 24) as u8, 0, 0, 0]);
    out.extend_from_slice(data);
    out.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    out
}

fn media(n: u32, tag_size: usize) -> Vec<u8> {
    let first = if n.is_multiple_of(KEYFRAME_EVERY) {
        0x17
    } else {
        0x27
    };
    let mut data = vec![first, 0x01, 0, 0, 0];
    data.extend_from_slice(&n.to_be_bytes());
    data.resize(tag_size.max(data.len()), 0xab);
    tag(9, n * 40, &data)
}

impl FlvOrigin {
    fn start(tag_size: usize, pace: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, opened, stopping) = (requests.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let (open, stop) = (opened.clone(), stopping.clone());
                std::thread::spawn(move || {
                    open.fetch_add(1, Ordering::SeqCst);
                    serve(stream, tag_size, pace, &stop);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            requests,
            open,
            stop,
        }
    }
}

fn serve(mut stream: TcpStream, tag_size: usize, pace: Duration, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n".to_vec();
    out.extend_from_slice(b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
    out.extend(tag(18, 0, b"\x02\x00\x0aonMetaData\x08\0\0\0\0\0\0\x09"));
    out.extend(tag(9, 0, &[0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f]));
    out.extend(tag(8, 0, &[0xaf, 0x00, 0x12, 0x10]));
    // Bounded so a broken test cannot leave it running: at most 120 s of tags.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        out.extend(media(n, tag_size));
        if stream.write_all(&out).is_err() {
            return;
        }
        out.clear();
        n += 1;
        std::thread::sleep(pace);
    }
}

impl Drop for FlvOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_for(origin: &FlvOrigin, envs: &[(&str, String)]) -> ProxyProcess {
    let proxy = ProxyProcess::start(PROXY, envs).unwrap();
    proxy
        .register("flv-origin", free_port(), origin.port)
        .unwrap();
    proxy
}

/// A player: the response head read, the FLV body decoded as it arrives.
struct Player {
    socket: TcpStream,
    decoder: FlvDecoder,
    /// An HTTP/1.0 body, delimited by the connection's end rather than chunked.
    until_close: bool,
}

impl Player {
    fn connect(proxy: &ProxyProcess, path: &str) -> Self {
        Self::with_head(
            proxy,
            &[&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")],
        )
    }

    /// Sends its request head in `pieces`, pausing between them.
    fn with_head(proxy: &ProxyProcess, pieces: &[&str]) -> Self {
        let mut socket = TcpStream::connect(proxy.http).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            socket.write_all(piece.as_bytes()).unwrap();
        }
        Self {
            socket,
            decoder: FlvDecoder::new(1 << 20),
            until_close: pieces.concat().contains(" HTTP/1.0\r\n"),
        }
    }

    /// Bytes up to and including `end`, read one at a time (never past it).
    fn read_until(&mut self, end: &[u8]) -> String {
        let mut read = Vec::new();
        let mut byte = [0u8; 1];
        while !read.ends_with(end) {
            self.socket
                .read_exact(&mut byte)
                .expect("more of the response");
            read.push(byte[0]);
        }
        String::from_utf8_lossy(&read).into_owned()
    }

    fn head(&mut self) -> String {
        self.read_until(b"\r\n\r\n")
    }

    /// The next FLV item; chunk framing (HTTP/1.1) is stripped here.
    fn next(&mut self) -> FlvItem {
        loop {
            if let Some(item) = self.decoder.next_item().expect("FLV from the proxy") {
                return item;
            }
            if self.until_close {
                let mut data = [0u8; 4096];
                let n = self.socket.read(&mut data).expect("more of the body");
                assert!(n > 0, "the body ended");
                self.decoder.push(&data[..n]);
                continue;
            }
            let size = self.chunk_size();
            assert!(size > 0, "the body ended");
            let mut data = vec![0; size + 2];
            self.socket.read_exact(&mut data).expect("a chunk");
            self.decoder.push(&data[..size]);
        }
    }

    fn chunk_size(&mut self) -> usize {
        let line = self.read_until(b"\r\n");
        usize::from_str_radix(line.trim(), 16).expect("a hex chunk size")
    }

    /// Reads the start of the stream and `count` media tags after it, checking that it starts
    /// with the header, onMetaData and both sequence headers, that the first media tag is a
    /// keyframe and that the numbers then follow one another.
    fn check_stream(&mut self, count: usize) {
        let head = self.head().to_ascii_lowercase();
        assert!(head.starts_with("http/1."), "{head}");
        assert_eq!(&head[8..13], " 200 ", "{head}");
        assert_eq!(
            head.contains("transfer-encoding: chunked"),
            !self.until_close,
            "{head}"
        );
        assert!(head.contains("content-type: video/x-flv"), "{head}");
        assert!(matches!(self.next(), FlvItem::Header(_)));
        let kinds: Vec<TagKind> = (0..3).map(|_| self.kind_of_next()).collect();
        assert_eq!(
            kinds,
            [
                TagKind::Script,
                TagKind::VideoSequenceHeader,
                TagKind::AudioSequenceHeader
            ]
        );
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let FlvItem::Tag { kind, bytes } = self.next() else {
                panic!("a second header")
            };
            let n = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            match previous {
                None => {
                    assert_eq!(kind, TagKind::Keyframe, "tag {n} starts the player");
                    assert!(n.is_multiple_of(KEYFRAME_EVERY));
                }
                Some(p) => assert_eq!(n, p + 1, "no tag lost or repeated"),
            }
            previous = Some(n);
        }
    }

    fn kind_of_next(&mut self) -> TagKind {
        match self.next() {
            FlvItem::Tag { kind, .. } => kind,
            FlvItem::Header(_) => panic!("a second header"),
        }
    }
}

fn sample(proxy: &ProxyProcess, name: &str) -> f64 {
    let metrics = proxy.metrics().unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
}

#[test]
fn players_of_a_stream_share_one_origin_request_and_each_starts_at_a_keyframe() {
    let origin = FlvOrigin::start(200, Duration::from_millis(4));
    let proxy = proxy_for(&origin, &[]);
    // Twenty players arriving over half a second: most join in the middle of a GOP.
    let players: Vec<_> = (0..20)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(25));
            let mut player = Player::connect(&proxy, "/live/feed.flv");
            std::thread::spawn(move || {
                player.check_stream(200 + i * 7);
                player
            })
        })
        .collect();
    let players: Vec<Player> = players.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        1,
        "one origin request for twenty players"
    );
    assert_eq!(sample(&proxy, "originstack_proxy_http_fanout_streams"), 1.0);
    assert_eq!(
        sample(&proxy, "originstack_proxy_http_live_sessions_active"),
        20.0
    );

    // The last player gone, the origin request (and the stream's lease) goes too.
    drop(players);
    assert!(
        eventually(Duration::from_secs(10), || origin
            .open
            .load(Ordering::SeqCst)
            == 0),
        "the shared origin request outlived its players"
    );
    assert!(eventually(Duration::from_secs(5), || sample(
        &proxy,
        "originstack_proxy_http_fanout_streams"
    ) == 0.0));
    // A new player opens a new one.
    Player::connect(&proxy, "/live/feed.flv").check_stream(30);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 2);
}

/// Reads raw bytes from `socket` until the proxy closes it, `pause` after each read; true if
/// it was closed within `within`.
fn closed_while_reading(mut socket: TcpStream, pause: Duration, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buffer = vec![0u8; 16 * 1024];
    while Instant::now() < deadline {
        match socket.read(&mut buffer) {
            Ok(0) => return true,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
            Ok(_) => std::thread::sleep(pause),
        }
    }
    false
}

#[test]
fn slow_and_stalled_players_are_cut_and_hold_nobody_back() {
    // 16 KiB tags every 2 ms (8 MB/s) against a backlog of 16 tags.
    let origin = FlvOrigin::start(16 * 1024, Duration::from_millis(2));
    let proxy = proxy_for(
        &origin,
        &[
            ("PROXY_HTTP_FANOUT_BACKLOG", "16".into()),
            ("PROXY_HTTP_WRITE_TIMEOUT", "2s".into()),
        ],
    );
    // Reads a tenth of the stream's rate: falls a backlog behind, skips to a keyframe, again,
    // and is closed after the third skip.
    let slow = Player::connect(&proxy, "/live/feed.flv").socket;
    let slow = std::thread::spawn(move || {
        closed_while_reading(slow, Duration::from_millis(20), Duration::from_secs(60))
    });
    // Reads nothing at all: its body is never polled again, the write timeout closes it.
    let stalled = Player::connect(&proxy, "/live/feed.flv").socket;
    std::thread::sleep(Duration::from_secs(6));
    let stalled = std::thread::spawn(move || {
        closed_while_reading(stalled, Duration::ZERO, Duration::from_secs(30))
    });
    // Meanwhile a player that keeps up gets every tag in order.
    let mut reader = Player::connect(&proxy, "/live/feed.flv");
    reader.check_stream(2000);
    assert!(slow.join().unwrap(), "the slow player was never closed");
    assert!(
        stalled.join().unwrap(),
        "the stalled player was never closed"
    );
    assert!(sample(&proxy, "originstack_proxy_http_fanout_skips_total") >= 3.0);
    assert!(sample(&proxy, "originstack_proxy_http_fanout_dropped_total") >= 1.0);
    for _ in 0..500 {
        let FlvItem::Tag { .. } = reader.next() else {
            panic!("a second header")
        };
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn the_switch_and_the_query_keep_origin_requests_apart() {
    let origin = FlvOrigin::start(200, Duration::from_millis(4));
    // Different queries (per-player tokens an origin may check) do not share a request.
    let proxy = proxy_for(&origin, &[]);
    let mut a = Player::connect(&proxy, "/live/feed.flv?token=a");
    let mut b = Player::connect(&proxy, "/live/feed.flv?token=b");
    a.check_stream(20);
    b.check_stream(20);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 2);
    drop((a, b));
    drop(proxy);

    // PROXY_HTTP_FANOUT=off: a request per player, as before.
    let before = origin.requests.load(Ordering::SeqCst);
    let proxy = proxy_for(&origin, &[("PROXY_HTTP_FANOUT", "off".into())]);
    let players: Vec<Player> = (0..3)
        .map(|_| {
            let mut player = Player::connect(&proxy, "/live/feed.flv");
            player.check_stream(20);
            player
        })
        .collect();
    assert_eq!(origin.requests.load(Ordering::SeqCst) - before, 3);
    assert_eq!(sample(&proxy, "originstack_proxy_http_fanout_streams"), 0.0);
    drop(players);
}

#[test]
fn http_1_0_players_and_heads_sent_in_pieces_are_served_too() {
    let origin = FlvOrigin::start(200, Duration::from_millis(4));
    let proxy = proxy_for(&origin, &[]);
    // HTTP/1.0 has no chunks: the body ends with the connection.
    let mut old = Player::with_head(&proxy, &["GET /live/feed.flv HTTP/1.0\r\n\r\n"]);
    // A head that arrives in two segments.
    let mut split = Player::with_head(
        &proxy,
        &[
            "GET /live/feed.flv HTTP/1.1\r\nHo",
            "st: localhost\r\nUser-Agent: slow\r\n\r\n",
        ],
    );
    let mut plain = Player::connect(&proxy, "/live/feed.flv");
    old.check_stream(100);
    split.check_stream(100);
    plain.check_stream(100);
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        sample(&proxy, "originstack_proxy_http_live_sessions_active"),
        3.0
    );
    // Players that leave are noticed while they wait for the next tag.
    drop((old, split, plain));
    assert!(eventually(Duration::from_secs(10), || sample(
        &proxy,
        "originstack_proxy_http_live_sessions_active"
    ) == 0.0));
}
