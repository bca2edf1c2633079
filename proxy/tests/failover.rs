//! Through the `Origins` facade protocol code uses: failover when an origin stops
//! heartbeating, and lease release a grace period after the last session ends. Each test runs
//! against both backends.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use originstack_proxy::origins::{ClaimKind, Origins, OriginsMetrics, StreamKey, Vhosts};
use support::{MakeBackend, memory_backend, origin, redis_backend, timing};
use tokio_util::sync::CancellationToken;

/// Heartbeats `server` every 100 ms until `stop` is cancelled.
fn heartbeat(origins: &Arc<Origins>, server: &'static str, stop: CancellationToken) {
    let origins = origins.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let _ = origins.register(&origin(server, 1, 0.0)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn key(name: &str) -> StreamKey {
    StreamKey::new(None, "live", name).unwrap()
}

async fn sessions_land_on_a_live_origin_within_ttl(make: MakeBackend) {
    const TTL: Duration = Duration::from_millis(1_000);
    let backend = make(timing(TTL.as_millis() as u64, 10_000));
    let origins = Origins::new(
        backend.lb.clone(),
        backend.timing,
        OriginsMetrics::default(),
    );
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    heartbeat(&origins, "a", stop_a.clone());
    heartbeat(&origins, "b", stop_b.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Sessions on several streams; keep the leases, as relaying sessions do.
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(origins.lease(&key(&format!("s{i}"))).await.unwrap());
    }
    let on_a: Vec<StreamKey> = held
        .iter()
        .filter(|l| l.origin().server == "a")
        .map(|l| l.stream().clone())
        .collect();
    assert_eq!(on_a.len(), 3, "streams spread over both origins");

    stop_a.cancel();
    let stopped = Instant::now();
    // New sessions of a's streams must reach b within TTL + 1 s.
    for stream in &on_a {
        loop {
            let lease = origins.lease(stream).await.unwrap();
            if lease.origin().server == "b" {
                assert_eq!(
                    lease.kind(),
                    &ClaimKind::Failover {
                        previous: "a".into()
                    }
                );
                break;
            }
            assert!(
                stopped.elapsed() < TTL + Duration::from_secs(1),
                "{stream} still on a after {:?}",
                stopped.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let took = stopped.elapsed();
    assert!(
        took < TTL + Duration::from_secs(1),
        "failover took {took:?}"
    );
    // Not before the TTL either: a live origin is not abandoned early.
    assert!(
        took >= TTL - Duration::from_millis(200),
        "failover after only {took:?}"
    );
    stop_b.cancel();
}

async fn lease_released_a_grace_period_after_the_last_session(make: MakeBackend) {
    const LEASE: Duration = Duration::from_millis(800);
    let backend = make(timing(10_000, LEASE.as_millis() as u64));
    let origins = Origins::new(
        backend.lb.clone(),
        backend.timing,
        OriginsMetrics::default(),
    );
    origins.register(&origin("a", 1, 0.0)).await.unwrap();

    let first = origins.lease(&key("held")).await.unwrap();
    let second = origins.lease(&key("held")).await.unwrap();
    // Held for several lease periods: renewed in the background.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(origins.streams().await.unwrap().len(), 1);
    drop(first);
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(
        origins.streams().await.unwrap().len(),
        1,
        "one session still holds the stream"
    );

    drop(second);
    let released = Instant::now();
    tokio::time::sleep(LEASE / 2).await;
    assert_eq!(
        origins.streams().await.unwrap().len(),
        1,
        "kept during the grace period"
    );
    while !origins.streams().await.unwrap().is_empty() {
        assert!(
            released.elapsed() < LEASE + Duration::from_millis(500),
            "still owned {:?} after release",
            released.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A made-up name that was played once pins nothing either.
    drop(origins.lease(&key("made-up")).await.unwrap());
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    assert!(origins.streams().await.unwrap().is_empty());
}

/// A stream named under a vhost the origins do not configure is the default vhost's stream,
/// as SRS serves it; a configured vhost owns its streams apart.
async fn unconfigured_vhosts_share_the_default_vhosts_streams(make: MakeBackend) {
    let backend = make(timing(10_000, 10_000));
    let origins = Origins::with_vhosts(
        backend.lb.clone(),
        backend.timing,
        OriginsMetrics::default(),
        Vhosts::new(["vod.example.com"]),
    );
    for server in ["a", "b", "c"] {
        origins.register(&origin(server, 1, 0.0)).await.unwrap();
    }
    let named = |vhost: &str| StreamKey::new(Some(vhost), "live", "s").unwrap();
    let publisher = origins.lease(&named("ingest.example.com")).await.unwrap();
    let player = origins.lease(&key("s")).await.unwrap();
    let edge = origins.lease(&named("live-proxy.media.svc")).await.unwrap();
    assert_eq!(publisher.stream(), &key("s"));
    for lease in [&player, &edge] {
        assert_eq!(lease.origin().server, publisher.origin().server);
        assert_eq!(lease.kind(), &ClaimKind::Owned);
    }
    let vod = origins.lease(&named("vod.example.com")).await.unwrap();
    assert_eq!(vod.stream(), &named("vod.example.com"));
    assert_eq!(vod.kind(), &ClaimKind::New);
    assert_eq!(origins.streams().await.unwrap().len(), 2);
}

#[tokio::test]
async fn memory_unconfigured_vhosts_share_the_default_vhosts_streams() {
    unconfigured_vhosts_share_the_default_vhosts_streams(memory_backend).await;
}

#[tokio::test]
async fn redis_unconfigured_vhosts_share_the_default_vhosts_streams() {
    unconfigured_vhosts_share_the_default_vhosts_streams(redis_backend).await;
}

#[tokio::test]
async fn memory_sessions_land_on_a_live_origin_within_ttl() {
    sessions_land_on_a_live_origin_within_ttl(memory_backend).await;
}

#[tokio::test]
async fn redis_sessions_land_on_a_live_origin_within_ttl() {
    sessions_land_on_a_live_origin_within_ttl(redis_backend).await;
}

#[tokio::test]
async fn memory_lease_released_a_grace_period_after_the_last_session() {
    lease_released_a_grace_period_after_the_last_session(memory_backend).await;
}

#[tokio::test]
async fn redis_lease_released_a_grace_period_after_the_last_session() {
    lease_released_a_grace_period_after_the_last_session(redis_backend).await;
}
