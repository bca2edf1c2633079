//! What becomes of a heartbeat while discovery is on: pure (view, heartbeat, peer in; the
//! origin to store or the refusal out).
//!
//! Which address is checked, and why:
//! - The heartbeat's `ip` field names the origin: it is where the origin says it is reached,
//!   and SRS fills it with the pod's address, the address its endpoint lists. A heartbeat
//!   whose `ip` (and RTMP port, see [`Discovered::matching`]) is an endpoint's describes that
//!   discovered origin and only adds its load figures; the addresses stored stay the
//!   endpoint's.
//! - The body is the sender's word, so with `PROXY_REGISTER_REQUIRE_DISCOVERED=on` the TCP
//!   peer address is checked as well: it must be that same endpoint address. Within the
//!   cluster network a connection cannot come from an address its sender does not hold,
//!   so only the origin itself can report its figures, and nobody can register an address
//!   the Service does not list. Where source NAT or a mesh sidecar hides the peer address,
//!   leave the requirement off: discovery still finds every origin, heartbeats then merge by
//!   `ip` alone.

use std::net::{IpAddr, SocketAddr};

use super::slices::Discovered;
use crate::origins::{Origin, Protocol};

/// The discovery state a heartbeat is judged against.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The Service's slices have been listed at least once.
    pub synced: bool,
    pub discovered: Discovered,
    /// `namespace/name` of the origin Service, for messages.
    pub service: String,
}

/// A heartbeat to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub origin: Origin,
    /// It describes a discovered origin (stored under that origin's identity).
    pub discovered: bool,
}

/// Why a heartbeat is refused while discovery is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "origin discovery has not listed the EndpointSlices of Service {service} yet; heartbeats are accepted once it has"
    )]
    NotSynced { service: String },
    #[error(
        "{} is not an endpoint of Service {service}: with PROXY_REGISTER_REQUIRE_DISCOVERED=on only the Service's endpoints may register",
        rtmp.map_or_else(|| ip.to_string(), |rtmp| format!("RTMP {rtmp}"))
    )]
    NotDiscovered {
        ip: IpAddr,
        rtmp: Option<SocketAddr>,
        service: String,
    },
    #[error(
        "the heartbeat announces ip {announced} but comes from {peer}: with PROXY_REGISTER_REQUIRE_DISCOVERED=on an origin must heartbeat from the address it announces"
    )]
    AddressMismatch { announced: IpAddr, peer: IpAddr },
    #[error(
        "server id {server:?} is the discovered origin at {address}; a heartbeat announcing {ip} cannot use it"
    )]
    NameTaken {
        server: String,
        address: IpAddr,
        ip: IpAddr,
    },
}

/// Judges one heartbeat (already parsed and validated) from TCP peer `peer`.
pub fn admit(
    view: &View,
    heartbeat: Origin,
    peer: IpAddr,
    require_discovered: bool,
) -> Result<Admitted, Refusal> {
    if !view.synced {
        return Err(Refusal::NotSynced {
            service: view.service.clone(),
        });
    }
    let announced = heartbeat.ip.to_canonical();
    let rtmp = heartbeat.endpoint(Protocol::Rtmp);
    let found = view.discovered.matching(announced, rtmp);
    if require_discovered {
        if found.is_none() {
            return Err(Refusal::NotDiscovered {
                ip: announced,
                rtmp,
                service: view.service.clone(),
            });
        }
        let peer = peer.to_canonical();
        if peer != announced {
            return Err(Refusal::AddressMismatch { announced, peer });
        }
    }
    match found {
        Some(found) => {
            let mut origin = found.origin.clone();
            origin.load = heartbeat.load;
            origin.summaries = heartbeat.summaries;
            origin.device_id = heartbeat.device_id.or(origin.device_id);
            Ok(Admitted {
                origin,
                discovered: true,
            })
        }
        None => match view.discovered.get(&heartbeat.server) {
            Some(taken) => Err(Refusal::NameTaken {
                server: heartbeat.server,
                address: taken.origin.ip,
                ip: announced,
            }),
            None => Ok(Admitted {
                origin: heartbeat,
                discovered: false,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    use super::*;
    use crate::{discovery::slices::origins_from_slices, origins::parse_heartbeat};

    fn view(synced: bool) -> View {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "live-origin-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "rtmp", "port": 1935}, {"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.7"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "live-origin-1", "uid": "u1"}},
                {"addresses": ["10.0.0.8"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "live-origin-2", "uid": "u2"}},
            ],
        }))
        .unwrap();
        View {
            synced,
            discovered: origins_from_slices("live-origin", [&slice]).0,
            service: "live/live-origin".into(),
        }
    }

    fn heartbeat(ip: &str, server: &str) -> Origin {
        let body = serde_json::json!({
            "device_id": "live-origin-1", "ip": ip, "server": server, "service": "2e0q10z8",
            "pid": "23798", "rtmp": ["1935"], "summaries": {"data": {"self": {"cpu_percent": 12.5}}},
        });
        parse_heartbeat(body.to_string().as_bytes()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_heartbeat_at_an_endpoint_adds_load_to_the_discovered_origin() {
        let view = view(true);
        for require in [false, true] {
            let admitted = admit(
                &view,
                heartbeat("10.0.0.7", "vid-x"),
                ip("10.0.0.7"),
                require,
            )
            .unwrap();
            assert!(admitted.discovered);
            let expected = view.discovered.get("live-origin-1").unwrap().origin.clone();
            // Identity, incarnation and addresses stay the endpoint's: ownership keys are stable.
            assert_eq!(admitted.origin.server, "live-origin-1");
            assert_eq!(admitted.origin.incarnation(), expected.incarnation());
            assert!(admitted.origin.same_addresses(&expected));
            assert_eq!(admitted.origin.load, 12.5);
            assert!(admitted.origin.summaries.is_some());
        }
        // An IPv4-mapped peer (a dual-stack listener) is the same address.
        assert!(
            admit(
                &view,
                heartbeat("10.0.0.7", "vid-x"),
                ip("::ffff:10.0.0.7"),
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn nothing_is_accepted_before_the_first_list() {
        assert_eq!(
            admit(
                &view(false),
                heartbeat("10.0.0.7", "vid-x"),
                ip("10.0.0.7"),
                false
            ),
            Err(Refusal::NotSynced {
                service: "live/live-origin".into()
            })
        );
    }

    #[test]
    fn required_discovery_refuses_other_addresses() {
        let view = view(true);
        let refused = admit(
            &view,
            heartbeat("10.0.0.99", "vid-x"),
            ip("10.0.0.99"),
            true,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "RTMP 10.0.0.99:1935 is not an endpoint of Service live/live-origin: with PROXY_REGISTER_REQUIRE_DISCOVERED=on only the Service's endpoints may register"
        );
        // Announcing an endpoint's address from elsewhere, or from another endpoint.
        for peer in [ip("10.0.0.99"), ip("10.0.0.8")] {
            assert_eq!(
                admit(&view, heartbeat("10.0.0.7", "vid-x"), peer, true),
                Err(Refusal::AddressMismatch {
                    announced: "10.0.0.7".parse().unwrap(),
                    peer
                })
            );
        }
    }

    #[test]
    fn without_the_requirement_other_origins_register_as_themselves() {
        let view = view(true);
        let admitted = admit(
            &view,
            heartbeat("10.0.0.99", "vid-x"),
            ip("10.0.0.99"),
            false,
        )
        .unwrap();
        assert!(!admitted.discovered);
        assert_eq!(admitted.origin.server, "vid-x");
        // But not under a discovered origin's name.
        assert!(matches!(
            admit(
                &view,
                heartbeat("10.0.0.99", "live-origin-2"),
                ip("10.0.0.99"),
                false
            ),
            Err(Refusal::NameTaken { .. })
        ));
    }
}
