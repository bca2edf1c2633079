//! `spec.monitoring` against a real kube-apiserver: without prometheus-operator's CRDs the
//! cluster is reconciled as usual and its `Monitoring` condition and an Event say why no
//! PodMonitor exists; with them the PodMonitors are created, and removed with the setting.
//! One test: it installs the PodMonitor CRD in this binary's control plane.

mod support;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{Api, api::ListParams};
use originstack_operator::{crd::condition as types, podmonitor::PodMonitor};
use serde_json::json;
use support::*;

#[tokio::test]
async fn podmonitors_follow_spec_monitoring_and_a_missing_crd_is_a_condition() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("monitoring").await.unwrap();
    let operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "minimal").await;
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"monitoring": {"enabled": true, "originExporter": true, "interval": "15s",
            "labels": {"release": "prom"}}}),
    )
    .await;
    for deployment in [format!("{name}-origin"), format!("{name}-proxy")] {
        eventually(&format!("Deployment {deployment}"), || async {
            Api::<Deployment>::namespaced(client.clone(), &namespace)
                .get_opt(&deployment)
                .await
                .ok()?
        })
        .await;
        mark_ready(&client, &namespace, &deployment).await;
    }

    // No CRD: everything else is reconciled and Ready; the condition and an Event say why.
    let cluster = wait_condition(&client, &namespace, &name, types::MONITORING, "False").await;
    let monitoring = condition(&cluster, types::MONITORING).unwrap();
    assert_eq!(monitoring.reason, "PodMonitorCRDMissing");
    assert!(
        monitoring.message.contains("monitoring.coreos.com/v1"),
        "{monitoring:?}"
    );
    wait_condition(&client, &namespace, &name, types::READY, "True").await;
    let degraded = condition(
        &get_cluster(&client, &namespace, &name).await,
        types::DEGRADED,
    )
    .unwrap()
    .status
    .clone();
    assert_eq!(degraded, "False", "a missing CRD is not a failed reconcile");
    wait_event(&client, &namespace, "Warning", "PodMonitorCRDMissing").await;
    // The exporter is on in srs.conf whether or not Prometheus Operator is there.
    let config = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get(&format!("{name}-origin-config"))
        .await
        .unwrap();
    let srs_conf = &config.data.unwrap()["srs.conf"];
    assert!(srs_conf.contains("exporter {"), "{srs_conf}");

    // The CRD installed: the next reconcile (here, a spec change) creates the PodMonitors.
    install_podmonitor_crd(&client).await;
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"monitoring": {"interval": "30s"}}),
    )
    .await;
    let cluster = wait_condition(&client, &namespace, &name, types::MONITORING, "True").await;
    assert_eq!(
        condition(&cluster, types::MONITORING).unwrap().reason,
        "PodMonitorsApplied"
    );
    let monitors: Api<PodMonitor> = Api::namespaced(client.clone(), &namespace);
    let proxy = monitors.get(&format!("{name}-proxy")).await.unwrap();
    assert_eq!(
        proxy.spec.job_label.as_deref(),
        Some("app.kubernetes.io/instance"),
        "the proxies' job is the cluster's name"
    );
    let endpoint = &proxy.spec.pod_metrics_endpoints[0];
    assert_eq!(
        (endpoint.port.as_str(), endpoint.path.as_str()),
        ("system", "/metrics")
    );
    assert_eq!(endpoint.interval.as_deref(), Some("30s"));
    assert_eq!(
        proxy.metadata.labels.as_ref().unwrap()["release"],
        "prom",
        "the selector label of the user's Prometheus"
    );
    let origin = monitors.get(&format!("{name}-origin")).await.unwrap();
    assert_eq!(origin.spec.pod_metrics_endpoints[0].port, "exporter");

    // The exporter off: its PodMonitor goes; monitoring off: both go and so does the condition.
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"monitoring": {"originExporter": false}}),
    )
    .await;
    eventually("the origins' PodMonitor pruned", || async {
        monitors
            .get_opt(&format!("{name}-origin"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"monitoring": {"enabled": false}}),
    )
    .await;
    eventually("every PodMonitor pruned", || async {
        monitors
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let cluster = wait_observed(&client, &namespace, &name).await;
    assert!(condition(&cluster, types::MONITORING).is_none());
    operator.stop().await;
}
