//! RTMP relay benchmark: scenarios 1 and 2 of `make bench` on their own (the measuring code
//! lives in the `originstack-bench` crate, `bench/src/scenarios/{relay,streams}.rs`).
//!
//! 1. One publisher at full speed to nginx-rtmp: straight, through a plain TCP relay (8 KiB and
//!    64 KiB buffers) and through the proxy binary.
//! 2. Proxy RSS and CPU per stream with many real-time publishers, against the plain relay.
//!
//! Run: `cargo bench -p originstack-proxy --bench rtmp_relay`
//! (`RTMP_BENCH_SECONDS`, `RTMP_BENCH_STREAMS`, `RTMP_BENCH_REPEATS` change the window, the
//! stream count and the repeats).

use std::{path::PathBuf, time::Duration};

use originstack_bench::{
    report, roles,
    scenarios::{self, Bench},
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // The plain relays run as child processes of this binary.
    if let Some(result) = roles::dispatch() {
        return result;
    }
    let window = Duration::from_secs(env_or("RTMP_BENCH_SECONDS", 8));
    let streams: usize = env_or("RTMP_BENCH_STREAMS", 200);
    let repeats: usize = env_or("RTMP_BENCH_REPEATS", 3);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let bench = Bench::new(
                PathBuf::from(env!("CARGO_BIN_EXE_originstack-proxy")),
                repeats,
                window,
            )?;
            let relay = scenarios::relay::run(&bench).await?;
            let many = scenarios::streams::run(&bench, &[streams]).await?;
            bench.progress.finish();
            print!("{}{}", report::summary(&relay), report::summary(&many));
            Ok(())
        })
}
