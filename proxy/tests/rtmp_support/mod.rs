//! For the RTMP tests and benchmark: the RTMP listener in this process with a resolver that
//! spreads streams over real origins (nginx-rtmp from `originstack_e2e`), and ffprobe checks.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use originstack_e2e::{
    Expect, NginxRtmpConfig, NginxRtmpOrigin, ProxyProcess, assert_playable, http_request, probe,
    redis::RedisServer,
};
use originstack_proxy::{
    lifecycle::Lifecycle,
    rtmp::{self, Intent, OriginResolver, ResolveError, ResolvedOrigin, RtmpLimits, RtmpStreamKey},
};
use tokio::net::TcpListener;

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
            let rtmp = self.origin_of(key);
            Ok(ResolvedOrigin {
                rtmp,
                server: rtmp.to_string(),
                lease: Box::new(Lease(self.leases.clone())),
            })
        })
    }

    fn report_unreachable<'a>(
        &'a self,
        _key: &'a RtmpStreamKey,
        origin: &'a ResolvedOrigin,
        _error: &'a std::io::Error,
    ) -> BoxFuture<'a, ()> {
        self.dead.lock().unwrap().push(origin.rtmp);
        Box::pin(async {})
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

/// The picture every test publisher sends ([`originstack_e2e::Publisher::looping_sample`]).
pub fn sample() -> Expect {
    Expect::h264_aac(320, 240)
}

/// Plays `url` with ffprobe (off the async workers) until it decodes as the sample does.
pub async fn playable(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        assert_playable(&url, &sample(), Duration::from_secs(30)).map(drop)
    })
    .await?
}

/// One ffprobe attempt at `url`, to see a refusal.
pub async fn probe_once(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || probe(&url, Duration::from_secs(15)).map(drop)).await?
}

/// `n` nginx-rtmp origins without HLS (RTMP-only tests; HLS muxing costs CPU).
pub fn origins(n: usize) -> Vec<NginxRtmpOrigin> {
    (0..n)
        .map(|_| {
            NginxRtmpOrigin::start_with(NginxRtmpConfig {
                hls: false,
                ..Default::default()
            })
            .expect("start nginx-rtmp")
        })
        .collect()
}

/// The proxy binary (`binary`) as a replica on `redis`, with `extra` variables.
pub fn redis_replica(binary: &str, redis: &RedisServer, extra: &[(&str, &str)]) -> ProxyProcess {
    let mut envs = vec![
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        ("PROXY_REDIS_URL", redis.url()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    ProxyProcess::start(binary, &envs).expect("start the proxy")
}

/// stream name → owning origin, as `/api/v1/streams` of `proxy` lists them (empty when the
/// proxy cannot answer).
pub fn owners(proxy: &ProxyProcess) -> HashMap<String, String> {
    let Ok((200, body)) = http_request(proxy.system, "GET", "/api/v1/streams", &[], "") else {
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

/// Which of `origins` carry a published `live/<stream>` right now.
pub fn carriers(origins: &[NginxRtmpOrigin], stream: &str) -> Vec<SocketAddr> {
    origins
        .iter()
        .filter(|o| o.has_stream("live", stream).unwrap_or(false))
        .map(NginxRtmpOrigin::rtmp_addr)
        .collect()
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
