//! Pick latency for an owned and for a new stream, memory vs Redis on loopback, with a Redis
//! PING through the same client as the baseline measured in the same run.
//!
//! `cargo bench -p originstack-proxy --bench pick_latency` (ITERATIONS=n to change the count)

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use originstack_e2e::redis::RedisServer;
use originstack_proxy::origins::{
    LoadBalancer, MemoryBalancer, RedisBalancer, RedisSettings, StreamKey, Timing, parse_heartbeat,
};

const ORIGINS: usize = 8;

struct Summary {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn summarise(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn print(name: &str, summary: &Summary, baseline: Option<&Summary>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!(
            "  p50 = {:.2}x PING",
            summary.p50.as_secs_f64() / b.p50.as_secs_f64()
        )
    });
    println!(
        "{name:<28} p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs{ratio}",
        summary.p50.as_secs_f64() * 1e6,
        summary.p99.as_secs_f64() * 1e6,
        summary.max.as_secs_f64() * 1e6
    );
}

async fn register_origins(lb: &dyn LoadBalancer) {
    for i in 0..ORIGINS {
        let heartbeat = format!(
            r#"{{"ip":"127.0.0.1","server":"origin-{i}","service":"s","pid":"1","rtmp":["{}"],"summaries":{{"self":{{"cpu_percent":{}}}}}}}"#,
            19350 + i,
            i % 3
        );
        lb.register(&parse_heartbeat(heartbeat.as_bytes()).unwrap())
            .await
            .unwrap();
    }
}

/// Times `iterations` sequential picks of an owned stream and of new streams.
async fn measure(lb: &dyn LoadBalancer, tag: &str, iterations: usize) -> (Summary, Summary) {
    register_origins(lb).await;
    let owned = StreamKey::new(None, "live", "owned").unwrap();
    lb.pick(&owned).await.unwrap();
    for i in 0..iterations / 10 {
        // Warm-up: connections, script cache, allocator.
        lb.pick(&owned).await.unwrap();
        lb.pick(&StreamKey::new(None, "warm", &format!("{tag}{i}")).unwrap())
            .await
            .unwrap();
    }
    let mut owned_samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        lb.pick(&owned).await.unwrap();
        owned_samples.push(started.elapsed());
    }
    let keys: Vec<StreamKey> = (0..iterations)
        .map(|i| StreamKey::new(None, "live", &format!("{tag}-new-{i}")).unwrap())
        .collect();
    let mut new_samples = Vec::with_capacity(iterations);
    for key in &keys {
        let started = Instant::now();
        lb.pick(key).await.unwrap();
        new_samples.push(started.elapsed());
    }
    (summarise(owned_samples), summarise(new_samples))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let timing = Timing::from_origin_ttl(Duration::from_secs(300));
    println!("{iterations} sequential picks each, {ORIGINS} origins, one client task\n");

    let memory: Arc<dyn LoadBalancer> = Arc::new(MemoryBalancer::new(timing));
    let (memory_owned, memory_new) = measure(memory.as_ref(), "m", iterations).await;

    let redis_server = RedisServer::start().expect("redis-server");
    let redis: Arc<dyn LoadBalancer> = Arc::new(
        RedisBalancer::new(
            &RedisSettings {
                url: redis_server.url(),
                cluster: false,
                key_prefix: "bench".into(),
                timeout: Duration::from_secs(2),
                ca_file: None,
            },
            timing,
        )
        .unwrap(),
    );
    // Baseline: one PING round trip through the same client library and loopback.
    let client = redis::Client::open(redis_server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut ping_samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .unwrap();
        if i >= iterations / 10 {
            ping_samples.push(started.elapsed());
        }
    }
    let ping = summarise(ping_samples);

    let script_calls = || -> u64 {
        ["evalsha", "eval", "script|load"]
            .iter()
            .map(|command| redis_server.command_calls(command).unwrap())
            .sum()
    };
    let before = script_calls();
    let (redis_owned, redis_new) = measure(redis.as_ref(), "r", iterations).await;
    let after = script_calls();
    // Registrations (one script each), the first pick, warm-up (2 per iteration/10), measured.
    let picks = 1 + 2 * (iterations / 10) + 2 * iterations;
    let commands = after - before - ORIGINS as u64;

    print("redis PING (baseline)", &ping, None);
    print("memory, owned stream", &memory_owned, None);
    print("memory, new stream", &memory_new, None);
    print("redis, owned stream", &redis_owned, Some(&ping));
    print("redis, new stream", &redis_new, Some(&ping));
    println!(
        "\nredis round trips per pick: {:.4} ({commands} EVALSHA/EVAL/SCRIPT LOAD calls for {picks} picks)",
        commands as f64 / picks as f64
    );
    // Server-side script time separates Redis work from client and scheduling delays.
    let stats = redis_server.cli(&["INFO", "commandstats"]).unwrap();
    if let Some(line) = stats.lines().find(|l| l.starts_with("cmdstat_evalsha:")) {
        println!("redis server side: {line}");
    }
    println!(
        "target p99 <= 1 ms for a new stream on redis: {}",
        if redis_new.p99 <= Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
