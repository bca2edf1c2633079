//! The test control plane behaves as a real cluster's API server does: CRDs become
//! Established, server-side apply and watches work, the schema is enforced, RBAC refuses.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, conditions, wait::await_condition, watcher},
};
use originstack_e2e::kube::ControlPlane;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A small CRD with a schema to violate: `spec.size` is an integer from 1 to 10.
fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.originstack.dev"},
        "spec": {
            "group": "test.originstack.dev",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}}
                    }}
                }}
            }]
        }
    }))
    .expect("a CRD")
}

async fn install_widget_crd(plane: &ControlPlane) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(plane.admin_client().await?);
    crds.patch(
        "widgets.test.originstack.dev",
        &PatchParams::apply("test").force(),
        &Patch::Apply(widget_crd()),
    )
    .await?;
    let established = await_condition(
        crds,
        "widgets.test.originstack.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(TIMEOUT, established).await??;
    Ok(())
}

fn widgets(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "test.originstack.dev",
        "v1",
        "Widget",
    ));
    Api::namespaced_with(client, namespace, &resource)
}

#[tokio::test]
async fn a_crd_becomes_established_and_serves_objects() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await;
    install_widget_crd(plane).await?;
    let namespace = plane.create_namespace("crd").await?;
    let api = widgets(plane.admin_client().await?, &namespace);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.originstack.dev/v1", "kind": "Widget",
        "metadata": {"name": "small"}, "spec": {"size": 3}
    }))?;
    api.create(&PostParams::default(), &widget).await?;
    let stored = api.get("small").await?;
    assert_eq!(stored.data["spec"]["size"], 3);
    Ok(())
}

#[tokio::test]
async fn an_object_violating_the_schema_is_rejected() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await;
    install_widget_crd(plane).await?;
    let namespace = plane.create_namespace("schema").await?;
    let api = widgets(plane.admin_client().await?, &namespace);
    for (name, spec) in [
        ("too-big", json!({"size": 11})),
        ("not-a-number", json!({"size": "large"})),
        ("missing", json!({})),
    ] {
        let widget: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "test.originstack.dev/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": spec
        }))?;
        match api.create(&PostParams::default(), &widget).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(
                    status.message.contains("spec.size"),
                    "{name}: {}",
                    status.message
                );
            }
            other => panic!("{name} was not rejected: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_configmap_changed_by_server_side_apply_is_seen_by_a_watch() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await;
    let namespace = plane.create_namespace("ssa").await?;
    let api: Api<ConfigMap> = Api::namespaced(plane.admin_client().await?, &namespace);
    let config = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": value}});
    api.patch(
        "settings",
        &PatchParams::apply("test"),
        &Patch::Apply(config("first")),
    )
    .await?;

    let events = watcher::watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=settings"),
    )
    .applied_objects()
    .boxed();
    let mut events = events;
    // The initial list shows the first value.
    let first = tokio::time::timeout(TIMEOUT, events.try_next())
        .await??
        .expect("an object");
    assert_eq!(first.data.as_ref().unwrap()["mode"], "first");

    let applied = api
        .patch(
            "settings",
            &PatchParams::apply("test"),
            &Patch::Apply(config("second")),
        )
        .await?;
    assert_eq!(applied.data.as_ref().unwrap()["mode"], "second");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert_eq!(
        managers,
        ["test"],
        "one field manager owns the applied fields"
    );

    let seen = tokio::time::timeout(TIMEOUT, async {
        while let Some(object) = events.try_next().await? {
            if object
                .data
                .as_ref()
                .and_then(|data| data.get("mode"))
                .map(String::as_str)
                == Some("second")
            {
                return anyhow::Ok(object);
            }
        }
        anyhow::bail!("the watch ended")
    })
    .await??;
    assert_eq!(seen.metadata.name.as_deref(), Some("settings"));
    Ok(())
}

#[tokio::test]
async fn a_service_account_without_rbac_is_refused() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await;
    let namespace = plane.create_namespace("rbac").await?;
    let client = plane.service_account_client(&namespace, "nobody").await?;

    // Authenticated (not 401), but nothing is granted: 403 on reads and writes.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    match configmaps.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{namespace}:nobody")),
                "{}",
                status.message
            );
        }
        other => panic!("listing ConfigMaps was not refused: {other:?}"),
    }
    let config: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}}))?;
    match configmaps.create(&PostParams::default(), &config).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("creating a ConfigMap was not refused: {other:?}"),
    }

    // The admin grants reading ConfigMaps: the same account may list now, still not create.
    let admin = plane.admin_client().await?;
    let rbac = json!([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-config", "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "read-config", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config"},
         "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}]}
    ]);
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), &namespace);
    roles
        .patch(
            "read-config",
            &PatchParams::apply("test"),
            &Patch::Apply(&rbac[0]),
        )
        .await?;
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin, &namespace);
    bindings
        .patch(
            "read-config",
            &PatchParams::apply("test"),
            &Patch::Apply(&rbac[1]),
        )
        .await?;
    // RBAC is read from the API server's cache: allow it a moment.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match configmaps.list(&Default::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(status))
                if status.code == 403 && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("listing after the grant: {error}"),
        }
    }
    match configmaps.create(&PostParams::default(), &config).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("creating a ConfigMap was not refused: {other:?}"),
    }
    Ok(())
}

/// A control plane of its own, restarted: data in etcd survives and clients keep working.
#[tokio::test]
async fn the_api_server_restarts_with_its_data() -> anyhow::Result<()> {
    let plane = ControlPlane::start().await?;
    let namespace = plane.create_namespace("restart").await?;
    let client = plane.admin_client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "1"}});
    api.patch("kept", &PatchParams::apply("test"), &Patch::Apply(config))
        .await?;

    plane.stop_apiserver();
    assert!(
        api.get("kept").await.is_err(),
        "the API server should be down"
    );
    plane.restart_apiserver().await?;
    let kept = api.get("kept").await?;
    assert_eq!(kept.data.unwrap()["a"], "1");
    Ok(())
}
