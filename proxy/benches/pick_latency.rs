//! Pick latency for an owned and for a new stream, memory vs Redis on loopback, with a Redis
//! PING through the same client as the baseline measured in the same run: scenario 4 of
//! `make bench` on its own (`bench/src/scenarios/pick.rs`).
//!
//! `cargo bench -p originstack-proxy --bench pick_latency` (ITERATIONS=n, REPEATS=n)

use originstack_bench::{progress::Progress, report, scenarios::pick};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let progress = Progress::new();
    let result = pick::run(
        &progress,
        env_or("REPEATS", 3),
        env_or("ITERATIONS", 20_000),
    )
    .await?;
    progress.finish();
    print!("{}", report::summary(&result));
    Ok(())
}
