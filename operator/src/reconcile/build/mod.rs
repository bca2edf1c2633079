//! Build stage: the desired owned objects as pure functions of a validated [`Plan`].
//!
//! No I/O and no clock here: the same plan always yields the same objects, which the golden
//! tests in `operator/tests/build_golden.rs` pin down.

mod disruption;
mod edge;
mod monitoring;
mod origin;
mod proxy;
mod rbac;
mod redis;
mod srs_conf;

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, Secret,
            SecretKeySelector, Service, ServicePort, ServiceSpec,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::core::ObjectMeta;

pub use self::{
    monitoring::JOB_LABEL as MONITORING_JOB_LABEL, rbac::proxy_rules,
    srs_conf::render as render_srs_conf,
};
use super::{
    names::Names,
    validate::{Monitors, Plan, RedisPlan},
};
use crate::{
    crd::{ExternalTrafficPolicy, ImagePullPolicy, PodOverrides, SecretKeyRef, ServiceType},
    kinds::{Owned, OwnedKind},
};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "originstack-operator";
pub const CLUSTER_LABEL: &str = "originstack.dev/cluster";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Pod-template annotation whose change rolls the pods when generated config or a referenced
/// secret value changes.
pub const CONFIG_HASH_ANNOTATION: &str = "originstack.dev/config-hash";

/// The parts of a cluster, each with its own pods or purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Origin,
    Proxy,
    Redis,
    Edge,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Origin => "origin",
            Component::Proxy => "proxy",
            Component::Redis => "redis",
            Component::Edge => "edge",
        }
    }
}

/// Every object the plan asks for, in apply order.
pub fn build(plan: &Plan) -> Vec<Owned> {
    let names = Names::new(&plan.name);
    let srs_conf = srs_conf::render(plan, &names);
    let mut objects: Vec<Owned> = Vec::new();
    if let Some(value) = &plan.token.generated {
        objects.push(token_secret(plan, value).into());
    }
    objects.push(origin::config_map(plan, &names, &srs_conf).into());
    objects.extend(rbac::proxy_identity(plan, &names));
    objects.push(origin::headless_service(plan, &names).into());
    objects.extend(proxy::services(plan, &names).into_iter().map(Owned::from));
    objects.push(origin::deployment(plan, &names, &srs_conf).into());
    objects.push(proxy::deployment(plan, &names).into());
    if let Some(edge) = &plan.cluster.spec.edge {
        objects.extend(edge::objects(plan, &names, edge));
    }
    if let RedisPlan::Managed(managed) = &plan.redis {
        objects.extend(redis::objects(plan, &names, managed));
    }
    objects.extend(
        disruption::budgets(plan, &names)
            .into_iter()
            .map(Owned::from),
    );
    if let (Monitors::Build, Some(monitoring)) = (plan.monitors, &plan.cluster.spec.monitoring) {
        objects.extend(
            monitoring::pod_monitors(plan, &names, monitoring)
                .into_iter()
                .map(Owned::from),
        );
    }
    objects.sort_by_key(|object| kind_order(object.kind()));
    objects
}

fn kind_order(kind: OwnedKind) -> usize {
    OwnedKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// Labels every owned object carries; `originstack.dev/cluster` plus managed-by is how
/// leftovers are found.
pub fn labels(plan: &Plan, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "originstack".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), plan.name.clone()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (CLUSTER_LABEL.to_string(), plan.name.clone()),
    ]);
    if let Some(component) = component {
        labels.insert(COMPONENT_LABEL.to_string(), component.as_str().to_string());
    }
    labels
}

/// The label selector of one component's pods (immutable on a Deployment: keep it minimal).
pub fn selector_labels(plan: &Plan, component: Component) -> BTreeMap<String, String> {
    component_selector(&plan.name, component)
}

fn component_selector(cluster_name: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_LABEL.to_string(), cluster_name.to_string()),
        (COMPONENT_LABEL.to_string(), component.as_str().to_string()),
    ])
}

/// The label selector string of owned objects for the prune step.
pub fn owned_selector(cluster_name: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{CLUSTER_LABEL}={cluster_name}")
}

/// One component's pod selector as a string (the scale subresource's `selector`).
pub fn pod_selector(cluster_name: &str, component: Component) -> String {
    component_selector(cluster_name, component)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn label_selector(plan: &Plan, component: Component) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(plan, component)),
        ..Default::default()
    }
}

/// Metadata of an owned object: name, namespace, labels and the controller owner reference.
fn metadata(plan: &Plan, name: String, component: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(labels(plan, component)),
        owner_references: Some(vec![plan.owner.clone()]),
        ..Default::default()
    }
}

/// Pod-template metadata: the user's labels and annotations under the operator's own (which
/// win: the selector must keep matching).
fn pod_metadata(
    plan: &Plan,
    component: Component,
    overrides: &PodOverrides,
    config_hash: String,
) -> ObjectMeta {
    let mut labels = overrides.labels.clone();
    labels.extend(self::labels(plan, Some(component)));
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), config_hash);
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// The pod spec fields users override, applied to a pod spec built by the operator.
fn apply_pod_overrides(spec: &mut PodSpec, overrides: &PodOverrides) {
    spec.node_selector =
        (!overrides.node_selector.is_empty()).then(|| overrides.node_selector.clone());
    spec.tolerations = (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone());
    spec.affinity = overrides.affinity.clone();
    spec.topology_spread_constraints = (!overrides.topology_spread_constraints.is_empty())
        .then(|| overrides.topology_spread_constraints.clone());
    spec.image_pull_secrets =
        (!overrides.image_pull_secrets.is_empty()).then(|| overrides.image_pull_secrets.clone());
    spec.priority_class_name = overrides.priority_class_name.clone();
}

/// New pods come up before old ones go: a stream lives on one pod, never drop capacity.
fn surge_strategy() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

fn pull_policy(policy: Option<ImagePullPolicy>) -> Option<String> {
    policy.map(|policy| policy.as_str().to_string())
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_from_secret(name: &str, reference: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// The user's variables after the operator's (validation refused overlaps).
fn with_user_env(mut operator_env: Vec<EnvVar>, user_env: &[EnvVar]) -> Option<Vec<EnvVar>> {
    operator_env.extend(user_env.iter().cloned());
    Some(operator_env)
}

fn service_port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::String(name.into())),
        ..Default::default()
    }
}

/// How a client Service is exposed: what the proxy and edge Service specs share.
struct Exposure<'a> {
    type_: ServiceType,
    annotations: &'a BTreeMap<String, String>,
    load_balancer_class: Option<&'a str>,
    external_traffic_policy: Option<ExternalTrafficPolicy>,
}

/// A Service clients reach one component's pods by. Settings the type cannot take are left
/// out (the CRD's rules refuse them; an older CRD might not).
fn client_service(
    plan: &Plan,
    name: String,
    component: Component,
    exposure: &Exposure,
    ports: Vec<ServicePort>,
) -> Service {
    let mut metadata = metadata(plan, name, Some(component));
    if !exposure.annotations.is_empty() {
        metadata.annotations = Some(exposure.annotations.clone());
    }
    let load_balancer = exposure.type_ == ServiceType::LoadBalancer;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(exposure.type_.as_str().into()),
            selector: Some(selector_labels(plan, component)),
            ports: Some(ports),
            load_balancer_class: exposure
                .load_balancer_class
                .filter(|_| load_balancer)
                .map(Into::into),
            external_traffic_policy: exposure
                .external_traffic_policy
                .filter(|_| exposure.type_ != ServiceType::ClusterIP)
                .map(|policy| policy.as_str().into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn single_container_pod(container: Container, overrides: &PodOverrides) -> PodSpec {
    let mut spec = PodSpec {
        containers: vec![container],
        // Service links would inject one variable per Service of the namespace; SRS reads
        // `SRS_*` variables as config overrides, so stray ones could change its behaviour.
        enable_service_links: Some(false),
        ..Default::default()
    };
    apply_pod_overrides(&mut spec, overrides);
    spec
}

/// The register-token Secret the operator generates (and keeps) when the spec names none; it
/// holds the proxies' read token too.
fn token_secret(plan: &Plan, value: &str) -> Secret {
    let mut data = BTreeMap::from([(
        plan.token.secret.key.clone(),
        ByteString(value.as_bytes().to_vec()),
    )]);
    if let Some(read) = &plan.token.read {
        data.insert(
            read.secret.key.clone(),
            ByteString(read.value.as_bytes().to_vec()),
        );
    }
    Secret {
        metadata: metadata(plan, plan.token.secret.name.clone(), None),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}
