//! Shared by the proxy's integration tests: backends under test, origins, a raw HTTP client
//! for a server in the test's runtime, leases that count themselves for test resolvers, logs
//! of a listener in the test's runtime.
#![allow(dead_code)] // each test file uses a different part

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use originstack_e2e::{
    redis::{RedisCluster, RedisServer},
    srs::SrsHeartbeat,
};
use originstack_proxy::origins::{
    LoadBalancer, MemoryBalancer, Origin, RedisBalancer, RedisSettings, Timing, parse_heartbeat,
};

/// A backend under test, with the redis-server it talks to (if any) kept alive alongside.
pub struct Backend {
    pub lb: Arc<dyn LoadBalancer>,
    pub timing: Timing,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

pub type MakeBackend = fn(Timing) -> Backend;

pub fn memory_backend(timing: Timing) -> Backend {
    Backend {
        lb: Arc::new(MemoryBalancer::new(timing)),
        timing,
        redis: None,
        cluster: None,
    }
}

pub fn redis_backend(timing: Timing) -> Backend {
    let redis = RedisServer::start().expect("start redis-server");
    let lb = redis_balancer(&redis, timing);
    Backend {
        lb,
        timing,
        redis: Some(redis),
        cluster: None,
    }
}

pub fn redis_tls_backend(timing: Timing) -> Backend {
    let redis = RedisServer::start_tls().expect("start redis-server with TLS");
    let settings = RedisSettings {
        ca_file: Some(redis.ca_file()),
        ..redis_settings(redis.url(), false)
    };
    Backend {
        lb: Arc::new(RedisBalancer::new(&settings, timing).expect("redis settings")),
        timing,
        redis: Some(redis),
        cluster: None,
    }
}

pub fn redis_cluster_backend(timing: Timing) -> Backend {
    let cluster = RedisCluster::start(3).expect("start a Redis Cluster");
    let settings = redis_settings(cluster.urls(), true);
    Backend {
        lb: Arc::new(RedisBalancer::new(&settings, timing).expect("redis settings")),
        timing,
        redis: None,
        cluster: Some(cluster),
    }
}

pub fn redis_settings(url: String, cluster: bool) -> RedisSettings {
    RedisSettings {
        url,
        cluster,
        key_prefix: "test".into(),
        timeout: Duration::from_secs(1),
        ca_file: None,
    }
}

/// Another client of the same redis-server, as a second proxy replica would be.
pub fn redis_balancer(redis: &RedisServer, timing: Timing) -> Arc<dyn LoadBalancer> {
    Arc::new(
        RedisBalancer::new(&redis_settings(redis.url(), false), timing).expect("redis settings"),
    )
}

pub fn timing(origin_ttl_ms: u64, lease_ms: u64) -> Timing {
    Timing {
        origin_ttl: Duration::from_millis(origin_ttl_ms),
        stream_lease: Duration::from_millis(lease_ms),
        forget_after: Duration::from_secs(3600),
    }
}

/// Streams owned per origin, in server order.
pub async fn owned_counts(lb: &Arc<dyn LoadBalancer>) -> Vec<u64> {
    let origins = lb.origins().await.expect("list origins");
    origins.iter().map(|o| o.streams_owned).collect()
}

/// An origin as an SRS heartbeat announces it: on loopback with RTMP, HTTP and SRT ports, the
/// service id of an SRS process with `pid`, and its load figure.
pub fn origin(server: &str, pid: u32, cpu_percent: f64) -> Origin {
    let mut heartbeat = SrsHeartbeat {
        service: format!("svc-{pid}"),
        pid: pid.to_string(),
        ..SrsHeartbeat::local(server, 19350, Some(8080))
    }
    .with_cpu_percent(cpu_percent);
    if let Some(ports) = heartbeat.ports.as_mut() {
        ports.srt = Some(10080);
    }
    parse_heartbeat(heartbeat.body().to_string().as_bytes()).expect("valid heartbeat")
}

/// [`originstack_e2e::http_request`] off the async workers, for a server running in the
/// test's own runtime; panics when nothing answers.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let what = format!("{method} {path} to {addr}");
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        originstack_e2e::http_request(addr, &method, &path, &headers, body)
    })
    .await
    .expect("the request thread")
    .unwrap_or_else(|err| panic!("{what}: {err:#}"))
}

/// A lease or guard a test resolver hands out: counted in its counter while alive, so a test
/// sees every session give back what it took.
pub struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// One more in `count` until dropped.
    pub fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs of the proxy code running in the test's own runtime go to the test's output (shown
/// with --nocapture), at `RUST_LOG` or else `info`.
pub fn log_to_test_output() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
}
