//! Shared by the proxy's integration tests: backends under test, origins, a raw HTTP client.
#![allow(dead_code)] // each test file uses a different part

use std::{net::SocketAddr, sync::Arc, time::Duration};

use originstack_e2e::redis::{RedisCluster, RedisServer};
use originstack_proxy::origins::{
    LoadBalancer, MemoryBalancer, Origin, RedisBalancer, RedisSettings, Timing, parse_heartbeat,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
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

/// An origin as an SRS heartbeat would announce it.
pub fn origin(server: &str, pid: u32, cpu_percent: f64) -> Origin {
    let heartbeat = serde_json::json!({
        "ip": "127.0.0.1", "server": server, "service": format!("svc-{pid}"), "pid": pid.to_string(),
        "rtmp": ["19350"], "http": ["tcp://:8080"], "srt": ["udp://0.0.0.0:10080"],
        "summaries": {"data": {"self": {"cpu_percent": cpu_percent}}},
    });
    parse_heartbeat(heartbeat.to_string().as_bytes()).expect("valid heartbeat")
}

/// One HTTP/1.1 request over a fresh connection; returns status and body. Raw on purpose:
/// tests send malformed and oversized bodies exactly as written.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the system API");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request head");
    // The server may answer (413) and close before reading a large body: ignore write errors.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    originstack_e2e::proxy::parse_response(&response)
}
