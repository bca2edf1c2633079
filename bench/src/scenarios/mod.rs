//! The standard scenarios of `make bench`. Each measures its subject and its baseline in the
//! same repeat, against real peers (nginx-rtmp, redis-server, the real proxy binary), and
//! returns a [`ScenarioResult`].

pub mod fanout;
pub mod idle;
pub mod pick;
pub mod relay;
pub mod scale;
pub mod streams;
pub mod udp;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use originstack_e2e::{NginxRtmpConfig, NginxRtmpOrigin, ProxyProcess};
use tokio_util::sync::CancellationToken;

use crate::{
    crowd::{Counters, Crowd},
    procstat,
    progress::Progress,
    register::{self, Heartbeat},
    report::{Figure, ScenarioResult},
};

/// Why a target can be missed, by the target's text: the report prints it under a missed one.
pub const WHY_MISSED: &[(&str, &str)] = &[
    (
        fanout::RSS_TARGET,
        "with the fan-out a player costs the proxy its socket, its task and a cursor into the \
         stream's shared ring, answered without hyper's per-connection buffers. The frames not yet \
         written to a player wait in the stream's one ring (the backlog of tags), \
         whoever is behind; a burst (a new player's GOP) is written in one vectored write. With \
         PROXY_HTTP_FANOUT=off every player is a hyper connection (an 8 KiB read buffer and an \
         8 KiB head buffer for its whole life) plus one connection to the origin.",
    ),
    (
        streams::RSS_TARGET,
        "between messages a stream holds no buffer: reads land in a per-thread scratch buffer \
         and only the bytes of an unfinished message are kept, and write buffers are given back \
         after a small flush. What stays is the codec state of both hops, the session task and \
         the two sockets. The bench starts every publisher at the same instant, so all the \
         handshakes and stream setups are in memory at once; glibc keeps the pages it freed \
         afterwards, and that high-water mark is most of the spread between repeats, largest \
         at 200 streams where it is shared by fewer streams.",
    ),
    (
        streams::CPU_TARGET,
        "at real-time rates a relayed message costs one read and one write system call in \
         either process, and the kernel's side of them is most of the CPU of both (under \
         `perf`, about 88 % of the plain relay's and 70 % of the proxy's). The proxy adds its \
         protocol's work on every message: decoding the client's chunks and chunking them \
         again for the origin's hop, which has its own chunk size, stream ids, \
         acknowledgements and pings. Going below the relay would take fewer system calls than \
         it makes, that is holding messages back to write several at once: latency a live \
         stream should not pay.",
    ),
    (
        scale::TARGET,
        "the publishers and the origin run on the same two cores as the relay under test, so \
         no relay gets a second core to itself: compare the plain relay's own gain from one \
         worker to two in the same repeat, and the cores each one used (about one either way).",
    ),
    (
        udp::TARGET,
        "both the plain relay and the proxy read clients' datagrams in a loop on their main \
         thread and send the origin's back from a task per session. What the proxy does more \
         per datagram is its protocol's work: reading the SRT header and translating socket \
         ids, or classifying a WebRTC datagram and following its sender, and per-session \
         counts. The plain relay's own rate on this 2-core machine is bimodal (about 210,000 \
         or 320,000 datagrams per second, depending on where the scheduler puts the client, \
         the echo and the relay's threads), so single repeats are noisy: compare medians.",
    ),
    (
        pick::P99_TARGET,
        "the tail of a loopback round trip is the scheduler's on a loaded 2-core machine: compare \
         the PING baseline's own p99 in the same repeats. The median pick is one script call \
         (one round trip, as the last row shows).",
    ),
];

/// Everything the scenarios share.
pub struct Bench {
    /// The `originstack-proxy` binary under test.
    pub proxy_bin: PathBuf,
    pub repeats: usize,
    /// Length of each measuring window.
    pub window: Duration,
    pub progress: Arc<Progress>,
    work: tempfile::TempDir,
    light: OnceLock<PathBuf>,
    heavy: OnceLock<PathBuf>,
}

impl Bench {
    pub fn new(proxy_bin: PathBuf, repeats: usize, window: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            proxy_bin.is_file(),
            "no proxy binary at {} (build it: cargo build --release -p originstack-proxy)",
            proxy_bin.display()
        );
        Ok(Self {
            proxy_bin,
            repeats: repeats.max(1),
            window,
            progress: Arc::new(Progress::new()),
            work: tempfile::Builder::new()
                .prefix("originstack-bench-")
                .tempdir()?,
            light: OnceLock::new(),
            heavy: OnceLock::new(),
        })
    }

    /// The 320x240 sample (made on first use).
    pub fn light_sample(&self) -> anyhow::Result<&Path> {
        sample(&self.light, crate::media::light_sample)
    }

    /// The 1280x720 20 Mbit/s sample (made on first use).
    pub fn heavy_sample(&self) -> anyhow::Result<&Path> {
        sample(&self.heavy, || crate::media::heavy_sample(self.work.path()))
    }

    /// The real proxy binary on free loopback ports (in-memory load balancer) with `envs`.
    pub fn start_proxy(&self, envs: &[(&str, String)]) -> anyhow::Result<ProxyProcess> {
        ProxyProcess::start(&self.proxy_bin.to_string_lossy(), envs)
    }
}

impl Bench {
    /// The 720p 20 Mbit/s sample as RTMP messages, and how long one loop of it plays (ms).
    pub fn heavy_messages(
        &self,
    ) -> anyhow::Result<(Arc<Vec<originstack_proxy::rtmp::chunk::Message>>, u32)> {
        let tags = crate::media::tags(self.heavy_sample()?)?;
        let span = crate::media::loop_span_ms(&tags);
        Ok((
            Arc::new(tags.iter().map(|t| t.to_message()).collect()),
            span,
        ))
    }
}

fn sample(
    cell: &OnceLock<PathBuf>,
    make: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<&Path> {
    if cell.get().is_none() {
        let _ = cell.set(make()?);
    }
    Ok(cell.get().expect("set above"))
}

/// An nginx-rtmp origin that only relays (no HLS) and takes `connections` clients.
pub fn relay_origin(connections: u32) -> anyhow::Result<NginxRtmpOrigin> {
    NginxRtmpOrigin::start_with(NginxRtmpConfig {
        apps: vec!["live".into()],
        hls: false,
        worker_connections: connections + 64,
        ..NginxRtmpConfig::default()
    })
}

/// A proxy process with one origin registered over the register API and heartbeated (every
/// 5 s, well inside the default 30 s TTL) for as long as it lives.
pub struct RegisteredProxy {
    // Declared first: the heartbeats stop before the proxy goes away.
    _heartbeats: tokio_util::sync::DropGuard,
    pub proxy: ProxyProcess,
}

impl RegisteredProxy {
    pub fn pid(&self) -> u32 {
        self.proxy.process.pid()
    }
}

impl Bench {
    /// The proxy binary (in-memory load balancer, `envs` added) with `origin` registered.
    pub async fn proxy_with_origin(
        &self,
        origin: Heartbeat,
        envs: &[(&str, String)],
    ) -> anyhow::Result<RegisteredProxy> {
        let proxy = self.start_proxy(envs)?;
        let stop = CancellationToken::new();
        let url = originstack_e2e::srs::register_url(proxy.system, None);
        register::keep_registered(url, origin, Duration::from_secs(5), stop.clone())
            .await
            .context("register the origin with the proxy")?;
        Ok(RegisteredProxy {
            _heartbeats: stop.drop_guard(),
            proxy,
        })
    }
}

/// When and under what load a scenario ran.
pub struct Clock {
    measured_at: String,
    load_before: [f64; 3],
}

impl Clock {
    pub fn start() -> Self {
        Self {
            measured_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            load_before: procstat::load_average().unwrap_or_default(),
        }
    }

    pub fn finish(
        self,
        id: &str,
        title: &str,
        method: String,
        repeats: usize,
        figures: Vec<Figure>,
        notes: Vec<String>,
    ) -> ScenarioResult {
        ScenarioResult {
            id: id.to_owned(),
            title: title.to_owned(),
            method,
            measured_at: self.measured_at,
            load_before: self.load_before,
            load_after: procstat::load_average().unwrap_or_default(),
            repeats,
            figures,
            notes,
        }
    }
}

/// Waits until `n` sessions of a crowd are up; fails when one failed or `timeout` passed.
pub async fn wait_up(
    progress: &Progress,
    what: &str,
    counters: &Counters,
    n: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (up, failed) = (counters.up(), counters.failed());
        progress.status(format!("{what}: {up}/{n} up, {failed} failed"));
        anyhow::ensure!(
            failed == 0,
            "{failed} of {n} {what} failed (see the log above)"
        );
        if up >= n {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {up} of {n} {what} were up after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh stream name per session, so an origin that has not yet seen the previous run's
/// publisher leave never refuses a publish.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What a crowd did over one measuring window, and what it cost the process relaying it.
pub struct Window {
    pub media_bytes: u64,
    pub seconds: f64,
    /// RSS added per session since before the crowd (NaN without a process to watch).
    pub rss_kib_per_session: f64,
    /// Share of one core per session, in percent (NaN without a process).
    pub cpu_percent_per_session: f64,
}

impl Window {
    /// Media per session, kbit/s.
    pub fn kbit_per_session(&self, sessions: usize) -> f64 {
        self.media_bytes as f64 * 8.0 / 1000.0 / self.seconds / sessions.max(1) as f64
    }
}

/// Waits until the whole crowd is up, lets it settle, then measures over the bench window:
/// media counted by the crowd, CPU and RSS of `pid` (RSS less `idle_rss`, read before the
/// crowd started). Stops the crowd; fails if any session failed.
pub async fn measure(
    bench: &Bench,
    what: &str,
    crowd: Crowd,
    pid: Option<u32>,
    idle_rss: u64,
    settle: Duration,
) -> anyhow::Result<Window> {
    let n = crowd.len();
    wait_up(
        &bench.progress,
        what,
        &crowd.counters,
        n as u64,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(settle).await;
    let before = pid.map(procstat::Sample::take).transpose()?;
    let counted_before = crowd.counters.media_bytes();
    let started = std::time::Instant::now();
    tokio::time::sleep(bench.window).await;
    let seconds = started.elapsed().as_secs_f64();
    let media_bytes = crowd.counters.media_bytes() - counted_before;
    let after = pid.map(procstat::Sample::take).transpose()?;
    crowd.ensure_none_failed(what)?;
    crowd.stop().await;
    let (rss, cpu) = match (before, after) {
        (Some(before), Some(after)) => (
            after.rss_kib.saturating_sub(idle_rss) as f64 / n as f64,
            after.cores_since(&before) * 100.0 / n as f64,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(Window {
        media_bytes,
        seconds,
        rss_kib_per_session: rss,
        cpu_percent_per_session: cpu,
    })
}
