//! Real peers for the RTMP tests and benchmark: nginx with the RTMP module as origins,
//! ffmpeg/ffprobe as clients, and a resolver that spreads streams over the origins.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::future::BoxFuture;
use originstack_e2e::{ChildGuard, free_port, wait_for_tcp};
use originstack_proxy::{
    lifecycle::Lifecycle,
    rtmp::{self, Intent, OriginResolver, ResolveError, ResolvedOrigin, RtmpLimits, RtmpStreamKey},
};
use tokio::net::TcpListener;

/// An nginx process with the RTMP module: one `live` application, and the RTMP statistics
/// page on HTTP so tests can see which streams it carries.
pub struct NginxRtmp {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    child: ChildGuard,
    dir: tempfile::TempDir,
}

impl NginxRtmp {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with("")
    }

    /// With extra directives in the `live` application.
    pub fn start_with(live_directives: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let rtmp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let d = dir.path().display();
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen {rtmp};
        chunk_size 4096;
        application live {{ live on; {live_directives} }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {http};
        location /stat {{ rtmp_stat all; }}
    }}
}}
"#
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = ChildGuard::spawn(
            format!("nginx-rtmp on {rtmp}"),
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let mut origin = Self {
            rtmp,
            http,
            child,
            dir,
        };
        let started = wait_for_tcp(rtmp, Duration::from_secs(10))
            .and_then(|_| wait_for_tcp(http, Duration::from_secs(10)));
        if let Err(err) = started {
            origin.child.ensure_running()?;
            return Err(err.context(origin.error_log()));
        }
        Ok(origin)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Names of the streams being published on this origin's `live` application.
    pub fn published_streams(&self) -> anyhow::Result<Vec<String>> {
        let mut socket = TcpStream::connect_timeout(&self.http, Duration::from_secs(5))?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(socket, "GET /stat HTTP/1.0\r\nHost: origin\r\n\r\n")?;
        let mut body = String::new();
        socket.read_to_string(&mut body)?;
        // <stream><name>NAME</name>...<publishing/>...</stream>
        let mut names = Vec::new();
        for stream in body.split("<stream>").skip(1) {
            let stream = stream.split("</stream>").next().unwrap_or_default();
            if !stream.contains("<publishing/>") {
                continue;
            }
            if let Some(name) = stream
                .split("<name>")
                .nth(1)
                .and_then(|s| s.split("</name>").next())
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }
}

/// Stream ownership for tests: the origin is picked by a hash of the stream key, so a stream
/// always lands on the same origin and many streams spread over all of them. Each lease
/// counts itself while alive.
pub struct TestResolver {
    origins: Vec<SocketAddr>,
    /// Origins reported unreachable: out of rotation, as the proxy core takes a dead origin out.
    dead: std::sync::Mutex<Vec<SocketAddr>>,
    leases: Arc<AtomicUsize>,
}

struct Lease(Arc<AtomicUsize>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestResolver {
    pub fn new(origins: Vec<SocketAddr>) -> Self {
        Self {
            origins,
            dead: Default::default(),
            leases: Arc::default(),
        }
    }

    /// The origin owning `key`: a hash over the live origins.
    pub fn origin_of(&self, key: &RtmpStreamKey) -> SocketAddr {
        let dead = self.dead.lock().unwrap();
        let live: Vec<SocketAddr> = self
            .origins
            .iter()
            .filter(|o| !dead.contains(o))
            .copied()
            .collect();
        let mut hasher = DefaultHasher::new();
        (&key.vhost, &key.app, &key.stream).hash(&mut hasher);
        live[(hasher.finish() % live.len() as u64) as usize]
    }

    /// The origin a plain `live/<stream>` on the default vhost maps to.
    pub fn origin_of_stream(&self, stream: &str) -> SocketAddr {
        self.origin_of(&RtmpStreamKey {
            vhost: rtmp::stream_key::DEFAULT_VHOST.into(),
            app: "live".into(),
            stream: stream.into(),
            query: String::new(),
        })
    }

    pub fn leases(&self) -> Arc<AtomicUsize> {
        self.leases.clone()
    }
}

impl OriginResolver for TestResolver {
    fn resolve<'a>(
        &'a self,
        key: &'a RtmpStreamKey,
        _intent: Intent,
    ) -> BoxFuture<'a, Result<ResolvedOrigin, ResolveError>> {
        Box::pin(async move {
            if self
                .origins
                .iter()
                .all(|o| self.dead.lock().unwrap().contains(o))
            {
                return Err(ResolveError::NoOrigin);
            }
            self.leases.fetch_add(1, Ordering::SeqCst);
            Ok(ResolvedOrigin {
                rtmp: self.origin_of(key),
                lease: Box::new(Lease(self.leases.clone())),
            })
        })
    }

    fn report_unreachable(&self, _key: &RtmpStreamKey, origin: SocketAddr) {
        self.dead.lock().unwrap().push(origin);
    }
}

/// The RTMP proxy listening on a free loopback port in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub lifecycle: Lifecycle,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(resolver: Arc<dyn OriginResolver>, limits: RtmpLimits) -> Self {
        // Session logs (client address, stream key, why it ended) show with --nocapture.
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let lifecycle = Lifecycle::new(Duration::from_secs(1), Duration::from_secs(2));
        let task = tokio::spawn(rtmp::serve(listener, resolver, limits, lifecycle.clone()));
        Self {
            addr,
            lifecycle,
            task,
        }
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.addr)
    }

    /// The accept loop is still running (no panic took it down).
    pub fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.lifecycle.terminate().cancel();
        self.task.abort();
    }
}

/// Encodes 10 s of an ffmpeg test pattern (`source`, a lavfi video source) and a sine tone
/// to an H.264 + AAC FLV at `path`.
pub fn encode_test_pattern(path: &Path, source: &str, video_args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args([
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(video_args)
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
        .arg(path)
        .status()
        .context("run ffmpeg")?;
    anyhow::ensure!(status.success(), "ffmpeg could not encode {source}");
    Ok(())
}

/// A 320x240 H.264 + AAC FLV, 10 s long, made once per test process.
pub fn sample_flv() -> &'static Path {
    static SAMPLE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir for the sample");
        let path = dir.path().join("sample.flv");
        encode_test_pattern(&path, "testsrc=size=320x240:rate=25", &["-g", "25"])
            .expect("make the sample FLV");
        (dir, path)
    });
    path
}

/// ffmpeg publishing the sample in a loop at its real rate (`-re`), as a live encoder would.
pub fn publish(url: &str) -> anyhow::Result<ChildGuard> {
    ChildGuard::spawn(
        format!("ffmpeg publishing {url}"),
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
            ])
            .arg(sample_flv())
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Probe {
    pub video: Option<(String, u64, u64)>,
    pub audio: Option<String>,
}

/// What ffprobe sees when playing `url`.
pub async fn probe(url: &str) -> anyhow::Result<Probe> {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "15000000",
                "-show_entries",
                "stream=codec_type,codec_name,width,height",
            ])
            .args(["-of", "json", url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("ffprobe {url} timed out"))??;
    anyhow::ensure!(
        output.status.success(),
        "ffprobe {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut probe = Probe::default();
    for stream in json["streams"].as_array().into_iter().flatten() {
        let codec = stream["codec_name"].as_str().unwrap_or_default().to_owned();
        match stream["codec_type"].as_str() {
            Some("video") => {
                probe.video = Some((
                    codec,
                    stream["width"].as_u64().unwrap_or(0),
                    stream["height"].as_u64().unwrap_or(0),
                ));
            }
            Some("audio") => probe.audio = Some(codec),
            _ => {}
        }
    }
    Ok(probe)
}

/// The probe a player of the sample must see.
pub fn sample_probe() -> Probe {
    Probe {
        video: Some(("h264".into(), 320, 240)),
        audio: Some("aac".into()),
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
