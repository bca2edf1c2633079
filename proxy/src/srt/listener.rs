//! The SRT listener loop: one UDP socket shared by all clients.
//!
//! It answers inductions itself (stateless, SYN cookie), turns a conclusion with a valid cookie
//! into a session task, and hands later datagrams to its session through a bounded queue
//! (`try_send`, dropped when full). Once a session relays, the client's datagrams go straight
//! to the origin from here (`udp::Outbound`, `try_send` too), except those the session must
//! see (a repeated conclusion, a shutdown). Nothing in this loop waits on an origin, so a slow
//! or dead origin only ever delays its own session.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    OriginResolver, SrtStats,
    cookie::CookieJar,
    handshake::{Handshake, HandshakeType, RejectReason, SRT_MAGIC, VERSION_5, ext},
    packet::{ControlType, HEADER_LEN, Header, MAX_DATAGRAM, set_destination},
    session::{self, PeerClock, SessionSetup, Shared},
    streamid::{StreamId, StreamIdError},
};
use crate::{config::SrtLimits, lifecycle::Lifecycle, telemetry::LogLimiter, udp::Outbound};

/// libsrt socket ids stay below 2^30 (bit 30 marks socket groups).
const SOCKET_ID_LIMIT: u32 = 1 << 30;

/// Serves SRT on `socket` until the lifecycle terminates sessions, or until it drains and the
/// last session has ended. While draining, new callers are refused (SRT reject 1503) and the
/// sessions already relaying go on.
pub async fn serve(
    socket: UdpSocket,
    resolver: Arc<dyn OriginResolver>,
    limits: SrtLimits,
    stats: Arc<SrtStats>,
    lifecycle: Lifecycle,
) {
    let socket = Arc::new(socket);
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        socket: socket.clone(),
        resolver,
        limits,
        stats,
        terminate: lifecycle.terminate().clone(),
        ended: ended_tx,
    });
    let mut listener = Listener {
        shared,
        lifecycle: lifecycle.clone(),
        cookies: CookieJar::new(),
        started: Instant::now(),
        sessions: HashMap::new(),
        by_caller: HashMap::new(),
        per_client: HashMap::new(),
        garbage_log: LogLimiter::default(),
    };
    let terminate = lifecycle.terminate().clone();
    let draining = lifecycle.draining().clone();
    // One byte more than the largest SRT datagram, so oversized ones are seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            biased;
            _ = terminate.cancelled() => break,
            _ = draining.cancelled(), if listener.sessions.is_empty() => break,
            Some(proxy_id) = ended_rx.recv() => listener.forget(proxy_id),
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    listener.on_datagram(&mut buf[..len], from);
                }
                Err(err) => {
                    // UDP receive errors are transient (e.g. ICMP reports); avoid a hot loop.
                    tracing::warn!(error = %err, "SRT receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    tracing::info!(sessions = listener.sessions.len(), "SRT listener stopped");
}

struct SessionEntry {
    client: SocketAddr,
    client_socket_id: u32,
    queue: mpsc::Sender<BytesMut>,
    outbound: Arc<Outbound<u32>>,
}

struct Listener {
    shared: Arc<Shared>,
    lifecycle: Lifecycle,
    cookies: CookieJar,
    /// Origin of the timestamps of packets the listener itself sends.
    started: Instant,
    /// By the socket id the proxy gave the client (the destination of its packets).
    sessions: HashMap<u32, SessionEntry>,
    /// By (client address, client socket id): where repeated conclusions go.
    by_caller: HashMap<(SocketAddr, u32), u32>,
    /// Sessions open per client IP, kept with `sessions` so that admitting an (unverified)
    /// induction never scans every session.
    per_client: HashMap<IpAddr, usize>,
    garbage_log: LogLimiter,
}

/// A refusal: what the client is told and what the log says.
struct Refusal {
    reason: RejectReason,
    message: String,
}

impl Refusal {
    fn new(reason: RejectReason, message: impl fmt::Display) -> Self {
        Self {
            reason,
            message: message.to_string(),
        }
    }
}

impl Listener {
    fn on_datagram(&mut self, datagram: &mut [u8], from: SocketAddr) {
        let header = match Header::decode(datagram) {
            Ok(header) => header,
            Err(err) => return self.garbage(from, err),
        };
        if header.is_control(ControlType::Handshake) {
            return self.on_handshake(header, datagram, from);
        }
        match self.sessions.get(&header.destination) {
            // The source must match: socket ids are not secrets worth trusting on their own.
            Some(entry) if entry.client == from => {
                forward(&self.shared.stats, entry, &header, datagram)
            }
            _ => self.garbage(from, "not addressed to a session of this sender"),
        }
    }

    fn on_handshake(&mut self, header: Header, datagram: &[u8], from: SocketAddr) {
        let handshake = match Handshake::decode(&datagram[HEADER_LEN..]) {
            Ok(handshake) => handshake,
            Err(err) => return self.garbage(from, err),
        };
        match handshake.kind {
            HandshakeType::Induction => self.answer_induction(&handshake, from),
            HandshakeType::Conclusion => {
                if let Some(entry) = self
                    .by_caller
                    .get(&(from, handshake.socket_id))
                    .and_then(|proxy_id| self.sessions.get(proxy_id))
                {
                    // A repeated conclusion: the session answers it (again) once it can.
                    return enqueue(&self.shared.stats, entry, datagram);
                }
                self.accept_conclusion(header, handshake, from);
            }
            other => self.garbage(
                from,
                format!("handshake {other:?} is not part of a caller-listener connection"),
            ),
        }
    }

    fn answer_induction(&mut self, induction: &Handshake, from: SocketAddr) {
        if let Err(refusal) = self.admission(from) {
            return self.refuse(induction, from, refusal);
        }
        // As libsrt: the caller's numbers and socket id come back, with version 5, the SRT
        // magic (this listener speaks HSv5) and the cookie.
        let answer = Handshake {
            version: VERSION_5,
            encryption: 0,
            extension_field: SRT_MAGIC,
            kind: HandshakeType::Induction,
            cookie: self.cookies.issue(from, Instant::now()),
            extensions: Vec::new(),
            ..induction.clone()
        };
        self.send(
            &answer.encode_packet(self.clock(), induction.socket_id),
            from,
        );
    }

    fn accept_conclusion(&mut self, header: Header, conclusion: Handshake, from: SocketAddr) {
        if !self.cookies.verify(from, conclusion.cookie, Instant::now()) {
            // No answer: a wrong cookie means a spoofed or stale sender.
            return self.garbage(
                from,
                "conclusion with a cookie this proxy did not issue to that address",
            );
        }
        let stream = match self
            .admission(from)
            .and_then(|()| check_conclusion(&conclusion))
        {
            Ok(stream) => stream,
            Err(refusal) => return self.refuse(&conclusion, from, refusal),
        };

        let proxy_id = self.allocate_socket_id();
        let (queue, queue_rx) = mpsc::channel(self.shared.limits.session_queue.max(1));
        let outbound = Arc::new(Outbound::default());
        self.sessions.insert(
            proxy_id,
            SessionEntry {
                client: from,
                client_socket_id: conclusion.socket_id,
                queue,
                outbound: outbound.clone(),
            },
        );
        self.by_caller
            .insert((from, conclusion.socket_id), proxy_id);
        *self.per_client.entry(from.ip()).or_default() += 1;
        SrtStats::add(&self.shared.stats.sessions_total);
        SrtStats::add(&self.shared.stats.sessions_active);
        let setup = SessionSetup {
            proxy_id,
            client: from,
            client_clock: PeerClock::new(header.timestamp),
            conclusion,
            stream,
            queue: queue_rx,
            outbound,
        };
        self.lifecycle
            .spawn_session(session::run(self.shared.clone(), setup));
    }

    /// Whether a new caller may come in at all.
    fn admission(&self, from: SocketAddr) -> Result<(), Refusal> {
        if self.lifecycle.is_draining() {
            return Err(Refusal::new(
                RejectReason::DOWN,
                "the proxy is shutting down",
            ));
        }
        let max = self.shared.limits.max_sessions;
        if self.sessions.len() >= max {
            return Err(Refusal::new(
                RejectReason::OVERLOAD,
                format_args!("{max} SRT sessions are open already"),
            ));
        }
        let per_client = self.shared.limits.max_sessions_per_client;
        if per_client > 0 && self.per_client.get(&from.ip()).copied().unwrap_or(0) >= per_client {
            SrtStats::add(&self.shared.stats.refused_per_client);
            return Err(Refusal::new(
                RejectReason::OVERLOAD,
                format_args!("{} has {per_client} SRT sessions open already", from.ip()),
            ));
        }
        Ok(())
    }

    fn refuse(&mut self, handshake: &Handshake, from: SocketAddr, refusal: Refusal) {
        SrtStats::add(&self.shared.stats.rejected);
        tracing::warn!(client = %from, reason = %refusal.reason, "SRT caller refused: {}", refusal.message);
        let answer = handshake.rejection(refusal.reason, 0);
        self.send(
            &answer.encode_packet(self.clock(), handshake.socket_id),
            from,
        );
    }

    fn forget(&mut self, proxy_id: u32) {
        if let Some(entry) = self.sessions.remove(&proxy_id) {
            self.by_caller
                .remove(&(entry.client, entry.client_socket_id));
            let ip = entry.client.ip();
            if let Some(open) = self.per_client.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    self.per_client.remove(&ip);
                }
            }
        }
    }

    fn allocate_socket_id(&self) -> u32 {
        loop {
            let id = rand::random_range(1..SOCKET_ID_LIMIT);
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn clock(&self) -> u32 {
        // SRT timestamps are microseconds modulo 2^32.
        self.started.elapsed().as_micros() as u32
    }

    /// Never waits: when the socket buffer is full the answer is lost, and the caller repeats.
    fn send(&self, datagram: &[u8], to: SocketAddr) {
        if let Err(err) = self.shared.socket.try_send_to(datagram, to) {
            tracing::debug!(client = %to, error = %err, "SRT handshake answer not sent");
        }
    }

    fn garbage(&mut self, from: SocketAddr, why: impl fmt::Display) {
        SrtStats::add(&self.shared.stats.garbage);
        if let Some(suppressed) = self.garbage_log.allow() {
            tracing::debug!(peer = %from, suppressed, "ignored datagram on the SRT port: {why}");
        }
    }
}

/// What a new conclusion must satisfy; the parsed stream id when it does.
fn check_conclusion(conclusion: &Handshake) -> Result<StreamId, Refusal> {
    if conclusion.version < VERSION_5 {
        return Err(Refusal::new(
            RejectReason::VERSION,
            "HSv4 caller (libsrt before 1.3) cannot send a stream id; upgrade the client",
        ));
    }
    if conclusion.wants_encryption() {
        return Err(Refusal::new(
            RejectReason::UNSECURE,
            "the caller asks for encryption (passphrase set); the proxy relays unencrypted SRT only",
        ));
    }
    if conclusion.extension(ext::GROUP).is_some() {
        return Err(Refusal::new(
            RejectReason::GROUP,
            "socket groups (bonding) are not supported through the proxy",
        ));
    }
    let raw = match conclusion.stream_id() {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Err(Refusal::new(
                RejectReason::BAD_REQUEST,
                "no stream id; use streamid=#!::r=app/stream,m=publish",
            ));
        }
        Err(err) => return Err(Refusal::new(RejectReason::BAD_REQUEST, err)),
    };
    StreamId::parse(&raw).map_err(|err| {
        let reason = match err {
            StreamIdError::BadMode { .. } => RejectReason::BAD_MODE,
            _ => RejectReason::BAD_REQUEST,
        };
        Refusal::new(reason, err)
    })
}

/// A datagram from a session's client: straight to the origin once the session relays, unless
/// the session must see it.
fn forward(stats: &SrtStats, entry: &SessionEntry, header: &Header, datagram: &mut [u8]) {
    if !header.is_control(ControlType::Shutdown)
        && let Some(&origin_socket) = entry.outbound.rewrite()
    {
        set_destination(datagram, origin_socket);
        if entry.outbound.try_send(datagram) {
            return;
        }
    }
    enqueue(stats, entry, datagram);
}

fn enqueue(stats: &SrtStats, entry: &SessionEntry, datagram: &[u8]) {
    // Each queued datagram gets an allocation of its own size: it then holds no more memory
    // than its bytes, whatever the other sessions do.
    let datagram = BytesMut::from(datagram);
    if let Err(mpsc::error::TrySendError::Full(_)) = entry.queue.try_send(datagram) {
        // SRT recovers lost packets; a stalled session must not hold the listener.
        SrtStats::add(&stats.queue_drops);
    }
    // Closed: the session is ending and will be forgotten shortly.
}
