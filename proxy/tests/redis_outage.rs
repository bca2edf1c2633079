//! redis-server dies mid-run: new picks fail at once with a clear error, readiness drops,
//! leases already held stay usable, and everything recovers by itself when Redis is back.
//! When it comes back empty, one heartbeat (or pick) after the restart is enough: the dead
//! pooled connection is replaced and the call sent again, and each replica writes back the
//! origins it heard within the TTL and claims back the streams it relays.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use originstack_e2e::{
    Expect, NginxRtmpOrigin, ProxyProcess, assert_playable,
    nginx_rtmp::carriers,
    probe,
    redis::RedisServer,
    srs::{SrsHeartbeat, register_url},
};
use originstack_proxy::origins::{
    ClaimKind, Origins, OriginsMetrics, PickError, StreamKey, Timing,
};
use support::{origin, redis_balancer, timing};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

/// One proxy replica's origins layer (in this process) on `redis`.
fn replica(redis: &RedisServer, timing: Timing) -> Arc<Origins> {
    Origins::new(
        redis_balancer(redis, timing),
        timing,
        OriginsMetrics::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_fail_clearly_during_an_outage_and_recover() {
    let mut redis = RedisServer::start().unwrap();
    let timing = timing(2_000, 5_000);
    let origins = replica(&redis, timing);
    // The origin heartbeats throughout, as SRS does; failures during the outage are expected.
    let heartbeats = {
        let origins = origins.clone();
        tokio::spawn(async move {
            loop {
                let _ = origins.register(&origin("a", 1, 0.0)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let key = |name: &str| StreamKey::new(None, "live", name).unwrap();
    let relaying = origins.lease(&key("before")).await.unwrap();
    origins.check_ready().await.unwrap();

    redis.stop();
    let started = Instant::now();
    let err = origins.lease(&key("during")).await.unwrap_err();
    let failed_in = started.elapsed();
    assert!(matches!(err, PickError::Backend { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("__defaultVhost__/live/during") && message.contains("Redis"),
        "{message}"
    );
    assert!(
        failed_in < Duration::from_secs(3),
        "a pick during the outage took {failed_in:?}"
    );
    assert!(
        origins.check_ready().await.is_err(),
        "not ready while Redis is down"
    );
    // Sessions already relaying keep their origin.
    assert_eq!(relaying.origin().server, "a");
    for _ in 0..3 {
        assert!(origins.lease(&key("during")).await.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    redis.start_again().unwrap();
    let back = Instant::now();
    let lease = loop {
        match origins.lease(&key("after")).await {
            Ok(lease) => break lease,
            Err(err) => {
                assert!(
                    back.elapsed() < Duration::from_secs(10),
                    "no recovery after {:?}: {err}",
                    back.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(lease.origin().server, "a");
    origins.check_ready().await.unwrap();
    println!(
        "recovered {:?} after redis-server came back",
        back.elapsed()
    );
    heartbeats.abort();
}

fn key(name: &str) -> StreamKey {
    StreamKey::new(None, "live", name).unwrap()
}

/// Kills redis-server and starts it again on the same port with no data, as a crash of a
/// Redis without persistence does.
fn restart_empty(redis: &mut RedisServer) {
    redis.stop();
    redis.start_again().unwrap();
    assert_eq!(redis.cli(&["DBSIZE"]).unwrap(), "0", "the data is gone");
}

/// The lease TTL below (30 s, renewals every 10 s) keeps the renewer quiet: the heartbeat is
/// the first call on the pooled connection after the restart, the one that used to fail with
/// "broken pipe".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_heartbeat_after_redis_lost_its_data_brings_back_every_origin_heard() {
    let mut redis = RedisServer::start().unwrap();
    let timing = timing(30_000, 30_000);
    let origins = replica(&redis, timing);
    for server in ["a", "b", "c"] {
        origins.register(&origin(server, 1, 0.0)).await.unwrap();
    }
    let relaying = origins.lease(&key("cam")).await.unwrap();
    let carrier = relaying.origin().server.clone();
    let other = ["a", "b", "c"].into_iter().find(|s| *s != carrier).unwrap();

    restart_empty(&mut redis);
    let first = Instant::now();
    // ONE heartbeat, of an origin that does not even carry the stream.
    origins
        .register(&origin(other, 1, 0.0))
        .await
        .expect("the first heartbeat after the restart is stored");
    let listed = origins.origins().await.unwrap();
    let alive: Vec<(&str, bool)> = listed
        .iter()
        .map(|o| (o.origin.server.as_str(), o.alive))
        .collect();
    assert_eq!(alive, [("a", true), ("b", true), ("c", true)]);
    // Written back with the age they had, not as fresh heartbeats: they die on their own TTL.
    let beat = |server: &str| {
        listed
            .iter()
            .find(|o| o.origin.server == server)
            .unwrap()
            .origin
            .last_heartbeat_ms
    };
    assert!(beat(&carrier) < beat(other), "{listed:?}");
    // Claimed back before the heartbeat was answered: the next player meets the stream.
    let streams = origins.streams().await.unwrap();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].origin, carrier);
    let player = origins.lease(&key("cam")).await.unwrap();
    assert_eq!(player.origin().server, carrier);
    assert_eq!(player.kind(), &ClaimKind::Owned);
    println!(
        "registry and stream back {:?} after the first heartbeat",
        first.elapsed()
    );
}

/// Two replicas, each hearing one origin. Redis restarts empty and the origin of replica A
/// heartbeats first: A writes back what it heard. Replica B, which relays a stream to the
/// other origin and has heard nothing since, must not let a pick place that stream elsewhere:
/// its first pick finds a registry epoch it does not know, writes back its own origin, claims
/// its stream back and only then picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_the_loss_writes_back_and_claims_back_before_it_picks() {
    let mut redis = RedisServer::start().unwrap();
    let timing = timing(30_000, 30_000);
    let (a, b) = (replica(&redis, timing), replica(&redis, timing));
    b.register(&origin("ob", 1, 0.0)).await.unwrap();
    let relaying = b.lease(&key("cam")).await.unwrap();
    assert_eq!(relaying.origin().server, "ob");
    a.register(&origin("oa", 1, 0.0)).await.unwrap();

    restart_empty(&mut redis);
    a.register(&origin("oa", 1, 0.0)).await.unwrap();
    let player = b
        .lease(&key("cam"))
        .await
        .expect("B's first pick after the restart succeeds");
    assert_eq!(
        player.origin().server,
        "ob",
        "the stream stays where it is relayed"
    );
    let listed: Vec<String> = a
        .origins()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.alive)
        .map(|o| o.origin.server)
        .collect();
    assert_eq!(listed, ["oa", "ob"]);
    // New streams are placed as usual: on the origin without one.
    assert_eq!(a.lease(&key("new")).await.unwrap().origin().server, "oa");
}

/// The defect as it was met: Redis restarted with its data lost while one RTMP stream plays
/// through the proxy binary. ONE heartbeat, of the origin that does NOT carry the stream, is
/// the first call after the restart; a new player through the proxy then plays at once (a
/// single ffprobe attempt), because the proxy stored that heartbeat despite its dead Redis
/// connection, wrote back the carrier it had heard and claimed the stream back for it. The
/// carrier's own heartbeat follows and changes nothing. Before the fix the heartbeat failed
/// ("Redis register failed: broken pipe") and players got "no origin" (or the wrong origin)
/// until each origin's next heartbeat.
#[test]
fn a_new_player_meets_a_live_rtmp_stream_at_once_after_redis_restarts_empty() {
    let mut redis = RedisServer::start().unwrap();
    let nginx = NginxRtmpOrigin::start_rtmp_only(2).unwrap();
    let proxy =
        ProxyProcess::start_redis_replica(PROXY, &redis, &[("PROXY_ORIGIN_TTL", "30s".into())])
            .unwrap();
    let heartbeat_url = register_url(proxy.system, None);
    let heartbeats: Vec<SrsHeartbeat> = nginx
        .iter()
        .enumerate()
        .map(|(i, o)| {
            SrsHeartbeat::local(&format!("origin-{i}"), o.rtmp_port(), Some(o.http_port()))
        })
        .collect();
    for heartbeat in &heartbeats {
        heartbeat.register(&heartbeat_url).unwrap();
    }
    let stream = format!("rtmp://{}/live/cam", proxy.rtmp);
    let mut publisher = originstack_e2e::Publisher::looping_sample(&stream).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while carriers(&nginx, "live", "cam").len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the stream never reached an origin\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let carrier = nginx
        .iter()
        .position(|o| carriers(std::slice::from_ref(o), "live", "cam").len() == 1)
        .unwrap();
    // What one ffprobe of the stream takes when nothing is wrong, to read the figure below.
    let started = Instant::now();
    probe(&stream, Duration::from_secs(10)).unwrap();
    let baseline = started.elapsed();

    restart_empty(&mut redis);
    let first = Instant::now();
    heartbeats[1 - carrier]
        .register(&heartbeat_url)
        .unwrap_or_else(|err| {
            panic!(
                "the first heartbeat after the restart: {err:#}\n{}",
                proxy.log()
            )
        });
    let answered = first.elapsed();
    let probed = probe(&stream, Duration::from_secs(10));
    let played = first.elapsed();
    let probed = probed.unwrap_or_else(|err| {
        panic!(
            "a new player found no stream {played:?} after the first heartbeat: {err:#}\nproxy log:\n{}",
            proxy.log()
        )
    });
    assert_eq!(Expect::h264_aac(320, 240).mismatch(&probed), None);
    assert_eq!(
        proxy.owners().get("cam"),
        Some(&format!("origin-{carrier}"))
    );

    heartbeats[carrier].register(&heartbeat_url).unwrap();
    assert_playable(
        &stream,
        &Expect::h264_aac(320, 240),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(
        carriers(&nginx, "live", "cam"),
        vec![nginx[carrier].rtmp_addr()],
        "the stream never moved"
    );
    publisher.ensure_running().unwrap();
    let log = proxy.log();
    assert!(
        log.lines().any(
            |line| line.contains("origin written back into the registry")
                && line.contains(&format!("origin-{carrier}"))
        ),
        "the write-back is logged with the origin's name:\n{log}"
    );
    for line in log
        .lines()
        .filter(|l| l.contains("Redis") || l.contains("written back"))
    {
        eprintln!("proxy: {line}");
    }
    eprintln!(
        "first heartbeat after the restart answered in {answered:?}; a new player had decoded the stream {played:?} after that heartbeat was sent (one ffprobe takes {baseline:?} before the restart)"
    );
}
