//! Scenario 1: one RTMP publisher at full speed, straight to the origin, through the plain TCP
//! relay (8 KiB and 64 KiB buffers) and through the proxy.

use super::{Bench, Clock, relay_origin, unique};
use crate::{
    procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    rtmp_load::{self, RtmpTarget},
};

pub async fn run(bench: &Bench) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    progress.step("relay throughput: encoding the 720p 20 Mbit/s sample");
    let (messages, span) = bench.heavy_messages()?;
    let origin = relay_origin(64)?;
    let (relay, relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
        upstream: origin.rtmp_addr(),
    })?;
    let (_relay_64k, relay_64k_addr) = roles::spawn(&RoleConfig::TcpRelay64k {
        upstream: origin.rtmp_addr(),
    })?;
    let proxy = bench
        .proxy_with_origin(Heartbeat::local("nginx-1", origin.rtmp_port(), None), &[])
        .await?;

    let mut versus_relay = Figure::new(
        "throughput, one stream at full speed",
        "MB/s",
        "proxy",
        "plain TCP relay",
    )
    .with_target(
        Bound::RatioAtLeast,
        0.8,
        "relay ≥ 80% of the plain TCP relay",
    );
    let mut versus_64k = Figure::new(
        "throughput, one stream at full speed",
        "MB/s",
        "proxy",
        "TCP relay, 64 KiB buffers",
    );
    let mut versus_direct = Figure::new(
        "throughput, one stream at full speed",
        "MB/s",
        "proxy",
        "straight to origin",
    );
    let mut cpu = Figure::new(
        "CPU per GB relayed",
        "core-seconds/GB",
        "proxy",
        "plain TCP relay",
    );
    let warm_up = std::time::Duration::from_secs(1);
    let publish = |addr| {
        let messages = messages.clone();
        async move {
            let target = RtmpTarget::parse(&format!("rtmp://{addr}/live/{}", unique("full")))?;
            rtmp_load::publish_full_speed(addr, &target, &messages, span, warm_up, bench.window)
                .await
        }
    };
    for repeat in 1..=bench.repeats {
        progress.step(format!(
            "relay throughput {repeat}/{}: straight, plain relay, 64 KiB relay, proxy ({:?} each)",
            bench.repeats, bench.window
        ));
        let direct = publish(origin.rtmp_addr()).await?;
        let before = procstat::Sample::take(relay.pid())?;
        let plain = publish(relay_addr).await?;
        let relay_cpu = procstat::Sample::take(relay.pid())?.cpu_seconds - before.cpu_seconds;
        let relay_bytes = plain * (bench.window + warm_up).as_secs_f64();
        let wide = publish(relay_64k_addr).await?;
        let before = procstat::Sample::take(proxy.pid())?;
        let proxied = publish(proxy.proxy.rtmp).await?;
        let proxy_cpu = procstat::Sample::take(proxy.pid())?.cpu_seconds - before.cpu_seconds;
        let proxy_bytes = proxied * (bench.window + warm_up).as_secs_f64();
        let mb = |rate: f64| rate / 1e6;
        versus_relay.push(mb(proxied), mb(plain));
        versus_64k.push(mb(proxied), mb(wide));
        versus_direct.push(mb(proxied), mb(direct));
        cpu.push(proxy_cpu / proxy_bytes * 1e9, relay_cpu / relay_bytes * 1e9);
        progress.step(format!(
            "  straight {:.0} MB/s, relay {:.0}, relay 64K {:.0}, proxy {:.0}",
            mb(direct),
            mb(plain),
            mb(wide),
            mb(proxied)
        ));
    }
    let method = format!(
        "One RTMP publisher (this load generator, on the proxy's own RTMP client code) sends a \
         1280x720 H.264 + AAC sample encoded at 20 Mbit/s in a loop, as fast as the path takes it, \
         to nginx-rtmp: straight, through a plain TCP relay (tokio `copy_bidirectional`, 8 KiB \
         buffers, and the same with 64 KiB buffers) and through the real `originstack-proxy` \
         binary (origin registered over the register API). Media bytes per second over {:?} \
         after a one-second warm-up. All four paths run one after another in every repeat; the \
         relay and the proxy are separate processes, so their CPU time is their own. CPU per GB \
         counts the warm-up too (the publisher sends during it).",
        bench.window
    );
    Ok(clock.finish(
        "relay",
        "RTMP relay throughput, one stream",
        method,
        bench.repeats,
        vec![versus_relay, versus_64k, versus_direct, cpu],
        vec![],
    ))
}
