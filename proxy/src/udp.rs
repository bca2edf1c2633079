//! UDP sockets the relays (SRT, WebRTC) open towards origins.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
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
