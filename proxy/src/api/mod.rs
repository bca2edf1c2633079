//! The system API: origin registration, admin views, metrics and health probes.
//!
//! Every JSON answer carries `code`: 0 on success, otherwise the HTTP status, with `message`
//! saying what to fix (SRS tooling checks `code`).

mod access;
mod register;

use std::sync::Arc;

pub use access::warn_if_open;
pub use register::{RegistrationMetrics, RegistrationResult};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    discovery::Discovery,
    httpd::{self, server},
    lifecycle::Lifecycle,
    origins::Origins,
};

/// The proxy's version, as `/api/v1/versions` reports it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the system API works with.
#[derive(Clone)]
pub struct SystemApi {
    pub config: Arc<Config>,
    pub origins: Arc<Origins>,
    pub discovery: Arc<Discovery>,
    pub lifecycle: Lifecycle,
    pub registrations: RegistrationMetrics,
    /// Every metric of the proxy, encoded on `/metrics`.
    pub registry: Arc<Registry>,
}

pub fn router(proxy: SystemApi) -> Router {
    let limiter = register::RateLimit::new(proxy.config.register_rate_limit);
    // Everything that reveals origins or streams goes in here, behind the read token.
    let listings = Router::new()
        .route("/api/v1/origins", get(origins))
        .route("/api/v1/streams", get(streams))
        .route_layer(middleware::from_fn_with_state(
            proxy.clone(),
            access::require_reader,
        ));
    Router::new()
        .merge(listings)
        .route("/api/v1/versions", get(versions))
        .route(
            "/api/v1/srs/register",
            post(register::register_without_path_token),
        )
        .route(
            "/api/v1/srs/register/{token}",
            post(register::register_with_path_token),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::Extension(limiter))
        .with_state(proxy)
}

/// Serves the system API until sessions are terminated; it stays up while draining so probes
/// and metrics keep answering.
pub async fn serve(listener: TcpListener, proxy: SystemApi) {
    let limits = server::HttpLimits::system(&proxy.config.http);
    let lifecycle = proxy.lifecycle.clone();
    server::serve_router(
        listener,
        "system API",
        limits,
        server::Role::Control,
        lifecycle,
        router(proxy),
    )
    .await;
}

/// Same shape as SRS's `/api/v1/versions`, so existing tooling reads it.
async fn versions() -> Json<serde_json::Value> {
    let mut parts = VERSION.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, revision) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    Json(json!({
        "code": 0,
        "pid": std::process::id().to_string(),
        "data": {
            "major": major,
            "minor": minor,
            "revision": revision,
            "version": VERSION,
            "signature": format!("OriginStack/{}", VERSION),
        }
    }))
}

async fn origins(State(proxy): State<SystemApi>) -> Response {
    match proxy.origins.origins().await {
        Ok(list) => Json(json!({"code": 0, "data": list})).into_response(),
        Err(err) => httpd::json_error(StatusCode::SERVICE_UNAVAILABLE, err),
    }
}

async fn streams(State(proxy): State<SystemApi>) -> Response {
    match proxy.origins.streams().await {
        Ok(list) => Json(json!({"code": 0, "data": list})).into_response(),
        Err(err) => httpd::json_error(StatusCode::SERVICE_UNAVAILABLE, err),
    }
}

async fn metrics(State(proxy): State<SystemApi>) -> Response {
    // Registry gauges are read from the backend at scrape time, so every replica reports the
    // shared view; a failure only marks the backend down in the output.
    let _ = proxy.origins.origins().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode(&proxy.registry),
    )
        .into_response()
}

/// The Prometheus text exposition of `registry`, as `/metrics` serves it.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(proxy): State<SystemApi>) -> Response {
    if proxy.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    if let Err(err) = proxy.discovery.check_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response();
    }
    match proxy.origins.check_ready().await {
        Ok(()) => "ok".into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
    }
}

async fn not_found() -> Response {
    httpd::json_error(StatusCode::NOT_FOUND, "no such endpoint")
}
