//! What the registry and ownership record for `/metrics`: picks and their latency, the
//! registry as last listed, origins refused. Registered by the proxy's metrics registry; an
//! unregistered set (the `Default`) records for nobody, as tools and tests use it.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{ClaimKind, OriginStatus, PickError};

/// How a pick ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users spell them
pub enum PickResult {
    owned,
    new,
    failover,
    no_origin,
    backend_error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PickLabels {
    result: PickResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Clone, Debug)]
pub struct OriginsMetrics {
    picks: Family<PickLabels, Counter>,
    pick_duration: Histogram,
    origins_alive: Gauge,
    origins_known: Gauge,
    origins_draining: Gauge,
    origins_silent: Gauge,
    streams_owned: Family<OriginLabels, Gauge>,
    backend_up: Gauge,
    origins_refused: Counter,
}

impl Default for OriginsMetrics {
    fn default() -> Self {
        Self {
            picks: Family::default(),
            // 50 µs .. ~1.6 s: an in-memory pick sits at the bottom, a Redis round trip
            // around 100 µs.
            pick_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16),
            ),
            origins_alive: Gauge::default(),
            origins_known: Gauge::default(),
            origins_draining: Gauge::default(),
            origins_silent: Gauge::default(),
            streams_owned: Family::default(),
            backend_up: Gauge::default(),
            origins_refused: Counter::default(),
        }
    }
}

impl OriginsMetrics {
    /// A set registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "picks",
            "Origin picks for a stream, by result",
            metrics.picks.clone(),
        );
        registry.register(
            "pick_duration_seconds",
            "Time to pick an origin for a stream",
            metrics.pick_duration.clone(),
        );
        registry.register(
            "origins_alive",
            "Origins heartbeating within the TTL",
            metrics.origins_alive.clone(),
        );
        registry.register(
            "origins_known",
            "Origins in the registry, alive or not",
            metrics.origins_known.clone(),
        );
        registry.register(
            "origins_draining",
            "Origins taking no new streams: discovery sees their pods not ready or terminating",
            metrics.origins_draining.clone(),
        );
        registry.register(
            "origins_silent",
            "Origins alive through Kubernetes discovery alone: no heartbeat of their own within the TTL",
            metrics.origins_silent.clone(),
        );
        registry.register(
            "streams_owned",
            "Streams with a current lease, by origin",
            metrics.streams_owned.clone(),
        );
        registry.register(
            "backend_up",
            "1 while the load balancer backend answers",
            metrics.backend_up.clone(),
        );
        registry.register(
            "origins_refused",
            "Origins taken out of the registry because they refused a connection",
            metrics.origins_refused.clone(),
        );
        metrics
    }

    pub(super) fn origin_refused(&self) {
        self.origins_refused.inc();
    }

    pub(super) fn record_pick(&self, outcome: Result<&ClaimKind, &PickError>, took: Duration) {
        let result = match outcome {
            Ok(ClaimKind::Owned) => PickResult::owned,
            Ok(ClaimKind::New) => PickResult::new,
            Ok(ClaimKind::Failover { .. }) => PickResult::failover,
            Err(PickError::NoOrigin { .. }) => PickResult::no_origin,
            Err(PickError::Backend { .. }) => PickResult::backend_error,
        };
        self.picks.get_or_create(&PickLabels { result }).inc();
        self.pick_duration.observe(took.as_secs_f64());
    }

    /// Sets the registry gauges from a fresh listing (`None`: the backend did not answer).
    pub(super) fn set_registry(&self, origins: Option<&[OriginStatus]>) {
        self.backend_up.set(i64::from(origins.is_some()));
        let Some(origins) = origins else { return };
        self.origins_alive
            .set(origins.iter().filter(|o| o.alive).count() as i64);
        self.origins_known.set(origins.len() as i64);
        self.origins_draining
            .set(origins.iter().filter(|o| o.draining).count() as i64);
        self.origins_silent
            .set(origins.iter().filter(|o| o.alive && !o.reporting).count() as i64);
        // Forgotten origins must disappear from the output, not linger at their last value.
        self.streams_owned.clear();
        for status in origins {
            self.streams_owned
                .get_or_create(&OriginLabels {
                    origin: status.origin.server.clone(),
                })
                .set(status.streams_owned as i64);
        }
    }
}
