//! Proxy configuration. Variable names are those of the upstream SRS proxy so an existing
//! deployment switches without edits; every variable is also a flag (`--help`).

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use clap::{Parser, ValueEnum};

use crate::telemetry::LogFormat;

#[derive(Debug, Clone, Parser)]
#[command(name = "originstack-proxy", version, about, long_about = None)]
pub struct Config {
    /// RTMP listener (TCP): a port or an address.
    #[arg(long, env = "PROXY_RTMP_SERVER", default_value = "1935")]
    pub rtmp_server: ListenAddr,

    /// HTTP streaming listener (HTTP-FLV, HTTP-TS, HLS).
    #[arg(long, env = "PROXY_HTTP_SERVER", default_value = "8080")]
    pub http_server: ListenAddr,

    /// HTTP API listener: WHIP/WHEP and the SRS RTC API.
    #[arg(long, env = "PROXY_HTTP_API", default_value = "1985")]
    pub http_api: ListenAddr,

    /// WebRTC media listener (UDP).
    #[arg(long, env = "PROXY_WEBRTC_SERVER", default_value = "8000")]
    pub webrtc_server: ListenAddr,

    /// SRT listener (UDP).
    #[arg(long, env = "PROXY_SRT_SERVER", default_value = "10080")]
    pub srt_server: ListenAddr,

    #[command(flatten)]
    pub srt: SrtLimits,

    #[command(flatten)]
    pub webrtc: WebRtcConfig,

    /// System API: origin registration, admin, /metrics, /healthz, /readyz.
    #[arg(long, env = "PROXY_SYSTEM_API", default_value = "12025")]
    pub system_api: ListenAddr,

    /// Where stream ownership lives: `memory` for one proxy, `redis` for several replicas.
    #[arg(
        long,
        env = "PROXY_LOAD_BALANCER_TYPE",
        value_enum,
        default_value = "memory"
    )]
    pub load_balancer_type: LoadBalancerType,

    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub http: HttpConfig,

    /// Directory of static files served on the HTTP streaming port.
    #[arg(long, env = "PROXY_STATIC_FILES")]
    pub static_files: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub default_backend: DefaultBackendConfig,

    #[command(flatten)]
    pub rtmp: RtmpConfig,

    #[command(flatten)]
    pub discovery: DiscoveryConfig,

    /// An origin that has not heartbeated for this long is out of rotation.
    #[arg(long, env = "PROXY_ORIGIN_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub origin_ttl: Duration,

    /// How long a stream stays owned after its last session ends anywhere (the grace period a
    /// reconnecting publisher keeps its origin). Defaults to PROXY_ORIGIN_TTL.
    #[arg(long, env = "PROXY_STREAM_LEASE", value_parser = humantime::parse_duration)]
    pub stream_lease: Option<Duration>,

    /// Vhosts the origins configure besides the default one (srs.conf `vhost NAME { }`),
    /// comma-separated. A stream named under any other vhost (a domain in the RTMP tcUrl or
    /// the HTTP Host, a `vhost=` parameter) is owned as a stream of `__defaultVhost__`, as SRS
    /// serves it, so clients that reach the proxy by different names meet on one origin.
    #[arg(long, env = "PROXY_VHOSTS", value_delimiter = ',', default_value = "")]
    pub vhosts: Vec<String>,

    /// Largest accepted registration body.
    #[arg(long, env = "PROXY_REGISTER_MAX_BODY", default_value_t = 64 * 1024)]
    pub register_max_body: usize,

    /// When set, origin registrations must carry this token: in the path
    /// (`POST /api/v1/srs/register/<token>`, the form an SRS heartbeat URL keeps),
    /// `Authorization: Bearer <token>` or `?token=<token>`.
    #[arg(long, env = "PROXY_REGISTER_TOKEN", hide_env_values = true)]
    pub register_token: Option<Secret>,

    /// When set, the system API's listings (`/api/v1/origins`, `/api/v1/streams`) need
    /// `Authorization: Bearer <token>`. Unset, PROXY_REGISTER_TOKEN guards them; with neither,
    /// they are open (a warning is logged at start).
    #[arg(long, env = "PROXY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// Registrations accepted per second from one client address, with bursts of as many
    /// (SRS heartbeats about every 10 s); more get 429. 0 turns the limit off.
    #[arg(long, env = "PROXY_REGISTER_RATE_LIMIT", default_value_t = 20)]
    pub register_rate_limit: u32,

    /// After SIGTERM: how long existing sessions may run on while no new ones are accepted.
    #[arg(long, env = "PROXY_GRACE_QUIT_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub grace_quit_timeout: Duration,

    /// After SIGTERM: the hard limit after which the process exits regardless.
    #[arg(long, env = "PROXY_FORCE_QUIT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub force_quit_timeout: Duration,

    /// Threads that relay and serve (the async runtime's workers). Unset: one per CPU this
    /// process may use, a cgroup CPU limit included.
    #[arg(long, env = "PROXY_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Log format.
    #[arg(long, env = "PROXY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The token that guards the system API's listings: PROXY_API_TOKEN, else
    /// PROXY_REGISTER_TOKEN, else none (open).
    pub fn read_token(&self) -> Option<&Secret> {
        set(&self.api_token).or_else(|| self.write_token())
    }

    /// The token origin registrations need, if any.
    pub fn write_token(&self) -> Option<&Secret> {
        set(&self.register_token)
    }
}

/// An empty variable counts as unset, as it always has for these settings.
fn set(secret: &Option<Secret>) -> Option<&Secret> {
    secret.as_ref().filter(|secret| !secret.0.is_empty())
}

/// A credential from the environment. Its `Debug` never shows the value, so a logged config
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Whether `presented` is this secret, in time independent of where they differ and of
    /// either length (both sides are hashed first).
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        let (a, b) = (
            Sha256::digest(presented.as_bytes()),
            Sha256::digest(self.0.as_bytes()),
        );
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadBalancerType {
    Memory,
    Redis,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis host (ignored when PROXY_REDIS_URL is set).
    #[arg(
        long = "redis-host",
        env = "PROXY_REDIS_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// Redis port (ignored when PROXY_REDIS_URL is set).
    #[arg(long = "redis-port", env = "PROXY_REDIS_PORT", default_value_t = 6379)]
    pub port: u16,
    /// Redis password (ignored when PROXY_REDIS_URL is set).
    #[arg(
        long = "redis-password",
        env = "PROXY_REDIS_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Redis database number (ignored when PROXY_REDIS_URL is set).
    #[arg(long = "redis-db", env = "PROXY_REDIS_DB", default_value_t = 0)]
    pub db: i64,
    /// Full Redis URL (redis://, rediss://); wins over the host/port/password/db variables.
    /// With PROXY_REDIS_CLUSTER, a comma-separated list of seed nodes.
    #[arg(long = "redis-url", env = "PROXY_REDIS_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Talk to a Redis Cluster (keys are hash-tagged so every script stays in one slot).
    #[arg(long = "redis-cluster", env = "PROXY_REDIS_CLUSTER", default_value = "off", value_parser = parse_on_off)]
    pub cluster: bool,
    /// Namespace of all keys, so several origin clusters can share one Redis.
    #[arg(
        long = "redis-key-prefix",
        env = "PROXY_REDIS_KEY_PREFIX",
        default_value = "originstack"
    )]
    pub key_prefix: String,
    /// Bound on every Redis call: past it a pick fails with an error instead of waiting.
    #[arg(long = "redis-timeout", env = "PROXY_REDIS_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// PEM CA certificate to verify a rediss:// server signed by a private CA.
    #[arg(long = "redis-ca-file", env = "PROXY_REDIS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl RedisConfig {
    /// The connection URL, built from the separate variables unless a URL was given.
    pub fn connection_url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let auth = if self.password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(&self.password))
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("redis://{auth}{host}:{}/{}", self.port, self.db)
    }
}

/// Passwords may hold URL metacharacters; encode everything but unreserved characters.
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fixed origin for trying the proxy out without heartbeats (as upstream).
#[derive(Debug, Clone, clap::Args)]
pub struct DefaultBackendConfig {
    /// Route every stream to the fixed origin below, which needs no heartbeat (`on`/`off`).
    #[arg(long = "default-backend-enabled", env = "PROXY_DEFAULT_BACKEND_ENABLED", default_value = "off", value_parser = parse_on_off)]
    pub enabled: bool,
    /// The fixed origin's IP address.
    #[arg(
        long = "default-backend-ip",
        env = "PROXY_DEFAULT_BACKEND_IP",
        default_value = "127.0.0.1"
    )]
    pub ip: String,
    /// The fixed origin's RTMP port (or endpoint, as in a heartbeat).
    #[arg(
        long = "default-backend-rtmp",
        env = "PROXY_DEFAULT_BACKEND_RTMP",
        default_value = "19350"
    )]
    pub rtmp: String,
    /// The fixed origin's HTTP streaming port (HTTP-FLV, HTTP-TS, HLS).
    #[arg(long = "default-backend-http", env = "PROXY_DEFAULT_BACKEND_HTTP")]
    pub http: Option<String>,
    /// The fixed origin's HTTP API port (WHIP/WHEP).
    #[arg(long = "default-backend-api", env = "PROXY_DEFAULT_BACKEND_API")]
    pub api: Option<String>,
    /// The fixed origin's WebRTC media endpoint (UDP).
    #[arg(long = "default-backend-rtc", env = "PROXY_DEFAULT_BACKEND_RTC")]
    pub rtc: Option<String>,
    /// The fixed origin's SRT endpoint (UDP).
    #[arg(long = "default-backend-srt", env = "PROXY_DEFAULT_BACKEND_SRT")]
    pub srt: Option<String>,
}

/// Kubernetes discovery of origins from the EndpointSlices of their headless Service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiscoveryConfig {
    /// Discover origins from the EndpointSlices of a Kubernetes Service (`on`/`off`): each
    /// ready endpoint is an origin, one not ready or terminating is draining, a removed one is
    /// gone. Uses the in-cluster service account, or KUBECONFIG outside a cluster; needs
    /// get/list/watch on endpointslices (discovery.k8s.io) in the Service's namespace.
    #[arg(id = "k8s_discovery", long = "k8s-discovery", env = "PROXY_K8S_DISCOVERY", default_value = "off", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub enabled: bool,
    /// The origins' headless Service; its ports must be named rtmp (required), http, api,
    /// rtc, srt.
    #[arg(
        id = "k8s_origin_service",
        long = "k8s-origin-service",
        env = "PROXY_K8S_ORIGIN_SERVICE"
    )]
    pub origin_service: Option<String>,
    /// Namespace of that Service. Default: the proxy pod's own (the service account's
    /// namespace), or the KUBECONFIG context's.
    #[arg(
        id = "k8s_namespace",
        long = "k8s-namespace",
        env = "PROXY_K8S_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// With discovery on: refuse registrations (403) unless they come from an endpoint of
    /// the Service and announce that same address as `ip`, so nobody else can register an
    /// origin and take streams. Leave off where heartbeats reach the proxy through source NAT
    /// or a service mesh that hides the origin's address.
    #[arg(id = "register_require_discovered", long = "register-require-discovered", env = "PROXY_REGISTER_REQUIRE_DISCOVERED", default_value = "off", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub require_discovered: bool,
}

/// Bounds of the SRT relay.
#[derive(Debug, Clone, clap::Args)]
pub struct SrtLimits {
    /// Most SRT sessions relayed at once; callers beyond it are refused (SRT reject 1402).
    #[arg(
        id = "srt_max_sessions",
        long = "srt-max-sessions",
        env = "PROXY_SRT_MAX_SESSIONS",
        default_value_t = 1000
    )]
    pub max_sessions: usize,
    /// Most SRT sessions from one client IP address at once (0: no limit); more are
    /// refused (SRT reject 1402), so one host cannot take every session slot.
    #[arg(
        id = "srt_max_sessions_per_client",
        long = "srt-max-sessions-per-client",
        env = "PROXY_SRT_MAX_SESSIONS_PER_CLIENT",
        default_value_t = 100
    )]
    pub max_sessions_per_client: usize,
    /// An SRT session that hears nothing from its client or its origin for this long is
    /// closed (both sides send keepalives every second while connected).
    #[arg(id = "srt_idle_timeout", long = "srt-idle-timeout", env = "PROXY_SRT_IDLE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Time to pick the origin and complete the handshake with it; keep it under the
    /// callers' connect timeout (libsrt: 3s).
    #[arg(id = "srt_origin_timeout", long = "srt-origin-timeout", env = "PROXY_SRT_ORIGIN_TIMEOUT", default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub origin_timeout: Duration,
    /// Datagrams from a client waiting for their session task; more are dropped (SRT
    /// retransmits them). Bounds memory: sessions x queue x 1.5 KB at worst.
    #[arg(
        id = "srt_session_queue",
        long = "srt-session-queue",
        env = "PROXY_SRT_SESSION_QUEUE",
        default_value_t = 128
    )]
    pub session_queue: usize,
}

impl Default for SrtLimits {
    fn default() -> Self {
        Self {
            max_sessions: 1000,
            max_sessions_per_client: 100,
            idle_timeout: Duration::from_secs(10),
            origin_timeout: Duration::from_millis(2500),
            session_queue: 128,
        }
    }
}

/// WebRTC signalling and media relay.
#[derive(Debug, Clone, clap::Args)]
pub struct WebRtcConfig {
    /// Public address written into every ICE candidate of an answer (an IP or a host name,
    /// no port: the port is PROXY_WEBRTC_SERVER's). Unset: the address the client reached
    /// the HTTP API on. Set it behind NAT or a load balancer.
    #[arg(long = "webrtc-candidate", env = "PROXY_WEBRTC_CANDIDATE", value_parser = parse_candidate_host)]
    pub candidate: Option<String>,
    /// A WebRTC session that hears nothing from its client or its origin for this long is
    /// closed and forgotten (ICE consent checks arrive every few seconds while connected).
    #[arg(id = "webrtc_idle_timeout", long = "webrtc-idle-timeout", env = "PROXY_WEBRTC_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// How long an answered session waits for the client's first STUN request; the
    /// stream stays owned meanwhile.
    #[arg(id = "webrtc_setup_timeout", long = "webrtc-setup-timeout", env = "PROXY_WEBRTC_SETUP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub setup_timeout: Duration,
    /// Time allowed for the origin's API to answer an offer, DELETE or PATCH.
    #[arg(id = "webrtc_origin_timeout", long = "webrtc-origin-timeout", env = "PROXY_WEBRTC_ORIGIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub origin_timeout: Duration,
    /// Most WebRTC sessions relayed at once; binding requests of more are refused.
    #[arg(
        id = "webrtc_max_sessions",
        long = "webrtc-max-sessions",
        env = "PROXY_WEBRTC_MAX_SESSIONS",
        default_value_t = 1000
    )]
    pub max_sessions: usize,
    /// Datagrams from a client waiting for their session task; more are dropped. Bounds
    /// memory: sessions x queue x 1.5 KB at worst.
    #[arg(
        id = "webrtc_session_queue",
        long = "webrtc-session-queue",
        env = "PROXY_WEBRTC_SESSION_QUEUE",
        default_value_t = 256
    )]
    pub session_queue: usize,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            candidate: None,
            idle_timeout: Duration::from_secs(30),
            setup_timeout: Duration::from_secs(30),
            origin_timeout: Duration::from_secs(10),
            max_sessions: 1000,
            session_queue: 256,
        }
    }
}

/// Upstream uses `on`/`off`; accept the usual boolean spellings too.
pub fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" | "" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

/// Limits of the HTTP listeners: streaming, system API (and the WebRTC API).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Every HTTP request head must arrive within this, and idle keep-alive connections close
    /// after it (slowloris).
    #[arg(id = "http_header_timeout", long = "http-header-timeout", env = "PROXY_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// A streaming connection that takes no bytes for this long while the proxy has some to
    /// send (the player stopped reading) is closed, freeing its origin request or its place in
    /// a shared one.
    #[arg(id = "http_write_timeout", long = "http-write-timeout", env = "PROXY_HTTP_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// Connections the HTTP streaming listener serves at once; more are closed on accept.
    #[arg(
        id = "http_max_connections",
        long = "http-max-connections",
        env = "PROXY_HTTP_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_connections: usize,
    /// Connections the system API serves at once; more are closed on accept.
    #[arg(
        id = "system_max_connections",
        long = "system-max-connections",
        env = "PROXY_SYSTEM_MAX_CONNECTIONS",
        default_value_t = 1_000
    )]
    pub system_max_connections: usize,
    /// HTTP-FLV players of one stream (same path and query) on this replica share one origin
    /// request; a new player starts at the last keyframe at once. Off: one origin request per
    /// player, as for HTTP-TS.
    #[arg(id = "http_fanout", long = "http-fanout", env = "PROXY_HTTP_FANOUT", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub fanout: bool,
    /// FLV tags a fan-out player may fall behind the stream; a player further behind skips to
    /// the next keyframe, and one that falls behind three times is closed.
    #[arg(
        id = "http_fanout_backlog",
        long = "http-fanout-backlog",
        env = "PROXY_HTTP_FANOUT_BACKLOG",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u16).range(16..)
    )]
    pub fanout_backlog: u16,
}

/// Limits of the RTMP listener.
#[derive(Debug, Clone, clap::Args)]
pub struct RtmpConfig {
    /// RTMP handshake, commands and the origin's setup must complete within this.
    #[arg(long = "rtmp-handshake-timeout", env = "PROXY_RTMP_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// An RTMP session with no bytes in either direction for this long is closed.
    #[arg(id = "rtmp_idle_timeout", long = "rtmp-idle-timeout", env = "PROXY_RTMP_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Largest RTMP message accepted, in bytes (the protocol's own limit is 16777215).
    #[arg(long = "rtmp-max-message-size", env = "PROXY_RTMP_MAX_MESSAGE_SIZE", default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=0xFF_FFFF))]
    pub max_message_size: u32,
    /// RTMP connections served at once; more are closed on accept.
    #[arg(
        long = "rtmp-max-connections",
        env = "PROXY_RTMP_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_connections: usize,
}

/// `PROXY_WEBRTC_CANDIDATE`: an IP clients can reach (not a wildcard, not multicast) or a
/// host name, without a port.
pub fn parse_candidate_host(value: &str) -> Result<String, String> {
    let value = value.trim();
    if let Ok(ip) = value.trim_matches(['[', ']']).parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "{ip} is not an address clients can send media to; give the proxy's public IP or host name"
            ));
        }
        return Ok(ip.to_string());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.len() <= 253 && value.split('.').all(valid_label) {
        return Ok(value.to_ascii_lowercase());
    }
    Err(format!(
        "expected an IP address or a host name without port, got {value:?}"
    ))
}

/// A listen address given as a port (`1935`, all interfaces), `:1935` (Go style) or a full
/// socket address (`127.0.0.1:1935`, `[::]:1935`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let port_only = value.strip_prefix(':').unwrap_or(value);
        if let Ok(port) = port_only.parse::<u16>() {
            return Ok(ListenAddr(SocketAddr::from(([0, 0, 0, 0], port))));
        }
        value.parse::<SocketAddr>().map(ListenAddr).map_err(|_| {
            format!(
                "expected a port (1935) or an address (127.0.0.1:1935, [::]:1935), got {value:?}"
            )
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_hosts() {
        assert_eq!(parse_candidate_host("203.0.113.9").unwrap(), "203.0.113.9");
        assert_eq!(
            parse_candidate_host("[2001:db8::1]").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_candidate_host("Media.Example.com").unwrap(),
            "media.example.com"
        );
        assert!(parse_candidate_host("0.0.0.0").is_err());
        assert!(parse_candidate_host("::").is_err());
        assert!(parse_candidate_host("1.2.3.4:8000").is_err());
        assert!(parse_candidate_host("bad_host").is_err());
        assert!(parse_candidate_host("").is_err());
    }

    #[test]
    fn listen_addr_forms() {
        assert_eq!(
            "1935".parse::<ListenAddr>().unwrap().to_string(),
            "0.0.0.0:1935"
        );
        assert_eq!(
            ":8080".parse::<ListenAddr>().unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            "127.0.0.1:1".parse::<ListenAddr>().unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(
            "[::]:1935".parse::<ListenAddr>().unwrap().to_string(),
            "[::]:1935"
        );
        assert!("nonsense".parse::<ListenAddr>().is_err());
        assert!("70000".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn defaults_match_the_product_reference() {
        let config = Config::try_parse_from(["originstack-proxy"]).unwrap();
        assert_eq!(config.rtmp_server.0.port(), 1935);
        assert_eq!(config.http_server.0.port(), 8080);
        assert_eq!(config.http_api.0.port(), 1985);
        assert_eq!(config.webrtc_server.0.port(), 8000);
        assert_eq!(config.srt_server.0.port(), 10080);
        assert_eq!(config.system_api.0.port(), 12025);
        assert_eq!(config.load_balancer_type, LoadBalancerType::Memory);
        assert_eq!(config.grace_quit_timeout, Duration::from_secs(20));
        assert_eq!(config.force_quit_timeout, Duration::from_secs(30));
        assert!(!config.default_backend.enabled);
        assert!(!config.discovery.enabled && !config.discovery.require_discovered);
        let srt = SrtLimits::default();
        assert_eq!(config.srt.max_sessions, srt.max_sessions);
        assert_eq!(
            config.srt.max_sessions_per_client,
            srt.max_sessions_per_client
        );
        assert_eq!(config.srt.idle_timeout, srt.idle_timeout);
        assert_eq!(config.srt.origin_timeout, srt.origin_timeout);
        assert_eq!(config.srt.session_queue, srt.session_queue);
        let webrtc = WebRtcConfig::default();
        assert_eq!(config.webrtc.candidate, webrtc.candidate);
        assert_eq!(config.webrtc.idle_timeout, webrtc.idle_timeout);
        assert_eq!(config.webrtc.setup_timeout, webrtc.setup_timeout);
        assert_eq!(config.webrtc.origin_timeout, webrtc.origin_timeout);
        assert_eq!(config.webrtc.max_sessions, webrtc.max_sessions);
        assert_eq!(config.webrtc.session_queue, webrtc.session_queue);
        let (rtmp, defaults) = (
            crate::rtmp::RtmpLimits::from_config(&config.rtmp),
            crate::rtmp::RtmpLimits::default(),
        );
        assert_eq!(
            (rtmp.handshake_timeout, rtmp.idle_timeout),
            (defaults.handshake_timeout, defaults.idle_timeout)
        );
        assert_eq!(
            (rtmp.max_message_size, rtmp.max_connections),
            (defaults.max_message_size, defaults.max_connections)
        );
    }

    #[test]
    fn redis_url_from_parts() {
        let mut redis = RedisConfig {
            host: "10.1.2.3".into(),
            port: 6380,
            password: "p@ss:w/rd".into(),
            db: 2,
            url: None,
            cluster: false,
            key_prefix: "originstack".into(),
            timeout: Duration::from_secs(1),
            ca_file: None,
        };
        assert_eq!(
            redis.connection_url(),
            "redis://:p%40ss%3Aw%2Frd@10.1.2.3:6380/2"
        );
        redis.url = Some("rediss://example:6379".into());
        assert_eq!(redis.connection_url(), "rediss://example:6379");
    }

    #[test]
    fn discovery_flags_take_on_off() {
        let config = Config::try_parse_from([
            "originstack-proxy",
            "--k8s-discovery",
            "on",
            "--k8s-origin-service",
            "live-origin",
            "--register-require-discovered",
            "on",
        ])
        .unwrap();
        assert!(config.discovery.enabled && config.discovery.require_discovered);
        assert_eq!(
            config.discovery.origin_service.as_deref(),
            Some("live-origin")
        );
        assert_eq!(config.discovery.namespace, None);
    }

    #[test]
    fn on_off() {
        assert_eq!(parse_on_off("on"), Ok(true));
        assert_eq!(parse_on_off("OFF"), Ok(false));
        assert!(parse_on_off("maybe").is_err());
    }
}
