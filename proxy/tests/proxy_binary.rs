//! End to end: the real proxy binary, configured only through PROXY_* variables, in memory
//! mode (no Redis needed) and in Redis mode against a real redis-server.

mod support;

use std::{net::SocketAddr, process::Command, time::Duration};

use originstack_e2e::{ProxyProcess, redis::RedisServer};
use support::http;

fn spawn_proxy(envs: &[(&str, String)]) -> (ProxyProcess, SocketAddr) {
    let proxy = ProxyProcess::start(env!("CARGO_BIN_EXE_originstack-proxy"), envs).unwrap();
    let system = proxy.system;
    (proxy, system)
}

fn heartbeat(server: &str) -> String {
    format!(
        r#"{{"ip":"127.0.0.1","server":"{server}","service":"svc","pid":"42","rtmp":["19350"],"http":["8080"]}}"#
    )
}

#[tokio::test]
async fn memory_mode_registers_and_reports() {
    let (mut proxy, addr) = spawn_proxy(&[
        ("PROXY_REGISTER_TOKEN", "t0ken".into()),
        ("PROXY_DEFAULT_BACKEND_ENABLED", "on".into()),
        ("PROXY_DEFAULT_BACKEND_IP", "127.0.0.1".into()),
        ("PROXY_DEFAULT_BACKEND_RTMP", "19351".into()),
    ]);
    let (status, body) = http(addr, "GET", "/api/v1/versions", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"code\":0"), "{body}");

    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/srs/register",
        &[],
        heartbeat("o1").as_bytes(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/srs/register?token=t0ken",
        &[],
        heartbeat("o1").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (_, origins) = http(addr, "GET", "/api/v1/origins", &[], b"").await;
    let origins: serde_json::Value = serde_json::from_str(&origins).unwrap();
    let servers: Vec<&str> = origins["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["default-backend", "o1"]);
    assert_eq!(
        origins["data"][0]["endpoints"]["rtmp"][0],
        "127.0.0.1:19351"
    );

    let (status, metrics) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("originstack_proxy_origins_alive 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("originstack_proxy_registrations_total{result=\"unauthorized\"} 1"),
        "{metrics}"
    );
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.0, 200);

    proxy.process.signal("TERM").unwrap();
    let status = proxy
        .process
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("proxy exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn redis_mode_shares_origins_between_two_binaries() {
    let redis = RedisServer::start().unwrap();
    let env = [
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        ("PROXY_REDIS_HOST", "127.0.0.1".to_owned()),
        ("PROXY_REDIS_PORT", redis.port().to_string()),
    ];
    let (_first, first) = spawn_proxy(&env);
    let (_second, second) = spawn_proxy(&env);
    let (status, body) = http(
        first,
        "POST",
        "/api/v1/srs/register",
        &[],
        heartbeat("shared").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, origins) = http(second, "GET", "/api/v1/origins", &[], b"").await;
    assert!(origins.contains("\"server\":\"shared\""), "{origins}");
    let (_, metrics) = http(second, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("originstack_proxy_origins_alive 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn redis_mode_starts_without_redis_and_becomes_ready_when_it_appears() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let (_proxy, addr) = spawn_proxy(&[
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        ("PROXY_REDIS_URL", redis.url()),
    ]);
    assert_eq!(http(addr, "GET", "/api/v1/versions", &[], b"").await.0, 200);
    let (status, body) = http(addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(status, 503, "{body}");

    redis.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http(addr, "GET", "/readyz", &[], b"").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after Redis appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/srs/register",
        &[],
        heartbeat("late").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Secrets given to the proxy never reach its logs (at trace level, through failing Redis
/// calls and refused and accepted registrations) nor its `--help`.
#[tokio::test]
async fn secrets_are_never_logged() {
    const TOKEN: &str = "tok-7d1e9c0b5a";
    const PASSWORD: &str = "pw-4f3a2b1c0d";
    let closed = originstack_e2e::free_port();
    let envs = [
        ("PROXY_REGISTER_TOKEN", TOKEN.to_owned()),
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        (
            "PROXY_REDIS_URL",
            format!("redis://:{PASSWORD}@127.0.0.1:{closed}/0"),
        ),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let (proxy, addr) = spawn_proxy(&envs);
    let bearer = format!("Bearer {TOKEN}");
    for (path, headers) in [
        (
            "/api/v1/srs/register",
            vec![("Authorization", "Bearer wrong")],
        ),
        (
            "/api/v1/srs/register",
            vec![("Authorization", bearer.as_str())],
        ),
        (
            &format!("/api/v1/srs/register?token={TOKEN}") as &str,
            vec![],
        ),
    ] {
        http(addr, "POST", path, &headers, heartbeat("o").as_bytes()).await;
    }
    http(addr, "GET", "/readyz", &[], b"").await;
    http(addr, "GET", "/metrics", &[], b"").await;
    let log = proxy.log();
    assert!(
        log.contains("cannot store a heartbeat"),
        "the failing Redis calls are logged:\n{log}"
    );
    for secret in [TOKEN, PASSWORD] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_originstack-proxy"))
        .arg("--help")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("PROXY_REGISTER_TOKEN"), "{help}");
    for secret in [TOKEN, PASSWORD] {
        assert!(!help.contains(secret), "{secret} shown by --help");
    }
}
