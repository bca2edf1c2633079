//! EndpointSlices in, origins out: pure, so every rule is tested without an API server.
//!
//! - Each endpoint of an IPv4 or IPv6 slice is one origin at its first address (the API says
//!   all addresses of an endpoint are fungible); FQDN slices name no address to relay to.
//! - Its endpoints come from the slice's named ports `rtmp` (required: SRS always has it),
//!   `http`, `api`, `rtc`, `srt`; other names are ignored.
//! - Ready (or unset, which the API defines as ready) and not terminating: serving.
//!   Anything else (not ready yet, failing its probe, terminating): draining.
//! - Identity: see the parent module. The same key in several slices (dual stack, or an
//!   endpoint moving between slices) yields one origin: a serving copy before a draining
//!   one, then IPv4 before IPv6, then the lower slice name, so every replica picks the same.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::origins::{HeartbeatError, Origin, Protocol, parse_heartbeat};

/// The Service port names the operator gives the origin Service, as heartbeat fields.
pub const PORT_NAMES: [&str; 5] = ["rtmp", "http", "api", "rtc", "srt"];

/// An origin as one endpoint describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredOrigin {
    pub origin: Origin,
    /// Not ready or terminating: keeps its streams, takes no new ones.
    pub draining: bool,
    /// The EndpointSlice it was read from (for logs).
    pub slice: String,
}

/// Every origin the Service's EndpointSlices name, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    origins: BTreeMap<String, DiscoveredOrigin>,
}

/// Why (part of) a slice names no origin. Logged, never fatal: the rest still counts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SliceProblem {
    #[error(
        "EndpointSlice {slice} has addressType {address_type}: only IPv4 and IPv6 slices name origins"
    )]
    AddressType { slice: String, address_type: String },
    #[error(
        "EndpointSlice {slice} has no numbered port named `rtmp`: name the origin Service's ports rtmp, http, api, rtc, srt"
    )]
    NoRtmpPort { slice: String },
    #[error("EndpointSlice {slice}: endpoint {endpoint:?} has no usable IP address")]
    BadAddress { slice: String, endpoint: String },
    #[error("EndpointSlice {slice}: endpoint {endpoint:?} does not make an origin: {reason}")]
    BadEndpoint {
        slice: String,
        endpoint: String,
        reason: HeartbeatError,
    },
}

impl Discovered {
    pub fn get(&self, key: &str) -> Option<&DiscoveredOrigin> {
        self.origins.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &DiscoveredOrigin)> {
        self.origins.iter()
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The origin a heartbeat describes: the one at address `ip` whose RTMP endpoint is
    /// `rtmp` (every SRS heartbeat announces it). The port matters where several endpoints
    /// share one address, as pods on a node's host network do: one of them must not report
    /// its figures for another, listed or not.
    pub fn matching(&self, ip: IpAddr, rtmp: Option<SocketAddr>) -> Option<&DiscoveredOrigin> {
        let rtmp = rtmp?;
        self.origins
            .values()
            .find(|found| found.origin.ip == ip && found.origin.endpoints.rtmp.contains(&rtmp))
    }
}

/// Reads the slices of the origin Service `service` (already selected by its
/// `kubernetes.io/service-name` label) into origins, with what could not be used.
pub fn origins_from_slices<'a>(
    service: &str,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> (Discovered, Vec<SliceProblem>) {
    let mut slices: Vec<&EndpointSlice> = slices.into_iter().collect();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut discovered = Discovered::default();
    let mut problems = Vec::new();
    for slice in slices {
        let name = slice.metadata.name.clone().unwrap_or_default();
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            problems.push(SliceProblem::AddressType {
                slice: name,
                address_type: slice.address_type.clone(),
            });
            continue;
        }
        let ports = named_ports(slice);
        if !ports.contains_key("rtmp") {
            // A slice without endpoints is how an empty Service looks: nothing to complain about.
            if !slice.endpoints.is_empty() {
                problems.push(SliceProblem::NoRtmpPort { slice: name });
            }
            continue;
        }
        for endpoint in &slice.endpoints {
            match endpoint_origin(service, &name, endpoint, &ports) {
                Ok(found) => discovered.insert(found),
                Err(problem) => problems.push(problem),
            }
        }
    }
    (discovered, problems)
}

impl Discovered {
    /// Keeps one origin per key (see the module rules for which).
    fn insert(&mut self, found: DiscoveredOrigin) {
        let rank = |o: &DiscoveredOrigin| (o.draining, o.origin.ip.is_ipv6(), o.slice.clone());
        match self.origins.get(&found.origin.server) {
            Some(kept) if rank(kept) <= rank(&found) => {}
            _ => {
                self.origins.insert(found.origin.server.clone(), found);
            }
        }
    }
}

/// Port name → number, for the names an origin serves.
fn named_ports(slice: &EndpointSlice) -> BTreeMap<&'static str, u16> {
    let mut ports = BTreeMap::new();
    for port in slice.ports.iter().flatten() {
        let (Some(name), Some(number)) = (port.name.as_deref(), port.port) else {
            continue;
        };
        let Some(name) = PORT_NAMES.iter().find(|known| **known == name) else {
            continue;
        };
        if let Ok(number) = u16::try_from(number)
            && number != 0
        {
            ports.insert(*name, number);
        }
    }
    ports
}

fn endpoint_origin(
    service: &str,
    slice: &str,
    endpoint: &Endpoint,
    ports: &BTreeMap<&'static str, u16>,
) -> Result<DiscoveredOrigin, SliceProblem> {
    let pod = endpoint
        .target_ref
        .as_ref()
        .filter(|target| target.kind.as_deref() == Some("Pod"));
    let pod_name = pod.and_then(|target| target.name.clone());
    let label = pod_name
        .clone()
        .or_else(|| endpoint.hostname.clone())
        .or_else(|| endpoint.addresses.first().cloned())
        .unwrap_or_default();
    let ip = endpoint
        .addresses
        .first()
        .and_then(|address| address.trim().parse::<IpAddr>().ok())
        .ok_or_else(|| SliceProblem::BadAddress {
            slice: slice.to_owned(),
            endpoint: label.clone(),
        })?;
    let key = pod_name
        .clone()
        .or_else(|| endpoint.hostname.clone())
        .unwrap_or_else(|| ip.to_string());
    // One pod is one incarnation: a pod recreated under the same name (StatefulSet) gets a
    // new uid and so counts as a restart. Without a uid the address stands in.
    let incarnation = pod
        .and_then(|target| target.uid.clone())
        .unwrap_or_else(|| ip.to_string());
    let conditions = endpoint.conditions.clone().unwrap_or_default();
    let ready = conditions.ready.unwrap_or(true);
    let terminating = conditions.terminating.unwrap_or(false);

    // Built as a heartbeat so the same bounds and checks apply as to a registration.
    let mut heartbeat = serde_json::json!({
        "device_id": pod_name.or_else(|| endpoint.hostname.clone()),
        "ip": ip.to_string(),
        "server": key,
        "service": service,
        "pid": incarnation,
    });
    for (name, port) in ports {
        heartbeat[*name] = serde_json::json!([port.to_string()]);
    }
    let origin = parse_heartbeat(heartbeat.to_string().as_bytes()).map_err(|reason| {
        SliceProblem::BadEndpoint {
            slice: slice.to_owned(),
            endpoint: label,
            reason,
        }
    })?;
    debug_assert!(origin.endpoint(Protocol::Rtmp).is_some());
    Ok(DiscoveredOrigin {
        origin,
        draining: !ready || terminating,
        slice: slice.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice as the EndpointSlice controller writes it for the operator's origin Service.
    fn slice(name: &str, address_type: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "live-origin"}},
            "addressType": address_type,
            "ports": [
                {"name": "rtmp", "port": 1935, "protocol": "TCP"},
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "api", "port": 1985, "protocol": "TCP"},
                {"name": "rtc", "port": 8000, "protocol": "UDP"},
                {"name": "srt", "port": 10080, "protocol": "UDP"},
                {"name": "metrics", "port": 9972, "protocol": "TCP"},
            ],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn pod(ip: &str, name: &str, conditions: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "addresses": [ip], "conditions": conditions, "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "name": name, "namespace": "live", "uid": format!("uid-{name}")},
        })
    }

    fn read(slices: &[EndpointSlice]) -> (Discovered, Vec<SliceProblem>) {
        origins_from_slices("live-origin", slices)
    }

    #[test]
    fn every_endpoint_is_an_origin_with_the_named_ports() {
        let (found, problems) = read(&[slice(
            "live-origin-abc",
            "IPv4",
            serde_json::json!([
                pod(
                    "10.0.0.7",
                    "live-origin-1",
                    serde_json::json!({"ready": true, "serving": true, "terminating": false})
                ),
                pod("10.0.0.8", "live-origin-2", serde_json::json!({})),
            ]),
        )]);
        assert_eq!(problems, []);
        assert_eq!(found.len(), 2);
        let one = found.get("live-origin-1").unwrap();
        assert!(!one.draining);
        assert_eq!(one.slice, "live-origin-abc");
        let origin = &one.origin;
        assert_eq!(origin.ip.to_string(), "10.0.0.7");
        assert_eq!(origin.device_id.as_deref(), Some("live-origin-1"));
        assert_eq!(origin.incarnation(), "live-origin\nuid-live-origin-1");
        let at = |p| origin.endpoint(p).map(|a| a.to_string());
        assert_eq!(at(Protocol::Rtmp).as_deref(), Some("10.0.0.7:1935"));
        assert_eq!(at(Protocol::Http).as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(at(Protocol::Api).as_deref(), Some("10.0.0.7:1985"));
        assert_eq!(at(Protocol::Rtc).as_deref(), Some("10.0.0.7:8000"));
        assert_eq!(at(Protocol::Srt).as_deref(), Some("10.0.0.7:10080"));
        assert_eq!((origin.load, origin.summaries.as_ref()), (0.0, None));
        // Unset conditions mean ready, as the API defines them.
        assert!(!found.get("live-origin-2").unwrap().draining);
    }

    #[test]
    fn not_ready_or_terminating_is_draining() {
        let cases = [
            (
                serde_json::json!({"ready": false, "serving": false, "terminating": false}),
                true,
            ),
            (
                serde_json::json!({"ready": false, "serving": true, "terminating": true}),
                true,
            ),
            (
                serde_json::json!({"ready": false, "serving": false, "terminating": true}),
                true,
            ),
            (
                serde_json::json!({"ready": true, "terminating": true}),
                true,
            ),
            (serde_json::json!({"ready": true, "serving": true}), false),
        ];
        for (conditions, draining) in cases {
            let (found, _) = read(&[slice(
                "s",
                "IPv4",
                serde_json::json!([pod("10.0.0.7", "o", conditions.clone())]),
            )]);
            assert_eq!(found.get("o").unwrap().draining, draining, "{conditions}");
        }
    }

    #[test]
    fn identity_falls_back_to_hostname_then_address() {
        let (found, problems) = read(&[slice(
            "s",
            "IPv4",
            serde_json::json!([
                {"addresses": ["10.0.0.9"], "hostname": "origin-x"},
                {"addresses": ["10.0.0.10"]},
                {"addresses": ["10.0.0.11"], "targetRef": {"kind": "Node", "name": "node-1"}},
            ]),
        )]);
        assert_eq!(problems, []);
        let keys: Vec<&String> = found.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["10.0.0.10", "10.0.0.11", "origin-x"]);
        assert_eq!(
            found.get("origin-x").unwrap().origin.incarnation(),
            "live-origin\n10.0.0.9"
        );
    }

    #[test]
    fn one_origin_per_key_across_slices_chosen_the_same_way_everywhere() {
        let ready = serde_json::json!({"ready": true});
        let not_ready = serde_json::json!({"ready": false});
        let v4 = slice(
            "b-v4",
            "IPv4",
            serde_json::json!([pod("10.0.0.7", "o", ready.clone())]),
        );
        let v6 = slice(
            "a-v6",
            "IPv6",
            serde_json::json!([pod("fd00::7", "o", ready.clone())]),
        );
        let moving = slice(
            "c-v4",
            "IPv4",
            serde_json::json!([pod("10.0.0.7", "o", not_ready)]),
        );
        for order in [
            vec![v4.clone(), v6.clone(), moving.clone()],
            vec![moving.clone(), v6.clone(), v4.clone()],
        ] {
            let (found, _) = read(&order);
            assert_eq!(found.len(), 1);
            let kept = found.get("o").unwrap();
            assert_eq!((kept.slice.as_str(), kept.draining), ("b-v4", false));
        }
        // Draining everywhere but IPv6: the serving copy wins.
        let (found, _) = read(&[moving, v6]);
        assert_eq!(found.get("o").unwrap().origin.ip.to_string(), "fd00::7");
    }

    #[test]
    fn unusable_slices_and_endpoints_are_reported_not_fatal() {
        let mut no_rtmp = slice(
            "no-rtmp",
            "IPv4",
            serde_json::json!([pod("10.0.0.1", "a", serde_json::json!({}))]),
        );
        no_rtmp.ports =
            Some(serde_json::from_value(serde_json::json!([{"name": "web", "port": 80}])).unwrap());
        let mut empty = no_rtmp.clone();
        empty.metadata.name = Some("empty".into());
        empty.endpoints.clear();
        let fqdn = slice(
            "fqdn",
            "FQDN",
            serde_json::json!([{"addresses": ["origin.example.com"]}]),
        );
        let bad = slice(
            "bad",
            "IPv4",
            serde_json::json!([
                {"addresses": ["not-an-ip"], "hostname": "h"},
                {"addresses": []},
                {"addresses": ["0.0.0.0"], "hostname": "zero"},
                {"addresses": ["10.0.0.2"], "hostname": "x".repeat(300)},
                pod("10.0.0.3", "good", serde_json::json!({})),
            ]),
        );
        let (found, problems) = read(&[no_rtmp, empty, fqdn, bad]);
        assert_eq!(
            found.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(
            messages[0].contains("bad: endpoint \"h\" has no usable IP"),
            "{messages:#?}"
        );
        assert!(
            messages[2].contains("`ip` must be an IP address"),
            "{messages:#?}"
        );
        assert!(messages[3].contains("`server` is longer"), "{messages:#?}");
        assert!(
            messages[4].contains("fqdn has addressType FQDN"),
            "{messages:#?}"
        );
        assert!(
            messages[5].contains("no-rtmp has no numbered port named `rtmp`"),
            "{messages:#?}"
        );
    }

    #[test]
    fn heartbeats_match_by_address_and_rtmp_port() {
        let mut a = slice(
            "a",
            "IPv4",
            serde_json::json!([pod("10.0.0.7", "a", serde_json::json!({}))]),
        );
        let mut b = a.clone();
        b.metadata.name = Some("b".into());
        b.endpoints = serde_json::from_value(serde_json::json!([pod(
            "10.0.0.7",
            "b",
            serde_json::json!({})
        )]))
        .unwrap();
        b.ports = Some(
            serde_json::from_value(serde_json::json!([{"name": "rtmp", "port": 1936}])).unwrap(),
        );
        let c = slice(
            "c",
            "IPv4",
            serde_json::json!([pod("10.0.0.8", "c", serde_json::json!({}))]),
        );
        a.metadata.name = Some("a".into());
        let (found, _) = read(&[a, b, c]);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let key = |ip: &str, rtmp: Option<&str>| {
            found
                .matching(ip.parse().unwrap(), rtmp.map(addr))
                .map(|o| o.origin.server.clone())
        };
        assert_eq!(key("10.0.0.8", Some("10.0.0.8:1935")).as_deref(), Some("c"));
        // Alone at its address, an endpoint still needs its own RTMP port.
        assert_eq!(key("10.0.0.8", Some("10.0.0.8:1936")), None);
        assert_eq!(key("10.0.0.7", Some("10.0.0.7:1935")).as_deref(), Some("a"));
        assert_eq!(key("10.0.0.7", Some("10.0.0.7:1936")).as_deref(), Some("b"));
        assert_eq!(key("10.0.0.7", Some("10.0.0.7:9999")), None);
        assert_eq!(key("10.0.0.7", None), None);
        assert_eq!(key("10.0.0.9", Some("10.0.0.9:1935")), None);
    }
}
