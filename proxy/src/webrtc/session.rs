//! One relayed WebRTC session: a UDP socket of its own towards the origin's media port, the
//! client's datagrams out of it, the origin's back to the client, until the session is idle,
//! deleted or the proxy stops.
//!
//! The origin sees one peer (this socket) whatever the client does. Towards the client,
//! answers to STUN requests go back to the address that asked (ICE checks every candidate
//! pair, and a response on the wrong one is lost); everything else goes to the address the
//! client last sent media (DTLS, SRTP) from, which is its selected candidate pair.

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{net::UdpSocket, sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    WebRtcStats,
    demux::{Kind, classify},
    directory::{Directory, SessionRecord},
    stun::Message,
};
use crate::{
    config::WebRtcConfig,
    origins::StreamLease,
    udp::{DatagramCounts, Outbound, Totals},
};

/// STUN transactions remembered per session to route the origin's answers; ICE has a
/// handful in flight at once.
const TRANSACTIONS: usize = 32;

/// What all sessions of one listener share.
/// Largest datagram read; WebRTC keeps packets under the path MTU, so this is generous.
pub(super) const MAX_DATAGRAM: usize = 2048;

pub(super) struct Shared {
    pub socket: Arc<UdpSocket>,
    pub directory: Arc<Directory>,
    pub limits: WebRtcConfig,
    pub stats: Arc<WebRtcStats>,
    pub terminate: CancellationToken,
    /// The listener hears here when a session ends (its id).
    pub ended: mpsc::UnboundedSender<u64>,
}

/// A datagram from a client and where it came from.
pub(super) struct Datagram {
    pub bytes: Bytes,
    pub from: SocketAddr,
}

pub(super) struct SessionSetup {
    pub id: u64,
    /// The origin's ufrag the session was found by.
    pub ufrag: String,
    pub record: SessionRecord,
    /// Keeps the stream owned while media flows.
    pub lease: Option<Arc<StreamLease>>,
    pub client: SocketAddr,
    pub queue: mpsc::Receiver<Datagram>,
    /// The listener's direct path to the origin for the client's media.
    pub outbound: Arc<Outbound<()>>,
    /// Cancelled by a DELETE (here or, through the directory, on another replica).
    pub cancel: CancellationToken,
}

/// Tells the listener the session is gone, whatever way it ends.
struct EndGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .sessions_active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shared.ended.send(self.id);
    }
}

pub(super) async fn run(shared: Arc<Shared>, setup: SessionSetup) {
    let span = tracing::info_span!(
        "webrtc",
        stream = %setup.record.stream,
        client = %setup.client,
        origin = %setup.record.origin,
        ufrag = %setup.ufrag,
    );
    session(shared, setup).instrument(span).await
}

#[derive(Debug, Clone, Copy)]
enum End {
    ClientIdle,
    OriginIdle,
    OriginUnreachable,
    Deleted,
    Stopping,
}

impl End {
    fn describe(self) -> &'static str {
        match self {
            End::ClientIdle => "client silent",
            End::OriginIdle => "origin silent",
            End::OriginUnreachable => "origin unreachable",
            End::Deleted => "deleted",
            End::Stopping => "proxy stopping",
        }
    }
}

async fn session(shared: Arc<Shared>, mut setup: SessionSetup) {
    let _guard = EndGuard {
        shared: shared.clone(),
        id: setup.id,
    };
    // Held until the session ends: the stream stays owned while media flows.
    let _lease = setup.lease.take();
    let started = Instant::now();
    let origin = setup.record.rtc;
    let backend = match crate::udp::bind_connected(origin).await {
        Ok(backend) => Arc::new(backend),
        Err(err) => {
            tracing::warn!(error = %err, "cannot open a UDP socket towards the origin {origin}");
            return;
        }
    };
    tracing::info!(rtc = %origin, "WebRTC session relaying");
    setup.outbound.open(backend.clone(), ());
    let keeper = tokio::spawn(keep_records(
        shared.directory.clone(),
        setup.ufrag.clone(),
        setup.record.clone(),
        setup.cancel.clone(),
    ));
    let mut relay = Relay {
        shared: &shared,
        target: setup.client,
        transactions: [([0; 12], setup.client); TRANSACTIONS],
        next_transaction: 0,
        counts: DatagramCounts::default(),
        outbound: setup.outbound.clone(),
    };
    let end = relay.run(&mut setup, &backend).await;
    relay.flush_counts();
    keeper.abort();
    if matches!(end, End::ClientIdle | End::OriginIdle) {
        WebRtcStats::add(&shared.stats.idle_closed);
    }
    // The listener forgets the session's credentials (and tells the directory) on EndGuard.
    tracing::info!(
        end = end.describe(),
        seconds = started.elapsed().as_secs(),
        to_origin = relay.counts.totals().0,
        to_client = relay.counts.totals().1,
        "WebRTC session ended"
    );
}

/// Refreshes the session's records while it relays and ends it when a DELETE on any replica
/// closed it. Runs beside the relay so a slow load balancer never holds media.
async fn keep_records(
    directory: Arc<Directory>,
    ufrag: String,
    record: SessionRecord,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(directory.times().refresh_every());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut failing = false;
    loop {
        ticker.tick().await;
        match directory.refresh(&ufrag, &record).await {
            Ok(true) => {
                cancel.cancel();
                return;
            }
            Ok(false) => failing = false,
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "cannot refresh the WebRTC session records; relaying on");
            }
            Err(_) => {}
        }
    }
}

struct Relay<'a> {
    shared: &'a Shared,
    /// Where the origin's media goes: the client's latest media source.
    target: SocketAddr,
    /// Recent STUN requests from the client: transaction id and the address that sent it.
    transactions: [([u8; 12], SocketAddr); TRANSACTIONS],
    next_transaction: usize,
    counts: DatagramCounts,
    outbound: Arc<Outbound<()>>,
}

impl Relay<'_> {
    async fn run(&mut self, setup: &mut SessionSetup, backend: &UdpSocket) -> End {
        let idle = self.shared.limits.idle_timeout;
        let mut check = tokio::time::interval(
            (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        );
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut heard_client, mut heard_origin) = (Instant::now(), Instant::now());
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                _ = setup.cancel.cancelled() => {
                    return if self.shared.terminate.is_cancelled() { End::Stopping } else { End::Deleted };
                }
                from_client = setup.queue.recv() => {
                    let Some(datagram) = from_client else { return End::Stopping };
                    heard_client = Instant::now();
                    self.note_client(&datagram);
                    match backend.send(&datagram.bytes).await {
                        Ok(sent) => self.counts.sent_to_origin(sent),
                        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => return End::OriginUnreachable,
                        Err(err) => tracing::debug!(error = %err, "send to the origin failed"),
                    }
                }
                received = backend.recv(&mut buf) => match received {
                    Ok(len) => {
                        heard_origin = Instant::now();
                        let to = self.destination(&buf[..len]);
                        match self.shared.socket.send_to(&buf[..len], to).await {
                            Ok(sent) => self.counts.sent_to_client(sent),
                            Err(err) => tracing::debug!(error = %err, "send to the client failed"),
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => return End::OriginUnreachable,
                    Err(err) => tracing::debug!(error = %err, "receive from the origin failed"),
                },
                _ = check.tick() => {
                    // The client's media goes to the origin from the listener (Outbound).
                    if self.outbound.take_into(&mut self.counts) {
                        heard_client = Instant::now();
                    }
                    self.flush_counts();
                    if heard_client.elapsed() > idle {
                        return End::ClientIdle;
                    }
                    if heard_origin.elapsed() > idle {
                        return End::OriginIdle;
                    }
                }
            }
        }
    }

    fn note_client(&mut self, datagram: &Datagram) {
        if classify(&datagram.bytes) != Kind::Stun {
            self.target = datagram.from;
            return;
        }
        if let Ok(message) = Message::parse(&datagram.bytes)
            && !message.is_response()
        {
            self.transactions[self.next_transaction] = (message.transaction_id(), datagram.from);
            self.next_transaction = (self.next_transaction + 1) % TRANSACTIONS;
        }
    }

    fn destination(&self, datagram: &[u8]) -> SocketAddr {
        if classify(datagram) == Kind::Stun
            && let Ok(message) = Message::parse(datagram)
            && message.is_response()
        {
            let id = message.transaction_id();
            if let Some((_, addr)) = self.transactions.iter().find(|(t, _)| *t == id) {
                return *addr;
            }
        }
        self.target
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
