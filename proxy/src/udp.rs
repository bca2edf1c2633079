//! What the UDP relays (SRT, WebRTC) share: their sockets towards origins and their counts.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
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
