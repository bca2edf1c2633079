//! The reconciler of one OriginCluster, in stages:
//! read → validate → build (pure) → apply (server-side apply, then prune) → status.
//! A stage imports only stages before it and what they share (`names`, `digest`, `error`);
//! none imports this file, which runs them in order.
//!
//! A failure at any stage becomes a Degraded condition and a Warning Event on the cluster, and
//! a retry with per-object exponential backoff; other clusters are unaffected.

pub mod apply;
pub mod build;
pub mod digest;
pub mod error;
pub mod names;
pub mod read;
pub mod status;
pub mod validate;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Client, Resource,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
    },
};
use tracing::{info, warn};

use self::{error::Error, status::Outcome, validate::Monitors};
use crate::{crd::OriginCluster, kinds::Owned, metrics::Metrics};

/// How often a healthy cluster is looked at again even without a change (picks up a rotated
/// token Secret, for one).
pub const RESYNC: Duration = Duration::from_secs(300);
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Consecutive failures per cluster, for its backoff.
    failures: Mutex<HashMap<ObjectRef<OriginCluster>, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "originstack-operator".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<OriginCluster>, u32>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The kube-runtime reconciler.
pub async fn reconcile(cluster: Arc<OriginCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = run_stages(&cluster, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::reason));
    match &result {
        Ok(_) => {
            ctx.failures().remove(&ObjectRef::from_obj(&*cluster));
        }
        Err(error) => {
            publish(
                &ctx,
                &cluster,
                EventType::Warning,
                error.reason(),
                error.to_string(),
            )
            .await
        }
    }
    result
}

/// The kube-runtime error policy: exponential backoff per cluster, so one broken cluster is
/// retried slowly while the others go on.
pub fn error_policy(cluster: Arc<OriginCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = {
        let mut failures = ctx.failures();
        let count = failures.entry(ObjectRef::from_obj(&*cluster)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16).saturating_sub(1))
        .min(BACKOFF_MAX);
    warn!(cluster = %ObjectRef::from_obj(&*cluster), reason = error.reason(), attempt, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

async fn run_stages(cluster: &OriginCluster, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let observed = match read::observe(client, cluster).await {
        Ok(observed) => observed,
        Err(error) => return Err(record_failure(ctx, cluster, &[], error).await),
    };
    let plan = match validate::validate(cluster, &observed) {
        Ok(plan) => plan,
        Err(invalid) => {
            return Err(record_failure(ctx, cluster, &observed.current, invalid.into()).await);
        }
    };
    let desired = build::build(&plan);

    if cluster.spec.paused {
        write_status(client, cluster, &observed.current, Outcome::Paused).await?;
        return Ok(Action::requeue(RESYNC));
    }

    let selector = build::owned_selector(&plan.name);
    let applied = match apply::apply(
        client,
        &plan.namespace,
        &desired,
        &observed.current,
        &selector,
        &plan.owner.uid,
    )
    .await
    {
        Ok(applied) => applied,
        Err(error) => return Err(record_failure(ctx, cluster, &observed.current, error).await),
    };
    if plan.monitors == Monitors::CrdMissing {
        let note = format!(
            "spec.monitoring is enabled but the API server serves no {} PodMonitors: install Prometheus Operator's CRDs",
            crate::podmonitor::API_VERSION
        );
        publish(
            ctx,
            cluster,
            EventType::Warning,
            "PodMonitorCRDMissing",
            note,
        )
        .await;
    }
    for (kind, name) in &applied.pruned {
        info!(cluster = %ObjectRef::from_obj(cluster), kind = kind.as_str(), name, "deleted an object the spec no longer asks for");
        let note = format!(
            "deleted {} {name}: the spec no longer asks for it",
            kind.as_str()
        );
        publish(ctx, cluster, EventType::Normal, "Pruned", note).await;
    }
    write_status(client, cluster, &applied.objects, Outcome::Applied).await?;
    Ok(Action::requeue(RESYNC))
}

/// The status stage: computed from `objects` as the API server returned them, then written.
async fn write_status(
    client: &Client,
    cluster: &OriginCluster,
    objects: &[Owned],
    outcome: Outcome<'_>,
) -> Result<(), Error> {
    let status = status::compute(cluster, objects, outcome, Timestamp::now());
    status::write(client, cluster, status).await
}

/// Writes the Degraded status for `error` (best effort: the error itself is what is returned
/// and retried) with the counts of `objects`, whatever could be read.
async fn record_failure(
    ctx: &Context,
    cluster: &OriginCluster,
    objects: &[Owned],
    error: Error,
) -> Error {
    if let Err(status_error) =
        write_status(&ctx.client, cluster, objects, Outcome::Failed(&error)).await
    {
        warn!(cluster = %ObjectRef::from_obj(cluster), "cannot record the failure in the status: {status_error}");
    }
    error
}

async fn publish(
    ctx: &Context,
    cluster: &OriginCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        // Events carry at most 1 kB of note.
        note: Some(truncate(note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        warn!(cluster = %ObjectRef::from_obj(cluster), "cannot publish an event: {error}");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
