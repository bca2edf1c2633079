//! Prometheus metrics of the operator, served on `/metrics`.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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
        Self {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        }
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
}
