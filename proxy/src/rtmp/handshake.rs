//! The RTMP handshake, both the plain form of the spec and the digest ("complex") form Flash
//! Player, ffmpeg, OBS and librtmp send. Pure: the caller moves the bytes.
//!
//! Digest form: C1/S1 are `time(4) version(4)` followed by two 764-byte blocks, a key block
//! and a digest block, in either order (scheme 0: key first; scheme 1: digest first). The
//! digest block starts with four offset bytes; the 32-byte HMAC-SHA256 digest sits at
//! `sum(offset bytes) % 728` after them and covers the whole packet except itself. S2/C2 end
//! with an HMAC of their first 1504 bytes keyed by an HMAC of the peer's digest.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Size of C1/S1/C2/S2.
pub const PACKET_SIZE: usize = 1536;
/// RTMP version byte of C0/S0.
pub const RTMP_VERSION: u8 = 3;

const DIGEST_SIZE: usize = 32;
const BLOCK_SIZE: usize = 764;

/// "Genuine Adobe Flash Player 001" followed by 32 fixed bytes; clients key C1 with the text
/// part, servers key their S2 answer with the whole.
const FLASH_PLAYER_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const FLASH_PLAYER_KEY_TEXT: usize = 30;
/// "Genuine Adobe Flash Media Server 001" followed by the same 32 bytes.
const MEDIA_SERVER_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const MEDIA_SERVER_KEY_TEXT: usize = 36;

/// Version this proxy puts in S1 (as FMS 3.5 does) and C1 (as Flash Player 10 does).
const SERVER_VERSION: [u8; 4] = [0x03, 0x05, 0x01, 0x01];
const CLIENT_VERSION: [u8; 4] = [0x0A, 0x00, 0x2D, 0x02];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("client asked for RTMP version {0}; only 3 (plain RTMP) is served")]
    UnsupportedVersion(u8),
    #[error("handshake packet has {0} bytes, expected {PACKET_SIZE}")]
    WrongSize(usize),
}

/// Where the digest block sits in C1/S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Key block first, digest block second (offset bytes at 772).
    KeyFirst,
    /// Digest block first (offset bytes at 8); what ffmpeg and librtmp send.
    DigestFirst,
}

/// What a C1 (or S1) turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Plain,
    Digest {
        scheme: Scheme,
        digest: [u8; DIGEST_SIZE],
    },
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn digest_offset(packet: &[u8], scheme: Scheme) -> usize {
    let base = match scheme {
        Scheme::DigestFirst => 8,
        Scheme::KeyFirst => 8 + BLOCK_SIZE,
    };
    let sum: usize = packet[base..base + 4].iter().map(|&b| b as usize).sum();
    base + 4 + sum % (BLOCK_SIZE - 4 - DIGEST_SIZE)
}

/// The digest a packet should carry at `offset`, keyed with `key`.
fn packet_digest(packet: &[u8], offset: usize, key: &[u8]) -> [u8; DIGEST_SIZE] {
    hmac_sha256(key, &[&packet[..offset], &packet[offset + DIGEST_SIZE..]])
}

/// Finds which form `packet` (C1 or S1) uses, given the key its sender digests with.
fn detect_form(packet: &[u8], key: &[u8]) -> Form {
    if packet[4..8] == [0, 0, 0, 0] {
        return Form::Plain;
    }
    for scheme in [Scheme::KeyFirst, Scheme::DigestFirst] {
        let offset = digest_offset(packet, scheme);
        let expected = packet_digest(packet, offset, key);
        if packet[offset..offset + DIGEST_SIZE] == expected {
            return Form::Digest {
                scheme,
                digest: expected,
            };
        }
    }
    // A non-zero version with no valid digest: old clients; answer them the plain way.
    Form::Plain
}

/// Identifies the form of a client's C1.
pub fn client_form(c1: &[u8]) -> Result<Form, HandshakeError> {
    if c1.len() != PACKET_SIZE {
        return Err(HandshakeError::WrongSize(c1.len()));
    }
    Ok(detect_form(c1, &FLASH_PLAYER_KEY[..FLASH_PLAYER_KEY_TEXT]))
}

/// Fills a C1/S1 with time, version, random bytes and, for the digest form, the digest.
fn build_first_packet(
    rng: &mut impl RngCore,
    version: [u8; 4],
    scheme: Option<Scheme>,
    key: &[u8],
) -> ([u8; PACKET_SIZE], Option<[u8; DIGEST_SIZE]>) {
    let mut packet = [0u8; PACKET_SIZE];
    rng.fill_bytes(&mut packet[8..]);
    packet[..4].copy_from_slice(&[0, 0, 0, 0]);
    let Some(scheme) = scheme else {
        return (packet, None);
    };
    packet[4..8].copy_from_slice(&version);
    let offset = digest_offset(&packet, scheme);
    let digest = packet_digest(&packet, offset, key);
    packet[offset..offset + DIGEST_SIZE].copy_from_slice(&digest);
    (packet, Some(digest))
}

/// The answer to a peer's first packet: its echo (plain form), or random bytes ending with a
/// digest keyed by the HMAC of the peer's digest (digest form).
fn build_second_packet(
    rng: &mut impl RngCore,
    peer_first: &[u8],
    peer_form: Form,
    key: &[u8],
) -> [u8; PACKET_SIZE] {
    let mut packet = [0u8; PACKET_SIZE];
    match peer_form {
        Form::Plain => packet.copy_from_slice(peer_first),
        Form::Digest { digest, .. } => {
            rng.fill_bytes(&mut packet);
            let answer_key = hmac_sha256(key, &[&digest]);
            let signature = hmac_sha256(&answer_key, &[&packet[..PACKET_SIZE - DIGEST_SIZE]]);
            packet[PACKET_SIZE - DIGEST_SIZE..].copy_from_slice(&signature);
        }
    }
    packet
}

/// Server side: S0+S1+S2 for a client's C0+C1, in the client's form and scheme.
pub fn server_response(
    c0: u8,
    c1: &[u8],
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, HandshakeError> {
    // Version 6+ would mean RTMPE (encrypted); clients that send 3 get plain RTMP.
    if c0 != RTMP_VERSION {
        return Err(HandshakeError::UnsupportedVersion(c0));
    }
    let form = client_form(c1)?;
    let scheme = match form {
        Form::Plain => None,
        Form::Digest { scheme, .. } => Some(scheme),
    };
    let (s1, _) = build_first_packet(
        rng,
        SERVER_VERSION,
        scheme,
        &MEDIA_SERVER_KEY[..MEDIA_SERVER_KEY_TEXT],
    );
    let s2 = build_second_packet(rng, c1, form, &MEDIA_SERVER_KEY);
    let mut out = Vec::with_capacity(1 + 2 * PACKET_SIZE);
    out.push(RTMP_VERSION);
    out.extend_from_slice(&s1);
    out.extend_from_slice(&s2);
    Ok(out)
}

/// Client side, toward an origin: sends the digest form (scheme 1, as ffmpeg does) and
/// answers S1 in whatever form the server replied.
pub struct ClientHandshake {
    c1: [u8; PACKET_SIZE],
}

impl ClientHandshake {
    /// Returns the handshake state and C0+C1 to send.
    pub fn start(rng: &mut impl RngCore) -> (Self, Vec<u8>) {
        let (c1, _) = build_first_packet(
            rng,
            CLIENT_VERSION,
            Some(Scheme::DigestFirst),
            &FLASH_PLAYER_KEY[..FLASH_PLAYER_KEY_TEXT],
        );
        let mut out = Vec::with_capacity(1 + PACKET_SIZE);
        out.push(RTMP_VERSION);
        out.extend_from_slice(&c1);
        (Self { c1 }, out)
    }

    pub fn c1(&self) -> &[u8; PACKET_SIZE] {
        &self.c1
    }

    /// C2 for the server's S0+S1 (S2 is read and not checked: servers in the wild sign it
    /// inconsistently, and nothing secret rides on it).
    pub fn c2(
        &self,
        s0: u8,
        s1: &[u8],
        rng: &mut impl RngCore,
    ) -> Result<[u8; PACKET_SIZE], HandshakeError> {
        if s0 != RTMP_VERSION {
            return Err(HandshakeError::UnsupportedVersion(s0));
        }
        if s1.len() != PACKET_SIZE {
            return Err(HandshakeError::WrongSize(s1.len()));
        }
        let form = detect_form(s1, &MEDIA_SERVER_KEY[..MEDIA_SERVER_KEY_TEXT]);
        Ok(build_second_packet(rng, s1, form, &FLASH_PLAYER_KEY))
    }
}

/// Checks an S2/C2 answering our digest-form first packet (used by tests to prove both sides
/// agree the way real peers compute it).
pub fn verify_second_packet(
    second: &[u8],
    our_digest: &[u8; DIGEST_SIZE],
    peer_is_server: bool,
) -> bool {
    if second.len() != PACKET_SIZE {
        return false;
    }
    let key: &[u8] = if peer_is_server {
        &MEDIA_SERVER_KEY
    } else {
        &FLASH_PLAYER_KEY
    };
    let answer_key = hmac_sha256(key, &[our_digest]);
    let signature = hmac_sha256(&answer_key, &[&second[..PACKET_SIZE - DIGEST_SIZE]]);
    second[PACKET_SIZE - DIGEST_SIZE..] == signature
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    /// A C1 built byte by byte the way ffmpeg's rtmp_handshake_imprint_with_digest does:
    /// version 9.0.124.2, digest-first, HMAC over the packet without the digest keyed with the
    /// 30-byte Flash Player text.
    fn ffmpeg_style_c1() -> ([u8; PACKET_SIZE], [u8; DIGEST_SIZE]) {
        let mut c1 = [0u8; PACKET_SIZE];
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        for (i, b) in c1[8..].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let offset =
            (c1[8] as usize + c1[9] as usize + c1[10] as usize + c1[11] as usize) % 728 + 12;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Genuine Adobe Flash Player 001").unwrap();
        mac.update(&c1[..offset]);
        mac.update(&c1[offset + 32..]);
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        c1[offset..offset + 32].copy_from_slice(&digest);
        (c1, digest)
    }

    #[test]
    fn answers_a_digest_c1_as_flash_media_server_does() {
        let (c1, digest) = ffmpeg_style_c1();
        assert_eq!(
            client_form(&c1).unwrap(),
            Form::Digest {
                scheme: Scheme::DigestFirst,
                digest
            }
        );
        let mut rng = StdRng::seed_from_u64(1);
        let response = server_response(3, &c1, &mut rng).unwrap();
        assert_eq!(response.len(), 1 + 2 * PACKET_SIZE);
        let s1 = &response[1..1 + PACKET_SIZE];
        let s2 = &response[1 + PACKET_SIZE..];
        // S1 carries a valid server digest in the client's scheme (what ffmpeg checks)...
        let s1_form = detect_form(s1, &MEDIA_SERVER_KEY[..MEDIA_SERVER_KEY_TEXT]);
        assert!(matches!(
            s1_form,
            Form::Digest {
                scheme: Scheme::DigestFirst,
                ..
            }
        ));
        // ...and S2 is signed with the key derived from the client's digest (what it checks next).
        assert!(verify_second_packet(s2, &digest, true));
    }

    #[test]
    fn answers_scheme_zero_in_scheme_zero() {
        let mut rng = StdRng::seed_from_u64(2);
        let (c1, digest) = build_first_packet(
            &mut rng,
            CLIENT_VERSION,
            Some(Scheme::KeyFirst),
            &FLASH_PLAYER_KEY[..FLASH_PLAYER_KEY_TEXT],
        );
        assert_eq!(
            client_form(&c1).unwrap(),
            Form::Digest {
                scheme: Scheme::KeyFirst,
                digest: digest.unwrap()
            }
        );
        let response = server_response(3, &c1, &mut rng).unwrap();
        let s1_form = detect_form(
            &response[1..1 + PACKET_SIZE],
            &MEDIA_SERVER_KEY[..MEDIA_SERVER_KEY_TEXT],
        );
        assert!(matches!(
            s1_form,
            Form::Digest {
                scheme: Scheme::KeyFirst,
                ..
            }
        ));
    }

    #[test]
    fn plain_c1_gets_an_echo() {
        let mut c1 = [0u8; PACKET_SIZE];
        c1[0] = 1;
        c1[8..].fill(0x5A);
        assert_eq!(client_form(&c1).unwrap(), Form::Plain);
        let response = server_response(3, &c1, &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(&response[1 + PACKET_SIZE..], &c1[..]);
        assert_eq!(&response[5..9], &[0, 0, 0, 0]);
    }

    #[test]
    fn client_and_server_sides_agree() {
        let mut rng = StdRng::seed_from_u64(4);
        let (client, c0c1) = ClientHandshake::start(&mut rng);
        let c1_digest = match client_form(&c0c1[1..]).unwrap() {
            Form::Digest { digest, .. } => digest,
            Form::Plain => panic!("our C1 must carry a digest"),
        };
        let s = server_response(c0c1[0], &c0c1[1..], &mut rng).unwrap();
        assert!(verify_second_packet(
            &s[1 + PACKET_SIZE..],
            &c1_digest,
            true
        ));
        let c2 = client.c2(s[0], &s[1..1 + PACKET_SIZE], &mut rng).unwrap();
        let s1_digest = match detect_form(
            &s[1..1 + PACKET_SIZE],
            &MEDIA_SERVER_KEY[..MEDIA_SERVER_KEY_TEXT],
        ) {
            Form::Digest { digest, .. } => digest,
            Form::Plain => panic!("S1 must carry a digest"),
        };
        assert!(verify_second_packet(&c2, &s1_digest, false));
    }

    #[test]
    fn rejects_other_versions_and_sizes() {
        let c1 = [0u8; PACKET_SIZE];
        let mut rng = StdRng::seed_from_u64(5);
        assert_eq!(
            server_response(6, &c1, &mut rng),
            Err(HandshakeError::UnsupportedVersion(6))
        );
        assert_eq!(
            server_response(3, &c1[..10], &mut rng),
            Err(HandshakeError::WrongSize(10))
        );
    }
}
