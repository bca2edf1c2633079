//! A stock SRS origin of an operator-made cluster can register: the heartbeat URL and token
//! the operator generates for `examples/minimal.yaml`, expanded as Kubernetes expands them and
//! posted the way SRS posts (path only, no header of its own), reach the real proxy binary
//! holding the generated token.

use std::collections::HashMap;

use originstack_e2e::{
    ProxyProcess,
    srs::{self, SrsHeartbeat},
};
use originstack_operator::render::{self, Admission, Stand};
use serde_json::Value;

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

/// The operator's objects for examples/minimal.yaml, as JSON.
fn minimal_cluster_objects(stand: &Stand) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/minimal.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let manifest = render::parse(&text, None, Admission::Check).unwrap();
    render::objects(&manifest, stand)
        .unwrap()
        .iter()
        .map(|object| serde_json::to_value(object).unwrap())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The environment of a Deployment's first container, resolved as the kubelet resolves it:
/// Secret references read from `secrets`, `$(VAR)` expanded from variables defined earlier.
fn container_env(deployment: &Value, secrets: &[Value]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    let vars = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    for var in vars {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            expand(value, &env)
        } else if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object() {
            let secret = secrets
                .iter()
                .find(|s| s["metadata"]["name"] == reference["name"])
                .expect("a Secret the operator generates");
            let encoded = secret["data"][reference["key"].as_str().unwrap()]
                .as_str()
                .expect("the key");
            decode_base64(encoded)
        } else {
            continue; // fieldRef: not needed here
        };
        env.insert(name, value);
    }
    env
}

/// Kubernetes' `$(VAR)` expansion from variables defined earlier in the list.
fn expand(value: &str, env: &HashMap<String, String>) -> String {
    let mut out = value.to_owned();
    for (name, resolved) in env {
        out = out.replace(&format!("$({name})"), resolved);
    }
    out
}

fn decode_base64(text: &str) -> String {
    let value: k8s_openapi::ByteString =
        serde_json::from_value(Value::String(text.to_owned())).unwrap();
    String::from_utf8(value.0).unwrap()
}

#[test]
fn an_srs_heartbeat_to_the_generated_url_is_accepted() {
    let stand = Stand {
        fresh_token: "3f9c2a7e41d05b88c6e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7".into(),
        fresh_read_token: "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9".into(),
        ..Stand::default()
    };
    let objects = minimal_cluster_objects(&stand);
    let secrets: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .cloned()
        .collect();
    let origin = container_env(find(&objects, "Deployment", "live-origin"), &secrets);
    let proxy_env = container_env(find(&objects, "Deployment", "live-proxy"), &secrets);

    let heartbeat_url = &origin["SRS_HEARTBEAT_URL"];
    assert_eq!(
        heartbeat_url,
        &format!(
            "http://live-proxy-system.default.svc:12025/api/v1/srs/register/{}",
            stand.fresh_token
        )
    );
    let register_token = proxy_env["PROXY_REGISTER_TOKEN"].clone();
    let api_token = proxy_env["PROXY_API_TOKEN"].clone();
    assert_eq!(register_token, stand.fresh_token);
    assert_eq!(api_token, stand.fresh_read_token);

    let proxy = ProxyProcess::start(
        PROXY,
        &[
            ("PROXY_REGISTER_TOKEN", register_token),
            ("PROXY_API_TOKEN", api_token.clone()),
        ],
    )
    .unwrap();
    // The Service name resolves only in the cluster: same URL, this proxy's address.
    let local_url = heartbeat_url.replace(
        "live-proxy-system.default.svc:12025",
        &proxy.system.to_string(),
    );
    let origin_heartbeat = SrsHeartbeat {
        device_id: "live-origin-7d9f-abcde".into(),
        ..SrsHeartbeat::local("vid-k2x9", 19350, Some(18080))
    };
    let (status, answer) = origin_heartbeat.post(&local_url).unwrap();
    assert_eq!(status, 200, "{answer}\n{}", proxy.log());

    // What the operator generated before: SRS drops the query, so the token never arrives.
    let old_form = srs::register_url(proxy.system, None) + "?token=" + &stand.fresh_token;
    let (status, answer) = SrsHeartbeat::local("vid-other", 19351, None)
        .post(&old_form)
        .unwrap();
    assert_eq!(status, 401, "{answer}");

    assert_eq!(
        proxy.origin_servers(Some(&api_token)).unwrap(),
        ["vid-k2x9"]
    );
    assert!(
        !proxy.log().contains(&stand.fresh_token),
        "the token is never logged"
    );
}
