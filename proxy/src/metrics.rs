//! Prometheus metrics of the proxy, served as text on the system API's `/metrics`.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::origins::{ClaimKind, OriginStatus, PickError};

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

/// How a registration ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RegistrationResult {
    new,
    refreshed,
    restarted,
    bad_request,
    unauthorized,
    rate_limited,
    too_large,
    backend_error,
    /// Discovery is on and has not listed the origin Service yet.
    discovery_not_synced,
    /// PROXY_REGISTER_REQUIRE_DISCOVERED: not from an endpoint of the origin Service.
    not_discovered,
    /// The server id of a discovered origin, announced from another address.
    name_taken,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PickLabels {
    result: PickResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    result: RegistrationResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

pub struct Metrics {
    registry: Registry,
    picks: Family<PickLabels, Counter>,
    pick_duration: Histogram,
    registrations: Family<RegistrationLabels, Counter>,
    origins_alive: Gauge,
    origins_known: Gauge,
    streams_owned: Family<OriginLabels, Gauge>,
    backend_up: Gauge,
    http_requests: Family<HttpLabels, Counter>,
    discovery: DiscoveryMetrics,
    origins_refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("originstack_proxy");
        let picks = Family::<PickLabels, Counter>::default();
        registry.register(
            "picks",
            "Origin picks for a stream, by result",
            picks.clone(),
        );
        // 50 µs .. ~1.6 s: an in-memory pick sits at the bottom, a Redis round trip around 100 µs.
        let pick_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16),
        );
        registry.register(
            "pick_duration_seconds",
            "Time to pick an origin for a stream",
            pick_duration.clone(),
        );
        let registrations = Family::<RegistrationLabels, Counter>::default();
        registry.register(
            "registrations",
            "Origin heartbeats received, by result",
            registrations.clone(),
        );
        let origins_alive = Gauge::default();
        registry.register(
            "origins_alive",
            "Origins heartbeating within the TTL",
            origins_alive.clone(),
        );
        let origins_known = Gauge::default();
        registry.register(
            "origins_known",
            "Origins in the registry, alive or not",
            origins_known.clone(),
        );
        let streams_owned = Family::<OriginLabels, Gauge>::default();
        registry.register(
            "streams_owned",
            "Streams with a current lease, by origin",
            streams_owned.clone(),
        );
        let backend_up = Gauge::default();
        registry.register(
            "backend_up",
            "1 while the load balancer backend answers",
            backend_up.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP streaming requests, by kind (live, playlist, segment, other)",
            http_requests.clone(),
        );
        let origins_refused = Counter::default();
        registry.register(
            "origins_refused",
            "Origins taken out of the registry because they refused a connection",
            origins_refused.clone(),
        );
        let discovery = DiscoveryMetrics::register(&mut registry);
        Self {
            discovery,
            origins_refused,
            http_requests,
            registry,
            picks,
            pick_duration,
            registrations,
            origins_alive,
            origins_known,
            streams_owned,
            backend_up,
        }
    }

    pub fn origin_refused(&self) {
        self.origins_refused.inc();
    }

    pub fn http_request(&self, kind: &'static str) {
        self.http_requests.get_or_create(&HttpLabels { kind }).inc();
    }

    pub fn record_pick(&self, outcome: Result<&ClaimKind, &PickError>, took: Duration) {
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

    pub fn record_registration(&self, result: RegistrationResult) {
        self.registrations
            .get_or_create(&RegistrationLabels { result })
            .inc();
    }

    /// Sets the registry gauges from a fresh listing (`None`: the backend did not answer).
    pub fn set_registry(&self, origins: Option<&[OriginStatus]>) {
        self.backend_up.set(i64::from(origins.is_some()));
        let Some(origins) = origins else { return };
        self.origins_alive
            .set(origins.iter().filter(|o| o.alive).count() as i64);
        self.origins_known.set(origins.len() as i64);
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

    /// Origins the last EndpointSlice view names, serving and draining.
    pub fn set_discovered(&self, serving: usize, draining: usize) {
        let gauge = |state| {
            self.discovery
                .origins
                .get_or_create(&DiscoveryLabels { state })
        };
        gauge("serving").set(serving as i64);
        gauge("draining").set(draining as i64);
        self.discovery.synced.set(1);
    }

    /// The watch (re)started listing the Service's EndpointSlices.
    pub fn discovery_listed(&self) {
        self.discovery.lists.inc();
    }

    /// The watch failed (API server unreachable, refused, restarted); it retries.
    pub fn discovery_watch_error(&self) {
        self.discovery.watch_errors.inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscoveryLabels {
    state: &'static str,
}

/// Kubernetes discovery of origins (`crate::discovery`).
struct DiscoveryMetrics {
    origins: Family<DiscoveryLabels, Gauge>,
    synced: Gauge,
    lists: Counter,
    watch_errors: Counter,
}

impl DiscoveryMetrics {
    fn register(registry: &mut Registry) -> Self {
        let origins = Family::<DiscoveryLabels, Gauge>::default();
        registry.register(
            "discovery_origins",
            "Origins named by the origin Service's EndpointSlices, by state (serving, draining)",
            origins.clone(),
        );
        let synced = Gauge::default();
        registry.register(
            "discovery_synced",
            "1 once the origin Service's EndpointSlices have been listed",
            synced.clone(),
        );
        let lists = Counter::default();
        registry.register(
            "discovery_lists",
            "Full lists of the origin Service's EndpointSlices: the first, then each re-list after the watch lost its place",
            lists.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "discovery_watch_errors",
            "Failed EndpointSlice watch or list calls (each is retried with backoff)",
            watch_errors.clone(),
        );
        Self {
            origins,
            synced,
            lists,
            watch_errors,
        }
    }
}
