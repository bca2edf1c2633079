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
mod metrics;
mod origin;
mod redis_backend;
mod stream_key;

pub use balancer::{
    BackendError, Claim, ClaimKind, LoadBalancer, OriginStatus, OwnerToken, PickError, Registered,
    StreamOwner, Timing,
};
pub use facade::{NotReady, Origins, SessionError, StreamLease};
pub use memory::MemoryBalancer;
pub use metrics::{OriginsMetrics, PickResult};
pub use origin::{Endpoints, HeartbeatError, Origin, Protocol, parse_endpoint, parse_heartbeat};
pub use redis_backend::{RedisBalancer, RedisSettings, RedisSetupError};
pub use stream_key::{
    DEFAULT_VHOST, KeyPart, MAX_PART_LEN, StreamKey, StreamKeyError, Vhosts, vhost_of_host,
};
