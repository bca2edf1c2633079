//! `srs-standin`: an SRS 7 origin for tests, where SRS itself cannot be installed.
//!
//! It reads the srs.conf OriginStack's operator generates, with SRS's `SRS_*` overrides
//! ([`conf`]), and behaves as SRS does where OriginStack depends on it:
//!
//! - RTMP publish and play on `listen`: nginx with the RTMP module as a child process, its
//!   config generated ([`nginx`]); HLS written by it when `hls` is enabled; an edge
//!   (`cluster { mode remote; }`) pulls and pushes through nginx-rtmp's relays;
//! - the HTTP server ([`http`]) on `http_server.listen`: files of `http_server.dir` (the HLS
//!   playlists and segments, with SRS's `hls_ctx` sessions) and HTTP-FLV of a live stream,
//!   remuxed by an ffmpeg reading it from nginx;
//! - the HTTP API ([`api`]) on `http_api.listen` with SRS's JSON (versions, summaries,
//!   streams);
//! - the heartbeat ([`heartbeat`]) exactly as SRS 7 sends it, through [`crate::srs`].
//!
//! It execs only nginx and ffmpeg, at absolute paths ([`Tools`]), so it runs in an image with
//! no shell. As PID 1 it stops its children on SIGTERM/SIGINT and exits 0, reaps orphans, and
//! exits non-zero when nginx dies so the kubelet restarts the container.

pub mod api;
pub mod conf;
mod heartbeat;
pub mod http;
pub mod nginx;
pub mod stat;
pub mod sys;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::Command,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use conf::{ConfError, Config};

/// The SRS version the stand-in answers as (`/api/v1/versions`, summaries, `Server`): the
/// stand-in's own choice, SRS 7.0.18, the release whose behaviour it follows.
pub const VERSION_MAJOR: u32 = 7;
pub const VERSION_MINOR: u32 = 0;
pub const VERSION_REVISION: u32 = 18;
pub const VERSION: &str = "7.0.18";
/// `RTMP_SIG_SRS_SERVER` of 7.0.18 (`srs_core.hpp`: key, version, code name).
pub const SERVER_SIGNATURE: &str = "SRS/7.0.18(Hang)";

/// RTMP application names nginx-rtmp always declares (SRS accepts any).
pub const DEFAULT_APPS: &[&str] = &["live", "app"];

/// The programs the stand-in runs; absolute paths, overridable for tests on a host.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `SRS_STANDIN_NGINX`, default `/usr/sbin/nginx`.
    pub nginx: PathBuf,
    /// `SRS_STANDIN_RTMP_MODULE`, default Debian's `ngx_rtmp_module.so`; empty for an nginx
    /// with the module built in.
    pub rtmp_module: Option<PathBuf>,
    /// `SRS_STANDIN_FFMPEG`, default `/usr/bin/ffmpeg`.
    pub ffmpeg: PathBuf,
}

impl Tools {
    pub fn from_env() -> Self {
        let path = |name: &str, default: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let module = path(
            "SRS_STANDIN_RTMP_MODULE",
            "/usr/lib/nginx/modules/ngx_rtmp_module.so",
        );
        Self {
            nginx: path("SRS_STANDIN_NGINX", "/usr/sbin/nginx"),
            rtmp_module: (!module.as_os_str().is_empty()).then_some(module),
            ffmpeg: path("SRS_STANDIN_FFMPEG", "/usr/bin/ffmpeg"),
        }
    }
}

/// RTMP applications: [`DEFAULT_APPS`] and `SRS_STANDIN_APPS` (comma separated).
pub fn apps(extra: Option<&str>) -> Result<Vec<String>, ConfError> {
    let mut apps: Vec<String> = DEFAULT_APPS.iter().map(|a| a.to_string()).collect();
    for app in extra.unwrap_or_default().split(',').map(str::trim) {
        if app.is_empty() || apps.iter().any(|a| a == app) {
            continue;
        }
        // The name goes into nginx.conf and URL paths verbatim.
        if !app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfError::Unsupported(format!(
                "SRS_STANDIN_APPS: application name {app:?} (letters, digits, '-', '_', '.')"
            )));
        }
        apps.push(app.to_owned());
    }
    Ok(apps)
}

/// A line on stderr: `[time][level] message`, as plain text for container logs.
pub fn log(level: &str, message: impl std::fmt::Display) {
    eprintln!("[{}][{level}] {message}", utc_now());
}

macro_rules! log_info {
    ($($arg:tt)*) => { $crate::standin::log("INFO", format_args!($($arg)*)) };
}
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::standin::log("WARN", format_args!($($arg)*)) };
}
pub(crate) use {log_info, log_warn};

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// What every part of the running stand-in shares.
pub struct State {
    pub config: Config,
    /// SRS's server id: SRS_SERVER_ID, `server_id`, the id file, or a random `vid-`.
    pub server_id: String,
    /// New on every start (SrsStatistic::service_id: 8 random characters).
    pub service_id: String,
    pub pid: u32,
    /// SRS gives each vhost a random id in its statistics; streams name theirs.
    pub vhost_id: String,
    pub started: Instant,
    pub argv: String,
    pub cwd: String,
    pub stat_socket: PathBuf,
    /// Where ffmpeg plays a stream from nginx.
    pub rtmp_local: SocketAddr,
    pub ffmpeg: PathBuf,
    /// `http_server.dir`, absolute.
    pub http_dir: PathBuf,
    /// Stream ids (`vid-...`), kept while nginx reports the stream.
    pub stream_ids: Mutex<HashMap<(String, String), String>>,
    /// `hls_ctx` sessions and when each was last seen.
    pub hls_sessions: Mutex<HashMap<String, Instant>>,
    pub sample: Mutex<sys::Sample>,
    /// Live child processes (nginx, ffmpeg): their CPU counts as the origin's, and orphans
    /// not in this set are reaped when the stand-in is PID 1.
    pub children: Mutex<HashSet<u32>>,
    pub shutdown: watch::Receiver<bool>,
}

impl State {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The SRS server id (`SrsConfig::get_server_id`, `srs_app_config.cpp` l. 3008): the
/// configured one, else the one in the id file beside the pid file (`./objs/srs.id`), else a
/// new `vid-` id; written back to that file, failures ignored, as SRS does.
fn server_id(config: &Config) -> String {
    let mut path = config.pid_file.replace(".pid", ".id");
    if !path.ends_with(".id") {
        path.push_str(".id");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    let id = config
        .server_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| Some(stored.clone()).filter(|id| !id.is_empty()))
        .unwrap_or_else(|| format!("vid-{}", sys::random_str(7)));
    if stored != id {
        let _ = std::fs::write(&path, &id);
    }
    id
}

/// How the command line asks to run.
#[derive(Debug, PartialEq, Eq)]
enum Cli {
    Run { config: String },
    Test { config: String },
    Version,
    Help,
}

/// SRS's options (`SrsConfig::parse_argv`, l. 2180): `-c file`, `-t`, `-v`/`-V`, `-h`.
fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut config = None;
    let mut test = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" => config = Some(args.next().ok_or("-c needs a config file")?.clone()),
            "-t" => test = true,
            "-v" | "-V" => return Ok(Cli::Version),
            "-h" | "-?" => return Ok(Cli::Help),
            other => return Err(format!("unsupported option {other}")),
        }
    }
    // parse_options (l. 1940): SRS_CONFIG_FILE replaces the file of -c.
    let config = conf::process_env("SRS_CONFIG_FILE")
        .filter(|f| !f.is_empty())
        .or(config)
        .unwrap_or_else(|| conf::DEFAULT_CONFIG_FILE.to_owned());
    Ok(if test {
        Cli::Test { config }
    } else {
        Cli::Run { config }
    })
}

/// Reads and checks the config file with the process environment.
pub fn load_config(path: &str) -> Result<Config, ConfError> {
    let mut read = |file: &str| {
        std::fs::read_to_string(file)
            .map_err(|err| ConfError::Io(format!("cannot read config {file}: {err}")))
    };
    let text = read(path)?;
    Config::from_text(&text, &mut read, &conf::process_env)
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse_cli(&args) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("srs-standin: {err}\nusage: srs -c <config file> [-t]");
            return ExitCode::from(1);
        }
    };
    let path = match cli {
        Cli::Version => {
            eprintln!("{VERSION}");
            return ExitCode::SUCCESS;
        }
        Cli::Help => {
            eprintln!(
                "srs-standin {VERSION}: an SRS 7 stand-in for tests (nginx-rtmp and ffmpeg)\n\
                 usage: srs -c <config file> [-t]    (-t: check the config and exit)"
            );
            return ExitCode::SUCCESS;
        }
        Cli::Test { ref config } | Cli::Run { ref config } => config.clone(),
    };
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(err) => {
            log("ERROR", format_args!("config {path}: {err}"));
            return ExitCode::from(1);
        }
    };
    let apps = match apps(conf::process_env("SRS_STANDIN_APPS").as_deref()) {
        Ok(apps) => apps,
        Err(err) => {
            log("ERROR", err);
            return ExitCode::from(1);
        }
    };
    if let Cli::Test { .. } = cli {
        log_info!("the config file {path} syntax is ok");
        return ExitCode::SUCCESS;
    }
    // main (srs_main_server.cpp l. 145): SRS changes into work_dir once the config is read.
    if !config.work_dir.is_empty()
        && config.work_dir != "./"
        && let Err(err) = std::env::set_current_dir(&config.work_dir)
    {
        log("ERROR", format_args!("chdir to {}: {err}", config.work_dir));
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            log("ERROR", format_args!("cannot start the runtime: {err}"));
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match run(config, apps, Tools::from_env(), args.join(" ")).await {
            Ok(code) => code,
            Err(err) => {
                log("ERROR", format_args!("{err:#}"));
                ExitCode::from(1)
            }
        }
    });
    // Sessions still streaming hold their ffmpeg (killed on drop); do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// An absolute path for a config path relative to the working directory.
fn absolute(cwd: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    // Drop `.` components: the path ends up in nginx.conf and log lines.
    joined.components().collect()
}

/// The private directory: under $TMPDIR, else (an image without /tmp) under `./objs`.
fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    let builder = || {
        let mut builder = tempfile::Builder::new();
        builder.prefix("srs-standin-");
        builder
    };
    builder().tempdir().or_else(|first| {
        std::fs::create_dir_all("objs")?;
        builder()
            .tempdir_in("objs")
            .with_context(|| format!("no private directory in $TMPDIR ({first}) nor in ./objs"))
    })
}

/// Where local clients (ffmpeg) reach nginx's RTMP: the first listen, on loopback when it
/// takes every address.
fn local_rtmp(config: &Config) -> SocketAddr {
    let endpoint = &config.listens[0];
    let ip = match endpoint.ip {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Some(ip) => ip,
    };
    SocketAddr::new(ip, endpoint.port)
}

/// A TCP listener for an SRS endpoint: every address (dual-stack where IPv6 exists) for a
/// bare port, else the address given.
async fn bind(endpoint: &conf::Endpoint) -> anyhow::Result<tokio::net::TcpListener> {
    let candidates: Vec<SocketAddr> = match endpoint.ip {
        Some(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        None => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), endpoint.port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), endpoint.port),
        ],
    };
    let mut last = None;
    for addr in candidates {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(format!("{addr}: {err}")),
        }
    }
    bail!(
        "cannot listen on {}: {}",
        endpoint.raw,
        last.unwrap_or_default()
    )
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).is_ok()
}

/// Makes the child killed when the stand-in dies, even by SIGKILL (which it cannot handle):
/// nginx and ffmpeg never outlive it. In a container the kernel does this anyway; on a host
/// (tests) nothing else would.
pub(crate) fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe, as a pre_exec hook must be. The signal comes when
    // the spawning thread ends: a runtime worker, which lives as long as the stand-in.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Sends `signal` to `pid`.
fn send_signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill has no memory preconditions; the pid is one of our children.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Starts nginx and waits until it serves: its stat page answers from this very process and
/// the RTMP port accepts.
async fn start_nginx(
    tools: &Tools,
    conf_path: &Path,
    dir: &Path,
    stat_socket: &Path,
    rtmp: SocketAddr,
) -> anyhow::Result<tokio::process::Child> {
    let mut command = Command::new(&tools.nginx);
    let mut child = die_with_parent(&mut command)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf_path)
        // Start-up errors before nginx.conf's error_log applies.
        .arg("-e")
        .arg("stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", tools.nginx.display()))?;
    let pid = child.id().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("nginx exited while starting ({status}); its log is above");
        }
        let serving = match stat::fetch(stat_socket)
            .await
            .and_then(|xml| stat::parse(&xml))
        {
            Ok(stat) if stat.pid == pid => tokio::net::TcpStream::connect(rtmp).await.is_ok(),
            _ => false,
        };
        if serving {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            bail!("nginx (pid {pid}) not serving RTMP on {rtmp} after 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs until SIGTERM/SIGINT (exit 0) or nginx's death (exit 1).
async fn run(
    config: Config,
    apps: Vec<String>,
    tools: Tools,
    argv: String,
) -> anyhow::Result<ExitCode> {
    for (what, path) in [
        ("nginx", Some(&tools.nginx)),
        ("the RTMP module", tools.rtmp_module.as_ref()),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            bail!(
                "{what} not found at {} (set SRS_STANDIN_{})",
                path.display(),
                if what == "nginx" {
                    "NGINX"
                } else {
                    "RTMP_MODULE"
                }
            );
        }
    }
    if config.http_remux.is_some() && config.http_server.is_some() && !tools.ffmpeg.is_file() {
        bail!(
            "ffmpeg not found at {} (needed for HTTP-FLV; set SRS_STANDIN_FFMPEG)",
            tools.ffmpeg.display()
        );
    }
    let cwd = std::env::current_dir().context("no working directory")?;
    if let Some(origins) = &config.edge_origins
        && origins.len() > 1
    {
        log_warn!(
            "edge: nginx-rtmp relays to one origin; using {} of {origins:?} (SRS would fail over between them)",
            origins[0]
        );
    }

    let private = private_dir()?;
    let dir = absolute(&cwd, &private.path().to_string_lossy());
    std::fs::create_dir_all(dir.join("tmp")).context("create the temp directory")?;
    let stat_socket = dir.join("stat.sock");
    let hls_root = config.hls.enabled.then(|| absolute(&cwd, &config.hls.path));
    if let Some(root) = &hls_root {
        // nginx-rtmp creates only the last level of hls_path; SRS creates them all.
        for app in &apps {
            std::fs::create_dir_all(root.join(app))
                .with_context(|| format!("cannot create {}", root.join(app).display()))?;
        }
    }
    let conf_path = dir.join("nginx.conf");
    let nginx_conf = nginx::render(
        &config,
        &nginx::Layout {
            dir: &dir,
            module: tools.rtmp_module.as_deref(),
            stat_socket: &stat_socket,
            hls_root: hls_root.as_deref(),
            apps: &apps,
            ipv6: ipv6_available(),
        },
    );
    std::fs::write(&conf_path, nginx_conf).context("write nginx.conf")?;

    // Bind SRS's own listeners first: a port in use fails the start, as in SRS.
    let api_listener = match &config.http_api {
        Some(api) if config.http_server.as_ref().is_none_or(|s| s.listen != *api) => {
            Some(bind(api).await?)
        }
        _ => None,
    };
    let api_on_http_server = config.http_api.as_ref().is_some_and(|api| {
        config
            .http_server
            .as_ref()
            .is_some_and(|s| s.listen == *api)
    });
    let http_listener = match &config.http_server {
        Some(server) => Some(bind(&server.listen).await?),
        None => None,
    };

    let rtmp_local = local_rtmp(&config);
    let mut nginx = start_nginx(&tools, &conf_path, &dir, &stat_socket, rtmp_local).await?;
    let nginx_pid = nginx.id().unwrap_or(0);

    let (shutdown_tx, shutdown) = watch::channel(false);
    let state = Arc::new(State {
        server_id: server_id(&config),
        service_id: sys::random_str(8),
        pid: std::process::id(),
        vhost_id: format!("vid-{}", sys::random_str(7)),
        started: Instant::now(),
        argv: format!("./objs/srs {argv}"),
        cwd: cwd.display().to_string(),
        stat_socket,
        rtmp_local,
        ffmpeg: tools.ffmpeg.clone(),
        http_dir: config
            .http_server
            .as_ref()
            .map(|s| absolute(&cwd, &s.dir))
            .unwrap_or_default(),
        stream_ids: Mutex::default(),
        hls_sessions: Mutex::default(),
        sample: Mutex::default(),
        children: Mutex::new(HashSet::from([nginx_pid])),
        shutdown,
        config,
    });
    log_info!(
        "SRS {VERSION} stand-in: server {} service {} pid {}; RTMP {:?} through nginx pid {nginx_pid}{}",
        state.server_id,
        state.service_id,
        state.pid,
        state
            .config
            .listens
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>(),
        match &state.config.edge_origins {
            Some(origins) => format!(", edge of {}", origins[0]),
            None => String::new(),
        }
    );

    if let Some(listener) = api_listener {
        log_info!(
            "HTTP API on {}",
            state
                .config
                .http_api
                .as_ref()
                .map(|a| a.raw.as_str())
                .unwrap_or_default()
        );
        tokio::spawn(api::serve(listener, state.clone()));
    }
    if let Some(listener) = http_listener {
        log_info!(
            "HTTP server on {}: files of {}{}{}",
            state
                .config
                .http_server
                .as_ref()
                .map(|s| s.listen.raw.as_str())
                .unwrap_or_default(),
            state.http_dir.display(),
            if state.config.http_remux.is_some() {
                ", HTTP-FLV"
            } else {
                ""
            },
            if api_on_http_server { ", HTTP API" } else { "" },
        );
        tokio::spawn(http::serve(listener, state.clone(), api_on_http_server));
    }
    tokio::spawn(sample_load(state.clone()));
    tokio::spawn(expire_hls_sessions(state.clone()));
    tokio::spawn(heartbeat::run(state.clone()));
    if state.pid == 1 {
        tokio::spawn(reap_orphans(state.clone()));
    }

    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let code = tokio::select! {
        _ = sigterm.recv() => { log_info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { log_info!("SIGINT: stopping"); None }
        status = nginx.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            log("ERROR", format_args!("nginx (pid {nginx_pid}) exited: {status}; exiting"));
            Some(ExitCode::from(1))
        }
    };
    let _ = shutdown_tx.send(true);
    if code.is_none() {
        // nginx's fast shutdown; then SIGKILL if it lingers.
        send_signal(nginx_pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), nginx.wait())
            .await
            .is_err()
        {
            let _ = nginx.kill().await;
        }
    }
    state.children.lock().expect("children").remove(&nginx_pid);
    // The HTTP-FLV sessions see the shutdown and stop their ffmpeg.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !state.children.lock().expect("children").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(private);
    Ok(code.unwrap_or(ExitCode::SUCCESS))
}

/// Samples the load every 5 s (SRS's `threads.interval` default), the first at once.
async fn sample_load(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let children = state.children.lock().expect("children").clone();
        state.sample.lock().expect("sample").update(&children);
    }
}

/// Forgets `hls_ctx` sessions not seen for twice the HLS window (SrsHlsStream::on_timer,
/// `srs_app_http_static.cpp` l. 353).
async fn expire_hls_sessions(state: Arc<State>) {
    let ttl = state.config.hls.window * 2;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        state
            .hls_sessions
            .lock()
            .expect("hls sessions")
            .retain(|_, seen| seen.elapsed() <= ttl);
    }
}

/// As PID 1, reaps processes that are not ours but were re-parented to us. Our own children
/// are left to tokio, which waits for them itself.
async fn reap_orphans(state: Arc<State>) {
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid with WNOWAIT only peeks.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let peeked = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: waitid filled si_pid for a child that changed state (0 when none).
            let pid = unsafe { info.si_pid() };
            if peeked != 0 || pid <= 0 {
                break;
            }
            if state
                .children
                .lock()
                .expect("children")
                .contains(&(pid as u32))
            {
                break; // ours: tokio reaps it
            }
            let mut status = 0;
            // SAFETY: reaps exactly that exited orphan.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
    }
}

/// Copies a child's stderr to ours, each line prefixed with its name.
pub(crate) fn forward_stderr(name: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log_warn!("{name}: {line}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn command_line_like_srs() {
        assert_eq!(
            parse_cli(&args(&["-c", "/etc/originstack/srs.conf"])),
            Ok(Cli::Run {
                config: "/etc/originstack/srs.conf".into()
            })
        );
        assert_eq!(
            parse_cli(&args(&["-t", "-c", "x.conf"])),
            Ok(Cli::Test {
                config: "x.conf".into()
            })
        );
        assert_eq!(parse_cli(&args(&["-v"])), Ok(Cli::Version));
        assert!(parse_cli(&args(&["-c"])).is_err());
        assert!(parse_cli(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn extra_applications_are_checked() {
        assert_eq!(apps(None).unwrap(), ["live", "app"]);
        assert_eq!(
            apps(Some("cam, live,,x.y")).unwrap(),
            ["live", "app", "cam", "x.y"]
        );
        assert!(apps(Some("a b")).is_err());
    }

    #[test]
    fn paths_resolve_against_the_working_directory() {
        let cwd = Path::new("/usr/local/srs");
        assert_eq!(
            absolute(cwd, "./objs/nginx/html"),
            PathBuf::from("/usr/local/srs/objs/nginx/html")
        );
        assert_eq!(absolute(cwd, "/data/hls"), PathBuf::from("/data/hls"));
    }

    #[test]
    fn utc_time_is_formatted() {
        let now = utc_now();
        assert_eq!(now.len(), "2026-12-04 19:09:31.123".len(), "{now}");
        assert!(now.starts_with("20"));
    }
}
