//! Faults with real processes, each bounded in time: an origin killed mid-stream, redis-server
//! restarted empty while streams play, a proxy replica drained by SIGTERM beside another one.
//! Peers: the proxy binary, nginx-rtmp origins, ffmpeg publishers and players, redis-server.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use originstack_e2e::{
    NginxRtmpOrigin, Player, ProxyProcess, Publisher, assert_plays_published, carriers, eventually,
    proxy::metric, redis::RedisServer,
};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

/// kill -9 of the origin carrying a stream: its publisher and player are disconnected at
/// once (not after an idle timeout), and a republish lands on the live origin long before the
/// dead one's heartbeat TTL runs out, because the proxy takes an origin that refuses
/// connections out of the registry.
#[test]
fn killed_origin_disconnects_its_clients_and_a_republish_lands_on_a_live_one() {
    let mut origins = NginxRtmpOrigin::start_rtmp_only(2).unwrap();
    let proxy = ProxyProcess::start(PROXY, &[("PROXY_ORIGIN_TTL", "120s".into())]).unwrap();
    for (i, origin) in origins.iter().enumerate() {
        proxy
            .register(
                &format!("origin-{i}"),
                origin.rtmp_port(),
                origin.http_port(),
            )
            .unwrap();
    }
    let mut publisher = Publisher::looping_sample(proxy.rtmp_url("live", "cam")).unwrap();
    assert!(eventually(Duration::from_secs(20), || carriers(
        &origins, "live", "cam"
    )
    .len()
        == 1));
    let doomed = origins
        .iter()
        .position(|o| carriers(std::slice::from_ref(o), "live", "cam").len() == 1)
        .unwrap();
    let mut player = Player::start(proxy.rtmp_url("live", "cam")).unwrap();
    player
        .wait_played(Duration::from_secs(1), Duration::from_secs(20))
        .unwrap();

    origins[doomed].kill();
    let killed = Instant::now();
    player
        .wait(Duration::from_secs(10))
        .expect("the player is disconnected when its origin dies");
    publisher
        .wait(Duration::from_secs(10))
        .expect("the publisher is disconnected when its origin dies");
    let disconnected_in = killed.elapsed();

    let mut republisher = Publisher::looping_sample(proxy.rtmp_url("live", "cam")).unwrap();
    let survivor = std::slice::from_ref(&origins[1 - doomed]);
    assert!(
        eventually(Duration::from_secs(15), || carriers(
            survivor, "live", "cam"
        )
        .len()
            == 1),
        "the republish did not reach the live origin; proxy log:\n{}",
        proxy.log()
    );
    let moved_in = killed.elapsed();
    assert_plays_published(&proxy.rtmp_url("live", "cam")).unwrap();
    republisher.ensure_running().unwrap();
    let metrics = proxy.metrics().unwrap();
    assert_eq!(
        metric(&metrics, "originstack_proxy_origins_refused_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(proxy.owners()["cam"], format!("origin-{}", 1 - doomed));
    eprintln!(
        "clients disconnected {disconnected_in:?} after kill -9; stream re-owned after {moved_in:?} (TTL 120 s)"
    );
}

/// redis-server killed and started again empty while 20 streams play through two replicas:
/// no player drops, and once origins heartbeat again the replicas claim their streams back,
/// so new players still meet their publishers and new streams are placed.
#[test]
fn redis_restart_keeps_twenty_streams_playing_and_picks_recover() {
    let mut redis = RedisServer::start().unwrap();
    let origins = NginxRtmpOrigin::start_rtmp_only(2).unwrap();
    let replica = || {
        ProxyProcess::start_redis_replica(PROXY, &redis, &[("PROXY_ORIGIN_TTL", "10s".into())])
            .unwrap()
    };
    let (a, b) = (replica(), replica());
    let _beats: Vec<_> = origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            a.heartbeat(
                &format!("origin-{i}"),
                o.rtmp_port(),
                o.http_port(),
                Duration::from_secs(1),
            )
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || metric(
        &a.metrics().unwrap_or_default(),
        "originstack_proxy_origins_alive"
    ) == 2.0));

    let names: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let mut publishers: Vec<Publisher> = names
        .iter()
        .map(|n| Publisher::looping_sample(a.rtmp_url("live", n)).unwrap())
        .collect();
    assert!(
        eventually(Duration::from_secs(30), || names.iter().all(|n| carriers(
            &origins, "live", n
        )
        .len()
            == 1)),
        "not every stream reached one origin"
    );
    let mut players: Vec<Player> = names
        .iter()
        .map(|n| Player::start(b.rtmp_url("live", n)).unwrap())
        .collect();
    for player in &mut players {
        player
            .wait_played(Duration::from_secs(1), Duration::from_secs(30))
            .unwrap();
    }
    let before: Vec<Duration> = players.iter().map(Player::played).collect();

    redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    redis.start_again().unwrap();
    let restarted = Instant::now();

    // Claimed back: every stream owned again by the origin that carries it.
    let origin_of = |name: &str| -> Option<String> {
        let on = carriers(&origins, "live", name);
        let index = origins
            .iter()
            .position(|o| Some(&o.rtmp_addr()) == on.first())?;
        Some(format!("origin-{index}"))
    };
    let reclaimed = eventually(Duration::from_secs(15), || {
        let listed = b.owners();
        names
            .iter()
            .all(|n| listed.contains_key(n) && listed.get(n) == origin_of(n).as_ref())
    });
    assert!(
        reclaimed,
        "streams not claimed back after the restart: {:?}\nA:\n{}",
        b.owners(),
        a.log()
    );
    let reclaimed_in = restarted.elapsed();

    std::thread::sleep(Duration::from_secs(3));
    for ((player, before), name) in players.iter_mut().zip(&before).zip(&names) {
        player
            .ensure_running()
            .unwrap_or_else(|err| panic!("player of {name} dropped: {err:#}"));
        let gained = player.played().saturating_sub(*before);
        assert!(
            gained >= Duration::from_secs(5),
            "player of {name} played only {gained:?} across the outage"
        );
    }
    // New picks: a new player of an old stream meets its publisher through the other
    // replica; a new stream is placed.
    assert_plays_published(&a.rtmp_url("live", "s0")).unwrap();
    let _fresh = Publisher::looping_sample(b.rtmp_url("live", "fresh")).unwrap();
    assert!(eventually(Duration::from_secs(15), || carriers(
        &origins, "live", "fresh"
    )
    .len()
        == 1));
    assert_plays_published(&a.rtmp_url("live", "fresh")).unwrap();
    for publisher in &mut publishers {
        publisher.ensure_running().unwrap();
    }
    eprintln!("20 streams claimed back {reclaimed_in:?} after redis-server restarted");
}

/// SIGTERM to one replica: it is not ready at once, refuses new connections, lets running
/// sessions go on for PROXY_GRACE_QUIT_TIMEOUT and then exits, while the other replica keeps
/// serving the same stream and takes the republish.
#[test]
fn sigterm_drains_one_replica_while_the_other_keeps_serving() {
    let redis = RedisServer::start().unwrap();
    let origins = NginxRtmpOrigin::start_rtmp_only(1).unwrap();
    let replica = |grace: &str| {
        ProxyProcess::start_redis_replica(
            PROXY,
            &redis,
            &[
                ("PROXY_GRACE_QUIT_TIMEOUT", grace.into()),
                ("PROXY_FORCE_QUIT_TIMEOUT", "15s".into()),
            ],
        )
        .unwrap()
    };
    let (mut a, b) = (replica("5s"), replica("20s"));
    let _beat = b.heartbeat(
        "origin-0",
        origins[0].rtmp_port(),
        origins[0].http_port(),
        Duration::from_secs(1),
    );
    assert!(eventually(Duration::from_secs(10), || metric(
        &a.metrics().unwrap_or_default(),
        "originstack_proxy_origins_alive"
    ) == 1.0));
    let mut publisher = Publisher::looping_sample(a.rtmp_url("live", "cam")).unwrap();
    let mut player = Player::start(a.rtmp_url("live", "cam")).unwrap();
    player
        .wait_played(Duration::from_secs(1), Duration::from_secs(20))
        .unwrap();
    assert_eq!(a.readyz().unwrap(), 200);

    a.process.signal("TERM").unwrap();
    let signalled = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || a.readyz().ok() == Some(503)),
        "not-ready within a second of SIGTERM"
    );
    let not_ready_in = signalled.elapsed();
    let rtmp = a.rtmp;
    assert!(
        eventually(Duration::from_secs(2), || TcpStream::connect_timeout(
            &rtmp,
            Duration::from_millis(200)
        )
        .is_err()),
        "new connections are refused while draining"
    );
    // The other replica serves the same stream meanwhile.
    assert_plays_published(&b.rtmp_url("live", "cam")).unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(5));
    publisher
        .ensure_running()
        .expect("the running publish goes on during the grace period");
    player
        .ensure_running()
        .expect("the running play goes on during the grace period");

    let status = a
        .process
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("the drained proxy exits after its grace period");
    let exited_in = signalled.elapsed();
    assert!(status.success(), "{status}; log:\n{}", a.log());
    assert!(
        exited_in >= Duration::from_secs(5) && exited_in < Duration::from_secs(8),
        "exited {exited_in:?} after SIGTERM with a 5 s grace period"
    );
    publisher
        .wait(Duration::from_secs(5))
        .expect("the publisher is disconnected when the grace period ends");

    let _republisher = Publisher::looping_sample(b.rtmp_url("live", "cam")).unwrap();
    assert_plays_published(&b.rtmp_url("live", "cam")).unwrap();
    assert_eq!(carriers(&origins, "live", "cam").len(), 1);
    let addr: SocketAddr = a.system;
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the drained proxy is gone"
    );
    eprintln!("not ready {not_ready_in:?} after SIGTERM; exited after {exited_in:?} (grace 5 s)");
}
