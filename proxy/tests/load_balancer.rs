//! One behaviour suite for every load-balancer backend: each test below runs once against the
//! memory backend and against real Redis deployments: one redis-server, one over TLS, and a
//! three-node Redis Cluster (`backends::{memory,redis,redis_tls,redis_cluster}::*`), proving
//! identical behaviour.

mod support;

use std::{collections::HashMap, time::Duration};

use originstack_proxy::origins::{
    BackendError, ClaimKind, PickError, Registered, StreamKey, balancer::MAX_ORIGINS,
};
use support::{MakeBackend, origin, owned_counts, timing};

fn key(name: &str) -> StreamKey {
    StreamKey::new(None, "live", name).unwrap()
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn registers_and_lists_origins(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    let a = origin("a", 1, 5.0);
    assert_eq!(lb.register(&a).await.unwrap(), Registered::New);
    assert_eq!(lb.register(&a).await.unwrap(), Registered::Refreshed);
    let listed = lb.origins().await.unwrap();
    assert_eq!(listed.len(), 1);
    let status = &listed[0];
    assert!(status.alive && !status.draining);
    assert_eq!(status.streams_owned, 0);
    assert_eq!(status.origin.endpoints, a.endpoints);
    assert_eq!(status.origin.load, 5.0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        now_ms.abs_diff(status.origin.last_heartbeat_ms) < 2_000,
        "heartbeat time {status:?}"
    );
}

async fn owner_is_kept_while_alive(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    let first = lb.pick(&key("s")).await.unwrap();
    assert_eq!(first.kind, ClaimKind::New);
    for _ in 0..5 {
        let again = lb.pick(&key("s")).await.unwrap();
        assert_eq!(again.kind, ClaimKind::Owned);
        assert_eq!(again.origin.server, first.origin.server);
        assert_eq!(again.owner, first.owner);
    }
    let streams = lb.streams().await.unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].stream, "__defaultVhost__/live/s");
    assert_eq!(streams[0].origin, first.origin.server);
}

async fn spreads_by_owned_count(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    for server in ["a", "b", "c"] {
        lb.register(&origin(server, 1, 0.0)).await.unwrap();
    }
    for i in 0..30 {
        lb.pick(&key(&format!("s{i}"))).await.unwrap();
    }
    let counts = owned_counts(lb).await;
    assert_eq!(counts, vec![10, 10, 10]);
}

async fn load_breaks_count_ties(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("busy", 1, 50.0)).await.unwrap();
    lb.register(&origin("idle", 1, 10.0)).await.unwrap();
    let owners: Vec<String> = [
        lb.pick(&key("s1")).await.unwrap(),
        lb.pick(&key("s2")).await.unwrap(),
        lb.pick(&key("s3")).await.unwrap(),
    ]
    .into_iter()
    .map(|claim| claim.origin.server)
    .collect();
    // Equal counts go to the lower load; fewer streams beats lower load.
    assert_eq!(owners, ["idle", "busy", "idle"]);
}

async fn equal_ranks_are_broken_at_random(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    // Picks alternate: an even pick meets equal counts (a tie), the odd one after it fills
    // the other origin.
    let mut tie_winners = HashMap::new();
    for i in 0..32 {
        let claim = lb.pick(&key(&format!("s{i}"))).await.unwrap();
        if i % 2 == 0 {
            *tie_winners.entry(claim.origin.server).or_insert(0) += 1;
        }
    }
    // A deterministic choice would win all 16 ties for one origin; random fails this with
    // p = 2^-15.
    assert_eq!(tie_winners.len(), 2, "{tie_winners:?}");
}

async fn no_live_origin_is_a_typed_error(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    let err = lb.pick(&key("s")).await.unwrap_err();
    assert!(matches!(err, PickError::NoOrigin { .. }), "{err:?}");
    assert!(err.to_string().contains("__defaultVhost__/live/s"), "{err}");
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.set_draining("a", true).await.unwrap();
    assert!(matches!(
        lb.pick(&key("s")).await,
        Err(PickError::NoOrigin { .. })
    ));
    lb.set_draining("a", false).await.unwrap();
    assert_eq!(lb.pick(&key("s")).await.unwrap().origin.server, "a");
}

async fn dead_owner_fails_over(make: MakeBackend) {
    let backend = make(timing(600, 10_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    let first = lb.pick(&key("s")).await.unwrap();
    let (dead, live) = if first.origin.server == "a" {
        ("a", "b")
    } else {
        ("b", "a")
    };
    // Only `live` keeps heartbeating.
    for _ in 0..5 {
        sleep_ms(200).await;
        lb.register(&origin(live, 1, 0.0)).await.unwrap();
    }
    let moved = lb.pick(&key("s")).await.unwrap();
    assert_eq!(moved.origin.server, live);
    assert_eq!(
        moved.kind,
        ClaimKind::Failover {
            previous: dead.to_owned()
        }
    );
    for i in 0..4 {
        assert_eq!(
            lb.pick(&key(&format!("new{i}")))
                .await
                .unwrap()
                .origin
                .server,
            live
        );
    }
    let listed = lb.origins().await.unwrap();
    let dead_status = listed.iter().find(|o| o.origin.server == dead).unwrap();
    assert!(!dead_status.alive);
    assert_eq!(dead_status.streams_owned, 0);
}

async fn restart_releases_streams(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    let old = lb.pick(&key("s1")).await.unwrap();
    lb.pick(&key("s2")).await.unwrap();
    assert_eq!(
        lb.register(&origin("a", 2, 0.0)).await.unwrap(),
        Registered::Restarted
    );
    assert_eq!(lb.origins().await.unwrap()[0].streams_owned, 0);
    assert!(lb.streams().await.unwrap().is_empty());
    // The old incarnation's lease cannot be renewed any more.
    assert_eq!(
        lb.renew(&[(key("s1"), old.owner.clone())]).await.unwrap(),
        vec![key("s1")]
    );
    let again = lb.pick(&key("s1")).await.unwrap();
    assert_eq!(
        again.kind,
        ClaimKind::Failover {
            previous: "a".into()
        }
    );
    assert_eq!(again.origin.pid, "2");
    assert_ne!(again.owner, old.owner);
}

async fn draining_keeps_owned_streams(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    let owner = lb.pick(&key("s")).await.unwrap().origin.server;
    let other = if owner == "a" { "b" } else { "a" };
    lb.set_draining(&owner, true).await.unwrap();
    let again = lb.pick(&key("s")).await.unwrap();
    assert_eq!(
        (again.kind, again.origin.server.as_str()),
        (ClaimKind::Owned, owner.as_str())
    );
    for i in 0..5 {
        assert_eq!(
            lb.pick(&key(&format!("n{i}"))).await.unwrap().origin.server,
            other
        );
    }
    let listed = lb.origins().await.unwrap();
    assert!(
        listed
            .iter()
            .find(|o| o.origin.server == owner)
            .unwrap()
            .draining
    );
}

async fn removed_origin_fails_over(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    let owner = lb.pick(&key("s")).await.unwrap().origin.server;
    assert!(lb.remove_origin(&owner).await.unwrap());
    assert!(!lb.remove_origin(&owner).await.unwrap());
    let moved = lb.pick(&key("s")).await.unwrap();
    assert_eq!(
        moved.kind,
        ClaimKind::Failover {
            previous: owner.clone()
        }
    );
    assert_ne!(moved.origin.server, owner);
    assert_eq!(lb.origins().await.unwrap().len(), 1);
}

async fn lease_expires_unless_renewed(make: MakeBackend) {
    let backend = make(timing(5_000, 600));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 50.0)).await.unwrap();
    let kept = lb.pick(&key("kept")).await.unwrap();
    lb.pick(&key("dropped")).await.unwrap();
    for _ in 0..5 {
        sleep_ms(200).await;
        assert!(
            lb.renew(&[(key("kept"), kept.owner.clone())])
                .await
                .unwrap()
                .is_empty()
        );
    }
    let streams: Vec<String> = lb
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream)
        .collect();
    assert_eq!(streams, ["__defaultVhost__/live/kept"]);
    assert_eq!(lb.origins().await.unwrap()[0].streams_owned, 1);
    assert_eq!(lb.pick(&key("kept")).await.unwrap().kind, ClaimKind::Owned);
    assert_eq!(lb.pick(&key("dropped")).await.unwrap().kind, ClaimKind::New);
    // A lease that ran out while nobody else took the stream is claimed back by its holder.
    sleep_ms(700).await;
    assert!(lb.streams().await.unwrap().is_empty());
    assert!(
        lb.renew(&[(key("kept"), kept.owner.clone())])
            .await
            .unwrap()
            .is_empty()
    );
    let again = lb.pick(&key("kept")).await.unwrap();
    assert_eq!(
        (again.kind, again.owner),
        (ClaimKind::Owned, kept.owner.clone())
    );
    // One that another pick placed elsewhere meanwhile is lost.
    sleep_ms(700).await;
    lb.register(&origin("a", 1, 50.0)).await.unwrap();
    lb.register(&origin("b", 1, 0.0)).await.unwrap();
    let moved = lb.pick(&key("kept")).await.unwrap();
    assert_eq!(
        (moved.kind, moved.origin.server.as_str()),
        (ClaimKind::New, "b")
    );
    assert_eq!(
        lb.renew(&[(key("kept"), kept.owner.clone())])
            .await
            .unwrap(),
        vec![key("kept")]
    );
}

async fn owned_pick_tops_up_a_short_lease(make: MakeBackend) {
    let backend = make(timing(5_000, 800));
    let lb = &backend.lb;
    lb.register(&origin("a", 1, 0.0)).await.unwrap();
    lb.pick(&key("s")).await.unwrap();
    let expiry = || async { lb.streams().await.unwrap()[0].lease_expires_ms };
    let first = expiry().await;
    // More than half left: the pick reads only.
    sleep_ms(100).await;
    assert_eq!(lb.pick(&key("s")).await.unwrap().kind, ClaimKind::Owned);
    assert_eq!(expiry().await, first);
    // Less than half left: the pick renews.
    sleep_ms(450).await;
    assert_eq!(lb.pick(&key("s")).await.unwrap().kind, ClaimKind::Owned);
    assert!(expiry().await >= first + 500, "lease not renewed");
    sleep_ms(500).await;
    assert_eq!(
        lb.streams().await.unwrap().len(),
        1,
        "still owned past the first expiry"
    );
}

async fn sessions_expire(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.put_session("hls", "id1", "origin-a", Duration::from_millis(400))
        .await
        .unwrap();
    lb.put_session("rtc", "id1", "other kind", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        lb.get_session("hls", "id1").await.unwrap().as_deref(),
        Some("origin-a")
    );
    assert_eq!(
        lb.get_session("rtc", "id1").await.unwrap().as_deref(),
        Some("other kind")
    );
    assert_eq!(lb.get_session("hls", "unknown").await.unwrap(), None);
    sleep_ms(500).await;
    assert_eq!(lb.get_session("hls", "id1").await.unwrap(), None);
    lb.put_session("rtc", "id1", "replaced", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        lb.get_session("rtc", "id1").await.unwrap().as_deref(),
        Some("replaced")
    );
    // Touching extends the lifetime and keeps the value; what is gone stays gone.
    lb.put_session("hls", "id2", "kept", Duration::from_millis(400))
        .await
        .unwrap();
    assert!(
        lb.touch_session("hls", "id2", Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        !lb.touch_session("hls", "id1", Duration::from_secs(5))
            .await
            .unwrap()
    );
    sleep_ms(500).await;
    assert_eq!(
        lb.get_session("hls", "id2").await.unwrap().as_deref(),
        Some("kept")
    );
    assert_eq!(lb.get_session("hls", "id1").await.unwrap(), None);
}

async fn registry_forgets_long_silent_origins(make: MakeBackend) {
    let mut short = timing(200, 5_000);
    short.forget_after = Duration::from_millis(600);
    let backend = make(short);
    let lb = &backend.lb;
    lb.register(&origin("gone", 1, 0.0)).await.unwrap();
    sleep_ms(800).await;
    lb.register(&origin("here", 1, 0.0)).await.unwrap();
    let servers: Vec<String> = lb
        .origins()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.origin.server)
        .collect();
    assert_eq!(servers, ["here"]);
}

async fn registry_is_bounded(make: MakeBackend) {
    let backend = make(timing(60_000, 5_000));
    let lb = &backend.lb;
    for i in 0..MAX_ORIGINS {
        lb.register(&origin(&format!("o{i}"), 1, 0.0))
            .await
            .unwrap();
    }
    assert!(matches!(
        lb.register(&origin("one-too-many", 1, 0.0)).await,
        Err(BackendError::RegistryFull)
    ));
    // Known origins keep heartbeating when the registry is full.
    assert_eq!(
        lb.register(&origin("o1", 1, 0.0)).await.unwrap(),
        Registered::Refreshed
    );
}

/// An origin as discovery states it: no load figures.
fn discovered(server: &str, pid: u32) -> originstack_proxy::origins::Origin {
    let mut origin = origin(server, pid, 0.0);
    origin.summaries = None;
    origin
}

async fn discovery_refresh_keeps_heartbeat_figures(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    let pod = discovered("pod-a", 1);
    assert_eq!(
        lb.refresh_discovered(&pod, false).await.unwrap(),
        Registered::New
    );
    // A heartbeat folded into the discovered origin brings its figures.
    assert_eq!(
        lb.register(&origin("pod-a", 1, 42.0)).await.unwrap(),
        Registered::Refreshed
    );
    // Replicas restating it, draining or not, keep them.
    for draining in [true, true, false, true] {
        assert_eq!(
            lb.refresh_discovered(&pod, draining).await.unwrap(),
            Registered::Refreshed
        );
        let listed = lb.origins().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].alive);
        assert_eq!(listed[0].draining, draining);
        assert_eq!(listed[0].origin.load, 42.0);
        assert!(listed[0].origin.summaries.is_some());
    }
    // The kept figure still ranks: equal stream counts, the lower load wins.
    lb.refresh_discovered(&pod, false).await.unwrap();
    lb.register(&origin("b", 1, 10.0)).await.unwrap();
    for i in 0..3 {
        lb.pick(&key(&format!("a{i}"))).await.unwrap();
        lb.pick(&key(&format!("b{i}"))).await.unwrap();
    }
    assert_eq!(owned_counts(lb).await, [3, 3]);
    assert_eq!(lb.pick(&key("tie")).await.unwrap().origin.server, "b");
}

async fn discovery_refresh_stores_new_addresses_and_incarnations(make: MakeBackend) {
    let backend = make(timing(5_000, 5_000));
    let lb = &backend.lb;
    lb.refresh_discovered(&discovered("pod-a", 1), false)
        .await
        .unwrap();
    lb.register(&origin("pod-a", 1, 42.0)).await.unwrap();
    let owned = lb.pick(&key("s")).await.unwrap();

    // Other ports for the same pod: stored, the figures measured for the old ones dropped.
    let mut moved = discovered("pod-a", 1);
    moved.endpoints.rtmp = vec!["127.0.0.1:19999".parse().unwrap()];
    assert_eq!(
        lb.refresh_discovered(&moved, false).await.unwrap(),
        Registered::Refreshed
    );
    let listed = lb.origins().await.unwrap();
    assert_eq!(listed[0].origin.endpoints.rtmp, moved.endpoints.rtmp);
    assert_eq!(
        (listed[0].origin.load, listed[0].origin.summaries.is_none()),
        (0.0, true)
    );
    let again = lb.pick(&key("s")).await.unwrap();
    assert_eq!((again.kind, again.owner), (ClaimKind::Owned, owned.owner));

    // A new pod under the same name is a restart: its streams are released.
    assert_eq!(
        lb.refresh_discovered(&discovered("pod-a", 2), false)
            .await
            .unwrap(),
        Registered::Restarted
    );
    assert_eq!(
        lb.pick(&key("s")).await.unwrap().kind,
        ClaimKind::Failover {
            previous: "pod-a".into()
        }
    );
}

async fn discovery_refresh_keeps_an_origin_alive(make: MakeBackend) {
    let backend = make(timing(400, 5_000));
    let lb = &backend.lb;
    let pod = discovered("pod-a", 1);
    for _ in 0..8 {
        lb.refresh_discovered(&pod, false).await.unwrap();
        sleep_ms(150).await;
    }
    assert!(lb.origins().await.unwrap()[0].alive);
    assert_eq!(lb.pick(&key("s")).await.unwrap().origin.server, "pod-a");
    sleep_ms(600).await;
    assert!(!lb.origins().await.unwrap()[0].alive, "no refresh, no life");
}

/// `reporting` tells an origin's own heartbeats from discovery keeping it alive, so a Ready pod
/// whose SRS stopped heartbeating can be seen (the `origins_silent` metric).
async fn discovery_alone_is_not_reporting(make: MakeBackend) {
    let backend = make(timing(400, 5_000));
    let lb = &backend.lb;
    let pod = discovered("pod-a", 1);
    let status = || async {
        let listed = lb.origins().await.unwrap();
        (listed[0].alive, listed[0].reporting)
    };
    lb.refresh_discovered(&pod, false).await.unwrap();
    assert_eq!(status().await, (true, false), "discovered only");
    lb.register(&origin("pod-a", 1, 3.0)).await.unwrap();
    assert_eq!(status().await, (true, true), "heartbeat stored");
    lb.refresh_discovered(&pod, false).await.unwrap();
    assert_eq!(status().await, (true, true), "refresh keeps it");
    // The SRS process stops heartbeating; its pod stays Ready and discovery keeps it alive.
    for _ in 0..5 {
        sleep_ms(150).await;
        lb.refresh_discovered(&pod, false).await.unwrap();
    }
    assert_eq!(status().await, (true, false), "silent origin");
    lb.register(&origin("pod-a", 1, 3.0)).await.unwrap();
    assert_eq!(status().await, (true, true), "heartbeating again");
}

macro_rules! backend_suite {
    ($($behaviour:ident),* $(,)?) => {
        mod backends {
            mod memory {
                $(#[tokio::test]
                async fn $behaviour() {
                    super::super::$behaviour(crate::support::memory_backend).await
                })*
            }
            mod redis {
                $(#[tokio::test]
                async fn $behaviour() {
                    super::super::$behaviour(crate::support::redis_backend).await
                })*
            }
            /// rediss:// with a private CA (PROXY_REDIS_CA_FILE).
            mod redis_tls {
                $(#[tokio::test]
                async fn $behaviour() {
                    super::super::$behaviour(crate::support::redis_tls_backend).await
                })*
            }
            /// A three-node Redis Cluster (PROXY_REDIS_CLUSTER=on).
            mod redis_cluster {
                $(#[tokio::test]
                async fn $behaviour() {
                    super::super::$behaviour(crate::support::redis_cluster_backend).await
                })*
            }
        }
    };
}

backend_suite!(
    registers_and_lists_origins,
    owner_is_kept_while_alive,
    spreads_by_owned_count,
    load_breaks_count_ties,
    equal_ranks_are_broken_at_random,
    no_live_origin_is_a_typed_error,
    dead_owner_fails_over,
    restart_releases_streams,
    draining_keeps_owned_streams,
    removed_origin_fails_over,
    lease_expires_unless_renewed,
    owned_pick_tops_up_a_short_lease,
    sessions_expire,
    registry_forgets_long_silent_origins,
    registry_is_bounded,
    discovery_refresh_keeps_heartbeat_figures,
    discovery_alone_is_not_reporting,
    discovery_refresh_stores_new_addresses_and_incarnations,
    discovery_refresh_keeps_an_origin_alive,
);
