//! OriginStack proxy: accepts every client protocol, finds the origin that owns the stream
//! and relays the bytes.

pub mod api;
pub mod config;
pub mod lifecycle;
pub mod rtmp;
pub mod telemetry;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{config::Config, lifecycle::Lifecycle};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the proxy until SIGTERM/SIGINT, then drains as configured.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let lifecycle = Lifecycle::new(config.grace_quit_timeout, config.force_quit_timeout);

    let system_listener = TcpListener::bind(config.system_api.0)
        .await
        .with_context(|| format!("cannot listen for the system API on {}", config.system_api))?;
    tracing::info!(addr = %system_listener.local_addr()?, "system API listening");
    let state = api::SystemState::new(lifecycle.clone());
    let system = tokio::spawn(api::serve(system_listener, state, lifecycle.clone()));

    lifecycle.wait_for_signal().await;
    lifecycle.drain().await;
    system.abort();
    tracing::info!("proxy stopped");
    Ok(())
}
