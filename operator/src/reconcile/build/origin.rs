//! The SRS origins: config, Deployment and the headless Service the proxies discover them by.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction,
            PodSpec, Probe, ResourceRequirements, Service, ServicePort, ServiceSpec, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{
    Component, env, env_from_field, env_from_secret, label_selector, metadata, pod_metadata,
    pull_policy, selector_labels, single_container_pod, srs_conf::heartbeat_url, surge_strategy,
    with_user_env,
};
use crate::{
    crd::{ImagePullPolicy, MonitoringSpec, PodOverrides, origin_ports},
    reconcile::{digest::config_hash, names::Names, validate::Plan},
};

pub const CONFIG_FILE: &str = "srs.conf";
const CONFIG_DIR: &str = "/etc/originstack";

pub fn config_map(plan: &Plan, names: &Names, srs_conf: &str) -> ConfigMap {
    ConfigMap {
        metadata: metadata(plan, names.origin_config(), Some(Component::Origin)),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            srs_conf.to_string(),
        )])),
        ..Default::default()
    }
}

/// (name, port, protocol) of the origin container, named as the proxy's discovery expects.
fn ports(plan: &Plan) -> Vec<(&'static str, i32, &'static str)> {
    let protocols = &plan.cluster.spec.origin.protocols;
    let mut ports = vec![("rtmp", origin_ports::RTMP, "TCP")];
    if protocols.http() {
        ports.push(("http", origin_ports::HTTP, "TCP"));
    }
    ports.push(("api", origin_ports::API, "TCP"));
    if protocols.webrtc {
        ports.push(("rtc", origin_ports::RTC, "UDP"));
    }
    if protocols.srt {
        ports.push(("srt", origin_ports::SRT, "UDP"));
    }
    ports
}

/// The container's ports: the Service's, and SRS's exporter when on (scraped per pod by a
/// PodMonitor, so not on the Service the proxies discover origins through).
fn container_ports(plan: &Plan) -> Vec<(&'static str, i32, &'static str)> {
    let mut ports = ports(plan);
    if MonitoringSpec::origin_exporter_on(plan.cluster.spec.monitoring.as_ref()) {
        ports.push(("exporter", origin_ports::EXPORTER, "TCP"));
    }
    ports
}

/// Headless: the proxies need each origin's own address, never a load-balanced one.
pub fn headless_service(plan: &Plan, names: &Names) -> Service {
    Service {
        metadata: metadata(plan, names.origin(), Some(Component::Origin)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(plan, Component::Origin)),
            ports: Some(
                ports(plan)
                    .into_iter()
                    .map(|(name, port, protocol)| ServicePort {
                        name: Some(name.into()),
                        port,
                        protocol: Some(protocol.into()),
                        target_port: Some(IntOrString::String(name.into())),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn deployment(plan: &Plan, names: &Names, srs_conf: &str) -> Deployment {
    let spec = &plan.cluster.spec.origin;
    let mut operator_env = vec![
        env_from_secret("ORIGINSTACK_REGISTER_TOKEN", &plan.token.secret),
        // Kubernetes expands $(VAR) from variables defined earlier in the list. The token goes
        // in the path: SRS posts its heartbeat to the URL's path only and drops any query.
        env(
            "SRS_HEARTBEAT_URL",
            format!(
                "{}/$(ORIGINSTACK_REGISTER_TOKEN)",
                heartbeat_url(plan, names)
            ),
        ),
        env_from_field("SRS_HEARTBEAT_DEVICE_ID", "metadata.name"),
        // The heartbeat's `server`: the pod name lasts across container restarts, so a
        // restarted SRS (new `service` and `pid`) is told from a new origin.
        env_from_field("SRS_SERVER_ID", "metadata.name"),
        // The heartbeat's `ip`: without it SRS reports one of its addresses by index.
        env_from_field("SRS_DEVICE_IP", "status.podIP"),
    ];
    if spec.protocols.webrtc {
        // `candidate $CANDIDATE;` in srs.conf: the proxy relays media to the pod itself.
        operator_env.push(env_from_field("ORIGINSTACK_POD_IP", "status.podIP"));
        operator_env.push(env("CANDIDATE", "$(ORIGINSTACK_POD_IP)"));
    }
    let pod_spec = srs_pod_spec(SrsPod {
        image: &spec.image,
        image_pull_policy: spec.image_pull_policy,
        ports: container_ports(plan),
        env: with_user_env(operator_env, &spec.env),
        resources: spec.resources.clone(),
        overrides: &spec.pod,
        config_map: names.origin_config(),
    });
    let hash = config_hash(&[srs_conf, &plan.token.fingerprint]);
    Deployment {
        metadata: metadata(plan, names.origin(), Some(Component::Origin)),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: label_selector(plan, Component::Origin),
            strategy: Some(surge_strategy()),
            template: k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: Some(pod_metadata(plan, Component::Origin, &spec.pod, hash)),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What differs between the SRS pods of origins and edges; the rest is [`srs_pod_spec`]'s.
pub(super) struct SrsPod<'a> {
    pub image: &'a str,
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// (name, port, protocol) of the container's ports.
    pub ports: Vec<(&'static str, i32, &'static str)>,
    pub env: Option<Vec<EnvVar>>,
    pub resources: Option<ResourceRequirements>,
    pub overrides: &'a PodOverrides,
    /// The ConfigMap holding the pod's srs.conf.
    pub config_map: String,
}

/// The SRS container, run as the image lays it out, with its srs.conf mounted from a
/// ConfigMap and probed on the HTTP API.
pub(super) fn srs_pod_spec(pod: SrsPod) -> PodSpec {
    let api_probe = |initial_delay, period, failures| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/api/v1/versions".into()),
            port: IntOrString::String("api".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    let container = Container {
        name: "srs".into(),
        image: Some(pod.image.to_string()),
        image_pull_policy: pull_policy(pod.image_pull_policy),
        working_dir: Some("/usr/local/srs".into()),
        command: Some(vec![
            "./objs/srs".into(),
            "-c".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        ports: Some(
            pod.ports
                .into_iter()
                .map(|(name, port, protocol)| ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some(protocol.into()),
                    ..Default::default()
                })
                .collect(),
        ),
        env: pod.env,
        resources: pod.resources,
        readiness_probe: Some(api_probe(2, 5, 3)),
        liveness_probe: Some(api_probe(10, 10, 6)),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut pod_spec = single_container_pod(container, pod.overrides);
    pod_spec.volumes = Some(vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: pod.config_map,
            ..Default::default()
        }),
        ..Default::default()
    }]);
    pod_spec
}
