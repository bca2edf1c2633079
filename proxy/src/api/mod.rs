//! The system API: origin registration, admin views, metrics and health probes.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::net::TcpListener;

use crate::lifecycle::Lifecycle;

/// Everything the system API handlers read.
#[derive(Clone)]
pub struct SystemState {
    pub lifecycle: Lifecycle,
}

impl SystemState {
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self { lifecycle }
    }
}

pub fn router(state: SystemState) -> Router {
    Router::new()
        .route("/api/v1/versions", get(versions))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the system API until the process stops; it stays up while draining so probes
/// and metrics keep answering.
pub async fn serve(listener: TcpListener, state: SystemState, lifecycle: Lifecycle) {
    let app = router(state);
    let stop = lifecycle.terminate().clone();
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %err, "system API server failed");
    }
}

/// Same shape as SRS's `/api/v1/versions`, so existing tooling reads it.
async fn versions() -> Json<serde_json::Value> {
    let mut parts = crate::VERSION.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
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
            "version": crate::VERSION,
            "signature": format!("OriginStack/{}", crate::VERSION),
        }
    }))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<SystemState>) -> Response {
    if state.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    "ok".into_response()
}
