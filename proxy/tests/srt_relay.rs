//! SRT through the proxy with real peers: ffmpeg and srt-live-transmit (libsrt) as clients,
//! srt-live-transmit listeners as origins. Each test starts its own peers on free loopback
//! ports; the proxy runs in the test's runtime.

mod support;

use std::{
    collections::HashMap,
    fs,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use originstack_e2e::{
    LiveTransmit, Publisher, assert_plays_published, eventually, free_udp_port, probe,
};
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
use support::{Counted, log_to_test_output};
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
            Ok(ResolvedOrigin {
                addr,
                guard: Box::new(Counted::new(&self.held)),
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
        log_to_test_output();
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
// Real peers (srt-live-transmit origins and players, ffmpeg publishers: `originstack_e2e`)

/// ffmpeg publishing `seconds` of testsrc 320x240 H.264 + AAC in real time to `url` as
/// MPEG-TS, writing the very bytes it sends to `copy` too, so what arrives can be compared
/// byte for byte with what was sent.
fn publish(url: &str, copy: &Path, seconds: u64) -> Publisher {
    Publisher::builder(url)
        .duration(Duration::from_secs(seconds))
        .copy_to(copy)
        .start()
        .unwrap()
}

/// What the origin recorded must be what ffmpeg sent for `seconds`: a prefix of the local copy
/// missing at most its last second (libsrt drops what is still in flight or in the receiver's
/// latency window when the publisher closes; how much depends on the machine's load).
fn assert_prefix_of(received: &Path, sent: &Path, seconds: u64) {
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

fn wait_until(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    assert!(
        eventually(timeout, condition),
        "{what} not reached within {timeout:?}"
    );
}

/// A recording origin for live/cam and a proxy resolving to it.
async fn proxy_to_recording_origin(limits: SrtLimits) -> (LiveTransmit, Arc<MapResolver>, Proxy) {
    let (origin, origin_addr) = LiveTransmit::recording_listener().unwrap();
    let resolver = MapResolver::new(&[("live/cam", origin_addr)]);
    let proxy = Proxy::start(resolver.clone(), limits).await;
    (origin, resolver, proxy)
}

/// Once the publisher (of `seconds` of media, a copy in `sent`) is done: the recording origin
/// wrote what the publisher sent.
fn assert_recorded_intact(origin: &LiveTransmit, sent: &Path, seconds: u64) {
    origin.wait_output_settled(Duration::from_millis(500));
    assert_prefix_of(origin.output(), sent, seconds);
}

/// What `path` holds decodes as H.264 + AAC 320x240, what the publishers send.
fn assert_media(path: &Path) {
    assert_plays_published(path.to_str().unwrap()).unwrap();
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
fn wait_cleanup(proxy: &Proxy, resolver: &MapResolver) {
    wait_until("session cleanup", Duration::from_secs(5), || {
        proxy.active() == 0 && resolver.held() == 0
    });
}

const PUBLISH: &str = "#!::r=live/cam,m=publish";
const FINISH: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_reaches_the_origin_intact() {
    let dir = TempDir::new().unwrap();
    let sent = dir.path().join("publisher.ts");
    let (origin, resolver, proxy) = proxy_to_recording_origin(test_limits()).await;

    let mut publisher = publish(&proxy.url(PUBLISH), &sent, 4);
    publisher.wait_done(FINISH).unwrap();

    assert_recorded_intact(&origin, &sent, 4);
    assert_media(origin.output());

    assert_resolved_once(&resolver, true);
    // ffmpeg closed the connection: the session is gone and its guard released.
    wait_cleanup(&proxy, &resolver);
    assert_eq!(SrtStats::get(&proxy.stats.sessions_total), 1);
    assert!(SrtStats::get(&proxy.stats.to_origin) > 100);
    // Each SRT data packet is a 16-byte header and up to 1316 bytes of TS.
    let (datagrams, bytes) = (
        SrtStats::get(&proxy.stats.to_origin),
        SrtStats::get(&proxy.stats.bytes_to_origin),
    );
    assert!(
        (16 * datagrams..=1500 * datagrams).contains(&bytes),
        "{bytes} bytes in {datagrams} datagrams"
    );
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
    let fed = dir.path().join("feeder.ts");
    let input = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let (_origin, origin_addr) = LiveTransmit::udp_fed_listener(input).unwrap();
    let resolver = MapResolver::new(&[("live/cam", origin_addr)]);
    let proxy = Proxy::start(resolver.clone(), test_limits()).await;

    let mut feeder = publish(&format!("udp://{input}?pkt_size=1316"), &fed, 6);
    let mut player = LiveTransmit::record(&proxy.url("#!::r=live/cam,m=request")).unwrap();
    feeder.wait_done(FINISH).unwrap();
    player.wait_output_settled(Duration::from_millis(500));
    player.kill();

    let received = fs::read(player.output()).unwrap();
    let sent = fs::read(&fed).unwrap();
    eprintln!("played {} bytes of {} fed", received.len(), sent.len());
    assert!(
        received.len() > sent.len() / 2,
        "only {} of {} bytes played\n{}",
        received.len(),
        sent.len(),
        player.log()
    );
    assert!(
        find_within(&received, &sent).is_some(),
        "what played is not a contiguous part of what was fed"
    );
    assert_media(player.output());
    assert_resolved_once(&resolver, false);
    wait_cleanup(&proxy, &resolver);
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
    let sent_copy = dir.path().join("publisher.ts");
    let (origin, resolver, proxy) = proxy_to_recording_origin(test_limits()).await;
    let mut publisher = publish(&proxy.url(PUBLISH), &sent_copy, 4);

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

    publisher.wait_done(FINISH).unwrap();
    thrower.await.unwrap();
    assert_recorded_intact(&origin, &sent_copy, 4);
    assert_media(origin.output());
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
    wait_cleanup(&proxy, &resolver);
}

/// Plays `url` once with ffprobe (a libsrt caller; srt-live-transmit exits 0 even when
/// refused): whether it failed, with ffprobe's complaint, and how long that took.
async fn connect_once(url: &str) -> (Result<String, String>, Duration) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let played = probe(&url, Duration::from_secs(15));
        let outcome = match played {
            Ok(found) => Ok(format!("played {found:?}")),
            Err(err) => Err(format!("{err:#}")),
        };
        (outcome, started.elapsed())
    })
    .await
    .unwrap()
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
    let sent = dir.path().join("publisher.ts");
    let (origin, origin_addr) = LiveTransmit::recording_listener().unwrap();
    // An origin that swallows everything, and one where nothing listens.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let resolver = MapResolver::new(&[
        ("live/cam", origin_addr),
        ("live/blackhole", blackhole.local_addr().unwrap()),
        ("live/closed", closed),
    ]);
    let proxy = Proxy::start(resolver.clone(), test_limits()).await;
    let mut publisher = publish(&proxy.url(PUBLISH), &sent, 5);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (blackhole_url, closed_url) = (
        proxy.url("#!::r=live/blackhole,m=request"),
        proxy.url("#!::r=live/closed,m=request"),
    );
    let (swallowed, refused) =
        tokio::join!(connect_once(&blackhole_url), connect_once(&closed_url));
    for (name, (outcome, took)) in [("blackhole", swallowed), ("closed", refused)] {
        let Err(log) = &outcome else {
            panic!("{name}: caller should fail: {outcome:?}");
        };
        assert!(
            took < Duration::from_secs(5),
            "{name}: refusal took {took:?}"
        );
        eprintln!("{name}: refused after {took:?}: {}", log.trim());
    }

    publisher.wait_done(FINISH).unwrap();
    assert_recorded_intact(&origin, &sent, 5);
    assert!(SrtStats::get(&proxy.stats.rejected) >= 2);
    wait_cleanup(&proxy, &resolver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_the_proxy_cannot_serve_are_refused_at_once() {
    let (_origin, resolver, proxy) = proxy_to_recording_origin(test_limits()).await;
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
        let (outcome, took) = connect_once(&url).await;
        let Err(log) = &outcome else {
            panic!("{name}: caller should fail: {outcome:?}");
        };
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
    let limits = SrtLimits {
        idle_timeout: Duration::from_millis(1500),
        ..SrtLimits::default()
    };
    let (mut origin, resolver, proxy) = proxy_to_recording_origin(limits).await;
    // A publisher with nothing to send: only keepalives and ACKs flow.
    let idle_source = format!("udp://127.0.0.1:{}", free_udp_port());
    let mut client = LiveTransmit::start(&["-a:no", &idle_source, &proxy.url(PUBLISH)]).unwrap();
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    });
    // Keepalives keep it open well past the idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(proxy.active(), 1, "a quiet but alive session stays");

    // The client vanishes without a SHUTDOWN.
    client.kill();
    let vanished = Instant::now();
    wait_until("idle session cleanup", Duration::from_secs(4), || {
        proxy.active() == 0 && resolver.held() == 0
    });
    // The proxy's SHUTDOWN ends the origin's connection; on its own libsrt would wait 5 s+.
    let status = origin.wait(Duration::from_secs(10)).unwrap();
    assert!(
        status.is_some(),
        "the origin kept the connection: {}",
        origin.log()
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
    let sent = dir.path().join("publisher.ts");
    let (origin, resolver, proxy) = proxy_to_recording_origin(test_limits()).await;
    let mut publisher = publish(&proxy.url(PUBLISH), &sent, 5);
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    });

    let lifecycle = proxy.lifecycle.clone();
    let drain = tokio::spawn(async move { lifecycle.drain().await });
    wait_until("draining", Duration::from_secs(1), || {
        proxy.lifecycle.is_draining()
    });
    let (outcome, took) = connect_once(&proxy.url("#!::r=live/cam,m=request")).await;
    assert!(
        outcome.is_err() && took < Duration::from_millis(2500),
        "{took:?} {outcome:?}"
    );
    let refusal = raw_handshake(proxy.addr, Some("#!::r=live/cam,m=request"), 0).await;
    assert_eq!(refusal, HandshakeType::Rejection(RejectReason::DOWN));

    publisher.wait_done(FINISH).unwrap();
    assert_recorded_intact(&origin, &sent, 5);
    // The last session ended: the listener stops and the drain completes before its grace.
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("drain finished")
        .unwrap();
    wait_until("listener stopped", Duration::from_secs(2), || {
        proxy.task.is_finished()
    });
    assert_eq!(SrtStats::get(&proxy.stats.sessions_total), 1);
    wait_cleanup(&proxy, &resolver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_cannot_take_more_than_its_share() {
    let dir = TempDir::new().unwrap();
    let sent = dir.path().join("publisher.ts");
    let limits = SrtLimits {
        max_sessions_per_client: 1,
        ..test_limits()
    };
    let (origin, _resolver, proxy) = proxy_to_recording_origin(limits).await;
    let mut publisher = publish(&proxy.url(PUBLISH), &sent, 5);
    wait_until("session relaying", Duration::from_secs(5), || {
        SrtStats::get(&proxy.stats.to_client) > 0
    });
    // A second caller from the same IP (127.0.0.1) is refused at the induction already.
    assert_eq!(
        raw_handshake(proxy.addr, Some("#!::r=live/other,m=request"), 0).await,
        HandshakeType::Rejection(RejectReason::OVERLOAD)
    );
    assert_eq!(SrtStats::get(&proxy.stats.refused_per_client), 1);
    assert_eq!(proxy.active(), 1);
    publisher.wait_done(FINISH).unwrap();
    assert_recorded_intact(&origin, &sent, 5);
}
