//! Scenario: scaling across cores. Several RTMP publishers at full speed at once, through the
//! proxy with its runtime on one worker thread and on two (`PROXY_WORKERS`), and through the
//! 64 KiB TCP relay on one and two worker threads as the baseline of what this machine allows.

use std::sync::Arc;

use originstack_proxy::rtmp::chunk::Message;

use super::{Bench, Clock, relay_origin, unique};
use crate::{
    procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    rtmp_load::{self, RtmpTarget},
};

/// Publishers at once: enough that two workers each have streams to relay.
pub const STREAMS: usize = 4;

pub const TARGET: &str = "2 workers ≥ 1.8× the throughput of 1";

/// Aggregate rate of `STREAMS` full-speed publishers to `addr`, and the cores `pid` used.
async fn publish_all(
    bench: &Bench,
    addr: std::net::SocketAddr,
    messages: &Arc<Vec<Message>>,
    span: u32,
    pid: u32,
) -> anyhow::Result<(f64, f64)> {
    let warm_up = std::time::Duration::from_secs(1);
    let before = procstat::Sample::take(pid)?;
    let rates = futures::future::try_join_all((0..STREAMS).map(|_| {
        let messages = messages.clone();
        async move {
            let target = RtmpTarget::parse(&format!("rtmp://{addr}/live/{}", unique("scale")))?;
            rtmp_load::publish_full_speed(addr, &target, &messages, span, warm_up, bench.window)
                .await
        }
    }))
    .await?;
    let cores = procstat::Sample::take(pid)?.cores_since(&before);
    Ok((rates.iter().sum(), cores))
}

pub async fn run(bench: &Bench) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    progress.step("scaling: encoding the 720p 20 Mbit/s sample");
    let (messages, span) = bench.heavy_messages()?;
    let origin = relay_origin(64)?;
    let heartbeat = || Heartbeat::local("nginx-1", origin.rtmp_port(), None);
    let proxy_1 = bench
        .proxy_with_origin(heartbeat(), &[("PROXY_WORKERS", "1".into())])
        .await?;
    let proxy_2 = bench
        .proxy_with_origin(heartbeat(), &[("PROXY_WORKERS", "2".into())])
        .await?;
    let upstream = origin.rtmp_addr();
    let (relay_1, relay_1_addr) =
        roles::spawn_with_workers(&RoleConfig::TcpRelay64k { upstream }, Some(1))?;
    let (relay_2, relay_2_addr) =
        roles::spawn_with_workers(&RoleConfig::TcpRelay64k { upstream }, Some(2))?;

    let label = format!("aggregate throughput, {STREAMS} streams at full speed");
    let mut proxy_scaling = Figure::new(&label, "MB/s", "proxy, 2 workers", "proxy, 1 worker")
        .with_target(Bound::RatioAtLeast, 1.8, TARGET);
    let mut relay_scaling = Figure::new(
        &label,
        "MB/s",
        "TCP relay 64 KiB, 2 workers",
        "TCP relay 64 KiB, 1 worker",
    );
    let mut versus_relay = Figure::new(
        &label,
        "MB/s",
        "proxy, 2 workers",
        "TCP relay 64 KiB, 2 workers",
    );
    let mut proxy_cores = Figure::new(
        "cores used while relaying",
        "cores",
        "proxy, 2 workers",
        "proxy, 1 worker",
    );
    let mut relay_cores = Figure::new(
        "cores used while relaying",
        "cores",
        "TCP relay 64 KiB, 2 workers",
        "TCP relay 64 KiB, 1 worker",
    );
    for repeat in 1..=bench.repeats {
        progress.step(format!(
            "scaling {repeat}/{}: proxy and relay at 1 and 2 workers, {STREAMS} streams ({:?} each)",
            bench.repeats, bench.window
        ));
        let (p1, p1_cores) =
            publish_all(bench, proxy_1.proxy.rtmp, &messages, span, proxy_1.pid()).await?;
        let (p2, p2_cores) =
            publish_all(bench, proxy_2.proxy.rtmp, &messages, span, proxy_2.pid()).await?;
        let (r1, r1_cores) =
            publish_all(bench, relay_1_addr, &messages, span, relay_1.pid()).await?;
        let (r2, r2_cores) =
            publish_all(bench, relay_2_addr, &messages, span, relay_2.pid()).await?;
        let mb = |rate: f64| rate / 1e6;
        proxy_scaling.push(mb(p2), mb(p1));
        relay_scaling.push(mb(r2), mb(r1));
        versus_relay.push(mb(p2), mb(r2));
        proxy_cores.push(p2_cores, p1_cores);
        relay_cores.push(r2_cores, r1_cores);
        progress.step(format!(
            "  proxy {:.0} → {:.0} MB/s ({p1_cores:.2} → {p2_cores:.2} cores), relay {:.0} → {:.0} \
             ({r1_cores:.2} → {r2_cores:.2} cores)",
            mb(p1),
            mb(p2),
            mb(r1),
            mb(r2)
        ));
    }
    let method = format!(
        "{STREAMS} RTMP publishers (this load generator) send the 1280x720 20 Mbit/s sample in a \
         loop, as fast as the path takes it, all at once, to one nginx-rtmp origin: through the \
         real `originstack-proxy` binary with PROXY_WORKERS=1 and =2, and through the plain TCP \
         relay (tokio `copy_bidirectional`, 64 KiB buffers) with TOKIO_WORKER_THREADS=1 and =2. \
         Media bytes per second summed over the publishers, over {:?} after a one-second \
         warm-up; cores are the relaying process's CPU time over the same span. The publishers \
         and the origin run on the same {} cores, so the relay's own scaling in the same repeat \
         is the most this machine lets any relay gain.",
        bench.window,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(clock.finish(
        "scale",
        "Scaling from one worker thread to two",
        method,
        bench.repeats,
        vec![
            proxy_scaling,
            relay_scaling,
            versus_relay,
            proxy_cores,
            relay_cores,
        ],
        vec![],
    ))
}
