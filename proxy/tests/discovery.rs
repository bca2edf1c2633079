//! Kubernetes discovery end to end: a real API server (etcd + kube-apiserver), real origins
//! (nginx-rtmp), ffmpeg publishing and ffprobe playing through the real proxy binary, which
//! authenticates as a ServiceAccount holding only the Role the operator gives the proxy.
//!
//! No controller-manager runs, so the tests write the EndpointSlices the EndpointSlice
//! controller would, with the port names of the operator's origin Service. The API server
//! refuses loopback addresses in EndpointSlices, so the origins listen on this machine's own
//! address, each on its own ports; the controller, too, puts endpoints whose named ports have
//! other numbers into slices of their own. Each test has its own namespace.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::Service,
    discovery::v1::EndpointSlice,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use originstack_e2e::{
    Expect, NginxRtmpConfig, NginxRtmpOrigin, ProxyProcess, Publisher, assert_playable,
    kube::ControlPlane,
    local_address,
    proxy::{metric, parse_response},
    redis::RedisServer,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE: &str = "origin";
const ACCOUNT: &str = "proxy";
const TIMEOUT: Duration = Duration::from_secs(20);

/// What the operator builds for the proxy and the origins, as its golden fixture pins it
/// (`operator/tests/build_golden.rs` keeps the fixture equal to the code).
struct OperatorObjects {
    /// The proxy's Role rules.
    proxy_rules: Value,
    /// The origin Service's port names.
    origin_port_names: Vec<String>,
}

fn operator_objects() -> OperatorObjects {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../operator/tests/fixtures/examples/minimal.golden.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let mut proxy_rules = None;
    let mut origin_port_names = None;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).expect("a YAML document");
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        match (object["kind"].as_str(), name) {
            (Some("Role"), "live-proxy") => proxy_rules = Some(object["rules"].clone()),
            (Some("Service"), "live-origin") => {
                origin_port_names = Some(
                    object["spec"]["ports"]
                        .as_array()
                        .expect("Service ports")
                        .iter()
                        .map(|port| port["name"].as_str().expect("a port name").to_owned())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    OperatorObjects {
        proxy_rules: proxy_rules.expect("the proxy Role in the golden fixture"),
        origin_port_names: origin_port_names.expect("the origin Service in the golden fixture"),
    }
}

/// How an endpoint's conditions read.
#[derive(Debug, Clone, Copy)]
enum Condition {
    Ready,
    NotReady,
}

/// One namespace with the origin Service, the proxy's ServiceAccount and Role, and a
/// kubeconfig carrying that account's token.
struct Cluster {
    namespace: String,
    admin: kube::Client,
    kubeconfig: PathBuf,
    operator: OperatorObjects,
}

impl Cluster {
    /// Everything but the RoleBinding ([`Cluster::grant`]): the account can do nothing yet.
    async fn new(plane: &ControlPlane, prefix: &str) -> Self {
        let namespace = plane.create_namespace(prefix).await.unwrap();
        let admin = plane.admin_client().await.unwrap();
        let operator = operator_objects();
        let ports: Vec<Value> = operator
            .origin_port_names
            .iter()
            .enumerate()
            .map(|(i, name)| json!({"name": name, "port": 1935 + i, "targetPort": name}))
            .collect();
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": SERVICE},
            "spec": {"clusterIP": "None", "ports": ports},
        }))
        .unwrap();
        Api::<Service>::namespaced(admin.clone(), &namespace)
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": ACCOUNT}, "rules": operator.proxy_rules,
        }))
        .unwrap();
        Api::<Role>::namespaced(admin.clone(), &namespace)
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let kubeconfig = plane
            .service_account_kubeconfig(&namespace, ACCOUNT)
            .await
            .unwrap();
        Self {
            namespace,
            admin,
            kubeconfig,
            operator,
        }
    }

    /// Binds the Role to the proxy's account.
    async fn grant(&self) {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": self.namespace}],
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(self.admin.clone(), &self.namespace)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    /// Writes the slice of pod `pod` served by `origin`, as the EndpointSlice controller
    /// would: the Service's port names (those nginx serves) with the pod's numbers.
    async fn put(&self, pod: &str, origin: &NginxRtmpOrigin, condition: Condition) {
        let ready = matches!(condition, Condition::Ready);
        let ports: Vec<Value> = self
            .operator
            .origin_port_names
            .iter()
            .filter_map(|name| match name.as_str() {
                "rtmp" => {
                    Some(json!({"name": name, "port": origin.rtmp_port(), "protocol": "TCP"}))
                }
                "http" => {
                    Some(json!({"name": name, "port": origin.http_port(), "protocol": "TCP"}))
                }
                _ => None,
            })
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{SERVICE}-{pod}"),
                "labels": {
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "originstack-e2e",
                },
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{
                "addresses": [origin.ip().to_string()],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": self.namespace, "uid": format!("uid-{pod}")},
            }],
        }))
        .unwrap();
        self.slices()
            .patch(
                &format!("{SERVICE}-{pod}"),
                &PatchParams::apply("originstack-e2e").force(),
                &Patch::Apply(&slice),
            )
            .await
            .unwrap();
    }

    /// The pod is gone: its endpoint leaves the Service.
    async fn remove(&self, pod: &str) {
        self.slices()
            .delete(&format!("{SERVICE}-{pod}"), &DeleteParams::default())
            .await
            .unwrap();
    }

    /// The proxy binary with discovery on, authenticated as the proxy's account; its
    /// namespace comes from the kubeconfig context, as in a pod it comes from the account.
    fn proxy(&self, extra: &[(&str, &str)]) -> ProxyProcess {
        let mut env = vec![
            ("PROXY_K8S_DISCOVERY", "on".to_owned()),
            ("PROXY_K8S_ORIGIN_SERVICE", SERVICE.to_owned()),
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        ProxyProcess::start(env!("CARGO_BIN_EXE_originstack-proxy"), &env).unwrap()
    }
}

/// nginx-rtmp origins on this machine's own address (EndpointSlices refuse loopback).
fn origins(n: usize) -> Vec<NginxRtmpOrigin> {
    let ip = IpAddr::V4(local_address().unwrap());
    (0..n)
        .map(|_| {
            NginxRtmpOrigin::start_with(NginxRtmpConfig {
                ip,
                ..NginxRtmpConfig::default()
            })
            .unwrap()
        })
        .collect()
}

async fn get(proxy: &ProxyProcess, path: &str) -> (u16, String) {
    request(proxy, None, "GET", path, "").await
}

/// One HTTP request to the system API from `source` (a local address) or loopback.
async fn request(
    proxy: &ProxyProcess,
    source: Option<IpAddr>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            source.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            0,
        ))
        .unwrap();
    let mut stream = socket.connect(proxy.system).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        proxy.system,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the system API answers")
        .unwrap();
    parse_response(&raw)
}

/// The proxy's registry view: server → its `/api/v1/origins` entry.
async fn registry(proxy: &ProxyProcess) -> Vec<Value> {
    let (status, body) = get(proxy, "/api/v1/origins").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"]
        .as_array()
        .unwrap()
        .clone()
}

fn entry<'a>(registry: &'a [Value], server: &str) -> Option<&'a Value> {
    registry.iter().find(|origin| origin["server"] == server)
}

/// Polls `registry` until `check` holds; fails with the proxy's log and last view.
async fn wait_registry(proxy: &ProxyProcess, what: &str, check: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let view = registry(proxy).await;
        if check(&view) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {TIMEOUT:?}; registry {view:#?}\nproxy log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(proxy: &ProxyProcess) {
    let deadline = Instant::now() + TIMEOUT;
    while get(proxy, "/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "proxy not ready within {TIMEOUT:?}; log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serving(view: &[Value], server: &str) -> bool {
    entry(view, server).is_some_and(|o| o["alive"] == true && o["draining"] == false)
}

/// Publishes `stream` through the proxy; returns the publisher and the index of the origin
/// the stream landed on (exactly one holds it).
fn publish(proxy: &ProxyProcess, origins: &[NginxRtmpOrigin], stream: &str) -> (Publisher, usize) {
    let mut publisher = Publisher::start(format!("rtmp://{}/live/{stream}", proxy.rtmp)).unwrap();
    publisher.wait_sending(TIMEOUT).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let holders: Vec<usize> = (0..origins.len())
            .filter(|&i| origins[i].has_stream("live", stream).unwrap())
            .collect();
        match holders.as_slice() {
            [one] => return (publisher, *one),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!(
                "{stream} held by origins {other:?}; proxy log:\n{}",
                proxy.log()
            ),
        }
    }
}

/// ffprobe decodes the stream through the proxy.
fn plays(proxy: &ProxyProcess, stream: &str) {
    assert_playable(
        &format!("rtmp://{}/live/{stream}", proxy.rtmp),
        &Expect::h264_aac(320, 240),
        TIMEOUT,
    )
    .unwrap_or_else(|err| panic!("{err:#}\nproxy log:\n{}", proxy.log()));
}

/// Pods of the origins, in origin order.
const PODS: [&str; 3] = ["origin-a", "origin-b", "origin-c"];

/// A namespace with the proxy's Role bound, `n` origins of which the first `listed` are
/// ready endpoints of the Service, and a proxy (with `env`) that has discovered them.
async fn running(
    plane: &ControlPlane,
    prefix: &str,
    (n, listed): (usize, usize),
    env: &[(&str, &str)],
) -> (Cluster, Vec<NginxRtmpOrigin>, ProxyProcess) {
    let cluster = Cluster::new(plane, prefix).await;
    cluster.grant().await;
    let origins = origins(n);
    for (pod, origin) in PODS.iter().zip(&origins).take(listed) {
        cluster.put(pod, origin, Condition::Ready).await;
    }
    let proxy = cluster.proxy(env);
    wait_ready(&proxy).await;
    wait_registry(&proxy, "every listed origin discovered", |view| {
        PODS[..listed].iter().all(|pod| serving(view, pod))
    })
    .await;
    (cluster, origins, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_origins_serve_streams_without_any_heartbeat() {
    let plane = ControlPlane::shared().await;
    let cluster = Cluster::new(plane, "discover").await;
    let origins = origins(1);
    cluster.put("origin-a", &origins[0], Condition::Ready).await;

    // Without its RoleBinding the account may not list EndpointSlices: not ready, and
    // heartbeats are refused meanwhile.
    let proxy = cluster.proxy(&[]);
    let deadline = Instant::now() + TIMEOUT;
    while metric(
        &proxy.metrics().unwrap(),
        "originstack_proxy_discovery_watch_errors_total",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no watch error; log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get(&proxy, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!(
            "has not listed the EndpointSlices of Service {}/{SERVICE}",
            cluster.namespace
        )),
        "{body}"
    );
    assert!(registry(&proxy).await.is_empty());

    // The Role the operator writes is all the proxy needs.
    cluster.grant().await;
    wait_ready(&proxy).await;
    wait_registry(&proxy, "origin-a discovered", |view| {
        serving(view, "origin-a")
    })
    .await;
    let view = registry(&proxy).await;
    let a = entry(&view, "origin-a").unwrap();
    assert_eq!(
        a["endpoints"]["rtmp"][0],
        origins[0].rtmp_addr().to_string()
    );
    assert_eq!(
        a["endpoints"]["http"][0],
        origins[0].http_addr().to_string()
    );
    assert_eq!(a["service"], SERVICE);

    let (_publisher, on) = publish(&proxy, &origins, "discovered");
    assert_eq!(on, 0);
    plays(&proxy, "discovered");
    let metrics = proxy.metrics().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "originstack_proxy_discovery_origins{state=\"serving\"}"
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "originstack_proxy_discovery_synced"), 1.0);
    assert!(
        !metrics.contains("originstack_proxy_registrations_total{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_endpoint_keeps_its_streams_and_takes_no_new_ones() {
    let plane = ControlPlane::shared().await;
    let (cluster, origins, proxy) = running(plane, "drain", (2, 2), &[]).await;

    let (mut kept, on) = publish(&proxy, &origins, "kept");
    let other = 1 - on;
    cluster
        .put(PODS[on], &origins[on], Condition::NotReady)
        .await;
    wait_registry(&proxy, "draining seen", |view| {
        entry(view, PODS[on]).is_some_and(|o| o["draining"] == true && o["alive"] == true)
    })
    .await;

    let mut fresh = Vec::new();
    for i in 0..3 {
        let (publisher, landed) = publish(&proxy, &origins, &format!("fresh{i}"));
        assert_eq!(landed, other, "a new stream went to the draining origin");
        fresh.push(publisher);
    }
    // The draining origin's stream goes on, and players of it still reach it.
    plays(&proxy, "kept");
    kept.ensure_running().unwrap();
    assert!(origins[on].has_stream("live", "kept").unwrap());

    // Ready again: it takes new streams (it owns fewer).
    cluster.put(PODS[on], &origins[on], Condition::Ready).await;
    wait_registry(&proxy, "serving again", |view| serving(view, PODS[on])).await;
    let (_again, landed) = publish(&proxy, &origins, "after");
    assert_eq!(landed, on);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_loses_its_streams_at_once() {
    let plane = ControlPlane::shared().await;
    // A long lease: without the removal the stream would stay with its origin.
    let (cluster, origins, proxy) =
        running(plane, "remove", (2, 2), &[("PROXY_STREAM_LEASE", "5m")]).await;

    let (mut first, on) = publish(&proxy, &origins, "moving");
    let other = 1 - on;
    cluster.remove(PODS[on]).await;
    wait_registry(&proxy, "removal seen", |view| {
        entry(view, PODS[on]).is_none()
    })
    .await;

    // The origin itself still runs: only discovery says it is gone. The publisher comes
    // back (within the lease) and lands on the live origin.
    first.finish(TIMEOUT).unwrap();
    origins[on]
        .wait_for_stream_gone("live", "moving", TIMEOUT)
        .unwrap();
    let (_second, landed) = publish(&proxy, &origins, "moving");
    assert_eq!(landed, other);
    plays(&proxy, "moving");
    assert!(!origins[on].has_stream("live", "moving").unwrap());
    let metrics = proxy.metrics().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "originstack_proxy_picks_total{result=\"failover\"}"
        ),
        1.0,
        "{metrics}"
    );
}

/// An SRS heartbeat body for an origin at `ip` with RTMP port `rtmp`.
fn heartbeat(server: &str, ip: IpAddr, rtmp: u16, cpu: f64) -> String {
    json!({
        "device_id": server, "ip": ip.to_string(), "server": server, "service": "svc", "pid": "1",
        "rtmp": [rtmp.to_string()], "summaries": {"data": {"self": {"cpu_percent": cpu}}},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_requires_a_discovered_address_and_adds_load_figures() {
    let plane = ControlPlane::shared().await;
    // Restated every second: the load figure must survive the restatements.
    let env = [
        ("PROXY_REGISTER_REQUIRE_DISCOVERED", "on"),
        ("PROXY_ORIGIN_TTL", "3s"),
    ];
    let (_cluster, origins, proxy) = running(plane, "register", (2, 2), &env).await;

    let host = origins[0].ip();
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let a_port = origins[0].rtmp_port();
    let register = "/api/v1/srs/register";
    let refused = [
        // Not an endpoint at all.
        (
            loopback,
            heartbeat("intruder", loopback, a_port, 0.0),
            "is not an endpoint of Service",
        ),
        // An endpoint's address, announced from elsewhere.
        (
            loopback,
            heartbeat("intruder", host, a_port, 0.0),
            "but comes from 127.0.0.1",
        ),
        // The endpoint's address but a port no endpoint there has.
        (
            host,
            heartbeat("intruder", host, 1, 0.0),
            "is not an endpoint of Service",
        ),
    ];
    for (source, body, message) in &refused {
        let (status, answer) = request(&proxy, Some(*source), "POST", register, body).await;
        assert_eq!(status, 403, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["code"], 403);
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }

    // The origin itself, under SRS's own id: it adds its load to the discovered origin.
    let (status, answer) = request(
        &proxy,
        Some(host),
        "POST",
        register,
        &heartbeat("vid-srs1", host, a_port, 77.0),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let view = registry(&proxy).await;
    assert_eq!(view.len(), 2, "{view:#?}");
    let a = entry(&view, "origin-a").unwrap();
    assert_eq!(
        (a["load"].as_f64(), a["device_id"].as_str()),
        (Some(77.0), Some("vid-srs1"))
    );
    assert!(entry(&view, "vid-srs1").is_none());

    // Restated three times since: the figure stays, and it ranks (equal counts, lower load).
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let view = registry(&proxy).await;
    assert_eq!(
        entry(&view, "origin-a").unwrap()["load"].as_f64(),
        Some(77.0)
    );
    assert!(serving(&view, "origin-a"));
    let (_publisher, landed) = publish(&proxy, &origins, "ranked");
    assert_eq!(landed, 1);

    let metrics = proxy.metrics().unwrap();
    assert_eq!(
        metric(
            &metrics,
            "originstack_proxy_registrations_total{result=\"not_discovered\"}"
        ),
        3.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_survives_an_api_server_restart_and_follows_changes_after_it() {
    // Its own control plane: this one is restarted.
    let plane = ControlPlane::start().await.unwrap();
    let ttl = Duration::from_millis(1_500);
    let (cluster, origins, proxy) =
        running(&plane, "restart", (3, 2), &[("PROXY_ORIGIN_TTL", "1500ms")]).await;

    // The API server is gone for several TTLs: the last view is restated, still ready.
    plane.stop_apiserver();
    tokio::time::sleep(ttl * 3).await;
    let view = registry(&proxy).await;
    assert!(PODS[..2].iter().all(|pod| serving(&view, pod)), "{view:#?}");
    assert_eq!(get(&proxy, "/readyz").await.0, 200);
    let (_during, _) = publish(&proxy, &origins, "during");

    plane.restart_apiserver().await.unwrap();
    // Changes made after the restart reach the proxy.
    cluster.put(PODS[1], &origins[1], Condition::NotReady).await;
    cluster.put(PODS[2], &origins[2], Condition::Ready).await;
    wait_registry(&proxy, "changes after the restart", |view| {
        serving(view, PODS[0])
            && serving(view, PODS[2])
            && entry(view, PODS[1]).is_some_and(|o| o["draining"] == true)
    })
    .await;
    let (_after, landed) = publish(&proxy, &origins, "after");
    assert_ne!(landed, 1, "a new stream went to the draining origin");
    plays(&proxy, "after");
    assert!(
        metric(
            &proxy.metrics().unwrap(),
            "originstack_proxy_discovery_watch_errors_total"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_agree_on_discovered_origins_and_their_load() {
    let plane = ControlPlane::shared().await;
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let env = [
        ("PROXY_LOAD_BALANCER_TYPE", "redis"),
        ("PROXY_REDIS_URL", url.as_str()),
        ("PROXY_ORIGIN_TTL", "3s"),
    ];
    let (cluster, origins, first) = running(plane, "replicas", (2, 1), &env).await;
    let second = cluster.proxy(&env);
    wait_ready(&second).await;
    let host = origins[0].ip();
    let register = "/api/v1/srs/register";

    // An origin heartbeats to one replica only; both restate it every second, and the other
    // replica sees the figure all the same.
    let body = heartbeat("vid-a", host, origins[0].rtmp_port(), 55.0);
    let (status, answer) = request(&first, Some(host), "POST", register, &body).await;
    assert_eq!(status, 200, "{answer}");
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let view = registry(&second).await;
    assert_eq!(view.len(), 1, "{view:#?}");
    assert!(serving(&view, PODS[0]));
    assert_eq!(entry(&view, PODS[0]).unwrap()["load"].as_f64(), Some(55.0));

    // A heartbeat ahead of its endpoint registers on its own, until the endpoint is listed;
    // from then on one endpoint is one origin and the heartbeat adds to it.
    let body = heartbeat("vid-b", host, origins[1].rtmp_port(), 5.0);
    let (status, answer) = request(&second, Some(host), "POST", register, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(entry(&registry(&first).await, "vid-b").is_some());
    cluster.put(PODS[1], &origins[1], Condition::Ready).await;
    wait_registry(&first, "the heartbeat origin folded", |view| {
        serving(view, PODS[1]) && entry(view, "vid-b").is_none()
    })
    .await;
    wait_registry(&second, "the endpoint listed", |view| {
        serving(view, PODS[1])
    })
    .await;
    let (status, answer) = request(&second, Some(host), "POST", register, &body).await;
    assert_eq!(status, 200, "{answer}");
    let view = registry(&first).await;
    assert_eq!(view.len(), 2, "{view:#?}");
    assert_eq!(entry(&view, PODS[1]).unwrap()["load"].as_f64(), Some(5.0));

    // Published through one replica (to the less loaded origin), played through the other.
    let (_publisher, landed) = publish(&first, &origins, "shared");
    assert_eq!(landed, 1);
    plays(&second, "shared");
}
