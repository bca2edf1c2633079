//! The real `originstack-proxy` binary on free loopback ports, configured through its
//! `PROXY_*` variables exactly as a user would.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;

use crate::{ChildGuard, free_port, redis::RedisServer, wait_for_tcp};

/// A running proxy; killed on drop.
pub struct ProxyProcess {
    pub process: ChildGuard,
    pub system: SocketAddr,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// HTTP API (WHIP/WHEP), WebRTC media (UDP) and SRT (UDP) listeners.
    pub api: SocketAddr,
    pub webrtc: SocketAddr,
    pub srt: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts `binary` (the proxy crate's tests pass `env!("CARGO_BIN_EXE_originstack-proxy")`)
    /// with every listener on a free loopback port plus `envs`.
    pub fn start(binary: &str, envs: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("proxy.log");
        let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let (system, rtmp, http) = (port(free_port()), port(free_port()), port(free_port()));
        let api = port(free_port());
        let (webrtc, srt) = (port(crate::free_udp_port()), port(crate::free_udp_port()));
        let listeners = [
            ("PROXY_SYSTEM_API", system),
            ("PROXY_RTMP_SERVER", rtmp),
            ("PROXY_HTTP_SERVER", http),
            ("PROXY_HTTP_API", api),
            ("PROXY_WEBRTC_SERVER", webrtc),
            ("PROXY_SRT_SERVER", srt),
        ];
        let mut command = command(binary, dir.path(), &listeners, envs);
        command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let process = ChildGuard::spawn("originstack-proxy", &mut command)?;
        let proxy = Self {
            process,
            system,
            rtmp,
            http,
            api,
            webrtc,
            srt,
            log,
            _dir: dir,
        };
        for addr in [system, rtmp, http, api] {
            wait_for_tcp(addr, Duration::from_secs(20))
                .map_err(|err| anyhow::anyhow!("{err}; log:\n{}", proxy.log()))?;
        }
        Ok(proxy)
    }

    /// A replica of a Redis-backed proxy fleet: [`ProxyProcess::start`] with the load balancer
    /// on `redis`, plus `envs`.
    pub fn start_redis_replica(
        binary: &str,
        redis: &RedisServer,
        envs: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut all = vec![
            ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
            ("PROXY_REDIS_URL", redis.url()),
        ];
        all.extend_from_slice(envs);
        Self::start(binary, &all)
    }

    /// Runs `binary` with `args` (e.g. `--help`) and `envs` to its end, in the same clean
    /// environment [`ProxyProcess::start`] gives it but with no listener to wait for; its exit
    /// status, stdout and stderr. Fails if it has not ended within 30 s.
    pub fn run(binary: &str, args: &[&str], envs: &[(&str, String)]) -> anyhow::Result<Output> {
        let dir = tempfile::tempdir()?;
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut command = command(binary, dir.path(), &[], envs);
        command
            .args(args)
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        let mut process = ChildGuard::spawn(format!("originstack-proxy {args:?}"), &mut command)?;
        let timeout = Duration::from_secs(30);
        let status = process
            .wait_timeout(timeout)?
            .with_context(|| format!("originstack-proxy {args:?} still runs after {timeout:?}"))?;
        Ok(Output {
            status,
            stdout: std::fs::read(&stdout)?,
            stderr: std::fs::read(&stderr)?,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `rtmp://{rtmp}/{app}/{stream}`: publish or play through this proxy.
    pub fn rtmp_url(&self, app: &str, stream: &str) -> String {
        format!("rtmp://{}/{app}/{stream}", self.rtmp)
    }

    /// Registers an origin through the register API as an SRS heartbeat would.
    pub fn register(&self, server: &str, rtmp: u16, http: u16) -> anyhow::Result<()> {
        register(self.system, server, rtmp, http)
    }

    /// Heartbeats an origin every `every`, as SRS does, until the returned guard is dropped.
    pub fn heartbeat(&self, server: &str, rtmp: u16, http: u16, every: Duration) -> Heartbeat {
        Heartbeat::start(self.system, server, rtmp, http, every)
    }

    /// Answer of `/readyz`: its status code.
    pub fn readyz(&self) -> anyhow::Result<u16> {
        Ok(http_request(self.system, "GET", "/readyz", &[], "")?.0)
    }

    /// Resident memory of the proxy process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc status"))
    }

    /// Registers an origin from a full heartbeat body (e.g. one with `api` and `rtc`).
    pub fn register_heartbeat(&self, heartbeat: &serde_json::Value) -> anyhow::Result<()> {
        register_body(self.system, heartbeat)
    }

    /// The proxy's Prometheus text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(http_request(self.system, "GET", "/metrics", &[], "")?.1)
    }

    /// The `server` of every origin `/api/v1/origins` lists, read with `bearer` as the token.
    pub fn origin_servers(&self, bearer: Option<&str>) -> anyhow::Result<Vec<String>> {
        let authorization = bearer.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let (status, body) = http_request(self.system, "GET", "/api/v1/origins", &headers, "")?;
        anyhow::ensure!(status == 200, "/api/v1/origins answered {status}: {body}");
        let listing: serde_json::Value = serde_json::from_str(&body)?;
        Ok(listing["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|origin| Some(origin["server"].as_str()?.to_owned()))
            .collect())
    }

    /// Stream name (the last part of its key) → the `server` of the origin owning it, as
    /// `/api/v1/streams` lists them; empty when the proxy cannot answer.
    pub fn owners(&self) -> HashMap<String, String> {
        let Ok((200, body)) = http_request(self.system, "GET", "/api/v1/streams", &[], "") else {
            return HashMap::new();
        };
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        listing["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = s["stream"].as_str()?.rsplit('/').next()?.to_owned();
                Some((name, s["origin"].as_str()?.to_owned()))
            })
            .collect()
    }
}

/// The proxy binary run in `dir` with none of the caller's environment: `RUST_LOG=info`, the
/// `listeners`' addresses, then `envs` (which may override both).
fn command(
    binary: &str,
    dir: &Path,
    listeners: &[(&str, SocketAddr)],
    envs: &[(&str, String)],
) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (name, addr) in listeners {
        command.env(name, addr.to_string());
    }
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

/// The value of `sample` (a metric name with its labels, as exposed) in a Prometheus text
/// exposition; 0 when absent, as an unset counter reads.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == sample).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// One SRS heartbeat for an origin on 127.0.0.1 (service `svc`, pid `1`) to the system API
/// at `system`; fails unless it is accepted.
pub fn register(system: SocketAddr, server: &str, rtmp: u16, http: u16) -> anyhow::Result<()> {
    crate::srs::SrsHeartbeat::local(server, rtmp, Some(http)).register(&register_url(system))
}

/// Posts one heartbeat body to the register API at `system` as SRS would; fails unless it is
/// accepted.
pub fn register_body(system: SocketAddr, body: &serde_json::Value) -> anyhow::Result<()> {
    let (status, text) = crate::srs::post(&register_url(system), body)?;
    anyhow::ensure!(
        status == 200 && text.contains("\"code\":0"),
        "register answered {status}: {text}"
    );
    Ok(())
}

fn register_url(system: SocketAddr) -> String {
    crate::srs::register_url(system, None)
}

/// Heartbeats sent from a background thread; failures (a proxy or its Redis down) are
/// retried at the next beat. Stops when dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(system: SocketAddr, server: &str, rtmp: u16, http: u16, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let server = server.to_owned();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = register(system, &server, rtmp, http);
                    let until = std::time::Instant::now() + every;
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One blocking HTTP/1.1 request (Connection: close); returns status and raw body (chunked
/// bodies are decoded). Raw on purpose: tests send malformed and oversized bodies exactly as
/// written.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let body = body.as_ref();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) and close before reading a large body, and then reset the
    // connection: what it answered counts, not the failed write or the reset after it.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw)
        && (raw.is_empty() || err.kind() != std::io::ErrorKind::ConnectionReset)
    {
        return Err(anyhow::Error::from(err).context(format!("read the answer from {addr}")));
    }
    Ok(parse_response(&raw))
}

/// Status and body of a raw HTTP/1.1 response (a chunked body is decoded).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The real proxy binary: `ORIGINSTACK_PROXY_BIN`, else the workspace's debug build beside
/// this test's own directory, built once if absent.
pub fn proxy_binary() -> &'static str {
    static BINARY: OnceLock<String> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("ORIGINSTACK_PROXY_BIN") {
            return path.to_string_lossy().into_owned();
        }
        // target/debug/deps/<test>-HASH → target/debug/originstack-proxy
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/debug");
        let binary = profile_dir.join("originstack-proxy");
        if !binary.is_file() {
            let target_dir = profile_dir.parent().expect("target dir");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-p",
                    "originstack-proxy",
                    "--bin",
                    "originstack-proxy",
                ])
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p originstack-proxy failed");
        }
        binary.to_string_lossy().into_owned()
    })
}
