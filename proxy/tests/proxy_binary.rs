//! End to end: the real proxy binary, configured only through PROXY_* variables, in memory
//! mode (no Redis needed) and in Redis mode against a real redis-server. Origins register with
//! heartbeats exactly as SRS sends them.

use std::time::Duration;

use originstack_e2e::{
    ProxyProcess, eventually, http_request,
    redis::RedisServer,
    srs::{self, SrsHeartbeat},
};

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

/// An origin on loopback announcing RTMP 19350 and HTTP 8080, as SRS does.
fn heartbeat(server: &str) -> SrsHeartbeat {
    SrsHeartbeat::local(server, 19350, Some(8080))
}

fn get(proxy: &ProxyProcess, path: &str) -> (u16, String) {
    http_request(proxy.system, "GET", path, &[], "").unwrap()
}

#[test]
fn memory_mode_registers_and_reports() {
    let mut proxy = ProxyProcess::start(
        PROXY,
        &[
            ("PROXY_REGISTER_TOKEN", "t0ken".into()),
            ("PROXY_DEFAULT_BACKEND_ENABLED", "on".into()),
            ("PROXY_DEFAULT_BACKEND_IP", "127.0.0.1".into()),
            ("PROXY_DEFAULT_BACKEND_RTMP", "19351".into()),
        ],
    )
    .unwrap();
    let (status, body) = get(&proxy, "/api/v1/versions");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"code\":0"), "{body}");

    // A heartbeat URL without the token is refused; with it (in the path, where SRS keeps it)
    // the origin registers.
    let (status, body) = heartbeat("o1")
        .post(&srs::register_url(proxy.system, None))
        .unwrap();
    assert_eq!(status, 401, "{body}");
    heartbeat("o1")
        .register(&srs::register_url(proxy.system, Some("t0ken")))
        .unwrap();

    // With a register token and no read token of its own, the listings want the register
    // token as a bearer token (a reader, not SRS).
    let reader = [("Authorization", "Bearer t0ken")];
    let (status, origins) =
        http_request(proxy.system, "GET", "/api/v1/origins", &reader, "").unwrap();
    assert_eq!(status, 200, "{origins}");
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

    let (status, metrics) = get(&proxy, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("originstack_proxy_origins_alive 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("originstack_proxy_registrations_total{result=\"unauthorized\"} 1"),
        "{metrics}"
    );
    assert_eq!(proxy.readyz().unwrap(), 200);

    proxy.process.signal("TERM").unwrap();
    let status = proxy
        .process
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("proxy exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn redis_mode_shares_origins_between_two_binaries() {
    let redis = RedisServer::start().unwrap();
    // Host and port variables here; the other Redis tests give a URL.
    let env = [
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        ("PROXY_REDIS_HOST", "127.0.0.1".to_owned()),
        ("PROXY_REDIS_PORT", redis.port().to_string()),
    ];
    let first = ProxyProcess::start(PROXY, &env).unwrap();
    let second = ProxyProcess::start(PROXY, &env).unwrap();
    heartbeat("shared")
        .register(&srs::register_url(first.system, None))
        .unwrap();
    let (_, origins) = get(&second, "/api/v1/origins");
    assert!(origins.contains("\"server\":\"shared\""), "{origins}");
    let metrics = second.metrics().unwrap();
    assert!(
        metrics.contains("originstack_proxy_origins_alive 1"),
        "{metrics}"
    );
}

#[test]
fn redis_mode_starts_without_redis_and_becomes_ready_when_it_appears() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let proxy = ProxyProcess::start_redis_replica(PROXY, &redis, &[]).unwrap();
    assert_eq!(get(&proxy, "/api/v1/versions").0, 200);
    let (status, body) = get(&proxy, "/readyz");
    assert_eq!(status, 503, "{body}");

    redis.start_again().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || proxy.readyz().ok() == Some(200)),
        "not ready after Redis appeared"
    );
    heartbeat("late")
        .register(&srs::register_url(proxy.system, None))
        .unwrap();
}

/// Secrets given to the proxy never reach its logs (at trace level, through failing Redis
/// calls and refused and accepted registrations) nor its `--help`.
#[test]
fn secrets_are_never_logged() {
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
    let proxy = ProxyProcess::start(PROXY, &envs).unwrap();
    // An SRS heartbeat carries the token in the URL path.
    heartbeat("o")
        .post(&srs::register_url(proxy.system, Some(TOKEN)))
        .unwrap();
    // Other clients may give it as a bearer header or in the query, which SRS never sends:
    // these requests are written raw.
    let bearer = format!("Bearer {TOKEN}");
    let query = format!("/api/v1/srs/register?token={TOKEN}");
    for (path, headers) in [
        (
            "/api/v1/srs/register",
            vec![("Authorization", "Bearer wrong")],
        ),
        (
            "/api/v1/srs/register",
            vec![("Authorization", bearer.as_str())],
        ),
        (query.as_str(), vec![]),
    ] {
        let body = heartbeat("o").body().to_string();
        http_request(proxy.system, "POST", path, &headers, body).unwrap();
    }
    proxy.readyz().unwrap();
    proxy.metrics().unwrap();
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
    let help = ProxyProcess::run(PROXY, &["--help"], &envs).unwrap();
    assert!(help.status.success(), "{help:?}");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("PROXY_REGISTER_TOKEN"), "{help}");
    for secret in [TOKEN, PASSWORD] {
        assert!(!help.contains(secret), "{secret} shown by --help");
    }
}
