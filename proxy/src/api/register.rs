//! `POST /api/v1/srs/register`: SRS heartbeats (`heartbeat { ports on; }`).

use std::collections::HashMap;

use axum::{
    Json,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::error;
use crate::{
    Proxy,
    metrics::RegistrationResult,
    origins::{BackendError, Registered, parse_heartbeat},
};

pub(super) async fn register(
    State(proxy): State<Proxy>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = proxy.metrics.clone();
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

    match proxy.origins.register(&origin).await {
        Ok(outcome) => {
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
