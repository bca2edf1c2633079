//! Apply stage: server-side apply of every desired object, then deletion of owned objects the
//! spec no longer asks for.

use std::collections::BTreeSet;

use futures::future::try_join_all;
use kube::Client;

use super::error::Error;
use crate::kinds::{Owned, OwnedKind};

/// What the apply stage did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The desired objects as the API server stored them (with their status).
    pub objects: Vec<Owned>,
    /// Owned objects deleted because the spec no longer asks for them.
    pub pruned: Vec<(OwnedKind, String)>,
}

/// Applies `desired`, then deletes every object of an owned kind that carries the
/// cluster's labels (`selector`), is controlled by `owner_uid` and is not desired.
pub async fn apply(
    client: &Client,
    namespace: &str,
    desired: &[Owned],
    selector: &str,
    owner_uid: &str,
) -> Result<Applied, Error> {
    // Independent writes go out together (a reconcile costs a round trip or two, not one per
    // object). RoleBindings wait for the first round: unless the writer may `bind`, the API
    // server checks a binding against the Role it names, and refuses it (404) while that Role
    // does not exist yet. Without the wait a first reconcile under least-privilege RBAC fails,
    // and the failure cancels the Role's own write, so it can fail over and over
    // (operator/tests/rbac.rs found this; an admin client never sees it).
    let (bindings, others): (Vec<&Owned>, Vec<&Owned>) = desired
        .iter()
        .partition(|object| object.kind() == OwnedKind::RoleBinding);
    let mut objects = apply_together(client, namespace, &others).await?;
    objects.extend(apply_together(client, namespace, &bindings).await?);
    // Back in the order of `desired`.
    objects.sort_by_key(|object| {
        desired
            .iter()
            .position(|d| d.kind() == object.kind() && d.name() == object.name())
    });

    let keep: BTreeSet<(OwnedKind, String)> = desired
        .iter()
        .map(|object| (object.kind(), object.name()))
        .collect();
    let listed = try_join_all(OwnedKind::ALL.iter().map(|&kind| async move {
        let existing = kind
            .list(client, namespace, selector)
            .await
            .map_err(|source| Error::List {
                kind: kind.as_str(),
                source,
            })?;
        Ok::<_, Error>(existing.into_iter().map(move |meta| (kind, meta)))
    }))
    .await?;
    let leftovers: Vec<(OwnedKind, String, Option<String>)> = listed
        .into_iter()
        .flatten()
        .filter(|(kind, meta)| {
            let name = meta.name.clone().unwrap_or_default();
            !keep.contains(&(*kind, name)) && controlled_by(meta, owner_uid)
        })
        .map(|(kind, meta)| (kind, meta.name.unwrap_or_default(), meta.uid))
        .collect();
    let pruned = try_join_all(leftovers.into_iter().map(|(kind, name, uid)| async move {
        kind.delete(client, namespace, &name, uid)
            .await
            .map_err(|source| Error::Prune {
                kind: kind.as_str(),
                name: name.clone(),
                source,
            })?;
        Ok::<_, Error>((kind, name))
    }))
    .await?;
    let applied = Applied { objects, pruned };
    Ok(applied)
}

async fn apply_together(
    client: &Client,
    namespace: &str,
    objects: &[&Owned],
) -> Result<Vec<Owned>, Error> {
    try_join_all(objects.iter().map(|object| async move {
        object
            .apply(client, namespace)
            .await
            .map_err(|source| Error::Apply {
                kind: object.kind().as_str(),
                name: object.name(),
                source,
            })
    }))
    .await
}

/// Labels can be copied by anyone; only objects this cluster controls are deleted.
fn controlled_by(meta: &kube::core::ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == owner_uid && owner.controller == Some(true))
}
