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

/// Datagrams one relayed session moved each way. Counted locally per datagram and added to
/// the shared counters now and then (`flush`), not per datagram: those are shared by every
/// session and thread.
#[derive(Debug, Default)]
pub struct DatagramCounts {
    pub to_origin: u64,
    pub to_client: u64,
    flushed_to_origin: u64,
    flushed_to_client: u64,
}

impl DatagramCounts {
    pub fn flush(&mut self, to_origin: &AtomicU64, to_client: &AtomicU64) {
        to_origin.fetch_add(self.to_origin, Ordering::Relaxed);
        to_client.fetch_add(self.to_client, Ordering::Relaxed);
        self.flushed_to_origin += std::mem::take(&mut self.to_origin);
        self.flushed_to_client += std::mem::take(&mut self.to_client);
    }

    /// Everything counted so far, flushed or not: `(to origin, to client)`.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.flushed_to_origin + self.to_origin,
            self.flushed_to_client + self.to_client,
        )
    }
}
