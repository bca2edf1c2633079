//! Apply stage: server-side apply of every desired object, then deletion of owned objects the
//! spec no longer asks for.

use std::collections::BTreeSet;

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::error::Error;
use crate::kinds::{FIELD_MANAGER, Owned, OwnedKind};

/// The field manager that holds a Deployment's replica count between the operator and an
/// autoscaler.
pub const HANDOVER_MANAGER: &str = "originstack-operator-handover";

/// What the apply stage did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The desired objects as the API server stored them (with their status).
    pub objects: Vec<Owned>,
    /// Owned objects deleted because the spec no longer asks for them.
    pub pruned: Vec<(OwnedKind, String)>,
}

/// Applies `desired`, then deletes every object of an owned kind that carries the
/// cluster's labels (`selector`), is controlled by `owner_uid` and is not desired. `current`
/// holds the objects as the read stage found them.
pub async fn apply(
    client: &Client,
    namespace: &str,
    desired: &[Owned],
    current: &[Owned],
    selector: &str,
    owner_uid: &str,
) -> Result<Applied, Error> {
    // Server-side apply removes a field its only manager stops applying: a Deployment whose
    // count the spec now leaves to an autoscaler would drop to the default of 1 replica until
    // the autoscaler acted. Another manager first takes the current count over (the handover
    // the Kubernetes documentation describes for HPAs); the autoscaler's updates then take it
    // from that one.
    try_join_all(
        replicas_to_hand_over(desired, current)
            .into_iter()
            .map(|(name, replicas)| hand_over_replicas(client, namespace, name, replicas)),
    )
    .await?;

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

/// (name, current count) of each desired Deployment that leaves its count out while the
/// stored one has it applied by this operator.
fn replicas_to_hand_over(desired: &[Owned], current: &[Owned]) -> Vec<(String, i32)> {
    desired
        .iter()
        .filter_map(Owned::as_deployment)
        .filter(|deployment| {
            deployment
                .spec
                .as_ref()
                .is_some_and(|spec| spec.replicas.is_none())
        })
        .filter_map(|deployment| {
            let name = deployment.metadata.name.as_deref()?;
            let stored = current
                .iter()
                .filter_map(Owned::as_deployment)
                .find(|stored| stored.metadata.name.as_deref() == Some(name))?;
            let replicas = stored.spec.as_ref()?.replicas?;
            applies_replicas(stored).then(|| (name.to_string(), replicas))
        })
        .collect()
}

fn applies_replicas(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry
                    .fields_v1
                    .as_ref()
                    .is_some_and(|fields| fields.0["f:spec"]["f:replicas"].is_object())
        })
}

async fn hand_over_replicas(
    client: &Client,
    namespace: &str,
    name: String,
    replicas: i32,
) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let count = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &name,
        &PatchParams::apply(HANDOVER_MANAGER).force(),
        &Patch::Apply(&count),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "Deployment",
        name: name.clone(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::apps::v1::DeploymentSpec,
        apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry},
    };

    use super::*;

    fn deployment(replicas: Option<i32>, managers: &[(&str, &str, serde_json::Value)]) -> Owned {
        let mut deployment = Deployment {
            spec: Some(DeploymentSpec {
                replicas,
                ..Default::default()
            }),
            ..Default::default()
        };
        deployment.metadata.name = Some("live-edge".into());
        deployment.metadata.managed_fields = Some(
            managers
                .iter()
                .map(|(manager, operation, fields)| ManagedFieldsEntry {
                    manager: Some(manager.to_string()),
                    operation: Some(operation.to_string()),
                    fields_v1: Some(FieldsV1(fields.clone())),
                    ..Default::default()
                })
                .collect(),
        );
        deployment.into()
    }

    #[test]
    fn a_count_this_operator_applied_is_handed_over_once_it_is_left_out() {
        let applied = json!({"f:spec": {"f:replicas": {}, "f:selector": {}}});
        let desired = [deployment(None, &[])];
        let stored = [deployment(Some(3), &[(FIELD_MANAGER, "Apply", applied)])];
        assert_eq!(
            replicas_to_hand_over(&desired, &stored),
            [("live-edge".to_string(), 3)]
        );
        // Still asked for: nothing to hand over.
        assert!(replicas_to_hand_over(&[deployment(Some(3), &[])], &stored).is_empty());
        // Already the autoscaler's (or the handover manager's).
        let scaled = json!({"f:spec": {"f:replicas": {}}});
        let stored = [deployment(
            Some(4),
            &[
                (
                    FIELD_MANAGER,
                    "Apply",
                    json!({"f:spec": {"f:selector": {}}}),
                ),
                ("kube-controller-manager", "Update", scaled),
            ],
        )];
        assert!(replicas_to_hand_over(&desired, &stored).is_empty());
        // Not created yet.
        assert!(replicas_to_hand_over(&desired, &[]).is_empty());
    }
}
