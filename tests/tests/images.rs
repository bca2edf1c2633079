//! The container images cannot be built here (no Docker engine), so this keeps what they
//! depend on in step instead: each Dockerfile builds, with the release build `make test` runs
//! (`make release-binaries`), the package whose `[[bin]]` it copies, and runs it as a non-root
//! user on a distroless base — the uid the operator gives proxy pods and the chart gives the
//! operator pod.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Dockerfile instructions (continuation lines joined, comments dropped) as (keyword, rest).
fn instructions(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.trim().split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The `[[bin]]` names of a crate's Cargo.toml.
fn bins(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_string());
        }
    }
    names
}

fn release_build_command() -> String {
    let output = Command::new("make")
        .args(["--no-print-directory", "-n", "release-binaries"])
        .current_dir(repo())
        .env("CARGO", "cargo")
        .output()
        .expect("make");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn check_image(crate_dir: &str, package: &str, binary: &str) {
    let dockerfile = repo().join(crate_dir).join("Dockerfile");
    let steps = instructions(&dockerfile);
    assert!(
        bins(&repo().join(crate_dir).join("Cargo.toml")).contains(&binary.to_string()),
        "{crate_dir}/Cargo.toml has no [[bin]] {binary}"
    );

    let froms: Vec<&String> = steps
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "{}: a build stage and a runtime stage",
        dockerfile.display()
    );
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(
        froms[1].starts_with("gcr.io/distroless/") && froms[1].ends_with(":nonroot"),
        "the runtime is a distroless nonroot image: {froms:?}"
    );

    let build = format!("cargo build --release --locked -p {package}");
    let run = steps
        .iter()
        .find(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .map(|(_, rest)| rest.clone())
        .expect("a RUN with cargo build");
    assert!(run.contains(&build), "{run}");
    let make = release_build_command();
    assert!(
        make.contains("cargo build --release --locked") && make.contains(&format!("-p {package}")),
        "`make release-binaries` ({make}) must build what {} builds",
        dockerfile.display()
    );
    assert!(
        run.contains(&format!("target/release/{binary} /out/{binary}")),
        "{run}"
    );

    let runtime = steps
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .map(|at| &steps[at..])
        .unwrap();
    let first = |keyword: &str| {
        runtime
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.clone())
    };
    assert_eq!(
        first("COPY"),
        Some(format!(
            "--from=build /out/{binary} /usr/local/bin/{binary}"
        ))
    );
    assert_eq!(
        first("USER").as_deref(),
        Some("65532:65532"),
        "{}",
        dockerfile.display()
    );
    assert_eq!(
        first("ENTRYPOINT"),
        Some(format!("[\"/usr/local/bin/{binary}\"]"))
    );
}

#[test]
fn the_proxy_image_builds_and_runs_what_the_release_build_makes() {
    check_image("proxy", "originstack-proxy", "originstack-proxy");
    // The operator runs proxy pods as the image's user.
    let proxy_pods =
        std::fs::read_to_string(repo().join("operator/src/reconcile/build/proxy.rs")).unwrap();
    assert!(proxy_pods.contains("run_as_user: Some(65532)"));
}

#[test]
fn the_operator_image_builds_and_runs_what_the_release_build_makes() {
    check_image("operator", "originstack-operator", "originstack-operator");
    let values = std::fs::read_to_string(repo().join("charts/originstack/values.yaml")).unwrap();
    assert!(
        values.contains("runAsUser: 65532"),
        "the chart runs the operator as the image's user"
    );
}

#[test]
fn the_build_context_leaves_out_build_outputs() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/", ".env"] {
        assert!(ignore.lines().any(|line| line == entry), "{entry}");
    }
}
