//! `POST /api/v1/srs/register[/<token>]`: SRS heartbeats (`heartbeat { ports on; }`).
//!
//! SRS posts its heartbeat to the *path* of `heartbeat.url` only (the query is dropped) and
//! sends no header of its own, so the token an SRS origin can carry lives in the path.

use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    Extension, Json,
    body::Body,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::SystemApi;
use crate::{
    config::Secret,
    discovery::Refusal,
    httpd::{json_error as error, server::Connection},
    origins::{BackendError, Registered, parse_heartbeat},
};

/// How a registration ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users spell them
pub enum RegistrationResult {
    new,
    refreshed,
    restarted,
    bad_request,
    unauthorized,
    rate_limited,
    too_large,
    backend_error,
    /// Discovery is on and has not listed the origin Service yet.
    discovery_not_synced,
    /// PROXY_REGISTER_REQUIRE_DISCOVERED: not from an endpoint of the origin Service.
    not_discovered,
    /// The server id of a discovered origin, announced from another address.
    name_taken,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    result: RegistrationResult,
}

/// Heartbeats received, by result. The `Default` set records for nobody.
#[derive(Clone, Debug, Default)]
pub struct RegistrationMetrics {
    registrations: Family<RegistrationLabels, Counter>,
}

impl RegistrationMetrics {
    /// A set registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "registrations",
            "Origin heartbeats received, by result",
            metrics.registrations.clone(),
        );
        metrics
    }

    fn record_registration(&self, result: RegistrationResult) {
        self.registrations
            .get_or_create(&RegistrationLabels { result })
            .inc();
    }
}

/// Registrations per second allowed from one client address. A flood from one address is
/// answered 429 without touching the backend, while origins at other addresses keep
/// heartbeating. (governor: the keyed GCRA limiter of the Rust ecosystem.)
#[derive(Clone)]
pub(super) struct RateLimit(Option<Arc<KeyedLimiter>>);

type KeyedLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// How often addresses that have not registered lately are forgotten, bounding the table.
const FORGET_QUIET_ADDRESSES_EVERY: Duration = Duration::from_secs(60);

impl RateLimit {
    /// `per_second` 0: no limit. Needs a Tokio runtime (it starts the table's sweeper).
    pub(super) fn new(per_second: u32) -> Self {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return Self(None);
        };
        let limiter = Arc::new(KeyedLimiter::keyed(governor::Quota::per_second(rate)));
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FORGET_QUIET_ADDRESSES_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
        Self(Some(limiter))
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.0
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&ip).is_ok())
    }
}

/// `POST /api/v1/srs/register/<token>`: the form a stock SRS heartbeat URL keeps.
pub(super) async fn register_with_path_token(
    State(proxy): State<SystemApi>,
    Extension(limit): Extension<RateLimit>,
    ConnectInfo(peer): ConnectInfo<Connection>,
    Path(token): Path<String>,
    query: TokenQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let presented = Presented::new(Some(token), query, &headers);
    register(proxy, limit, peer, presented, body).await
}

/// `POST /api/v1/srs/register`: the token, if any, in `Authorization` or `?token=`.
pub(super) async fn register_without_path_token(
    State(proxy): State<SystemApi>,
    Extension(limit): Extension<RateLimit>,
    ConnectInfo(peer): ConnectInfo<Connection>,
    query: TokenQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let presented = Presented::new(None, query, &headers);
    register(proxy, limit, peer, presented, body).await
}

/// Where a registration may carry the token; any one that matches admits it.
struct Presented {
    path: Option<String>,
    query: Option<String>,
    header: Option<String>,
}

type TokenQuery = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

impl Presented {
    fn new(path: Option<String>, query: TokenQuery, headers: &HeaderMap) -> Self {
        Self {
            path,
            query: query.ok().and_then(|Query(mut q)| q.remove("token")),
            header: super::access::bearer(headers).map(str::to_owned),
        }
    }

    fn admits(&self, expected: &Secret) -> bool {
        [&self.path, &self.query, &self.header]
            .into_iter()
            .flatten()
            .any(|token| expected.matches(token))
    }
}

async fn register(
    proxy: SystemApi,
    limit: RateLimit,
    peer: Connection,
    presented: Presented,
    body: Body,
) -> Response {
    let metrics = proxy.registrations.clone();
    let client = peer.client;
    if !limit.allows(client.ip()) {
        metrics.record_registration(RegistrationResult::rate_limited);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} registrations a second from {}; SRS heartbeats need far fewer",
                proxy.config.register_rate_limit,
                client.ip()
            ),
        );
    }
    if let Some(expected) = proxy.config.write_token()
        && !presented.admits(expected)
    {
        metrics.record_registration(RegistrationResult::unauthorized);
        tracing::info!(peer = %client.ip(), "registration refused: no valid register token");
        return error(
            StatusCode::UNAUTHORIZED,
            "registration needs the register token: POST /api/v1/srs/register/<token> (what an SRS \
             heartbeat URL can carry), `Authorization: Bearer <token>` or `?token=<token>`",
        );
    }

    let limit = proxy.config.register_max_body;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        metrics.record_registration(RegistrationResult::too_large);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes (or was cut off)"),
        );
    };
    let origin = match parse_heartbeat(&bytes) {
        Ok(origin) => origin,
        Err(err) => {
            metrics.record_registration(RegistrationResult::bad_request);
            tracing::debug!(error = %err, "registration refused");
            return error(StatusCode::BAD_REQUEST, err);
        }
    };

    // With discovery on, a heartbeat may describe a discovered origin (stored under its
    // identity) or be refused; see `crate::discovery::admission` for which address counts.
    let peer = client.ip();
    let heartbeat_server = origin.server.clone();
    let admitted = match proxy.discovery.admit(origin, peer) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let (status, result) = match &refusal {
                Refusal::NotSynced { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    RegistrationResult::discovery_not_synced,
                ),
                Refusal::NotDiscovered { .. } | Refusal::AddressMismatch { .. } => {
                    (StatusCode::FORBIDDEN, RegistrationResult::not_discovered)
                }
                Refusal::NameTaken { .. } => (StatusCode::CONFLICT, RegistrationResult::name_taken),
            };
            metrics.record_registration(result);
            tracing::info!(server = %heartbeat_server, peer = %peer, reason = %refusal, "registration refused");
            return error(status, refusal);
        }
    };
    let origin = admitted.origin;

    match proxy.origins.register(&origin).await {
        Ok(outcome) => {
            // The endpoint may have left while this heartbeat was on its way: do not let it
            // bring back an origin discovery removed.
            if admitted.discovered && !proxy.discovery.is_discovered(&origin.server) {
                let _ = proxy.origins.remove_origin(&origin.server).await;
            }
            metrics.record_registration(match outcome {
                Registered::New => RegistrationResult::new,
                Registered::Refreshed => RegistrationResult::refreshed,
                Registered::Restarted => RegistrationResult::restarted,
            });
            Json(json!({"code": 0, "pid": std::process::id().to_string()})).into_response()
        }
        Err(err) => {
            metrics.record_registration(RegistrationResult::backend_error);
            tracing::warn!(server = %origin.server, error = %err, "cannot store a heartbeat");
            let status = match err {
                BackendError::RegistryFull => StatusCode::INSUFFICIENT_STORAGE,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, err)
        }
    }
}
