//! PodMonitors for Prometheus Operator (`spec.monitoring`): the proxies' `/metrics` on their
//! system port, and the origins' SRS exporter when `originExporter` is on.

use super::{Component, label_selector, metadata};
use crate::{
    crd::MonitoringSpec,
    podmonitor::{PodMetricsEndpoint, PodMonitor, PodMonitorSpec},
    reconcile::{names::Names, validate::Plan},
};

/// The pod label whose value (the OriginCluster's name) becomes the proxies' `job`: the chart's
/// alerts and dashboard take a job for one cluster.
pub const JOB_LABEL: &str = "app.kubernetes.io/instance";

pub fn pod_monitors(plan: &Plan, names: &Names, monitoring: &MonitoringSpec) -> Vec<PodMonitor> {
    let monitor = |name: String, component: Component, port: &str, job_label: Option<&str>| {
        let mut metadata = metadata(plan, name, Some(component));
        // The operator's own labels win: they find the object again for pruning.
        let mut labels = monitoring.labels.clone();
        labels.extend(metadata.labels.take().unwrap_or_default());
        metadata.labels = Some(labels);
        PodMonitor {
            metadata,
            spec: PodMonitorSpec {
                job_label: job_label.map(str::to_string),
                selector: label_selector(plan, component),
                pod_metrics_endpoints: vec![PodMetricsEndpoint {
                    port: port.into(),
                    path: "/metrics".into(),
                    interval: monitoring.interval.clone(),
                }],
            },
        }
    };
    let mut monitors = vec![monitor(
        names.proxy(),
        Component::Proxy,
        "system",
        Some(JOB_LABEL),
    )];
    if monitoring.origin_exporter {
        // SRS serves its exporter's `/metrics` on the exporter port. Its own job
        // (`<namespace>/<name>-origin`, the default), apart from the proxies'.
        monitors.push(monitor(names.origin(), Component::Origin, "exporter", None));
    }
    monitors
}
