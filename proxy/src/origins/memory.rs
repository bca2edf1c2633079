//! In-process backend for a single proxy. One mutex guards everything, so each operation is
//! atomic like its Redis script counterpart; no `.await` happens while it is held.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use rand::Rng;

use super::{
    Origin, StreamKey,
    balancer::{
        BackendError, Claim, ClaimKind, LoadBalancer, MAX_ORIGINS, OriginStatus, OwnerToken,
        PickError, Registered, StreamOwner, Timing,
    },
};

/// Sessions are pruned when this many have been stored since the last sweep, keeping the
/// map bounded by the live ones without a timer.
const SESSION_SWEEP_EVERY: usize = 1024;

pub struct MemoryBalancer {
    timing: Timing,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    origins: HashMap<String, OriginEntry>,
    /// Draining is set by discovery, independently of heartbeats (which replace entries).
    draining: BTreeSet<String>,
    streams: HashMap<StreamKey, StreamEntry>,
    sessions: HashMap<(String, String), (String, u64)>,
    sessions_since_sweep: usize,
}

struct OriginEntry {
    origin: Origin,
    incarnation: String,
    /// Streams this incarnation owns, ordered by lease expiry so expired ones pop off the front.
    owned: BTreeSet<(u64, StreamKey)>,
}

struct StreamEntry {
    owner: OwnerToken,
    expires_ms: u64,
}

impl MemoryBalancer {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            state: Mutex::new(State::default()),
        }
    }

    /// A heartbeat (`discovered: None`) or a discovery refresh (`Some(draining)`).
    fn store(&self, origin: &Origin, discovered: Option<bool>) -> Result<Registered, BackendError> {
        let now = now_ms();
        let forget_before = now.saturating_sub(millis(self.timing.forget_after));
        let mut state = self.state();
        // Heartbeats arrive every few seconds: a good moment to drop leases that ran out.
        state.streams.retain(|_, entry| entry.expires_ms > now);
        let stale: Vec<String> = state
            .origins
            .iter()
            .filter(|(server, entry)| {
                entry.origin.last_heartbeat_ms < forget_before && **server != origin.server
            })
            .map(|(server, _)| server.clone())
            .collect();
        for server in stale {
            state.forget(&server);
        }

        let mut origin = origin.clone();
        origin.last_heartbeat_ms = now;
        if discovered.is_none() {
            origin.last_report_ms = now;
        }
        let incarnation = origin.incarnation();
        let known = state.origins.len();
        let outcome = match state.origins.get_mut(&origin.server) {
            Some(entry) if entry.incarnation == incarnation => {
                if discovered.is_some() && entry.origin.same_addresses(&origin) {
                    // Keep the load figures a heartbeat stored.
                    entry.origin.last_heartbeat_ms = now;
                } else {
                    origin.last_report_ms = origin.last_report_ms.max(entry.origin.last_report_ms);
                    entry.origin = origin.clone();
                }
                Registered::Refreshed
            }
            Some(_) => Registered::Restarted,
            None if known >= MAX_ORIGINS => return Err(BackendError::RegistryFull),
            None => Registered::New,
        };
        let server = origin.server.clone();
        if outcome != Registered::Refreshed {
            state.origins.insert(
                server.clone(),
                OriginEntry {
                    origin,
                    incarnation,
                    owned: BTreeSet::new(),
                },
            );
        }
        match discovered {
            Some(true) => {
                state.draining.insert(server);
            }
            Some(false) => {
                state.draining.remove(&server);
            }
            None => {}
        }
        Ok(outcome)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to
        // serve; refusing every later request would be worse.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl OriginEntry {
    fn incarnation_owner(&self) -> OwnerToken {
        OwnerToken::new(&self.origin)
    }

    fn alive(&self, now: u64, ttl: u64) -> bool {
        now.saturating_sub(self.origin.last_heartbeat_ms) <= ttl
    }

    /// Drops expired leases from the owned set; returns the count left.
    fn prune(&mut self, now: u64) -> usize {
        while self
            .owned
            .first()
            .is_some_and(|(expires_ms, _)| *expires_ms <= now)
        {
            self.owned.pop_first();
        }
        self.owned.len()
    }
}

impl State {
    /// The owner token of the origin's current incarnation, if it is registered.
    fn current_owner(&self, server: &str) -> Option<OwnerToken> {
        self.origins
            .get(server)
            .map(|entry| OwnerToken::new(&entry.origin))
    }

    /// Stream entries of a forgotten origin stay until their lease runs out, so the next pick
    /// reports a failover, as the Redis backend does.
    fn forget(&mut self, server: &str) -> bool {
        self.draining.remove(server);
        self.origins.remove(server).is_some()
    }

    fn set_owned(
        &mut self,
        server: &str,
        stream: &StreamKey,
        old_expiry: Option<u64>,
        expires_ms: u64,
    ) {
        if let Some(entry) = self.origins.get_mut(server) {
            if let Some(old) = old_expiry {
                entry.owned.remove(&(old, stream.clone()));
            }
            entry.owned.insert((expires_ms, stream.clone()));
        }
    }
}

#[async_trait]
impl LoadBalancer for MemoryBalancer {
    async fn register(&self, origin: &Origin) -> Result<Registered, BackendError> {
        self.store(origin, None)
    }

    async fn refresh_discovered(
        &self,
        origin: &Origin,
        draining: bool,
    ) -> Result<Registered, BackendError> {
        self.store(origin, Some(draining))
    }

    async fn remove_origin(&self, server: &str) -> Result<bool, BackendError> {
        Ok(self.state().forget(server))
    }

    async fn set_draining(&self, server: &str, draining: bool) -> Result<(), BackendError> {
        let mut state = self.state();
        if draining {
            state.draining.insert(server.to_owned());
        } else {
            state.draining.remove(server);
        }
        Ok(())
    }

    async fn origins(&self) -> Result<Vec<OriginStatus>, BackendError> {
        let now = now_ms();
        let ttl = millis(self.timing.origin_ttl);
        let mut state = self.state();
        let state = &mut *state;
        let mut list: Vec<OriginStatus> = state
            .origins
            .values_mut()
            .map(|entry| OriginStatus {
                alive: entry.alive(now, ttl),
                reporting: now.saturating_sub(entry.origin.last_report_ms) <= ttl,
                draining: state.draining.contains(&entry.origin.server),
                streams_owned: entry.prune(now) as u64,
                origin: entry.origin.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.origin.server.cmp(&b.origin.server));
        Ok(list)
    }

    async fn pick(&self, stream: &StreamKey) -> Result<Claim, PickError> {
        let now = now_ms();
        let ttl = millis(self.timing.origin_ttl);
        let expires_ms = now + millis(self.timing.stream_lease);
        let mut guard = self.state();
        let state = &mut *guard;

        let mut previous = None;
        if let Some(current) = state.streams.get(stream)
            && current.expires_ms > now
        {
            let owner = current.owner.clone();
            let old_expiry = current.expires_ms;
            let server = owner.server().to_owned();
            let live_owner = state
                .origins
                .get(&server)
                .filter(|entry| entry.alive(now, ttl) && entry.incarnation_owner() == owner)
                .map(|entry| entry.origin.clone());
            if let Some(origin) = live_owner {
                if old_expiry - now < millis(self.timing.stream_lease) / 2 {
                    state.set_owned(&server, stream, Some(old_expiry), expires_ms);
                    if let Some(entry) = state.streams.get_mut(stream) {
                        entry.expires_ms = expires_ms;
                    }
                }
                return Ok(Claim {
                    origin,
                    kind: ClaimKind::Owned,
                    owner,
                });
            }
            if let Some(entry) = state.origins.get_mut(&server) {
                entry.owned.remove(&(old_expiry, stream.clone()));
            }
            previous = Some(server);
        }

        // Rank live, non-draining origins: fewest owned streams, then lowest load; collect ties.
        let mut best: Vec<String> = Vec::new();
        let mut best_rank: Option<(usize, f64)> = None;
        let draining = &state.draining;
        for (server, entry) in state.origins.iter_mut() {
            if !entry.alive(now, ttl) || draining.contains(server) {
                continue;
            }
            let rank = (entry.prune(now), entry.origin.load);
            match best_rank {
                Some(current) if rank > current => continue,
                Some(current) if rank == current => best.push(server.clone()),
                _ => {
                    best_rank = Some(rank);
                    best = vec![server.clone()];
                }
            }
        }
        if best.is_empty() {
            return Err(PickError::NoOrigin {
                stream: stream.to_string(),
                ttl: self.timing.origin_ttl,
            });
        }
        let chosen = best.swap_remove(rand::rng().random_range(0..best.len()));
        let origin = state.origins[&chosen].origin.clone();
        let owner = OwnerToken::new(&origin);
        state.set_owned(&chosen, stream, None, expires_ms);
        state.streams.insert(
            stream.clone(),
            StreamEntry {
                owner: owner.clone(),
                expires_ms,
            },
        );
        let kind = match previous {
            Some(previous) => ClaimKind::Failover { previous },
            None => ClaimKind::New,
        };
        Ok(Claim {
            origin,
            kind,
            owner,
        })
    }

    async fn renew(
        &self,
        leases: &[(StreamKey, OwnerToken)],
    ) -> Result<Vec<StreamKey>, BackendError> {
        let now = now_ms();
        let expires_ms = now + millis(self.timing.stream_lease);
        let mut state = self.state();
        let mut lost = Vec::new();
        for (stream, owner) in leases {
            let registered = state.current_owner(owner.server()).as_ref() == Some(owner);
            let old_expiry = match state.streams.get_mut(stream) {
                Some(entry) if registered && entry.owner == *owner && entry.expires_ms > now => {
                    Some(std::mem::replace(&mut entry.expires_ms, expires_ms))
                }
                // Nobody holds the stream any more: claimed back, see the balancer rules.
                Some(entry) if registered && entry.expires_ms <= now => {
                    entry.owner = owner.clone();
                    Some(std::mem::replace(&mut entry.expires_ms, expires_ms))
                }
                None if registered => {
                    state.streams.insert(
                        stream.clone(),
                        StreamEntry {
                            owner: owner.clone(),
                            expires_ms,
                        },
                    );
                    None
                }
                _ => {
                    lost.push(stream.clone());
                    continue;
                }
            };
            state.set_owned(owner.server(), stream, old_expiry, expires_ms);
        }
        Ok(lost)
    }

    async fn streams(&self) -> Result<Vec<StreamOwner>, BackendError> {
        let now = now_ms();
        let state = self.state();
        let mut list: Vec<StreamOwner> = state
            .streams
            .iter()
            .filter(|(_, entry)| {
                entry.expires_ms > now
                    && state.current_owner(entry.owner.server()).as_ref() == Some(&entry.owner)
            })
            .map(|(stream, entry)| StreamOwner {
                stream: stream.to_string(),
                origin: entry.owner.server().to_owned(),
                lease_expires_ms: entry.expires_ms,
            })
            .collect();
        list.sort_by(|a, b| a.stream.cmp(&b.stream));
        Ok(list)
    }

    async fn put_session(
        &self,
        kind: &str,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let now = now_ms();
        let mut state = self.state();
        state.sessions_since_sweep += 1;
        if state.sessions_since_sweep >= SESSION_SWEEP_EVERY {
            state.sessions_since_sweep = 0;
            state.sessions.retain(|_, (_, expires)| *expires > now);
        }
        state.sessions.insert(
            (kind.to_owned(), id.to_owned()),
            (value.to_owned(), now + millis(ttl)),
        );
        Ok(())
    }

    async fn get_session(&self, kind: &str, id: &str) -> Result<Option<String>, BackendError> {
        let now = now_ms();
        let state = self.state();
        Ok(state
            .sessions
            .get(&(kind.to_owned(), id.to_owned()))
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone()))
    }

    async fn touch_session(
        &self,
        kind: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let now = now_ms();
        let mut state = self.state();
        Ok(
            match state.sessions.get_mut(&(kind.to_owned(), id.to_owned())) {
                Some((_, expires)) if *expires > now => {
                    *expires = now + millis(ttl);
                    true
                }
                _ => false,
            },
        )
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
