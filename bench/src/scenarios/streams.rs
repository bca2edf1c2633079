//! Scenario 2: many concurrent real-time RTMP publishers: the proxy's RSS and CPU per stream
//! against the plain TCP relay carrying the same streams.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use originstack_proxy::rtmp::chunk::Message;

use super::{Bench, Clock, measure, relay_origin, unique};
use crate::{
    crowd::Crowd,
    media, procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    rtmp_load::{self, RtmpTarget},
};

pub const RSS_TARGET: &str = "≤ 16 KiB RSS per active RTMP stream";
pub const CPU_TARGET: &str = "CPU per active RTMP stream ≤ 0.9× the plain TCP relay";

/// What one crowd cost the process relaying it.
pub struct CrowdCost {
    pub rss_kib_per_session: f64,
    /// Share of one core per session, in percent.
    pub cpu_percent_per_session: f64,
    pub media_kbit_per_session: f64,
}

pub async fn run(bench: &Bench, counts: &[usize]) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    let tags = media::tags(bench.light_sample()?)?;
    let span = media::loop_span_ms(&tags);
    let messages: Arc<Vec<Message>> = Arc::new(tags.iter().map(|t| t.to_message()).collect());
    let most = counts.iter().copied().max().unwrap_or(0) as u32;
    let origin = relay_origin(most + 16)?;
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    for &n in counts {
        let mut rss = Figure::new(
            &format!("RSS per stream, {n} streams"),
            "KiB/stream",
            "proxy",
            "plain TCP relay",
        )
        .with_target(Bound::ValueAtMost, 16.0, RSS_TARGET);
        let mut cpu = Figure::new(
            &format!("CPU per stream, {n} streams"),
            "% of a core/stream",
            "proxy",
            "plain TCP relay",
        )
        .with_target(Bound::RatioAtMost, 0.9, CPU_TARGET);
        let mut rate = Vec::new();
        for repeat in 1..=bench.repeats {
            progress.step(format!(
                "{n} streams {repeat}/{}: through the proxy",
                bench.repeats
            ));
            // Fresh processes each time: memory an earlier crowd left in the allocator would
            // hide what these streams cost.
            let proxy = bench
                .proxy_with_origin(Heartbeat::local("nginx-1", origin.rtmp_port(), None), &[])
                .await?;
            let proxied = crowd(bench, proxy.proxy.rtmp, proxy.pid(), n, &messages, span).await?;
            drop(proxy);
            progress.step(format!(
                "{n} streams {repeat}/{}: through the plain TCP relay",
                bench.repeats
            ));
            let (relay, relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
                upstream: origin.rtmp_addr(),
            })?;
            let relayed = crowd(bench, relay_addr, relay.pid(), n, &messages, span).await?;
            drop(relay);
            rss.push(proxied.rss_kib_per_session, relayed.rss_kib_per_session);
            cpu.push(
                proxied.cpu_percent_per_session,
                relayed.cpu_percent_per_session,
            );
            rate.push(proxied.media_kbit_per_session);
            progress.step(format!(
                "  proxy {:.1} KiB/stream {:.3}% CPU/stream; relay {:.1} KiB/stream {:.3}%",
                proxied.rss_kib_per_session,
                proxied.cpu_percent_per_session,
                relayed.rss_kib_per_session,
                relayed.cpu_percent_per_session
            ));
        }
        if let Some(spread) = crate::stats::Spread::of(&rate) {
            notes.push(format!(
                "{n} streams: each publisher sent {:.0} kbit/s of media (median over repeats).",
                spread.median
            ));
        }
        figures.push(rss);
        figures.push(cpu);
    }
    let method = format!(
        "N publishers (this load generator) each send the 320x240 H.264 + AAC sample in real \
         time (as `ffmpeg -re`) to one nginx-rtmp origin, through the real `originstack-proxy` \
         binary and, in the same repeat, through the plain TCP relay (`copy_bidirectional`). Each \
         path runs in a fresh process. Once every publisher is up and two seconds have passed, \
         CPU time is taken over a {:?} window; RSS is read at the end of it, less the process's \
         RSS before the first session (so the figure is what the streams cost, not the binary).",
        bench.window
    );
    Ok(clock.finish(
        "streams",
        "Concurrent RTMP streams: proxy CPU and RSS per stream",
        method,
        bench.repeats,
        figures,
        notes,
    ))
}

/// `n` real-time publishers through `addr`; what they cost process `pid`.
async fn crowd(
    bench: &Bench,
    addr: SocketAddr,
    pid: u32,
    n: usize,
    messages: &Arc<Vec<Message>>,
    span: u32,
) -> anyhow::Result<CrowdCost> {
    let idle_rss = procstat::rss_kib(pid)?;
    let publishers = Crowd::start(n, |_, counters, stop| {
        let target =
            RtmpTarget::parse(&format!("rtmp://{addr}/live/{}", unique("s"))).expect("a valid URL");
        rtmp_load::publish_real_time(addr, target, messages.clone(), span, counters, stop)
    });
    let window = measure(
        bench,
        "publishers",
        publishers,
        Some(pid),
        idle_rss,
        Duration::from_secs(2),
    )
    .await?;
    Ok(CrowdCost {
        rss_kib_per_session: window.rss_kib_per_session,
        cpu_percent_per_session: window.cpu_percent_per_session,
        media_kbit_per_session: window.kbit_per_session(n),
    })
}
