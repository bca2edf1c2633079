//! Shared by the operator's tests against the real API server: the CRD, the examples, an
//! in-process controller per test namespace, and the stand-in for the Deployment controller.

#![allow(dead_code)] // each test binary uses a different part

use std::{
    future::Future,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Secret, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, CustomResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{conditions, wait::await_condition},
};
use originstack_e2e::kube::ControlPlane;
use originstack_operator::{
    controller::{self, ControllerOptions},
    crd::OriginCluster,
    metrics::Metrics,
    podmonitor::PodMonitor,
    reconcile::Context,
};
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TIMEOUT: Duration = Duration::from_secs(40);
/// The field manager of the test's own writes (a user's `kubectl apply --server-side`).
pub const USER: &str = "test-user";

/// The shared control plane with the OriginCluster CRD installed and Established.
pub async fn cluster_with_crd() -> &'static ControlPlane {
    let plane = ControlPlane::shared().await;
    let crds: Api<CustomResourceDefinition> = Api::all(plane.admin_client().await.expect("client"));
    let name = "originclusters.originstack.dev";
    crds.patch(
        name,
        &PatchParams::apply(USER).force(),
        &Patch::Apply(OriginCluster::crd()),
    )
    .await
    .expect("the CRD is accepted");
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD becomes Established")
    .expect("watching the CRD");
    plane
}

/// The controller, in-process, watching one namespace (tests run in parallel).
pub struct Operator {
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    pub async fn start(plane: &ControlPlane, namespace: &str) -> Self {
        let client = plane.admin_client().await.expect("client");
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(Context::new(
            client,
            metrics.clone(),
            Some(format!("test-{namespace}")),
        ));
        let options = ControllerOptions {
            namespace: Some(namespace.to_string()),
            concurrency: 4,
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(async move { controller::run(ctx, &options, stop).await });
        Self {
            metrics,
            shutdown,
            task: Some(task),
        }
    }

    /// Graceful shutdown: running reconciles finish, then the controller returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("the controller stops")
                .expect("controller task");
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn example_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.yaml"))
}

/// Applies every document of `examples/<name>.yaml` in `namespace`, as a user would with
/// `kubectl apply --server-side`; returns the OriginCluster's name.
pub async fn apply_example(client: &Client, namespace: &str, name: &str) -> String {
    let text = std::fs::read_to_string(example_path(name)).expect("example file");
    apply_manifests(client, namespace, &text).await
}

pub async fn apply_manifests(client: &Client, namespace: &str, text: &str) -> String {
    let mut cluster_name = None;
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(document).expect("YAML document");
        let name = value["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        match value["kind"].as_str() {
            Some("Secret") => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                api.patch(&name, &PatchParams::apply(USER), &Patch::Apply(&value))
                    .await
                    .expect("Secret applied");
            }
            Some("OriginCluster") => {
                apply_cluster(client, namespace, &value)
                    .await
                    .expect("OriginCluster applied");
                cluster_name = Some(name);
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    cluster_name.expect("an OriginCluster in the manifest")
}

pub async fn apply_cluster(
    client: &Client,
    namespace: &str,
    value: &serde_json::Value,
) -> Result<OriginCluster, kube::Error> {
    let api: Api<OriginCluster> = Api::namespaced(client.clone(), namespace);
    let name = value["metadata"]["name"].as_str().expect("metadata.name");
    api.patch(
        name,
        &PatchParams::apply(USER).force(),
        &Patch::Apply(value),
    )
    .await
}

/// Merge-patches the spec of a cluster (as `kubectl patch --type merge`).
pub async fn patch_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> OriginCluster {
    let api: Api<OriginCluster> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("spec patched")
}

/// Polls `check` until it yields a value (at most [`TIMEOUT`]).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_cluster(client: &Client, namespace: &str, name: &str) -> OriginCluster {
    Api::<OriginCluster>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("the OriginCluster")
}

pub fn condition<'a>(cluster: &'a OriginCluster, type_: &str) -> Option<&'a Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until condition `type_` of the cluster has `status` ("True"/"False").
pub async fn wait_condition(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
) -> OriginCluster {
    eventually(
        &format!("{type_}={status} on {namespace}/{name}"),
        || async {
            let cluster = get_cluster(client, namespace, name).await;
            (condition(&cluster, type_)?.status == status).then_some(cluster)
        },
    )
    .await
}

/// Waits for a status written for the cluster's current generation.
pub async fn wait_observed(client: &Client, namespace: &str, name: &str) -> OriginCluster {
    eventually(
        &format!("status of {namespace}/{name} for its generation"),
        || async {
            let cluster = get_cluster(client, namespace, name).await;
            let observed = cluster.status.as_ref()?.observed_generation;
            (observed.is_some() && observed == cluster.metadata.generation).then_some(cluster)
        },
    )
    .await
}

/// What the Deployment controller and kubelets would report for a fully rolled-out
/// Deployment (there are none in the test control plane).
/// What a HorizontalPodAutoscaler does first (no autoscaler runs without controllers): set
/// the Deployment's count, here to its minimum, through the scale subresource.
pub async fn scale_as_autoscaler(client: &Client, namespace: &str, name: &str, replicas: i32) {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("Deployment scaled");
}

pub async fn mark_ready(client: &Client, namespace: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = api.get(name).await.expect("the Deployment");
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let status = json!({"status": {
        "observedGeneration": deployment.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("Deployment status patched");
}

/// GET over plain HTTP/1.0: (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits for an Event of `type_` (Normal, Warning) and `reason` in `namespace`.
pub async fn wait_event(client: &Client, namespace: &str, type_: &str, reason: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("a {type_} event {reason}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
            .then_some(())
    })
    .await;
}

/// Installs prometheus-operator's PodMonitor CRD (from the test assets) and waits until the API
/// server serves PodMonitors.
pub async fn install_podmonitor_crd(client: &Client) {
    let path = originstack_e2e::kube::podmonitor_crd();
    let text = std::fs::read_to_string(&path).expect("the PodMonitor CRD file");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("a CRD");
    let name = crd.metadata.name.clone().expect("a named CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply(USER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the PodMonitor CRD is accepted");
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the PodMonitor CRD becomes Established")
    .expect("watching the CRD");
    // Established comes before API discovery lists the new resource.
    eventually("PodMonitors in API discovery", || async {
        originstack_operator::podmonitor::served(client)
            .await
            .ok()?
            .then_some(())
    })
    .await;
    // A new resource's watch cache starts empty: until it has synced, lists
    // and watches of it answer 429 and a watcher started now would back off
    // past a short test.
    let monitors: Api<PodMonitor> = Api::all(client.clone());
    eventually("PodMonitors listable (watch cache ready)", || async {
        monitors.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
}
