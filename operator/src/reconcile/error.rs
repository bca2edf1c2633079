//! Every way one reconcile can fail, each with the stable reason that names it in the
//! Degraded condition, the Event and the error metric.

use super::names::MAX_NAME_LEN;

/// A failed reconcile: written to the status, published as an Event, retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing owned {kind} objects: {source}")]
    List {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}, which the spec no longer asks for: {source}")]
    Prune {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status: {source}")]
    Status {
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Stable PascalCase reason: the Degraded condition's reason, the Event's reason and the
    /// `reason` label of the error metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Read { .. } => "ReadFailed",
            Error::Invalid(invalid) => invalid.reason(),
            Error::Apply { .. } => "ApplyFailed",
            Error::List { .. } => "ListFailed",
            Error::Prune { .. } => "PruneFailed",
            Error::Status { .. } => "StatusWriteFailed",
        }
    }
}

/// What the validate stage refuses, worded for the user who can mend the spec or Secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("the OriginCluster has no metadata.{0}; it must come from the API server")]
    MissingMetadata(&'static str),
    #[error(
        "metadata.name {name:?} is {len} characters; at most {MAX_NAME_LEN} leave room for the owned Service names"
    )]
    NameTooLong { name: String, len: usize },
    #[error("{field} refers to Secret {name:?}, which does not exist in namespace {namespace:?}")]
    SecretNotFound {
        field: &'static str,
        name: String,
        namespace: String,
    },
    #[error("{field} refers to key {key:?} of Secret {name:?}, which is missing or empty")]
    SecretKeyMissing {
        field: &'static str,
        name: String,
        key: String,
    },
    #[error(
        "the register token in Secret {name:?} may only hold letters, digits and -._~ (it travels in the origins' heartbeat URL)"
    )]
    TokenNotUrlSafe { name: String },
    #[error("spec.origin.config line {line}: {problem}")]
    OriginConfig { line: usize, problem: String },
    #[error("{field}: {name} is set by the operator; remove it from the spec")]
    ReservedEnv { field: &'static str, name: String },
    #[error("spec.redis.mode is external but spec.redis.external is missing")]
    ExternalRedisMissing,
    #[error("spec.redis.external.url {url:?}: {problem}")]
    RedisUrl { url: String, problem: String },
    #[error(
        "spec.redis.mode none keeps stream ownership in one proxy's memory, but spec.proxy.replicas is {replicas}; use managed or external Redis"
    )]
    MemoryWithReplicas { replicas: i32 },
    #[error(
        "spec.edge needs spec.origin.protocols.rtmp: the edges pull every stream from the proxies over RTMP, and the proxies serve RTMP only when the origins do"
    )]
    EdgeWithoutRtmp,
    #[error(
        "spec.edge.env: {name} would configure an SRS heartbeat; an edge must never register with the proxies as an origin"
    )]
    EdgeHeartbeatEnv { name: String },
    #[error(
        "spec.origin.config has an exporter block and spec.monitoring.originExporter generates one; keep one (SRS would read only the first)"
    )]
    ExporterTwice,
}

impl ValidationError {
    /// The `reason` of the Degraded condition and Event (PascalCase, stable).
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::MissingMetadata(_) => "MissingMetadata",
            ValidationError::NameTooLong { .. } => "NameTooLong",
            ValidationError::SecretNotFound { .. } => "SecretNotFound",
            ValidationError::SecretKeyMissing { .. } => "SecretKeyMissing",
            ValidationError::TokenNotUrlSafe { .. } => "TokenNotUrlSafe",
            ValidationError::OriginConfig { .. } => "InvalidOriginConfig",
            ValidationError::ReservedEnv { .. } => "ReservedEnv",
            ValidationError::ExternalRedisMissing | ValidationError::RedisUrl { .. } => {
                "InvalidRedis"
            }
            ValidationError::MemoryWithReplicas { .. } => "InvalidRedis",
            ValidationError::EdgeWithoutRtmp => "InvalidEdge",
            ValidationError::EdgeHeartbeatEnv { .. } => "ReservedEnv",
            ValidationError::ExporterTwice => "InvalidMonitoring",
        }
    }
}
