//! prometheus-operator's PodMonitor (`monitoring.coreos.com/v1`), the one custom resource of
//! another project the operator creates: only the fields it sets. Unknown fields of a stored
//! PodMonitor are ignored when read back.
//!
//! Typed here, not taken from a crate: the crates that generate all of prometheus-operator's
//! types are large and track its releases; the operator needs six fields. Like `kinds`, this
//! module imports nothing else of the crate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The group/version the API server must serve for PodMonitors to be created.
pub const API_VERSION: &str = "monitoring.coreos.com/v1";

/// The plural, as API discovery lists it.
pub const PLURAL: &str = "podmonitors";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    plural = "podmonitors",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// The pod label whose value becomes the `job` label of the scraped series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_label: Option<String>,
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// The container port's name.
    pub port: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// Whether the API server serves PodMonitors (prometheus-operator's CRDs are installed).
/// Discovery is readable by every authenticated user: no RBAC grant is needed.
pub async fn served(client: &kube::Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(API_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err),
    }
}
