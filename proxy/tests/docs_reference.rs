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
    // An origin whose ports refuse connections: the pick happens, the relay fails (and the
    // origin leaves the registry).
    let (rtmp, http) = (free_port(), free_port());
    proxy.register("docs-origin", rtmp, http).unwrap();
    let (status, _) = http_request(proxy.http, "GET", "/live/docs.flv", &[], "").unwrap();
    assert!(matches!(status, 502 | 503), "{status}\n{}", proxy.log());
    // Its next heartbeat brings it back: the per-origin gauges have a sample again.
    proxy.register("docs-origin", rtmp, http).unwrap();
    // A WHIP offer to an origin without a WebRTC API: the offer counter gets a sample.
    let (status, _) = http_request(
        proxy.api,
        "POST",
        "/rtc/v1/whip/?app=live&stream=docs",
        &[],
        "v=0\r\n",
    )
    .unwrap();
    assert!(matches!(status, 502 | 503), "{status}\n{}", proxy.log());
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

/// Variants of `pub enum <name>` in a Rust source (one per line, as rustfmt writes them).
fn enum_variants(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("no enum {name}"));
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//") && !line.starts_with('#'))
        .map(|line| line.trim_end_matches(',').to_string())
        .collect()
}

#[test]
fn the_metrics_reference_names_every_label_value() {
    let doc = std::fs::read_to_string(doc_path("metrics.md")).unwrap();
    // Each label enum lives with the part of the proxy that records it.
    for (name, source) in [
        ("PickResult", include_str!("../src/origins/metrics.rs")),
        ("RegistrationResult", include_str!("../src/api/register.rs")),
        ("WebRtcOffer", include_str!("../src/webrtc/mod.rs")),
    ] {
        let variants = enum_variants(source, name);
        assert!(!variants.is_empty(), "{name}");
        for variant in variants {
            assert!(
                doc.contains(&format!("`{variant}`")),
                "docs/metrics.md does not name the {name} label value `{variant}`"
            );
        }
    }
}
