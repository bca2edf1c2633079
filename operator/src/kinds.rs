//! The kinds of object the operator works with, and the verbs it uses on each.
//!
//! This is the bottom of the crate: it imports nothing else of it but the PodMonitor type
//! (`podmonitor`, which imports nothing of the crate either). The controller, the
//! reconciler and the leader election do what the verb lists below say, and `access.rs` turns
//! the same lists into the RBAC the Helm chart grants, so a verb has one place to be added.
//!
//! Everything that must cover every owned kind — applying, finding leftovers to delete,
//! watching for drift, the RBAC — is generated from the single list in this file, so a kind
//! added there cannot be forgotten by one of those paths.

use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        events::v1::Event,
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

use crate::podmonitor::PodMonitor;

/// A resource as RBAC names it: API group (`""` for core) and plural, `/subresource` included.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub group: String,
    pub resource: String,
}

impl ResourceId {
    pub fn of<K: Resource<DynamicType = ()>>() -> Self {
        Self {
            group: K::group(&()).into_owned(),
            resource: K::plural(&()).into_owned(),
        }
    }

    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
        }
    }

    pub fn subresource(mut self, name: &str) -> Self {
        self.resource = format!("{}/{name}", self.resource);
        self
    }
}

// The verbs, by what asks for them. Which resources the OriginCluster's verbs apply to is
// said in `access.rs`, which knows that type; this module needs none of the crate's.

/// On OriginClusters: the controller's watcher lists and watches them.
pub const CLUSTER_VERBS: &[&str] = &["list", "watch"];

/// On the OriginClusters' `status` subresource: the status stage writes it with a merge patch.
pub const STATUS_VERBS: &[&str] = &["patch"];

/// On every owned kind, by the functions below: server-side apply (`patch`, and `create` when
/// the object does not exist yet), `list` (of metadata, to prune), `watch` (drift) and
/// `delete` (prune).
pub const OWNED_VERBS: &[&str] = &["create", "patch", "list", "watch", "delete"];

/// On [`read_resources`]: the read stage gets each object it depends on by name.
pub const READ_VERBS: &[&str] = &["get"];

/// What the read stage gets: Secrets the spec names (not only the operator's own) and the
/// current Deployments and Services.
pub fn read_resources() -> [ResourceId; 3] {
    [
        ResourceId::of::<Secret>(),
        ResourceId::of::<Deployment>(),
        ResourceId::of::<Service>(),
    ]
}

/// On [`event_resource`]: kube's event Recorder creates Events and patches the series of a
/// repeated one.
pub const EVENT_VERBS: &[&str] = &["create", "patch"];

pub fn event_resource() -> ResourceId {
    ResourceId::of::<Event>()
}

/// On [`lease_resource`], any name: the first candidate for leader creates the Lease.
pub const LEASE_CREATE_VERBS: &[&str] = &["create"];

/// On the leader Lease itself: read it, and write it back guarded by its resourceVersion
/// (`replace`) to take, renew or release it.
pub const LEASE_VERBS: &[&str] = &["get", "update"];

pub fn lease_resource() -> ResourceId {
    ResourceId::of::<Lease>()
}

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "originstack-operator";

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

            /// Served only where another project's CRD is installed (PodMonitor): a missing
            /// kind is nothing to list or watch, not an error.
            pub fn optional(self) -> bool {
                matches!(self, OwnedKind::PodMonitor)
            }

            /// API group and plural of this kind, as RBAC names it.
            pub fn resource(self) -> ResourceId {
                match self {
                    $(OwnedKind::$kind => ResourceId::of::<$kind>()),+
                }
            }

            /// Metadata of this kind's objects in `namespace` matching the label `selector`; none
            /// for an optional kind the API server does not serve.
            pub async fn list(self, client: &Client, namespace: &str, selector: &str) -> Result<Vec<ObjectMeta>, kube::Error> {
                let listed = match self {
                    $(OwnedKind::$kind => list_metadata::<$kind>(api(client, Some(namespace)), selector).await),+
                };
                match listed {
                    Err(kube::Error::Api(status)) if status.code == 404 && self.optional() => Ok(Vec::new()),
                    listed => listed,
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

        /// Makes `controller` reconcile the owner (an OriginCluster) whenever one of its owned
        /// objects changes (drift, deletion, Deployment status). Optional kinds are watched
        /// only when `optional_served` (a watch of a kind the API server does not serve would
        /// fail and retry forever).
        pub fn watch_all<Owner>(
            mut controller: Controller<Owner>,
            client: &Client,
            namespace: Option<&str>,
            config: &watcher::Config,
            optional_served: bool,
        ) -> Controller<Owner>
        where
            Owner: Resource<DynamicType = ()>
                + Clone
                + Debug
                + DeserializeOwned
                + Send
                + Sync
                + 'static,
        {
            $(
                if optional_served || !OwnedKind::$kind.optional() {
                    controller = controller.owns(api::<$kind>(client, namespace), config.clone());
                }
            )+
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
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    NetworkPolicy,
    PodMonitor,
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
