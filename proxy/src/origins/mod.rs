//! Origins: the registry of SRS origins, stream ownership and cross-replica session state.
//!
//! # For protocol modules
//!
//! ```ignore
//! // 1. Name the stream the way every protocol does (errors are typed: answer the client).
//! let key = StreamKey::new(vhost_param, app, stream_name)?;      // RTMP, WHIP/WHEP
//! let key = StreamKey::from_path(None, "/live/cam.flv?token=x")?; // HTTP-FLV/TS, HLS, SRT r=
//!
//! // 2. Take a lease: the origin that owns the stream (claimed now if nobody did).
//! let lease = proxy.origins.lease(&key).await?;          // PickError: NoOrigin | Backend
//! let upstream = lease.origin().endpoint(Protocol::Rtmp); // SocketAddr to relay to
//!
//! // 3. Keep `lease` alive for the whole session and drop it when the session ends. Ownership
//! //    is renewed in the background meanwhile and released a grace period after the last
//! //    lease on the stream (in any replica) is gone, so a play of a made-up name pins nothing.
//! drop(lease);
//!
//! // 4. Follow-up requests (HLS playback ids, ICE ufrags) that may reach another replica:
//! proxy.origins.put_session("hls", &id, &origin_server, ttl).await?;
//! let server = proxy.origins.get_session("hls", &id).await?;
//! ```
//!
//! Picks fail (never block) while the backend is unreachable; sessions already relaying are
//! unaffected. When Redis comes back empty, the first heartbeat, pick or lease renewal that
//! reaches a replica writes back the origins it heard within the TTL and claims back its
//! streams (see `redis_backend`). Discovery (`crate::discovery`) calls [`Origins::refresh_discovered`] and
//! [`Origins::remove_origin`].
//!
//! # Pieces
//!
//! - [`StreamKey`]: `vhost/app/stream`, normalised once for every protocol.
//! - [`Origin`] and [`parse_heartbeat`]: an origin and the SRS heartbeat that announces it.
//! - [`LoadBalancer`]: the contract (rules in [`balancer`]) with two backends that behave the
//!   same: [`MemoryBalancer`] (one proxy) and [`RedisBalancer`] (replicas share Redis).
//! - [`Origins`]: the facade above, adding leases, metrics and input bounds.

pub mod balancer;
mod facade;
mod memory;
mod origin;
mod redis_backend;
mod stream_key;

use std::sync::Arc;

pub use balancer::{
    BackendError, Claim, ClaimKind, LoadBalancer, OriginStatus, OwnerToken, PickError, Registered,
    StreamOwner, Timing,
};
pub use facade::{NotReady, Origins, SessionError, StreamLease};
pub use memory::MemoryBalancer;
pub use origin::{Endpoints, HeartbeatError, Origin, Protocol, parse_endpoint, parse_heartbeat};
pub use redis_backend::{RedisBalancer, RedisSettings, RedisSetupError};
pub use stream_key::{
    DEFAULT_VHOST, KeyPart, MAX_PART_LEN, StreamKey, StreamKeyError, vhost_of_host,
};

use crate::config::{Config, DefaultBackendConfig, LoadBalancerType};

/// The backend the configuration asks for.
pub fn backend_from_config(
    config: &Config,
    timing: Timing,
) -> Result<Arc<dyn LoadBalancer>, RedisSetupError> {
    Ok(match config.load_balancer_type {
        LoadBalancerType::Memory => Arc::new(MemoryBalancer::new(timing)),
        LoadBalancerType::Redis => Arc::new(RedisBalancer::new(
            &RedisSettings {
                url: config.redis.connection_url(),
                cluster: config.redis.cluster,
                key_prefix: config.redis.key_prefix.clone(),
                timeout: config.redis.timeout,
                ca_file: config.redis.ca_file.clone(),
            },
            timing,
        )?),
    })
}

/// The fixed origin of `PROXY_DEFAULT_BACKEND_*`, validated like a heartbeat. Its identity is
/// stable (`default-backend`, service `default`, pid `0`) so every replica registers the same one.
pub fn default_backend_origin(config: &DefaultBackendConfig) -> Result<Origin, HeartbeatError> {
    let list = |value: &Option<String>| value.iter().cloned().collect::<Vec<_>>();
    let heartbeat = serde_json::json!({
        "ip": config.ip,
        "server": "default-backend",
        "service": "default",
        "pid": "0",
        "rtmp": [config.rtmp],
        "http": list(&config.http),
        "api": list(&config.api),
        "rtc": list(&config.rtc),
        "srt": list(&config.srt),
    });
    parse_heartbeat(heartbeat.to_string().as_bytes())
}
