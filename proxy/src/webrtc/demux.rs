//! Which protocol a datagram on the WebRTC port carries, by its first byte (RFC 7983 §7).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0..=3: STUN (ICE connectivity checks and consent).
    Stun,
    /// 20..=63: DTLS (handshake, then SCTP for data channels).
    Dtls,
    /// 128..=191: SRTP and SRTCP.
    Rtp,
    /// Anything else (ZRTP, TURN channels, QUIC, garbage): never relayed.
    Other,
}

pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_rfc7983() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0]), Kind::Stun);
        assert_eq!(classify(&[3]), Kind::Stun);
        assert_eq!(classify(&[4]), Kind::Other);
        assert_eq!(classify(&[16]), Kind::Other); // ZRTP
        assert_eq!(classify(&[20]), Kind::Dtls);
        assert_eq!(classify(&[22]), Kind::Dtls); // handshake record
        assert_eq!(classify(&[63]), Kind::Dtls);
        assert_eq!(classify(&[64]), Kind::Other); // TURN channel
        assert_eq!(classify(&[127]), Kind::Other);
        assert_eq!(classify(&[128]), Kind::Rtp);
        assert_eq!(classify(&[0x80 | 0x40]), Kind::Other); // RTP version 3
        assert_eq!(classify(&[191]), Kind::Rtp);
        assert_eq!(classify(&[255]), Kind::Other);
    }
}
