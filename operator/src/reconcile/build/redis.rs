//! The managed Redis: one pod holding stream ownership for the proxies.
//!
//! Ownership is soft state the origins' heartbeats and the proxies rebuild, so Redis runs
//! without persistence; a NetworkPolicy keeps everyone but the proxies out, as it has no
//! password.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Container, ContainerPort, EmptyDirVolumeSource, ExecAction, PodSecurityContext,
            PodTemplateSpec, Probe, SecurityContext, Service, ServicePort, ServiceSpec,
            TCPSocketAction, Volume, VolumeMount,
        },
        networking::v1::{
            NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
            NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{
    Component, label_selector, metadata, pod_metadata, proxy::REDIS_PORT, selector_labels,
};
use crate::{
    crd::{ManagedRedis, PodOverrides},
    kinds::Owned,
    reconcile::{digest::config_hash, names::Names, validate::Plan},
};

pub fn objects(plan: &Plan, names: &Names, managed: &ManagedRedis) -> [Owned; 3] {
    [
        deployment(plan, names, managed).into(),
        service(plan, names).into(),
        network_policy(plan, names).into(),
    ]
}

fn deployment(plan: &Plan, names: &Names, managed: &ManagedRedis) -> Deployment {
    let container = Container {
        name: "redis".into(),
        image: Some(managed.image.clone()),
        args: Some(
            [
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
                // Reached over the pod network; access is limited by the NetworkPolicy.
                "--protected-mode",
                "no",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: managed.resources.clone(),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["redis-cli".into(), "ping".into()]),
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".into()),
                host: None,
            }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let pod_spec = k8s_openapi::api::core::v1::PodSpec {
        containers: vec![container],
        enable_service_links: Some(false),
        // The redis user of the official image.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(999),
            fs_group: Some(999),
            ..Default::default()
        }),
        volumes: Some(vec![Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Deployment {
        metadata: metadata(plan, names.redis(), Some(Component::Redis)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: label_selector(plan, Component::Redis),
            // Two Redis pods would split ownership between them; never run both.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(
                    plan,
                    Component::Redis,
                    &PodOverrides::default(),
                    config_hash(&[&managed.image]),
                )),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(plan: &Plan, names: &Names) -> Service {
    Service {
        metadata: metadata(plan, names.redis(), Some(Component::Redis)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(plan, Component::Redis)),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: REDIS_PORT,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("redis".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn network_policy(plan: &Plan, names: &Names) -> NetworkPolicy {
    NetworkPolicy {
        metadata: metadata(plan, names.redis(), Some(Component::Redis)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(label_selector(plan, Component::Redis)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(plan, Component::Proxy)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    }
}
