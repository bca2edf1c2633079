//! `POST /api/v1/srs/register`: SRS heartbeats (`heartbeat { ports on; }`).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    Extension, Json,
    body::Body,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::error;
use crate::{
    Proxy,
    discovery::Refusal,
    metrics::RegistrationResult,
    origins::{BackendError, Registered, parse_heartbeat},
};

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

pub(super) async fn register(
    State(proxy): State<Proxy>,
    Extension(limit): Extension<RateLimit>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = proxy.metrics.clone();
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
    if let Some(expected) = proxy
        .config
        .register_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        let from_query = query
            .as_ref()
            .ok()
            .and_then(|Query(q)| q.get("token"))
            .map(String::as_str);
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let presented = from_header.or(from_query);
        if !presented.is_some_and(|token| same_secret(token.as_bytes(), expected.as_bytes())) {
            metrics.record_registration(RegistrationResult::unauthorized);
            return error(
                StatusCode::UNAUTHORIZED,
                "registration needs the token: `Authorization: Bearer <token>` or `?token=<token>`",
            );
        }
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

/// Compares secrets in time independent of where they differ.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
