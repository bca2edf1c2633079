//! Prometheus metrics of the operator, served on `/metrics`.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use kube::{ResourceExt, runtime::reflector::Store};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType, counter::Counter, family::Family, gauge::ConstGauge, gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::crd::OriginCluster;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ReasonLabel, Counter>,
    duration: Histogram,
    leader: Gauge,
    clusters: ClusterConditions,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("originstack_operator");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "OriginCluster reconciles run",
            reconciles.clone(),
        );
        let errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed OriginCluster reconciles by reason",
            errors.clone(),
        );
        // 5 ms … ~20 s: a reconcile is a handful of API calls.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.005, 2.0, 13,
        ));
        registry.register_with_unit(
            "reconcile_duration",
            "Time of one OriginCluster reconcile",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica holds the leader lease (standbys report 0)",
            leader.clone(),
        );
        let clusters = ClusterConditions::default();
        registry.register_collector(Box::new(clusters.clone()));
        Self {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            clusters,
        }
    }

    /// Reports the conditions of the OriginClusters in `store` (the controller's cache) until
    /// [`Metrics::forget_clusters`]: read at scrape time, so a deleted cluster leaves no series.
    pub fn watch_clusters(&self, store: Store<OriginCluster>) {
        *self.clusters.store.write().expect("cluster store") = Some(store);
    }

    /// The controller stopped (leadership lost, shutdown): its cache is no longer current.
    pub fn forget_clusters(&self) {
        *self.clusters.store.write().expect("cluster store") = None;
    }

    pub fn observe_reconcile(&self, elapsed: Duration, error_reason: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    pub fn errors(&self, reason: &str) -> u64 {
        self.errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// `cluster_condition`: every condition of every OriginCluster the controller caches, 1 while
/// True. Labels `cluster_namespace` and `cluster`, not `namespace`, which a scrape sets to the
/// operator's own.
#[derive(Clone, Debug, Default)]
struct ClusterConditions {
    store: Arc<RwLock<Option<Store<OriginCluster>>>>,
}

impl Collector for ClusterConditions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "cluster_condition",
            "1 while the OriginCluster's condition (Ready, Progressing, Degraded, Paused) is True, by cluster; reported by the leader",
            None,
            MetricType::Gauge,
        )?;
        let store = self.store.read().expect("cluster store");
        for cluster in store.iter().flat_map(Store::state) {
            let namespace = cluster.namespace().unwrap_or_default();
            let name = cluster.name_any();
            for condition in cluster.status.iter().flat_map(|s| &s.conditions) {
                let labels = [
                    ("cluster_namespace", namespace.as_str()),
                    ("cluster", name.as_str()),
                    ("type", condition.type_.as_str()),
                ];
                ConstGauge::new(i64::from(condition.status == "True"))
                    .encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_reconciles_errors_by_reason_and_durations() {
        let metrics = Metrics::new();
        metrics.observe_reconcile(Duration::from_millis(12), None);
        metrics.observe_reconcile(Duration::from_millis(30), Some("ApplyFailed"));
        metrics.set_leader(true);
        let text = metrics.encode();
        assert!(
            text.contains("originstack_operator_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("originstack_operator_reconcile_errors_total{reason=\"ApplyFailed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("originstack_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line == "originstack_operator_leader 1"),
            "{text}"
        );
        assert_eq!(metrics.errors("ApplyFailed"), 1);
    }

    #[test]
    fn reports_the_conditions_of_the_cached_clusters() {
        let metrics = Metrics::new();
        let (store, mut writer) = kube::runtime::reflector::store::<OriginCluster>();
        let condition = |type_: &str, status: &str| {
            serde_json::json!({"type": type_, "status": status, "reason": "R", "message": "m",
                "lastTransitionTime": "2026-12-05T08:00:00Z", "observedGeneration": 1})
        };
        let cluster: OriginCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
            "metadata": {"name": "live", "namespace": "media", "uid": "u1"},
            "spec": {},
            "status": {"conditions": [condition("Ready", "False"), condition("Degraded", "True")]},
        }))
        .unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cluster));
        metrics.watch_clusters(store);
        let text = metrics.encode();
        for (type_, value) in [("Ready", 0), ("Degraded", 1)] {
            let sample = format!(
                "originstack_operator_cluster_condition{{cluster_namespace=\"media\",cluster=\"live\",type=\"{type_}\"}} {value}"
            );
            assert!(text.lines().any(|line| line == sample), "{text}");
        }
        metrics.forget_clusters();
        assert!(
            !metrics.encode().contains("cluster=\"live\""),
            "a stopped controller's cache is not reported"
        );
    }
}
