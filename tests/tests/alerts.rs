//! The chart's alert rules (`charts/originstack/files/alerts.yaml`, the PrometheusRule's
//! body): `promtool check rules` accepts them, `promtool test rules` runs their unit tests
//! (`tests/prometheus/alerts.test.yaml`: each alert fires on the series that should raise it
//! and stays quiet before), and every metric an expression names exists in a real scrape of
//! the proxy binary or in the operator's registry (the one its `/metrics` serves).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use originstack_e2e::{ProxyProcess, free_port, http_request, kube::promtool, proxy_binary};
use originstack_operator::metrics::Metrics;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_file() -> PathBuf {
    repo().join("charts/originstack/files/alerts.yaml")
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

/// Every `originstack_*` identifier in the rules' expressions.
fn metrics_named_by_rules(rules: &str) -> BTreeSet<String> {
    let document: serde_yaml::Value = serde_yaml::from_str(rules).expect("alerts.yaml is YAML");
    let mut named = BTreeSet::new();
    for group in document["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            let mut rest = expr;
            while let Some(at) = rest.find("originstack_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                named.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    named
}

#[test]
fn every_metric_the_alerts_use_exists() {
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let named = metrics_named_by_rules(&rules);
    assert!(named.len() >= 6, "{named:?}");

    let proxy = ProxyProcess::start(proxy_binary(), &[]).unwrap();
    // A labelled family has no line at all before its first sample: register an origin (whose
    // ports refuse) and ask for a stream, so registrations and picks get theirs.
    proxy
        .register("alerts-origin", free_port(), free_port())
        .unwrap();
    let (status, _) = http_request(proxy.http, "GET", "/live/alerts.flv", &[], "").unwrap();
    assert!(matches!(status, 502 | 503), "{status}");
    let mut offered = sample_names(&proxy.metrics().unwrap());
    let operator = Metrics::new();
    operator.observe_reconcile(Duration::from_millis(1), Some("ApplyFailed"));
    offered.extend(sample_names(&operator.encode()));

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
