//! The build stage from YAML fixtures, without an API server.
//!
//! Each input is an OriginCluster followed by the Secrets it refers to; its expected output is
//! the desired objects as YAML (or the validation error) in `<name>.golden.yaml`:
//! - `tests/fixtures/<case>.yaml` → `tests/fixtures/<case>.golden.yaml`;
//! - every `examples/<name>.yaml` (namespace `default` and a fixed uid filled in) →
//!   `tests/fixtures/examples/<name>.golden.yaml`.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test -p originstack-operator --test build_golden`
//! and review the diff.

use std::path::{Path, PathBuf};

use originstack_operator::{
    reconcile::build::CONFIG_HASH_ANNOTATION,
    render::{self, Admission, RenderError, Stand},
};

const FRESH_TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const FRESH_READ_TOKEN: &str = "a0b1c2d3e4f5a6b7c8d9eaf0b1c2d3e4f5a6b7c8d9eaf0b1c2d3e4f5a6b7c8d9";
const FIXTURE_UID: &str = "6a1f7b8e-0000-4000-8000-000000000001";

/// What the reconciler would apply for this input, as multi-document YAML: the same path as
/// `originstack-operator render`, with fixed stand-ins for the uid and fresh tokens.
fn render(text: &str) -> String {
    let stand = Stand {
        namespace: "default".into(),
        uid: FIXTURE_UID.into(),
        fresh_token: FRESH_TOKEN.into(),
        fresh_read_token: FRESH_READ_TOKEN.into(),
        placeholder_secrets: false,
    };
    let manifest = render::parse(text, None, Admission::Skip).expect("a manifest");
    match render::objects(&manifest, &stand) {
        Err(RenderError::Validation(error)) => {
            format!("# validation error ({}): {error}\n", error.reason())
        }
        Err(other) => panic!("{other}"),
        Ok(objects) => render::to_yaml(&objects),
    }
}

fn check(input: &Path, golden: &Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(input).map_err(|err| format!("{}: {err}", input.display()))?;
    let actual = render(&text);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &actual).expect("write golden file");
        return Ok(());
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    if actual == expected {
        return Ok(());
    }
    let first_difference = actual
        .lines()
        .zip(expected.lines())
        .enumerate()
        .find(|(_, (a, e))| a != e)
        .map(|(line, (a, e))| format!("line {}: built {a:?}, golden {e:?}", line + 1))
        .unwrap_or_else(|| {
            format!(
                "built {} lines, golden {}",
                actual.lines().count(),
                expected.lines().count()
            )
        });
    Err(format!(
        "{} differs from {}: {first_difference}",
        input.display(),
        golden.display()
    ))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "yaml")
                && !path.to_string_lossy().ends_with(".golden.yaml")
        })
        .collect();
    files.sort();
    files
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fixtures_build_their_golden_objects() {
    let dir = manifest_dir().join("tests/fixtures");
    let inputs = yaml_files(&dir);
    assert!(inputs.len() >= 5, "fixtures missing in {}", dir.display());
    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|input| check(input, &input.with_extension("golden.yaml")).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn examples_build_their_golden_objects() {
    let examples = manifest_dir().join("../examples");
    let golden_dir = manifest_dir().join("tests/fixtures/examples");
    let inputs = yaml_files(&examples);
    let names: Vec<String> = inputs
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["minimal", "production", "external-redis", "webrtc"] {
        assert!(
            names.iter().any(|name| name == required),
            "examples/{required}.yaml is missing"
        );
    }
    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|input| {
            let golden = golden_dir
                .join(input.file_name().unwrap())
                .with_extension("golden.yaml");
            check(input, &golden).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for input in &inputs {
        let rendered = render(&std::fs::read_to_string(input).unwrap());
        assert!(
            !rendered.starts_with("# validation error"),
            "{} does not validate: {rendered}",
            input.display()
        );
    }
}

/// The pod-template hash follows the generated config: a config change rolls the origins, an
/// unrelated change (replicas) does not.
#[test]
fn config_hash_follows_the_generated_config() {
    let base = std::fs::read_to_string(manifest_dir().join("../examples/minimal.yaml")).unwrap();
    let hash = |text: &str| -> String {
        let rendered = render(text);
        let start = rendered
            .find("name: live-origin\n")
            .expect("origin deployment");
        let deployment = &rendered[start..];
        let key = format!("{CONFIG_HASH_ANNOTATION}: ");
        let at = deployment.find(&key).expect("config hash annotation") + key.len();
        deployment[at..].lines().next().unwrap().to_string()
    };
    let original = hash(&base);
    let scaled = base.replace("replicas: 2", "replicas: 4");
    assert_eq!(hash(&scaled), original, "replicas are not config");
    let configured = base.replace(
        "  origin:\n",
        "  origin:\n    config: \"max_connections 10;\"\n",
    );
    assert_ne!(
        hash(&configured),
        original,
        "extra config must roll the origins"
    );
    let srt = base.replace("  origin:\n", "  origin:\n    protocols: {srt: true}\n");
    assert_ne!(
        hash(&srt),
        original,
        "a protocol change must roll the origins"
    );
}
