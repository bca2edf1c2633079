//! The Helm chart (charts/originstack) against real Helm and a real API server:
//!
//! - `helm lint --strict` with the defaults and with every value set;
//! - every value is in values.yaml, in the schema, in the chart README and set in
//!   ci/full-values.yaml;
//! - `helm template` with the defaults, with every value set and with every switch off, then a
//!   server-side dry-run apply of everything rendered (the ServiceMonitor and the
//!   PrometheusRule against prometheus-operator's real CRDs);
//! - the Grafana dashboard's ConfigMap, when switched on, carries files/dashboard.json intact;
//! - the operator's pod passes the `restricted` Pod Security Standard;
//! - the chart's CRD is the one in crds/, it becomes Established, and examples/*.yaml are
//!   accepted by it (dry-run).

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use originstack_e2e::{
    helm::{self, Helm, Render, chart_dir},
    kube::{ControlPlane, prometheusrule_crd, servicemonitor_crd},
    manifests::{self, Apply},
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const MANAGER: &str = "chart-test";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    helm::documents(&text)
        .unwrap()
        .into_iter()
        .next()
        .unwrap_or(Value::Null)
}

fn full_values() -> PathBuf {
    chart_dir().join("ci/full-values.yaml")
}

fn off_values() -> PathBuf {
    chart_dir().join("ci/off-values.yaml")
}

#[test]
fn helm_lint_passes_with_the_defaults_and_with_every_value_set() {
    let helm = Helm::find().unwrap();
    for values in [vec![], vec![full_values()], vec![off_values()]] {
        let output = helm.lint(&values).unwrap();
        assert!(output.contains("0 chart(s) failed"), "{output}");
    }
}

/// Value paths the schema treats as one value (its leaves: anything without `properties`).
fn schema_leaves(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if sub.get("properties").is_some() {
            schema_leaves(sub, &path, out);
        } else {
            out.insert(path);
        }
    }
}

fn has_path(values: &Value, path: &str) -> bool {
    path.split('.')
        .try_fold(values, |value, key| value.get(key))
        .is_some()
}

#[test]
fn every_value_has_a_default_a_schema_a_description_and_a_test_setting() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let mut leaves = BTreeSet::new();
    schema_leaves(&schema, "", &mut leaves);
    // Helm hands `global` to every chart; it is not a value of ours.
    leaves.remove("global");
    let defaults = yaml_file(&chart_dir().join("values.yaml"));
    let full = yaml_file(&full_values());
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(path, _)| path.to_string())
        .collect();
    for leaf in &leaves {
        assert!(
            has_path(&defaults, leaf),
            "values.yaml has no default for {leaf}"
        );
        assert!(
            has_path(&full, leaf),
            "ci/full-values.yaml does not set {leaf}"
        );
    }
    assert_eq!(
        documented, leaves,
        "the values table of charts/originstack/README.md must list exactly the schema's values"
    );
}

/// The three renders the tests check: defaults, everything set, everything switched off.
fn renders(namespace: &str, watch: &str) -> Vec<(&'static str, Vec<Value>)> {
    let helm = Helm::find().unwrap();
    let render = |values_files: Vec<PathBuf>, set: Vec<(&'static str, String)>| {
        helm.render(&Render {
            release: "os",
            namespace,
            values_files,
            set,
        })
        .unwrap()
    };
    vec![
        ("defaults", render(vec![], vec![])),
        (
            "every value set",
            // The watched namespace must exist for its Role, and the dashboard's for its
            // ConfigMap; tests make their own.
            render(
                vec![full_values()],
                vec![
                    ("watchNamespace", watch.to_string()),
                    ("metrics.grafanaDashboard.namespace", watch.to_string()),
                ],
            ),
        ),
        ("every switch off", render(vec![off_values()], vec![])),
    ]
}

async fn install_crd(client: &Client, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    tokio::time::timeout(
        TIMEOUT,
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not Established"))
    .unwrap();
}

/// prometheus-operator's ServiceMonitor and PrometheusRule CRDs (fetched by
/// tests/k8s-assets/build.sh).
async fn install_prometheus_operator_crds(client: &Client) {
    for path in [servicemonitor_crd(), prometheusrule_crd()] {
        install_crd(client, &yaml_file(&path)).await;
    }
}

#[tokio::test]
async fn everything_rendered_is_accepted_by_the_api_server() {
    let plane = ControlPlane::shared().await;
    let client = plane.admin_client().await.unwrap();
    install_prometheus_operator_crds(&client).await;
    let namespace = plane.create_namespace("chart").await.unwrap();
    let watch = plane.create_namespace("watched").await.unwrap();
    for (case, documents) in renders(&namespace, &watch) {
        assert!(!documents.is_empty(), "{case}: nothing rendered");
        let how = Apply {
            manager: MANAGER,
            namespace: &namespace,
            dry_run: true,
        };
        let applied = manifests::apply(&client, &documents, how)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:#}"));
        assert_eq!(applied.len(), documents.len(), "{case}");
    }
}

#[tokio::test]
async fn the_operator_pod_meets_the_restricted_pod_security_standard() {
    let plane = ControlPlane::shared().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("restricted").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &namespace,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await
        .unwrap();
    for (case, documents) in renders(&namespace, &namespace) {
        let deployment = helm::find(&documents, "Deployment", None)[0];
        let template = &deployment["spec"]["template"];
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "operator", "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        });
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(client.clone(), &namespace);
        let pod = serde_json::from_value(pod).unwrap();
        pods.create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod,
        )
        .await
        .unwrap_or_else(|e| {
            panic!("{case}: the operator's pod is refused under `restricted`: {e}")
        });
    }
}

/// A CRD without what the chart adds (Helm labels, the keep annotation), numbers as the API
/// server reads them (Helm's YAML round trip writes `100.0` as `100`).
fn without_chart_metadata(mut crd: Value) -> Value {
    let metadata = crd["metadata"].as_object_mut().unwrap();
    metadata.remove("labels");
    metadata.remove("annotations");
    numbers_as_floats(crd)
}

fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

#[tokio::test]
async fn the_chart_crd_is_the_generated_one_and_takes_the_examples() {
    let plane = ControlPlane::shared().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("examples").await.unwrap();
    let documents = Helm::find()
        .unwrap()
        .render(&Render {
            release: "os",
            namespace: &namespace,
            ..Default::default()
        })
        .unwrap();
    let crds = helm::find(&documents, "CustomResourceDefinition", None);
    assert_eq!(crds.len(), 1);
    let committed = numbers_as_floats(yaml_file(
        &repo().join("crds/originclusters.originstack.dev.yaml"),
    ));
    assert!(
        without_chart_metadata(crds[0].clone()) == committed,
        "the chart's CRD differs from crds/originclusters.originstack.dev.yaml"
    );
    assert_eq!(
        crds[0]["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "uninstalling the chart must not delete every OriginCluster"
    );
    install_crd(&client, crds[0]).await;

    let examples = originstack_e2e::manifests::examples();
    assert!(examples.len() >= 4, "{examples:?}");
    for example in examples {
        let text = std::fs::read_to_string(&example).unwrap();
        let documents = helm::documents(&text).unwrap();
        let how = Apply {
            manager: MANAGER,
            namespace: &namespace,
            dry_run: true,
        };
        // Discovery may lag a freshly Established CRD by a moment.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match manifests::apply(&client, &documents, how).await {
                Ok(_) => break,
                Err(error)
                    if tokio::time::Instant::now() < deadline
                        && format!("{error:#}").contains("does not serve") =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(error) => panic!("{}: {error:#}", example.display()),
            }
        }
    }
}

#[tokio::test]
async fn invalid_values_are_refused_at_template_time() {
    let helm = Helm::find().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("bogus", "1")],
            "additional properties 'bogus' not allowed",
        ),
        (&[("logging.format", "xml")], "logging.format"),
        (
            &[("replicaCount", "2"), ("leaderElection.enabled", "false")],
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            &[("serviceAccount.create", "false")],
            "serviceAccount.name is required",
        ),
    ];
    for (set, expected) in cases {
        let error = helm
            .template(&Render {
                release: "os",
                namespace: "default",
                set: set.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                ..Default::default()
            })
            .expect_err(&format!("{set:?} must be refused"));
        assert!(
            format!("{error:#}").contains(expected),
            "{set:?}: {error:#}"
        );
    }
}

#[test]
fn the_grafana_dashboard_configmap_holds_the_dashboard_json() {
    let helm = Helm::find().unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("files/dashboard.json")).unwrap(),
    )
    .expect("files/dashboard.json is JSON");
    let config_maps = |set: &[(&'static str, &str)]| -> Vec<Value> {
        let documents = helm
            .render(&Render {
                release: "os",
                namespace: "originstack-system",
                set: set.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                ..Default::default()
            })
            .unwrap();
        helm::find(&documents, "ConfigMap", None)
            .into_iter()
            .cloned()
            .collect()
    };
    assert!(
        config_maps(&[]).is_empty(),
        "the dashboard is off by default"
    );

    let on = ("metrics.grafanaDashboard.enabled", "true");
    let rendered = config_maps(&[on]);
    assert_eq!(rendered.len(), 1, "{rendered:#?}");
    let metadata = &rendered[0]["metadata"];
    assert_eq!(metadata["name"], "os-originstack-dashboard");
    assert_eq!(metadata["namespace"], "originstack-system");
    assert_eq!(metadata["labels"]["grafana_dashboard"], "1");
    let text = rendered[0]["data"]["originstack.json"].as_str();
    let dashboard: Value = serde_json::from_str(text.expect("data originstack.json"))
        .expect("the ConfigMap's dashboard is JSON");
    assert_eq!(dashboard, committed);

    // The sidecar often watches Grafana's namespace only, and may file by annotation.
    let rendered = config_maps(&[
        on,
        ("metrics.grafanaDashboard.namespace", "monitoring"),
        (
            "metrics.grafanaDashboard.annotations.grafana_folder",
            "Video",
        ),
    ]);
    let metadata = &rendered[0]["metadata"];
    assert_eq!(metadata["namespace"], "monitoring");
    assert_eq!(metadata["annotations"]["grafana_folder"], "Video");
}

/// The YAML code blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_gitops_examples_in_the_install_guide_point_at_the_chart_with_valid_values() {
    let guide = std::fs::read_to_string(repo().join("docs/install.md")).unwrap();
    let helm = Helm::find().unwrap();
    let mut checked = Vec::new();
    for block in yaml_blocks(&guide) {
        for document in helm::documents(&block).unwrap() {
            let (path, values) = match document["kind"].as_str() {
                Some("Application") => (
                    document["spec"]["source"]["path"].clone(),
                    document["spec"]["source"]["helm"]["valuesObject"].clone(),
                ),
                Some("HelmRelease") => (
                    document["spec"]["chart"]["spec"]["chart"].clone(),
                    document["spec"]["values"].clone(),
                ),
                _ => continue,
            };
            let path = path.as_str().unwrap().trim_start_matches("./");
            assert_eq!(
                repo().join(path).canonicalize().unwrap(),
                chart_dir().canonicalize().unwrap(),
                "{} installs {path}",
                document["kind"]
            );
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), serde_json::to_string(&values).unwrap()).unwrap();
            helm.template(&Render {
                release: "originstack",
                namespace: "originstack-system",
                values_files: vec![file.path().to_path_buf()],
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{} values: {e:#}", document["kind"]));
            checked.push(document["kind"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(checked, ["Application", "HelmRelease"]);
}
