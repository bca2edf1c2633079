//! What the UDP relay benchmarks share: round trips with one datagram in flight over a socket
//! connected to an echoing peer (directly or through the proxy), and the report comparing the
//! two paths. The peers and the echo rate are `originstack_bench::udp_echo`'s, which
//! `make bench` uses too.

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

/// One path's figures, direct or through the proxy.
pub struct Figures {
    pub latency: Latency,
    /// Echoes per second with the window in flight.
    pub rate: f64,
    /// Datagrams lost while measuring the rate.
    pub lost: u64,
}

/// Measures the direct and the proxied path alike, after one warm-up run of `round_trips` on
/// each (allocator, caches, task wake-ups).
pub fn measure<P>(
    direct: &P,
    proxied: &P,
    round_trips: impl Fn(&P) -> Latency,
    rate: impl Fn(&P) -> (f64, u64),
) -> (Figures, Figures) {
    round_trips(direct);
    round_trips(proxied);
    let (direct_latency, proxied_latency) = (round_trips(direct), round_trips(proxied));
    let figures = |latency, (rate, lost)| Figures {
        latency,
        rate,
        lost,
    };
    (
        figures(direct_latency, rate(direct)),
        figures(proxied_latency, rate(proxied)),
    )
}

/// Prints `title` with the machine's CPU count, then how the proxied path compares with the
/// direct one: round trips (the proxy is crossed twice, so half the added time is per
/// `unit` relayed) and echo rates with `window` in flight.
pub fn print_comparison(
    title: &str,
    unit: &str,
    window: usize,
    direct: &Figures,
    proxied: &Figures,
) {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let (direct_p50, proxied_p50) = (direct.latency.p50, proxied.latency.p50);
    let added = micros(proxied_p50.saturating_sub(direct_p50));
    println!(
        "{title}, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "round trip, median: direct {:.1} µs, proxy {:.1} µs -> proxy/direct {:.2}, added {added:.1} µs per round trip, {:.1} µs per {unit} relayed",
        micros(direct_p50),
        micros(proxied_p50),
        proxied_p50.as_secs_f64() / direct_p50.as_secs_f64(),
        added / 2.0,
    );
    println!(
        "round trip, p99:    direct {:.1} µs, proxy {:.1} µs",
        micros(direct.latency.p99),
        micros(proxied.latency.p99)
    );
    println!(
        "echoes/s ({window} in flight): direct {:.0} (lost {}), proxy {:.0} (lost {}) -> proxy/direct {:.2}; the proxy relayed {:.0} datagrams/s",
        direct.rate,
        direct.lost,
        proxied.rate,
        proxied.lost,
        proxied.rate / direct.rate,
        proxied.rate * 2.0,
    );
}
