//! The WebRTC media listener: one UDP socket (`PROXY_WEBRTC_SERVER`) shared by all clients.
//!
//! A datagram from a client address a session knows goes to that session's queue
//! (`try_send`: dropped when full, as a congested network would), or, for media from the
//! address the session already sends the origin's media to, straight to the origin
//! (`udp::Outbound`, `try_send` too: no copy, no task wake-up). From any other address only
//! a STUN binding request is looked at: its USERNAME names the origin's ufrag, which finds
//! the session (running here, parked by signalling here, or in the load balancer), and its
//! MESSAGE-INTEGRITY must verify with the origin's ICE password before the address is
//! accepted. That is how a new session starts and how a client that changed address (NAT
//! rebinding, another candidate) is followed. Everything else is dropped and counted.
//!
//! Nothing here waits: load-balancer lookups run in tasks of their own (bounded in number)
//! and report back, so a slow Redis or origin only delays the sessions that need it.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    WebRtcStats,
    demux::{Kind, classify},
    directory::{Directory, SessionRecord},
    session::{self, Datagram, MAX_DATAGRAM, SessionSetup, Shared},
    stun::Message,
};
use crate::{
    config::WebRtcConfig,
    lifecycle::Lifecycle,
    origins::{StreamKey, StreamLease},
    telemetry::LogLimiter,
    udp::Outbound,
};

/// Client addresses one session accepts at once (candidates of one client, or old and new
/// address during a rebinding); the oldest is forgotten first.
const MAX_CLIENT_ADDRS: usize = 4;
/// Load-balancer lookups in flight at once.
const MAX_LOOKUPS: usize = 256;
/// A ufrag nobody knows is not looked up again for this long (random ufrags must not turn
/// into a stream of Redis reads), and at most this many are remembered.
const UNKNOWN_FOR: Duration = Duration::from_secs(2);
const MAX_UNKNOWN: usize = 4096;

/// A session found in the load balancer, with the lease that holds its stream here.
pub(super) struct Found {
    record: SessionRecord,
    lease: Option<Arc<StreamLease>>,
}

/// The end of a lookup started by `first`, a binding request naming `ufrag`.
pub(super) struct Resolution {
    ufrag: String,
    outcome: Result<Option<Found>, String>,
    first: Datagram,
}

struct Entry {
    queue: mpsc::Sender<Datagram>,
    /// Origin ufrags and passwords of the session (more than one after an ICE restart).
    credentials: Vec<(String, String)>,
    resource: Option<String>,
    addrs: VecDeque<SocketAddr>,
    /// The client's latest media source as the session knows it (media from another address
    /// goes through the queue, so the session sends the origin's media there).
    media_from: Option<SocketAddr>,
    outbound: Arc<Outbound<()>>,
}

impl Entry {
    fn password(&self, ufrag: &str) -> Option<&str> {
        self.credentials
            .iter()
            .find(|(u, _)| u == ufrag)
            .map(|(_, p)| p.as_str())
    }
}

struct Listener {
    shared: Arc<Shared>,
    /// Where session lookups send what they found.
    resolved: mpsc::UnboundedSender<Box<Resolution>>,
    lifecycle: Lifecycle,
    next_id: u64,
    sessions: HashMap<u64, Entry>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    lookups: HashSet<String>,
    unknown: HashMap<String, Instant>,
    drop_log: LogLimiter,
}

/// Serves WebRTC media on `socket` until sessions are terminated, or until the proxy drains
/// and the last session has ended.
pub async fn serve(
    socket: UdpSocket,
    directory: Arc<Directory>,
    limits: WebRtcConfig,
    stats: Arc<WebRtcStats>,
    lifecycle: Lifecycle,
) {
    let socket = Arc::new(socket);
    // Sessions say when they end; lookups say what they found.
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let (resolved_tx, mut resolved) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        socket: socket.clone(),
        directory,
        limits,
        stats,
        terminate: lifecycle.terminate().clone(),
        ended: ended_tx,
    });
    let mut listener = Listener {
        shared,
        resolved: resolved_tx,
        lifecycle: lifecycle.clone(),
        next_id: 1,
        sessions: HashMap::new(),
        by_addr: HashMap::new(),
        by_ufrag: HashMap::new(),
        lookups: HashSet::new(),
        unknown: HashMap::new(),
        drop_log: LogLimiter::default(),
    };
    let terminate = lifecycle.terminate().clone();
    let draining = lifecycle.draining().clone();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            biased;
            _ = terminate.cancelled() => break,
            _ = draining.cancelled(), if listener.sessions.is_empty() => break,
            Some(id) = ended.recv() => listener.forget(id),
            Some(resolution) = resolved.recv() => listener.on_resolved(resolution),
            _ = sweep.tick() => listener.sweep(),
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    listener.on_datagram(&buf[..len], from);
                }
                Err(err) => {
                    // UDP receive errors are transient (ICMP reports); avoid a hot loop.
                    tracing::debug!(error = %err, "WebRTC receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    tracing::info!(
        sessions = listener.sessions.len(),
        "WebRTC media listener stopped"
    );
}

impl Listener {
    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let kind = classify(datagram);
        // Each queued datagram gets an allocation of its own size: it holds no more memory
        // than its bytes.
        let queued = || Datagram {
            bytes: Bytes::copy_from_slice(datagram),
            from,
        };
        if let Some(&id) = self.by_addr.get(&from) {
            // A known address naming a ufrag its session does not have: an ICE restart, or
            // the address moved to another session.
            if kind == Kind::Stun
                && let Ok(message) = Message::parse(datagram)
                && message.is_binding_request()
                && let Some((ufrag, _)) = message.ice_ufrags()
                && self
                    .sessions
                    .get(&id)
                    .is_some_and(|entry| entry.password(ufrag).is_none())
            {
                let ufrag = ufrag.to_owned();
                return self.on_binding_request(ufrag, queued());
            }
            if kind != Kind::Stun
                && let Some(entry) = self.sessions.get_mut(&id)
            {
                if entry.media_from == Some(from) && entry.outbound.try_send(datagram) {
                    return;
                }
                entry.media_from = Some(from);
            }
            return self.enqueue(id, queued());
        }
        if kind != Kind::Stun {
            return self.drop_unknown(from, "not STUN, from an address no session knows");
        }
        let ufrag = match Message::parse(datagram) {
            Ok(message) if message.is_binding_request() => match message.ice_ufrags() {
                Some((ufrag, _)) => ufrag.to_owned(),
                None => return self.drop_unknown(from, "binding request without an ICE USERNAME"),
            },
            Ok(_) => return self.drop_unknown(from, "STUN that is not a binding request"),
            Err(err) => return self.drop_unknown(from, err),
        };
        self.on_binding_request(ufrag, queued())
    }

    /// A binding request from an address not (yet) accepted for the session it names.
    fn on_binding_request(&mut self, ufrag: String, first: Datagram) {
        if let Some(&id) = self.by_ufrag.get(&ufrag) {
            let Some(pwd) = self.sessions.get(&id).and_then(|e| e.password(&ufrag)) else {
                return;
            };
            if !verifies(&first.bytes, pwd) {
                return self.reject(first.from, &ufrag, "MESSAGE-INTEGRITY does not verify");
            }
            self.accept_address(id, first.from);
            return self.enqueue(id, first);
        }
        if let Some(record) = self.shared.directory.parked(&ufrag) {
            if !verifies(&first.bytes, &record.pwd) {
                return self.reject(first.from, &ufrag, "MESSAGE-INTEGRITY does not verify");
            }
            if let Some((record, lease)) = self.shared.directory.unpark(&ufrag) {
                self.start(ufrag, record, lease, first);
            }
            return;
        }
        if self
            .unknown
            .get(&ufrag)
            .is_some_and(|until| *until > Instant::now())
        {
            return WebRtcStats::add(&self.shared.stats.stun_rejected);
        }
        if self.lookups.contains(&ufrag) {
            // Being looked up: ICE repeats its checks, a later one will find the session.
            return;
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            return self.drop_unknown(first.from, "too many session lookups in flight");
        }
        self.lookups.insert(ufrag.clone());
        let (directory, resolved) = (self.shared.directory.clone(), self.resolved.clone());
        tokio::spawn(async move {
            let outcome = resolve(&directory, &ufrag)
                .await
                .map_err(|err| err.to_string());
            let _ = resolved.send(Box::new(Resolution {
                ufrag,
                outcome,
                first,
            }));
        });
    }

    /// The end of a lookup: start the session it found, or refuse the binding request.
    fn on_resolved(&mut self, resolution: Box<Resolution>) {
        let Resolution {
            ufrag,
            outcome,
            first,
        } = *resolution;
        self.lookups.remove(&ufrag);
        match outcome {
            Err(err) => {
                WebRtcStats::add(&self.shared.stats.stun_rejected);
                if let Some(suppressed) = self.drop_log.allow() {
                    tracing::warn!(client = %first.from, %ufrag, suppressed, error = %err, "cannot look up the WebRTC session");
                }
            }
            Ok(None) => {
                if self.unknown.len() >= MAX_UNKNOWN {
                    self.unknown.clear();
                }
                self.unknown
                    .insert(ufrag.clone(), Instant::now() + UNKNOWN_FOR);
                self.reject(first.from, &ufrag, "no session has this ufrag");
            }
            Ok(Some(Found { record, lease })) => {
                if !verifies(&first.bytes, &record.pwd) {
                    return self.reject(first.from, &ufrag, "MESSAGE-INTEGRITY does not verify");
                }
                self.start(ufrag, record, lease, first);
            }
        }
    }

    /// A verified binding request for a session found by its ufrag: joins the session already
    /// relaying it (another replica's answer raced ours, or an ICE restart gave the same
    /// resource a new ufrag), else starts one.
    fn start(
        &mut self,
        ufrag: String,
        record: SessionRecord,
        lease: Option<Arc<StreamLease>>,
        first: Datagram,
    ) {
        let restarted = record.resource.as_ref().and_then(|resource| {
            self.sessions
                .iter()
                .find(|(_, e)| e.resource.as_ref() == Some(resource))
                .map(|(id, _)| *id)
        });
        let Some(id) = self.by_ufrag.get(&ufrag).copied().or(restarted) else {
            return self.admit(ufrag, record, lease, first);
        };
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.password(&ufrag).is_none() {
            tracing::info!(client = %first.from, %ufrag, "WebRTC ICE restart joins its running session");
            entry.credentials.push((ufrag.clone(), record.pwd));
            self.by_ufrag.insert(ufrag, id);
        }
        self.accept_address(id, first.from);
        self.enqueue(id, first);
    }

    /// Starts relaying a session whose first binding request verified.
    fn admit(
        &mut self,
        ufrag: String,
        record: SessionRecord,
        lease: Option<Arc<StreamLease>>,
        first: Datagram,
    ) {
        if self.lifecycle.is_draining() {
            return self.reject(first.from, &ufrag, "the proxy is shutting down");
        }
        let max = self.shared.limits.max_sessions;
        if self.sessions.len() >= max {
            return self.reject(
                first.from,
                &ufrag,
                format_args!("{max} WebRTC sessions are relaying already"),
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        let (queue, queue_rx) = mpsc::channel(self.shared.limits.session_queue.max(1));
        let outbound = Arc::new(Outbound::default());
        let client = first.from;
        let cancel = self.shared.terminate.child_token();
        self.shared.directory.running(&ufrag, cancel.clone());
        if let Some(previous) = self.by_addr.insert(client, id) {
            self.unlink_address(previous, client);
        }
        self.by_ufrag.insert(ufrag.clone(), id);
        self.sessions.insert(
            id,
            Entry {
                queue,
                credentials: vec![(ufrag.clone(), record.pwd.clone())],
                resource: record.resource.clone(),
                addrs: VecDeque::from([client]),
                media_from: None,
                outbound: outbound.clone(),
            },
        );
        WebRtcStats::add(&self.shared.stats.sessions_total);
        WebRtcStats::add(&self.shared.stats.sessions_active);
        let setup = SessionSetup {
            id,
            ufrag,
            record,
            lease,
            client,
            queue: queue_rx,
            outbound,
            cancel,
        };
        self.lifecycle
            .spawn_session(session::run(self.shared.clone(), setup));
        self.enqueue(id, first);
    }

    /// A verified binding request came from `addr`: the session accepts datagrams from it.
    fn accept_address(&mut self, id: u64, addr: SocketAddr) {
        if let Some(previous) = self.by_addr.insert(addr, id)
            && previous != id
        {
            self.unlink_address(previous, addr);
        }
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.addrs.contains(&addr) {
            return;
        }
        tracing::info!(client = %addr, previous = ?entry.addrs.back(), "WebRTC client address accepted for its session");
        WebRtcStats::add(&self.shared.stats.rebinds);
        entry.addrs.push_back(addr);
        if entry.addrs.len() > MAX_CLIENT_ADDRS
            && let Some(oldest) = entry.addrs.pop_front()
        {
            self.by_addr.remove(&oldest);
        }
    }

    fn unlink_address(&mut self, id: u64, addr: SocketAddr) {
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.addrs.retain(|a| *a != addr);
        }
    }

    fn enqueue(&mut self, id: u64, datagram: Datagram) {
        let Some(entry) = self.sessions.get(&id) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = entry.queue.try_send(datagram) {
            // A stalled session must not hold the listener; media recovers from loss.
            WebRtcStats::add(&self.shared.stats.queue_drops);
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(entry) = self.sessions.remove(&id) {
            for addr in entry.addrs {
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
            }
            for (ufrag, _) in entry.credentials {
                self.by_ufrag.remove(&ufrag);
                self.shared.directory.stopped(&ufrag);
            }
        }
    }

    fn sweep(&mut self) {
        self.shared.directory.sweep();
        let now = Instant::now();
        self.unknown.retain(|_, until| *until > now);
    }

    fn reject(&mut self, from: SocketAddr, ufrag: &str, why: impl std::fmt::Display) {
        WebRtcStats::add(&self.shared.stats.stun_rejected);
        if let Some(suppressed) = self.drop_log.allow() {
            tracing::info!(client = %from, %ufrag, suppressed, "WebRTC binding request refused: {why}");
        }
    }

    fn drop_unknown(&mut self, from: SocketAddr, why: impl std::fmt::Display) {
        WebRtcStats::add(&self.shared.stats.dropped_unknown);
        if let Some(suppressed) = self.drop_log.allow() {
            tracing::debug!(peer = %from, suppressed, "ignored datagram on the WebRTC port: {why}");
        }
    }
}

fn verifies(datagram: &[u8], pwd: &str) -> bool {
    Message::parse(datagram).is_ok_and(|m| m.verify_integrity(pwd.as_bytes()))
}

/// Finds a session another replica (or this one, earlier) answered, and holds its stream
/// while it relays here.
async fn resolve(
    directory: &Directory,
    ufrag: &str,
) -> Result<Option<Found>, super::directory::DirectoryError> {
    let Some(record) = directory.lookup(ufrag).await? else {
        return Ok(None);
    };
    let lease = match StreamKey::parse_display(&record.stream) {
        Ok(key) => match directory.origins().lease(&key).await {
            Ok(lease) if lease.origin().server == record.origin => Some(Arc::new(lease)),
            Ok(lease) => {
                tracing::warn!(stream = %key, session_origin = %record.origin, owner = %lease.origin().server, "the stream moved to another origin; relaying the session to its own");
                None
            }
            Err(err) => {
                tracing::warn!(stream = %key, error = %err, "cannot hold the stream of a WebRTC session; relaying anyway");
                None
            }
        },
        Err(err) => {
            tracing::warn!(stream = %record.stream, error = %err, "stored WebRTC session names no valid stream");
            None
        }
    };
    Ok(Some(Found { record, lease }))
}
