//! The operator's RBAC is least privilege, proven three ways:
//!
//! 1. the chart's rule templates are what `originstack_operator::access` generates;
//! 2. the rendered chart grants exactly `access::grants()`, in the right places, to the
//!    ServiceAccount the Deployment runs as (all namespaces, and `watchNamespace`);
//! 3. the real binary, bound to nothing but the rendered RBAC on a real API server with an
//!    audit log, brings a cluster to Ready, prunes leftovers of every owned kind and is never
//!    refused, and the audit log shows it used every grant (nothing granted goes unused).

mod support;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client, ResourceExt};
use originstack_e2e::{
    ChildGuard, free_port,
    helm::{self, Helm, Render},
    kube::{ControlPlane, ControlPlaneOptions},
    manifests::{self, Apply},
};
use originstack_operator::{
    access::{self, Grant, Names, Scope},
    crd::{OriginCluster, condition as types},
    kinds::{OwnedKind, ResourceId},
};
use serde_json::{Value, json};
use support::*;

const LEASE_NAME: &str = "originstack-operator";

#[test]
fn the_chart_rules_are_generated_from_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(access::HELM_RULES_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == access::helm_rules_template(),
        "{} is out of date with operator/src/access.rs; regenerate it with\n  \
         cargo run -p originstack-operator -- rbac > {}",
        path.display(),
        access::HELM_RULES_PATH
    );
}

/// Where a grant applies, concretely.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Cluster,
    Namespace(String),
}

type Concrete = (Place, ResourceId, String, Names);

/// What the code needs, placed as the chart must place it.
fn needed(watch: Option<&str>, lease_namespace: &str) -> BTreeSet<Concrete> {
    access::grants()
        .into_iter()
        .map(|grant| {
            let place = match (grant.scope, watch) {
                (Scope::Lease, _) => Place::Namespace(lease_namespace.into()),
                (Scope::Watched, Some(namespace)) => Place::Namespace(namespace.into()),
                (Scope::Watched, None) => Place::Cluster,
            };
            (place, grant.resource, grant.verb, grant.names)
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn env_of(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|entry| entry["name"] == name)?["value"]
        .as_str()
        .map(String::from)
}

/// What the rendered chart grants the operator's ServiceAccount, following its bindings.
fn granted(documents: &[Value], release_namespace: &str) -> BTreeSet<Concrete> {
    let deployment = helm::find(documents, "Deployment", None)[0];
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("the Deployment names its ServiceAccount");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let lease_name = env_of(container, "OPERATOR_LEASE_NAME").unwrap_or_default();
    let mut out = BTreeSet::new();
    for binding_kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in helm::find(documents, binding_kind, None) {
            let binds_us = binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == account
                        && s["namespace"] == release_namespace
                });
            if !binds_us {
                continue;
            }
            let place = match binding["metadata"]["namespace"].as_str() {
                Some(namespace) if binding_kind == "RoleBinding" => {
                    Place::Namespace(namespace.into())
                }
                _ => Place::Cluster,
            };
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
            let role_name = binding["roleRef"]["name"].as_str();
            let role = helm::find(documents, role_kind, role_name)
                .into_iter()
                .find(|role| {
                    role_kind == "ClusterRole"
                        || role["metadata"]["namespace"] == binding["metadata"]["namespace"]
                })
                .unwrap_or_else(|| panic!("{binding_kind} refers to a missing {role_kind}"));
            for rule in role["rules"].as_array().into_iter().flatten() {
                let names = match strings(&rule["resourceNames"]).as_slice() {
                    [] => Names::Any,
                    [only] if *only == lease_name => Names::TheLease,
                    other => panic!("unexpected resourceNames {other:?}"),
                };
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            out.insert((
                                place.clone(),
                                ResourceId::new(&group, &resource),
                                verb,
                                names,
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn assert_same<T: Ord + std::fmt::Debug>(what: &str, expected: &BTreeSet<T>, actual: &BTreeSet<T>) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}:\n  needed but not there: {missing:#?}\n  there but not needed: {extra:#?}"
    );
}

#[test]
fn the_chart_grants_exactly_what_the_operator_uses() {
    let helm = Helm::find().unwrap();
    // (case, --set values, the watched namespace they mean)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Option<&'a str>);
    let cases: [Case; 3] = [
        ("all namespaces", vec![], None),
        (
            "one namespace",
            vec![("watchNamespace", "streaming".into())],
            Some("streaming"),
        ),
        (
            "one namespace, another Lease name",
            vec![
                ("watchNamespace", "streaming".into()),
                ("leaderElection.leaseName", "custom-lease".into()),
            ],
            Some("streaming"),
        ),
    ];
    for (case, set, watch) in cases {
        let documents = helm
            .render(&Render {
                release: "os",
                namespace: "operators",
                set,
                ..Default::default()
            })
            .unwrap();
        assert_same(
            case,
            &needed(watch, "operators"),
            &granted(&documents, "operators"),
        );
        let container = &helm::find(&documents, "Deployment", None)[0]["spec"]["template"]["spec"]
            ["containers"][0];
        // The operator looks where the RBAC allows it to.
        assert_eq!(
            env_of(container, "OPERATOR_NAMESPACE").as_deref(),
            watch,
            "{case}"
        );
        assert_eq!(
            env_of(container, "OPERATOR_LEASE_NAMESPACE").as_deref(),
            Some("operators"),
            "{case}"
        );
        if watch.is_some() {
            for kind in ["ClusterRole", "ClusterRoleBinding"] {
                assert!(
                    helm::find(&documents, kind, None).is_empty(),
                    "{case}: nothing cluster-wide but the CRD, yet a {kind} is rendered"
                );
            }
        }
    }
}

/// What the audit log shows a user did, as grants (a server-side apply that created an object
/// used `create` as well as `patch`: the API server authorizes both).
fn exercised(events: &[Value], lease_namespace: &str, lease_name: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for event in events {
        let reference = &event["objectRef"];
        let Some(resource) = reference["resource"].as_str() else {
            continue; // not a resource request (/version)
        };
        let resource = match reference["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let group = reference["apiGroup"].as_str().unwrap_or("");
        let lease = resource == "leases" && reference["namespace"] == lease_namespace;
        let scope = if lease { Scope::Lease } else { Scope::Watched };
        let verb = event["verb"].as_str().unwrap_or_default();
        let names = if lease && verb != "create" && reference["name"] == lease_name {
            Names::TheLease
        } else {
            Names::Any
        };
        let mut add = |verb: &str| {
            out.insert(Grant {
                scope,
                resource: ResourceId::new(group, &resource),
                verb: verb.into(),
                names,
            });
        };
        add(verb);
        if verb == "patch" && event["responseStatus"]["code"] == 201 {
            add("create");
        }
    }
    out
}

/// An object of `kind` labelled and controlled like the operator's own, but not in the spec:
/// what an older operator version might have left behind.
fn leftover(kind: OwnedKind, cluster: &OriginCluster, namespace: &str) -> Value {
    let name = format!("{}-leftover", cluster.name_any());
    let pods = json!({"matchLabels": {"leftover": "yes"}});
    let (api_version, spec) = match kind {
        OwnedKind::Secret | OwnedKind::ConfigMap | OwnedKind::ServiceAccount => ("v1", json!({})),
        OwnedKind::Role => ("rbac.authorization.k8s.io/v1", json!({"rules": []})),
        OwnedKind::RoleBinding => (
            "rbac.authorization.k8s.io/v1",
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }),
        ),
        OwnedKind::Service => ("v1", json!({"spec": {"ports": [{"port": 1}]}})),
        OwnedKind::Deployment => (
            "apps/v1",
            json!({"spec": {
                "selector": pods,
                "template": {
                    "metadata": {"labels": {"leftover": "yes"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            }}),
        ),
        OwnedKind::HorizontalPodAutoscaler => (
            "autoscaling/v2",
            json!({"spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "maxReplicas": 1,
            }}),
        ),
        OwnedKind::PodDisruptionBudget => (
            "policy/v1",
            json!({"spec": {"selector": pods, "maxUnavailable": 1}}),
        ),
        OwnedKind::NetworkPolicy => (
            "networking.k8s.io/v1",
            json!({"spec": {"podSelector": pods}}),
        ),
        OwnedKind::PodMonitor => (
            "monitoring.coreos.com/v1",
            json!({"spec": {"selector": pods, "podMetricsEndpoints": [{"port": "metrics"}]}}),
        ),
    };
    let mut object = json!({
        "apiVersion": api_version,
        "kind": kind.as_str(),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "originstack-operator",
                "originstack.dev/cluster": cluster.name_any(),
            },
            "ownerReferences": [{
                "apiVersion": "originstack.dev/v1alpha1",
                "kind": "OriginCluster",
                "name": cluster.name_any(),
                "uid": cluster.uid().unwrap(),
                "controller": true,
            }],
        },
    });
    object
        .as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    object
}

/// Every rendered document but the CRD, applied for real by the admin (as `helm install`).
async fn install_chart(admin: &Client, documents: &[Value], release_namespace: &str) {
    let crds: Vec<Value> = helm::find(documents, "CustomResourceDefinition", None)
        .into_iter()
        .cloned()
        .collect();
    let how = Apply {
        manager: "helm",
        namespace: release_namespace,
        dry_run: false,
    };
    manifests::apply(admin, &crds, how).await.unwrap();
    let crd_api = Api::all(admin.clone());
    tokio::time::timeout(
        TIMEOUT,
        kube::runtime::wait::await_condition(
            crd_api,
            "originclusters.originstack.dev",
            kube::runtime::conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the chart's CRD becomes Established")
    .unwrap();
    let rest: Vec<Value> = documents
        .iter()
        .filter(|doc| doc["kind"] != "CustomResourceDefinition")
        .cloned()
        .collect();
    manifests::apply(admin, &rest, how).await.unwrap();
}

/// The operator binary configured as the chart's Deployment configures it, with the
/// ServiceAccount's token only.
fn start_operator(
    container: &Value,
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
) -> (ChildGuard, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_originstack-operator"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap();
        let value = match (
            &entry["value"],
            &entry["valueFrom"]["fieldRef"]["fieldPath"],
        ) {
            (Value::String(value), _) => value.clone(),
            (_, Value::String(path)) if path == "metadata.name" => "operator-0".into(),
            other => panic!("{name}: cannot stand in for {other:?}"),
        };
        command.env(name, value);
    }
    command
        .args(strings(&container["args"]))
        .env("KUBECONFIG", kubeconfig)
        // The pod's port would be 0.0.0.0:8080; tests share the machine.
        .env("OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::fs::File::create(dir.join("operator.log")).unwrap())
        .stderr(Stdio::inherit());
    (
        ChildGuard::spawn("originstack-operator", &mut command).unwrap(),
        port,
    )
}

/// On a failing test, prints what the operator logged and what the API server refused it.
struct Diagnostics<'a> {
    plane: &'a ControlPlane,
    user: String,
    log: PathBuf,
}

impl Drop for Diagnostics<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let refused = self
            .plane
            .audit_events(&self.user)
            .unwrap_or_default()
            .into_iter()
            .filter(|event| event["responseStatus"]["code"].as_u64().unwrap_or(0) >= 400)
            .map(|event| {
                format!(
                    "{} {} {}: {}",
                    event["verb"],
                    event["objectRef"],
                    event["responseStatus"]["code"],
                    event["responseStatus"]["message"]
                )
            })
            .collect::<Vec<_>>();
        eprintln!(
            "requests of {} that failed: {refused:#?}\noperator log:\n{}",
            self.user,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

async fn least_privilege_run(watch_namespace: bool) {
    let plane = ControlPlane::start_with(ControlPlaneOptions { audit: true })
        .await
        .unwrap();
    let admin = plane.admin_client().await.unwrap();
    let operators = plane.create_namespace("operators").await.unwrap();
    let apps = plane.create_namespace("apps").await.unwrap();
    let mut set = vec![];
    if watch_namespace {
        set.push(("watchNamespace", apps.clone()));
    }
    let documents = Helm::find()
        .unwrap()
        .render(&Render {
            release: "os",
            namespace: &operators,
            set,
            ..Default::default()
        })
        .unwrap();
    install_chart(&admin, &documents, &operators).await;
    // Prometheus Operator's CRDs are there: the operator watches, creates and prunes
    // PodMonitors too.
    install_podmonitor_crd(&admin).await;

    let pod = &helm::find(&documents, "Deployment", None)[0]["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"].as_str().unwrap();
    let kubeconfig = plane
        .service_account_kubeconfig(&operators, account)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut operator, port) = start_operator(&pod["containers"][0], &kubeconfig, dir.path());
    let user = ControlPlane::service_account_user(&operators, account);
    let _diagnostics = Diagnostics {
        plane: &plane,
        user: user.clone(),
        log: dir.path().join("operator.log"),
    };
    let log = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    eventually("the operator leads", || async {
        let (_, body) = http_get(port, "/metrics").ok()?;
        body.lines()
            .any(|line| line == "originstack_operator_leader 1")
            .then_some(())
    })
    .await;

    // A cluster with every owned kind (managed Redis, autoscaled edges, PodMonitors) becomes
    // Ready.
    let name = apply_example(&admin, &apps, "edge").await;
    patch_spec(
        &admin,
        &apps,
        &name,
        json!({"monitoring": {"enabled": true}}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &apps);
    for suffix in ["-origin", "-proxy", "-edge", "-redis"] {
        let deployment = format!("{name}{suffix}");
        eventually(&format!("Deployment {deployment}"), || async {
            deployments.get_opt(&deployment).await.ok()?.map(|_| ())
        })
        .await;
        if suffix == "-edge" {
            scale_as_autoscaler(&admin, &apps, &deployment, 2).await;
        }
        mark_ready(&admin, &apps, &deployment).await;
    }
    wait_condition(&admin, &apps, &name, types::READY, "True").await;

    // Leftovers of every owned kind, created while paused, are pruned in one reconcile after
    // (one Event created, the repeats patched).
    patch_spec(&admin, &apps, &name, json!({"paused": true})).await;
    wait_condition(&admin, &apps, &name, types::PAUSED, "True").await;
    let cluster = get_cluster(&admin, &apps, &name).await;
    let leftovers: Vec<Value> = OwnedKind::ALL
        .iter()
        .map(|&kind| leftover(kind, &cluster, &apps))
        .collect();
    let how = Apply {
        manager: USER,
        namespace: &apps,
        dry_run: false,
    };
    manifests::apply(&admin, &leftovers, how).await.unwrap();
    patch_spec(&admin, &apps, &name, json!({"paused": false})).await;
    let leftover_name = format!("{name}-leftover");
    let selector =
        format!("app.kubernetes.io/managed-by=originstack-operator,originstack.dev/cluster={name}");
    eventually("every leftover pruned", || async {
        for kind in OwnedKind::ALL {
            let listed = kind.list(&admin, &apps, &selector).await.ok()?;
            if listed
                .iter()
                .any(|meta| meta.name.as_deref() == Some(&leftover_name))
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    wait_condition(&admin, &apps, &name, types::READY, "True").await;

    // SIGTERM: the Lease is released (an update) on the way out.
    operator.signal("TERM").unwrap();
    let status = operator
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .expect("the operator exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", log());

    let events = plane.audit_events(&user).unwrap();
    let refused: Vec<String> = events
        .iter()
        .filter(|event| event["responseStatus"]["code"] == 403)
        .map(|event| format!("{} {}", event["verb"], event["objectRef"]))
        .collect();
    assert!(
        refused.is_empty(),
        "refused requests: {refused:#?}\nlog:\n{}",
        log()
    );
    if watch_namespace {
        let elsewhere: Vec<String> = events
            .iter()
            .filter(|event| {
                let namespace = &event["objectRef"]["namespace"];
                event["objectRef"].is_object()
                    && *namespace != apps.as_str()
                    && *namespace != operators.as_str()
            })
            .map(|event| format!("{} {}", event["verb"], event["objectRef"]))
            .collect();
        assert!(
            elsewhere.is_empty(),
            "requests outside the watched namespace: {elsewhere:#?}"
        );
    }
    let used_directly: BTreeSet<Grant> = access::grants()
        .difference(&access::delegated_grants())
        .cloned()
        .collect();
    assert_same(
        "granted (access::grants, less what is only passed on) vs. used (the audit log)",
        &used_directly,
        &exercised(&events, &operators, LEASE_NAME),
    );
}

/// The grants the operator holds only to pass them on are really needed for that: without
/// them the API server refuses to let it write the proxies' Role (RBAC escalation check).
#[tokio::test]
async fn writing_the_proxies_role_needs_the_delegated_grants() {
    let plane = ControlPlane::shared().await;
    let admin = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("delegation").await.unwrap();
    let how = Apply {
        manager: USER,
        namespace: &namespace,
        dry_run: false,
    };
    let writer_rules = |with_delegated: bool| {
        let mut rules = vec![json!({
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"],
            "verbs": ["create", "patch"],
        })];
        if with_delegated {
            for grant in access::delegated_grants() {
                rules.push(json!({
                    "apiGroups": [grant.resource.group],
                    "resources": [grant.resource.resource],
                    "verbs": [grant.verb],
                }));
            }
        }
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "writer"}, "rules": rules,
        })
    };
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": namespace}],
    });
    manifests::apply(&admin, &[writer_rules(false), binding], how)
        .await
        .unwrap();
    let writer = plane
        .service_account_client(&namespace, "writer")
        .await
        .unwrap();
    let proxies_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "proxies"},
        "rules": originstack_operator::reconcile::build::proxy_rules(),
    });
    // RBAC caches take a moment to see a new binding: wait for the plain rights first (a
    // Role with no rules is within anyone's reach), then check the refusal.
    let empty_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "empty"}, "rules": [],
    });
    eventually("the writer may write Roles", || async {
        manifests::apply(&writer, std::slice::from_ref(&empty_role), how)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let refused = manifests::apply(&writer, std::slice::from_ref(&proxies_role), how)
        .await
        .expect_err("granting what the writer does not hold is refused");
    assert!(
        format!("{refused:#}").contains("attempting to grant RBAC permissions not currently held"),
        "{refused:#}"
    );
    manifests::apply(&admin, &[writer_rules(true)], how)
        .await
        .unwrap();
    eventually(
        "holding the delegated grants, the writer may write the proxies' Role",
        || async {
            manifests::apply(&writer, std::slice::from_ref(&proxies_role), how)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn bound_only_to_the_chart_rbac_the_operator_works_and_uses_all_of_it() {
    least_privilege_run(false).await;
}

#[tokio::test]
async fn watching_one_namespace_the_operator_needs_nothing_cluster_wide() {
    least_privilege_run(true).await;
}
