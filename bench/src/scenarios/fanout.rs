//! Scenario 3: HTTP-FLV fan-out, many players of one stream, straight from the origin, through
//! the plain TCP relay and through the proxy: delivered media rate of a real-time stream, the
//! proxy's RSS and CPU per player, and throughput with players reading as fast as they can.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use originstack_proxy::rtmp::chunk::Message;
use tokio_util::sync::CancellationToken;

use super::{Bench, Clock, relay_origin, wait_up};
use crate::{
    http_flv::{self, HttpFlvTarget},
    media, procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    rtmp_load::{self, Counters, RtmpTarget},
};

const PATH: &str = "/live/fanout.flv";

struct PlayCost {
    /// Media received per player, kbit/s.
    kbit_per_player: f64,
    /// All players together, MB/s.
    total_mb_per_s: f64,
    rss_kib_per_player: f64,
    cpu_percent_per_player: f64,
}

pub async fn run(bench: &Bench, players: usize) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    progress.step(format!(
        "HTTP-FLV fan-out, {players} players: setting up origins"
    ));
    let sample = bench.light_sample()?.to_owned();
    let tags = media::tags(&sample)?;
    let span = media::loop_span_ms(&tags);
    let messages: Arc<Vec<Message>> = Arc::new(tags.iter().map(|t| t.to_message()).collect());
    let nginx = relay_origin(64)?;
    let source = format!("rtmp://{}/live/fanout", nginx.rtmp_addr());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let published = Arc::new(Counters::default());
    tokio::spawn(rtmp_load::publish_real_time(
        nginx.rtmp_addr(),
        RtmpTarget::parse(&source)?,
        messages,
        span,
        published.clone(),
        stop.clone(),
    ));
    wait_up(
        progress,
        "publisher",
        &published,
        1,
        Duration::from_secs(20),
    )
    .await?;
    let (_live, live_addr) = roles::spawn(&RoleConfig::FlvOriginLive { rtmp: source })?;
    let (_looped, loop_addr) = roles::spawn(&RoleConfig::FlvOriginLoop { file: sample })?;
    let (live_relay, live_relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
        upstream: live_addr,
    })?;
    let (loop_relay, loop_relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
        upstream: loop_addr,
    })?;

    let mut rate = Figure::new(
        &format!("media rate per player, {players} players of a live stream"),
        "kbit/s",
        "proxy",
        "straight from origin",
    );
    let mut rss = Figure::new(
        &format!("RSS per player, {players} players"),
        "KiB/player",
        "proxy",
        "plain TCP relay",
    )
    .with_target(Bound::ValueAtMost, 32.0, "≤ 32 KiB RSS per HTTP-FLV player");
    let mut cpu = Figure::new(
        &format!("CPU per player, {players} players of a live stream"),
        "% of a core/player",
        "proxy",
        "plain TCP relay",
    );
    let mut full_direct = Figure::new(
        &format!("throughput, {players} players reading at full speed"),
        "MB/s",
        "proxy",
        "straight from origin",
    );
    let mut full_relay = Figure::new(
        &format!("throughput, {players} players reading at full speed"),
        "MB/s",
        "proxy",
        "plain TCP relay",
    );
    for repeat in 1..=bench.repeats {
        let of = bench.repeats;
        // Fresh proxies each repeat, each registered with the origin it relays.
        let live_proxy = bench
            .proxy_with_origin(
                Heartbeat::local("flv-live", nginx.rtmp_port(), Some(live_addr.port())),
                &[],
            )
            .await?;
        progress.step(format!(
            "fan-out {repeat}/{of}: live, straight from the origin"
        ));
        let direct = crowd(bench, live_addr, None, players, true).await?;
        progress.step(format!(
            "fan-out {repeat}/{of}: live, through the plain TCP relay"
        ));
        let relayed = crowd(
            bench,
            live_relay_addr,
            Some(live_relay.pid()),
            players,
            true,
        )
        .await?;
        progress.step(format!("fan-out {repeat}/{of}: live, through the proxy"));
        let proxied = crowd(
            bench,
            live_proxy.proxy.http,
            Some(live_proxy.pid()),
            players,
            true,
        )
        .await?;
        drop(live_proxy);
        rate.push(proxied.kbit_per_player, direct.kbit_per_player);
        rss.push(proxied.rss_kib_per_player, relayed.rss_kib_per_player);
        cpu.push(
            proxied.cpu_percent_per_player,
            relayed.cpu_percent_per_player,
        );
        progress.step(format!(
            "  live: {:.0}/{:.0}/{:.0} kbit/s per player (proxy/relay/direct); proxy {:.1} KiB/player, relay {:.1}",
            proxied.kbit_per_player,
            relayed.kbit_per_player,
            direct.kbit_per_player,
            proxied.rss_kib_per_player,
            relayed.rss_kib_per_player
        ));

        let loop_proxy = bench
            .proxy_with_origin(
                Heartbeat::local("flv-loop", nginx.rtmp_port(), Some(loop_addr.port())),
                &[],
            )
            .await?;
        progress.step(format!(
            "fan-out {repeat}/{of}: full speed, straight from the origin"
        ));
        let direct = crowd(bench, loop_addr, None, players, false).await?;
        progress.step(format!(
            "fan-out {repeat}/{of}: full speed, through the plain TCP relay"
        ));
        let relayed = crowd(
            bench,
            loop_relay_addr,
            Some(loop_relay.pid()),
            players,
            false,
        )
        .await?;
        progress.step(format!(
            "fan-out {repeat}/{of}: full speed, through the proxy"
        ));
        let proxied = crowd(
            bench,
            loop_proxy.proxy.http,
            Some(loop_proxy.pid()),
            players,
            false,
        )
        .await?;
        drop(loop_proxy);
        full_direct.push(proxied.total_mb_per_s, direct.total_mb_per_s);
        full_relay.push(proxied.total_mb_per_s, relayed.total_mb_per_s);
        progress.step(format!(
            "  full speed: proxy {:.0} MB/s, relay {:.0}, straight {:.0}",
            proxied.total_mb_per_s, relayed.total_mb_per_s, direct.total_mb_per_s
        ));
    }
    let method = format!(
        "nginx-rtmp cannot serve HTTP-FLV, so the origin here is this crate's own small HTTP-FLV \
         origin (`originstack-bench`, role `flv-origin`, on hyper): it plays the stream over RTMP \
         from nginx-rtmp, which a real-time publisher of the 320x240 H.264 + AAC sample feeds, \
         keeps the codec headers and the current GOP, and writes every tag to every player as a \
         chunked `video/x-flv` body, as SRS's HTTP-FLV does. {players} players (this load \
         generator, on hyper) `GET {PATH}` and check every FLV tag; they play straight from that \
         origin, through the plain TCP relay and through the real `originstack-proxy` binary, \
         which opens one origin request per player (it relays, it does not fan out itself). Rates \
         and CPU are taken over {:?} once all players receive and two seconds have passed; RSS at \
         its end, less the process's RSS before the first player. For throughput a second origin \
         process serves the same sample in a loop as fast as each player reads (64 KiB body \
         frames), and the players' media bytes per second are added up.",
        bench.window
    );
    let notes = vec![
        "On this 2-core machine the players, the origin and the relay or proxy share the cores, \
         so the full-speed throughput is that of the whole machine; the ratio to the plain TCP \
         relay is the fairer one, as both add one process and one hop."
            .to_owned(),
    ];
    Ok(clock.finish(
        "fanout",
        "HTTP-FLV fan-out, one stream",
        method,
        bench.repeats,
        vec![rate, rss, cpu, full_direct, full_relay],
        notes,
    ))
}

/// `n` HTTP-FLV players through `addr`; what they received and what they cost `pid`.
async fn crowd(
    bench: &Bench,
    addr: SocketAddr,
    pid: Option<u32>,
    n: usize,
    live: bool,
) -> anyhow::Result<PlayCost> {
    let idle_rss = pid.map(procstat::rss_kib).transpose()?.unwrap_or(0);
    let target = HttpFlvTarget::parse(&format!("http://{addr}{PATH}"))?;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let _stop_on_error = stop.clone().drop_guard();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(http_flv::play(
                addr,
                target.clone(),
                counters.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_up(
        &bench.progress,
        "players",
        &counters,
        n as u64,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(if live { 2 } else { 1 })).await;
    let before = pid.map(procstat::Sample::take).transpose()?;
    let received_before = counters.media_bytes();
    let started = std::time::Instant::now();
    tokio::time::sleep(bench.window).await;
    let seconds = started.elapsed().as_secs_f64();
    let received = counters.media_bytes() - received_before;
    let after = pid.map(procstat::Sample::take).transpose()?;
    anyhow::ensure!(
        counters.failed() == 0,
        "{} players failed",
        counters.failed()
    );
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let (rss, cpu) = match (before, after) {
        (Some(before), Some(after)) => (
            after.rss_kib.saturating_sub(idle_rss) as f64 / n as f64,
            after.cores_since(&before) * 100.0 / n as f64,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(PlayCost {
        kbit_per_player: received as f64 * 8.0 / 1000.0 / seconds / n as f64,
        total_mb_per_s: received as f64 / 1e6 / seconds,
        rss_kib_per_player: rss,
        cpu_percent_per_player: cpu,
    })
}
