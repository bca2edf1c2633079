//! The reconciler against a real kube-apiserver: the examples, readiness, config rollouts,
//! Redis mode switches, pause, drift, failures and the API server's own validation.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use originstack_operator::{
    crd::{OriginCluster, condition as types},
    kinds::{FIELD_MANAGER, OwnedKind},
    reconcile::{
        build::{self, CONFIG_HASH_ANNOTATION, owned_selector},
        read, validate,
    },
};
use serde_json::json;
use support::*;

/// (kind, name) of every object the operator owns for `cluster`, as listed from the server.
async fn owned_objects(
    client: &Client,
    namespace: &str,
    cluster: &OriginCluster,
) -> BTreeSet<(String, String)> {
    let uid = cluster.uid().expect("uid");
    let mut found = BTreeSet::new();
    for &kind in OwnedKind::ALL {
        for meta in kind
            .list(client, namespace, &owned_selector(&cluster.name_any()))
            .await
            .expect("list")
        {
            let owned = meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true));
            assert!(
                owned,
                "{} {:?} carries the labels but no controller reference",
                kind.as_str(),
                meta.name
            );
            let managers: Vec<_> = meta
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.manager.clone())
                .collect();
            assert!(
                managers.iter().any(|m| m == FIELD_MANAGER),
                "{} {:?} managers {managers:?}",
                kind.as_str(),
                meta.name
            );
            found.insert((kind.as_str().to_string(), meta.name.unwrap_or_default()));
        }
    }
    found
}

/// What the build stage asks for, computed from the stored cluster (same inputs as the
/// reconciler).
async fn desired_objects(client: &Client, cluster: &OriginCluster) -> BTreeSet<(String, String)> {
    let observed = read::observe(client, cluster).await.expect("read");
    let plan = validate::validate(cluster, &observed).expect("valid");
    build::build(&plan)
        .iter()
        .map(|o| (o.kind().as_str().to_string(), o.name()))
        .collect()
}

async fn deployment(client: &Client, namespace: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("Deployment")
}

fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    let container = &deployment.spec.as_ref()?.template.spec.as_ref()?.containers[0];
    let var = container.env.as_ref()?.iter().find(|v| v.name == name)?;
    var.value.clone().or_else(|| {
        let from = var.value_from.as_ref()?;
        from.secret_key_ref
            .as_ref()
            .map(|s| format!("secret:{}/{}", s.name, s.key))
    })
}

fn template_hash(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

#[tokio::test]
async fn every_example_becomes_its_owned_objects_and_status() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    for example in ["minimal", "production", "external-redis", "webrtc"] {
        let namespace = plane
            .create_namespace(&format!("ex-{example}"))
            .await
            .unwrap();
        let _operator = Operator::start(plane, &namespace).await;
        let name = apply_example(&client, &namespace, example).await;
        let cluster = wait_observed(&client, &namespace, &name).await;

        let desired = desired_objects(&client, &cluster).await;
        let owned = eventually("every desired object on the server", || async {
            let owned = owned_objects(&client, &namespace, &cluster).await;
            (owned == desired).then_some(owned)
        })
        .await;
        let has = |kind: &str, suffix: &str| {
            owned.contains(&(kind.to_string(), format!("{name}{suffix}")))
        };
        for (kind, suffix) in [
            ("ConfigMap", "-origin-config"),
            ("Deployment", "-origin"),
            ("Service", "-origin"),
            ("Deployment", "-proxy"),
            ("Service", "-proxy-system"),
            ("ServiceAccount", "-proxy"),
            ("Role", "-proxy"),
            ("RoleBinding", "-proxy"),
        ] {
            assert!(
                has(kind, suffix),
                "{example}: no {kind} {name}{suffix} in {owned:?}"
            );
        }

        let status = cluster.status.clone().unwrap();
        assert_eq!(
            status.origins.desired, cluster.spec.origin.replicas,
            "{example}"
        );
        assert_eq!(
            status.proxies.desired, cluster.spec.proxy.replicas,
            "{example}"
        );
        assert_eq!(
            status.origins.ready, 0,
            "{example}: no kubelet, no ready pod"
        );
        assert_eq!(
            status.origins.selector.as_deref(),
            Some(
                format!("app.kubernetes.io/component=origin,originstack.dev/cluster={name}")
                    .as_str()
            )
        );
        let ready = condition(&cluster, types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ReplicasNotReady"),
            "{example}"
        );
        assert_eq!(
            condition(&cluster, types::PROGRESSING).unwrap().status,
            "True",
            "{example}"
        );
        assert_eq!(
            condition(&cluster, types::DEGRADED).unwrap().status,
            "False",
            "{example}"
        );
        assert_eq!(
            condition(&cluster, types::PAUSED).unwrap().status,
            "False",
            "{example}"
        );
        assert_eq!(
            status.endpoints.rtmp,
            Some(format!("rtmp://{name}-proxy.{namespace}.svc:1935")),
            "{example}"
        );

        let proxy = deployment(&client, &namespace, &format!("{name}-proxy")).await;
        assert_eq!(
            env_value(&proxy, "PROXY_K8S_ORIGIN_SERVICE"),
            Some(format!("{name}-origin"))
        );
        match example {
            "minimal" => {
                assert_eq!(
                    env_value(&proxy, "PROXY_LOAD_BALANCER_TYPE").as_deref(),
                    Some("memory")
                );
                assert!(!has("Deployment", "-redis"));
                assert!(status.redis.is_none());
                assert_eq!(
                    env_value(&proxy, "PROXY_REGISTER_TOKEN"),
                    Some(format!("secret:{name}-register-token/token")),
                    "generated token Secret"
                );
                assert!(has("Secret", "-register-token"));
            }
            "production" => {
                assert_eq!(
                    env_value(&proxy, "PROXY_REDIS_HOST"),
                    Some(format!("{name}-redis"))
                );
                for (kind, suffix) in [
                    ("Deployment", "-redis"),
                    ("Service", "-redis"),
                    ("NetworkPolicy", "-redis"),
                ] {
                    assert!(has(kind, suffix), "production: no {kind} {name}{suffix}");
                }
                assert!(
                    has("PodDisruptionBudget", "-origin") && has("PodDisruptionBudget", "-proxy")
                );
                let service = Api::<Service>::namespaced(client.clone(), &namespace)
                    .get(&format!("{name}-proxy"))
                    .await
                    .unwrap();
                let spec = service.spec.unwrap();
                assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
                assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
                assert_eq!(status.redis.as_ref().map(|r| r.desired), Some(1));
                let origin = deployment(&client, &namespace, &format!("{name}-origin")).await;
                let pod = origin.spec.unwrap().template.spec.unwrap();
                assert_eq!(pod.topology_spread_constraints.map(|t| t.len()), Some(2));
            }
            "external-redis" => {
                assert_eq!(
                    env_value(&proxy, "PROXY_REDIS_HOST").as_deref(),
                    Some("redis.streaming.svc.cluster.local")
                );
                assert_eq!(env_value(&proxy, "PROXY_REDIS_DB").as_deref(), Some("2"));
                assert_eq!(
                    env_value(&proxy, "PROXY_REDIS_PASSWORD").as_deref(),
                    Some("secret:stream-redis/password")
                );
                assert!(!has("Deployment", "-redis"));
            }
            "webrtc" => {
                assert!(has("Service", "-proxy-udp"), "media needs a UDP Service");
                assert_eq!(
                    env_value(&proxy, "PROXY_WEBRTC_CANDIDATE").as_deref(),
                    Some("203.0.113.10")
                );
                assert_eq!(
                    env_value(&proxy, "PROXY_REGISTER_TOKEN").as_deref(),
                    Some("secret:realtime-register-token/token"),
                    "the user's token Secret"
                );
                assert!(
                    !has("Secret", "-register-token"),
                    "no generated token when one is given"
                );
                let origin = deployment(&client, &namespace, &format!("{name}-origin")).await;
                assert_eq!(
                    env_value(&origin, "CANDIDATE").as_deref(),
                    Some("$(ORIGINSTACK_POD_IP)")
                );
                assert_eq!(
                    status.endpoints.srt,
                    Some(format!("srt://{name}-proxy-udp.{namespace}.svc:10080"))
                );
                assert!(status.endpoints.api.is_some() && status.endpoints.webrtc.is_some());
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test]
async fn ready_once_the_deployments_report_ready() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("ready").await.unwrap();
    let operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "production").await;
    wait_observed(&client, &namespace, &name).await;
    // A reconcile that succeeded (on a loaded machine the first may time out).
    let before = wait_condition(&client, &namespace, &name, types::DEGRADED, "False").await;
    let failures_before = failed_reconciles(&operator);
    let degraded_since = condition(&before, types::DEGRADED)
        .unwrap()
        .last_transition_time
        .clone();

    for suffix in ["-origin", "-proxy"] {
        mark_ready(&client, &namespace, &format!("{name}{suffix}")).await;
    }
    // Redis is part of the cluster: still not Ready without it.
    let waiting = eventually("origins and proxies counted ready", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        (cluster.status.as_ref()?.proxies.ready == 3).then_some(cluster)
    })
    .await;
    assert_eq!(condition(&waiting, types::READY).unwrap().status, "False");
    assert!(
        condition(&waiting, types::READY)
            .unwrap()
            .message
            .contains("redis 0/1")
    );

    mark_ready(&client, &namespace, &format!("{name}-redis")).await;
    let ready = wait_condition(&client, &namespace, &name, types::READY, "True").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        status.observed_generation, ready.metadata.generation,
        "status of the current generation"
    );
    assert_eq!((status.origins.ready, status.proxies.ready), (5, 3));
    let ready_condition = condition(&ready, types::READY).unwrap();
    assert_eq!(ready_condition.reason, "AllReplicasReady");
    assert_eq!(
        ready_condition.observed_generation,
        ready.metadata.generation
    );
    assert_eq!(
        condition(&ready, types::PROGRESSING).unwrap().status,
        "False"
    );
    let degraded = condition(&ready, types::DEGRADED).unwrap();
    assert_eq!(degraded.status, "False");
    // A reconcile that failed meanwhile (an API call timing out on a loaded machine) made
    // Degraded True for a while: then its transition time rightly moved.
    let failures = failed_reconciles(&operator) - failures_before;
    if failures == 0 {
        assert_eq!(
            degraded.last_transition_time, degraded_since,
            "an unchanged condition keeps its transition time"
        );
    } else {
        eprintln!("{failures} reconcile(s) failed meanwhile: Degraded changed and changed back");
    }
}

/// Failed reconciles of any reason, from the operator's own metrics.
fn failed_reconciles(operator: &Operator) -> u64 {
    operator
        .metrics
        .encode()
        .lines()
        .filter(|line| line.starts_with("originstack_operator_reconcile_errors_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_config_change_rolls_the_origins() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("config").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "minimal").await;
    wait_observed(&client, &namespace, &name).await;
    let origin_name = format!("{name}-origin");
    for suffix in ["-origin", "-proxy"] {
        mark_ready(&client, &namespace, &format!("{name}{suffix}")).await;
    }
    wait_condition(&client, &namespace, &name, types::READY, "True").await;
    let before = deployment(&client, &namespace, &origin_name).await;
    let proxy_before = deployment(&client, &namespace, &format!("{name}-proxy")).await;

    let changed = patch_spec(
        &client,
        &namespace,
        &name,
        json!({"origin": {"config": "max_connections 3000;\n"}}),
    )
    .await;
    let after = eventually("a new origin pod template", || async {
        let after = deployment(&client, &namespace, &origin_name).await;
        (template_hash(&after) != template_hash(&before)).then_some(after)
    })
    .await;
    assert!(
        after.metadata.generation > before.metadata.generation,
        "the template change is a new rollout"
    );
    let config = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get(&format!("{name}-origin-config"))
        .await
        .unwrap();
    assert!(config.data.unwrap()["srs.conf"].contains("max_connections 3000;"));
    let proxy_after = deployment(&client, &namespace, &format!("{name}-proxy")).await;
    assert_eq!(
        template_hash(&proxy_after),
        template_hash(&proxy_before),
        "proxies are not rolled for origin config"
    );

    // Until the new pods are ready the cluster is progressing again.
    let cluster = wait_observed(&client, &namespace, &name).await;
    assert_eq!(cluster.metadata.generation, changed.metadata.generation);
    assert_eq!(condition(&cluster, types::READY).unwrap().status, "False");
    assert_eq!(
        condition(&cluster, types::PROGRESSING).unwrap().status,
        "True"
    );
    mark_ready(&client, &namespace, &origin_name).await;
    wait_condition(&client, &namespace, &name, types::READY, "True").await;

    // An invalid extra config is refused before anything is written.
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"origin": {"config": "vhost x {\n"}}),
    )
    .await;
    let degraded = eventually("Degraded for the config", || async {
        let cluster = get_cluster(&client, &namespace, &name).await;
        let degraded = condition(&cluster, types::DEGRADED)?;
        (degraded.status == "True").then(|| degraded.clone())
    })
    .await;
    assert_eq!(degraded.reason, "InvalidOriginConfig");
    assert!(
        degraded.message.contains("spec.origin.config line 1"),
        "{}",
        degraded.message
    );
    let unchanged = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get(&format!("{name}-origin-config"))
        .await
        .unwrap();
    assert!(
        unchanged.data.unwrap()["srs.conf"].contains("max_connections 3000;"),
        "the last good config stays"
    );
}

#[tokio::test]
async fn switching_redis_mode_deletes_what_the_old_mode_needed() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("redis").await.unwrap();
    let operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "production").await;
    let redis = format!("{name}-redis");
    eventually("the managed Redis", || async {
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(&redis)
            .await
            .ok()?
    })
    .await;

    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"redis": {"mode": "external", "external": {"url": "redis://redis.shared.svc:6379/0"}}}),
    )
    .await;
    eventually("the managed Redis objects deleted", || async {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(&redis)
            .await
            .ok()?;
        let service = Api::<Service>::namespaced(client.clone(), &namespace)
            .get_opt(&redis)
            .await
            .ok()?;
        let policy = Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(
            client.clone(),
            &namespace,
        )
        .get_opt(&redis)
        .await
        .ok()?;
        (deployment.is_none() && service.is_none() && policy.is_none()).then_some(())
    })
    .await;
    let proxy = deployment(&client, &namespace, &format!("{name}-proxy")).await;
    assert_eq!(
        env_value(&proxy, "PROXY_REDIS_URL").as_deref(),
        Some("redis://redis.shared.svc:6379/0")
    );
    assert_eq!(
        env_value(&proxy, "PROXY_REDIS_HOST"),
        None,
        "no leftover variable of the managed mode"
    );
    let cluster = wait_observed(&client, &namespace, &name).await;
    assert!(cluster.status.unwrap().redis.is_none());

    // The deletion is announced as an Event on the cluster.
    wait_event(&client, &namespace, "Normal", "Pruned").await;

    // And back to one proxy without Redis: the PDB of the proxies goes too.
    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"proxy": {"replicas": 1}, "redis": {"mode": "none", "external": null}}),
    )
    .await;
    eventually("the proxies' PDB deleted", || async {
        let pdbs = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
            client.clone(),
            &namespace,
        );
        pdbs.get_opt(&format!("{name}-proxy"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(operator.metrics.reconciles() > 0);
}

#[tokio::test]
async fn a_paused_cluster_gets_status_but_no_writes() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("pause").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "minimal").await;
    wait_observed(&client, &namespace, &name).await;
    let origin_name = format!("{name}-origin");
    let config_name = format!("{name}-origin-config");
    let before = deployment(&client, &namespace, &origin_name).await;

    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"paused": true, "origin": {"replicas": 7}}),
    )
    .await;
    let paused = wait_observed(&client, &namespace, &name).await;
    let condition_paused = condition(&paused, types::PAUSED).unwrap();
    assert_eq!(
        (
            condition_paused.status.as_str(),
            condition_paused.reason.as_str()
        ),
        ("True", "PausedBySpec")
    );
    assert_eq!(
        condition(&paused, types::PROGRESSING).unwrap().reason,
        "Paused"
    );
    assert_eq!(
        paused.status.as_ref().unwrap().origins.desired,
        7,
        "status follows the spec"
    );

    // Nothing is written: not the new replica count, not a deleted object.
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    configs
        .delete(&config_name, &DeleteParams::default())
        .await
        .unwrap();
    mark_ready(&client, &namespace, &origin_name).await; // a Deployment event: the operator looks again
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let during = deployment(&client, &namespace, &origin_name).await;
    assert_eq!(
        during.spec.as_ref().unwrap().replicas,
        before.spec.as_ref().unwrap().replicas
    );
    assert_eq!(during.metadata.generation, before.metadata.generation);
    assert!(
        configs.get_opt(&config_name).await.unwrap().is_none(),
        "no write while paused"
    );

    patch_spec(&client, &namespace, &name, json!({"paused": false})).await;
    eventually("the spec applied after unpausing", || async {
        let after = deployment(&client, &namespace, &origin_name).await;
        let config = configs.get_opt(&config_name).await.ok()?;
        (after.spec?.replicas == Some(7) && config.is_some()).then_some(())
    })
    .await;
    let resumed = wait_observed(&client, &namespace, &name).await;
    assert_eq!(condition(&resumed, types::PAUSED).unwrap().status, "False");
}

#[tokio::test]
async fn drift_in_owned_objects_is_undone() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("drift").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "minimal").await;
    wait_observed(&client, &namespace, &name).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let origin_name = format!("{name}-origin");
    eventually("the origin Deployment", || async {
        deployments.get_opt(&origin_name).await.ok()?
    })
    .await;

    // Someone scales the Deployment by hand, someone deletes a Service.
    deployments
        .patch(
            &origin_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services
        .delete(&format!("{name}-proxy-system"), &DeleteParams::default())
        .await
        .unwrap();

    eventually("replicas restored", || async {
        (deployments.get(&origin_name).await.ok()?.spec?.replicas == Some(2)).then_some(())
    })
    .await;
    eventually("Service recreated", || async {
        services
            .get_opt(&format!("{name}-proxy-system"))
            .await
            .ok()?
    })
    .await;
}

#[tokio::test]
async fn a_broken_cluster_is_degraded_and_does_not_block_the_others() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("broken").await.unwrap();
    let operator = Operator::start(plane, &namespace).await;
    let broken = json!({
        "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": "broken"},
        "spec": {"proxy": {"registerTokenSecretRef": {"name": "not-yet"}}, "redis": {"mode": "none"}}
    });
    apply_cluster(&client, &namespace, &broken).await.unwrap();
    let healthy = apply_example(&client, &namespace, "minimal").await;

    let degraded = eventually("Degraded=True", || async {
        let cluster = get_cluster(&client, &namespace, "broken").await;
        let degraded = condition(&cluster, types::DEGRADED)?;
        (degraded.status == "True").then(|| (cluster.clone(), degraded.clone()))
    })
    .await;
    assert_eq!(degraded.1.reason, "SecretNotFound");
    assert!(
        degraded.1.message.contains("\"not-yet\""),
        "{}",
        degraded.1.message
    );
    assert_eq!(
        condition(&degraded.0, types::READY).unwrap().reason,
        "SecretNotFound"
    );
    wait_event(&client, &namespace, "Warning", "SecretNotFound").await;
    assert!(operator.metrics.errors("SecretNotFound") >= 1);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    assert!(
        deployments
            .get_opt("broken-origin")
            .await
            .unwrap()
            .is_none(),
        "nothing built for an invalid cluster"
    );

    // The healthy one was reconciled meanwhile.
    wait_observed(&client, &namespace, &healthy).await;
    assert!(
        deployments
            .get_opt(&format!("{healthy}-origin"))
            .await
            .unwrap()
            .is_some()
    );

    // The missing Secret appears: the retry (with backoff) picks it up.
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "not-yet"}, "stringData": {"token": "abc123"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    wait_condition(&client, &namespace, "broken", types::DEGRADED, "False").await;
    assert!(
        deployments
            .get_opt("broken-origin")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_api_server_refuses_invalid_specs_with_a_readable_message() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("invalid").await.unwrap();
    let cases = [
        (
            json!({"proxy": {"replicas": 3}, "redis": {"mode": "none"}}),
            "redis.mode none keeps stream ownership in one proxy's memory",
        ),
        (
            json!({"redis": {"mode": "external"}}),
            "redis.mode external needs redis.external.url",
        ),
        (
            json!({"redis": {"mode": "external", "external": {"url": "http://x"}}}),
            "must start with redis://",
        ),
        (json!({"redis": {"mode": "sometimes"}}), "spec.redis.mode"),
        (
            json!({"origin": {"protocols": {"rtmp": false, "httpFlv": false, "hls": false}}}),
            "enable at least one protocol",
        ),
        (json!({"origin": {"replicas": -1}}), "spec.origin.replicas"),
        (
            json!({"proxy": {"service": {"loadBalancerClass": "x"}}}),
            "loadBalancerClass needs type LoadBalancer",
        ),
    ];
    for (index, (spec, message)) in cases.into_iter().enumerate() {
        let cluster = json!({
            "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
            "metadata": {"name": format!("invalid-{index}")}, "spec": spec
        });
        match apply_cluster(&client, &namespace, &cluster).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{spec}: {status:?}");
                assert!(
                    status.message.contains(message),
                    "{spec}: {:?} lacks {message:?}",
                    status.message
                );
            }
            other => panic!("{spec} was accepted: {other:?}"),
        }
    }
    let long = json!({
        "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": "a".repeat(51)}, "spec": {}
    });
    assert!(
        apply_cluster(&client, &namespace, &long).await.is_err(),
        "names over 50 characters are refused"
    );

    // Defaults are filled in by the API server.
    let minimal = json!({
        "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster", "metadata": {"name": "defaults"}, "spec": {}
    });
    let stored = apply_cluster(&client, &namespace, &minimal).await.unwrap();
    assert_eq!(stored.spec.origin.replicas, 2);
    assert_eq!(stored.spec.proxy.replicas, 1);
    assert_eq!(stored.spec.redis.mode.as_str(), "managed");
    assert!(stored.spec.origin.protocols.rtmp && !stored.spec.origin.protocols.srt);
    assert_eq!(stored.spec.proxy.service.ports.rtmp, 1935);
    assert_eq!(OriginCluster::kind(&()), "OriginCluster");
}

#[tokio::test]
async fn the_scale_subresource_scales_the_origins() {
    let plane = cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("scale").await.unwrap();
    let _operator = Operator::start(plane, &namespace).await;
    let name = apply_example(&client, &namespace, "minimal").await;
    wait_observed(&client, &namespace, &name).await;
    let api: Api<OriginCluster> = Api::namespaced(client.clone(), &namespace);
    let scale = api.get_scale(&name).await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert!(
        scale
            .status
            .unwrap()
            .selector
            .unwrap()
            .contains("app.kubernetes.io/component=origin")
    );
    api.patch_scale(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    eventually("the origin Deployment scaled", || async {
        (deployment(&client, &namespace, &format!("{name}-origin"))
            .await
            .spec?
            .replicas
            == Some(4))
        .then_some(())
    })
    .await;
}
