//! The kinds of object the operator owns, enumerated once.
//!
//! Everything that must cover every owned kind — applying, finding leftovers to delete, watching
//! for drift — is generated from the single list at the bottom of this file, so a kind added
//! there cannot be forgotten by one of those paths.

use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions},
    core::ObjectMeta,
    runtime::{Controller, watcher},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{access::ResourceId, crd::OriginCluster};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "originstack-operator";

/// The verbs the functions below use on every owned kind: server-side apply (`patch`, and
/// `create` when the object does not exist yet), `list` (of metadata, to prune), `watch`
/// (drift) and `delete` (prune). The operator's RBAC is derived from this.
pub const VERBS: &[&str] = &["create", "patch", "list", "watch", "delete"];

trait OwnedResource:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> OwnedResource for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Server-side apply with force: the operator is the only manager of the fields it sets, and
/// a user's `kubectl edit` of those fields is drift to undo.
async fn apply<K: OwnedResource>(api: Api<K>, object: &K) -> Result<K, kube::Error> {
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

async fn list_metadata<K: OwnedResource>(
    api: Api<K>,
    selector: &str,
) -> Result<Vec<ObjectMeta>, kube::Error> {
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await?;
    Ok(list.items.into_iter().map(|item| item.metadata).collect())
}

/// Deletes `name` only if it is still the object that was listed (same uid).
async fn delete<K: OwnedResource>(
    api: Api<K>,
    name: &str,
    uid: Option<String>,
) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Already gone, or replaced by a newer object of the same name: nothing of ours to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

fn api<K: OwnedResource>(client: &Client, namespace: Option<&str>) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

macro_rules! owned_kinds {
    ($($kind:ident),+ $(,)?) => {
        /// One object the operator owns, as built (desired) or as returned by the API server.
        // Lists of a dozen short-lived objects: boxing the large variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Owned {
            $($kind($kind)),+
        }

        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OwnedKind {
            $($kind),+
        }

        impl OwnedKind {
            /// Every owned kind.
            pub const ALL: &'static [OwnedKind] = &[$(OwnedKind::$kind),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(OwnedKind::$kind => stringify!($kind)),+
                }
            }

            /// API group and plural of this kind, as RBAC names it.
            pub fn resource(self) -> ResourceId {
                match self {
                    $(OwnedKind::$kind => ResourceId::of::<$kind>()),+
                }
            }

            /// Metadata of this kind's objects in `namespace` matching the label `selector`.
            pub async fn list(self, client: &Client, namespace: &str, selector: &str) -> Result<Vec<ObjectMeta>, kube::Error> {
                match self {
                    $(OwnedKind::$kind => list_metadata::<$kind>(api(client, Some(namespace)), selector).await),+
                }
            }

            pub async fn delete(self, client: &Client, namespace: &str, name: &str, uid: Option<String>) -> Result<(), kube::Error> {
                match self {
                    $(OwnedKind::$kind => delete::<$kind>(api(client, Some(namespace)), name, uid).await),+
                }
            }
        }

        impl Owned {
            pub fn kind(&self) -> OwnedKind {
                match self {
                    $(Owned::$kind(_) => OwnedKind::$kind),+
                }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Owned::$kind(object) => object.meta()),+
                }
            }

            pub fn name(&self) -> String {
                match self {
                    $(Owned::$kind(object) => object.name_any()),+
                }
            }

            /// Server-side applies this object in `namespace`; returns the object as stored.
            pub async fn apply(&self, client: &Client, namespace: &str) -> Result<Owned, kube::Error> {
                match self {
                    $(Owned::$kind(object) => apply(api(client, Some(namespace)), object).await.map(Owned::$kind)),+
                }
            }
        }

        $(
            impl From<$kind> for Owned {
                fn from(object: $kind) -> Self {
                    Owned::$kind(object)
                }
            }
        )+

        /// Makes `controller` reconcile an OriginCluster whenever one of its owned objects
        /// changes (drift, deletion, Deployment status).
        pub fn watch_all(
            mut controller: Controller<OriginCluster>,
            client: &Client,
            namespace: Option<&str>,
            config: &watcher::Config,
        ) -> Controller<OriginCluster> {
            $(controller = controller.owns(api::<$kind>(client, namespace), config.clone());)+
            controller
        }
    };
}

// The list. Its order is the order of the built objects (and of the golden files).
owned_kinds!(
    Secret,
    ConfigMap,
    ServiceAccount,
    Role,
    RoleBinding,
    Service,
    Deployment,
    PodDisruptionBudget,
    NetworkPolicy,
);

impl Owned {
    pub fn as_deployment(&self) -> Option<&Deployment> {
        match self {
            Owned::Deployment(deployment) => Some(deployment),
            _ => None,
        }
    }

    pub fn as_service(&self) -> Option<&Service> {
        match self {
            Owned::Service(service) => Some(service),
            _ => None,
        }
    }
}
