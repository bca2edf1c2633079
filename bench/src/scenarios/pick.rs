//! Scenario 4: pick latency for an owned and for a new stream, memory vs Redis on loopback,
//! with a Redis PING through the same client library as the baseline measured in the same run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use originstack_e2e::redis::RedisServer;
use originstack_proxy::origins::{
    LoadBalancer, MemoryBalancer, RedisBalancer, RedisSettings, StreamKey, Timing, parse_heartbeat,
};

use super::Clock;
use crate::{
    progress::Progress,
    report::{Bound, Figure, ScenarioResult},
    stats::Latency,
};

const ORIGINS: usize = 8;
pub const P99_TARGET: &str = "pick p99 ≤ 1 ms for a new stream on Redis";

/// One repeat's latencies.
pub struct PickRound {
    pub ping: Latency,
    pub memory_owned: Latency,
    pub memory_new: Latency,
    pub redis_owned: Latency,
    pub redis_new: Latency,
    /// EVALSHA/EVAL/SCRIPT LOAD calls Redis saw per pick.
    pub round_trips_per_pick: f64,
}

async fn register_origins(lb: &dyn LoadBalancer) -> anyhow::Result<()> {
    for i in 0..ORIGINS {
        let heartbeat = format!(
            r#"{{"ip":"127.0.0.1","server":"origin-{i}","service":"s","pid":"1","rtmp":["{}"],"summaries":{{"data":{{"self":{{"cpu_percent":{}}}}}}}}}"#,
            19350 + i,
            i % 3
        );
        lb.register(&parse_heartbeat(heartbeat.as_bytes())?).await?;
    }
    Ok(())
}

/// Times `iterations` sequential picks of an owned stream and of new streams.
async fn measure(
    lb: &dyn LoadBalancer,
    tag: &str,
    iterations: usize,
) -> anyhow::Result<(Latency, Latency)> {
    register_origins(lb).await?;
    let owned = StreamKey::new(None, "live", &format!("{tag}-owned"))?;
    lb.pick(&owned).await?;
    for i in 0..iterations / 10 {
        // Warm-up: connections, script cache, allocator.
        lb.pick(&owned).await?;
        lb.pick(&StreamKey::new(None, "warm", &format!("{tag}{i}"))?)
            .await?;
    }
    let mut owned_samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        lb.pick(&owned).await?;
        owned_samples.push(started.elapsed());
    }
    let keys = (0..iterations)
        .map(|i| StreamKey::new(None, "live", &format!("{tag}-new-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut new_samples = Vec::with_capacity(iterations);
    for key in &keys {
        let started = Instant::now();
        lb.pick(key).await?;
        new_samples.push(started.elapsed());
    }
    Ok((
        Latency::of(owned_samples).expect("samples"),
        Latency::of(new_samples).expect("samples"),
    ))
}

/// One repeat against `redis_server` (keys under a fresh prefix).
pub async fn round(
    redis_server: &RedisServer,
    repeat: usize,
    iterations: usize,
) -> anyhow::Result<PickRound> {
    let iterations = iterations.max(10);
    let timing = Timing::from_origin_ttl(Duration::from_secs(300));
    let memory: Arc<dyn LoadBalancer> = Arc::new(MemoryBalancer::new(timing));
    let (memory_owned, memory_new) = measure(memory.as_ref(), "m", iterations).await?;

    let redis: Arc<dyn LoadBalancer> = Arc::new(RedisBalancer::new(
        &RedisSettings {
            url: redis_server.url(),
            cluster: false,
            key_prefix: format!("bench{repeat}"),
            timeout: Duration::from_secs(2),
            ca_file: None,
        },
        timing,
    )?);
    let client = redis::Client::open(redis_server.url())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut ping_samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        if i >= iterations / 10 {
            ping_samples.push(started.elapsed());
        }
    }
    let script_calls = || -> anyhow::Result<u64> {
        ["evalsha", "eval", "script|load"]
            .iter()
            .map(|command| redis_server.command_calls(command))
            .sum()
    };
    let before = script_calls()?;
    let (redis_owned, redis_new) = measure(redis.as_ref(), "r", iterations).await?;
    let after = script_calls()?;
    // Registrations (one script each), the first pick, warm-up (2 per iteration/10), measured.
    let picks = 1 + 2 * (iterations / 10) + 2 * iterations;
    let commands = after - before - ORIGINS as u64;
    Ok(PickRound {
        ping: Latency::of(ping_samples).expect("samples"),
        memory_owned,
        memory_new,
        redis_owned,
        redis_new,
        round_trips_per_pick: commands as f64 / picks as f64,
    })
}

pub async fn run(
    progress: &Progress,
    repeats: usize,
    iterations: usize,
) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let redis_server = RedisServer::start()?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let figure = |label: &str, subject: &str| Figure::new(label, "µs", subject, "Redis PING");
    let mut redis_new_p50 = figure("pick p50, new stream", "Redis");
    let mut redis_new_p99 =
        figure("pick p99, new stream", "Redis").with_target(Bound::ValueAtMost, 1000.0, P99_TARGET);
    let mut redis_owned_p50 = figure("pick p50, owned stream", "Redis");
    let mut memory_new_p50 = figure("pick p50, new stream", "memory");
    let mut memory_owned_p50 = figure("pick p50, owned stream", "memory");
    let mut trips = Figure::new(
        "Redis round trips per pick",
        "calls/pick",
        "Redis",
        "one round trip",
    );
    for repeat in 1..=repeats {
        progress.step(format!(
            "pick latency {repeat}/{repeats}: {iterations} sequential picks per series"
        ));
        let r = round(&redis_server, repeat, iterations).await?;
        redis_new_p50.push(us(r.redis_new.p50), us(r.ping.p50));
        redis_new_p99.push(us(r.redis_new.p99), us(r.ping.p99));
        redis_owned_p50.push(us(r.redis_owned.p50), us(r.ping.p50));
        memory_new_p50.push(us(r.memory_new.p50), us(r.ping.p50));
        memory_owned_p50.push(us(r.memory_owned.p50), us(r.ping.p50));
        trips.push(r.round_trips_per_pick, 1.0);
    }
    let method = format!(
        "{iterations} sequential picks of one owned stream, then of {iterations} new streams, \
         from one client task, with {ORIGINS} origins registered: the in-memory backend, then the \
         Redis backend on a real redis-server on loopback. The baseline is a Redis PING round trip \
         through the same client library, measured in the same repeat. Round trips per pick are \
         counted from Redis's own command statistics."
    );
    Ok(clock.finish(
        "pick",
        "Pick latency, memory vs Redis",
        method,
        repeats,
        vec![
            redis_new_p50,
            redis_new_p99,
            redis_owned_p50,
            memory_new_p50,
            memory_owned_p50,
            trips,
        ],
        vec![],
    ))
}
