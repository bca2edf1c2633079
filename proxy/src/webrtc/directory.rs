//! Where WebRTC sessions are found: what signalling learnt from the origin's answer, kept
//! locally and in the load balancer so that media (or a DELETE) reaching any replica finds
//! its origin.
//!
//! Records in the load balancer (JSON):
//! - `rtc-ufrag/<origin ufrag>`: a [`SessionRecord`]; the relaying replica refreshes it.
//! - `rtc-resource/<id>`: a [`ResourceRecord`], the proxy's `Location` for DELETE and PATCH.
//! - `rtc-closed/<origin ufrag>`: a tombstone written by DELETE; the relaying replica, which
//!   may be another one, checks for it and ends the session.
//!
//! Stream ownership: signalling takes the stream's lease and parks it here until the
//! session's first STUN request arrives. A session that starts on this replica takes the
//! parked lease over; one that starts on another replica takes a lease of its own there, and
//! the parked one is let go when the setup window ends. Either way the stream stays owned
//! while media flows, and is released when the session is closed (idle or DELETE).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::origins::{Origins, SessionError, StreamLease};

const UFRAG_KIND: &str = "rtc-ufrag";
const RESOURCE_KIND: &str = "rtc-resource";
const CLOSED_KIND: &str = "rtc-closed";

/// What any replica needs to relay a session, stored under the origin's ufrag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `vhost/app/stream`.
    pub stream: String,
    /// The origin's `server` (identity), for logs and the lease check.
    pub origin: String,
    /// The origin's WebRTC media address.
    pub rtc: SocketAddr,
    /// The origin's ICE password: STUN requests from a new client address must carry
    /// MESSAGE-INTEGRITY made with it.
    pub pwd: String,
    /// The proxy resource (`Location`) of the session, when the origin gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// The proxy's `Location` of a session: where DELETE and PATCH go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub stream: String,
    pub origin: String,
    /// The origin's HTTP API.
    pub api: SocketAddr,
    /// The origin's own `Location`: path and query on `api`.
    pub location: String,
    /// The origin ufrags of the session (ICE restarts add some).
    pub ufrags: Vec<String>,
}

/// A session signalled here whose media has not started yet.
struct Parked {
    record: SessionRecord,
    lease: Option<Arc<StreamLease>>,
    expires: Instant,
}

/// How long records live.
#[derive(Debug, Clone, Copy)]
pub struct RecordTimes {
    /// From the answer to the first STUN request.
    pub setup: Duration,
    /// Lifetime of a running session's records; refreshed every third of it.
    pub live: Duration,
}

impl RecordTimes {
    pub fn refresh_every(&self) -> Duration {
        (self.live / 3).max(Duration::from_millis(200))
    }
}

pub struct Directory {
    origins: Arc<Origins>,
    times: RecordTimes,
    parked: Mutex<HashMap<String, Parked>>,
    /// Sessions relaying on this replica, by origin ufrag: a local DELETE ends them at once.
    running: Mutex<HashMap<String, CancellationToken>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot store the WebRTC session: {0}")]
    Store(#[from] SessionError),
    #[error("the stored WebRTC session {id} is unreadable: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Directory {
    pub fn new(origins: Arc<Origins>, times: RecordTimes) -> Arc<Self> {
        Arc::new(Self {
            origins,
            times,
            parked: Mutex::default(),
            running: Mutex::default(),
        })
    }

    pub fn times(&self) -> RecordTimes {
        self.times
    }

    pub fn origins(&self) -> &Arc<Origins> {
        &self.origins
    }

    /// Stores a freshly answered session under each of its ufrags, and its resource, then
    /// parks the lease until media starts.
    pub async fn publish(
        &self,
        ufrags: &[(String, SessionRecord)],
        resource: Option<(&str, &ResourceRecord)>,
        lease: Option<Arc<StreamLease>>,
    ) -> Result<(), DirectoryError> {
        if let Some((id, record)) = resource {
            let ttl = self.times.live.max(self.times.setup);
            self.put(RESOURCE_KIND, id, record, ttl).await?;
        }
        for (ufrag, record) in ufrags {
            self.put(UFRAG_KIND, ufrag, record, self.times.setup)
                .await?;
        }
        let expires = Instant::now() + self.times.setup;
        let mut parked = lock(&self.parked);
        for (ufrag, record) in ufrags {
            parked.insert(
                ufrag.clone(),
                Parked {
                    record: record.clone(),
                    lease: lease.clone(),
                    expires,
                },
            );
        }
        Ok(())
    }

    /// Sessions answered here whose client has not come yet.
    pub fn parked_count(&self) -> usize {
        lock(&self.parked).len()
    }

    /// A session signalled on this replica and not started yet.
    pub fn parked(&self, ufrag: &str) -> Option<SessionRecord> {
        lock(&self.parked).get(ufrag).map(|p| p.record.clone())
    }

    /// Takes a parked session over (its lease comes along).
    pub fn unpark(&self, ufrag: &str) -> Option<(SessionRecord, Option<Arc<StreamLease>>)> {
        lock(&self.parked)
            .remove(ufrag)
            .map(|p| (p.record, p.lease))
    }

    /// Lets go of parked sessions whose client never came (or came through another replica).
    pub fn sweep(&self) {
        let now = Instant::now();
        lock(&self.parked).retain(|_, parked| parked.expires > now);
    }

    /// The session of `ufrag` as any replica stored it.
    pub async fn lookup(&self, ufrag: &str) -> Result<Option<SessionRecord>, DirectoryError> {
        self.get(UFRAG_KIND, ufrag).await
    }

    /// A resource, `None` when unknown, expired or deleted.
    pub async fn resource(&self, id: &str) -> Result<Option<ResourceRecord>, DirectoryError> {
        // A deleted resource is stored as `null` until it expires.
        Ok(self
            .get::<Option<ResourceRecord>>(RESOURCE_KIND, id)
            .await?
            .flatten())
    }

    /// A DELETE went through: later ones find nothing, on every replica.
    pub async fn forget_resource(&self, id: &str) -> Result<(), DirectoryError> {
        self.put(RESOURCE_KIND, id, &None::<ResourceRecord>, self.times.live)
            .await
    }

    pub async fn put_resource(
        &self,
        id: &str,
        record: &ResourceRecord,
    ) -> Result<(), DirectoryError> {
        self.put(RESOURCE_KIND, id, record, self.times.live).await
    }

    /// Keeps a running session's records alive; `Ok(true)` when DELETE closed it meanwhile.
    pub async fn refresh(
        &self,
        ufrag: &str,
        record: &SessionRecord,
    ) -> Result<bool, DirectoryError> {
        if self
            .origins
            .get_session(CLOSED_KIND, ufrag)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        // Extended, not rewritten: a PATCH (ICE restart) through another replica may have
        // updated the resource meanwhile. The ufrag record is this session's own; it is
        // stored again only when it was lost (Redis restarted empty).
        if !self
            .origins
            .touch_session(UFRAG_KIND, ufrag, self.times.live)
            .await?
        {
            self.put(UFRAG_KIND, ufrag, record, self.times.live).await?;
        }
        if let Some(id) = &record.resource {
            self.origins
                .touch_session(RESOURCE_KIND, id, self.times.live)
                .await?;
        }
        Ok(false)
    }

    /// Ends a session wherever it relays: at once here, through the tombstone elsewhere.
    pub async fn close(&self, ufrag: &str) -> Result<(), DirectoryError> {
        lock(&self.parked).remove(ufrag);
        if let Some(token) = lock(&self.running).remove(ufrag) {
            token.cancel();
        }
        // Longer than a refresh period, so the relaying replica sees it.
        let ttl = self.times.live.max(self.times.setup);
        self.origins
            .put_session(CLOSED_KIND, ufrag, "1", ttl)
            .await?;
        Ok(())
    }

    /// A session starts relaying here; `close` cancels `token`.
    pub fn running(&self, ufrag: &str, token: CancellationToken) {
        lock(&self.running).insert(ufrag.to_owned(), token);
    }

    pub fn stopped(&self, ufrag: &str) {
        lock(&self.running).remove(ufrag);
    }

    async fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), DirectoryError> {
        let json = serde_json::to_string(value).expect("WebRTC records serialise");
        Ok(self.origins.put_session(kind, id, &json, ttl).await?)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, DirectoryError> {
        let Some(json) = self.origins.get_session(kind, id).await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|source| DirectoryError::Corrupt {
                id: format!("{kind}/{id}"),
                source,
            })
    }
}
