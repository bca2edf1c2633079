//! Scenario 3: HTTP-FLV fan-out, many players of one stream, straight from the origin, through
//! the plain TCP relay and through the proxy with its fan-out on (the default) and off:
//! delivered media rate of a real-time stream, the proxy's RSS and CPU per player, the
//! connections the origin sees, and throughput with players reading as fast as they can.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use originstack_proxy::rtmp::chunk::Message;

use super::{Bench, Clock, measure, relay_origin, wait_up};
use crate::{
    crowd::Crowd,
    http_flv::{self, HttpFlvTarget},
    media, procstat,
    register::Heartbeat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
    rtmp_load::{self, RtmpTarget},
};

const PATH: &str = "/live/fanout.flv";
pub const RSS_TARGET: &str = "≤ 8 KiB RSS per HTTP-FLV player";
pub const ORIGIN_TARGET: &str = "one origin request per stream per proxy replica";
/// The proxy without its fan-out: one origin request per player.
const FANOUT_OFF: (&str, &str) = ("PROXY_HTTP_FANOUT", "off");

struct PlayCost {
    /// Media received per player, kbit/s.
    kbit_per_player: f64,
    /// All players together, MB/s.
    total_mb_per_s: f64,
    rss_kib_per_player: f64,
    cpu_percent_per_player: f64,
    /// Connections to the origin while the players play: the process's own, or one per
    /// player straight from the origin.
    origin_connections: usize,
}

/// `players` through every path; the proxy with its fan-out off (one origin request each) gets
/// `off_players`, as many as the origin and the machine hold.
pub async fn run(
    bench: &Bench,
    players: usize,
    off_players: usize,
) -> anyhow::Result<ScenarioResult> {
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
    let target = RtmpTarget::parse(&source)?;
    let origin_rtmp = nginx.rtmp_addr();
    // Publishes for the whole scenario (stopped when dropped).
    let publisher = Crowd::start(1, |_, counters, stop| {
        rtmp_load::publish_real_time(
            origin_rtmp,
            target.clone(),
            messages.clone(),
            span,
            counters,
            stop,
        )
    });
    wait_up(
        progress,
        "publisher",
        &publisher.counters,
        1,
        Duration::from_secs(20),
    )
    .await?;
    let (_live, live_addr) = roles::spawn(&RoleConfig::FlvOriginLive { rtmp: source })?;
    let (_looped, loop_addr) = roles::spawn(&RoleConfig::FlvOriginLoop { file: sample })?;
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
    .with_target(Bound::ValueAtMost, 8.0, RSS_TARGET);
    let mut rss_off = Figure::new(
        &format!("RSS per player, {off_players} players, fan-out off"),
        "KiB/player",
        "proxy, fan-out off",
        "plain TCP relay",
    );
    let mut cpu = Figure::new(
        &format!("CPU per player, {players} players of a live stream"),
        "% of a core/player",
        "proxy",
        "plain TCP relay",
    );
    let mut cpu_off = Figure::new(
        &format!("CPU per player, {off_players} players of a live stream, fan-out off"),
        "% of a core/player",
        "proxy, fan-out off",
        "plain TCP relay",
    );
    let mut origin = Figure::new(
        &format!(
            "connections to the origin, {players} players of one stream \
             (fan-out off: {off_players})"
        ),
        "connections",
        "proxy",
        "proxy, fan-out off",
    )
    .with_target(Bound::ValueAtMost, 1.0, ORIGIN_TARGET);
    // Players reading a looped file as fast as each can cannot share one origin request (a
    // fan-out runs at the pace of its origin and skips players behind it), so the throughput
    // is that of the proxy relaying, fan-out off.
    let mut full_direct = Figure::new(
        &format!("throughput, {off_players} players reading at full speed"),
        "MB/s",
        "proxy, fan-out off",
        "straight from origin",
    );
    let mut full_relay = Figure::new(
        &format!("throughput, {off_players} players reading at full speed"),
        "MB/s",
        "proxy, fan-out off",
        "plain TCP relay",
    );
    for repeat in 1..=bench.repeats {
        let of = bench.repeats;
        // Fresh relays and proxies each repeat (memory an earlier crowd left in a process's
        // allocator would hide what these players cost), the proxies registered with the
        // origin they relay.
        let (live_relay, live_relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
            upstream: live_addr,
        })?;
        let live_heartbeat =
            || Heartbeat::local("flv-live", nginx.rtmp_port(), Some(live_addr.port()));
        let live_proxy = bench.proxy_with_origin(live_heartbeat(), &[]).await?;
        let live_proxy_off = bench
            .proxy_with_origin(live_heartbeat(), &[(FANOUT_OFF.0, FANOUT_OFF.1.into())])
            .await?;
        let [direct, relayed, proxied, proxied_off] = paths(
            bench,
            &format!("fan-out {repeat}/{of}: live"),
            Pace::Live,
            live_addr.port(),
            [
                ("straight from the origin", live_addr, None, players),
                (
                    "through the plain TCP relay",
                    live_relay_addr,
                    Some(live_relay.pid()),
                    players,
                ),
                (
                    "through the proxy",
                    live_proxy.proxy.http,
                    Some(live_proxy.pid()),
                    players,
                ),
                (
                    "through the proxy, fan-out off",
                    live_proxy_off.proxy.http,
                    Some(live_proxy_off.pid()),
                    off_players,
                ),
            ],
        )
        .await?;
        drop((live_proxy, live_proxy_off, live_relay));
        let (loop_relay, loop_relay_addr) = roles::spawn(&RoleConfig::TcpRelay {
            upstream: loop_addr,
        })?;
        rate.push(proxied.kbit_per_player, direct.kbit_per_player);
        rss.push(proxied.rss_kib_per_player, relayed.rss_kib_per_player);
        rss_off.push(proxied_off.rss_kib_per_player, relayed.rss_kib_per_player);
        cpu.push(
            proxied.cpu_percent_per_player,
            relayed.cpu_percent_per_player,
        );
        cpu_off.push(
            proxied_off.cpu_percent_per_player,
            relayed.cpu_percent_per_player,
        );
        origin.push(
            proxied.origin_connections as f64,
            proxied_off.origin_connections as f64,
        );
        progress.step(format!(
            "  live: {:.0}/{:.0}/{:.0}/{:.0} kbit/s per player (proxy/fan-out off/relay/direct); \
             {:.1}/{:.1}/{:.1} KiB/player (proxy/fan-out off/relay); origin connections {}/{}",
            proxied.kbit_per_player,
            proxied_off.kbit_per_player,
            relayed.kbit_per_player,
            direct.kbit_per_player,
            proxied.rss_kib_per_player,
            proxied_off.rss_kib_per_player,
            relayed.rss_kib_per_player,
            proxied.origin_connections,
            proxied_off.origin_connections,
        ));

        let loop_proxy = bench
            .proxy_with_origin(
                Heartbeat::local("flv-loop", nginx.rtmp_port(), Some(loop_addr.port())),
                &[(FANOUT_OFF.0, FANOUT_OFF.1.into())],
            )
            .await?;
        let [direct, relayed, proxied] = paths(
            bench,
            &format!("fan-out {repeat}/{of}: full speed"),
            Pace::FullSpeed,
            loop_addr.port(),
            [
                ("straight from the origin", loop_addr, None, off_players),
                (
                    "through the plain TCP relay",
                    loop_relay_addr,
                    Some(loop_relay.pid()),
                    off_players,
                ),
                (
                    "through the proxy, fan-out off",
                    loop_proxy.proxy.http,
                    Some(loop_proxy.pid()),
                    off_players,
                ),
            ],
        )
        .await?;
        drop((loop_proxy, loop_relay));
        full_direct.push(proxied.total_mb_per_s, direct.total_mb_per_s);
        full_relay.push(proxied.total_mb_per_s, relayed.total_mb_per_s);
        progress.step(format!(
            "  full speed: proxy (fan-out off) {:.0} MB/s, relay {:.0}, straight {:.0}",
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
         origin, through the plain TCP relay and through two real `originstack-proxy` binaries: \
         one as it ships, sharing one origin request among all players (HTTP-FLV fan-out), and \
         one with `{}={}`, one origin request per player ({off_players} players there and in \
         the full-speed runs when the command line says so). Rates and CPU are taken over {:?} \
         once all players receive and two seconds have passed; RSS at its end, less the \
         process's RSS before the first player; connections to the origin are the process's \
         established sockets to the origin's port (`/proc/<pid>/fd` against \
         `/proc/<pid>/net/tcp`) once all players receive. For throughput a second origin \
         process serves the same sample in a loop as fast as each player reads (64 KiB body \
         frames), and the players' media bytes per second are added up; the proxy runs with \
         its fan-out off there, as players reading at their own pace cannot share a request.",
        FANOUT_OFF.0, FANOUT_OFF.1, bench.window
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
        vec![
            rate,
            rss,
            rss_off,
            cpu,
            cpu_off,
            origin,
            full_direct,
            full_relay,
        ],
        notes,
    ))
}

#[derive(Clone, Copy)]
enum Pace {
    /// A real-time stream: players get what the publisher sends.
    Live,
    /// A looped sample: players get what they can read.
    FullSpeed,
}

/// A crowd through each of `paths` (name, address, the process in between, players), one
/// after the other.
async fn paths<const N: usize>(
    bench: &Bench,
    label: &str,
    pace: Pace,
    origin_port: u16,
    paths: [(&str, SocketAddr, Option<u32>, usize); N],
) -> anyhow::Result<[PlayCost; N]> {
    let mut costs = Vec::with_capacity(N);
    for (name, addr, pid, players) in paths {
        bench
            .progress
            .step(format!("{label}, {name}, {players} players"));
        costs.push(crowd(bench, addr, pid, players, pace, origin_port).await?);
    }
    Ok(costs
        .try_into()
        .unwrap_or_else(|_| unreachable!("one cost per path")))
}

/// `n` HTTP-FLV players through `addr`; what they received and what they cost `pid`.
async fn crowd(
    bench: &Bench,
    addr: SocketAddr,
    pid: Option<u32>,
    n: usize,
    pace: Pace,
    origin_port: u16,
) -> anyhow::Result<PlayCost> {
    let idle_rss = pid.map(procstat::rss_kib).transpose()?.unwrap_or(0);
    let target = HttpFlvTarget::parse(&format!("http://{addr}{PATH}"))?;
    let players = Crowd::start(n, |_, counters, stop| {
        http_flv::play(addr, target.clone(), counters, stop)
    });
    wait_up(
        &bench.progress,
        "players",
        &players.counters,
        n as u64,
        Duration::from_secs(60),
    )
    .await?;
    let origin_connections = match pid {
        Some(pid) => procstat::connections_to(pid, origin_port)?,
        None => n,
    };
    // A live player's first second is the origin's GOP burst: let it pass.
    let settle = match pace {
        Pace::Live => Duration::from_secs(2),
        Pace::FullSpeed => Duration::from_secs(1),
    };
    let window = measure(bench, "players", players, pid, idle_rss, settle).await?;
    Ok(PlayCost {
        kbit_per_player: window.kbit_per_session(n),
        total_mb_per_s: window.media_bytes as f64 / 1e6 / window.seconds,
        rss_kib_per_player: window.rss_kib_per_session,
        cpu_percent_per_player: window.cpu_percent_per_session,
        origin_connections,
    })
}
