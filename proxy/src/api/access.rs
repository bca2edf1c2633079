//! Who may read the system API's listings. Stream names are secrets in many deployments (an
//! RTMP stream key is often the only thing between a stranger and a publish), so the endpoints
//! that reveal origins or streams need the read token whenever one is configured; probes,
//! `/metrics` and `/api/v1/versions` stay open and carry no stream names.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};

use super::SystemApi;
use crate::httpd::json_error;

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Middleware in front of every admin listing: passes the request on only with the read token
/// (PROXY_API_TOKEN, else PROXY_REGISTER_TOKEN); without any token configured, everything passes.
pub(super) async fn require_reader(
    State(proxy): State<SystemApi>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = proxy.config.read_token() else {
        return next.run(request).await;
    };
    if bearer(request.headers()).is_some_and(|token| expected.matches(token)) {
        return next.run(request).await;
    }
    // Name the setting that actually guards the listings (an empty PROXY_API_TOKEN is unset).
    let what = if proxy
        .config
        .write_token()
        .is_some_and(|register| std::ptr::eq(register, expected))
    {
        "PROXY_REGISTER_TOKEN"
    } else {
        "PROXY_API_TOKEN"
    };
    let mut refused = json_error(
        StatusCode::UNAUTHORIZED,
        format!("this endpoint needs the read token: `Authorization: Bearer <{what}>`"),
    );
    refused
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    refused
}

/// Says once, at start, when the listings are open to anyone who reaches the system API.
pub fn warn_if_open(config: &crate::config::Config) {
    if config.read_token().is_none() {
        tracing::warn!(
            "the system API's /api/v1/origins and /api/v1/streams answer anyone who can reach it \
             (stream names included): set PROXY_API_TOKEN or PROXY_REGISTER_TOKEN to require a token"
        );
    }
}
