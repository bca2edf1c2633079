//! Benchmark (ignored by default): 50 OriginClusters from apply to all Ready, and the
//! operator's memory.
//!
//!   cargo test --release -p originstack-operator --test bench_reconcile -- --ignored --nocapture
//!
//! The operator binary runs as its own process against a control plane of its own; a task of
//! the test stands in for the Deployment controller and kubelets (it reports every new
//! Deployment generation fully rolled out). The baseline, measured in the same run, is the
//! same API work done directly and serially by the test: create the cluster, server-side apply
//! the objects the build stage yields, report the Deployments ready, write the status.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, CustomResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use originstack_e2e::{ChildGuard, free_port, kube::ControlPlane};
use originstack_operator::{
    crd::{OriginCluster, condition},
    reconcile::{
        build,
        read::Observed,
        status::{self, Outcome},
        validate,
    },
};
use serde_json::json;
use support::{TIMEOUT, USER, mark_ready};

const CLUSTERS: usize = 50;

/// Applies cluster `bench-<index>` (2 origins, 1 proxy, no Redis) as a user would.
async fn apply_cluster(clusters: &Api<OriginCluster>, index: usize) -> OriginCluster {
    let manifest = json!({
        "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": format!("bench-{index}")},
        "spec": {"origin": {"replicas": 2}, "proxy": {"replicas": 1}, "redis": {"mode": "none"}}
    });
    clusters
        .patch(
            &format!("bench-{index}"),
            &PatchParams::apply(USER),
            &Patch::Apply(manifest),
        )
        .await
        .expect("cluster applied")
}

/// Reports every Deployment generation in `namespace` as rolled out, like the Deployment
/// controller and kubelets would.
fn stand_in_for_kubelets(client: Client, namespace: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let mut events = watcher::watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(deployment)) = events.try_next().await {
            let observed = deployment
                .status
                .as_ref()
                .and_then(|s| s.observed_generation);
            if observed != deployment.metadata.generation {
                mark_ready(
                    &client,
                    &namespace,
                    deployment.metadata.name.as_deref().unwrap_or_default(),
                )
                .await;
            }
        }
    })
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn ready_count(api: &Api<OriginCluster>) -> usize {
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list clusters");
    list.items
        .iter()
        .filter(|cluster| {
            let status = cluster.status.as_ref();
            status.is_some_and(|s| s.observed_generation == cluster.metadata.generation)
                && support::condition(cluster, condition::READY).is_some_and(|c| c.status == "True")
        })
        .count()
}

/// The API work of one reconcile to Ready, done directly by the test.
async fn baseline(client: &Client, namespace: &str) -> Duration {
    let clusters: Api<OriginCluster> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    for index in 0..CLUSTERS {
        let cluster = apply_cluster(&clusters, index).await;
        let observed = Observed {
            fresh_token: format!("{index:064x}"),
            fresh_read_token: format!("{:064x}", index + 1_000_000),
            ..Default::default()
        };
        let plan = validate::validate(&cluster, &observed).expect("valid");
        let mut applied = Vec::new();
        for object in build::build(&plan) {
            applied.push(object.apply(client, namespace).await.expect("apply"));
        }
        for object in applied.iter_mut() {
            if let Some(deployment) = object.as_deployment() {
                let name = deployment.metadata.name.clone().unwrap();
                mark_ready(client, namespace, &name).await;
                let stored = Api::<Deployment>::namespaced(client.clone(), namespace)
                    .get(&name)
                    .await
                    .unwrap();
                *object = stored.into();
            }
        }
        let status = status::compute(
            &cluster,
            &applied,
            Outcome::Applied,
            k8s_openapi::jiff::Timestamp::now(),
        );
        status::write(client, &cluster, status)
            .await
            .expect("status");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        ready_count(&clusters).await,
        CLUSTERS,
        "the baseline reaches Ready too"
    );
    elapsed
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn fifty_clusters_to_ready() {
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.admin_client().await.unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "originclusters.originstack.dev",
        &PatchParams::apply(USER),
        &Patch::Apply(OriginCluster::crd()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let base_namespace = plane.create_namespace("bench-baseline").await.unwrap();
    let baseline = baseline(&client, &base_namespace).await;

    let namespace = plane.create_namespace("bench-operator").await.unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_originstack-operator"));
    command
        .env("KUBECONFIG", plane.kubeconfig_path().unwrap())
        .env("OPERATOR_NAMESPACE", &namespace)
        .env("OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("OPERATOR_LOG", "warn")
        .stdout(Stdio::null());
    let operator = ChildGuard::spawn("operator", &mut command).expect("operator");
    let (idle_rss, _) = {
        tokio::time::sleep(Duration::from_secs(2)).await;
        memory_kib(operator.pid())
    };
    let kubelets = stand_in_for_kubelets(client.clone(), namespace.clone());

    let clusters: Api<OriginCluster> = Api::namespaced(client.clone(), &namespace);
    let started = Instant::now();
    for index in 0..CLUSTERS {
        apply_cluster(&clusters, index).await;
    }
    let applied_in = started.elapsed();
    let mut peak_rss_seen = 0;
    loop {
        peak_rss_seen = peak_rss_seen.max(memory_kib(operator.pid()).0);
        if ready_count(&clusters).await == CLUSTERS {
            break;
        }
        assert!(
            started.elapsed() < TIMEOUT * 5,
            "not all Ready after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_ready = started.elapsed();
    let (rss, hwm) = memory_kib(operator.pid());
    let (_, metrics) = support::http_get(port, "/metrics").expect("operator metrics");
    let reconciles = metrics
        .lines()
        .find_map(|line| line.strip_prefix("originstack_operator_reconciles_total "))
        .unwrap_or("?")
        .to_string();
    kubelets.abort();

    println!(
        "benchmark: {CLUSTERS} OriginClusters (2 origins, 1 proxy, no Redis) from apply to all Ready=True"
    );
    println!(
        "  operator:  {:>8.2} s  (applying the {CLUSTERS} manifests took {:.2} s)",
        all_ready.as_secs_f64(),
        applied_in.as_secs_f64()
    );
    println!(
        "  baseline:  {:>8.2} s  (the same API writes, serially, by the test itself)",
        baseline.as_secs_f64()
    );
    println!("  reconciles run by the operator: {reconciles}");
    println!(
        "  ratio operator/baseline: {:.2}",
        all_ready.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  operator RSS: idle {:.1} MiB, after {CLUSTERS} clusters {:.1} MiB, peak {:.1} MiB",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm.max(peak_rss_seen) as f64 / 1024.0
    );
}
