//! `originstack-operator render`, the real binary: every example renders the objects the
//! reconciler builds, invalid input exits 2 with the API server's or the validate stage's
//! words on stderr, and the CEL messages are checked against a real API server.

mod support;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_originstack-operator"))
        .arg("render")
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start originstack-operator");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// (kind, namespace, name) of every document of a multi-document YAML text.
fn identities(yaml: &str) -> Vec<(String, String, String)> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .filter(|value| !value.is_null())
        .map(|value| {
            let field = |path: &[&str]| {
                path.iter()
                    .try_fold(&value, |v, key| v.get(key))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field(&["kind"]),
                field(&["metadata", "namespace"]),
                field(&["metadata", "name"]),
            )
        })
        .collect()
}

/// The generated srs.conf (the ConfigMap's only key) of a rendered text.
fn srs_conf(yaml: &str) -> String {
    let start = yaml.find("srs.conf: ").expect("a ConfigMap with srs.conf");
    yaml[start..]
        .lines()
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_example_renders_what_the_reconciler_builds() {
    let examples = originstack_e2e::manifests::examples();
    assert!(examples.len() >= 4, "{examples:?}");
    for example in examples {
        let output = render(&["-f", example.to_str().unwrap()], None);
        let (stdout, stderr) = (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        assert!(output.status.success(), "{}: {stderr}", example.display());
        assert!(stderr.is_empty(), "{}: {stderr}", example.display());
        // The golden build of the same example (fixed uid and tokens instead of placeholders)
        // holds the same objects and the same srs.conf.
        let golden = repo()
            .join("operator/tests/fixtures/examples")
            .join(example.file_name().unwrap())
            .with_extension("golden.yaml");
        let golden = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(
            identities(&stdout),
            identities(&golden),
            "{}",
            example.display()
        );
        assert_eq!(
            srs_conf(&stdout),
            srs_conf(&golden),
            "{}",
            example.display()
        );
        assert!(stdout.contains(originstack_operator::render::PLACEHOLDER_UID));
    }
}

#[test]
fn stdin_and_namespace() {
    let minimal = std::fs::read_to_string(repo().join("examples/minimal.yaml")).unwrap();
    let output = render(&["-f", "-", "--namespace", "media"], Some(&minimal));
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let objects = identities(&stdout);
    assert!(objects.len() >= 8, "{objects:?}");
    for (kind, namespace, name) in &objects {
        assert_eq!(namespace, "media", "{kind} {name}");
    }
    assert!(
        stdout.contains("http://live-proxy-system.media.svc:12025/api/v1/srs/register/$(ORIGINSTACK_REGISTER_TOKEN)"),
        "the heartbeat URL carries the token in its path"
    );
}

/// A minimal cluster with `spec` in place of the example's.
fn cluster(spec: &str) -> String {
    format!(
        "apiVersion: originstack.dev/v1alpha1\nkind: OriginCluster\nmetadata:\n  name: bad\nspec:\n{spec}"
    )
}

/// Invalid manifests with what stderr must say; `api_server` when the API server refuses it
/// on admission with the same message.
fn invalid_cases() -> Vec<(&'static str, String, &'static str, bool)> {
    vec![
        (
            "memory with two proxies (CEL)",
            cluster("  redis: {mode: none}\n  proxy: {replicas: 2}\n"),
            "redis.mode none keeps stream ownership in one proxy's memory: it needs proxy.replicas 1",
            true,
        ),
        (
            "no protocol (CEL)",
            cluster(
                "  origin:\n    protocols: {rtmp: false, httpFlv: false, hls: false, webrtc: false, srt: false}\n",
            ),
            "enable at least one protocol",
            true,
        ),
        (
            "loadBalancerClass on a ClusterIP Service (CEL)",
            cluster("  proxy:\n    service: {type: ClusterIP, loadBalancerClass: x}\n"),
            "loadBalancerClass needs type LoadBalancer",
            true,
        ),
        (
            "external Redis without a URL (CEL)",
            cluster("  redis: {mode: external}\n"),
            "redis.mode external needs redis.external.url",
            true,
        ),
        (
            "edges without RTMP on the proxies (CEL)",
            cluster("  origin:\n    protocols: {rtmp: false}\n  edge: {}\n"),
            "edges pull their streams from the proxies over RTMP: spec.edge needs origin.protocols.rtmp",
            true,
        ),
        (
            "edges with no protocol (CEL)",
            cluster("  edge:\n    protocols: {rtmp: false, httpFlv: false}\n"),
            "enable at least one edge protocol (rtmp or httpFlv)",
            true,
        ),
        (
            "an autoscaling ceiling under its floor (CEL)",
            cluster("  edge:\n    autoscaling: {minReplicas: 3, maxReplicas: 2}\n"),
            "autoscaling.maxReplicas must be at least minReplicas",
            true,
        ),
        (
            "a name too long (CEL)",
            cluster("  paused: false\n").replace("name: bad", &format!("name: {}", "x".repeat(51))),
            "the name may have at most 50 characters",
            true,
        ),
        (
            "too many proxies (schema bound)",
            cluster("  redis: {mode: managed}\n  proxy: {replicas: 101}\n"),
            "spec.proxy.replicas in body should be less than or equal to 100",
            true,
        ),
        (
            "an empty image (schema length)",
            cluster("  origin: {image: \"\"}\n"),
            "spec.origin.image in body should be at least 1 chars long",
            true,
        ),
        (
            "a wrong type",
            cluster("  proxy: {replicas: two}\n"),
            "invalid type",
            false,
        ),
        (
            "a variable the operator sets (validate stage)",
            cluster("  origin:\n    env: [{name: SRS_HEARTBEAT_URL, value: http://x}]\n"),
            "ReservedEnv: spec.origin.env: SRS_HEARTBEAT_URL is set by the operator",
            false,
        ),
        (
            "a heartbeat variable on edges (validate stage)",
            cluster("  edge:\n    env: [{name: SRS_HEARTBEAT_ENABLED, value: \"on\"}]\n"),
            "ReservedEnv: spec.edge.env: SRS_HEARTBEAT_ENABLED would configure an SRS heartbeat",
            false,
        ),
        ("not YAML", "kind: [".into(), "not YAML", false),
        (
            "no OriginCluster",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n".into(),
            "no OriginCluster in the manifest",
            false,
        ),
        (
            "another kind",
            format!(
                "{}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n",
                cluster("  paused: false\n")
            ),
            "ConfigMap is not rendered",
            false,
        ),
    ]
}

#[test]
fn invalid_input_exits_2_with_a_readable_message_and_prints_nothing() {
    for (case, manifest, message, _) in invalid_cases() {
        let output = render(&["-f", "-"], Some(&manifest));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
        assert!(output.stdout.is_empty(), "{case}: printed objects");
        assert!(stderr.contains(message), "{case}: {stderr}");
    }
    let output = render(&["-f", "/no/such/file.yaml"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /no/such/file.yaml"));
}

/// The CEL cases are refused by a real kube-apiserver with the very message render prints.
#[tokio::test]
async fn cel_messages_are_the_api_servers() {
    let plane = support::cluster_with_crd().await;
    let client = plane.admin_client().await.unwrap();
    let namespace = plane.create_namespace("render").await.unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "originstack.dev",
        "v1alpha1",
        "OriginCluster",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    for (case, manifest, message, api_server) in invalid_cases() {
        if !api_server {
            continue;
        }
        let object: DynamicObject = serde_yaml::from_str(&manifest).unwrap();
        let name = object.metadata.name.clone().unwrap();
        let refused = api
            .patch(
                &name,
                &PatchParams::apply("render-test").dry_run(),
                &Patch::Apply(&object),
            )
            .await
            .expect_err(case);
        let server = refused.to_string();
        assert!(
            server.contains(message),
            "{case}: the API server said {server}"
        );
        let output = render(&["-f", "-", "-n", &namespace], Some(&manifest));
        let rendered = String::from_utf8_lossy(&output.stderr);
        assert!(rendered.contains(message), "{case}: render said {rendered}");
    }
}
