//! Scenario 5: many idle RTMP connections (TCP connected, nothing sent yet, as port scanners,
//! stalled clients and connection floods leave them): the proxy's RSS per connection, against
//! the least an async server can keep per connection.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

use super::{Bench, Clock};
use crate::{
    procstat,
    report::{Bound, Figure, ScenarioResult},
    roles::{self, RoleConfig},
};

/// Connections opened at once while building the crowd.
const CONNECT_BATCH: usize = 128;

pub async fn run(bench: &Bench, connections: usize) -> anyhow::Result<ScenarioResult> {
    let clock = Clock::start();
    let progress = &bench.progress;
    let limit = procstat::raise_fd_limit()?;
    anyhow::ensure!(
        limit as usize > connections + 256,
        "the descriptor limit ({limit}) is too low for {connections} connections"
    );
    let mut per_connection = Figure::new(
        &format!("RSS per idle connection, {connections} connections"),
        "KiB/connection",
        "proxy",
        "bare tokio server",
    )
    .with_target(
        Bound::ValueAtMost,
        2.0,
        "≤ 2 KiB RSS per idle RTMP connection",
    );
    let handshake_timeout = Duration::from_secs(600);
    for repeat in 1..=bench.repeats {
        progress.step(format!(
            "{connections} idle connections {repeat}/{}: proxy",
            bench.repeats
        ));
        let proxy = bench.start_proxy(&[(
            "PROXY_RTMP_HANDSHAKE_TIMEOUT",
            format!("{}s", handshake_timeout.as_secs()),
        )])?;
        let proxied = crowd(bench, proxy.rtmp, proxy.process.pid(), connections).await?;
        drop(proxy);
        progress.step(format!(
            "{connections} idle connections {repeat}/{}: bare tokio server",
            bench.repeats
        ));
        let (floor, floor_addr) = roles::spawn(&RoleConfig::IdleFloor)?;
        let bare = crowd(bench, floor_addr, floor.pid(), connections).await?;
        drop(floor);
        per_connection.push(proxied, bare);
        progress.step(format!(
            "  proxy {proxied:.2} KiB/connection, bare tokio server {bare:.2}"
        ));
    }
    let method = format!(
        "{connections} TCP connections to the proxy's RTMP port that send nothing (the handshake \
         never starts), held open together; the real `originstack-proxy` binary runs with its \
         default PROXY_RTMP_MAX_CONNECTIONS (10,000) and with PROXY_RTMP_HANDSHAKE_TIMEOUT raised \
         to {}s so that none is closed while measuring (by default an idle connection is closed \
         after 10 s). RSS is read once the process holds every connection (its descriptor count \
         says so) and a second has passed, less its RSS before. The baseline, in the same repeat, \
         is a bare tokio server that spawns one task per connection waiting for a byte: the floor \
         any async Rust server pays. The descriptor limit is raised to the hard limit ({limit}) \
         for this process and the ones it starts. Kernel socket memory is not in RSS and not \
         counted on either side.",
        handshake_timeout.as_secs()
    );
    let notes = vec![
        "The issue puts the upstream Go proxy at about 7 KiB per idle connection; that figure is \
         quoted from the issue, not measured by this suite."
            .to_owned(),
    ];
    Ok(clock.finish(
        "idle",
        "Idle RTMP connections: proxy RSS",
        method,
        bench.repeats,
        vec![per_connection],
        notes,
    ))
}

/// Opens `n` silent connections to `addr`; KiB of RSS each costs process `pid`.
async fn crowd(bench: &Bench, addr: SocketAddr, pid: u32, n: usize) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = procstat::rss_kib(pid)?;
    let idle_fds = procstat::open_fds(pid)?;
    let mut sockets = Vec::with_capacity(n);
    while sockets.len() < n {
        let batch = CONNECT_BATCH.min(n - sockets.len());
        let opened =
            futures::future::try_join_all((0..batch).map(|_| TcpStream::connect(addr))).await?;
        sockets.extend(opened);
        bench
            .progress
            .status(format!("{}/{n} connections open", sockets.len()));
    }
    // Accepted connections show as descriptors of the server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        let held = procstat::open_fds(pid)?.saturating_sub(idle_fds);
        if held >= n || tokio::time::Instant::now() >= deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // On a loaded machine a few connections may be lost to a full accept queue; the figure is
    // per connection actually held.
    anyhow::ensure!(
        held * 100 >= n * 95,
        "the server holds only {held} of {n} connections"
    );
    if held < n {
        tracing::warn!(held, n, "not every connection was accepted");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = procstat::rss_kib(pid)?;
    drop(sockets);
    Ok(rss.saturating_sub(idle_rss) as f64 / held as f64)
}
