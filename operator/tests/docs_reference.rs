//! The operator's reference documentation, generated from the code and checked for drift
//! (`make generate` rewrites it):
//!
//! - docs/configuration.md `operator-settings`: `originstack-operator --help`;
//! - docs/crd.md `origincluster-fields` and `origincluster-rules`: every field of the CRD's
//!   schema with type, default, bounds and description, and its validation rules;
//! - docs/metrics.md `operator-metrics`: the families of the operator's registry.

use std::{process::Command, time::Duration};

use kube::CustomResourceExt;
use originstack_e2e::docs::{cell, check_section, doc_path, metric_families, metrics_table};
use originstack_operator::{crd::OriginCluster, metrics::Metrics};
use serde_json::Value;

#[test]
fn the_settings_reference_is_the_binarys_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_originstack-operator"))
        .arg("--help")
        // `--help` shows the values of set variables; the reference shows none.
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    check_section(
        &doc_path("configuration.md"),
        "operator-settings",
        &format!("```text\n{}\n```", help.trim_end()),
    );
}

/// Fields whose schema is a Kubernetes type: linked to the Kubernetes reference, not listed.
const KUBERNETES_TYPES: &[(&str, &str)] = &[
    ("affinity", "Affinity"),
    ("env", "EnvVar"),
    ("imagePullSecrets", "LocalObjectReference"),
    ("resources", "ResourceRequirements"),
    ("tolerations", "Toleration"),
    ("topologySpreadConstraints", "TopologySpreadConstraint"),
    ("conditions", "Condition (metav1)"),
];

fn type_of(schema: &Value) -> String {
    let mut kind = match schema["type"].as_str() {
        Some("array") => format!("[]{}", type_of(&schema["items"])),
        Some("object") if schema.get("additionalProperties").is_some() => {
            let value = &schema["additionalProperties"];
            format!("map[string]{}", value["type"].as_str().unwrap_or("any"))
        }
        Some(kind) => kind.to_string(),
        None if schema.get("x-kubernetes-int-or-string").is_some() => "int-or-string".into(),
        None => "any".into(),
    };
    if let Some(format) = schema["format"].as_str() {
        kind.push_str(&format!(" ({format})"));
    }
    kind
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn constraints(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| format!("`{}`", scalar(v)))
            .collect();
        parts.push(format!("one of {}", values.join(", ")));
    }
    match (schema.get("minimum"), schema.get("maximum")) {
        (Some(min), Some(max)) => parts.push(format!("{}–{}", scalar(min), scalar(max))),
        (Some(min), None) => parts.push(format!("≥ {}", scalar(min))),
        (None, Some(max)) => parts.push(format!("≤ {}", scalar(max))),
        (None, None) => {}
    }
    if let Some(max) = schema.get("maxLength") {
        parts.push(format!("at most {} characters", scalar(max)));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        parts.push(format!("matches `{pattern}`"));
    }
    parts.join("; ")
}

fn fields(schema: &Value, prefix: &str, required: &[&str], rows: &mut Vec<String>) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, field) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let kubernetes = KUBERNETES_TYPES.iter().find(|(n, _)| n == name);
        let mut meaning = field["description"].as_str().unwrap_or("").to_string();
        if let Some((_, type_name)) = kubernetes {
            meaning =
                format!("Kubernetes `{type_name}` (see the Kubernetes API reference). {meaning}");
            // Kubernetes' own long descriptions: the first sentence is enough here.
            if let Some((first, _)) = meaning.split_once(". ") {
                meaning = format!("{first}.");
            }
        }
        // An object's default is the sum of its fields' defaults, listed with them.
        let default = field
            .get("default")
            .filter(|d| !d.is_object())
            .map(|d| format!("`{}`", cell(&scalar(d))))
            .unwrap_or_default();
        let mut notes = constraints(field);
        if required.contains(&name.as_str()) {
            notes = if notes.is_empty() {
                "required".into()
            } else {
                format!("required; {notes}")
            };
        }
        rows.push(format!(
            "| `{path}` | {} | {default} | {} | {} |",
            cell(&type_of(field)),
            cell(&notes),
            cell(&meaning)
        ));
        if kubernetes.is_some() {
            continue;
        }
        let (inner, inner_path) = if field["type"] == "object" {
            (field, path.clone())
        } else if field["type"] == "array" && field["items"]["type"] == "object" {
            (&field["items"], format!("{path}[]"))
        } else {
            continue;
        };
        let required: Vec<&str> = inner["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        fields(inner, &inner_path, &required, rows);
    }
}

fn rules(schema: &Value, path: &str, rows: &mut Vec<String>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let at = match rule["fieldPath"].as_str() {
            Some(field) => format!("{path}{field}"),
            None => path.to_string(),
        };
        rows.push(format!(
            "| `{}` | {} | `{}` |",
            if at.is_empty() { "." } else { &at },
            cell(rule["message"].as_str().unwrap_or("")),
            cell(rule["rule"].as_str().unwrap_or("")).replace('`', "'"),
        ));
    }
    for (name, field) in schema["properties"].as_object().into_iter().flatten() {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        rules(field, &child, rows);
        if field["items"].is_object() {
            rules(&field["items"], &format!("{child}[]"), rows);
        }
    }
}

/// Checks section `name` of docs/crd.md: a table with `headers` and `rows`.
fn check_table(name: &str, headers: &[&str], rows: &[String]) {
    let mut table = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for row in rows {
        table.push_str(row);
        table.push('\n');
    }
    check_section(&doc_path("crd.md"), name, &table);
}

#[test]
fn the_crd_reference_is_generated_from_the_schema() {
    let crd = serde_json::to_value(OriginCluster::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let mut rows = Vec::new();
    fields(schema, "", &[], &mut rows);
    let headers = ["field", "type", "default", "constraints", "meaning"];
    check_table("origincluster-fields", &headers, &rows);

    let mut rows = Vec::new();
    rules(schema, "", &mut rows);
    check_table(
        "origincluster-rules",
        &["where", "message", "rule (CEL)"],
        &rows,
    );

    let columns: Vec<String> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|column| {
            format!(
                "| {} | `{}` {} | {} |",
                column["name"].as_str().unwrap_or(""),
                column["jsonPath"].as_str().unwrap_or(""),
                column["description"]
                    .as_str()
                    .map(|d| format!("({})", cell(d)))
                    .unwrap_or_default(),
                if column["priority"].as_i64().unwrap_or(0) > 0 {
                    "yes"
                } else {
                    ""
                },
            )
        })
        .collect();
    let headers = ["column", "shows", "only with `-o wide`"];
    check_table("origincluster-columns", &headers, &columns);
}

#[test]
fn the_metrics_reference_is_generated_from_the_registry() {
    let metrics = Metrics::new();
    // Every family gets a sample, so its labels show.
    metrics.observe_reconcile(Duration::from_millis(3), Some("ApplyFailed"));
    metrics.set_leader(true);
    // One cached cluster, so the per-cluster family shows its labels.
    let (store, mut writer) = kube::runtime::reflector::store::<OriginCluster>();
    let cluster: OriginCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "originstack.dev/v1alpha1", "kind": "OriginCluster",
        "metadata": {"name": "live", "namespace": "media", "uid": "u1"},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady",
            "message": "", "lastTransitionTime": "2026-12-05T08:00:00Z", "observedGeneration": 1}]},
    }))
    .unwrap();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cluster));
    metrics.watch_clusters(store);
    check_section(
        &doc_path("metrics.md"),
        "operator-metrics",
        &metrics_table(&metric_families(&metrics.encode())),
    );
}
