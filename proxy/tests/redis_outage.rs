//! redis-server dies mid-run: new picks fail at once with a clear error, readiness drops,
//! leases already held stay usable, and everything recovers by itself when Redis is back.

mod support;

use std::time::{Duration, Instant};

use originstack_e2e::redis::RedisServer;
use originstack_proxy::origins::{Origins, OriginsMetrics, PickError, StreamKey};
use support::{origin, redis_balancer, timing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_fail_clearly_during_an_outage_and_recover() {
    let mut redis = RedisServer::start().unwrap();
    let timing = timing(2_000, 5_000);
    let origins = Origins::new(
        redis_balancer(&redis, timing),
        timing,
        OriginsMetrics::default(),
    );
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
