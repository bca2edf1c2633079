//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at once.
//!
//! Written here rather than taken from a crate: kube-leader-election is not released for kube 5,
//! and kube-lease-manager (kube 5) keeps a leader that cannot reach the API server believing it
//! leads while the Lease expires and a standby takes over; a leader must step down by itself
//! within a renew deadline. The protocol is small and follows client-go's leaderelection:
//! every write is guarded by the Lease's resourceVersion (a lost race is a 409, never a
//! double leader), expiry is judged on the local clock from when this replica last saw the
//! record change (clock skew between replicas does not matter), and a leader that cannot renew
//! within the renew deadline steps down.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity in `holderIdentity` (pod name plus a random suffix).
    pub identity: String,
    /// How long a lease not renewed stays with its holder.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down (must be below the duration).
    pub renew_deadline: Duration,
    /// Pause between attempts (both acquiring and renewing).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The record as last seen, and when (on this replica's clock).
struct Observation {
    resource_version: Option<String>,
    seen_at: Instant,
}

pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Mutex<Option<Observation>>,
}

impl LeaseLock {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// One election round: takes the Lease when it is free or expired, renews it when held.
    /// `Ok(true)` means this replica holds the Lease now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        let expired = self.expired(&lease, &spec);
        if !ours && !holder.is_empty() && !expired {
            return Ok(false);
        }
        if !ours {
            info!(lease = %self.config.name, previous = %holder, "taking over the leader lease");
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(now);
        lease.spec = Some(spec);
        // `replace` sends the resourceVersion that was read: a concurrent writer makes it a 409.
        conflict_is_false(
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the Lease up (when held) so a standby takes over at once instead of after expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        conflict_is_false(
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await,
        )
        .map(|_| ())
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Expired when the record has not changed for its lease duration, as seen from here.
    fn expired(&self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let version = lease.metadata.resource_version.clone();
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match observed.as_ref() {
            Some(seen) if seen.resource_version == version => seen.seen_at.elapsed() >= duration,
            _ => {
                *observed = Some(Observation {
                    resource_version: version,
                    seen_at: Instant::now(),
                });
                false
            }
        }
    }
}

fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Held leadership: `lost` is cancelled when renewal fails; dropping it stops renewing.
pub struct Leadership {
    pub lost: CancellationToken,
    renewer: JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing (the Lease then expires unless released).
    pub fn stop(&self) {
        self.renewer.abort();
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Waits until this replica holds the Lease (or `shutdown` fires: `None`), then renews it in
/// the background.
pub async fn acquire(
    lock: Arc<LeaseLock>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Option<Leadership> {
    let retry = lock.config.retry_period;
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => warn!(lease = %lock.config.name, "leader election: {error}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(retry) => {}
        }
    }
    info!(lease = %lock.config.name, identity = %lock.config.identity, "became the leader");
    metrics.set_leader(true);
    let lost = CancellationToken::new();
    let renewer = tokio::spawn(renew(lock, lost.clone(), metrics));
    Some(Leadership { lost, renewer })
}

async fn renew(lock: Arc<LeaseLock>, lost: CancellationToken, metrics: Arc<Metrics>) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(lock.config.retry_period).await;
        let outcome =
            tokio::time::timeout(lock.config.renew_deadline, lock.try_acquire_or_renew()).await;
        match outcome {
            Ok(Ok(true)) => renewed = Instant::now(),
            Ok(Ok(false)) => {
                warn!(lease = %lock.config.name, "another replica took the leader lease");
                break;
            }
            Ok(Err(error)) => {
                warn!(lease = %lock.config.name, "renewing the leader lease: {error}")
            }
            Err(_) => warn!(lease = %lock.config.name, "renewing the leader lease timed out"),
        }
        if renewed.elapsed() >= lock.config.renew_deadline {
            warn!(lease = %lock.config.name, "could not renew the leader lease within {:?}", lock.config.renew_deadline);
            break;
        }
    }
    metrics.set_leader(false);
    lost.cancel();
}
