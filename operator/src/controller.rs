//! The kube-runtime Controller: watches OriginClusters and every owned kind, and runs the
//! reconciler with per-object backoff.

use std::{future::Future, sync::Arc};

use futures::StreamExt;
use kube::{
    Api,
    runtime::{Controller, controller::Config, watcher},
};
use tracing::{debug, info, warn};

use crate::{
    crd::OriginCluster,
    kinds, podmonitor,
    reconcile::{
        self, Context,
        build::{MANAGED_BY, MANAGED_BY_LABEL},
    },
};

#[derive(Debug, Clone, Default)]
pub struct ControllerOptions {
    /// Watch one namespace only (otherwise all).
    pub namespace: Option<String>,
    /// Reconciles running at once (0: unbounded). One cluster is never reconciled twice at once.
    pub concurrency: u16,
}

/// Runs until `shutdown` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    options: &ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let namespace = options.namespace.as_deref();
    let clusters: Api<OriginCluster> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    // Only what the operator labelled is cached, not every Secret of the cluster.
    let owned_config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let controller = Controller::new(clusters, watcher::Config::default())
        .with_config(Config::default().concurrency(options.concurrency));
    ctx.metrics.watch_clusters(controller.store());
    let metrics = ctx.metrics.clone();
    // PodMonitors are watched for drift only if their CRD is there at start; installed later,
    // they are still created (each reconcile asks again) and drift is undone on the resync.
    let podmonitors_served = match podmonitor::served(&client).await {
        Ok(served) => served,
        Err(error) => {
            warn!(
                "cannot ask the API server whether it serves PodMonitors, not watching them: {error}"
            );
            false
        }
    };
    info!(
        podmonitors_served,
        "watching OriginClusters and the objects they own"
    );
    kinds::watch_all(
        controller,
        &client,
        namespace,
        &owned_config,
        podmonitors_served,
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile::reconcile, reconcile::error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((cluster, _)) => debug!(%cluster, "reconciled"),
            // Reconcile errors were logged by the error policy; these are watch errors.
            Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
            Err(error) => warn!("controller: {error}"),
        }
    })
    .await;
    metrics.forget_clusters();
}
