//! What the UDP relays (SRT, WebRTC) share: their sockets towards origins, the listener's
//! direct path to them, and their counts.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::net::UdpSocket;

/// A UDP socket of one session only, connected to the origin: the kernel then drops
/// datagrams from anyone else and reports ICMP unreachable as errors.
pub async fn bind_connected(origin: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match origin {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(origin).await?;
    Ok(socket)
}

/// The client-to-origin half of a relayed session, driven by the listener itself. Once the
/// session relays, the listener sends a client's media straight out of the session's socket
/// towards the origin: no copy into a queue and no task wake-up per datagram, which is what
/// the session task would add to a plain relay. Whatever needs the session's state (its
/// handshake, a shutdown, a client that moved) still goes through its queue.
///
/// `T` is what the listener needs to rewrite a datagram for the origin (SRT: the origin's
/// socket id).
pub struct Outbound<T> {
    open: OnceLock<(Arc<UdpSocket>, T)>,
    datagrams: AtomicU64,
    bytes: AtomicU64,
}

impl<T> Default for Outbound<T> {
    fn default() -> Self {
        Self {
            open: OnceLock::new(),
            datagrams: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

impl<T> Outbound<T> {
    /// The session relays from now on, out of `socket`.
    pub fn open(&self, socket: Arc<UdpSocket>, rewrite: T) {
        let _ = self.open.set((socket, rewrite));
    }

    /// What the listener needs to rewrite datagrams, once the session relays.
    pub fn rewrite(&self) -> Option<&T> {
        self.open.get().map(|(_, rewrite)| rewrite)
    }

    /// Sends without waiting (nothing in the listener may wait on one session); false when
    /// the datagram is the session's to send: it does not relay yet, the socket cannot take it
    /// now (a full send buffer, or readiness not yet reported for a new socket), or the send
    /// failed. The session then waits for the socket or reports the failure.
    pub fn try_send(&self, datagram: &[u8]) -> bool {
        let Some((socket, _)) = self.open.get() else {
            return false;
        };
        match socket.try_send(datagram) {
            Ok(sent) => {
                // Only this session's task reads these, at its ticks: no contention.
                self.datagrams.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(sent as u64, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves what was sent since the last call into `counts`; true if anything was.
    pub fn take_into(&self, counts: &mut DatagramCounts) -> bool {
        let datagrams = self.datagrams.swap(0, Ordering::Relaxed);
        let bytes = self.bytes.swap(0, Ordering::Relaxed);
        counts.to_origin += datagrams;
        counts.bytes_to_origin += bytes;
        datagrams > 0
    }
}

/// Datagrams and bytes one relayed session moved each way. Counted locally per datagram and
/// added to the shared counters now and then (`flush`), not per datagram: those are shared by
/// every session and thread.
#[derive(Debug, Default)]
pub struct DatagramCounts {
    pub to_origin: u64,
    pub to_client: u64,
    bytes_to_origin: u64,
    bytes_to_client: u64,
    flushed_to_origin: u64,
    flushed_to_client: u64,
}

/// The shared counters of a relay that its sessions flush into.
pub struct Totals<'a> {
    pub to_origin: &'a AtomicU64,
    pub to_client: &'a AtomicU64,
    pub bytes_to_origin: &'a AtomicU64,
    pub bytes_to_client: &'a AtomicU64,
}

impl DatagramCounts {
    /// A datagram of `bytes` went to the origin.
    pub fn sent_to_origin(&mut self, bytes: usize) {
        self.to_origin += 1;
        self.bytes_to_origin += bytes as u64;
    }

    /// A datagram of `bytes` went to the client.
    pub fn sent_to_client(&mut self, bytes: usize) {
        self.to_client += 1;
        self.bytes_to_client += bytes as u64;
    }

    pub fn flush(&mut self, totals: Totals<'_>) {
        totals
            .to_origin
            .fetch_add(self.to_origin, Ordering::Relaxed);
        totals
            .to_client
            .fetch_add(self.to_client, Ordering::Relaxed);
        totals
            .bytes_to_origin
            .fetch_add(std::mem::take(&mut self.bytes_to_origin), Ordering::Relaxed);
        totals
            .bytes_to_client
            .fetch_add(std::mem::take(&mut self.bytes_to_client), Ordering::Relaxed);
        self.flushed_to_origin += std::mem::take(&mut self.to_origin);
        self.flushed_to_client += std::mem::take(&mut self.to_client);
    }

    /// Datagrams counted so far, flushed or not: `(to origin, to client)`.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.flushed_to_origin + self.to_origin,
            self.flushed_to_client + self.to_client,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_direct_path_sends_only_once_open_and_counts_what_it_sent() {
        let origin = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let outbound: Outbound<u32> = Outbound::default();
        assert!(!outbound.try_send(b"early"));
        assert_eq!(outbound.rewrite(), None);

        let socket = Arc::new(bind_connected(origin.local_addr().unwrap()).await.unwrap());
        outbound.open(socket, 7);
        assert_eq!(outbound.rewrite(), Some(&7));
        // A new socket is writable once the reactor has said so; until then the session sends.
        let outbound = &outbound;
        let sent = |datagram: &'static [u8]| async move {
            for _ in 0..100 {
                if outbound.try_send(datagram) {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("never sent directly");
        };
        sent(b"one").await;
        sent(b"three").await;
        let mut buf = [0u8; 16];
        let len = origin.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"one");

        let mut counts = DatagramCounts::default();
        assert!(outbound.take_into(&mut counts), "something was sent");
        assert_eq!(counts.totals(), (2, 0));
        assert_eq!(counts.bytes_to_origin, 8);
        // Taken: the session hears nothing more until the listener sends again.
        assert!(!outbound.take_into(&mut counts));
        assert_eq!(counts.totals(), (2, 0));
    }
}
