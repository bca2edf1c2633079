//! nginx with the RTMP module, standing in for an SRS origin in tests.
//!
//! Each [`NginxRtmpOrigin`] is its own nginx process with a generated config in a private
//! temporary directory (pid, logs, temp files, HLS segments), listening on free loopback
//! ports (or on another local address, see [`NginxRtmpConfig::ip`]), so any number of them
//! run side by side. It serves:
//!
//! - RTMP publish and play on `rtmp://{ip}:{rtmp_port}/{app}/{stream}`;
//! - HLS on `http://{ip}:{http_port}/{app}/{stream}.m3u8`, the path SRS uses, so the
//!   proxy can forward an HLS request unchanged;
//! - the RTMP module's statistics (XML) on `/stat`, which [`NginxRtmpOrigin::streams`] reads
//!   to tell which streams the origin really holds.
//!
//! Not served (nginx-rtmp cannot): HTTP-FLV and HTTP-TS, WebRTC, SRT.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::process::{ChildGuard, free_port, wait_for_tcp};

/// Where Debian's `libnginx-mod-rtmp` installs the dynamic module.
const DEFAULT_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// How long nginx may take to bind its ports and answer `/stat`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Another process may take a port between [`free_port`] and nginx binding it; then we
/// start again on new ports.
const START_ATTEMPTS: usize = 3;

/// What the generated nginx.conf contains.
#[derive(Debug, Clone)]
pub struct NginxRtmpConfig {
    /// RTMP application names accepted for publish and play (each also gets HLS).
    pub apps: Vec<String>,
    /// Target HLS segment length (`hls_fragment`); segments are cut on keyframes.
    pub hls_fragment: Duration,
    /// How much media the HLS playlist keeps (`hls_playlist_length`).
    pub hls_playlist_length: Duration,
    /// The local address both listeners bind, e.g. the machine's own non-loopback address
    /// ([`crate::process::local_address`]) where loopback is refused, as in an EndpointSlice.
    pub ip: IpAddr,
    /// Whether the applications write HLS (off saves CPU when many streams run at once).
    pub hls: bool,
    /// Extra directives for every application, e.g. `wait_key off;`.
    pub app_directives: String,
    /// nginx `worker_connections`: every publisher and player is one.
    pub worker_connections: u32,
}

impl Default for NginxRtmpConfig {
    fn default() -> Self {
        Self {
            apps: vec!["live".to_owned(), "app".to_owned()],
            hls_fragment: Duration::from_secs(1),
            hls_playlist_length: Duration::from_secs(6),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            hls: true,
            app_directives: String::new(),
            worker_connections: 1024,
        }
    }
}

/// A stream the origin reports on its stat page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginStream {
    pub app: String,
    pub name: String,
    /// A publisher is connected (players of an unpublished stream also create an entry).
    pub publishing: bool,
    /// Connected clients, the publisher included.
    pub clients: u32,
    /// Video codec from the publisher's metadata, e.g. `H264`.
    pub video_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Audio codec from the publisher's metadata, e.g. `AAC`.
    pub audio_codec: Option<String>,
}

/// A running nginx-rtmp origin; killed when dropped.
pub struct NginxRtmpOrigin {
    process: ChildGuard,
    dir: tempfile::TempDir,
    ip: IpAddr,
    rtmp_port: u16,
    http_port: u16,
    apps: Vec<String>,
    http: ureq::Agent,
}

impl NginxRtmpOrigin {
    /// Starts an origin with the default applications `live` and `app`.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(NginxRtmpConfig::default())
    }

    /// Starts `n` origins without HLS, for tests that only relay RTMP (HLS muxing costs CPU).
    pub fn start_rtmp_only(n: usize) -> anyhow::Result<Vec<Self>> {
        (0..n)
            .map(|_| {
                Self::start_with(NginxRtmpConfig {
                    hls: false,
                    ..NginxRtmpConfig::default()
                })
            })
            .collect()
    }

    /// Starts an origin and waits until both its RTMP and HTTP ports serve.
    pub fn start_with(config: NginxRtmpConfig) -> anyhow::Result<Self> {
        ensure!(
            !config.apps.is_empty(),
            "an nginx-rtmp origin needs at least one application"
        );
        for app in &config.apps {
            // Names go into nginx.conf and URL paths verbatim.
            ensure!(
                !app.is_empty()
                    && app
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "application name {app:?} must be non-empty ASCII letters, digits, '-' or '_'"
            );
        }
        let nginx = find_nginx()?;
        let module = rtmp_module();
        let mut attempt = 1;
        loop {
            match Self::try_start(&nginx, module.as_deref(), &config) {
                Ok(origin) => return Ok(origin),
                Err(StartFailure::PortTaken(err)) if attempt < START_ATTEMPTS => {
                    tracing::debug!(attempt, error = %err, "nginx-rtmp port taken, retrying on new ports");
                    attempt += 1;
                }
                Err(StartFailure::PortTaken(err) | StartFailure::Other(err)) => return Err(err),
            }
        }
    }

    fn try_start(
        nginx: &Path,
        module: Option<&Path>,
        config: &NginxRtmpConfig,
    ) -> Result<Self, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix("nginx-rtmp-")
            .tempdir()
            .context("create the nginx temp dir")?;
        let rtmp_port = free_port();
        let http_port = free_port();
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(
            &conf_path,
            render_config(
                dir.path(),
                SocketAddr::new(config.ip, rtmp_port),
                SocketAddr::new(config.ip, http_port),
                config,
                module,
            ),
        )
        .context("write nginx.conf")?;
        for sub in ["hls", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).with_context(|| format!("create {sub}/"))?;
        }
        let output =
            std::fs::File::create(dir.path().join("stderr.log")).context("create stderr.log")?;
        let process = ChildGuard::spawn(
            format!(
                "nginx-rtmp (rtmp {rtmp_port}, http {http_port} on {})",
                config.ip
            ),
            Command::new(nginx)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                // Early start-up errors go here too, before nginx.conf's error_log applies.
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().context("clone stderr.log")?)
                .stderr(output),
        )?;
        let mut origin = Self {
            process,
            dir,
            ip: config.ip,
            rtmp_port,
            http_port,
            apps: config.apps.clone(),
            http: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(2)))
                .http_status_as_error(false)
                // Loopback only: an HTTP proxy from the environment must not be used.
                .proxy(None)
                .build()
                .into(),
        };
        origin.wait_ready()?;
        Ok(origin)
    }

    /// Waits until `/stat` answers from this very nginx (its pid), so a stranger already on
    /// the port cannot pass for it; the RTMP port is bound before nginx serves HTTP.
    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Err(err) = self.process.ensure_running() {
                let log = self.error_log();
                let mut err = err.context(format!("nginx error log:\n{log}"));
                if log.contains("unknown directive \"rtmp\"") {
                    err = err.context(format!(
                        "nginx lacks the RTMP module: install libnginx-mod-rtmp (`make deps`) or point \
                         ORIGINSTACK_NGINX_RTMP_MODULE at ngx_rtmp_module.so (neither it nor {DEFAULT_RTMP_MODULE} exists)"
                    ));
                }
                return Err(if log.contains("Address already in use") {
                    StartFailure::PortTaken(err)
                } else {
                    StartFailure::Other(err)
                });
            }
            match self.fetch_stat().and_then(|xml| parse_stat(&xml)) {
                Ok(stat) if stat.pid == self.process.pid() => break,
                Ok(stat) => {
                    return Err(StartFailure::PortTaken(anyhow::anyhow!(
                        "another nginx (pid {}) answers on HTTP port {}",
                        stat.pid,
                        self.http_port
                    )));
                }
                Err(err) if Instant::now() >= deadline => {
                    return Err(StartFailure::Other(err.context(format!(
                        "{} not ready after {START_TIMEOUT:?}; error log:\n{}",
                        self.process.name(),
                        self.error_log()
                    ))));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
        wait_for_tcp(self.rtmp_addr(), START_TIMEOUT).map_err(StartFailure::Other)
    }

    pub fn rtmp_port(&self) -> u16 {
        self.rtmp_port
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The address both listeners are bound to.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.rtmp_port)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.http_port)
    }

    /// The RTMP applications this origin accepts.
    pub fn apps(&self) -> &[String] {
        &self.apps
    }

    /// `rtmp://{ip}:{port}/{app}/{stream}`, for publishing or playing.
    pub fn rtmp_url(&self, app: &str, stream: &str) -> String {
        format!("rtmp://{}/{app}/{stream}", self.rtmp_addr())
    }

    /// `http://{ip}:{port}/{app}/{stream}.m3u8`, the HLS playlist of a published stream.
    pub fn hls_url(&self, app: &str, stream: &str) -> String {
        format!("http://{}/{app}/{stream}.m3u8", self.http_addr())
    }

    /// The RTMP statistics page (XML).
    pub fn stat_url(&self) -> String {
        format!("http://{}/stat", self.http_addr())
    }

    /// Streams the origin holds right now, as its stat page reports them.
    pub fn streams(&self) -> anyhow::Result<Vec<OriginStream>> {
        Ok(parse_stat(&self.fetch_stat()?)?.streams)
    }

    /// Whether someone publishes `app/stream` on this origin right now.
    pub fn has_stream(&self, app: &str, stream: &str) -> anyhow::Result<bool> {
        Ok(self.published(app, stream)?.is_some())
    }

    /// Waits until `app/stream` is published here; returns what the origin reports of it.
    pub fn wait_for_stream(
        &self,
        app: &str,
        stream: &str,
        timeout: Duration,
    ) -> anyhow::Result<OriginStream> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.published(app, stream)? {
                return Ok(found);
            }
            ensure!(
                Instant::now() < deadline,
                "{app}/{stream} not published on {} after {timeout:?}; it has {:?}",
                self.process.name(),
                self.streams()?
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until nobody publishes `app/stream` here any more.
    pub fn wait_for_stream_gone(
        &self,
        app: &str,
        stream: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.published(app, stream)?.is_some() {
            ensure!(
                Instant::now() < deadline,
                "{app}/{stream} still published on {} after {timeout:?}",
                self.process.name()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn published(&self, app: &str, stream: &str) -> anyhow::Result<Option<OriginStream>> {
        Ok(self
            .streams()?
            .into_iter()
            .find(|s| s.publishing && s.app == app && s.name == stream))
    }

    fn fetch_stat(&self) -> anyhow::Result<String> {
        let url = self.stat_url();
        let mut response = self
            .http
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        ensure!(
            response.status() == 200,
            "GET {url}: HTTP {}",
            response.status()
        );
        response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("read {url}"))
    }

    /// Kills nginx with SIGKILL now, the way a crashed origin pod vanishes: connections
    /// drop without any goodbye. `master_process off` makes this single process the whole
    /// server, so nothing lingers.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The nginx process, e.g. to send SIGSTOP/SIGCONT for a hung origin.
    pub fn process_mut(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// The private directory holding nginx.conf, logs and HLS segments.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One line per finished RTMP session (client address, command, app, stream, bytes), for
    /// assertions on who connected.
    pub fn rtmp_access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rtmp-access.log")).unwrap_or_default()
    }

    /// nginx's error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log"))
            .unwrap_or_else(|err| format!("(no error log: {err})"))
    }
}

/// The RTMP addresses of those of `origins` that carry a published `app/stream` right now
/// (an origin that cannot answer counts as not carrying it).
pub fn carriers(origins: &[NginxRtmpOrigin], app: &str, stream: &str) -> Vec<SocketAddr> {
    origins
        .iter()
        .filter(|origin| origin.has_stream(app, stream).unwrap_or(false))
        .map(NginxRtmpOrigin::rtmp_addr)
        .collect()
}

enum StartFailure {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

/// `$ORIGINSTACK_NGINX`, else `nginx` on PATH, else Debian's /usr/sbin/nginx (not on a
/// normal user's PATH).
fn find_nginx() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORIGINSTACK_NGINX") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"));
    on_path
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|path| path.is_file())
        .context("nginx not found (install nginx-light and libnginx-mod-rtmp: `make deps`)")
}

/// `$ORIGINSTACK_NGINX_RTMP_MODULE`, else Debian's module file; `None` when absent, for an
/// nginx with the module built in.
fn rtmp_module() -> Option<PathBuf> {
    let path = std::env::var_os("ORIGINSTACK_NGINX_RTMP_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RTMP_MODULE));
    path.is_file().then_some(path)
}

/// The nginx.conf of one origin. Every path nginx writes is inside `dir`, so parallel
/// instances never share a file.
fn render_config(
    dir: &Path,
    rtmp: SocketAddr,
    http: SocketAddr,
    config: &NginxRtmpConfig,
    module: Option<&Path>,
) -> String {
    let dir = dir.display();
    let fragment = config.hls_fragment.as_millis().max(1);
    let playlist = config.hls_playlist_length.as_millis().max(1);
    let hls = if config.hls { "on" } else { "off" };
    let extra = &config.app_directives;
    let worker_connections = config.worker_connections.max(16);
    let mut conf = String::new();
    if let Some(module) = module {
        let _ = writeln!(conf, "load_module \"{}\";", module.display());
    }
    // One process: RTMP live streams are per worker, and SIGKILL must take down the whole
    // server at once for fault tests.
    let _ = write!(
        conf,
        r#"daemon off;
master_process off;
pid "{dir}/nginx.pid";
lock_file "{dir}/nginx.lock";
error_log "{dir}/error.log" info;
events {{
    worker_connections {worker_connections};
}}
rtmp {{
    # Without it the module opens the compiled-in /var/log/nginx/access.log.
    access_log "{dir}/rtmp-access.log";
    server {{
        listen {rtmp};
        chunk_size 4096;
"#
    );
    for app in &config.apps {
        let _ = write!(
            conf,
            r#"        application {app} {{
            live on;
            record off;
            hls {hls};
            hls_path "{dir}/hls/{app}";
            hls_fragment {fragment}ms;
            hls_playlist_length {playlist}ms;
            {extra}
        }}
"#
        );
    }
    let _ = write!(
        conf,
        r#"    }}
}}
http {{
    access_log off;
    client_body_temp_path "{dir}/tmp/body";
    proxy_temp_path "{dir}/tmp/proxy";
    fastcgi_temp_path "{dir}/tmp/fastcgi";
    uwsgi_temp_path "{dir}/tmp/uwsgi";
    scgi_temp_path "{dir}/tmp/scgi";
    server {{
        listen {http};
        location = /stat {{
            rtmp_stat all;
        }}
        location / {{
            root "{dir}/hls";
            types {{
                application/vnd.apple.mpegurl m3u8;
                video/mp2t ts;
            }}
            add_header Cache-Control no-cache;
        }}
    }}
}}
"#
    );
    conf
}

/// What the stat page says.
#[derive(Debug)]
struct Stat {
    pid: u32,
    streams: Vec<OriginStream>,
}

/// Parses the RTMP module's stat XML (`<rtmp><pid/><server><application><name/><live>
/// <stream>...`).
fn parse_stat(xml: &str) -> anyhow::Result<Stat> {
    let doc = roxmltree::Document::parse(xml).context("stat page is not XML")?;
    let root = doc.root_element();
    if root.tag_name().name() != "rtmp" {
        bail!("stat page root is <{}>, not <rtmp>", root.tag_name().name());
    }
    let pid = child_text(root, "pid")
        .and_then(|pid| pid.parse().ok())
        .context("stat page has no <pid>")?;
    let mut streams = Vec::new();
    for application in children(root, "server").flat_map(|server| children(server, "application")) {
        let app = child_text(application, "name").unwrap_or_default();
        for stream in children(application, "live").flat_map(|live| children(live, "stream")) {
            let meta = child(stream, "meta");
            let video = meta.and_then(|meta| child(meta, "video"));
            let audio = meta.and_then(|meta| child(meta, "audio"));
            streams.push(OriginStream {
                app: app.to_owned(),
                name: child_text(stream, "name").unwrap_or_default().to_owned(),
                publishing: child(stream, "publishing").is_some(),
                clients: child_text(stream, "nclients")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                video_codec: video
                    .and_then(|v| child_text(v, "codec"))
                    .map(str::to_owned),
                width: video
                    .and_then(|v| child_text(v, "width"))
                    .and_then(|w| w.parse().ok()),
                height: video
                    .and_then(|v| child_text(v, "height"))
                    .and_then(|h| h.parse().ok()),
                audio_codec: audio
                    .and_then(|a| child_text(a, "codec"))
                    .map(str::to_owned),
            });
        }
    }
    Ok(Stat { pid, streams })
}

/// The `/stat` XML's element helpers, shared with the SRS stand-in's reader of the same page.
pub(crate) fn children<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    tag: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(move |n| n.has_tag_name(tag))
}

pub(crate) fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    tag: &'static str,
) -> Option<roxmltree::Node<'a, 'input>> {
    children(node, tag).next()
}

pub(crate) fn child_text<'a>(node: roxmltree::Node<'a, '_>, tag: &'static str) -> Option<&'a str> {
    child(node, tag).and_then(|n| n.text()).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real nginx-rtmp 1.1.4 stat page with one publisher and one player
    /// waiting for a stream nobody publishes.
    const STAT: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<rtmp>
<nginx_version>1.22.1</nginx_version>
<pid>11114</pid>
<server>
<application>
<name>live</name>
<live>
<stream>
<name>s1</name>
<time>6804</time>
<client><id>2</id><address>127.0.0.1</address><publishing/><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>25</frame_rate><codec>H264</codec></video><audio><codec>AAC</codec><channels>1</channels></audio></meta>
<nclients>2</nclients>
<publishing/>
<active/>
</stream>
<nclients>2</nclients>
</live>
</application>
<application>
<name>app</name>
<live>
<stream>
<name>waiting</name>
<nclients>1</nclients>
</stream>
</live>
</application>
</server>
</rtmp>"#;

    #[test]
    fn stat_page_lists_published_and_waiting_streams() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.pid, 11114);
        assert_eq!(
            stat.streams,
            vec![
                OriginStream {
                    app: "live".into(),
                    name: "s1".into(),
                    publishing: true,
                    clients: 2,
                    video_codec: Some("H264".into()),
                    width: Some(320),
                    height: Some(240),
                    audio_codec: Some("AAC".into()),
                },
                OriginStream {
                    app: "app".into(),
                    name: "waiting".into(),
                    publishing: false,
                    clients: 1,
                    video_codec: None,
                    width: None,
                    height: None,
                    audio_codec: None,
                },
            ]
        );
    }

    #[test]
    fn stat_page_must_be_rtmp_xml() {
        assert!(parse_stat("<html>nope</html>").is_err());
        assert!(parse_stat("not xml").is_err());
        assert!(parse_stat("<rtmp></rtmp>").is_err(), "no pid");
    }

    #[test]
    fn config_keeps_every_path_in_the_private_dir() {
        let conf = render_config(
            Path::new("/tmp/x"),
            "127.0.0.1:1935".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            &NginxRtmpConfig::default(),
            Some(Path::new("/m.so")),
        );
        assert!(conf.starts_with("load_module \"/m.so\";\n"));
        assert!(conf.contains("listen 127.0.0.1:1935;"));
        assert!(conf.contains("listen 127.0.0.1:8080;"));
        assert!(conf.contains("application live {") && conf.contains("application app {"));
        assert!(
            conf.contains("hls_fragment 1000ms;") && conf.contains("hls_playlist_length 6000ms;")
        );
        let written = [
            "pid ",
            "lock_file ",
            "error_log ",
            "hls_path ",
            "client_body_temp_path ",
            "proxy_temp_path ",
            "fastcgi_temp_path ",
            "uwsgi_temp_path ",
            "scgi_temp_path ",
            "root ",
            "access_log \"",
        ];
        for directive in written {
            let lines: Vec<_> = conf
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with(directive))
                .collect();
            assert!(!lines.is_empty(), "{directive} missing");
            for line in lines {
                assert!(
                    line.contains("\"/tmp/x/"),
                    "path outside the private dir: {line}"
                );
            }
        }
    }
}
