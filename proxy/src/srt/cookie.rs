//! SYN cookies for the SRT induction.
//!
//! The listener answers an induction without keeping any state: the cookie is a keyed MAC of
//! the caller's address and the current time bucket, and a conclusion is only believed when
//! it echoes a cookie that this process issued to that address recently. Spoofed sources never
//! see their cookie, so they cannot make the proxy open sessions or contact origins.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long one cookie bucket lasts. A conclusion may echo a cookie of the current or the
/// previous bucket, so a cookie stays valid between one and two buckets (callers conclude
/// within milliseconds; libsrt uses one-minute buckets too).
pub const BUCKET: Duration = Duration::from_secs(60);

pub struct CookieJar {
    secret: [u8; 32],
    epoch: Instant,
}

impl CookieJar {
    /// A jar with a fresh random secret.
    pub fn new() -> Self {
        Self::with_secret(rand::random(), Instant::now())
    }

    pub fn with_secret(secret: [u8; 32], epoch: Instant) -> Self {
        Self { secret, epoch }
    }

    /// The cookie for `peer` at `now`.
    pub fn issue(&self, peer: SocketAddr, now: Instant) -> u32 {
        self.mac(peer, self.bucket(now))
    }

    /// Whether `cookie` was issued to `peer` in this or the previous bucket.
    pub fn verify(&self, peer: SocketAddr, cookie: u32, now: Instant) -> bool {
        let bucket = self.bucket(now);
        let valid = [Some(bucket), bucket.checked_sub(1)];
        valid
            .into_iter()
            .flatten()
            .any(|b| self.mac(peer, b) == cookie)
    }

    fn bucket(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / BUCKET.as_secs()
    }

    fn mac(&self, peer: SocketAddr, bucket: u64) -> u32 {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&bucket.to_be_bytes());
        match peer.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&peer.port().to_be_bytes());
        let tag = mac.finalize().into_bytes();
        u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]])
    }
}

impl Default for CookieJar {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_bind_address_time_and_secret() {
        let epoch = Instant::now();
        let jar = CookieJar::with_secret([7; 32], epoch);
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let other_port: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let cookie = jar.issue(peer, epoch);
        assert!(jar.verify(peer, cookie, epoch));
        assert!(!jar.verify(other_port, cookie, epoch));
        // Still valid in the next bucket, not in the one after.
        assert!(jar.verify(peer, cookie, epoch + BUCKET));
        assert!(!jar.verify(peer, cookie, epoch + 2 * BUCKET));
        // Another secret (another process) issues other cookies; cookies are not constant.
        let other = CookieJar::with_secret([8; 32], epoch);
        assert!(!other.verify(peer, cookie, epoch));
        assert_ne!(jar.issue(peer, epoch), jar.issue(peer, epoch + BUCKET));
        assert_ne!(
            CookieJar::new().issue(peer, epoch),
            CookieJar::new().issue(peer, epoch)
        );
    }
}
