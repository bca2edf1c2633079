//! RTMP relay benchmark (not a timed test): prints figures and ratios measured in one run.
//!
//! 1. Throughput of one publisher sending at full speed to an nginx-rtmp origin: straight,
//!    through a plain TCP relay (tokio copy_bidirectional) and through the RTMP proxy.
//! 2. Proxy RSS and CPU per stream with 200 real-time publishers, against the plain relay.
//!
//! The proxy and the plain relay run as child processes (this binary re-executed with
//! `RTMP_BENCH_ROLE`), so their RSS and CPU are their own.
//!
//! Run: `cargo bench -p originstack-proxy --bench rtmp_relay`
//! (`RTMP_BENCH_SECONDS`, `RTMP_BENCH_STREAMS` change the duration and stream count).

#[path = "../tests/rtmp_support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use originstack_e2e::{ChildGuard, free_port, wait_for_tcp};
use originstack_proxy::{
    lifecycle::Lifecycle,
    rtmp::{
        self, Intent, RtmpLimits, RtmpStreamKey,
        amf0::Value,
        chunk::{DecoderLimits, Message},
        origin::{self, OriginRequest},
    },
};
use tokio::net::TcpListener;

const ROLE: &str = "RTMP_BENCH_ROLE";
const LISTEN: &str = "RTMP_BENCH_LISTEN";
const ORIGIN: &str = "RTMP_BENCH_ORIGIN";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match std::env::var(ROLE).as_deref() {
        Ok("proxy") => runtime.block_on(run_proxy()),
        Ok("tcp-relay") => runtime.block_on(run_tcp_relay(None)),
        Ok("tcp-relay-64k") => runtime.block_on(run_tcp_relay(Some(64 * 1024))),
        _ => runtime.block_on(orchestrate()),
    }
}

fn role_addrs() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    Ok((
        std::env::var(LISTEN)?.parse()?,
        std::env::var(ORIGIN)?.parse()?,
    ))
}

async fn run_proxy() -> anyhow::Result<()> {
    let (listen, origin) = role_addrs()?;
    let listener = TcpListener::bind(listen).await?;
    let lifecycle = Lifecycle::new(Duration::from_secs(1), Duration::from_secs(1));
    rtmp::serve(
        listener,
        Arc::new(support::TestResolver::new(vec![origin])),
        RtmpLimits::default(),
        lifecycle,
    )
    .await;
    Ok(())
}

/// tokio's copy_bidirectional (8 KiB buffers), or with larger buffers as a stronger baseline.
async fn run_tcp_relay(buffer: Option<usize>) -> anyhow::Result<()> {
    let (listen, origin) = role_addrs()?;
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            if let Ok(mut upstream) = tokio::net::TcpStream::connect(origin).await {
                let _ = upstream.set_nodelay(true);
                let _ = match buffer {
                    None => tokio::io::copy_bidirectional(&mut client, &mut upstream).await,
                    Some(size) => {
                        tokio::io::copy_bidirectional_with_sizes(
                            &mut client,
                            &mut upstream,
                            size,
                            size,
                        )
                        .await
                    }
                };
            }
        });
    }
}

/// A child process of this binary in `role`, listening on a free port.
fn spawn_role(role: &str, origin: SocketAddr) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = ChildGuard::spawn(
        role,
        Command::new(std::env::current_exe()?)
            .env(ROLE, role)
            .env(LISTEN, listen.to_string())
            .env(ORIGIN, origin.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_for_tcp(listen, Duration::from_secs(10))?;
    Ok((child, listen))
}

/// FLV tags of a file as RTMP media messages.
fn flv_messages(path: &Path) -> anyhow::Result<Vec<Message>> {
    let data = std::fs::read(path)?;
    anyhow::ensure!(data.starts_with(b"FLV"), "{} is not FLV", path.display());
    let mut at = u32::from_be_bytes(data[5..9].try_into()?) as usize + 4;
    let mut messages = Vec::new();
    while at + 11 <= data.len() {
        let tag = &data[at..at + 11];
        let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
        let timestamp = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
        let Some(payload) = data.get(at + 11..at + 11 + size) else {
            break;
        };
        let csid = if tag[0] == 8 { 4 } else { 6 };
        messages.push(Message {
            csid,
            timestamp,
            type_id: tag[0] & 0x1F,
            stream_id: 1,
            payload: Bytes::copy_from_slice(payload),
        });
        at += 11 + size + 4;
    }
    Ok(messages)
}

/// A high-bitrate 1280x720 sample, for throughput (big frames as a real encoder sends).
fn heavy_sample(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("heavy.flv");
    originstack_e2e::ffmpeg::encode_test_pattern(
        &path,
        "testsrc2=size=1280x720:rate=30",
        &["-b:v", "20M", "-g", "60"],
    )?;
    Ok(path)
}

/// Opens a publishing RTMP session (the proxy's own origin-side client, publishing).
async fn open_publisher(
    addr: SocketAddr,
    stream: &str,
) -> anyhow::Result<rtmp::connection::RtmpConnection> {
    let key = RtmpStreamKey {
        vhost: rtmp::stream_key::DEFAULT_VHOST.into(),
        app: "live".into(),
        stream: stream.into(),
        query: String::new(),
    };
    let request = OriginRequest {
        key: &key,
        intent: Intent::Publish,
        connect_object: &Value::Null,
        tc_query: "",
        stream_args: &[Value::string("live")],
        buffer_millis: 0,
    };
    let session = origin::open(addr, request, DecoderLimits::default()).await?;
    anyhow::ensure!(session.stream_id >= 1);
    Ok(session.connection)
}

/// Publishes `messages` in a loop as fast as the path takes them; returns media bytes per
/// second over `duration` after a one-second warm-up.
async fn full_speed(
    addr: SocketAddr,
    messages: &[Message],
    duration: Duration,
) -> anyhow::Result<f64> {
    // A fresh name per run: the origin may not have seen the previous run's publisher leave.
    static RUN: AtomicU64 = AtomicU64::new(0);
    let name = format!("throughput{}", RUN.fetch_add(1, Ordering::Relaxed));
    let mut connection = open_publisher(addr, &name).await?;
    let span = messages.last().map_or(0, |m| m.timestamp) + 40;
    let warm_up = Instant::now() + Duration::from_secs(1);
    let mut counted_from: Option<(Instant, u64)> = None;
    let mut sent: u64 = 0;
    let mut round: u32 = 0;
    loop {
        for (i, message) in messages.iter().enumerate() {
            let mut message = message.clone();
            message.timestamp = message.timestamp.wrapping_add(round.wrapping_mul(span));
            sent += message.payload.len() as u64;
            connection.queue(&message);
            if i % 8 == 7 {
                connection.flush().await?;
                let now = Instant::now();
                match counted_from {
                    None if now >= warm_up => counted_from = Some((now, sent)),
                    Some((start, base)) if now - start >= duration => {
                        return Ok((sent - base) as f64 / (now - start).as_secs_f64());
                    }
                    _ => {}
                }
            }
        }
        round += 1;
    }
}

/// Publishes at the media's own pace (as `ffmpeg -re`), until `stop`.
async fn real_time(
    addr: SocketAddr,
    stream: String,
    messages: Arc<Vec<Message>>,
    sent: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut connection = match open_publisher(addr, &stream).await {
        Ok(connection) => connection,
        Err(err) => {
            eprintln!("publisher {stream}: {err:#}");
            return;
        }
    };
    let span = messages.last().map_or(0, |m| m.timestamp) + 40;
    let start = tokio::time::Instant::now();
    for round in 0u32.. {
        for message in messages.iter() {
            let mut message = message.clone();
            message.timestamp = message.timestamp.wrapping_add(round * span);
            let due = start + Duration::from_millis(u64::from(message.timestamp));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            connection.queue(&message);
            if connection.flush().await.is_err() {
                eprintln!("publisher {stream} lost its connection");
                return;
            }
            sent.fetch_add(message.payload.len() as u64, Ordering::Relaxed);
        }
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // CLK_TCK is 100 on Linux.
    Ok(ticks as f64 / 100.0)
}

struct ManyStreams {
    rss_kib_per_stream: f64,
    cpu_percent_per_stream: f64,
    media_kbit_per_stream: f64,
}

async fn many_streams(
    addr: SocketAddr,
    pid: u32,
    label: &str,
    streams: usize,
    messages: Arc<Vec<Message>>,
    window: Duration,
) -> anyhow::Result<ManyStreams> {
    let baseline = rss_kib(pid)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sent = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            tokio::spawn(real_time(
                addr,
                format!("{label}{i}"),
                messages.clone(),
                sent.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Let every session get through setup and the first keyframes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cpu_start = cpu_seconds(pid)?;
    let sent_start = sent.load(Ordering::Relaxed);
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(pid)? - cpu_start;
    let media = sent.load(Ordering::Relaxed) - sent_start;
    let rss = rss_kib(pid)?;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    Ok(ManyStreams {
        rss_kib_per_stream: (rss.saturating_sub(baseline)) as f64 / streams as f64,
        cpu_percent_per_stream: cpu / window.as_secs_f64() * 100.0 / streams as f64,
        media_kbit_per_stream: media as f64 * 8.0 / 1000.0 / window.as_secs_f64() / streams as f64,
    })
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn orchestrate() -> anyhow::Result<()> {
    let seconds: u64 = env_or("RTMP_BENCH_SECONDS", 8);
    let streams: usize = env_or("RTMP_BENCH_STREAMS", 200);
    let dir = tempfile::tempdir()?;
    let heavy = flv_messages(&heavy_sample(dir.path())?)?;
    let light = Arc::new(flv_messages(originstack_e2e::ffmpeg::sample_flv()?)?);
    let origin = originstack_e2e::NginxRtmpOrigin::start_with(originstack_e2e::NginxRtmpConfig {
        hls: false,
        ..Default::default()
    })?;
    let origin_addr = origin.rtmp_addr();
    let duration = Duration::from_secs(seconds);

    println!("== throughput: one publisher at full speed, {seconds} s per run, best of 3 rounds");
    let (proxy, proxy_addr) = spawn_role("proxy", origin_addr)?;
    let (_relay, relay_addr) = spawn_role("tcp-relay", origin_addr)?;
    let (_relay_64k, relay_64k_addr) = spawn_role("tcp-relay-64k", origin_addr)?;
    let mut best = [0f64; 4];
    let mut proxy_cpu = 0.0;
    for _ in 0..3 {
        best[0] = best[0].max(full_speed(origin_addr, &heavy, duration).await?);
        best[1] = best[1].max(full_speed(relay_addr, &heavy, duration).await?);
        best[2] = best[2].max(full_speed(relay_64k_addr, &heavy, duration).await?);
        let cpu_before = cpu_seconds(proxy.pid())?;
        let started = Instant::now();
        let rate = full_speed(proxy_addr, &heavy, duration).await?;
        proxy_cpu = (cpu_seconds(proxy.pid())? - cpu_before) / started.elapsed().as_secs_f64();
        best[3] = best[3].max(rate);
    }
    let mb = |r: f64| r / 1e6;
    println!(
        "straight to origin                 {:8.1} MB/s",
        mb(best[0])
    );
    println!(
        "plain TCP relay (copy_bidirectional) {:6.1} MB/s",
        mb(best[1])
    );
    println!(
        "plain TCP relay, 64 KiB buffers    {:8.1} MB/s",
        mb(best[2])
    );
    println!(
        "RTMP proxy                         {:8.1} MB/s  (proxy CPU {:.0}% of a core in its last run)",
        mb(best[3]),
        proxy_cpu * 100.0
    );
    println!(
        "proxy / plain relay                {:8.2}",
        best[3] / best[1]
    );
    println!(
        "proxy / plain relay, 64 KiB        {:8.2}",
        best[3] / best[2]
    );
    println!(
        "proxy / straight                   {:8.2}",
        best[3] / best[0]
    );

    // Fresh processes, so memory the throughput runs left in the allocator does not hide
    // what the streams cost.
    drop(proxy);
    let (proxy, proxy_addr) = spawn_role("proxy", origin_addr)?;
    let (relay, relay_addr) = spawn_role("tcp-relay", origin_addr)?;
    println!(
        "== {streams} concurrent real-time publishers (320x240 H.264+AAC), {seconds} s window"
    );
    let through_proxy = many_streams(
        proxy_addr,
        proxy.pid(),
        "proxied",
        streams,
        light.clone(),
        duration,
    )
    .await?;
    let through_relay = many_streams(
        relay_addr,
        relay.pid(),
        "relayed",
        streams,
        light.clone(),
        duration,
    )
    .await?;
    for (name, m) in [
        ("RTMP proxy", &through_proxy),
        ("plain TCP relay", &through_relay),
    ] {
        println!(
            "{name:16} RSS {:6.1} KiB/stream  CPU {:6.3}% of a core/stream  media {:6.1} kbit/s/stream",
            m.rss_kib_per_stream, m.cpu_percent_per_stream, m.media_kbit_per_stream
        );
    }
    println!(
        "proxy / plain relay  RSS {:.2}  CPU {:.2}",
        through_proxy.rss_kib_per_stream / through_relay.rss_kib_per_stream.max(0.1),
        through_proxy.cpu_percent_per_stream / through_relay.cpu_percent_per_stream.max(1e-6)
    );
    drop((proxy, relay, origin));
    Ok(())
}
