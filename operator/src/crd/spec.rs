//! `OriginCluster.spec`: what the user asks for. Defaults live in the schema (the API server
//! fills them in), so the reconciler always sees complete values.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::OriginClusterStatus;

/// An origin cluster: SRS origin pods behind OriginStack proxy replicas, with the Redis that
/// lets the proxies agree on stream ownership.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "originstack.dev",
    version = "v1alpha1",
    kind = "OriginCluster",
    plural = "originclusters",
    shortname = "ocl",
    category = "originstack",
    namespaced,
    status = "OriginClusterStatus",
    derive = "PartialEq",
    doc = "An OriginStack origin cluster: SRS origins, proxy replicas, their Services and Redis.",
    scale(
        spec_replicas_path = ".spec.origin.replicas",
        status_replicas_path = ".status.origins.ready",
        label_selector_path = ".status.origins.selector"
    ),
    printcolumn(name = "Origins", type_ = "integer", json_path = ".status.origins.ready", description = "Ready origin pods"),
    printcolumn(name = "Proxies", type_ = "integer", json_path = ".status.proxies.ready", description = "Ready proxy pods"),
    printcolumn(name = "Edges", type_ = "integer", json_path = ".status.edges.ready", description = "Ready edge pods", priority = 1),
    printcolumn(name = "Redis", type_ = "string", json_path = ".spec.redis.mode", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 50")
        .message("the name may have at most 50 characters: the owned Service names add up to 13 more and must fit 63")
)]
#[x_kube(
    validation = Rule::new("self.redis.mode != 'none' || self.proxy.replicas <= 1")
        .message("redis.mode none keeps stream ownership in one proxy's memory: it needs proxy.replicas 1 (use managed or external Redis for more proxies)")
        .field_path(".redis.mode")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.edge) || self.origin.protocols.rtmp")
        .message("edges pull their streams from the proxies over RTMP: spec.edge needs origin.protocols.rtmp")
        .field_path(".edge")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct OriginClusterSpec {
    /// The SRS origin pods.
    #[serde(default)]
    pub origin: OriginSpec,
    /// The OriginStack proxy replicas clients connect to.
    #[serde(default)]
    pub proxy: ProxySpec,
    /// Where the proxies keep stream ownership.
    #[serde(default)]
    pub redis: RedisSpec,
    /// SRS edge servers players connect to, each pulling a stream once through the proxies.
    /// Absent: no edge tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeSpec>,
    /// Prometheus Operator PodMonitors for the proxies (and the origins' SRS exporter).
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
    /// Stops every write to owned objects; status is still reported.
    #[serde(default)]
    pub paused: bool,
}

/// PodMonitors (`monitoring.coreos.com/v1`) for Prometheus Operator: one for the proxies'
/// `/metrics`, whose series carry the cluster's name as `job` (what the chart's alerts and
/// dashboard group by), and one for the origins' SRS exporter when `originExporter` is on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create the PodMonitors. Without Prometheus Operator's CRDs the `Monitoring` condition
    /// says so and the rest of the cluster is reconciled as usual.
    #[serde(default)]
    pub enabled: bool,
    /// How often Prometheus scrapes, as a Prometheus duration (`30s`, `1m`); absent: the
    /// Prometheus default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"))]
    pub interval: Option<String>,
    /// Extra labels on the PodMonitors: the ones your Prometheus selects monitors by (for
    /// example `release`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Turn on SRS's Prometheus exporter on the origins (`exporter { enabled on; listen 9972; }`
    /// in srs.conf, SRS 5 and later) and scrape it.
    #[serde(default)]
    pub origin_exporter: bool,
}

impl MonitoringSpec {
    /// The origins' SRS exporter is on: monitoring enabled with `originExporter`.
    pub fn origin_exporter_on(monitoring: Option<&Self>) -> bool {
        monitoring.is_some_and(|m| m.enabled && m.origin_exporter)
    }
}

/// Pod-level settings users commonly override, shared by origins, proxies and edges.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra labels on the pods (the operator's own selector labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The SRS origins. Stateless: any origin can take any stream, the proxies pick one.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginSpec {
    /// Number of origin pods (scalable through the scale subresource, e.g. by an HPA).
    #[serde(default = "default_origin_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// An SRS 7 image: its heartbeat reports its ports. Older SRS is found through EndpointSlices.
    #[serde(default = "default_origin_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the SRS container (SRS reads `SRS_*` overrides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub protocols: Protocols,
    /// Extra top-level srs.conf blocks appended to the generated configuration. A
    /// `max_connections` here replaces the generated default (1000); the names of `vhost`
    /// blocks reach the proxies (PROXY_VHOSTS), which own other vhosts' streams as the default's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 65536))]
    pub config: String,
    #[serde(flatten)]
    pub pod: PodOverrides,
}

impl Default for OriginSpec {
    fn default() -> Self {
        Self {
            replicas: default_origin_replicas(),
            image: default_origin_image(),
            image_pull_policy: None,
            resources: None,
            env: Vec::new(),
            protocols: Protocols::default(),
            config: String::new(),
            pod: PodOverrides::default(),
        }
    }
}

/// Which client protocols the cluster serves. Each enables the SRS server block on the origins
/// and the listener port on the proxy Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.rtmp || self.httpFlv || self.hls || self.webrtc || self.srt")
    .message("enable at least one protocol"))]
#[serde(rename_all = "camelCase")]
pub struct Protocols {
    #[serde(default = "enabled")]
    pub rtmp: bool,
    #[serde(default = "enabled")]
    pub http_flv: bool,
    #[serde(default = "enabled")]
    pub hls: bool,
    /// WebRTC (WHIP/WHEP signalling on the API port, media over UDP).
    #[serde(default)]
    pub webrtc: bool,
    /// SRT over UDP.
    #[serde(default)]
    pub srt: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Self {
            rtmp: true,
            http_flv: true,
            hls: true,
            webrtc: false,
            srt: false,
        }
    }
}

impl Protocols {
    /// HTTP-FLV and HLS share SRS's http_server.
    pub fn http(&self) -> bool {
        self.http_flv || self.hls
    }

    pub fn udp(&self) -> bool {
        self.webrtc || self.srt
    }
}

/// The proxy replicas: the only pods clients talk to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    #[serde(default = "default_proxy_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[serde(default = "default_proxy_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the proxy container (`PROXY_*`, see the proxy's --help).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub service: ProxyServiceSpec,
    /// The address WebRTC clients are told to send media to (the Service's external IP or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc_candidate: Option<String>,
    /// The token origins present when they register. When absent the operator generates a
    /// Secret `<name>-register-token` and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_token_secret_ref: Option<SecretKeyRef>,
    #[serde(flatten)]
    pub pod: PodOverrides,
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            replicas: default_proxy_replicas(),
            image: default_proxy_image(),
            image_pull_policy: None,
            resources: None,
            env: Vec::new(),
            service: ProxyServiceSpec::default(),
            webrtc_candidate: None,
            register_token_secret_ref: None,
            pod: PodOverrides::default(),
        }
    }
}

/// The edge tier: SRS servers in remote (edge) mode whose origin is the proxy Service. An edge
/// pulls each stream its players ask for once, over RTMP through the proxies (which pick the
/// origin that owns it), and fans it out; a publish sent to an edge is forwarded to the
/// proxies like any publish. Edges never heartbeat: the proxies do not take them for origins.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSpec {
    /// Number of edge pods, used when `autoscaling` is absent.
    #[serde(default = "default_edge_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// An SRS image, run in edge mode (`cluster { mode remote; }` in the generated srs.conf).
    #[serde(default = "default_edge_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// With `autoscaling`, request CPU here: the autoscaler's utilization is a percentage of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the SRS container (SRS reads `SRS_*` overrides; the
    /// heartbeat's are refused, as an edge must never register with the proxies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub protocols: EdgeProtocols,
    #[serde(default)]
    pub service: EdgeServiceSpec,
    /// Scale the edges on CPU with a HorizontalPodAutoscaler instead of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<EdgeAutoscaling>,
    #[serde(flatten)]
    pub pod: PodOverrides,
}

impl EdgeSpec {
    /// The most edge pods there can be: the autoscaler's ceiling, else `replicas`.
    pub fn most_replicas(&self) -> i32 {
        self.autoscaling
            .as_ref()
            .map_or(self.replicas, |autoscaling| autoscaling.max_replicas)
    }
}

/// What the edges serve to players. No HLS: an SRS edge in remote mode makes none (HLS is cut
/// on the origin a stream is published to, and served through the proxy Service).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.rtmp || self.httpFlv")
    .message("enable at least one edge protocol (rtmp or httpFlv)"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeProtocols {
    /// RTMP play (and publish, forwarded to the proxies).
    #[serde(default = "enabled")]
    pub rtmp: bool,
    /// HTTP-FLV play (`/app/stream.flv`).
    #[serde(default = "enabled")]
    pub http_flv: bool,
}

impl Default for EdgeProtocols {
    fn default() -> Self {
        Self {
            rtmp: true,
            http_flv: true,
        }
    }
}

/// The edges' client Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.loadBalancerClass) || self.type == 'LoadBalancer'")
        .message("loadBalancerClass needs type LoadBalancer"),
    validation = Rule::new("!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'")
        .message("externalTrafficPolicy needs type NodePort or LoadBalancer")
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    #[serde(default)]
    pub ports: EdgeServicePorts,
}

/// The ports players use on the edge Service (the edge pods listen on SRS's own).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeServicePorts {
    #[serde(default = "default_rtmp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub rtmp: i32,
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
}

impl Default for EdgeServicePorts {
    fn default() -> Self {
        Self {
            rtmp: default_rtmp_port(),
            http: default_http_port(),
        }
    }
}

/// A HorizontalPodAutoscaler on the edges' CPU. It owns the replica count, and it needs a
/// metrics source (such as metrics-server) and a CPU request on the edges.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas")
    .message("autoscaling.maxReplicas must be at least minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeAutoscaling {
    /// Fewest edge pods.
    #[serde(default = "default_edge_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most edge pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the request, the autoscaler keeps the edges at.
    #[serde(
        default = "default_edge_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

impl ExternalTrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalTrafficPolicy::Cluster => "Cluster",
            ExternalTrafficPolicy::Local => "Local",
        }
    }
}

/// The client-facing Service(s): one for TCP protocols and, when WebRTC or SRT is on, one for UDP.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.loadBalancerClass) || self.type == 'LoadBalancer'")
        .message("loadBalancerClass needs type LoadBalancer"),
    validation = Rule::new("!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'")
        .message("externalTrafficPolicy needs type NodePort or LoadBalancer")
)]
#[serde(rename_all = "camelCase")]
pub struct ProxyServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    #[serde(default)]
    pub ports: ServicePorts,
}

/// The ports clients use. The proxy listens on the same numbers inside the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePorts {
    #[serde(default = "default_rtmp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub rtmp: i32,
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
    #[serde(default = "default_api_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub api: i32,
    #[serde(default = "default_webrtc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub webrtc: i32,
    #[serde(default = "default_srt_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub srt: i32,
}

impl Default for ServicePorts {
    fn default() -> Self {
        Self {
            rtmp: default_rtmp_port(),
            http: default_http_port(),
            api: default_api_port(),
            webrtc: default_webrtc_port(),
            srt: default_srt_port(),
        }
    }
}

/// A key of a Secret in the OriginCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// The operator runs a Redis Deployment and Service for the proxies.
    #[default]
    Managed,
    /// The proxies use a Redis you run (`external.url`).
    External,
    /// No Redis: ownership stays in one proxy's memory (only with one proxy replica).
    None,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Managed => "managed",
            RedisMode::External => "external",
            RedisMode::None => "none",
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.mode != 'external' || has(self.external)")
    .message("redis.mode external needs redis.external.url")
    .field_path(".external"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    #[serde(default)]
    pub mode: RedisMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://host:port/db` or `rediss://` for TLS. Put a password in `passwordSecretRef`,
    /// not in the URL.
    #[x_kube(validation = Rule::new("self.startsWith('redis://') || self.startsWith('rediss://')")
        .message("redis.external.url must start with redis:// or rediss://"))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    #[serde(default = "default_redis_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ManagedRedis {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            resources: None,
        }
    }
}

/// Fixed ports of the SRS origin container; the proxy finds them by name in EndpointSlices.
pub mod origin_ports {
    pub const RTMP: i32 = 1935;
    pub const HTTP: i32 = 8080;
    pub const API: i32 = 1985;
    pub const RTC: i32 = 8000;
    pub const SRT: i32 = 10080;
    /// SRS's Prometheus exporter (`spec.monitoring.originExporter`): SRS's default port.
    pub const EXPORTER: i32 = 9972;
}

/// The proxy's system API port (origin registration, metrics, probes).
pub const PROXY_SYSTEM_PORT: i32 = 12025;

fn enabled() -> bool {
    true
}
fn default_origin_replicas() -> i32 {
    2
}
fn default_origin_image() -> String {
    "ossrs/srs:7".into()
}
fn default_edge_replicas() -> i32 {
    2
}
fn default_edge_image() -> String {
    "ossrs/srs:7".into()
}
fn default_edge_min_replicas() -> i32 {
    1
}
fn default_edge_cpu_target() -> i32 {
    70
}
fn default_proxy_replicas() -> i32 {
    1
}
fn default_proxy_image() -> String {
    concat!(
        "ghcr.io/originstack/originstack-proxy:",
        env!("CARGO_PKG_VERSION")
    )
    .into()
}
fn default_redis_image() -> String {
    "redis:7.4-alpine".into()
}
fn default_secret_key() -> String {
    "token".into()
}
fn default_rtmp_port() -> i32 {
    1935
}
fn default_http_port() -> i32 {
    8080
}
fn default_api_port() -> i32 {
    1985
}
fn default_webrtc_port() -> i32 {
    8000
}
fn default_srt_port() -> i32 {
    10080
}
