//! Eight load balancers (eight proxy replicas) on one real redis-server race to pick 100 new
//! streams, 1,000 picks at once: every stream must end up with exactly one owner.

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use originstack_e2e::redis::RedisServer;
use originstack_proxy::origins::{ClaimKind, StreamKey};
use support::{origin, owned_counts, redis_balancer, timing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_replicas_agree_on_one_owner_per_stream() {
    let redis = RedisServer::start().unwrap();
    let replicas: Vec<_> = (0..8)
        .map(|_| redis_balancer(&redis, timing(30_000, 30_000)))
        .collect();
    for (i, server) in ["o1", "o2", "o3", "o4"].into_iter().enumerate() {
        // Heartbeats reach different replicas; all must see every origin.
        replicas[i].register(&origin(server, 1, 0.0)).await.unwrap();
    }

    let mut picks = Vec::new();
    for n in 0..1000usize {
        let replica = Arc::clone(&replicas[n % replicas.len()]);
        let stream = StreamKey::new(None, "live", &format!("s{}", n % 100)).unwrap();
        picks.push(tokio::spawn(async move {
            let claim = replica.pick(&stream).await.expect("pick");
            (stream.to_string(), claim.origin.server, claim.kind)
        }));
    }
    let mut owners: HashMap<String, HashSet<String>> = HashMap::new();
    let mut claims = 0;
    for pick in picks {
        let (stream, server, kind) = pick.await.unwrap();
        if kind == ClaimKind::New {
            claims += 1;
        }
        owners.entry(stream).or_default().insert(server);
    }
    assert_eq!(owners.len(), 100);
    for (stream, servers) in &owners {
        assert_eq!(servers.len(), 1, "{stream} was given to {servers:?}");
    }
    assert_eq!(
        claims, 100,
        "exactly one pick per stream claims it, the rest find the owner"
    );

    // The store agrees with what the picks returned, and load was spread.
    let stored = replicas[7].streams().await.unwrap();
    assert_eq!(stored.len(), 100);
    for entry in &stored {
        assert!(owners[&entry.stream].contains(&entry.origin));
    }
    let counts = owned_counts(&replicas[3]).await;
    assert_eq!(counts, vec![25, 25, 25, 25]);
}
