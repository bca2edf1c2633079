//! `OriginCluster.status`: what the operator observed, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OriginClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub origins: ReplicaCounts,
    #[serde(default)]
    pub proxies: ReplicaCounts,
    /// The managed Redis (absent for external or no Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ReplicaCounts>,
    /// The edge pods (absent without `spec.edge`); with autoscaling, `desired` is the
    /// autoscaler's current choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<ReplicaCounts>,
    /// Where clients connect, one URL per enabled protocol.
    #[serde(default)]
    pub endpoints: Endpoints,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    #[serde(default)]
    pub desired: i32,
    #[serde(default)]
    pub ready: i32,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<String>,
    /// Base URL of HTTP-FLV (`/app/stream.flv`) and HLS (`/app/stream.m3u8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// WHIP/WHEP and the SRS RTC API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// WebRTC media (UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt: Option<String>,
    /// Where players reach the edges (absent without `spec.edge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeEndpoints>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeEndpoints {
    /// RTMP play (a publish here is forwarded to the proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<String>,
    /// Base URL of HTTP-FLV (`/app/stream.flv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// Condition types of `status.conditions`.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const PAUSED: &str = "Paused";
    /// Present while `spec.monitoring.enabled`: True once the PodMonitors are applied, False
    /// when the API server does not serve them.
    pub const MONITORING: &str = "Monitoring";
}
