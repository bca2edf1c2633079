//! Helm (built from its Go module by `tests/k8s-assets/build.sh`) linting and rendering the
//! repository's chart, and rendered YAML turned into JSON documents.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde::Deserialize as _;

/// The chart this repository ships.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/originstack")
}

/// A helm binary with its own empty config, cache and data directories, so a developer's
/// repositories and plugins play no part.
pub struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

/// What `helm template` is given.
#[derive(Debug, Clone, Default)]
pub struct Render<'a> {
    pub release: &'a str,
    pub namespace: &'a str,
    pub values_files: Vec<PathBuf>,
    /// `--set key=value` pairs.
    pub set: Vec<(&'a str, String)>,
}

impl Helm {
    pub fn find() -> anyhow::Result<Self> {
        let binary = crate::kube::assets_dir()?.join("helm");
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing; run `make deps`",
            binary.display()
        );
        Ok(Self {
            binary,
            home: tempfile::tempdir()?,
        })
    }

    /// Runs helm with `args`; its stdout, or an error carrying its stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let home = self.home.path();
        let output = Command::new(&self.binary)
            .args(args)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG")
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "helm {} failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// `helm lint --strict` of the chart with these values files.
    pub fn lint(&self, values_files: &[PathBuf]) -> anyhow::Result<String> {
        let chart = chart_dir();
        let mut args = vec!["lint".to_string(), "--strict".into(), path(&chart)];
        for file in values_files {
            args.extend(["--values".into(), path(file)]);
        }
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `helm template` of the chart: the YAML it prints.
    pub fn template(&self, render: &Render) -> anyhow::Result<String> {
        let chart = chart_dir();
        let mut args = vec![
            "template".to_string(),
            render.release.into(),
            path(&chart),
            "--namespace".into(),
            render.namespace.into(),
        ];
        for file in &render.values_files {
            args.extend(["--values".into(), path(file)]);
        }
        for (key, value) in &render.set {
            args.extend(["--set".into(), format!("{key}={value}")]);
        }
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `helm template`, as JSON documents.
    pub fn render(&self, render: &Render) -> anyhow::Result<Vec<serde_json::Value>> {
        documents(&self.template(render)?)
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// The documents of a multi-document YAML stream as JSON values (empty documents dropped).
pub fn documents(yaml: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .with_context(|| format!("YAML document {index}"))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The documents of `kind` (and `name`, when given).
pub fn find<'a>(
    documents: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    documents
        .iter()
        .filter(|doc| doc["kind"] == kind)
        .filter(|doc| name.is_none_or(|name| doc["metadata"]["name"] == name))
        .collect()
}
