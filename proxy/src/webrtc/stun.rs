//! STUN messages as ICE uses them (RFC 8489, RFC 8445): pure parsing, bytes in, message out.
//!
//! The relay needs little of STUN: the class and method (a binding request starts or moves a
//! session), the transaction id (answers go back to the address that asked), USERNAME (which
//! session) and MESSAGE-INTEGRITY (whether the sender knows the session's ICE password, so a
//! sender who only saw a ufrag cannot take a session over). A full STUN stack is not needed
//! and the crates that have one bring their own I/O, so this small codec is our own.

use std::ops::Range;

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const HEADER_LEN: usize = 20;
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The only method ICE uses.
pub const BINDING: u16 = 0x0001;

/// Attribute types this codec reads or writes.
pub mod attr {
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// RFC 8489 §14.3: USERNAME is at most 513 bytes.
const MAX_USERNAME_LEN: usize = 513;
const INTEGRITY_LEN: usize = 20;
/// RFC 8489 §14.7: the CRC-32 is XOR-ed with this so STUN is told apart from other CRC'd data.
const FINGERPRINT_XOR: u32 = 0x5354_554E;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("{0} bytes is shorter than a STUN header")]
    TooShort(usize),
    #[error("the first byte is not 0..=3: not STUN (RFC 7983)")]
    NotStun,
    #[error("the magic cookie is missing: not RFC 5389 STUN")]
    NoMagicCookie,
    #[error("the header says {declared} bytes of attributes, the datagram holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("attribute {kind:#06x} at byte {at} runs past the end of the message")]
    TruncatedAttribute { kind: u16, at: usize },
    #[error("USERNAME is longer than {MAX_USERNAME_LEN} bytes or not UTF-8")]
    BadUsername,
    #[error("MESSAGE-INTEGRITY is {0} bytes long, not 20")]
    BadIntegrityLength(usize),
    #[error("FINGERPRINT is not 4 bytes long or not the last attribute")]
    BadFingerprint,
}

/// A parsed STUN message borrowing the datagram it came from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    pub class: Class,
    pub method: u16,
    username: Option<Range<usize>>,
    /// Offset of the MESSAGE-INTEGRITY attribute's header.
    integrity: Option<usize>,
    /// Offset of the FINGERPRINT attribute's header.
    fingerprint: Option<usize>,
    use_candidate: bool,
}

impl<'a> Message<'a> {
    /// Parses one datagram as one STUN message; everything must be well formed, trailing
    /// bytes included.
    pub fn parse(raw: &'a [u8]) -> Result<Self, StunError> {
        if raw.len() < HEADER_LEN {
            return Err(StunError::TooShort(raw.len()));
        }
        let kind = u16::from_be_bytes([raw[0], raw[1]]);
        // The first two bits are zero (RFC 8489 §5), and the method is small enough for the
        // first byte to stay in 0..=3, where RFC 7983 demultiplexes STUN; 4..=63 is
        // ZRTP/DTLS. Found by fuzzing: 0x3f01 was STUN here and DTLS for the demux.
        if raw[0] > 3 {
            return Err(StunError::NotStun);
        }
        if u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) != MAGIC_COOKIE {
            return Err(StunError::NoMagicCookie);
        }
        let declared = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        let actual = raw.len() - HEADER_LEN;
        if declared != actual || declared % 4 != 0 {
            return Err(StunError::LengthMismatch { declared, actual });
        }
        let class = match ((kind >> 7) & 0b10) | ((kind >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        let method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2);
        let mut message = Message {
            raw,
            class,
            method,
            username: None,
            integrity: None,
            fingerprint: None,
            use_candidate: false,
        };
        let mut at = HEADER_LEN;
        while at < raw.len() {
            if message.fingerprint.is_some() {
                // Nothing may follow FINGERPRINT.
                return Err(StunError::BadFingerprint);
            }
            let kind = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let value = at + 4..at + 4 + len;
            let next = at + 4 + len.div_ceil(4) * 4;
            if next > raw.len() {
                return Err(StunError::TruncatedAttribute { kind, at });
            }
            // RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY, except FINGERPRINT, are
            // ignored.
            let covered = message.integrity.is_none();
            match kind {
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(StunError::BadFingerprint);
                    }
                    message.fingerprint = Some(at);
                }
                attr::USERNAME if covered && message.username.is_none() => {
                    if len > MAX_USERNAME_LEN || std::str::from_utf8(&raw[value.clone()]).is_err() {
                        return Err(StunError::BadUsername);
                    }
                    message.username = Some(value);
                }
                attr::MESSAGE_INTEGRITY if covered => {
                    if len != INTEGRITY_LEN {
                        return Err(StunError::BadIntegrityLength(len));
                    }
                    message.integrity = Some(at);
                }
                attr::USE_CANDIDATE if covered => message.use_candidate = true,
                _ => {}
            }
            at = next;
        }
        Ok(message)
    }

    pub fn is_binding_request(&self) -> bool {
        self.class == Class::Request && self.method == BINDING
    }

    pub fn is_response(&self) -> bool {
        matches!(self.class, Class::Success | Class::Error)
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.raw[8..HEADER_LEN]);
        id
    }

    pub fn username(&self) -> Option<&'a str> {
        let range = self.username.clone()?;
        // Checked to be UTF-8 while parsing.
        std::str::from_utf8(&self.raw[range]).ok()
    }

    /// ICE's `receiver-ufrag:sender-ufrag` (RFC 8445 §7.2.2): the receiver's ufrag first.
    pub fn ice_ufrags(&self) -> Option<(&'a str, &'a str)> {
        self.username()?.split_once(':')
    }

    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether MESSAGE-INTEGRITY is present and was computed with `key` (for ICE: the
    /// receiving agent's password). Compared in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity else {
            return false;
        };
        let mut mac = hmac_sha1(key);
        // The length field as if MESSAGE-INTEGRITY were the last attribute.
        mac.update(&self.raw[..2]);
        mac.update(&((at + 4 + INTEGRITY_LEN - HEADER_LEN) as u16).to_be_bytes());
        mac.update(&self.raw[4..at]);
        mac.verify_slice(&self.raw[at + 4..at + 4 + INTEGRITY_LEN])
            .is_ok()
    }

    /// `None` without FINGERPRINT, else whether it matches.
    pub fn verify_fingerprint(&self) -> Option<bool> {
        let at = self.fingerprint?;
        let stored = u32::from_be_bytes(self.raw[at + 4..at + 8].try_into().ok()?);
        Some(stored == fingerprint(self.raw, at))
    }
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    // HMAC takes keys of any length.
    <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// CRC-32 of the message before the FINGERPRINT attribute at `at`, with the length field
/// counting the FINGERPRINT attribute.
fn fingerprint(raw: &[u8], at: usize) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&raw[..2]);
    crc.update(&((at + 8 - HEADER_LEN) as u16).to_be_bytes());
    crc.update(&raw[4..at]);
    crc.finalize() ^ FINGERPRINT_XOR
}

/// A binding request as an ICE agent sends it: USERNAME, PRIORITY, ICE-CONTROLLING,
/// optionally USE-CANDIDATE, MESSAGE-INTEGRITY with `password`, FINGERPRINT. For tests and
/// benchmarks that play the client; the proxy itself never originates STUN.
pub fn binding_request(
    transaction_id: [u8; 12],
    username: &str,
    password: &str,
    use_candidate: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&BINDING.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&transaction_id);
    let put = |out: &mut Vec<u8>, kind: u16, value: &[u8]| {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    };
    put(&mut out, attr::USERNAME, username.as_bytes());
    put(&mut out, attr::PRIORITY, &0x6E00_01FFu32.to_be_bytes());
    put(&mut out, attr::ICE_CONTROLLING, &[0x5A; 8]);
    if use_candidate {
        put(&mut out, attr::USE_CANDIDATE, &[]);
    }
    let set_len = |out: &mut Vec<u8>, len: usize| {
        out[2..4].copy_from_slice(&((len - HEADER_LEN) as u16).to_be_bytes());
    };
    let integrity_at = out.len();
    set_len(&mut out, integrity_at + 4 + INTEGRITY_LEN);
    let mut mac = hmac_sha1(password.as_bytes());
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    put(&mut out, attr::MESSAGE_INTEGRITY, &tag);
    let fingerprint_at = out.len();
    set_len(&mut out, fingerprint_at + 8);
    let crc = fingerprint(&out, fingerprint_at);
    put(&mut out, attr::FINGERPRINT, &crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1: sample request, password "VOkJxbRl1RmTxUk/WvJxBt".
    const RFC5769_REQUEST: &[u8] = &[
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn rfc5769_sample_request() {
        let message = Message::parse(RFC5769_REQUEST).unwrap();
        assert!(message.is_binding_request());
        assert_eq!(message.username(), Some("evtj:h6vY"));
        assert_eq!(message.ice_ufrags(), Some(("evtj", "h6vY")));
        assert!(message.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!message.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        assert_eq!(message.verify_fingerprint(), Some(true));
        assert_eq!(
            message.transaction_id(),
            [
                0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae
            ]
        );
    }

    #[test]
    fn built_requests_verify() {
        let request = binding_request([7; 12], "origin:client", "secret-password", true);
        let message = Message::parse(&request).unwrap();
        assert!(message.is_binding_request());
        assert!(message.use_candidate());
        assert_eq!(message.ice_ufrags(), Some(("origin", "client")));
        assert!(message.verify_integrity(b"secret-password"));
        assert!(!message.verify_integrity(b"other"));
        assert_eq!(message.verify_fingerprint(), Some(true));
    }

    #[test]
    fn tampering_breaks_integrity_and_fingerprint() {
        let mut request = binding_request([1; 12], "a:b", "pw", false);
        request[HEADER_LEN + 4] ^= 1; // inside USERNAME
        let message = Message::parse(&request).unwrap();
        assert!(!message.verify_integrity(b"pw"));
        assert_eq!(message.verify_fingerprint(), Some(false));
    }

    #[test]
    fn classes_and_methods() {
        let mut success = RFC5769_REQUEST.to_vec();
        success[0] = 0x01; // 0x0101: binding success response
        let message = Message::parse(&success).unwrap();
        assert_eq!((message.class, message.method), (Class::Success, BINDING));
        assert!(message.is_response());
        success[1] = 0x11; // 0x0111: binding error response
        assert_eq!(Message::parse(&success).unwrap().class, Class::Error);
        success[0] = 0x00; // 0x0011: binding indication
        assert_eq!(Message::parse(&success).unwrap().class, Class::Indication);
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(Message::parse(&[0; 4]).unwrap_err(), StunError::TooShort(4));
        for first in [0x04, 0x3f, 0x80] {
            let mut bad = RFC5769_REQUEST.to_vec();
            bad[0] = first;
            assert_eq!(Message::parse(&bad).unwrap_err(), StunError::NotStun);
        }
        let mut bad = RFC5769_REQUEST.to_vec();
        bad[4] = 0;
        assert_eq!(Message::parse(&bad).unwrap_err(), StunError::NoMagicCookie);
        let truncated = &RFC5769_REQUEST[..RFC5769_REQUEST.len() - 4];
        assert!(matches!(
            Message::parse(truncated).unwrap_err(),
            StunError::LengthMismatch { .. }
        ));
        // An attribute claiming more bytes than there are.
        let mut bad = RFC5769_REQUEST.to_vec();
        bad[HEADER_LEN + 3] = 0xff;
        assert!(matches!(
            Message::parse(&bad).unwrap_err(),
            StunError::TruncatedAttribute { .. }
        ));
        // Something after FINGERPRINT.
        let mut bad = RFC5769_REQUEST.to_vec();
        bad.extend_from_slice(&[0x80, 0x22, 0, 0]);
        let len = (bad.len() - HEADER_LEN) as u16;
        bad[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(Message::parse(&bad).unwrap_err(), StunError::BadFingerprint);
        // No integrity: never verifies.
        let mut header = RFC5769_REQUEST[..HEADER_LEN].to_vec();
        header[2..4].copy_from_slice(&[0, 0]);
        let message = Message::parse(&header).unwrap();
        assert!(!message.verify_integrity(b""));
        assert_eq!(message.verify_fingerprint(), None);
        assert_eq!(message.username(), None);
    }
}
