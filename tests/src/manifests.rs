//! Manifests applied as `kubectl apply --server-side [--dry-run=server]` applies them: each
//! document's kind resolved through API discovery, namespaced ones placed in a namespace.

use anyhow::Context as _;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
    discovery::{self, Scope},
};

/// The repository's example manifests (`examples/*.yaml`), sorted.
pub fn examples() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// How the documents are applied.
#[derive(Debug, Clone, Copy)]
pub struct Apply<'a> {
    /// Field manager of the writes.
    pub manager: &'a str,
    /// Namespace of namespaced documents that name none.
    pub namespace: &'a str,
    /// Validated, defaulted and admitted by the API server, but not stored.
    pub dry_run: bool,
}

/// Applies `documents` in order; returns them as the API server answered.
pub async fn apply(
    client: &Client,
    documents: &[serde_json::Value],
    how: Apply<'_>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let mut applied = Vec::with_capacity(documents.len());
    for document in documents {
        applied.push(apply_one(client, document, how).await?);
    }
    Ok(applied)
}

async fn apply_one(
    client: &Client,
    document: &serde_json::Value,
    how: Apply<'_>,
) -> anyhow::Result<DynamicObject> {
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    let kind = document["kind"].as_str().unwrap_or_default();
    let name = document["metadata"]["name"]
        .as_str()
        .with_context(|| format!("a {kind} without metadata.name"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the API server does not serve {api_version} {kind}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = document["metadata"]["namespace"]
                .as_str()
                .unwrap_or(how.namespace);
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply(how.manager).force();
    params.dry_run = how.dry_run;
    api.patch(name, &params, &Patch::Apply(document))
        .await
        .with_context(|| {
            format!(
                "{}applying {kind} {name}",
                if how.dry_run { "dry-run " } else { "" }
            )
        })
}
