//! The watch: kube-runtime's watcher and reflector over the origin Service's EndpointSlices,
//! and the task that states what they name to the load balancer.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        utils::Backoff,
        watcher::{self, Event},
    },
};
use rand::Rng;

use super::{
    Discovery, View,
    slices::{Discovered, DiscoveredOrigin, SliceProblem, origins_from_slices},
};
use crate::origins::{Origins, Protocol, Registered};

/// Why discovery could not start (the proxy does not start either: a wrong setting should be
/// seen at once, not as a proxy that never becomes ready).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("discovery is off (PROXY_K8S_DISCOVERY)")]
    NotEnabled,
    #[error(
        "no Kubernetes configuration: neither KUBECONFIG (or ~/.kube/config) nor the in-cluster service account is usable: {0}"
    )]
    Config(kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(kube::Error),
}

/// Connects to the API server (in-cluster, or KUBECONFIG) and spawns the watch.
pub async fn start(
    discovery: Arc<Discovery>,
    origins: Arc<Origins>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let target = discovery.target.clone().ok_or(StartError::NotEnabled)?;
    // kube's rustls needs a process-wide crypto provider; Redis TLS may have installed it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::infer().await.map_err(StartError::Config)?;
    let client = Client::try_from(config).map_err(StartError::Client)?;
    let namespace = target
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let service = format!("{namespace}/{}", target.service);
    discovery.publish(View {
        service: service.clone(),
        ..View::default()
    });
    tracing::info!(service = %service, "watching the EndpointSlices of the origin Service");
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let watch = Watch {
        selector: format!("kubernetes.io/service-name={}", target.service),
        service_name: target.service,
        service,
        applier: Applier {
            refresh_every: (origins.timing().origin_ttl / 3).max(Duration::from_millis(100)),
            origins,
            discovery,
            desired: Discovered::default(),
            stated: BTreeMap::new(),
            removing: BTreeSet::new(),
            failing: false,
        },
    };
    Ok(tokio::spawn(watch.run(api)))
}

struct Watch {
    /// The Service's name (it is the `service` of discovered origins).
    service_name: String,
    /// `namespace/name`, for logs and messages.
    service: String,
    selector: String,
    applier: Applier,
}

impl Watch {
    async fn run(mut self, api: Api<EndpointSlice>) {
        let (store, writer) = reflector::store::<EndpointSlice>();
        let events = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default().labels(&self.selector)),
        )
        .backoff(WatchBackoff::default());
        let mut events = std::pin::pin!(events);
        let metrics = self.applier.discovery.metrics.clone();
        let mut ticker = tokio::time::interval(self.applier.refresh_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut synced = false;
        let mut failing = false;
        let mut problems: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else {
                        // The watcher retries for ever; an end means the runtime is stopping.
                        tracing::warn!(service = %self.service, "EndpointSlice watch ended");
                        return;
                    };
                    let changed = match event {
                        Ok(Event::Init) => {
                            metrics.listed();
                            false
                        }
                        Ok(Event::InitApply(_)) => false,
                        Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) => true,
                        Err(err) => {
                            metrics.watch_error();
                            if !failing {
                                tracing::warn!(service = %self.service, error = %err, "EndpointSlice watch failed; retrying, routing on the last view meanwhile");
                            } else {
                                tracing::debug!(service = %self.service, error = %err, "EndpointSlice watch still failing");
                            }
                            failing = true;
                            false
                        }
                    };
                    if changed {
                        if failing {
                            failing = false;
                            tracing::info!(service = %self.service, "EndpointSlice watch resumed");
                        }
                        self.update(&store, &mut problems).await;
                        if !synced {
                            synced = true;
                            let view = self.applier.discovery.view();
                            tracing::info!(service = %self.service, origins = view.discovered.len(), "origin discovery synced");
                        }
                    }
                }
                _ = ticker.tick() => self.applier.apply(true).await,
            }
        }
    }

    /// Reads the store into origins, publishes the view and states the changes.
    async fn update(&mut self, store: &Store<EndpointSlice>, problems: &mut Vec<String>) {
        let slices = store.state();
        let (discovered, found_problems) = origins_from_slices(
            &self.service_name,
            slices.iter().map(|slice| slice.as_ref()),
        );
        log_new_problems(&self.service, &found_problems, problems);
        let draining = discovered.iter().filter(|(_, o)| o.draining).count();
        self.applier
            .discovery
            .metrics
            .set_discovered(discovered.len() - draining, draining);
        self.applier.discovery.publish(View {
            synced: true,
            discovered: discovered.clone(),
            service: self.service.clone(),
        });
        self.applier.desired = discovered;
        self.applier.apply(false).await;
    }
}

/// Warns once per problem while it lasts (slices change often; the same complaint at every
/// change would drown the log).
fn log_new_problems(service: &str, found: &[SliceProblem], logged: &mut Vec<String>) {
    let now: Vec<String> = found.iter().map(ToString::to_string).collect();
    for problem in now.iter().filter(|problem| !logged.contains(problem)) {
        tracing::warn!(service = %service, problem = %problem, "EndpointSlice names no usable origin");
    }
    *logged = now;
}

/// States the desired origins to the load balancer and removes the ones that left.
struct Applier {
    origins: Arc<Origins>,
    discovery: Arc<Discovery>,
    refresh_every: Duration,
    /// The last view of the Service.
    desired: Discovered,
    /// What this replica last stated successfully.
    stated: BTreeMap<String, DiscoveredOrigin>,
    /// Origins that left whose removal did not go through yet (backend unreachable).
    removing: BTreeSet<String>,
    /// The backend refused the last call (logged once per outage).
    failing: bool,
}

impl Applier {
    /// Removes what left, then states what changed (`everything`: every origin, the periodic
    /// refresh that keeps them alive).
    async fn apply(&mut self, everything: bool) {
        let desired = &self.desired;
        self.removing.extend(
            self.stated
                .keys()
                .filter(|key| desired.get(key).is_none())
                .cloned(),
        );
        self.removing.retain(|key| desired.get(key).is_none());
        for server in self.removing.clone() {
            match self.origins.remove_origin(&server).await {
                Ok(_) => {
                    self.succeeded();
                    self.removing.remove(&server);
                    self.stated.remove(&server);
                    tracing::info!(origin = %server, "origin left the Service: removed, its streams move to live origins");
                }
                Err(err) => self.failed(&err),
            }
        }

        let mut first_seen = false;
        let desired = std::mem::take(&mut self.desired);
        for (server, found) in desired.iter() {
            let before = self.stated.get(server).cloned();
            if !everything && before.as_ref() == Some(found) {
                continue;
            }
            match self
                .origins
                .refresh_discovered(&found.origin, found.draining)
                .await
            {
                Ok(outcome) => {
                    self.succeeded();
                    log_change(before.as_ref(), found, outcome);
                    first_seen |= before.is_none();
                    self.stated.insert(server.clone(), found.clone());
                }
                Err(err) => self.failed(&err),
            }
        }
        self.desired = desired;
        if first_seen {
            self.fold_heartbeat_origins().await;
        }
    }

    /// Removes origins registered by heartbeat at an address discovery now names (a
    /// heartbeat can precede its endpoint), so one endpoint is one origin.
    async fn fold_heartbeat_origins(&mut self) {
        let listed = match self.origins.origins().await {
            Ok(listed) => listed,
            Err(err) => return self.failed(&err),
        };
        for status in listed {
            let origin = &status.origin;
            if self.desired.get(&origin.server).is_some() {
                continue;
            }
            let Some(found) = self
                .desired
                .matching(origin.ip, origin.endpoint(Protocol::Rtmp))
            else {
                continue;
            };
            match self.origins.remove_origin(&origin.server).await {
                Ok(true) => {
                    tracing::info!(origin = %origin.server, ip = %origin.ip, discovered = %found.origin.server, "heartbeat origin at a discovered address removed: heartbeats now add to the discovered one");
                }
                Ok(false) => {}
                Err(err) => self.failed(&err),
            }
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!("discovered origins stated to the load balancer again");
        }
    }

    fn failed(&mut self, err: &crate::origins::BackendError) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(error = %err, "cannot state discovered origins to the load balancer; retrying");
        }
    }
}

fn log_change(before: Option<&DiscoveredOrigin>, now: &DiscoveredOrigin, outcome: Registered) {
    let origin = &now.origin;
    match before {
        None => {
            tracing::info!(origin = %origin.server, ip = %origin.ip, rtmp = ?origin.endpoint(Protocol::Rtmp), draining = now.draining, slice = %now.slice, "origin discovered");
        }
        Some(before) if before.draining != now.draining => {
            if now.draining {
                tracing::info!(origin = %origin.server, "origin not ready or terminating: draining, it keeps its streams and takes no new ones");
            } else {
                tracing::info!(origin = %origin.server, "origin ready again: takes new streams");
            }
        }
        Some(before) if !before.origin.same_addresses(origin) => {
            tracing::info!(origin = %origin.server, ip = %origin.ip, rtmp = ?origin.endpoint(Protocol::Rtmp), "origin endpoints changed");
        }
        Some(_) => {}
    }
    if outcome == Registered::Restarted {
        tracing::info!(origin = %origin.server, "origin pod recreated under the same name; its streams were released");
    }
}

/// Watch retry delays: 250 ms doubling up to 5 s, each shortened at random by up to half so
/// replicas do not retry in step; back to the start after any success. kube-runtime's
/// default climbs to 30 s, too slow for a data plane to see changes after an API server
/// restart, and its configurable one cannot be built outside the crate.
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        Some(delay.mul_f64(rand::rng().random_range(0.5..=1.0)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(8).collect();
        assert!(delays[0] <= WatchBackoff::FIRST && delays[0] >= WatchBackoff::FIRST / 2);
        assert!(delays.iter().all(|d| *d <= WatchBackoff::MAX));
        assert!(delays[7] >= WatchBackoff::MAX / 2);
        backoff.reset();
        assert!(backoff.next().unwrap() <= WatchBackoff::FIRST);
    }
}
