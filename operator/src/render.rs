//! `originstack-operator render`: the objects the reconciler would apply for an OriginCluster
//! manifest, without a cluster or credentials.
//!
//! The same stages as a reconcile minus the I/O: the manifest's Secrets stand in for the read
//! stage, then the reconciler's own [`validate`](crate::reconcile::validate) and
//! [`build`](crate::reconcile::build). Before that, the checks the API server would make on
//! admission: the manifest must deserialize into the CRD's types (with their defaults) and pass
//! the CRD's CEL rules, evaluated with a CEL interpreter.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{ResourceExt, core::ObjectMeta};
use serde::Deserialize;

use crate::{
    crd::OriginCluster,
    kinds::Owned,
    reconcile::{
        error::ValidationError,
        read::{Observed, SecretNames},
        validate,
    },
};

/// Stands in for the uid the API server gives the OriginCluster (it shows in ownerReferences).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";
/// Stands in for a token the operator generates at the first apply (and then keeps).
pub const PLACEHOLDER_TOKEN: &str = "generated-by-the-operator-at-first-apply";
/// Stands in for the value of a Secret the manifest names but does not hold.
pub const PLACEHOLDER_SECRET_VALUE: &str = "value-of-the-referenced-secret";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error(
        "no OriginCluster in the manifest (kind: OriginCluster, apiVersion: originstack.dev/v1alpha1)"
    )]
    NoCluster,
    #[error("more than one OriginCluster in the manifest; render one at a time")]
    SeveralClusters,
    #[error(
        "document {index}: {kind} is not rendered (only OriginCluster and the Secrets it names)"
    )]
    UnexpectedKind { index: usize, kind: String },
    /// What the API server would refuse on admission, in its words.
    #[error("OriginCluster.originstack.dev {name:?} is invalid: {problems}", problems = .problems.join(", "))]
    Invalid { name: String, problems: Vec<String> },
    /// What the validate stage refuses (a Degraded condition in a cluster).
    #[error("{reason}: {error}", reason = .0.reason(), error = .0)]
    Validation(ValidationError),
}

/// What a manifest holds: one OriginCluster and the Secrets beside it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub cluster: OriginCluster,
    pub secrets: Vec<Secret>,
}

/// Which values stand in for what a cluster would give.
#[derive(Debug, Clone)]
pub struct Stand {
    /// Namespace when the manifest names none.
    pub namespace: String,
    pub uid: String,
    pub fresh_token: String,
    pub fresh_read_token: String,
    /// Whether a Secret the spec names but the manifest lacks is made up (render) or missing
    /// (as the validate stage would find it in a namespace without it).
    pub placeholder_secrets: bool,
}

impl Default for Stand {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            uid: PLACEHOLDER_UID.into(),
            fresh_token: PLACEHOLDER_TOKEN.into(),
            fresh_read_token: PLACEHOLDER_TOKEN.into(),
            placeholder_secrets: true,
        }
    }
}

/// Whether [`parse`] checks the OriginCluster as the API server would on admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Check,
    /// Only the types: for fixtures that exercise the validate stage behind admission.
    Skip,
}

/// Reads a manifest (multi-document YAML).
pub fn parse(
    text: &str,
    namespace: Option<&str>,
    admission: Admission,
) -> Result<Manifest, RenderError> {
    let mut cluster = None;
    let mut secrets = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        match value.get("kind").and_then(|kind| kind.as_str()) {
            Some("OriginCluster") => {
                if cluster.is_some() {
                    return Err(RenderError::SeveralClusters);
                }
                cluster = Some(admit(value, admission)?);
            }
            Some("Secret") => secrets.push(serde_yaml::from_value(value)?),
            other => {
                return Err(RenderError::UnexpectedKind {
                    index: index + 1,
                    kind: other.unwrap_or("a document without kind").to_owned(),
                });
            }
        }
    }
    let mut cluster: OriginCluster = cluster.ok_or(RenderError::NoCluster)?;
    if let Some(namespace) = namespace {
        cluster.metadata.namespace = Some(namespace.to_owned());
    }
    Ok(Manifest { cluster, secrets })
}

/// Deserializes an OriginCluster and runs the CRD's CEL rules on it, as admission would.
fn admit(value: serde_yaml::Value, admission: Admission) -> Result<OriginCluster, RenderError> {
    let name = value
        .get("metadata")
        .and_then(|meta| meta.get("name"))
        .and_then(|name| name.as_str())
        .unwrap_or_default()
        .to_owned();
    let invalid = |problems: Vec<String>| RenderError::Invalid {
        name: name.clone(),
        problems,
    };
    let object = serde_json::to_value(&value).map_err(|err| invalid(vec![err.to_string()]))?;
    let cluster: OriginCluster = serde_yaml::from_value(value)
        .map_err(|err| invalid(vec![format!("Invalid value: {err}")]))?;
    if admission == Admission::Skip {
        return Ok(cluster);
    }
    // As the API server admits: defaults, then the schema's bounds, then the CEL rules.
    let schema = schema();
    let defaulted = kube_cel::apply_defaults(&schema, &object);
    let mut problems = Vec::new();
    bounds("", &schema, &defaulted, &mut problems);
    if let Err(failures) = kube_cel::validate(&schema, &object, None) {
        problems.extend(failures.iter().map(|failure| {
            let path = failure.field_path.trim_start_matches('.');
            let kind = type_name(at_path(&defaulted, path));
            if path.is_empty() {
                format!("<nil>: Invalid value: \"{kind}\": {}", failure.message)
            } else {
                format!("{path}: Invalid value: \"{kind}\": {}", failure.message)
            }
        }));
    }
    if problems.is_empty() {
        Ok(cluster)
    } else {
        Err(invalid(problems))
    }
}

/// The schema's numeric bounds, string lengths and enums, worded as the API server words them
/// (`<path> in body should be ...`). The API server's structural checks exist in Go only, and
/// the CEL evaluator above checks rules, not these.
fn bounds(
    path: &str,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    problems: &mut Vec<String>,
) {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    let limit = |key: &str| schema.get(key).and_then(Value::as_f64);
    match value {
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(max) = limit("maximum").filter(|max| n > *max) {
                problems.push(format!(
                    "{path}: Invalid value: {number}: {path} in body should be less than or equal to {max}"
                ));
            }
            if let Some(min) = limit("minimum").filter(|min| n < *min) {
                problems.push(format!(
                    "{path}: Invalid value: {number}: {path} in body should be greater than or equal to {min}"
                ));
            }
        }
        Value::String(text) => {
            let length = text.chars().count() as f64;
            if let Some(max) = limit("maxLength").filter(|max| length > *max) {
                problems.push(format!(
                    "{path}: Too long: may not be more than {max} bytes"
                ));
            }
            if let Some(min) = limit("minLength").filter(|min| length < *min) {
                problems.push(format!(
                    "{path}: Invalid value: {value}: {path} in body should be at least {min} chars long"
                ));
            }
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                && !allowed.contains(value)
            {
                let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
                problems.push(format!(
                    "{path}: Unsupported value: {value}: supported values: {}",
                    allowed.join(", ")
                ));
            }
        }
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, field) in fields {
                let sub = properties
                    .and_then(|p| p.get(key))
                    .or(additional.filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    bounds(&join(key), sub, field, problems);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    bounds(&format!("{path}[{index}]"), sub, item, problems);
                }
            }
        }
        _ => {}
    }
}

/// The value at a dotted path (`spec.proxy.service`), if there is one.
fn at_path<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .filter(|part| !part.is_empty())
        .try_fold(value, |value, part| value.get(part))
}

/// The API server's name of a value's type in its `Invalid value` messages.
fn type_name(value: Option<&serde_json::Value>) -> &'static str {
    match value {
        Some(serde_json::Value::String(_)) => "string",
        Some(serde_json::Value::Number(_)) => "number",
        Some(serde_json::Value::Bool(_)) => "boolean",
        Some(serde_json::Value::Array(_)) => "array",
        _ => "object",
    }
}

/// The OriginCluster CRD's OpenAPI schema, as the API server holds it.
fn schema() -> serde_json::Value {
    use kube::CustomResourceExt;
    let crd = OriginCluster::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|version| version.schema.as_ref())
        .and_then(|schema| schema.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).expect("a schema serializes")
}

/// The objects the reconciler would apply for `manifest`, in apply order.
pub fn objects(manifest: &Manifest, stand: &Stand) -> Result<Vec<Owned>, RenderError> {
    let mut cluster = manifest.cluster.clone();
    cluster
        .metadata
        .namespace
        .get_or_insert_with(|| stand.namespace.clone());
    cluster
        .metadata
        .uid
        .get_or_insert_with(|| stand.uid.clone());
    let names = SecretNames::of(&cluster);
    let namespace = cluster.namespace().unwrap_or_default();
    let find = |name: &str| {
        manifest
            .secrets
            .iter()
            .find(|secret| {
                secret.metadata.name.as_deref() == Some(name)
                    && secret.metadata.namespace.as_deref().unwrap_or(&namespace) == namespace
            })
            .cloned()
            .or_else(|| {
                stand
                    .placeholder_secrets
                    .then(|| placeholder(&cluster, name))
                    .flatten()
            })
    };
    let observed = Observed {
        token_secret: find(&names.token),
        redis_password_secret: names.redis_password.as_deref().and_then(find),
        fresh_token: stand.fresh_token.clone(),
        fresh_read_token: stand.fresh_read_token.clone(),
        current: Vec::new(),
        // Rendered as they would be applied where Prometheus Operator is installed.
        podmonitors_served: true,
    };
    let plan = validate::validate(&cluster, &observed).map_err(RenderError::Validation)?;
    Ok(crate::reconcile::build::build(&plan))
}

/// A Secret the spec names that the manifest does not hold: one with every key the spec reads
/// set to a placeholder, so the render goes on without credentials. The operator's own
/// generated Secret is not invented: the build stage makes it.
fn placeholder(cluster: &OriginCluster, name: &str) -> Option<Secret> {
    let spec = &cluster.spec;
    let mut keys = Vec::new();
    if let Some(reference) = &spec.proxy.register_token_secret_ref {
        keys.extend((reference.name == name).then(|| reference.key.clone()));
    }
    if let Some(reference) = spec
        .redis
        .external
        .as_ref()
        .and_then(|external| external.password_secret_ref.as_ref())
    {
        keys.extend((reference.name == name).then(|| reference.key.clone()));
    }
    if keys.is_empty() {
        return None;
    }
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            keys.into_iter()
                .map(|key| {
                    (
                        key,
                        ByteString(PLACEHOLDER_SECRET_VALUE.as_bytes().to_vec()),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    })
}

/// Multi-document YAML of `objects`, as `render` prints it.
pub fn to_yaml(objects: &[Owned]) -> String {
    objects
        .iter()
        .map(|object| {
            format!(
                "---\n{}",
                serde_yaml::to_string(object).expect("owned objects serialize")
            )
        })
        .collect()
}

/// The whole `render` command: a manifest in, YAML out with a header saying what stands in for
/// the cluster's values.
pub fn render(text: &str, namespace: Option<&str>) -> Result<String, RenderError> {
    let manifest = parse(text, namespace, Admission::Check)?;
    let objects = objects(&manifest, &Stand::default())?;
    Ok(format!(
        "# originstack-operator render: the objects the operator applies for OriginCluster {name:?}.\n\
         # Without a cluster, these stand in for values it would read or generate:\n\
         #   metadata.uid (ownerReferences): {PLACEHOLDER_UID}\n\
         #   generated tokens (kept once generated): {PLACEHOLDER_TOKEN}\n\
         #   Secrets the spec names but this manifest does not hold: {PLACEHOLDER_SECRET_VALUE}\n\
         # The config-hash annotations follow these values.\n{}",
        to_yaml(&objects),
        name = manifest.cluster.name_any(),
    ))
}
