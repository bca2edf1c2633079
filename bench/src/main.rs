//! `originstack-bench`: load generator and benchmark runner. `make bench` runs `run`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use originstack_bench::{
    chart,
    crowd::Crowd,
    http_flv, media, procstat,
    progress::Progress,
    register::{self, Heartbeat},
    report::{self, RunInfo, ScenarioResult},
    roles,
    rtmp_load::{self, RtmpTarget},
    scenarios::{self, Bench},
    sim::{self, SimConfig},
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "originstack-bench",
    version,
    about = "OriginStack load generator and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the standard scenarios and write the report (what `make bench` does).
    Run(RunArgs),
    /// Write the report again from the results saved by earlier runs.
    Report(OutputArgs),
    /// RTMP publishers: N streams of a sample, in real time or at full speed.
    Publish(PublishArgs),
    /// Players of one stream: RTMP (`rtmp://`) or HTTP-FLV (`http://.../app/stream.flv`).
    Play(PlayArgs),
    /// Heartbeat origins on a proxy's register API, as SRS does.
    Register(RegisterArgs),
    /// The scale simulation alone (N replicas on one redis-server).
    Sim(SimArgs),
}

#[derive(Args, Clone)]
struct OutputArgs {
    /// Raw results (one JSON file per scenario).
    #[arg(long, default_value = "bench/out")]
    out: PathBuf,
    /// The Markdown report; the chart is written next to it as report.png.
    #[arg(long, default_value = "bench/report.md")]
    report: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    output: OutputArgs,
    /// Scenarios to run, in this order: relay, scale, streams, fanout, udp, pick, idle, sim.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "relay,scale,streams,fanout,udp,pick,idle,sim"
    )]
    only: Vec<String>,
    /// Repeats of every scenario (min/median/max are taken over them).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Measuring window of each run.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// The proxy binary; by default the one next to this binary.
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Stream counts of the concurrent-streams scenario.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    streams: Vec<usize>,
    /// Players of the HTTP-FLV fan-out.
    #[arg(long, default_value_t = 500)]
    players: usize,
    /// Players of the proxy with its fan-out off and of the full-speed runs (one origin
    /// request per player); by default --players.
    #[arg(long)]
    fanout_off_players: Option<usize>,
    /// Idle connections.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Sequential picks per series in the pick-latency scenario.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    #[command(flatten)]
    sim: SimArgs,
}

#[derive(Args, Clone)]
struct SimArgs {
    #[arg(id = "sim_streams", long = "sim-streams", default_value_t = 10_000)]
    streams: usize,
    #[arg(id = "sim_origins", long = "sim-origins", default_value_t = 100)]
    origins: usize,
    #[arg(id = "sim_proxies", long = "sim-proxies", default_value_t = 10)]
    proxies: usize,
    /// Origin TTL of the simulated cluster (re-ownership must take at most this + 1 s).
    #[arg(id = "sim_origin_ttl", long = "sim-origin-ttl", default_value = "5s", value_parser = humantime::parse_duration)]
    origin_ttl: Duration,
    #[arg(id = "sim_repeats", long = "sim-repeats", default_value_t = 3)]
    repeats: usize,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            streams: self.streams,
            origins: self.origins,
            proxies: self.proxies,
            origin_ttl: self.origin_ttl,
            repeats: self.repeats,
        }
    }
}

#[derive(Args)]
struct PublishArgs {
    /// `rtmp://host:port/app/name`; publisher i sends stream `name-i` (just `name` for one).
    url: String,
    #[arg(long, default_value_t = 1)]
    streams: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Send as fast as the path takes it instead of in real time (one stream).
    #[arg(long)]
    full_speed: bool,
    /// An FLV file to send; by default a 320x240 sample (1280x720 at 20 Mbit/s with --full-speed).
    #[arg(long)]
    sample: Option<PathBuf>,
}

#[derive(Args)]
struct PlayArgs {
    url: String,
    #[arg(long, default_value_t = 1)]
    players: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Args)]
struct RegisterArgs {
    /// The proxy's system API (`PROXY_SYSTEM_API`).
    #[arg(long, default_value = "127.0.0.1:12025")]
    api: String,
    /// Origin name (`server`); with --origins N, names `NAME-0` ... `NAME-(N-1)`.
    #[arg(long, default_value = "origin")]
    server: String,
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    #[arg(long)]
    rtmp: u16,
    #[arg(long)]
    http: Option<u16>,
    #[arg(long, default_value_t = 1)]
    origins: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    every: Duration,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The proxy's register token (`PROXY_REGISTER_TOKEN`), sent in the path as SRS does.
    #[arg(long, env = "PROXY_REGISTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn main() -> anyhow::Result<()> {
    if let Some(result) = roles::dispatch() {
        return result;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Report(output) => write_report(&output),
            Command::Publish(args) => publish(args).await,
            Command::Play(args) => play(args).await,
            Command::Register(args) => register_origins(args).await,
            Command::Sim(args) => {
                let progress = Progress::new();
                let result = sim::run(&progress, &args.config()).await?;
                progress.finish();
                print_figures(&result);
                Ok(())
            }
        }
    })
}

const ORDER: [&str; 8] = [
    "relay", "scale", "streams", "fanout", "udp", "pick", "idle", "sim",
];

async fn run(args: RunArgs) -> anyhow::Result<()> {
    for name in &args.only {
        anyhow::ensure!(
            ORDER.contains(&name.as_str()),
            "unknown scenario {name:?}; known: {}",
            ORDER.join(", ")
        );
    }
    let fd_limit = procstat::raise_fd_limit()?;
    let proxy_bin = match args.proxy_bin {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("originstack-proxy"),
    };
    let bench = Bench::new(proxy_bin, args.repeats, args.window)?;
    std::fs::create_dir_all(&args.output.out)
        .with_context(|| format!("create {}", args.output.out.display()))?;
    bench.progress.step(format!(
        "load average {:?}; descriptor limit {fd_limit}",
        procstat::load_average()?
    ));
    let mut failed = Vec::new();
    for name in ORDER.iter().filter(|n| args.only.iter().any(|o| o == *n)) {
        let started = Instant::now();
        let result = match *name {
            "relay" => scenarios::relay::run(&bench).await,
            "scale" => scenarios::scale::run(&bench).await,
            "streams" => scenarios::streams::run(&bench, &args.streams).await,
            "fanout" => {
                let off = args.fanout_off_players.unwrap_or(args.players);
                scenarios::fanout::run(&bench, args.players, off).await
            }
            "udp" => scenarios::udp::run(&bench).await,
            "pick" => scenarios::pick::run(&bench.progress, args.repeats, args.iterations).await,
            "idle" => scenarios::idle::run(&bench, args.idle).await,
            "sim" => sim::run(&bench.progress, &args.sim.config()).await,
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(result) => {
                let path = args.output.out.join(format!("{name}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| format!("write {}", path.display()))?;
                bench.progress.step(format!(
                    "{name} done in {:.0} s",
                    started.elapsed().as_secs_f64()
                ));
                print_figures(&result);
            }
            Err(err) => {
                bench.progress.step(format!("{name} FAILED: {err:#}"));
                failed.push(*name);
            }
        }
    }
    bench.progress.finish();
    write_report(&args.output)?;
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {}", failed.join(", "));
    Ok(())
}

fn print_figures(result: &ScenarioResult) {
    print!("{}", report::summary(result));
}

/// Renders bench/report.md (and report.png) from every scenario result saved under `out`.
fn write_report(output: &OutputArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for name in ORDER {
        let path = output.out.join(format!("{name}.json"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let result: ScenarioResult =
                serde_json::from_str(&text).with_context(|| format!("read {}", path.display()))?;
            results.push(result);
        }
    }
    anyhow::ensure!(
        !results.is_empty(),
        "no results under {}; run `originstack-bench run` first",
        output.out.display()
    );
    let dir = output.report.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let chart_path = dir.join("report.png");
    let (chart, chart_note) = match chart::draw(&chart_path, &results) {
        Ok(true) => (Some("report.png".to_owned()), None),
        Ok(false) => (
            Some("report.png".to_owned()),
            Some(
                "The chart has no text: no DejaVu Sans font was found (`make deps` installs \
                 fonts-dejavu-core). Rows are in the order of the tables below."
                    .to_owned(),
            ),
        ),
        Err(err) => (None, Some(format!("No chart: {err:#}."))),
    };
    let info = RunInfo {
        command: "make bench".into(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: memory_gib(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        chart,
        chart_note,
    };
    let text = report::render(&info, &results, scenarios::WHY_MISSED);
    std::fs::write(&output.report, &text)
        .with_context(|| format!("write {}", output.report.display()))?;
    println!("\nreport written to {}", output.report.display());
    Ok(())
}

fn memory_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

/// Prints counters while a crowd runs, then its summary.
async fn watch(progress: &Progress, what: &str, crowd: &Crowd, duration: Duration) {
    let (counters, n) = (&crowd.counters, crowd.len());
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let bytes = counters.media_bytes();
        let rate = (bytes - last.1) as f64 * 8.0 / 1000.0 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), bytes);
        progress.status(format!(
            "{what}: {}/{n} up, {} failed, {:.0} kbit/s total",
            counters.up(),
            counters.failed(),
            rate
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    let total = counters.media_bytes() as f64 * 8.0 / 1000.0 / seconds;
    progress.finish();
    println!(
        "{what}: {n} started, {} up, {} failed",
        counters.up(),
        counters.failed()
    );
    println!(
        "media: {:.0} kbit/s in total, {:.0} kbit/s per session, {} frames over {seconds:.0} s",
        total,
        total / n.max(1) as f64,
        counters.frames()
    );
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    procstat::raise_fd_limit()?;
    let target = RtmpTarget::parse(&args.url)?;
    let addr = target.addr()?;
    let progress = Progress::new();
    let dir = tempfile::tempdir()?;
    let sample = match &args.sample {
        Some(path) => path.clone(),
        None if args.full_speed => {
            progress.step("encoding a 1280x720 20 Mbit/s sample");
            media::heavy_sample(dir.path())?
        }
        None => {
            progress.step("encoding a 320x240 sample");
            media::light_sample()?
        }
    };
    let tags = media::tags(&sample)?;
    let span = media::loop_span_ms(&tags);
    let messages: Arc<Vec<_>> = Arc::new(tags.iter().map(|t| t.to_message()).collect());
    if args.full_speed {
        progress.step(format!(
            "publishing {} at full speed for {:?}",
            args.url, args.duration
        ));
        let rate = rtmp_load::publish_full_speed(
            addr,
            &target,
            &messages,
            span,
            Duration::from_secs(1),
            args.duration,
        )
        .await?;
        progress.finish();
        println!("{}: {:.1} MB/s of media", args.url, rate / 1e6);
        return Ok(());
    }
    let publishers = Crowd::start(args.streams, |i, counters, stop| {
        let target = if args.streams == 1 {
            target.clone()
        } else {
            target.with_stream(format!("{}-{i}", target.stream))
        };
        rtmp_load::publish_real_time(addr, target, messages.clone(), span, counters, stop)
    });
    progress.step(format!("{} publishers to {}", args.streams, args.url));
    watch(&progress, "publishers", &publishers, args.duration).await;
    publishers.stop().await;
    Ok(())
}

async fn play(args: PlayArgs) -> anyhow::Result<()> {
    procstat::raise_fd_limit()?;
    let progress = Progress::new();
    let players = if args.url.starts_with("rtmp://") {
        let target = RtmpTarget::parse(&args.url)?;
        let addr = target.addr()?;
        Crowd::start(args.players, |_, counters, stop| {
            rtmp_load::play(addr, target.clone(), counters, stop)
        })
    } else {
        let target = http_flv::HttpFlvTarget::parse(&args.url)?;
        let addr = target.addr()?;
        Crowd::start(args.players, |_, counters, stop| {
            http_flv::play(addr, target.clone(), counters, stop)
        })
    };
    progress.step(format!("{} players of {}", args.players, args.url));
    watch(&progress, "players", &players, args.duration).await;
    players.stop().await;
    Ok(())
}

async fn register_origins(args: RegisterArgs) -> anyhow::Result<()> {
    let (host, port) = rtmp_load::split_host_port(&args.api, 12025)?;
    let api = rtmp_load::resolve(&host, port)?;
    let url = originstack_e2e::srs::register_url(api, args.token.as_deref());
    let stop = CancellationToken::new();
    let progress = Progress::new();
    for i in 0..args.origins {
        let server = if args.origins == 1 {
            args.server.clone()
        } else {
            format!("{}-{i}", args.server)
        };
        let mut heartbeat = Heartbeat::local(&server, args.rtmp, args.http);
        heartbeat.ip = args.ip.clone();
        register::keep_registered(url.clone(), heartbeat, args.every, stop.clone()).await?;
        progress.status(format!("{}/{} origins registered", i + 1, args.origins));
    }
    progress.step(format!(
        "{} origins registered at {api}; heartbeating every {:?} for {:?}",
        args.origins, args.every, args.duration
    ));
    tokio::time::sleep(args.duration).await;
    stop.cancel();
    progress.finish();
    println!(
        "{} origins heartbeated for {:?}",
        args.origins, args.duration
    );
    Ok(())
}
