//! One SRT session: the caller handshake towards the origin from a UDP socket of its own, the
//! answer to the client, then the relay with socket ids translated, until either side closes,
//! goes quiet, or the proxy stops.

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::{
    net::UdpSocket,
    sync::mpsc,
    time::{MissedTickBehavior, timeout_at},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    OriginResolver, ResolveError, SrtStats,
    handshake::{
        Handshake, HandshakeType, RejectReason, SRT_MAGIC, UDT_DGRAM, VERSION_4, VERSION_5,
        peer_ip_words,
    },
    packet::{ControlType, Header, MAX_DATAGRAM, set_destination, shutdown_packet},
    streamid::StreamId,
};
use crate::{
    config::SrtLimits,
    telemetry::LogLimiter,
    udp::{DatagramCounts, Outbound, Totals},
};

/// How often a handshake packet is repeated until answered (libsrt repeats every 250 ms).
const HANDSHAKE_RESEND: Duration = Duration::from_millis(250);

/// What all sessions of one listener share.
pub(super) struct Shared {
    pub socket: Arc<UdpSocket>,
    pub resolver: Arc<dyn OriginResolver>,
    pub limits: SrtLimits,
    pub stats: Arc<SrtStats>,
    pub terminate: CancellationToken,
    /// Each session sends its proxy socket id here when it ends.
    pub ended: mpsc::UnboundedSender<u32>,
}

pub(super) struct SessionSetup {
    /// The socket id the proxy uses on both sides of this session.
    pub proxy_id: u32,
    pub client: SocketAddr,
    pub client_clock: PeerClock,
    /// The client's conclusion, cookie checked.
    pub conclusion: Handshake,
    pub stream: StreamId,
    pub queue: mpsc::Receiver<BytesMut>,
    /// The listener's direct path to the origin, opened once the session relays.
    pub outbound: Arc<Outbound<u32>>,
}

/// A peer's SRT clock as seen from here: timestamps are microseconds since that peer's
/// socket started, and libsrt sets its TSBPD base from the handshake's timestamp. Packets the
/// proxy sends on behalf of a peer carry that peer's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerClock {
    seen_at: Instant,
    timestamp: u32,
}

impl PeerClock {
    pub fn new(timestamp: u32) -> Self {
        Self {
            seen_at: Instant::now(),
            timestamp,
        }
    }

    pub fn now(&self) -> u32 {
        self.timestamp
            .wrapping_add(self.seen_at.elapsed().as_micros() as u32)
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("picking the origin took longer than {0:?}")]
    ResolveTimeout(Duration),
    #[error("cannot open a UDP socket towards the origin {origin}: {source}")]
    Bind {
        origin: SocketAddr,
        source: io::Error,
    },
    #[error("the origin {0} is unreachable (nothing listens on its SRT port)")]
    OriginUnreachable(SocketAddr),
    #[error("the origin {origin} did not complete the SRT handshake within {timeout:?}")]
    OriginTimeout {
        origin: SocketAddr,
        timeout: Duration,
    },
    #[error("the origin {0} speaks only HSv4 SRT, which cannot carry a stream id")]
    OriginTooOld(SocketAddr),
    #[error("the origin {origin} refused the connection: {reason}")]
    OriginRejected {
        origin: SocketAddr,
        reason: RejectReason,
    },
    #[error("the proxy is stopping")]
    Stopping,
}

impl SessionError {
    fn reject_reason(&self) -> RejectReason {
        match self {
            Self::Resolve(err) => err.reject_reason(),
            Self::ResolveTimeout(_) => RejectReason::DOWN,
            Self::Bind { .. } => RejectReason::INTERNAL_ERROR,
            Self::OriginUnreachable(_) | Self::OriginTimeout { .. } => RejectReason::GATEWAY,
            Self::OriginTooOld(_) => RejectReason::GATEWAY,
            // The origin's own reason tells the client most (e.g. 1403 from its auth hook).
            Self::OriginRejected { reason, .. } => *reason,
            Self::Stopping => RejectReason::DOWN,
        }
    }
}

/// Decrements the active count and tells the listener to forget the session, however the
/// task ends.
struct SessionGuard {
    shared: Arc<Shared>,
    proxy_id: u32,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .sessions_active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shared.ended.send(self.proxy_id);
    }
}

pub(super) async fn run(shared: Arc<Shared>, setup: SessionSetup) {
    let span = tracing::info_span!(
        "srt_session",
        client = %setup.client,
        stream = %setup.stream.key(),
        publish = setup.stream.publish,
        proxy_socket = setup.proxy_id,
    );
    session(shared, setup).instrument(span).await
}

async fn session(shared: Arc<Shared>, mut setup: SessionSetup) {
    let _guard = SessionGuard {
        shared: shared.clone(),
        proxy_id: setup.proxy_id,
    };
    let started = Instant::now();
    let connected = tokio::select! {
        connected = connect_origin(&shared, &mut setup) => connected,
        _ = shared.terminate.cancelled() => Err(SessionError::Stopping),
    };
    let origin = match connected {
        Ok(origin) => origin,
        Err(err) => {
            SrtStats::add(&shared.stats.rejected);
            let reason = err.reject_reason();
            tracing::warn!(reason = %reason, error = %err, "SRT session refused");
            let answer = setup.conclusion.rejection(reason, setup.proxy_id);
            let packet = answer.encode_packet(setup.client_clock.now(), setup.conclusion.socket_id);
            let _ = shared.socket.send_to(&packet, setup.client).await;
            return;
        }
    };
    tracing::info!(
        origin = %origin.addr,
        origin_socket = origin.socket_id,
        handshake_ms = started.elapsed().as_millis() as u64,
        "SRT session relaying"
    );
    let mut relay = Relay::new(&shared, &setup, origin.addr);
    setup
        .outbound
        .open(origin.backend.clone(), origin.socket_id);
    let end = relay.run(&mut setup.queue, &origin).await;
    relay.flush_counts();
    tracing::info!(
        end = end.describe(),
        seconds = started.elapsed().as_secs(),
        to_origin = relay.counts.totals().0,
        to_client = relay.counts.totals().1,
        "SRT session ended"
    );
}

/// A connected origin.
struct Origin {
    addr: SocketAddr,
    backend: Arc<UdpSocket>,
    socket_id: u32,
    clock: PeerClock,
    /// The conclusion answer sent to the client, kept for repeated conclusions.
    answer: Handshake,
    /// Held until the session ends.
    _guard: Box<dyn Send + Sync>,
}

async fn connect_origin(shared: &Shared, setup: &mut SessionSetup) -> Result<Origin, SessionError> {
    let timeout = shared.limits.origin_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let resolved = timeout_at(deadline, shared.resolver.resolve(&setup.stream))
        .await
        .map_err(|_| SessionError::ResolveTimeout(timeout))??;
    let origin = resolved.addr;
    let backend = crate::udp::bind_connected(origin)
        .await
        .map_err(|source| SessionError::Bind { origin, source })?;

    let client = &setup.conclusion;
    // The origin sees the client's numbers: its initial sequence number (listeners adopt the
    // caller's), MTU and flow window, and in the conclusion the client's extensions.
    let induction = Handshake {
        version: VERSION_4,
        encryption: 0,
        extension_field: UDT_DGRAM,
        initial_sequence: client.initial_sequence,
        mtu: client.mtu,
        flow_window: client.flow_window,
        kind: HandshakeType::Induction,
        socket_id: setup.proxy_id,
        cookie: 0,
        peer_ip: peer_ip_words(origin.ip()),
        extensions: Vec::new(),
    };
    let mut request = induction.clone();
    let mut resend = tokio::time::interval(HANDSHAKE_RESEND);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut garbage_log = LogLimiter::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(SessionError::OriginTimeout { origin, timeout });
            }
            _ = resend.tick() => {
                let packet = request.encode_packet(setup.client_clock.now(), 0);
                if let Err(err) = backend.send(&packet).await {
                    return Err(classify_send_error(err, origin));
                }
            }
            // The client repeats its conclusion while it waits; the answer comes when ready.
            repeated = setup.queue.recv() => if repeated.is_none() {
                return Err(SessionError::Stopping);
            },
            received = backend.recv(&mut buf) => {
                let len = received.map_err(|err| classify_send_error(err, origin))?;
                let (header, answer) = match Handshake::decode_packet(&buf[..len]) {
                    Ok(decoded) => decoded,
                    Err(err) => {
                        log_origin_garbage(&shared.stats, &mut garbage_log, origin, &err);
                        continue;
                    }
                };
                if header.destination != setup.proxy_id {
                    log_origin_garbage(&shared.stats, &mut garbage_log, origin, &"handshake for another socket");
                    continue;
                }
                match (request.kind, answer.kind) {
                    (_, HandshakeType::Rejection(reason)) => {
                        return Err(SessionError::OriginRejected { origin, reason });
                    }
                    (HandshakeType::Induction, HandshakeType::Induction) => {
                        if answer.version < VERSION_5 || answer.extension_field != SRT_MAGIC {
                            return Err(SessionError::OriginTooOld(origin));
                        }
                        request = Handshake {
                            version: VERSION_5,
                            encryption: 0,
                            extension_field: client.extension_field,
                            kind: HandshakeType::Conclusion,
                            cookie: answer.cookie,
                            extensions: client.extensions.clone(),
                            ..induction.clone()
                        };
                        // Send the conclusion now rather than at the next tick.
                        resend.reset_immediately();
                    }
                    (HandshakeType::Conclusion, HandshakeType::Conclusion) => {
                        let clock = PeerClock::new(header.timestamp);
                        let reply = client_answer(setup, &answer);
                        send_to_client(shared, &reply, clock, setup).await;
                        return Ok(Origin {
                            addr: origin,
                            backend: Arc::new(backend),
                            socket_id: answer.socket_id,
                            clock,
                            answer: reply,
                            _guard: resolved.guard,
                        });
                    }
                    // A late repeat of the induction answer, or anything else: not for now.
                    _ => {}
                }
            }
        }
    }
}

/// The origin's conclusion answer as the client must see it: the proxy's socket id, the
/// client's address, the client's cookie; the origin's negotiated numbers and extensions.
fn client_answer(setup: &SessionSetup, origin_answer: &Handshake) -> Handshake {
    Handshake {
        socket_id: setup.proxy_id,
        cookie: setup.conclusion.cookie,
        peer_ip: peer_ip_words(setup.client.ip()),
        ..origin_answer.clone()
    }
}

async fn send_to_client(
    shared: &Shared,
    answer: &Handshake,
    origin_clock: PeerClock,
    setup: &SessionSetup,
) {
    let packet = answer.encode_packet(origin_clock.now(), setup.conclusion.socket_id);
    if let Err(err) = shared.socket.send_to(&packet, setup.client).await {
        tracing::debug!(error = %err, "SRT conclusion answer not sent");
    }
}

fn classify_send_error(err: io::Error, origin: SocketAddr) -> SessionError {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => SessionError::OriginUnreachable(origin),
        _ => SessionError::Bind {
            origin,
            source: err,
        },
    }
}

fn log_origin_garbage(
    stats: &SrtStats,
    limiter: &mut LogLimiter,
    origin: SocketAddr,
    why: &dyn std::fmt::Display,
) {
    SrtStats::add(&stats.garbage);
    if let Some(suppressed) = limiter.allow() {
        tracing::debug!(%origin, suppressed, "ignored datagram from the origin: {why}");
    }
}

/// Why a relaying session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    OriginClosed,
    OriginUnreachable,
    ClientIdle,
    OriginIdle,
    Stopping,
}

impl End {
    fn describe(self) -> &'static str {
        match self {
            End::ClientClosed => "client closed",
            End::OriginClosed => "origin closed",
            End::OriginUnreachable => "origin unreachable",
            End::ClientIdle => "client silent",
            End::OriginIdle => "origin silent",
            End::Stopping => "proxy stopping",
        }
    }
}

struct Relay<'a> {
    shared: &'a Shared,
    client: SocketAddr,
    client_socket_id: u32,
    client_clock: PeerClock,
    origin: SocketAddr,
    counts: DatagramCounts,
    outbound: Arc<Outbound<u32>>,
    garbage_log: LogLimiter,
}

impl<'a> Relay<'a> {
    fn new(shared: &'a Shared, setup: &SessionSetup, origin: SocketAddr) -> Self {
        Self {
            shared,
            client: setup.client,
            client_socket_id: setup.conclusion.socket_id,
            client_clock: setup.client_clock,
            origin,
            counts: DatagramCounts::default(),
            outbound: setup.outbound.clone(),
            garbage_log: LogLimiter::default(),
        }
    }

    async fn run(&mut self, queue: &mut mpsc::Receiver<BytesMut>, origin: &Origin) -> End {
        let idle = self.shared.limits.idle_timeout;
        let mut check = tokio::time::interval(
            (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        );
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heard_client = Instant::now();
        let mut heard_origin = Instant::now();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let end = loop {
            tokio::select! {
                _ = self.shared.terminate.cancelled() => break End::Stopping,
                from_client = queue.recv() => {
                    let Some(mut datagram) = from_client else { break End::Stopping };
                    heard_client = Instant::now();
                    if let Some(end) = self.client_datagram(&mut datagram, origin).await {
                        break end;
                    }
                }
                received = origin.backend.recv(&mut buf) => match received {
                    Ok(len) => {
                        heard_origin = Instant::now();
                        if let Some(end) = self.origin_datagram(&mut buf[..len]).await {
                            break end;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => break End::OriginUnreachable,
                    Err(err) => tracing::debug!(error = %err, "receive from the origin failed"),
                },
                _ = check.tick() => {
                    // The client's media goes to the origin from the listener (Outbound).
                    if self.outbound.take_into(&mut self.counts) {
                        heard_client = Instant::now();
                    }
                    self.flush_counts();
                    if heard_client.elapsed() > idle {
                        break End::ClientIdle;
                    }
                    if heard_origin.elapsed() > idle {
                        break End::OriginIdle;
                    }
                }
            }
        };
        // Tell whichever side is still there, so it stops now rather than at its own timeout.
        if !matches!(
            end,
            End::OriginClosed | End::OriginUnreachable | End::OriginIdle
        ) {
            let _ = origin
                .backend
                .try_send(&shutdown_packet(self.client_clock.now(), origin.socket_id));
        }
        if !matches!(end, End::ClientClosed | End::ClientIdle) {
            let packet = shutdown_packet(origin.clock.now(), self.client_socket_id);
            let _ = self.shared.socket.try_send_to(&packet, self.client);
        }
        end
    }

    /// Relays one client datagram (already known to be from the client, for this session).
    async fn client_datagram(&mut self, datagram: &mut BytesMut, origin: &Origin) -> Option<End> {
        let header = Header::decode(datagram).ok()?;
        if header.is_control(ControlType::Handshake) {
            // A repeated conclusion: our answer was lost; send it again.
            let packet = origin
                .answer
                .encode_packet(origin.clock.now(), self.client_socket_id);
            let _ = self.shared.socket.send_to(&packet, self.client).await;
            return None;
        }
        set_destination(datagram, origin.socket_id);
        match origin.backend.send(datagram).await {
            Ok(sent) => self.counts.sent_to_origin(sent),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                return Some(End::OriginUnreachable);
            }
            Err(err) => tracing::debug!(error = %err, "send to the origin failed"),
        }
        header
            .is_control(ControlType::Shutdown)
            .then_some(End::ClientClosed)
    }

    async fn origin_datagram(&mut self, datagram: &mut [u8]) -> Option<End> {
        let header = match Header::decode(datagram) {
            Ok(header) => header,
            Err(err) => {
                log_origin_garbage(&self.shared.stats, &mut self.garbage_log, self.origin, &err);
                return None;
            }
        };
        if header.is_control(ControlType::Handshake) {
            // Repeated answers to our handshake; the client already has its answer.
            return None;
        }
        set_destination(datagram, self.client_socket_id);
        match self.shared.socket.send_to(datagram, self.client).await {
            Ok(sent) => self.counts.sent_to_client(sent),
            Err(err) => tracing::debug!(error = %err, "send to the client failed"),
        }
        header
            .is_control(ControlType::Shutdown)
            .then_some(End::OriginClosed)
    }

    fn flush_counts(&mut self) {
        self.outbound.take_into(&mut self.counts);
        let stats = &self.shared.stats;
        self.counts.flush(Totals {
            to_origin: &stats.to_origin,
            to_client: &stats.to_client,
            bytes_to_origin: &stats.bytes_to_origin,
            bytes_to_client: &stats.bytes_to_client,
        });
    }
}
