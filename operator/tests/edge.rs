//! The edge tier against a real kube-apiserver: the example's objects and status, autoscaling
//! switched on (the edges keep their count) and off, and the tier removed.

mod support;

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use originstack_operator::{crd::condition as types, kinds::FIELD_MANAGER};
use serde_json::json;
use support::*;

async fn replicas(client: &Client, namespace: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??
        .spec?
        .replicas
}

/// Whether the operator's own apply sets the Deployment's replica count.
async fn operator_applies_replicas(client: &Client, namespace: &str, name: &str) -> bool {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap();
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry
                    .fields_v1
                    .as_ref()
                    .is_some_and(|fields| fields.0["f:spec"]["f:replicas"].is_object())
        })
}

#[tokio::test]
async fn the_edge_example_becomes_its_objects_and_status() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("edge").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "edge").await;
    let edge = format!("{name}-edge");
    // Status is written once everything is applied.
    wait_observed(&client, &namespace, &name).await;

    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    let autoscaler = eventually("the edges' HorizontalPodAutoscaler", || async {
        autoscalers.get_opt(&edge).await.ok()?
    })
    .await;
    let spec = autoscaler.spec.unwrap();
    assert_eq!(spec.scale_target_ref.name, edge);
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 10));

    let config = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get(&format!("{name}-edge-config"))
        .await
        .unwrap();
    let srs_conf = &config.data.unwrap()["srs.conf"];
    assert!(
        srs_conf.contains(&format!(
            "origin          {name}-proxy.{namespace}.svc:1935;"
        )),
        "{srs_conf}"
    );
    let service = Api::<Service>::namespaced(client.clone(), &namespace)
        .get(&edge)
        .await
        .unwrap();
    let ports: Vec<_> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|port| (port.name.unwrap(), port.port))
        .collect();
    assert_eq!(ports, [("rtmp".into(), 1935), ("http".into(), 8080)]);
    assert!(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
            .get_opt(&edge)
            .await
            .unwrap()
            .is_some()
    );
    // The count is the autoscaler's: the operator applies none (here the API server's default
    // stands, as no autoscaler controller runs).
    assert!(!operator_applies_replicas(&client, &namespace, &edge).await);

    let cluster = eventually("status.edges", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        cluster.status.as_ref()?.edges.as_ref()?;
        Some(cluster)
    })
    .await;
    let status = cluster.status.unwrap();
    let edges = status.edges.unwrap();
    // The Deployment starts at the API server's default of 1; the autoscaler's minimum is what
    // the edges must reach.
    assert_eq!(replicas(&client, &namespace, &edge).await, Some(1));
    assert_eq!((edges.desired, edges.ready), (2, 0));
    assert_eq!(
        edges.selector.as_deref(),
        Some(format!("app.kubernetes.io/component=edge,originstack.dev/cluster={name}").as_str())
    );
    let endpoints = status.endpoints.edge.unwrap();
    assert_eq!(
        endpoints.rtmp,
        Some(format!("rtmp://{edge}.{namespace}.svc:1935"))
    );
    assert_eq!(
        endpoints.http,
        Some(format!("http://{edge}.{namespace}.svc:8080"))
    );

    // Ready waits for the edges too.
    for suffix in ["-origin", "-proxy", "-redis"] {
        mark_ready(&client, &namespace, &format!("{name}{suffix}")).await;
    }
    let waiting = eventually("only the edges not ready", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        let ready = condition(&cluster, types::READY)?.clone();
        ready.message.contains("redis 1/1 ready").then_some(ready)
    })
    .await;
    assert_eq!(waiting.status, "False");
    assert!(waiting.message.contains("edges 0/2"), "{}", waiting.message);
    // At the Deployment's first count the edges are below the autoscaler's minimum: not Ready.
    mark_ready(&client, &namespace, &edge).await;
    let below = eventually("edges 1/2 counted", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        let ready = condition(&cluster, types::READY)?.clone();
        ready.message.contains("edges 1/2").then_some(ready)
    })
    .await;
    assert_eq!(below.status, "False");
    scale_as_autoscaler(&client, &namespace, &edge, 2).await;
    mark_ready(&client, &namespace, &edge).await;
    wait_condition(&client, &namespace, &name, types::READY, "True").await;
}

#[tokio::test]
async fn autoscaling_takes_over_the_edge_count_and_gives_it_back() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("edge-scaling").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_manifests(
        &client,
        &namespace,
        "apiVersion: originstack.dev/v1alpha1\nkind: OriginCluster\nmetadata: {name: cdn}\n\
         spec:\n  redis: {mode: none}\n  edge: {replicas: 3}\n",
    )
    .await;
    let edge = format!("{name}-edge");
    eventually("3 edges", || async {
        (replicas(&client, &namespace, &edge).await? == 3).then_some(())
    })
    .await;
    assert!(operator_applies_replicas(&client, &namespace, &edge).await);

    // Autoscaling on: the count the operator applied stays (not the API server's default of
    // 1) until the autoscaler changes it.
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"edge": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}),
    )
    .await;
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    eventually("the HorizontalPodAutoscaler", || async {
        autoscalers.get_opt(&edge).await.ok()?
    })
    .await;
    wait_observed(&client, &namespace, &name).await;
    assert!(!operator_applies_replicas(&client, &namespace, &edge).await);
    assert_eq!(replicas(&client, &namespace, &edge).await, Some(3));

    // The autoscaler scales through the scale subresource; the operator leaves its choice and
    // reports it.
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .patch_scale(
            &edge,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    eventually("status.edges.desired 5", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        (cluster.status?.edges?.desired == 5).then_some(())
    })
    .await;
    assert_eq!(replicas(&client, &namespace, &edge).await, Some(5));

    // Autoscaling off: the autoscaler goes, spec.edge.replicas applies again.
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"edge": {"autoscaling": null}}),
    )
    .await;
    eventually("the autoscaler deleted and 3 edges", || async {
        let gone = autoscalers.get_opt(&edge).await.ok()?.is_none();
        (gone && replicas(&client, &namespace, &edge).await? == 3).then_some(())
    })
    .await;

    // No edge tier: every object of it goes, and so does its status.
    patch_spec(&client, &namespace, &name, json!({"edge": null})).await;
    eventually("the edge tier deleted", || async {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
        let gone = deployments.get_opt(&edge).await.ok()?.is_none()
            && services.get_opt(&edge).await.ok()?.is_none()
            && configs
                .get_opt(&format!("{name}-edge-config"))
                .await
                .ok()?
                .is_none()
            && budgets.get_opt(&edge).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let cluster = wait_observed(&client, &namespace, &name).await;
    let status = cluster.status.unwrap();
    assert!(status.edges.is_none() && status.endpoints.edge.is_none());
}
