//! The HTTP plumbing every HTTP listener of the proxy shares (streaming, the system API,
//! WHIP/WHEP): the accept loop with its defences, what is read from and written into relayed
//! messages, and the JSON error answer SRS tooling expects.

pub mod direct;
pub mod message;
pub mod server;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// A JSON error answer: `{"code": <status>, "message": ...}`, as SRS answers (its tooling
/// checks `code`).
pub fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"code": status.as_u16(), "message": message.to_string()})),
    )
        .into_response()
}
