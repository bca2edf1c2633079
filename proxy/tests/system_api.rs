//! The system API served on a real socket: registration (good and hostile input), admin
//! views, metrics and readiness, in memory mode and with two replicas sharing a real Redis.

mod support;

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use originstack_e2e::redis::RedisServer;
use originstack_proxy::{
    Proxy, api,
    config::Config,
    lifecycle::Lifecycle,
    origins::{StreamKey, StreamLease},
};
use serde_json::Value;
use support::http;

const HEARTBEAT: &str = r#"{"device_id":"origin1","ip":"10.0.0.7","server":"vid-o788x4d","service":"2e0q10z8",
  "pid":"23798","rtmp":["19351"],"http":["8081"],"api":["19851"],"srt":["udp://0.0.0.0:10081"],
  "rtc":["udp://0.0.0.0:8001"],"summaries":{"data":{"ok":true,"self":{"cpu_percent":3.5}}}}"#;

/// Starts the system API of a proxy configured by `args` (flags as on the command line).
async fn start(args: &[&str]) -> (SocketAddr, Proxy) {
    let config =
        Config::try_parse_from(std::iter::once("originstack-proxy").chain(args.iter().copied()))
            .unwrap();
    let proxy = Proxy::new(
        config,
        Lifecycle::new(Duration::from_secs(1), Duration::from_secs(2)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(listener, proxy.system_api()));
    (addr, proxy)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

async fn origin_count(addr: SocketAddr, headers: &[(&str, &str)]) -> usize {
    let (status, body) = http(addr, "GET", "/api/v1/origins", headers, b"").await;
    assert_eq!(status, 200, "{body}");
    json(&body)["data"].as_array().unwrap().len()
}

async fn register(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, headers, body).await;
    (status, json(&text))
}

#[tokio::test]
async fn srs_heartbeat_registers_and_shows_up_everywhere() {
    let (addr, proxy) = start(&[]).await;
    let (status, body) = register(addr, "/api/v1/srs/register", &[], HEARTBEAT.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], 0);
    assert_eq!(body["pid"], std::process::id().to_string());

    let (_, origins) = http(addr, "GET", "/api/v1/origins", &[], b"").await;
    let origin = &json(&origins)["data"][0];
    assert_eq!(origin["server"], "vid-o788x4d");
    assert_eq!(origin["alive"], true);
    assert_eq!(origin["endpoints"]["rtmp"][0], "10.0.0.7:19351");
    assert_eq!(origin["endpoints"]["srt"][0], "10.0.0.7:10081");
    assert_eq!(origin["load"], 3.5);

    let lease = proxy
        .origins
        .lease(&StreamKey::new(None, "live", "cam").unwrap())
        .await
        .unwrap();
    let (_, streams) = http(addr, "GET", "/api/v1/streams", &[], b"").await;
    let streams = json(&streams);
    assert_eq!(streams["data"][0]["stream"], "__defaultVhost__/live/cam");
    assert_eq!(streams["data"][0]["origin"], "vid-o788x4d");
    drop(lease);

    let (status, metrics) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    for line in [
        "originstack_proxy_origins_alive 1",
        "originstack_proxy_streams_owned{origin=\"vid-o788x4d\"} 1",
        "originstack_proxy_registrations_total{result=\"new\"} 1",
        "originstack_proxy_picks_total{result=\"new\"} 1",
        "originstack_proxy_pick_duration_seconds_count 1",
        "originstack_proxy_backend_up 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let (status, _) = http(addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(status, 200);
    proxy.lifecycle.draining().cancel();
    let (status, body) = http(addr, "GET", "/readyz", &[], b"").await;
    assert_eq!((status, body.as_str()), (503, "draining"));
}

#[tokio::test]
async fn bad_registrations_get_4xx_json_and_store_nothing() {
    let (addr, proxy) = start(&["--register-max-body", "4096"]).await;
    let valid: Value = json(HEARTBEAT);
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body.to_string()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"ip\": ".into(),
            400,
            "not a JSON heartbeat",
        ),
        ("empty body", String::new(), 400, "not a JSON heartbeat"),
        ("an array", "[1,2]".into(), 400, "not a JSON heartbeat"),
        (
            "missing server",
            without("server"),
            400,
            "missing field `server`",
        ),
        ("missing rtmp", without("rtmp"), 400, "missing field `rtmp`"),
        (
            "no rtmp endpoint",
            with("rtmp", serde_json::json!([])),
            400,
            "`rtmp`",
        ),
        (
            "port out of range",
            with("rtmp", serde_json::json!(["99999"])),
            400,
            "endpoint",
        ),
        (
            "port zero",
            with("http", serde_json::json!(["0"])),
            400,
            "endpoint",
        ),
        (
            "host name endpoint",
            with("srt", serde_json::json!(["udp://evil.example:1"])),
            400,
            "endpoint",
        ),
        (
            "too many endpoints",
            with("api", serde_json::json!(vec!["1985"; 17])),
            400,
            "more than 16",
        ),
        ("unspecified ip", with("ip", "0.0.0.0".into()), 400, "`ip`"),
        (
            "ip not an address",
            with("ip", "localhost".into()),
            400,
            "`ip`",
        ),
        (
            "server too long",
            with("server", "x".repeat(500).into()),
            400,
            "longer than",
        ),
        (
            "control character",
            with("server", "a\nb".into()),
            400,
            "control character",
        ),
        (
            "wrong type",
            with("pid", serde_json::json!({"x": 1})),
            400,
            "not a JSON heartbeat",
        ),
        (
            "summaries not an object",
            with("summaries", "busy".into()),
            400,
            "summaries",
        ),
        (
            "oversized body",
            format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000)),
            413,
            "larger than 4096",
        ),
    ];
    for (name, body, expected_status, expected_message) in &cases {
        let (status, answer) = register(addr, "/api/v1/srs/register", &[], body.as_bytes()).await;
        assert_eq!(status, *expected_status, "{name}: {answer}");
        assert_eq!(answer["code"], *expected_status, "{name}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected_message),
            "{name}: {message:?} lacks {expected_message:?}"
        );
        assert!(
            answer.get("pid").is_none(),
            "{name}: success field in an error answer {answer}"
        );
    }
    assert_eq!(origin_count(addr, &[]).await, 0, "nothing stored");
    let metrics = proxy.metrics.encode();
    assert!(
        metrics.contains("originstack_proxy_registrations_total{result=\"bad_request\"} 16"),
        "{metrics}"
    );
    assert!(
        metrics.contains("originstack_proxy_registrations_total{result=\"too_large\"} 1"),
        "{metrics}"
    );

    let (status, answer) = http(addr, "GET", "/no/such/thing", &[], b"").await;
    assert_eq!((status, json(&answer)["code"].as_u64()), (404, Some(404)));
}

#[tokio::test]
async fn register_token_is_required_when_configured() {
    let (addr, _proxy) = start(&["--register-token", "s3cret"]).await;
    let body = HEARTBEAT.as_bytes();
    for (path, headers) in [
        ("/api/v1/srs/register", vec![]),
        ("/api/v1/srs/register?token=wrong", vec![]),
        ("/api/v1/srs/register?token=s3cre", vec![]),
        ("/api/v1/srs/register/wrong", vec![]),
        ("/api/v1/srs/register/s3cre", vec![]),
        ("/api/v1/srs/register/s3cret2", vec![]),
        ("/api/v1/srs/register/", vec![]),
        (
            "/api/v1/srs/register",
            vec![("Authorization", "Bearer wrong")],
        ),
        (
            "/api/v1/srs/register",
            vec![("Authorization", "Basic czNjcmV0")],
        ),
    ] {
        let (status, answer) = register(addr, path, &headers, body).await;
        assert!(
            (status, answer["code"].as_u64()) == (401, Some(401))
                || (path.ends_with('/') && status == 404),
            "{path} {headers:?}: {status} {answer}"
        );
        assert!(
            !answer.to_string().contains("s3cret"),
            "the error never echoes the token: {answer}"
        );
    }
    let reader = [("Authorization", "Bearer s3cret")];
    assert_eq!(
        origin_count(addr, &reader).await,
        0,
        "nothing stored without the token"
    );
    // The path form is what a stock SRS heartbeat URL keeps (SRS drops the query).
    let (status, _) = register(addr, "/api/v1/srs/register/s3cret", &[], body).await;
    assert_eq!(status, 200);
    let (status, _) = register(addr, "/api/v1/srs/register?token=s3cret", &[], body).await;
    assert_eq!(status, 200);
    let (status, _) = register(addr, "/api/v1/srs/register", &reader, body).await;
    assert_eq!(status, 200);
    assert_eq!(origin_count(addr, &reader).await, 1);
    let (_, metrics) = http(addr, "GET", "/metrics", &[], b"").await;
    assert!(!metrics.contains("s3cret"), "{metrics}");
}

/// A proxy with one registered origin and one owned stream, guarded as `args` say.
async fn start_with_a_stream(args: &[&str]) -> (SocketAddr, Proxy, StreamLease) {
    let (addr, proxy) = start(args).await;
    let (status, answer) = register(
        addr,
        "/api/v1/srs/register/reg-t0ken",
        &[],
        HEARTBEAT.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let lease = proxy
        .origins
        .lease(&StreamKey::new(None, "live", "secret-stream-key").unwrap())
        .await
        .unwrap();
    (addr, proxy, lease)
}

#[tokio::test]
async fn listings_need_the_read_token() {
    let (addr, _proxy, _lease) =
        start_with_a_stream(&["--register-token", "reg-t0ken", "--api-token", "read-t0ken"]).await;
    for path in ["/api/v1/origins", "/api/v1/streams"] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong")],
            vec![("Authorization", "Bearer read-t0ke")],
            vec![("Authorization", "Bearer reg-t0ken")],
            vec![("Authorization", "read-t0ken")],
        ] {
            let (status, text) = http(addr, "GET", path, &headers, b"").await;
            assert_eq!(status, 401, "{path} {headers:?}: {text}");
            let answer = json(&text);
            assert_eq!(answer["code"], 401);
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("PROXY_API_TOKEN"),
                "{text}"
            );
            for leak in ["secret-stream-key", "vid-o788x4d", "10.0.0.7", "t0ken"] {
                assert!(!text.contains(leak), "{path}: {leak} leaked in {text}");
            }
        }
    }
    let reader = [("Authorization", "Bearer read-t0ken")];
    assert_eq!(origin_count(addr, &reader).await, 1);
    let (status, streams) = http(addr, "GET", "/api/v1/streams", &reader, b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&streams)["data"][0]["stream"],
        "__defaultVhost__/live/secret-stream-key"
    );
    // The read token cannot register origins.
    let (status, _) = register(
        addr,
        "/api/v1/srs/register/read-t0ken",
        &[],
        HEARTBEAT.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    // Probes, metrics and versions stay open and carry no stream name.
    for path in ["/metrics", "/healthz", "/readyz", "/api/v1/versions"] {
        let (status, text) = http(addr, "GET", path, &[], b"").await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(!text.contains("secret-stream-key"), "{path}: {text}");
        assert!(!text.contains("t0ken"), "{path}: {text}");
    }
}

#[tokio::test]
async fn the_register_token_guards_listings_when_no_read_token_is_set() {
    let (addr, _proxy, _lease) = start_with_a_stream(&["--register-token", "reg-t0ken"]).await;
    let (status, text) = http(addr, "GET", "/api/v1/streams", &[], b"").await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("PROXY_REGISTER_TOKEN"), "{text}");
    assert!(!text.contains("secret-stream-key"), "{text}");
    let (status, text) = http(
        addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", "Bearer reg-t0ken")],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("secret-stream-key"), "{text}");
}

#[tokio::test]
async fn without_tokens_listings_stay_open_and_any_path_token_registers() {
    let (addr, _proxy, _lease) = start_with_a_stream(&[]).await;
    let (status, text) = http(addr, "GET", "/api/v1/streams", &[], b"").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("secret-stream-key"), "{text}");
}

#[tokio::test]
async fn redis_replicas_share_the_registry_and_report_outages() {
    let mut redis = RedisServer::start().unwrap();
    let url = redis.url();
    let args = ["--load-balancer-type", "redis", "--redis-url", url.as_str()];
    let (first, _p1) = start(&args).await;
    let (second, _p2) = start(&args).await;

    let (status, _) = register(first, "/api/v1/srs/register", &[], HEARTBEAT.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(
        origin_count(second, &[]).await,
        1,
        "a heartbeat to one replica is known to every replica"
    );
    assert_eq!(http(second, "GET", "/readyz", &[], b"").await.0, 200);

    redis.stop();
    let (status, body) = http(second, "GET", "/readyz", &[], b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("unreachable") || body.contains("did not answer"),
        "{body}"
    );
    let (status, answer) = register(first, "/api/v1/srs/register", &[], HEARTBEAT.as_bytes()).await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (503, Some(503)),
        "{answer}"
    );
    let (_, metrics) = http(first, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("originstack_proxy_backend_up 0"),
        "{metrics}"
    );

    redis.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http(second, "GET", "/readyz", &[], b"").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready again after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Discovery on, before its first list (the watch is not started here): the proxy is not
/// ready and refuses heartbeats with a retryable 503, so nothing registers twice.
#[tokio::test]
async fn with_discovery_on_nothing_registers_before_the_first_list() {
    let (addr, _proxy) = start(&[
        "--k8s-discovery",
        "on",
        "--k8s-origin-service",
        "live-origin",
        "--k8s-namespace",
        "live",
    ])
    .await;
    let (status, body) = register(addr, "/api/v1/srs/register", &[], HEARTBEAT.as_bytes()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 503);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("has not listed the EndpointSlices of Service live/live-origin yet"),
        "{body}"
    );
    assert_eq!(origin_count(addr, &[]).await, 0);
    let (status, text) = http(addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("live/live-origin"), "{text}");
    let (_, metrics) = http(addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics
            .contains("originstack_proxy_registrations_total{result=\"discovery_not_synced\"} 1"),
        "{metrics}"
    );
}
