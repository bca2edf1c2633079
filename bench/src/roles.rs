//! Helper servers that run as child processes, so their RSS and CPU are their own: the
//! benchmark binary re-executes itself with [`ROLE`] set. Any binary using these roles (this
//! crate's and the proxy's benches) calls [`dispatch`] first thing in `main`.
//!
//! - `tcp-relay`: the plain TCP relay baseline, tokio's `copy_bidirectional` (8 KiB buffers);
//!   `tcp-relay-64k` with 64 KiB buffers, a stronger baseline for full-speed streams.
//! - `udp-relay`: the plain UDP relay baseline of the SRT and WebRTC relays, as a plain tokio
//!   program would be written: its receive loop in `main` (`block_on`), one socket towards
//!   clients and, per client address, one socket connected to the upstream, whose task sends
//!   the upstream's datagrams back.
//! - `idle-floor`: the least an async server can keep per idle connection (a task waiting for
//!   the socket to become readable), the floor under the proxy's idle-connection cost.
//! - `flv-origin`: the HTTP-FLV origin of [`crate::http_flv`].

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use originstack_e2e::{ChildGuard, free_port, wait_for_tcp};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream, UdpSocket},
};

use crate::{
    http_flv::{self, OriginSource},
    media,
    rtmp_load::RtmpTarget,
};

pub const ROLE: &str = "ORIGINSTACK_BENCH_ROLE";
const LISTEN: &str = "ORIGINSTACK_BENCH_LISTEN";
const UPSTREAM: &str = "ORIGINSTACK_BENCH_UPSTREAM";
const SOURCE: &str = "ORIGINSTACK_BENCH_SOURCE";

/// What a helper process forwards to or serves.
pub enum RoleConfig {
    TcpRelay {
        upstream: SocketAddr,
    },
    TcpRelay64k {
        upstream: SocketAddr,
    },
    UdpRelay {
        upstream: SocketAddr,
    },
    IdleFloor,
    /// HTTP-FLV from a live RTMP stream.
    FlvOriginLive {
        rtmp: String,
    },
    /// HTTP-FLV of a sample file in a loop, as fast as players read.
    FlvOriginLoop {
        file: PathBuf,
    },
}

impl RoleConfig {
    fn name(&self) -> &'static str {
        match self {
            RoleConfig::TcpRelay { .. } => "tcp-relay",
            RoleConfig::TcpRelay64k { .. } => "tcp-relay-64k",
            RoleConfig::UdpRelay { .. } => "udp-relay",
            RoleConfig::IdleFloor => "idle-floor",
            RoleConfig::FlvOriginLive { .. } | RoleConfig::FlvOriginLoop { .. } => "flv-origin",
        }
    }
}

/// Runs the role named in the environment, if any: `Some(result)` means this process was a
/// helper and `main` should return.
pub fn dispatch() -> Option<anyhow::Result<()>> {
    let role = std::env::var(ROLE).ok()?;
    // Warnings (an HTTP-FLV player falling behind, a lost RTMP source) reach the run's stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    let run = || -> anyhow::Result<()> {
        let listen: SocketAddr = std::env::var(LISTEN)
            .context("no listen address")?
            .parse()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let upstream = || -> anyhow::Result<SocketAddr> {
                Ok(std::env::var(UPSTREAM).context("no upstream")?.parse()?)
            };
            let udp = if role == "udp-relay" {
                Some(UdpSocket::bind(listen).await?)
            } else {
                None
            };
            // A UDP role listens on TCP too, only so that `spawn` sees it is ready.
            let listener = TcpListener::bind(listen).await?;
            match role.as_str() {
                "udp-relay" => udp_relay(udp.context("bound above")?, upstream()?).await,
                "tcp-relay" => tcp_relay(listener, upstream()?, None).await,
                "tcp-relay-64k" => tcp_relay(listener, upstream()?, Some(64 * 1024)).await,
                "idle-floor" => idle_floor(listener).await,
                "flv-origin" => {
                    let source = std::env::var(SOURCE).context("no source")?;
                    let source = match source.split_once(':') {
                        Some(("loop", file)) => OriginSource::Loop {
                            tags: media::tags(file.as_ref())?,
                        },
                        Some(("live", url)) => {
                            let target = RtmpTarget::parse(url)?;
                            OriginSource::Live {
                                rtmp: target.addr()?,
                                target,
                            }
                        }
                        _ => anyhow::bail!("bad source {source:?}"),
                    };
                    http_flv::serve_origin(listener, source).await
                }
                other => anyhow::bail!("unknown role {other:?}"),
            }
        })
    };
    Some(run().with_context(|| format!("helper role {}", std::env::var(ROLE).unwrap_or_default())))
}

/// Starts a helper process on a free loopback port and waits until it listens.
pub fn spawn(config: &RoleConfig) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    spawn_with_workers(config, None)
}

/// [`spawn`] with the helper's async runtime on `workers` threads (default: one per core).
pub fn spawn_with_workers(
    config: &RoleConfig,
    workers: Option<usize>,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(workers) = workers {
        // Read by tokio's runtime builder when no count is set in code.
        command.env("TOKIO_WORKER_THREADS", workers.to_string());
    }
    command
        .env(ROLE, config.name())
        .env(LISTEN, listen.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match config {
        RoleConfig::TcpRelay { upstream }
        | RoleConfig::TcpRelay64k { upstream }
        | RoleConfig::UdpRelay { upstream } => {
            command.env(UPSTREAM, upstream.to_string());
        }
        RoleConfig::IdleFloor => {}
        RoleConfig::FlvOriginLive { rtmp } => {
            command.env(SOURCE, format!("live:{rtmp}"));
        }
        RoleConfig::FlvOriginLoop { file } => {
            command.env(SOURCE, format!("loop:{}", file.display()));
        }
    }
    let child = ChildGuard::spawn(config.name(), &mut command)?;
    wait_for_tcp(listen, Duration::from_secs(20))?;
    Ok((child, listen))
}

async fn tcp_relay(
    listener: TcpListener,
    upstream: SocketAddr,
    buffer: Option<usize>,
) -> anyhow::Result<()> {
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            if let Ok(mut origin) = TcpStream::connect(upstream).await {
                let _ = origin.set_nodelay(true);
                let _ = match buffer {
                    None => tokio::io::copy_bidirectional(&mut client, &mut origin).await,
                    Some(size) => {
                        tokio::io::copy_bidirectional_with_sizes(
                            &mut client,
                            &mut origin,
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

async fn udp_relay(socket: UdpSocket, upstream: SocketAddr) -> anyhow::Result<()> {
    let socket = std::sync::Arc::new(socket);
    let mut sessions = std::collections::HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = socket.recv_from(&mut buf).await?;
        let towards = match sessions.get(&client) {
            Some(towards) => std::sync::Arc::clone(towards),
            None => {
                let towards = UdpSocket::bind("127.0.0.1:0").await?;
                towards.connect(upstream).await?;
                let towards = std::sync::Arc::new(towards);
                let (back, listener) = (towards.clone(), socket.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(len) = back.recv(&mut buf).await {
                        let _ = listener.send_to(&buf[..len], client).await;
                    }
                });
                sessions.insert(client, towards.clone());
                towards
            }
        };
        let _ = towards.send(&buf[..len]).await;
    }
}

async fn idle_floor(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            // Wakes only when the peer sends or closes; then the connection is dropped.
            let _ = socket.read(&mut byte).await;
        });
    }
}
