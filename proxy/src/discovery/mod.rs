//! Kubernetes discovery of origins from the EndpointSlices of their headless Service
//! (`PROXY_K8S_DISCOVERY=on`, `PROXY_K8S_ORIGIN_SERVICE`, `PROXY_K8S_NAMESPACE`).
//!
//! An SRS origin heartbeats to one URL, so behind a Service only one proxy replica hears each
//! heartbeat (upstream #4666). Every replica watching the Service's EndpointSlices sees every
//! origin instead, heartbeat or not.
//!
//! # Rules
//!
//! - An endpoint that is ready (and not terminating) is a live origin; one not ready or
//!   terminating is draining: it keeps the streams it owns and gets no new ones. An endpoint
//!   that leaves the slices is removed from the registry at once: its streams move to live
//!   origins on their next pick. How slices read: [`slices`].
//! - Liveness is the registry's TTL, as for heartbeats: every replica restates each origin it
//!   sees every third of `PROXY_ORIGIN_TTL`. Restating is idempotent (see
//!   [`crate::origins::LoadBalancer::refresh_discovered`]), so with Redis any number of
//!   replicas state the same origin.
//! - The watch is kube-runtime's watcher and reflector: after an error (API server down or
//!   restarted) it resumes from where it was, or lists again when it lost its place. In the
//!   meantime the last view is kept and restated, so origins do not die with the control plane.
//! - `/readyz` fails until the first list completed; afterwards watch errors do not make the
//!   proxy unready (it still routes by its last view).
//!
//! # Identity: one origin per endpoint, whoever announces it
//!
//! - A discovered origin's `server` (the key every ownership record names) is the endpoint's
//!   pod (`targetRef` of kind Pod), else its `hostname`, else its address. Its incarnation
//!   (`service`/`pid`) is the Service's name and the pod's UID: a pod recreated under the same
//!   name counts as a restart, and its streams are released.
//! - A heartbeat describes a discovered origin when its `ip` is the endpoint's address and its
//!   RTMP port the endpoint's `rtmp` port (the port tells apart endpoints sharing an address,
//!   as pods on a node's host network do). It is then stored under that origin's key,
//!   incarnation and addresses and only adds its load figures (`summaries`, the CPU load used
//!   to rank) and `device_id`. So the key never flips between SRS's `server` id and the pod
//!   name, and the two sources never make two origins. SRS's own `server`/`service`/`pid` are
//!   not compared: a container restart inside the pod shows as not ready (draining) and back,
//!   and the streams it owned stay with it, so reconnecting publishers and players meet there.
//! - Restating never overwrites those figures while the origin's incarnation and addresses are
//!   unchanged. They are as fresh as the last heartbeat: an origin whose heartbeats stop keeps
//!   its last figures for as long as it is discovered.
//! - Other heartbeats (see [`admission`] for which address is checked): refused with
//!   `PROXY_REGISTER_REQUIRE_DISCOVERED=on`; otherwise origins of their own as without
//!   discovery, but never under a discovered origin's name, and one at an address discovery
//!   lists later is removed then (one origin per endpoint). Until the first list every
//!   heartbeat is refused (503; SRS retries), so none registers twice meanwhile.

pub mod admission;
mod metrics;
pub mod slices;
mod watch;

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
};

pub use admission::{Admitted, Refusal, View};
pub use metrics::DiscoveryMetrics;
pub use slices::{Discovered, DiscoveredOrigin, SliceProblem, origins_from_slices};
pub use watch::{StartError, start};

use crate::{config::DiscoveryConfig, origins::Origin};

/// Discovery's shared state: on or off, and the last view of the origin Service. The watch
/// task writes it; the register API and `/readyz` read it.
pub struct Discovery {
    target: Option<Target>,
    metrics: DiscoveryMetrics,
    require_discovered: bool,
    view: RwLock<Arc<View>>,
}

/// Which Service to watch.
#[derive(Debug, Clone)]
struct Target {
    service: String,
    /// `None`: the client's default (in a pod: its service account's namespace).
    namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryConfigError {
    #[error(
        "PROXY_K8S_DISCOVERY=on needs PROXY_K8S_ORIGIN_SERVICE: the name of the origins' headless Service"
    )]
    NoService,
    #[error(
        "PROXY_K8S_ORIGIN_SERVICE {0:?} is not a Service name (lowercase letters, digits and '-', starting with a letter, at most 63)"
    )]
    BadService(String),
    #[error(
        "PROXY_K8S_NAMESPACE {0:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
    )]
    BadNamespace(String),
    #[error(
        "PROXY_REGISTER_REQUIRE_DISCOVERED=on needs PROXY_K8S_DISCOVERY=on: without discovery no address is known to be an origin's"
    )]
    RequireWithoutDiscovery,
}

/// `/readyz` while discovery has not listed the Service yet.
#[derive(Debug, thiserror::Error)]
#[error("origin discovery has not listed the EndpointSlices of Service {service} yet")]
pub struct NotSynced {
    service: String,
}

impl Discovery {
    pub fn new(
        config: &DiscoveryConfig,
        metrics: DiscoveryMetrics,
    ) -> Result<Arc<Self>, DiscoveryConfigError> {
        let target = if config.enabled {
            let service = config
                .origin_service
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .ok_or(DiscoveryConfigError::NoService)?;
            // The name goes into a label selector: a stray `,` or `=` would change its meaning.
            if !is_dns_label(service) || !service.starts_with(|c: char| c.is_ascii_lowercase()) {
                return Err(DiscoveryConfigError::BadService(service.to_owned()));
            }
            let namespace = config
                .namespace
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty());
            if let Some(namespace) = namespace.filter(|name| !is_dns_label(name)) {
                return Err(DiscoveryConfigError::BadNamespace(namespace.to_owned()));
            }
            Some(Target {
                service: service.to_owned(),
                namespace: namespace.map(str::to_owned),
            })
        } else if config.require_discovered {
            return Err(DiscoveryConfigError::RequireWithoutDiscovery);
        } else {
            None
        };
        let service = target
            .as_ref()
            .map_or_else(String::new, |target| match &target.namespace {
                Some(namespace) => format!("{namespace}/{}", target.service),
                None => target.service.clone(),
            });
        Ok(Arc::new(Self {
            target,
            metrics,
            require_discovered: config.require_discovered,
            view: RwLock::new(Arc::new(View {
                service,
                ..View::default()
            })),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The last view (empty and not synced before the first list).
    pub fn view(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn publish(&self, view: View) {
        *self
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(view);
    }

    /// Ready when discovery is off or has listed the Service at least once.
    pub fn check_ready(&self) -> Result<(), NotSynced> {
        let view = self.view();
        if self.enabled() && !view.synced {
            return Err(NotSynced {
                service: view.service.clone(),
            });
        }
        Ok(())
    }

    /// What to store for a heartbeat from TCP peer `peer` (see [`admission`]); with discovery
    /// off, the heartbeat as it is.
    pub fn admit(&self, heartbeat: Origin, peer: IpAddr) -> Result<Admitted, Refusal> {
        if !self.enabled() {
            return Ok(Admitted {
                origin: heartbeat,
                discovered: false,
            });
        }
        admission::admit(&self.view(), heartbeat, peer, self.require_discovered)
    }

    /// Whether the last view still names origin `server` (a heartbeat may race its removal).
    pub fn is_discovered(&self, server: &str) -> bool {
        self.view().discovered.get(server).is_some()
    }
}

/// An RFC 1123 label, as Kubernetes names Services and namespaces.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enabled: bool, service: Option<&str>, require: bool) -> DiscoveryConfig {
        DiscoveryConfig {
            enabled,
            origin_service: service.map(str::to_owned),
            namespace: None,
            require_discovered: require,
        }
    }

    #[test]
    fn settings_are_checked_at_start() {
        let err = |c: DiscoveryConfig| Discovery::new(&c, DiscoveryMetrics::default()).err();
        assert_eq!(
            err(config(true, None, false)),
            Some(DiscoveryConfigError::NoService)
        );
        assert_eq!(
            err(config(true, Some("origin,app=x"), false)),
            Some(DiscoveryConfigError::BadService("origin,app=x".into()))
        );
        assert_eq!(
            err(config(false, None, true)),
            Some(DiscoveryConfigError::RequireWithoutDiscovery)
        );
        let mut bad_namespace = config(true, Some("live-origin"), true);
        bad_namespace.namespace = Some("Live".into());
        assert_eq!(
            err(bad_namespace),
            Some(DiscoveryConfigError::BadNamespace("Live".into()))
        );
        assert!(Discovery::new(&config(false, None, false), DiscoveryMetrics::default()).is_ok());
    }

    #[test]
    fn not_ready_until_listed() {
        let off = Discovery::new(&config(false, None, false), DiscoveryMetrics::default()).unwrap();
        assert!(off.check_ready().is_ok());
        let on = Discovery::new(
            &config(true, Some("live-origin"), false),
            DiscoveryMetrics::default(),
        )
        .unwrap();
        assert_eq!(
            on.check_ready().unwrap_err().to_string(),
            "origin discovery has not listed the EndpointSlices of Service live-origin yet"
        );
        on.publish(View {
            synced: true,
            ..View::default()
        });
        assert!(on.check_ready().is_ok());
    }
}
