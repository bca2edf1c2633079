//! The proxy's reference documentation, generated from the code and checked for drift
//! (`make generate` rewrites it):
//!
//! - docs/configuration.md `proxy-settings`: every clap argument of [`Config`], flattened
//!   groups included, with its variable, flag, default and help;
//! - docs/metrics.md `proxy-metrics`: the metric families of a real scrape of the binary after
//!   it registered an origin and served requests (so the labels are those users see).

use clap::CommandFactory;
use originstack_e2e::{
    ProxyProcess,
    docs::{cell, check_section, doc_path, metric_families, metrics_table},
    free_port, http_request,
};
use originstack_proxy::config::Config;

fn settings_table() -> String {
    let command = Config::command();
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        let variable = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        let flag = arg
            .get_long()
            .map(|long| format!("`--{long}`"))
            .unwrap_or_else(|| "—".into());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = match defaults.as_slice() {
            [] => "unset".to_string(),
            [one] if one.is_empty() => "empty".to_string(),
            values => format!("`{}`", values.join(",")),
        };
        let mut meaning = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if !meaning.is_empty() && !meaning.ends_with(['.', ')']) {
            meaning.push('.');
        }
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        if !possible.is_empty() && arg.get_action().takes_values() {
            meaning.push_str(&format!(" One of {}.", possible.join(", ")));
        }
        if arg.is_hide_env_values_set() {
            meaning.push_str(" A secret: its value is never printed.");
        }
        out.push_str(&format!(
            "| {variable} | {flag} | {default} | {} |\n",
            cell(&meaning)
        ));
    }
    out
}

#[test]
fn the_settings_reference_is_generated_from_the_code() {
    check_section(
        &doc_path("configuration.md"),
        "proxy-settings",
        &settings_table(),
    );
}

#[test]
fn the_metrics_reference_matches_a_real_scrape() {
    let proxy = ProxyProcess::start(env!("CARGO_BIN_EXE_originstack-proxy"), &[]).unwrap();
    // An origin whose HTTP port answers nothing: the pick happens, the relay fails.
    proxy
        .register("docs-origin", free_port(), free_port())
        .unwrap();
    let (status, _) = http_request(proxy.http, "GET", "/live/docs.flv", &[], "").unwrap();
    assert_eq!(status, 502, "{}", proxy.log());
    let scrape = proxy.metrics().unwrap();
    let families = metric_families(&scrape);
    assert!(
        families.iter().any(|f| f.name == "originstack_proxy_picks"),
        "{scrape}"
    );
    check_section(
        &doc_path("metrics.md"),
        "proxy-metrics",
        &metrics_table(&families),
    );
}
