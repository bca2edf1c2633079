//! What Kubernetes discovery records for `/metrics`. Registered by the proxy's metrics registry;
//! the `Default` set records for nobody.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscoveryLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct DiscoveryMetrics {
    origins: Family<DiscoveryLabels, Gauge>,
    synced: Gauge,
    lists: Counter,
    watch_errors: Counter,
}

impl DiscoveryMetrics {
    /// A set registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "discovery_origins",
            "Origins named by the origin Service's EndpointSlices, by state (serving, draining)",
            metrics.origins.clone(),
        );
        registry.register(
            "discovery_synced",
            "1 once the origin Service's EndpointSlices have been listed",
            metrics.synced.clone(),
        );
        registry.register(
            "discovery_lists",
            "Full lists of the origin Service's EndpointSlices: the first, then each re-list after the watch lost its place",
            metrics.lists.clone(),
        );
        registry.register(
            "discovery_watch_errors",
            "Failed EndpointSlice watch or list calls (each is retried with backoff)",
            metrics.watch_errors.clone(),
        );
        metrics
    }

    /// Origins the last EndpointSlice view names, serving and draining.
    pub(super) fn set_discovered(&self, serving: usize, draining: usize) {
        let gauge = |state| self.origins.get_or_create(&DiscoveryLabels { state });
        gauge("serving").set(serving as i64);
        gauge("draining").set(draining as i64);
        self.synced.set(1);
    }

    /// The watch (re)started listing the Service's EndpointSlices.
    pub(super) fn listed(&self) {
        self.lists.inc();
    }

    /// The watch failed (API server unreachable, refused, restarted); it retries.
    pub(super) fn watch_error(&self) {
        self.watch_errors.inc();
    }
}
