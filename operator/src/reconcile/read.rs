//! Read stage: everything outside the OriginCluster that the later stages depend on, fetched
//! once so validation and build stay pure functions of (spec, observed).

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, Service},
};
use kube::{Api, Client, ResourceExt};
use rand::RngCore;

use super::{digest::hex, error::Error, names::Names};
use crate::{
    crd::{OriginCluster, RedisMode},
    kinds::Owned,
    podmonitor,
};

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The register-token Secret: the user's (`registerTokenSecretRef`) or the generated one.
    pub token_secret: Option<Secret>,
    /// The external Redis password Secret, when one is referenced.
    pub redis_password_secret: Option<Secret>,
    /// A new random token, used only when the generated Secret does not exist yet.
    pub fresh_token: String,
    /// A new random read token for the proxies' listings, used likewise.
    pub fresh_read_token: String,
    /// The owned Deployments and Services as they are now: the status when nothing is
    /// applied, and who applied a Deployment's replica count (see `apply`).
    pub current: Vec<Owned>,
    /// The API server serves PodMonitors (asked only while `spec.monitoring.enabled`).
    pub podmonitors_served: bool,
}

/// Names of the Secrets a cluster's spec depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretNames {
    /// The user's token Secret, or the one the operator generates.
    pub token: String,
    pub redis_password: Option<String>,
}

impl SecretNames {
    pub fn of(cluster: &OriginCluster) -> Self {
        let token = match &cluster.spec.proxy.register_token_secret_ref {
            Some(reference) => reference.name.clone(),
            None => Names::new(&cluster.name_any()).token_secret(),
        };
        let redis_password = match (&cluster.spec.redis.mode, &cluster.spec.redis.external) {
            (RedisMode::External, Some(external)) => external
                .password_secret_ref
                .as_ref()
                .map(|reference| reference.name.clone()),
            _ => None,
        };
        Self {
            token,
            redis_password,
        }
    }
}

pub async fn observe(client: &Client, cluster: &OriginCluster) -> Result<Observed, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let wanted = SecretNames::of(cluster);
    let token_secret = get(&secrets, &wanted.token).await?;
    let redis_password_secret = match &wanted.redis_password {
        Some(name) => get(&secrets, name).await?,
        None => None,
    };

    let names = Names::new(&name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let mut current = Vec::new();
    let mut wanted_deployments = vec![names.origin(), names.proxy(), names.redis()];
    let mut wanted_services = vec![names.proxy(), names.proxy_udp()];
    // Without an edge tier there is nothing of it to report (a leftover is pruned).
    if cluster.spec.edge.is_some() {
        wanted_deployments.push(names.edge());
        wanted_services.push(names.edge());
    }
    for deployment in wanted_deployments {
        current.extend(get(&deployments, &deployment).await?.map(Owned::from));
    }
    for service in wanted_services {
        current.extend(get(&services, &service).await?.map(Owned::from));
    }

    let monitoring = cluster.spec.monitoring.as_ref().is_some_and(|m| m.enabled);
    let podmonitors_served = monitoring
        && podmonitor::served(client)
            .await
            .map_err(|source| Error::Read {
                what: format!("the API server's {} resources", podmonitor::API_VERSION),
                source,
            })?;

    Ok(Observed {
        token_secret,
        redis_password_secret,
        fresh_token: fresh_token(),
        fresh_read_token: fresh_token(),
        current,
        podmonitors_served,
    })
}

async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    api.get_opt(name).await.map_err(|source| Error::Read {
        what: format!("{} {name}", K::kind(&K::DynamicType::default())),
        source,
    })
}

/// 32 random bytes as hex: URL-safe, as the token travels in the heartbeat URL's path.
pub fn fresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}
