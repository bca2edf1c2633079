//! The chart's alert rules (`charts/originstack/files/alerts.yaml`, the PrometheusRule's
//! body): `promtool check rules` accepts them, `promtool test rules` runs their unit tests
//! (`tests/prometheus/alerts.test.yaml`: each alert fires on the series that should raise it
//! and stays quiet before), and every metric an expression names exists in a real scrape of
//! the proxy binary or in the operator's registry (the one its `/metrics` serves).
//!
//! The chart's Grafana dashboard (`charts/originstack/files/dashboard.json`) likewise: every
//! metric its panels and variables name exists, its expressions parse as PromQL, and each
//! cluster's panels select by the `namespace` and `cluster` variables.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use originstack_e2e::{ProxyProcess, free_port, http_request, kube::promtool, proxy_binary};
use originstack_operator::metrics::Metrics;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_file() -> PathBuf {
    repo().join("charts/originstack/files/alerts.yaml")
}

fn dashboard_file() -> PathBuf {
    repo().join("charts/originstack/files/dashboard.json")
}

fn run_promtool(args: &[&str], file: &Path) {
    let output = Command::new(promtool())
        .args(args)
        .arg(file)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} {} failed:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    run_promtool(&["check", "rules"], &rules_file());
    run_promtool(
        &["test", "rules"],
        &repo().join("tests/prometheus/alerts.test.yaml"),
    );
}

/// Sample names an exposition offers: those of its samples, and those its `# TYPE` lines
/// promise (a labelled family without samples yet has only these).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", ""],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `originstack_*` identifier in a PromQL expression, each with the label matchers
/// written right after it (`{...}`, without the braces; empty when there are none).
fn metric_selectors(expr: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("originstack_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let matchers = tail[end..]
            .strip_prefix('{')
            .and_then(|inner| inner.split_once('}'))
            .map_or("", |(inner, _)| inner);
        found.push((&tail[..end], matchers));
        rest = &tail[end..];
    }
    found
}

fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    into.extend(
        metric_selectors(expr)
            .into_iter()
            .map(|(name, _)| name.to_owned()),
    );
}

/// Every `originstack_*` identifier in the rules' expressions.
fn metrics_named_by_rules(rules: &str) -> BTreeSet<String> {
    let document: serde_yaml::Value = serde_yaml::from_str(rules).expect("alerts.yaml is YAML");
    let mut named = BTreeSet::new();
    for group in document["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            metric_names(expr, &mut named);
        }
    }
    named
}

/// Sample names the proxy binary and the operator offer: a real scrape of the proxy after it
/// has seen an origin and a stream, and the operator's registry after a failed reconcile.
fn offered_metrics() -> BTreeSet<String> {
    let proxy = ProxyProcess::start(proxy_binary(), &[]).unwrap();
    // A labelled family has no line at all before its first sample: register an origin (whose
    // ports refuse) and ask for a stream, so registrations and picks get theirs; send an empty
    // WebRTC offer, refused but counted; and register an origin after the first was refused, so
    // one stays in the registry for the per-origin stream gauge.
    proxy
        .register("alerts-origin", free_port(), free_port())
        .unwrap();
    let (status, _) = http_request(proxy.http, "GET", "/live/alerts.flv", &[], "").unwrap();
    assert!(matches!(status, 502 | 503), "{status}");
    let whip = "/rtc/v1/whip/?app=live&stream=alerts";
    let (status, _) = http_request(proxy.api, "POST", whip, &[], "").unwrap();
    assert!(status >= 400, "{status}");
    proxy
        .register("idle-origin", free_port(), free_port())
        .unwrap();
    let mut offered = sample_names(&proxy.metrics().unwrap());
    let operator = Metrics::new();
    operator.observe_reconcile(Duration::from_millis(1), Some("ApplyFailed"));
    offered.extend(sample_names(&operator.encode()));
    offered
}

#[test]
fn every_metric_the_alerts_use_exists() {
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let named = metrics_named_by_rules(&rules);
    assert!(named.len() >= 6, "{named:?}");

    let offered = offered_metrics();
    let unknown: Vec<&String> = named.difference(&offered).collect();
    assert!(
        unknown.is_empty(),
        "alert expressions name metrics no binary exports: {unknown:?}"
    );
}

#[test]
fn a_misspelt_metric_is_caught() {
    let rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: originstack_proxy_origin_alive == 0\n";
    let named = metrics_named_by_rules(rules);
    let offered = sample_names("# TYPE originstack_proxy_origins_alive gauge\n");
    assert_eq!(
        named.difference(&offered).collect::<Vec<_>>(),
        ["originstack_proxy_origin_alive"]
    );
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_file()).unwrap();
    serde_json::from_str(&text).expect("dashboard.json is JSON")
}

/// Every panel of the dashboard, rows included, with the panels a collapsed row holds.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(panel title, expr)` of every query target of every panel.
fn panel_expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let expr = target["expr"].as_str();
            let expr = expr.unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((title, expr.to_owned()));
        }
    }
    out
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|variable| variable["name"] == name)
        .unwrap_or_else(|| panic!("the dashboard has no variable {name:?}"))
}

/// The queries of the query variables: Grafana keeps them as a string or as `{query: ...}`,
/// and shows `definition`; all of them are read.
fn variable_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = &variable["query"];
        for text in [&query["query"], query, &variable["definition"]] {
            out.extend(text.as_str().map(str::to_owned));
        }
    }
    out
}

/// What is wrong with the selectors of one panel expression, by this rule: the proxies of an
/// OriginCluster are one scrape job named after it, so a proxy metric must select
/// `namespace="$namespace"` and `job=~"$cluster"`; the operator reports each cluster's
/// conditions under `cluster_namespace` and `cluster`, which that metric must select the same
/// way. The operator's other metrics describe its own process (the `namespace` of its series
/// is the release's, not the clusters') and carry no cluster, so they are left unfiltered.
fn unfiltered_selectors(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, matchers) in metric_selectors(expr) {
        let required: &[&str] = if name.starts_with("originstack_proxy_") {
            &[r#"namespace="$namespace""#, r#"job=~"$cluster""#]
        } else if name == "originstack_operator_cluster_condition" {
            &[
                r#"cluster_namespace="$namespace""#,
                r#"cluster=~"$cluster""#,
            ]
        } else {
            &[]
        };
        let present: Vec<String> = matchers
            .split(',')
            .map(|matcher| matcher.split_whitespace().collect())
            .collect();
        for matcher in required {
            if !present.iter().any(|p| p == matcher) {
                problems.push(format!("{name} does not select {matcher}"));
            }
        }
    }
    problems
}

#[test]
fn every_metric_the_dashboard_uses_exists() {
    let dashboard = dashboard();
    let mut named = BTreeSet::new();
    for (_, expr) in panel_expressions(&dashboard) {
        metric_names(&expr, &mut named);
    }
    for query in variable_queries(&dashboard) {
        metric_names(&query, &mut named);
    }
    assert!(named.len() >= 30, "{named:?}");

    let offered = offered_metrics();
    let unknown: Vec<&String> = named.difference(&offered).collect();
    assert!(
        unknown.is_empty(),
        "dashboard expressions name metrics no binary exports: {unknown:?}"
    );
}

#[test]
fn the_dashboard_has_its_variables_and_every_cluster_panel_filters_by_them() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "originstack");
    assert_eq!(dashboard["title"], "OriginStack");

    let source = variable(&dashboard, "datasource");
    assert_eq!(source["type"], "datasource");
    assert_eq!(source["query"], "prometheus");
    let namespace = variable(&dashboard, "namespace");
    assert_eq!(
        namespace["query"]["query"],
        "label_values(originstack_proxy_origins_known, namespace)"
    );
    let cluster = variable(&dashboard, "cluster");
    assert_eq!(
        cluster["query"]["query"],
        r#"label_values(originstack_proxy_origins_known{namespace="$namespace"}, job)"#
    );
    assert_eq!(cluster["multi"], true);
    assert_eq!(cluster["includeAll"], true);
    for variable in [namespace, cluster] {
        assert_eq!(variable["datasource"]["uid"], "${datasource}");
        assert_eq!(variable["definition"], variable["query"]["query"]);
    }

    let panels = panels(&dashboard);
    assert!(
        panels
            .iter()
            .any(|panel| panel["type"] == "row" && panel["repeat"] == "cluster"),
        "no row repeats per cluster"
    );
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = &panel["title"];
        assert!(ids.insert(panel["id"].as_u64()), "{title}: id used twice");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: no gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array();
        let targets = targets.unwrap_or_else(|| panic!("{title}: no targets"));
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(ref_ids.insert(target["refId"].as_str()), "{title}: refId");
        }
    }

    let expressions = panel_expressions(&dashboard);
    assert!(expressions.len() >= 30, "{expressions:?}");
    let problems: Vec<String> = expressions
        .iter()
        .flat_map(|(title, expr)| {
            unfiltered_selectors(expr)
                .into_iter()
                .map(move |problem| format!("{title}: {problem}"))
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn an_unfiltered_selector_is_caught() {
    let expr = concat!(
        r#"sum(rate(originstack_proxy_picks_total{job=~"$cluster"}[5m]))"#,
        r#" + originstack_proxy_backend_up"#,
        r#" + originstack_proxy_origins_known{ namespace = "$namespace", job=~"$cluster" }"#,
        r#" + originstack_operator_cluster_condition{cluster=~"$cluster"}"#,
        r#" + originstack_operator_leader"#,
    );
    assert_eq!(
        unfiltered_selectors(expr),
        [
            r#"originstack_proxy_picks_total does not select namespace="$namespace""#,
            r#"originstack_proxy_backend_up does not select namespace="$namespace""#,
            r#"originstack_proxy_backend_up does not select job=~"$cluster""#,
            r#"originstack_operator_cluster_condition does not select cluster_namespace="$namespace""#,
        ]
    );
}

/// promtool parses the panels' expressions, as recording rules with Grafana's variables
/// replaced by values Prometheus would see.
#[test]
fn promtool_parses_the_dashboard_expressions() {
    let rules: Vec<Value> = panel_expressions(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(at, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$namespace", "live")
                .replace("$cluster", "live");
            serde_json::json!({"record": format!("dashboard:panel_{at}"), "expr": expr})
        })
        .collect();
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(file.path(), serde_json::to_string(&groups).unwrap()).unwrap();
    run_promtool(&["check", "rules"], file.path());
}
