//! What the UDP relay benchmarks share: round trips with one datagram in flight and echo
//! rates with a window in flight, over a socket connected to an echoing peer (directly or
//! through the proxy).

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use originstack_bench::stats::Latency;

/// `rounds` round trips of `make(sequence)`; `is_echo` picks the answer to that sequence.
pub fn ping_pong(
    socket: &UdpSocket,
    rounds: usize,
    make: impl Fn(u32) -> Vec<u8>,
    is_echo: impl Fn(&[u8], u32) -> bool,
) -> Latency {
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::with_capacity(rounds);
    for sequence in 0..rounds as u32 {
        let packet = make(sequence);
        let sent = Instant::now();
        socket.send(&packet).unwrap();
        loop {
            let len = socket.recv(&mut buf).expect("echo within the read timeout");
            // Skip anything that is not the echo of this datagram (none expected).
            if is_echo(&buf[..len], sequence) {
                break;
            }
        }
        rtts.push(sent.elapsed());
    }
    Latency::of(rtts).expect("at least one round")
}

/// Echoed datagrams per second with `window` in flight for `run`; a lost one frees its slot
/// after 50 ms. Returns the rate and the datagrams lost.
pub fn throughput(
    socket: &UdpSocket,
    window: usize,
    run: Duration,
    make: impl Fn(u32) -> Vec<u8>,
) -> (f64, u64) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (mut sequence, mut in_flight, mut echoed, mut lost) = (0u32, 0usize, 0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < run {
        while in_flight < window {
            socket.send(&make(sequence)).unwrap();
            sequence = sequence.wrapping_add(1);
            in_flight += 1;
        }
        match socket.recv(&mut buf) {
            Ok(_) => {
                echoed += 1;
                in_flight -= 1;
            }
            Err(_) => {
                lost += in_flight as u64;
                in_flight = 0;
            }
        }
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (echoed as f64 / started.elapsed().as_secs_f64(), lost)
}
