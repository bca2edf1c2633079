//! RTMP through the proxy with real peers: nginx-rtmp origins, ffmpeg publishing, ffprobe
//! playing. Most tests run the RTMP listener in the test's runtime with a resolver of their
//! own; one runs two proxy binaries sharing a redis-server.

mod support;

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use originstack_e2e::{
    NginxRtmpConfig, NginxRtmpOrigin, ProxyProcess, Publisher, assert_plays_published, carriers,
    eventually, probe, redis::RedisServer,
};
use originstack_proxy::{
    lifecycle::Lifecycle,
    rtmp::{
        self, Intent, OriginResolver, ResolveError, ResolvedOrigin, RtmpLimits, RtmpStats,
        RtmpStreamKey,
    },
};
use support::{Counted, log_to_test_output};
use tokio::net::TcpListener;

/// Stream ownership for tests: the origin is picked by a hash of the stream key, so a stream
/// always lands on the same origin and many streams spread over all of them. Each lease
/// counts itself while alive.
struct TestResolver {
    origins: Vec<SocketAddr>,
    /// Origins reported unreachable: out of rotation, as the proxy core takes a dead origin out.
    dead: std::sync::Mutex<Vec<SocketAddr>>,
    leases: Arc<AtomicUsize>,
}

impl TestResolver {
    fn new(origins: Vec<SocketAddr>) -> Self {
        Self {
            origins,
            dead: Default::default(),
            leases: Arc::default(),
        }
    }

    /// The origin owning `key`: a hash over the live origins.
    fn origin_of(&self, key: &RtmpStreamKey) -> SocketAddr {
        let dead = self.dead.lock().unwrap();
        let live: Vec<SocketAddr> = self
            .origins
            .iter()
            .filter(|o| !dead.contains(o))
            .copied()
            .collect();
        let mut hasher = DefaultHasher::new();
        (&key.vhost, &key.app, &key.stream).hash(&mut hasher);
        live[(hasher.finish() % live.len() as u64) as usize]
    }

    /// The origin a plain `live/<stream>` on the default vhost maps to.
    fn origin_of_stream(&self, stream: &str) -> SocketAddr {
        self.origin_of(&RtmpStreamKey {
            vhost: rtmp::stream_key::DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: stream.into(),
            query: String::new(),
        })
    }

    fn leases(&self) -> Arc<AtomicUsize> {
        self.leases.clone()
    }
}

impl OriginResolver for TestResolver {
    fn resolve<'a>(
        &'a self,
        key: &'a RtmpStreamKey,
        _intent: Intent,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            if self
                .origins
                .iter()
                .all(|o| self.dead.lock().unwrap().contains(o))
            {
                return Err(ResolveError::NoOrigin);
            }
            let rtmp = self.origin_of(key);
            Ok(ResolvedOrigin {
                rtmp,
                server: rtmp.to_string(),
                lease: Box::new(Counted::new(&self.leases)),
            })
        })
    }

    fn report_unreachable<'a>(
        &'a self,
        _key: &'a RtmpStreamKey,
        origin: &'a ResolvedOrigin,
        _error: &'a std::io::Error,
    ) -> BoxFuture<'a, ()> {
        self.dead.lock().unwrap().push(origin.rtmp);
        Box::pin(async {})
    }
}

/// The RTMP proxy listening on a free loopback port in this process.
struct Proxy {
    addr: SocketAddr,
    stats: Arc<RtmpStats>,
    lifecycle: Lifecycle,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(resolver: Arc<dyn OriginResolver>, limits: RtmpLimits) -> Self {
        // Session logs (client address, stream key, why it ended) show with --nocapture.
        log_to_test_output();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let lifecycle = Lifecycle::new(Duration::from_secs(1), Duration::from_secs(2));
        let stats = Arc::new(RtmpStats::default());
        let task = tokio::spawn(rtmp::serve(
            listener,
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

    fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.addr)
    }

    /// The accept loop is still running (no panic took it down).
    fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.lifecycle.terminate().cancel();
        self.task.abort();
    }
}

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

fn publish(url: &str) -> Publisher {
    Publisher::looping_sample(url).expect("start ffmpeg")
}

fn addrs(origins: &[NginxRtmpOrigin]) -> Vec<SocketAddr> {
    origins.iter().map(NginxRtmpOrigin::rtmp_addr).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_play_through_the_proxy_land_on_exactly_one_origin() {
    let origins = NginxRtmpOrigin::start_rtmp_only(3).unwrap();
    let resolver = Arc::new(TestResolver::new(addrs(&origins)));
    let leases = resolver.leases();
    let proxy = Proxy::start(resolver.clone(), RtmpLimits::default()).await;

    // The token in the query travels to the origin with the stream name.
    let mut publisher = publish(&format!("{}?token=secret", proxy.url("cam1")));
    assert!(
        eventually(Duration::from_secs(15), || carriers(
            &origins, "live", "cam1"
        )
        .len()
            == 1),
        "the stream never appeared on an origin"
    );
    assert_eq!(
        carriers(&origins, "live", "cam1"),
        vec![resolver.origin_of_stream("cam1")]
    );
    assert_eq!(
        leases.load(Ordering::SeqCst),
        1,
        "the publisher holds one lease"
    );

    let counted = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
    assert_eq!(counted(&proxy.stats.publish.active), 1);
    assert_plays_published(&proxy.url("cam1")).unwrap();
    // The player counted as a play (an SRS edge's pull is one too), not as a publish.
    assert!(counted(&proxy.stats.play.total) >= 1);
    assert_eq!(counted(&proxy.stats.publish.total), 1);
    // Played straight from the owning origin too: the proxy relayed media untouched.
    let direct = format!("rtmp://{}/live/cam1", resolver.origin_of_stream("cam1"));
    assert_plays_published(&direct).unwrap();

    publisher.ensure_running().unwrap();
    publisher.kill();
    assert!(
        eventually(Duration::from_secs(10), || leases.load(Ordering::SeqCst)
            == 0),
        "leases are released when sessions end"
    );
    assert!(eventually(Duration::from_secs(10), || counted(
        &proxy.stats.publish.active
    ) + counted(
        &proxy.stats.play.active
    ) == 0));
    // Ended relays have added all they read: the publisher's media one way, the player's the
    // other (each at least a few keyframes of the sample).
    let (to_origin, to_client) = (
        counted(&proxy.stats.bytes.to_origin),
        counted(&proxy.stats.bytes.to_client),
    );
    assert!(to_origin > 50_000, "bytes to origin: {to_origin}");
    assert!(to_client > 50_000, "bytes to client: {to_client}");
    assert!(eventually(Duration::from_secs(10), || carriers(
        &origins, "live", "cam1"
    )
    .is_empty()));
}

/// Two proxy binaries share one redis-server; three origins heartbeat to A only. Thirty
/// publishers, alternating between A and B, spread evenly over all origins; each stream is on
/// exactly the origin both replicas name as its owner, and a player through the other replica
/// meets its publisher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_redis_spread_thirty_streams_and_every_player_meets_its_publisher() {
    let redis = RedisServer::start().unwrap();
    let origins = NginxRtmpOrigin::start_rtmp_only(3).unwrap();
    // No heartbeat loop in this test: keep the registrations alive throughout.
    let replica = || {
        ProxyProcess::start_redis_replica(PROXY, &redis, &[("PROXY_ORIGIN_TTL", "300s".into())])
            .unwrap()
    };
    let replicas = [replica(), replica()];
    for (i, origin) in origins.iter().enumerate() {
        replicas[0]
            .register(
                &format!("origin-{i}"),
                origin.rtmp_port(),
                origin.http_port(),
            )
            .unwrap();
    }
    let server_of: HashMap<String, SocketAddr> = origins
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("origin-{i}"), o.rtmp_addr()))
        .collect();

    let names: Vec<String> = (0..30).map(|i| format!("stream{i}")).collect();
    let mut publishers: Vec<Publisher> = names
        .iter()
        .enumerate()
        .map(|(i, name)| publish(&replicas[i % 2].rtmp_url("live", name)))
        .collect();
    let all_up = eventually(Duration::from_secs(40), || {
        names
            .iter()
            .all(|name| carriers(&origins, "live", name).len() == 1)
    });
    let logs = || format!("A:\n{}\nB:\n{}", replicas[0].log(), replicas[1].log());
    assert!(
        all_up,
        "not every stream reached exactly one origin\n{}",
        logs()
    );

    // Both replicas name the same owner, and it is the origin that carries the stream.
    let (seen_by_a, seen_by_b) = (replicas[0].owners(), replicas[1].owners());
    assert_eq!(seen_by_a, seen_by_b, "the replicas disagree on owners");
    let mut per_origin: HashMap<SocketAddr, usize> = HashMap::new();
    for name in &names {
        let on = carriers(&origins, "live", name);
        let owner = seen_by_a
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no owner"));
        assert_eq!(
            on,
            vec![server_of[owner]],
            "{name} must be on its owner {owner}"
        );
        *per_origin.entry(on[0]).or_default() += 1;
    }
    let (fewest, most) = (
        per_origin.values().min().copied().unwrap_or(0),
        per_origin.values().max().copied().unwrap_or(0),
    );
    assert!(
        per_origin.len() == 3 && most - fewest <= 2,
        "streams spread evenly over all origins: {per_origin:?}"
    );

    // Every publisher meets its player through the other replica, ten players at a time.
    for batch in names.chunks(10) {
        std::thread::scope(|scope| {
            let players: Vec<_> = batch
                .iter()
                .map(|name| {
                    let index = names.iter().position(|n| n == name).unwrap();
                    let through = replicas[(index + 1) % 2].rtmp_url("live", name);
                    scope.spawn(move || {
                        let seen = assert_plays_published(&through);
                        (through, seen)
                    })
                })
                .collect();
            for player in players {
                let (through, seen) = player.join().unwrap();
                seen.unwrap_or_else(|err| panic!("{through}: {err:#}\n{}", logs()));
            }
        });
    }
    for name in &names {
        assert_eq!(
            carriers(&origins, "live", name).len(),
            1,
            "{name} moved or doubled"
        );
    }
    for publisher in &mut publishers {
        publisher.ensure_running().unwrap();
    }
}

/// Plain handshake (C0 + C1 of zeros, read S0-S2, C2), as the simplest clients do.
fn handshaken(proxy: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(proxy).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    socket.write_all(&c0c1).unwrap();
    let mut s = vec![0u8; 1 + 2 * 1536];
    socket.read_exact(&mut s).unwrap();
    assert_eq!(s[0], 3);
    socket.write_all(&[0u8; 1536]).unwrap();
    socket
}

/// The proxy closes the connection: reads end (EOF or reset) before the timeout.
fn closed_by_proxy(mut socket: TcpStream) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_its_own_connection() {
    let origins = NginxRtmpOrigin::start_rtmp_only(1).unwrap();
    let resolver = Arc::new(TestResolver::new(addrs(&origins)));
    let limits = RtmpLimits {
        handshake_timeout: Duration::from_secs(2),
        max_message_size: 1024 * 1024,
        ..Default::default()
    };
    let proxy = Proxy::start(resolver, limits).await;
    let mut publisher = publish(&proxy.url("healthy"));
    assert!(eventually(Duration::from_secs(15), || carriers(
        &origins, "live", "healthy"
    )
    .len()
        == 1));
    let addr = proxy.addr;

    let hostile = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        // Garbage instead of a handshake (wrong version byte).
        let mut garbage = TcpStream::connect(addr).unwrap();
        let noise: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let _ = garbage.write_all(&noise);
        results.push(("garbage", closed_by_proxy(garbage)));
        // A handshake cut short: the handshake timeout ends it.
        let mut truncated = TcpStream::connect(addr).unwrap();
        truncated.write_all(&[3u8; 700]).unwrap();
        results.push(("truncated handshake", closed_by_proxy(truncated)));
        // A message larger than the limit.
        let mut oversized = handshaken(addr);
        oversized
            .write_all(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0])
            .unwrap();
        results.push(("oversized message", closed_by_proxy(oversized)));
        // Continuation chunks for a chunk stream that never had a header.
        let mut orphan = handshaken(addr);
        orphan.write_all(&[0xC5, 1, 2, 3, 4]).unwrap();
        results.push(("orphan continuation", closed_by_proxy(orphan)));
        // A command that is not AMF0.
        let mut bad_amf = handshaken(addr);
        bad_amf
            .write_all(&[
                0x03, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0, 0x11, 0x11, 0x11, 0x11,
            ])
            .unwrap();
        results.push(("bad AMF0 command", closed_by_proxy(bad_amf)));
        // A client that connects and then stays silent.
        let silent = TcpStream::connect(addr).unwrap();
        results.push(("silent", closed_by_proxy(silent)));
        results
    })
    .await
    .unwrap();
    for (what, closed) in hostile {
        assert!(closed, "the proxy did not close the {what} connection");
    }

    assert!(proxy.is_serving(), "the accept loop survived");
    publisher
        .ensure_running()
        .expect("the healthy publisher was not disturbed");
    assert_eq!(carriers(&origins, "live", "healthy").len(), 1);
    assert_plays_published(&proxy.url("healthy")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_and_connection_limit_refuse_cleanly() {
    // An origin address nothing listens on.
    let dead: SocketAddr = ([127, 0, 0, 1], originstack_e2e::free_port()).into();
    let resolver = Arc::new(TestResolver::new(vec![dead]));
    let leases = resolver.leases();
    let limits = RtmpLimits {
        max_connections: 2,
        ..Default::default()
    };
    let proxy = Proxy::start(resolver, limits).await;
    let err = probe(&proxy.url("nowhere"), Duration::from_secs(15)).unwrap_err();
    assert!(err.to_string().contains("failed"), "{err:#}");
    assert!(eventually(Duration::from_secs(5), || leases
        .load(Ordering::SeqCst)
        == 0));

    let addr = proxy.addr;
    let third_closed = tokio::task::spawn_blocking(move || {
        let first = TcpStream::connect(addr).unwrap();
        let second = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let third = TcpStream::connect(addr).unwrap();
        let closed = closed_by_proxy(third);
        drop((first, second));
        closed
    })
    .await
    .unwrap();
    assert!(third_closed, "a connection over the limit is closed");
}

/// Enhanced RTMP (HEVC signalled by FourCC, as OBS 30+ and ffmpeg 6.1+ send it) crosses the
/// proxy byte for byte in both hops: our own client publishes through the proxy, another
/// plays through the proxy, the origin in between is nginx-rtmp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_rtmp_media_passes_through_untouched() {
    use originstack_proxy::rtmp::{
        Intent, RtmpStreamKey,
        amf0::Value,
        chunk::{DecoderLimits, Message},
        command::Command,
        connection::RtmpConnection,
        control::kind,
        origin::{self, OriginRequest},
    };

    // nginx-rtmp reads the frame type without masking the Enhanced RTMP flag bit, so it would
    // hold these frames back waiting for a key frame; SRS origins know the flag.
    let origin = NginxRtmpOrigin::start_with(NginxRtmpConfig {
        hls: false,
        app_directives: "wait_key off;".into(),
        ..Default::default()
    })
    .unwrap();
    let resolver = Arc::new(TestResolver::new(vec![origin.rtmp_addr()]));
    let proxy = Proxy::start(resolver, RtmpLimits::default()).await;
    let key = RtmpStreamKey {
        vhost: "__defaultVhost__".into(),
        app: "live".into(),
        stream: "hevc".into(),
        query: String::new(),
    };
    let open = |intent: Intent| {
        let key = key.clone();
        let addr = proxy.addr;
        async move {
            let args = match intent {
                Intent::Publish => vec![Value::string("live")],
                Intent::Play => vec![Value::Number(-2000.0)],
            };
            let request = OriginRequest {
                key: &key,
                intent,
                connect_object: &Value::object([(
                    "fourCcList",
                    Value::StrictArray(vec![Value::string("hvc1")]),
                )]),
                tc_query: "",
                stream_args: &args,
                buffer_millis: 100,
            };
            origin::open(addr, request, DecoderLimits::default())
                .await
                .unwrap()
        }
    };

    // The origin's onStatus answers come back through the proxy.
    async fn wait_for_status(connection: &mut RtmpConnection, code: &str) {
        loop {
            let message = connection.read_message().await.unwrap();
            if message.type_id == kind::COMMAND_AMF0
                && Command::decode(message.type_id, &message.payload)
                    .unwrap()
                    .is_status(code)
            {
                return;
            }
        }
    }
    let mut publisher = open(Intent::Publish).await;
    wait_for_status(&mut publisher.connection, "NetStream.Publish.Start").await;
    let mut player = open(Intent::Play).await;
    wait_for_status(&mut player.connection, "NetStream.Play.Start").await;

    // Sequence start (0x80 | key frame << 4 | PacketType 0) then coded frames (PacketType 1)
    // of 1 to 100 KB: larger than every chunk size on the way.
    let mut frames = Vec::new();
    let mut sequence_start = vec![0x90, b'h', b'v', b'c', b'1'];
    sequence_start.extend((0..40u8).map(|i| i.wrapping_mul(7)));
    frames.push(sequence_start);
    for i in 0..20usize {
        let mut frame = vec![
            if i % 10 == 0 { 0x91 } else { 0xA1 },
            b'h',
            b'v',
            b'c',
            b'1',
            0,
            0,
            0,
        ];
        frame.extend((0..1000 + i * 5000).map(|j| (j * 13 + i) as u8));
        frames.push(frame);
    }
    for (i, frame) in frames.iter().enumerate() {
        let message = Message {
            csid: 6,
            timestamp: 1000 + i as u32 * 33,
            type_id: kind::VIDEO,
            stream_id: publisher.stream_id,
            payload: frame.clone().into(),
        };
        publisher.connection.queue(&message);
    }
    publisher.connection.flush().await.unwrap();

    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while received.len() < frames.len() {
        let message = tokio::time::timeout_at(deadline, player.connection.read_message())
            .await
            .expect("frames arrive")
            .unwrap();
        if message.type_id == kind::VIDEO {
            assert_eq!(
                message.stream_id, player.stream_id,
                "stream id translated for the player"
            );
            received.push(message.payload.to_vec());
        }
    }
    assert_eq!(received, frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_for_a_dead_origin_land_on_a_live_one() {
    let mut origins = NginxRtmpOrigin::start_rtmp_only(2).unwrap();
    let resolver = Arc::new(TestResolver::new(addrs(&origins)));
    let proxy = Proxy::start(resolver.clone(), RtmpLimits::default()).await;
    // A stream owned by the second origin, which then dies.
    let doomed = origins[1].rtmp_addr();
    let name = (0..)
        .map(|i| format!("moving{i}"))
        .find(|n| resolver.origin_of_stream(n) == doomed)
        .unwrap();
    origins[1].kill();

    let mut publisher = publish(&proxy.url(&name));
    let survivor = &origins[..1];
    assert!(
        eventually(Duration::from_secs(15), || carriers(
            survivor, "live", &name
        )
        .len()
            == 1),
        "the publish did not reach the live origin"
    );
    assert_plays_published(&proxy.url(&name)).unwrap();
    publisher.ensure_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_stops_accepting_while_relays_run_on() {
    let origins = NginxRtmpOrigin::start_rtmp_only(1).unwrap();
    let resolver = Arc::new(TestResolver::new(addrs(&origins)));
    let leases = resolver.leases();
    let proxy = Proxy::start(resolver, RtmpLimits::default()).await;
    let mut publisher = publish(&proxy.url("draining"));
    assert!(eventually(Duration::from_secs(15), || carriers(
        &origins, "live", "draining"
    )
    .len()
        == 1));

    proxy.lifecycle.draining().cancel();
    let addr = proxy.addr;
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_err()),
        "the listener still accepts while draining"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    publisher
        .ensure_running()
        .expect("the running publish goes on while draining");
    assert_eq!(carriers(&origins, "live", "draining").len(), 1);

    // End of the grace period: sessions are told to stop and release their leases.
    proxy.lifecycle.terminate().cancel();
    assert!(eventually(Duration::from_secs(5), || leases
        .load(Ordering::SeqCst)
        == 0));
    assert!(eventually(Duration::from_secs(10), || carriers(
        &origins, "live", "draining"
    )
    .is_empty()));
}
