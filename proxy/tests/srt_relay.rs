//! SRT through the proxy with real peers: ffmpeg and srt-live-transmit (libsrt) as clients,
//! srt-live-transmit listeners as origins. Each test starts its own peers on free loopback
//! ports; the proxy runs in the test's runtime.

use std::{
    collections::HashMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use originstack_e2e::{ChildGuard, free_udp_port};
use originstack_proxy::{
    config::SrtLimits,
    lifecycle::Lifecycle,
    srt::{
        self, OriginResolver, ResolveError, ResolvedOrigin, SrtStats, StreamId,
        handshake::{
            Extension, Handshake, HandshakeType, RejectReason, SRT_MAGIC, ext, peer_ip_words,
        },
    },
};
use tempfile::TempDir;
use tokio::net::UdpSocket;

// ---------------------------------------------------------------------------------------------
// Proxy under test and its resolver

/// Maps `app/stream` to origins; counts the guards it handed out that are still held.
#[derive(Default)]
struct MapResolver {
    routes: HashMap<String, SocketAddr>,
    seen: Mutex<Vec<StreamId>>,
    held: Arc<AtomicUsize>,
}

struct HeldGuard(Arc<AtomicUsize>);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MapResolver {
    fn new(routes: &[(&str, SocketAddr)]) -> Arc<Self> {
        Arc::new(Self {
            routes: routes
                .iter()
                .map(|(key, addr)| (key.to_string(), *addr))
                .collect(),
            ..Default::default()
        })
    }

    fn seen(&self) -> Vec<StreamId> {
        self.seen.lock().unwrap().clone()
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl OriginResolver for MapResolver {
    fn resolve<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(stream.clone());
            let key = format!("{}/{}", stream.app, stream.stream);
            let addr = *self
                .routes
                .get(&key)
                .ok_or(ResolveError::NoOrigin { stream: key })?;
            self.held.fetch_add(1, Ordering::SeqCst);
            Ok(ResolvedOrigin {
                addr,
                guard: Box::new(HeldGuard(self.held.clone())),
            })
        })
    }
}

struct Proxy {
    addr: SocketAddr,
    stats: Arc<SrtStats>,
    lifecycle: Lifecycle,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(resolver: Arc<MapResolver>, limits: SrtLimits) -> Self {
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(SrtStats::default());
        let lifecycle = Lifecycle::new(Duration::from_secs(30), Duration::from_secs(40));
        let task = tokio::spawn(srt::serve(
            socket,
            resolver,
            limits,
            stats.clone(),
            lifecycle.clone(),
        ));
        Self {
            addr,
            stats,
            lifecycle,
            task,
        }
    }

    fn url(&self, streamid: &str) -> String {
        format!("srt://{}?streamid={streamid}", self.addr)
    }

    fn active(&self) -> u64 {
        SrtStats::get(&self.stats.sessions_active)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.lifecycle.terminate().cancel();
        self.task.abort();
    }
}

fn test_limits() -> SrtLimits {
    SrtLimits {
        idle_timeout: Duration::from_secs(3),
        ..SrtLimits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Real peers

/// Waits until some process has UDP `port` bound on loopback or any address (read from
/// /proc/net/udp so the check never takes the port itself).
async fn wait_udp_bound(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let needle = format!(":{port:04X} ");
    loop {
        let table = fs::read_to_string("/proc/net/udp").unwrap_or_default()
            + &fs::read_to_string("/proc/net/udp6").unwrap_or_default();
        if table.lines().any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").ends_with(&needle))
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `srt-live-transmit` with stdout and stderr to files in `dir`.
fn live_transmit(dir: &Path, name: &str, args: &[&str]) -> ChildGuard {
    let stdout = fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let stderr = fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    ChildGuard::spawn(
        name,
        Command::new("srt-live-transmit")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr),
    )
    .unwrap()
}

/// An SRT listener origin writing what it receives to `<dir>/origin.out`.
async fn recording_origin(dir: &Path) -> (ChildGuard, SocketAddr) {
    let port = free_udp_port();
    let origin = live_transmit(
        dir,
        "origin",
        &[
            "-a:no",
            &format!("srt://127.0.0.1:{port}?mode=listener"),
            "file://con",
        ],
    );
    wait_udp_bound(port, Duration::from_secs(5)).await;
    (origin, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// ffmpeg encoding testsrc 320x240 H.264 + AAC in real time for `seconds`, muxed to MPEG-TS
/// twice through the tee muxer: to `url` and to `<dir>/<name>.ts`, so what arrives can be
/// compared byte for byte with what was sent.
fn ffmpeg_publisher(dir: &Path, name: &str, url: &str, seconds: u32) -> ChildGuard {
    let local = dir.join(format!("{name}.ts"));
    let tee = format!("[f=mpegts]{url}|[f=mpegts]{}", local.display());
    let stderr = fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let duration = seconds.to_string();
    ChildGuard::spawn(
        name,
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &duration, "-map", "0:v", "-map", "1:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "tee", &tee])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    )
    .unwrap()
}

/// Waits for a peer to exit by itself.
async fn wait_exit(mut child: ChildGuard, timeout: Duration) -> (ChildGuard, Option<ExitStatus>) {
    tokio::task::spawn_blocking(move || {
        let status = child.wait_timeout(timeout).unwrap();
        (child, status)
    })
    .await
    .unwrap()
}

/// Waits until `path` stops growing for `quiet`.
async fn settled_len(path: &Path, quiet: Duration) -> usize {
    let mut last = usize::MAX;
    loop {
        let len = fs::metadata(path).map(|m| m.len() as usize).unwrap_or(0);
        if len == last {
            return len;
        }
        last = len;
        tokio::time::sleep(quiet).await;
    }
}

/// Codec names and the video size ffprobe finds in a file.
fn probe(path: &Path) -> (Vec<String>, Option<(u64, u64)>) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let codecs = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
        .collect();
    let size = streams
        .iter()
        .find_map(|s| Some((s["width"].as_u64()?, s["height"].as_u64()?)));
    (codecs, size)
}

fn assert_h264_aac_320x240(path: &Path) {
    let (codecs, size) = probe(path);
    assert!(
        codecs.contains(&"h264".to_owned()) && codecs.contains(&"aac".to_owned()),
        "{path:?} has {codecs:?}"
    );
    assert_eq!(size, Some((320, 240)), "{path:?}");
}

/// What the origin recorded must be what ffmpeg sent for `seconds`: a prefix of the local copy
/// missing at most its last second (libsrt drops what is still in flight or in the receiver's
/// latency window when the publisher closes; how much depends on the machine's load).
fn assert_prefix_of(received: &Path, sent: &Path, seconds: u32) {
    let received_bytes = fs::read(received).unwrap();
    let sent_bytes = fs::read(sent).unwrap();
    eprintln!(
        "{received:?}: {} of {} bytes sent",
        received_bytes.len(),
        sent_bytes.len()
    );
    assert!(
        !received_bytes.is_empty(),
        "nothing arrived at {received:?}"
    );
    assert!(
        sent_bytes.starts_with(&received_bytes),
        "{received:?} ({} bytes) differs from what was sent ({} bytes)",
        received_bytes.len(),
        sent_bytes.len()
    );
    let seconds = seconds.max(2) as usize;
    assert!(
        received_bytes.len() * seconds >= sent_bytes.len() * (seconds - 1),
        "only {} of {} bytes arrived",
        received_bytes.len(),
        sent_bytes.len()
    );
}

async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A recording origin for live/cam and a proxy resolving to it.
async fn proxy_to_recording_origin(
    dir: &Path,
    limits: SrtLimits,
) -> (ChildGuard, Arc<MapResolver>, Proxy) {
    let (origin, origin_addr) = recording_origin(dir).await;
    let resolver = MapResolver::new(&[("live/cam", origin_addr)]);
    let proxy = Proxy::start(resolver.clone(), limits).await;
    (origin, resolver, proxy)
}

/// Waits for the ffmpeg peer `name` to finish, successfully.
async fn wait_ffmpeg_done(dir: &Path, name: &str, ffmpeg: ChildGuard) {
    let (_ffmpeg, status) = wait_exit(ffmpeg, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} failed: {}",
        read_log(dir, name)
    );
}

/// Once the publisher (of `seconds` of media) is done: the recording origin wrote what the
/// publisher sent.
async fn assert_recorded_intact(dir: &Path, seconds: u32) -> PathBuf {
    let recorded = dir.join("origin.out");
    settled_len(&recorded, Duration::from_millis(500)).await;
    assert_prefix_of(&recorded, &dir.join("publisher.ts"), seconds);
    recorded
}

/// The resolver was asked once, for live/cam, in the given mode.
fn assert_resolved_once(resolver: &MapResolver, publish: bool) {
    let seen = resolver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (
            seen[0].app.as_str(),
            seen[0].stream.as_str(),
            seen[0].publish
        ),
        ("live", "cam", publish)
    );
}

/// Every session is gone and every origin guard released.
async fn wait_cleanup(proxy: &Proxy, resolver: &MapResolver) {
    wait_until("session cleanup", Duration::from_secs(5), || {
        proxy.active() == 0 && resolver.held() == 0
    })
    .await;
}

const PUBLISH: &str = "#!::r=live/cam,m=publish";

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_reaches_the_origin_intact() {
    let dir = TempDir::new().unwrap();
    let (_origin, resolver, proxy) = proxy_to_recording_origin(dir.path(), test_limits()).await;

    let publisher = ffmpeg_publisher(dir.path(), "publisher", &proxy.url(PUBLISH), 4);
    wait_ffmpeg_done(dir.path(), "publisher", publisher).await;

    let recorded = assert_recorded_intact(dir.path(), 4).await;
    assert_h264_aac_320x240(&recorded);

    assert_resolved_once(&resolver, true);
    // ffmpeg closed the connection: the session is gone and its guard released.
    wait_cleanup(&proxy, &resolver).await;
    assert_eq!(SrtStats::get(&proxy.stats.sessions_total), 1);
    assert!(SrtStats::get(&proxy.stats.to_origin) > 100);
}

fn read_log(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Position of `received` inside `sent` (a player joins a live stream midway).
fn find_within(received: &[u8], sent: &[u8]) -> Option<usize> {
    let probe = &received[..received.len().min(1316)];
    sent.windows(probe.len())
        .enumerate()
        .filter(|(_, window)| *window == probe)
        .map(|(at, _)| at)
        .find(|&at| sent[at..].starts_with(received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_an_origin_fed_by_ffmpeg() {
    let dir = TempDir::new().unwrap();
    let (udp_port, srt_port) = (free_udp_port(), free_udp_port());
    let _origin = live_transmit(
        dir.path(),
        "origin",
        &[
            &format!("udp://127.0.0.1:{udp_port}"),
            &format!("srt://127.0.0.1:{srt_port}?mode=listener"),
        ],
    );
    wait_udp_bound(srt_port, Duration::from_secs(5)).await;
    let resolver = MapResolver::new(&[("live/cam", SocketAddr::from(([127, 0, 0, 1], srt_port)))]);
    let proxy = Proxy::start(resolver.clone(), test_limits()).await;

    let feeder = ffmpeg_publisher(
        dir.path(),
        "feeder",
        &format!("udp://127.0.0.1:{udp_port}?pkt_size=1316"),
        6,
    );
    let mut player = live_transmit(
        dir.path(),
        "player",
        &[
            "-a:no",
            &proxy.url("#!::r=live/cam,m=request"),
            "file://con",
        ],
    );
    wait_ffmpeg_done(dir.path(), "feeder", feeder).await;
    let played = dir.path().join("player.out");
    settled_len(&played, Duration::from_millis(500)).await;
    player.kill();

    let received = fs::read(&played).unwrap();
    let sent = fs::read(dir.path().join("feeder.ts")).unwrap();
    eprintln!("played {} bytes of {} fed", received.len(), sent.len());
    assert!(
        received.len() > sent.len() / 2,
        "only {} of {} bytes played\n{}",
        received.len(),
        sent.len(),
        read_log(dir.path(), "player")
    );
    assert!(
        find_within(&received, &sent).is_some(),
        "what played is not a contiguous part of what was fed"
    );
    assert_h264_aac_320x240(&played);
    assert_resolved_once(&resolver, false);
    wait_cleanup(&proxy, &resolver).await;
}

/// Datagrams a hostile or broken peer may send to the SRT port.
fn garbage_datagrams(proxy: SocketAddr, count: usize) -> Vec<Vec<u8>> {
    let conclusion = Handshake {
        version: 5,
        encryption: 0,
        extension_field: 5,
        initial_sequence: 1,
        mtu: 1500,
        flow_window: 8192,
        kind: HandshakeType::Conclusion,
        socket_id: 77,
        cookie: 0x1234_5678,
        peer_ip: peer_ip_words(proxy.ip()),
        extensions: vec![Extension::stream_id(PUBLISH).unwrap()],
    };
    (0..count)
        .map(|i| match i % 6 {
            0 => (0..rand::random_range(0..1600))
                .map(|_| rand::random::<u8>())
                .collect(),
            // A data packet for a socket id nobody has.
            1 => {
                let mut packet = rand::random::<[u8; 200]>().to_vec();
                packet[0] &= 0x7f;
                packet
            }
            // A handshake cut short.
            2 => {
                let mut packet = conclusion.encode_packet(0, 0);
                packet.truncate(40);
                packet
            }
            // A conclusion with a cookie the proxy never issued (a blind spoofer).
            3 => conclusion.encode_packet(0, 0),
            // A shutdown for a random socket.
            4 => originstack_proxy::srt::packet::shutdown_packet(0, rand::random()),
            // Longer than any SRT packet.
            _ => vec![0x80; 3000],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_do_not_disturb_a_running_session() {
    let dir = TempDir::new().unwrap();
    let (_origin, resolver, proxy) = proxy_to_recording_origin(dir.path(), test_limits()).await;
    let publisher = ffmpeg_publisher(dir.path(), "publisher", &proxy.url(PUBLISH), 4);

    let garbage = garbage_datagrams(proxy.addr, 3000);
    let sent = garbage.len() as u64;
    let target = proxy.addr;
    let thrower = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for datagram in garbage {
            socket.send_to(&datagram, target).await.unwrap();
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    });

    wait_ffmpeg_done(dir.path(), "publisher", publisher).await;
    thrower.await.unwrap();
    let recorded = assert_recorded_intact(dir.path(), 4).await;
    assert_h264_aac_320x240(&recorded);
    assert_eq!(
        SrtStats::get(&proxy.stats.garbage),
        sent,
        "every garbage datagram is counted, nothing else"
    );
    assert_eq!(
        SrtStats::get(&proxy.stats.sessions_total),
        1,
        "no session from a forged conclusion"
    );
    wait_cleanup(&proxy, &resolver).await;
}

/// Plays `url` with ffprobe (libsrt caller; srt-live-transmit exits 0 even when refused):
/// its exit status, how long it took, and its log.
async fn connect_once(url: &str) -> (Option<ExitStatus>, Duration, String) {
    let started = Instant::now();
    let url = url.to_owned();
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::process::Command::new("ffprobe")
            .args(["-v", "error", &url])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match output {
        Ok(Ok(output)) => (
            Some(output.status),
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        _ => (None, started.elapsed(), "ffprobe did not finish".to_owned()),
    }
}

/// A caller written with the proxy's codec, so the exact answer can be checked: induction,
/// then a conclusion with `streamid` (and a cipher when `encryption` is non-zero).
async fn raw_handshake(
    proxy: SocketAddr,
    streamid: Option<&str>,
    encryption: u16,
) -> HandshakeType {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut request = Handshake {
        version: 4,
        encryption: 0,
        extension_field: 2,
        initial_sequence: 1000,
        mtu: 1500,
        flow_window: 8192,
        kind: HandshakeType::Induction,
        socket_id: 4242,
        cookie: 0,
        peer_ip: peer_ip_words(proxy.ip()),
        extensions: Vec::new(),
    };
    let mut buf = [0u8; 1500];
    let answer = |len: usize, buf: &[u8]| Handshake::decode_packet(&buf[..len]).unwrap().1;
    socket
        .send_to(&request.encode_packet(0, 0), proxy)
        .await
        .unwrap();
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let induction = answer(len, &buf);
    if let HandshakeType::Rejection(_) = induction.kind {
        return induction.kind;
    }
    assert_eq!(
        (induction.version, induction.extension_field),
        (5, SRT_MAGIC)
    );
    // libsrt 1.5.1's HSREQ: version, flags, 120 ms receiver latency.
    request.extensions = vec![Extension {
        kind: ext::HSREQ,
        contents: vec![0x0001_0501, 0xbf, 120 << 16],
    }];
    request
        .extensions
        .extend(streamid.map(|id| Extension::stream_id(id).unwrap()));
    request = Handshake {
        version: 5,
        encryption,
        extension_field: 5,
        kind: HandshakeType::Conclusion,
        cookie: induction.cookie,
        ..request
    };
    socket
        .send_to(&request.encode_packet(1000, 0), proxy)
        .await
        .unwrap();
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    answer(len, &buf).kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_origins_are_refused_without_stalling_other_sessions() {
    let dir = TempDir::new().unwrap();
    let (_origin, origin_addr) = recording_origin(dir.path()).await;
    // An origin that swallows everything, and one where nothing listens.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let resolver = MapResolver::new(&[
        ("live/cam", origin_addr),
        ("live/blackhole", blackhole.local_addr().unwrap()),
        ("live/closed", closed),
    ]);
    let proxy = Proxy::start(resolver.clone(), test_limits()).await;
    let publisher = ffmpeg_publisher(dir.path(), "publisher", &proxy.url(PUBLISH), 5);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (blackhole_url, closed_url) = (
        proxy.url("#!::r=live/blackhole,m=request"),
        proxy.url("#!::r=live/closed,m=request"),
    );
    let (swallowed, refused) =
        tokio::join!(connect_once(&blackhole_url), connect_once(&closed_url));
    for (name, (status, took, log)) in [("blackhole", swallowed), ("closed", refused)] {
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name}: caller should fail: {log}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{name}: refusal took {took:?}"
        );
        eprintln!("{name}: refused after {took:?}: {}", log.trim());
    }

    wait_ffmpeg_done(dir.path(), "publisher", publisher).await;
    assert_recorded_intact(dir.path(), 5).await;
    assert!(SrtStats::get(&proxy.stats.rejected) >= 2);
    wait_cleanup(&proxy, &resolver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_the_proxy_cannot_serve_are_refused_at_once() {
    let dir = TempDir::new().unwrap();
    let (_origin, resolver, proxy) = proxy_to_recording_origin(dir.path(), test_limits()).await;
    let cases = [
        (
            "encrypted",
            proxy.url(&format!("{PUBLISH}&passphrase=0123456789abcdef")),
            Some(PUBLISH),
            2,
            RejectReason::UNSECURE,
        ),
        (
            "bad mode",
            proxy.url("#!::r=live/cam,m=sideways"),
            Some("#!::r=live/cam,m=sideways"),
            0,
            RejectReason::BAD_MODE,
        ),
        (
            "unknown stream",
            proxy.url("#!::r=live/nobody,m=request"),
            Some("live/nobody"),
            0,
            RejectReason::DOWN,
        ),
        (
            "no stream id",
            format!("srt://{}", proxy.addr),
            None,
            0,
            RejectReason::BAD_REQUEST,
        ),
    ];
    for (name, url, streamid, encryption, reason) in cases {
        // libsrt sees a refusal, not its 3 s connect timeout.
        let (status, took, log) = connect_once(&url).await;
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name}: caller should fail: {log}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "{name}: refusal took {took:?}: {log}"
        );
        // And the exact reason is on the wire.
        assert_eq!(
            raw_handshake(proxy.addr, streamid, encryption).await,
            HandshakeType::Rejection(reason),
            "{name}"
        );
    }
    assert_eq!(SrtStats::get(&proxy.stats.rejected), 8);
    assert_eq!(
        resolver.seen().len(),
        2,
        "only the well-formed unknown stream reaches the resolver"
    );
    assert_eq!(proxy.active(), 0);
    assert_eq!(SrtStats::get(&proxy.stats.sessions_total), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_time_out_and_the_origin_is_told() {
    let dir = TempDir::new().unwrap();
    let limits = SrtLimits {
        idle_timeout: Duration::from_millis(1500),
        ..SrtLimits::default()
    };
    let (origin, resolver, proxy) = proxy_to_recording_origin(dir.path(), limits).await;
    // A publisher with nothing to send: only keepalives and ACKs flow.
    let idle_source = format!("udp://127.0.0.1:{}", free_udp_port());
    let mut client = live_transmit(
        dir.path(),
        "client",
        &["-a:no", &idle_source, &proxy.url(PUBLISH)],
    );
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    })
    .await;
    // Keepalives keep it open well past the idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(proxy.active(), 1, "a quiet but alive session stays");

    // The client vanishes without a SHUTDOWN.
    client.kill();
    let vanished = Instant::now();
    wait_until("idle session cleanup", Duration::from_secs(4), || {
        proxy.active() == 0 && resolver.held() == 0
    })
    .await;
    // The proxy's SHUTDOWN ends the origin's connection; on its own libsrt would wait 5 s+.
    let (_origin, status) = wait_exit(origin, Duration::from_secs(10)).await;
    assert!(
        status.is_some(),
        "the origin kept the connection: {}",
        read_log(dir.path(), "origin")
    );
    let took = vanished.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "the origin noticed only after {took:?}"
    );
    eprintln!("session gone and origin told {took:?} after the client vanished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_callers_and_keeps_relaying() {
    let dir = TempDir::new().unwrap();
    let (_origin, resolver, proxy) = proxy_to_recording_origin(dir.path(), test_limits()).await;
    let publisher = ffmpeg_publisher(dir.path(), "publisher", &proxy.url(PUBLISH), 5);
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    })
    .await;

    let lifecycle = proxy.lifecycle.clone();
    let drain = tokio::spawn(async move { lifecycle.drain().await });
    wait_until("draining", Duration::from_secs(1), || {
        proxy.lifecycle.is_draining()
    })
    .await;
    let (status, took, log) = connect_once(&proxy.url("#!::r=live/cam,m=request")).await;
    assert!(
        status.is_some_and(|s| !s.success()) && took < Duration::from_millis(2500),
        "{took:?} {log}"
    );
    let refusal = raw_handshake(proxy.addr, Some("#!::r=live/cam,m=request"), 0).await;
    assert_eq!(refusal, HandshakeType::Rejection(RejectReason::DOWN));

    wait_ffmpeg_done(dir.path(), "publisher", publisher).await;
    assert_recorded_intact(dir.path(), 5).await;
    // The last session ended: the listener stops and the drain completes before its grace.
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("drain finished")
        .unwrap();
    wait_until("listener stopped", Duration::from_secs(2), || {
        proxy.task.is_finished()
    })
    .await;
    assert_eq!(SrtStats::get(&proxy.stats.sessions_total), 1);
    wait_cleanup(&proxy, &resolver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_cannot_take_more_than_its_share() {
    let dir = TempDir::new().unwrap();
    let limits = SrtLimits {
        max_sessions_per_client: 1,
        ..test_limits()
    };
    let (_origin, _resolver, proxy) = proxy_to_recording_origin(dir.path(), limits).await;
    let publisher = ffmpeg_publisher(dir.path(), "publisher", &proxy.url(PUBLISH), 5);
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    })
    .await;
    // A second caller from the same IP (127.0.0.1) is refused at the induction already.
    assert_eq!(
        raw_handshake(proxy.addr, Some("#!::r=live/other,m=request"), 0).await,
        HandshakeType::Rejection(RejectReason::OVERLOAD)
    );
    assert_eq!(SrtStats::get(&proxy.stats.refused_per_client), 1);
    assert_eq!(proxy.active(), 1);
    wait_ffmpeg_done(dir.path(), "publisher", publisher).await;
    assert_recorded_intact(dir.path(), 5).await;
}
