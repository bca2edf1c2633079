//! Scale simulation, internet scale on paper: N proxy replicas (each its own
//! `Origins` + `RedisBalancer`, as in the binary) on one real redis-server, in-process origins
//! heartbeating to a different replica each time (as SRS heartbeats reach any replica behind
//! a Service), and streams whose publisher and player land on two different replicas at once.
//!
//! Checked: no stream ever has two owners; placement stays balanced; when an origin dies every
//! one of its streams is owned by a live origin again within the origin TTL plus one second.
//! The origins carry no media: the simulation is about ownership, which is all the proxies
//! decide.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use originstack_e2e::redis::RedisServer;
use originstack_proxy::origins::{
    Origins, OriginsMetrics, RedisBalancer, RedisSettings, StreamKey, StreamLease, Timing,
    parse_heartbeat,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_util::sync::CancellationToken;

use crate::{
    progress::Progress,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    scenarios::Clock,
    stats::Latency,
};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub streams: usize,
    pub origins: usize,
    pub proxies: usize,
    pub origin_ttl: Duration,
    pub repeats: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            streams: 10_000,
            origins: 100,
            proxies: 10,
            origin_ttl: Duration::from_secs(5),
            repeats: 3,
        }
    }
}

/// What one simulated run found.
#[derive(Debug, Clone)]
pub struct SimRound {
    pub sessions: usize,
    /// Streams for which two sessions were told different owners.
    pub conflicts: usize,
    /// Streams whose owner in Redis is not the one the sessions were told.
    pub listing_mismatches: usize,
    pub busiest: u64,
    pub mean: f64,
    pub killed_streams: usize,
    /// Time from the kill until each of the killed origin's streams had a live owner.
    pub reowned: Vec<Duration>,
    /// Streams never re-owned before the deadline.
    pub not_reowned: usize,
    /// Moved streams the replicas disagreed on afterwards.
    pub conflicts_after_kill: usize,
    pub busiest_after_kill: u64,
    pub mean_after_kill: f64,
    pub pick_latency: Latency,
    pub claim_seconds: f64,
}

fn key(i: usize) -> StreamKey {
    StreamKey::new(None, "live", &format!("sim-{i:05}")).expect("a valid stream key")
}

fn server_name(i: usize) -> String {
    format!("origin-{i:03}")
}

struct Cluster {
    proxies: Vec<Arc<Origins>>,
    heartbeats: Vec<CancellationToken>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for beat in &self.heartbeats {
            beat.cancel();
        }
    }
}

async fn cluster(redis: &RedisServer, config: &SimConfig, prefix: &str) -> anyhow::Result<Cluster> {
    let timing = Timing::from_origin_ttl(config.origin_ttl);
    let proxies = (0..config.proxies)
        .map(|_| {
            let backend = RedisBalancer::new(
                &RedisSettings {
                    url: redis.url(),
                    cluster: false,
                    key_prefix: prefix.to_owned(),
                    // Thousands of picks queue on each replica's connection at once here.
                    timeout: Duration::from_secs(20),
                    ca_file: None,
                },
                timing,
            )?;
            Ok(Origins::new(
                Arc::new(backend),
                timing,
                OriginsMetrics::default(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut heartbeats = Vec::new();
    let every = config.origin_ttl / 3;
    for i in 0..config.origins {
        let mut beat =
            Heartbeat::local(&server_name(i), 20_000 + i as u16, Some(40_000 + i as u16));
        beat.cpu_percent = f64::from(rng.random_range(0..60u32));
        let origin = parse_heartbeat(beat.body().as_bytes())?;
        proxies[i % proxies.len()].register(&origin).await?;
        let stop = CancellationToken::new();
        heartbeats.push(stop.clone());
        let proxies = proxies.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            for n in 1usize.. {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                // Each heartbeat reaches another replica, as through a Service.
                let proxy = &proxies[(i + n) % proxies.len()];
                if let Err(err) = proxy.register(&origin).await {
                    tracing::warn!(server = %origin.server, error = %err, "simulated heartbeat failed");
                }
            }
        });
    }
    Ok(Cluster {
        proxies,
        heartbeats,
    })
}

/// Owned streams per live origin: (busiest, mean).
async fn balance(origins: &Origins, skip: Option<&str>) -> anyhow::Result<(u64, f64)> {
    let listed = origins.origins().await?;
    let counts: Vec<u64> = listed
        .iter()
        .filter(|o| Some(o.origin.server.as_str()) != skip)
        .map(|o| o.streams_owned)
        .collect();
    anyhow::ensure!(!counts.is_empty(), "no origins listed");
    let busiest = counts.iter().copied().max().unwrap_or(0);
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    Ok((busiest, mean))
}

pub async fn round(
    redis: &RedisServer,
    config: &SimConfig,
    repeat: usize,
    progress: &Progress,
) -> anyhow::Result<SimRound> {
    let cluster = cluster(redis, config, &format!("sim{repeat}")).await?;
    let proxies = &cluster.proxies;
    let p = proxies.len();

    // Every stream gets a publisher and a player on two different replicas, all at once.
    progress.step(format!(
        "simulation {repeat}: {} sessions on {} streams through {p} replicas, {} origins",
        2 * config.streams,
        config.streams,
        config.origins
    ));
    let claim_started = Instant::now();
    let mut tasks = Vec::with_capacity(2 * config.streams);
    let mut rng = StdRng::seed_from_u64(repeat as u64);
    for s in 0..config.streams {
        let first = rng.random_range(0..p);
        let second = (first + rng.random_range(1..p.max(2))) % p;
        for replica in [first, second] {
            let origins = proxies[replica].clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let lease = origins.lease(&key(s)).await;
                (s, lease, started.elapsed())
            }));
        }
    }
    let mut leases: HashMap<usize, Vec<StreamLease>> = HashMap::new();
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (s, lease, took) = task.await?;
        latencies.push(took);
        leases.entry(s).or_default().push(lease?);
    }
    let claim_seconds = claim_started.elapsed().as_secs_f64();
    let sessions = latencies.len();
    let owner_of = |held: &[StreamLease]| -> HashSet<String> {
        held.iter().map(|l| l.origin().server.clone()).collect()
    };
    let conflicts = leases
        .values()
        .filter(|held| owner_of(held).len() > 1)
        .count();
    let listing: HashMap<String, String> = proxies[0]
        .streams()
        .await?
        .into_iter()
        .map(|owner| (owner.stream, owner.origin))
        .collect();
    let listing_mismatches = leases
        .iter()
        .filter(|(s, held)| listing.get(&key(**s).to_string()) != Some(&held[0].origin().server))
        .count();
    let (busiest, mean) = balance(&proxies[0], None).await?;
    progress.step(format!(
        "  {sessions} sessions in {claim_seconds:.1} s; {conflicts} conflicts; busiest origin {busiest} streams, mean {mean:.1}"
    ));

    // Kill the busiest origin: its heartbeats stop and its sessions end (they lose their
    // origin); their clients reconnect through any replica until a live origin owns the stream.
    let listed = proxies[0].origins().await?;
    let victim = listed
        .iter()
        .max_by_key(|o| o.streams_owned)
        .map(|o| o.origin.server.clone())
        .expect("origins listed");
    let victim_index: usize = victim.trim_start_matches("origin-").parse()?;
    let killed: Vec<usize> = leases
        .iter()
        .filter(|(_, held)| held[0].origin().server == victim)
        .map(|(s, _)| *s)
        .collect();
    progress.step(format!(
        "  killing {victim} ({} streams); origin TTL {:?}",
        killed.len(),
        config.origin_ttl
    ));
    let killed_at = Instant::now();
    cluster.heartbeats[victim_index].cancel();
    for s in &killed {
        leases.remove(s);
    }
    let deadline = config.origin_ttl + Duration::from_secs(5);
    let reconnects: Vec<_> = killed
        .iter()
        .map(|&s| {
            let proxies = proxies.clone();
            let victim = victim.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(s as u64);
                while killed_at.elapsed() < deadline {
                    let replica = &proxies[rng.random_range(0..proxies.len())];
                    if let Ok(lease) = replica.lease(&key(s)).await
                        && lease.origin().server != victim
                    {
                        return Some((killed_at.elapsed(), lease));
                    }
                    // A client retrying its connection.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            })
        })
        .collect();
    let mut reowned = Vec::new();
    let mut not_reowned = 0;
    let mut moved = Vec::new();
    for (task, s) in reconnects.into_iter().zip(&killed) {
        match task.await? {
            Some((took, lease)) => {
                reowned.push(took);
                moved.push((*s, lease));
            }
            None => not_reowned += 1,
        }
    }
    // Every replica must now name the same live owner for each moved stream.
    let mut conflicts_after_kill = 0;
    for (s, lease) in &moved {
        let mut owners = HashSet::from([lease.origin().server.clone()]);
        for proxy in proxies {
            owners.insert(proxy.lease(&key(*s)).await?.origin().server.clone());
        }
        if owners.len() > 1 || owners.contains(&victim) {
            conflicts_after_kill += 1;
        }
    }
    let (busiest_after_kill, mean_after_kill) = balance(&proxies[0], Some(&victim)).await?;
    Ok(SimRound {
        sessions,
        conflicts,
        listing_mismatches,
        busiest,
        mean,
        killed_streams: killed.len(),
        reowned,
        not_reowned,
        conflicts_after_kill,
        busiest_after_kill,
        mean_after_kill,
        pick_latency: Latency::of(latencies).expect("samples"),
        claim_seconds,
    })
}

pub async fn run(progress: &Progress, config: &SimConfig) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let redis = RedisServer::start()?;
    let ttl_plus_one = (config.origin_ttl + Duration::from_secs(1)).as_secs_f64();
    let mut conflicts = Figure::new("streams with two owners", "streams", "conflicts", "streams")
        .with_target(Bound::ValueAtMost, 0.0, "zero ownership conflicts");
    let mut busiest = Figure::new(
        "streams on the busiest origin",
        "streams",
        "busiest",
        "mean",
    )
    .with_target(Bound::RatioAtMost, 1.15, "busiest origin ≤ 1.15 × the mean");
    let mut busiest_after = Figure::new(
        "streams on the busiest origin after the kill",
        "streams",
        "busiest",
        "mean",
    )
    .with_target(
        Bound::RatioAtMost,
        1.15,
        "busiest origin ≤ 1.15 × the mean, after a kill",
    );
    let mut slowest = Figure::new(
        "re-owned after the kill, slowest stream",
        "s",
        "slowest",
        "TTL + 1 s",
    )
    .with_target(
        Bound::RatioAtMost,
        1.0,
        "every stream of a killed origin re-owned within TTL + 1 s",
    );
    let mut median = Figure::new(
        "re-owned after the kill, median stream",
        "s",
        "median",
        "TTL + 1 s",
    );
    let mut notes = Vec::new();
    for repeat in 1..=config.repeats {
        let r = round(&redis, config, repeat, progress).await?;
        conflicts.push(
            (r.conflicts + r.listing_mismatches + r.conflicts_after_kill) as f64,
            (config.streams + r.killed_streams) as f64,
        );
        busiest.push(r.busiest as f64, r.mean);
        busiest_after.push(r.busiest_after_kill as f64, r.mean_after_kill);
        let reowned = Latency::of(r.reowned.clone());
        // A stream never re-owned counts as infinitely slow.
        let worst = if r.not_reowned > 0 {
            f64::INFINITY
        } else {
            reowned.map_or(f64::NAN, |l| l.max.as_secs_f64())
        };
        slowest.push(worst, ttl_plus_one);
        median.push(
            reowned.map_or(f64::NAN, |l| l.p50.as_secs_f64()),
            ttl_plus_one,
        );
        notes.push(format!(
            "Repeat {repeat}: {} sessions claimed in {:.1} s (pick p50 {:.1} ms, p99 {:.1} ms under \
             that load); {} conflicting answers, {} owners differing from Redis's listing; killed \
             origin owned {} streams, {} re-owned (slowest {:.2} s), {} disagreements after.",
            r.sessions,
            r.claim_seconds,
            r.pick_latency.p50.as_secs_f64() * 1e3,
            r.pick_latency.p99.as_secs_f64() * 1e3,
            r.conflicts,
            r.listing_mismatches,
            r.killed_streams,
            r.reowned.len(),
            worst,
            r.conflicts_after_kill
        ));
    }
    // Let the replicas' background renewers see their `Origins` gone before Redis stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(redis);
    let method = format!(
        "{} proxy replicas in one process, each with its own `Origins` and `RedisBalancer` (its \
         own Redis connection, as separate proxy processes have), on one real redis-server. {} \
         in-process origins send SRS-shaped heartbeats (with varied CPU load figures) every third \
         of the origin TTL ({:?}), each time to another replica. {} streams: every stream gets a \
         publisher session and a player session on two different random replicas, all {} picks \
         in flight at once, and the sessions hold their leases. Checked: every session of a stream \
         was told the same owner, and it is the owner Redis lists; streams per origin. Then the \
         busiest origin is killed (heartbeats stop, its sessions end) and each of its streams is \
         retried every 100 ms through a random replica until a live origin owns it; afterwards \
         every replica must name that same owner. The origins carry no media: the simulation is \
         about ownership, which is what the proxies decide.",
        config.proxies,
        config.origins,
        config.origin_ttl,
        config.streams,
        2 * config.streams
    );
    Ok(clock.finish(
        "sim",
        &format!(
            "Scale simulation: {} replicas, {} origins, {} streams",
            config.proxies, config.origins, config.streams
        ),
        method,
        config.repeats,
        vec![conflicts, busiest, busiest_after, slowest, median],
        notes,
    ))
}
