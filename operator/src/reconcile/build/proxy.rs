//! The proxy replicas and the Services clients and origins reach them by.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, HTTPGetAction, PodSecurityContext,
            PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service, ServicePort,
            ServiceSpec,
        },
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{
    Component, Exposure, client_service, env, env_from_field, env_from_secret, label_selector,
    metadata, pod_metadata, pull_policy, selector_labels, service_port, single_container_pod,
    surge_strategy, with_user_env,
};
use crate::{
    crd::PROXY_SYSTEM_PORT,
    reconcile::{
        digest::config_hash,
        names::Names,
        validate::{Plan, RedisPlan},
    },
};

/// Port of the managed Redis Service.
pub const REDIS_PORT: i32 = 6379;

/// The proxy refuses heartbeats from addresses that are not endpoints of the origin Service.
const REQUIRE_DISCOVERED_ENV: &str = "PROXY_REGISTER_REQUIRE_DISCOVERED";
const API_TOKEN_ENV: &str = "PROXY_API_TOKEN";

/// A listener of the proxy: its port name, number and protocol.
struct Listener {
    name: &'static str,
    port: i32,
    protocol: &'static str,
}

/// The client listeners of the enabled protocols (the system API is not for clients).
fn client_listeners(plan: &Plan) -> Vec<Listener> {
    let protocols = &plan.cluster.spec.origin.protocols;
    let ports = &plan.cluster.spec.proxy.service.ports;
    let mut listeners = Vec::new();
    if protocols.rtmp {
        listeners.push(Listener {
            name: "rtmp",
            port: ports.rtmp,
            protocol: "TCP",
        });
    }
    if protocols.http() {
        listeners.push(Listener {
            name: "http",
            port: ports.http,
            protocol: "TCP",
        });
    }
    if protocols.webrtc {
        // WHIP/WHEP signalling.
        listeners.push(Listener {
            name: "api",
            port: ports.api,
            protocol: "TCP",
        });
        listeners.push(Listener {
            name: "webrtc",
            port: ports.webrtc,
            protocol: "UDP",
        });
    }
    if protocols.srt {
        listeners.push(Listener {
            name: "srt",
            port: ports.srt,
            protocol: "UDP",
        });
    }
    listeners
}

/// Client Services, one per transport (many load balancers cannot mix TCP and UDP), and the
/// system Service origins heartbeat to.
pub fn services(plan: &Plan, names: &Names) -> Vec<Service> {
    let listeners = client_listeners(plan);
    let mut services = Vec::new();
    for (name, protocol) in [(names.proxy(), "TCP"), (names.proxy_udp(), "UDP")] {
        let ports: Vec<ServicePort> = listeners
            .iter()
            .filter(|listener| listener.protocol == protocol)
            .map(|listener| service_port(listener.name, listener.port, listener.protocol))
            .collect();
        if !ports.is_empty() {
            let service = &plan.cluster.spec.proxy.service;
            let exposure = Exposure {
                type_: service.type_,
                annotations: &service.annotations,
                load_balancer_class: service.load_balancer_class.as_deref(),
                external_traffic_policy: service.external_traffic_policy,
            };
            services.push(client_service(
                plan,
                name,
                Component::Proxy,
                &exposure,
                ports,
            ));
        }
    }
    services.push(Service {
        metadata: metadata(plan, names.proxy_system(), Some(Component::Proxy)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(plan, Component::Proxy)),
            ports: Some(vec![service_port("system", PROXY_SYSTEM_PORT, "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    });
    services
}

pub fn deployment(plan: &Plan, names: &Names) -> Deployment {
    let spec = &plan.cluster.spec.proxy;
    let ports = &spec.service.ports;
    let mut operator_env = vec![
        env("PROXY_RTMP_SERVER", ports.rtmp.to_string()),
        env("PROXY_HTTP_SERVER", ports.http.to_string()),
        env("PROXY_HTTP_API", ports.api.to_string()),
        env("PROXY_WEBRTC_SERVER", ports.webrtc.to_string()),
        env("PROXY_SRT_SERVER", ports.srt.to_string()),
        env("PROXY_SYSTEM_API", PROXY_SYSTEM_PORT.to_string()),
        env("PROXY_K8S_DISCOVERY", "on"),
        env("PROXY_K8S_ORIGIN_SERVICE", names.origin()),
        // The Service lives in the pod's namespace (where the proxy's Role grants the watch).
        env_from_field("PROXY_K8S_NAMESPACE", "metadata.namespace"),
        env_from_secret("PROXY_REGISTER_TOKEN", &plan.token.secret),
    ];
    // Only the origin Service's endpoints may register, heartbeating from their own address.
    // A default, not reserved: behind source NAT or a mesh that hides the origins' addresses
    // users set it `off` in spec.proxy.env (discovery still finds every origin).
    if !spec
        .env
        .iter()
        .any(|var| var.name == REQUIRE_DISCOVERED_ENV)
    {
        operator_env.push(env(REQUIRE_DISCOVERED_ENV, "on"));
    }
    // SRS serves a stream of a vhost it has no block for as the default vhost's; the proxies
    // must own streams the same way, so they learn the vhosts the origins have.
    if !plan.origin_vhosts.is_empty() {
        let vhosts: Vec<&str> = plan.origin_vhosts.iter().map(String::as_str).collect();
        operator_env.push(env("PROXY_VHOSTS", vhosts.join(",")));
    }
    // Fingerprints of secret values the pods read at start, so a new value rolls them.
    let mut secret_fingerprints = vec![plan.token.fingerprint.clone()];
    // The listings' read token; a PROXY_API_TOKEN of the user's in spec.proxy.env wins.
    if let Some(read) = &plan.token.read
        && !spec.env.iter().any(|var| var.name == API_TOKEN_ENV)
    {
        operator_env.push(env_from_secret(API_TOKEN_ENV, &read.secret));
        secret_fingerprints.push(read.fingerprint.clone());
    }
    match &plan.redis {
        RedisPlan::Memory => operator_env.push(env("PROXY_LOAD_BALANCER_TYPE", "memory")),
        RedisPlan::Managed(_) => operator_env.extend([
            env("PROXY_LOAD_BALANCER_TYPE", "redis"),
            env("PROXY_REDIS_HOST", names.redis()),
            env("PROXY_REDIS_PORT", REDIS_PORT.to_string()),
        ]),
        RedisPlan::ExternalUrl(url) => operator_env.extend([
            env("PROXY_LOAD_BALANCER_TYPE", "redis"),
            env("PROXY_REDIS_URL", url.clone()),
        ]),
        RedisPlan::ExternalWithPassword {
            host,
            port,
            db,
            password,
            fingerprint,
        } => {
            operator_env.extend([
                env("PROXY_LOAD_BALANCER_TYPE", "redis"),
                env("PROXY_REDIS_HOST", host.clone()),
                env("PROXY_REDIS_PORT", port.to_string()),
                env("PROXY_REDIS_DB", db.to_string()),
                env_from_secret("PROXY_REDIS_PASSWORD", password),
            ]);
            secret_fingerprints.push(fingerprint.clone());
        }
    }
    if let Some(candidate) = &spec.webrtc_candidate {
        operator_env.push(env("PROXY_WEBRTC_CANDIDATE", candidate.clone()));
    }

    let mut container_ports: Vec<ContainerPort> = client_listeners(plan)
        .into_iter()
        .map(|listener| ContainerPort {
            name: Some(listener.name.into()),
            container_port: listener.port,
            protocol: Some(listener.protocol.into()),
            ..Default::default()
        })
        .collect();
    container_ports.push(ContainerPort {
        name: Some("system".into()),
        container_port: PROXY_SYSTEM_PORT,
        protocol: Some("TCP".into()),
        ..Default::default()
    });

    let system_probe = |path: &str, period, failures| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("system".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    let container = Container {
        name: "proxy".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: pull_policy(spec.image_pull_policy),
        ports: Some(container_ports),
        env: with_user_env(operator_env, &spec.env),
        resources: spec.resources.clone(),
        readiness_probe: Some(system_probe("/readyz", 5, 2)),
        liveness_probe: Some(system_probe("/healthz", 10, 6)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod_spec = single_container_pod(container, &spec.pod);
    pod_spec.service_account_name = Some(names.proxy());
    pod_spec.security_context = Some(PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    });
    // Long enough for PROXY_FORCE_QUIT_TIMEOUT (30s) to let sessions drain.
    pod_spec.termination_grace_period_seconds = Some(40);
    let fingerprints: Vec<&str> = secret_fingerprints.iter().map(String::as_str).collect();

    Deployment {
        metadata: metadata(plan, names.proxy(), Some(Component::Proxy)),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: label_selector(plan, Component::Proxy),
            strategy: Some(surge_strategy()),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(
                    plan,
                    Component::Proxy,
                    &spec.pod,
                    config_hash(&fingerprints),
                )),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
