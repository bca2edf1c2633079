//! Status stage: `status` computed from the objects as the API server returned them.

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Service},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{
    build::{Component, pod_selector},
    error::Error,
    names::Names,
};
use crate::{
    crd::{
        EdgeEndpoints, Endpoints, OriginCluster, OriginClusterStatus, RedisMode, ReplicaCounts,
        condition,
    },
    kinds::{FIELD_MANAGER, Owned, OwnedKind},
    podmonitor,
};

/// How the reconcile went, as far as the status is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Everything desired was applied.
    Applied,
    /// `spec.paused`: nothing was written.
    Paused,
    /// A stage failed; the objects are whatever could be read.
    Failed(&'a Error),
}

/// A Deployment's progress towards the desired replica count.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rollout {
    desired: i32,
    ready: i32,
    done: bool,
}

fn rollout(deployment: Option<&Deployment>, desired: i32) -> Rollout {
    let Some(deployment) = deployment else {
        return Rollout {
            desired,
            ready: 0,
            done: false,
        };
    };
    let status = deployment.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    // The Deployment controller has seen the current template, every pod runs it, and no old
    // pod is left.
    let current =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(1);
    let done = current && updated >= desired && ready >= desired && total == updated;
    Rollout {
        desired,
        ready,
        done,
    }
}

pub fn compute(
    cluster: &OriginCluster,
    objects: &[Owned],
    outcome: Outcome,
    now: Timestamp,
) -> OriginClusterStatus {
    let names = Names::new(&cluster.name_any());
    let namespace = cluster.namespace().unwrap_or_default();
    let deployment = |name: String| {
        objects
            .iter()
            .filter_map(Owned::as_deployment)
            .find(|d| d.metadata.name.as_deref() == Some(&name))
    };
    let spec = &cluster.spec;
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.meta().generation;

    let origins = rollout(deployment(names.origin()), spec.origin.replicas);
    let proxies = rollout(deployment(names.proxy()), spec.proxy.replicas);
    let redis =
        (spec.redis.mode == RedisMode::Managed).then(|| rollout(deployment(names.redis()), 1));
    let edges = spec.edge.as_ref().map(|edge| {
        let current = deployment(names.edge());
        let desired = match &edge.autoscaling {
            // The autoscaler's choice, within its bounds: a new Deployment starts at one
            // replica until the autoscaler raises it to its minimum, and Ready waits for that.
            Some(autoscaling) => current
                .and_then(|d| d.spec.as_ref()?.replicas)
                .unwrap_or(autoscaling.min_replicas)
                .clamp(
                    autoscaling.min_replicas,
                    autoscaling.max_replicas.max(autoscaling.min_replicas),
                ),
            None => edge.replicas,
        };
        rollout(current, desired)
    });
    let all_done = origins.done
        && proxies.done
        && redis.is_none_or(|r| r.done)
        && edges.is_none_or(|e| e.done);

    let counts = |rollout: Rollout, selector: Option<String>| ReplicaCounts {
        desired: rollout.desired,
        ready: rollout.ready,
        selector,
    };
    let origin_selector = pod_selector(&cluster.name_any(), Component::Origin);
    let edge_selector = pod_selector(&cluster.name_any(), Component::Edge);
    let nothing_read = objects.is_empty() && matches!(outcome, Outcome::Failed(_));
    let (origin_counts, proxy_counts, redis_counts, edge_counts, endpoints) = if nothing_read {
        // The failure came before anything could be read: keep what was last known.
        (
            previous.origins.clone(),
            previous.proxies.clone(),
            previous.redis.clone(),
            previous.edges.clone(),
            previous.endpoints.clone(),
        )
    } else {
        (
            counts(origins, Some(origin_selector)),
            counts(proxies, None),
            redis.map(|r| counts(r, None)),
            edges.map(|e| counts(e, Some(edge_selector))),
            endpoints(cluster, &names, &namespace, objects),
        )
    };

    let optional = |name: &str, counts: &Option<ReplicaCounts>| {
        counts
            .as_ref()
            .map(|c| format!(", {name} {}/{} ready", c.ready, c.desired))
            .unwrap_or_default()
    };
    let waiting = format!(
        "origins {}/{} ready, proxies {}/{} ready{}{}",
        origin_counts.ready,
        origin_counts.desired,
        proxy_counts.ready,
        proxy_counts.desired,
        optional("edges", &edge_counts),
        optional("redis", &redis_counts),
    );
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        new_condition(
            &previous.conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        )
    };
    let mut conditions = Vec::with_capacity(4);
    match outcome {
        Outcome::Failed(error) => {
            let reason = error.reason();
            conditions.push(condition(
                condition::READY,
                false,
                reason,
                error.to_string(),
            ));
            conditions.push(condition(
                condition::PROGRESSING,
                false,
                reason,
                "reconcile failed; retrying".into(),
            ));
            conditions.push(condition(
                condition::DEGRADED,
                true,
                reason,
                error.to_string(),
            ));
        }
        Outcome::Applied | Outcome::Paused => {
            let (reason, message) = if all_done {
                ("AllReplicasReady", waiting.clone())
            } else {
                ("ReplicasNotReady", waiting.clone())
            };
            conditions.push(condition(condition::READY, all_done, reason, message));
            conditions.push(match (outcome, all_done) {
                (Outcome::Paused, _) => condition(
                    condition::PROGRESSING,
                    false,
                    "Paused",
                    "spec.paused is true: no changes are applied".into(),
                ),
                (_, true) => condition(
                    condition::PROGRESSING,
                    false,
                    "RolledOut",
                    "every replica runs the current spec".into(),
                ),
                (_, false) => condition(
                    condition::PROGRESSING,
                    true,
                    "RollingOut",
                    format!("waiting: {waiting}"),
                ),
            });
            conditions.push(condition(
                condition::DEGRADED,
                false,
                "AsExpected",
                "the last reconcile succeeded".into(),
            ));
        }
    }
    if spec.monitoring.as_ref().is_some_and(|m| m.enabled) {
        let monitors: Vec<String> = objects
            .iter()
            .filter(|object| object.kind() == OwnedKind::PodMonitor)
            .map(Owned::name)
            .collect();
        let previous_monitoring = previous
            .conditions
            .iter()
            .find(|c| c.type_ == condition::MONITORING)
            .cloned();
        match outcome {
            // Built whenever the API server serves them: none applied means it does not.
            Outcome::Applied if monitors.is_empty() => conditions.push(condition(
                condition::MONITORING,
                false,
                "PodMonitorCRDMissing",
                format!(
                    "spec.monitoring is enabled but the API server serves no {} PodMonitors: install Prometheus Operator's CRDs (the PodMonitors follow at the next resync)",
                    podmonitor::API_VERSION,
                ),
            )),
            Outcome::Applied => conditions.push(condition(
                condition::MONITORING,
                true,
                "PodMonitorsApplied",
                format!(
                    "PodMonitor {} applied; the proxies are scraped as job {:?}",
                    monitors.join(", "),
                    cluster.name_any()
                ),
            )),
            // Nothing was applied: what was last known still holds.
            Outcome::Paused | Outcome::Failed(_) => conditions.extend(previous_monitoring),
        }
    }
    conditions.push(if spec.paused {
        condition(
            condition::PAUSED,
            true,
            "PausedBySpec",
            "spec.paused is true: owned objects are left as they are".into(),
        )
    } else {
        condition(
            condition::PAUSED,
            false,
            "NotPaused",
            "changes to the spec are applied".into(),
        )
    });

    OriginClusterStatus {
        observed_generation: generation,
        conditions,
        origins: origin_counts,
        proxies: proxy_counts,
        redis: redis_counts,
        edges: edge_counts,
        endpoints,
    }
}

/// A condition whose `lastTransitionTime` moves only when its status changes.
fn new_condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Client URLs: the load balancer's address when it has one, else the Service's cluster name.
fn endpoints(
    cluster: &OriginCluster,
    names: &Names,
    namespace: &str,
    objects: &[Owned],
) -> Endpoints {
    let service = |name: String| {
        objects
            .iter()
            .filter_map(Owned::as_service)
            .find(|s| s.metadata.name.as_deref() == Some(&name))
    };
    let host = |service: Option<&Service>, name: &str| {
        service
            .and_then(|s| {
                s.status
                    .as_ref()?
                    .load_balancer
                    .as_ref()?
                    .ingress
                    .as_ref()?
                    .first()
                    .cloned()
            })
            .and_then(|ingress| ingress.ip.or(ingress.hostname))
            .unwrap_or_else(|| format!("{name}.{namespace}.svc"))
    };
    let tcp = service(names.proxy());
    let udp = service(names.proxy_udp());
    let tcp_host = host(tcp, &names.proxy());
    let udp_host = host(udp, &names.proxy_udp());
    let protocols = &cluster.spec.origin.protocols;
    let ports = &cluster.spec.proxy.service.ports;
    let url = |enabled: bool, scheme: &str, host: &str, port: i32| {
        enabled.then(|| format!("{scheme}://{host}:{port}"))
    };
    let edge = cluster.spec.edge.as_ref().map(|edge| {
        let host = host(service(names.edge()), &names.edge());
        let ports = &edge.service.ports;
        EdgeEndpoints {
            rtmp: url(edge.protocols.rtmp, "rtmp", &host, ports.rtmp),
            http: url(edge.protocols.http_flv, "http", &host, ports.http),
        }
    });
    Endpoints {
        rtmp: url(protocols.rtmp, "rtmp", &tcp_host, ports.rtmp),
        http: url(protocols.http(), "http", &tcp_host, ports.http),
        api: url(protocols.webrtc, "http", &tcp_host, ports.api),
        webrtc: url(protocols.webrtc, "udp", &udp_host, ports.webrtc),
        srt: url(protocols.srt, "srt", &udp_host, ports.srt),
        edge,
    }
}

/// Writes `status` unless it is already the stored one (no write, no watch event, no loop).
pub async fn write(
    client: &Client,
    cluster: &OriginCluster,
    status: OriginClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<OriginCluster> =
        Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": OriginCluster::api_version(&()),
        "kind": OriginCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status { source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    use super::*;

    fn deployment(generation: i64, status: Option<DeploymentStatus>) -> Deployment {
        let mut deployment = Deployment {
            status,
            ..Default::default()
        };
        deployment.metadata.generation = Some(generation);
        deployment
    }

    fn ready(replicas: i32, observed_generation: i64) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed_generation),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..Default::default()
        }
    }

    #[test]
    fn a_rollout_is_done_only_for_the_current_generation() {
        assert!(rollout(Some(&deployment(2, Some(ready(3, 2)))), 3).done);
        assert!(
            !rollout(Some(&deployment(3, Some(ready(3, 2)))), 3).done,
            "old generation"
        );
        assert!(
            !rollout(Some(&deployment(2, Some(ready(2, 2)))), 3).done,
            "too few"
        );
        assert!(
            !rollout(Some(&deployment(1, None)), 1).done,
            "no status yet"
        );
        assert!(!rollout(None, 1).done, "not created");
        let mut surge = ready(3, 2);
        surge.replicas = Some(4);
        assert!(
            !rollout(Some(&deployment(2, Some(surge))), 3).done,
            "an old pod is left"
        );
        assert_eq!(rollout(Some(&deployment(2, Some(ready(2, 2)))), 3).ready, 2);
    }

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let then = Timestamp::from_second(1_000).unwrap();
        let now = Timestamp::from_second(2_000).unwrap();
        let first = new_condition(
            &[],
            "Ready",
            false,
            "ReplicasNotReady",
            "m".into(),
            Some(1),
            then,
        );
        assert_eq!(first.last_transition_time, Time(then));
        let same = new_condition(
            std::slice::from_ref(&first),
            "Ready",
            false,
            "Other",
            "m2".into(),
            Some(2),
            now,
        );
        assert_eq!(same.last_transition_time, Time(then));
        let flipped = new_condition(
            &[first],
            "Ready",
            true,
            "AllReplicasReady",
            "m".into(),
            Some(2),
            now,
        );
        assert_eq!(flipped.last_transition_time, Time(now));
    }
}
