//! The SRT handshake control packet (type 0x0000): the 48-byte handshake information
//! followed, in HSv5, by extension blocks (HSREQ/HSRSP, KMREQ, stream id, congestion, filter,
//! group).
//!
//! ```text
//!  version | encryption (16) extension flags (16) | initial sequence number | MTU
//!  flow window | handshake type | SRT socket id | SYN cookie | peer IP (4 words)
//!  then per extension: type (16) length in words (16) | contents
//! ```
//!
//! libsrt byte-swaps every 32-bit word of the control information field to network order,
//! including the ones that hold bytes rather than numbers. So the stream id ("live/cam") travels
//! with each 4-byte group reversed ("evil" "mac/") and the IPv4 address 127.0.0.1 as
//! 01 00 00 7f; [`Extension::stream_id`] and [`peer_ip_words`] reproduce that.
//!
//! Pure: bytes in, values out. Every length is checked before it is used.

use std::net::IpAddr;

use super::packet::{ControlType, HEADER_LEN, Header, PacketError, read_u32};

/// Length of the fixed handshake information.
pub const HANDSHAKE_LEN: usize = 48;
/// Extension-field value of an HSv5 listener's induction answer ("HAIVISIOn").
pub const SRT_MAGIC: u16 = 0x4A17;
/// Handshake version of a caller's induction (UDT-compatible) and of HSv4 peers.
pub const VERSION_4: u32 = 4;
/// The handshake version that carries extensions (and so the stream id).
pub const VERSION_5: u32 = 5;
/// Socket type a v4 induction carries in the extension field (UDT_DGRAM).
pub const UDT_DGRAM: u16 = 2;

/// Extension flags of an HSv5 conclusion: which groups of extension blocks follow.
pub const EXT_FLAG_HSREQ: u16 = 0x1;
pub const EXT_FLAG_KMREQ: u16 = 0x2;
pub const EXT_FLAG_CONFIG: u16 = 0x4;

/// Longest stream id libsrt accepts (SRTO_STREAMID).
pub const MAX_STREAM_ID: usize = 512;
/// A real conclusion carries at most one block of each of the 8 kinds.
const MAX_EXTENSIONS: usize = 16;

/// Extension block types (SRT_CMD_*).
pub mod ext {
    pub const HSREQ: u16 = 1;
    pub const HSRSP: u16 = 2;
    pub const KMREQ: u16 = 3;
    pub const KMRSP: u16 = 4;
    pub const SID: u16 = 5;
    pub const CONGESTION: u16 = 6;
    pub const FILTER: u16 = 7;
    pub const GROUP: u16 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("not a handshake control packet")]
    NotHandshake,
    #[error("handshake information is {0} bytes, at least {HANDSHAKE_LEN} are needed")]
    Short(usize),
    #[error("unknown handshake type {0:#x}")]
    UnknownType(u32),
    #[error("{0} bytes after the handshake information are not whole 32-bit words")]
    TrailingBytes(usize),
    #[error("extension block {kind} declares {words} words but only {available} bytes follow")]
    ExtensionOverrun {
        kind: u16,
        words: usize,
        available: usize,
    },
    #[error("more than {MAX_EXTENSIONS} extension blocks")]
    TooManyExtensions,
    #[error("stream id of {0} bytes is longer than the {MAX_STREAM_ID} SRT allows")]
    StreamIdTooLong(usize),
    #[error("stream id is not UTF-8")]
    StreamIdNotUtf8,
    #[error("{kind} extension block has {words} words, 3 are needed")]
    ShortSrtBlock { kind: &'static str, words: usize },
}

/// Why a connection is refused: SRT_REJ_* (below 1000) or an access-control code
/// SRT_REJX_* (1000 and above). On the wire the handshake type is 1000 + reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectReason(pub u32);

impl RejectReason {
    pub const UNKNOWN: Self = Self(0);
    pub const RESOURCE: Self = Self(3);
    pub const ROGUE: Self = Self(4);
    pub const VERSION: Self = Self(8);
    /// Encryption asked for (or required) by one side only.
    pub const UNSECURE: Self = Self(11);
    pub const GROUP: Self = Self(15);
    pub const TIMEOUT: Self = Self(16);
    pub const BAD_REQUEST: Self = Self(1400);
    pub const OVERLOAD: Self = Self(1402);
    pub const FORBIDDEN: Self = Self(1403);
    pub const NOT_FOUND: Self = Self(1404);
    pub const BAD_MODE: Self = Self(1405);
    pub const INTERNAL_ERROR: Self = Self(1500);
    /// The proxy could not get the origin to accept the connection.
    pub const GATEWAY: Self = Self(1502);
    /// The service is unavailable for now (no origin, or the proxy is shutting down).
    pub const DOWN: Self = Self(1503);

    /// The handshake type that carries this reason.
    pub fn wire_type(self) -> u32 {
        REJECTION_BASE.saturating_add(self.0)
    }

    /// SRT's name of the reason, for logs.
    pub fn name(self) -> &'static str {
        const CORE: [&str; 18] = [
            "UNKNOWN",
            "SYSTEM",
            "PEER",
            "RESOURCE",
            "ROGUE",
            "BACKLOG",
            "IPE",
            "CLOSE",
            "VERSION",
            "RDVCOOKIE",
            "BADSECRET",
            "UNSECURE",
            "MESSAGEAPI",
            "CONGESTION",
            "FILTER",
            "GROUP",
            "TIMEOUT",
            "CRYPTO",
        ];
        match self.0 {
            code @ 0..=17 => CORE[code as usize],
            1400 => "BAD_REQUEST",
            1401 => "UNAUTHORIZED",
            1402 => "OVERLOAD",
            1403 => "FORBIDDEN",
            1404 => "NOTFOUND",
            1405 => "BAD_MODE",
            1406 => "UNACCEPTABLE",
            1409 => "CONFLICT",
            1500 => "ISE",
            1501 => "UNIMPLEMENTED",
            1502 => "GW",
            1503 => "DOWN",
            1505 => "VERSION",
            1000..=1999 => "PREDEFINED",
            _ => "USERDEFINED",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

const REJECTION_BASE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeType {
    /// Rendezvous opening (not supported by the proxy, decoded for completeness).
    Waveahand,
    Induction,
    Conclusion,
    Agreement,
    Done,
    Rejection(RejectReason),
}

impl HandshakeType {
    fn from_wire(value: u32) -> Result<Self, HandshakeError> {
        Ok(match value {
            0 => Self::Waveahand,
            1 => Self::Induction,
            0xFFFF_FFFF => Self::Conclusion,
            0xFFFF_FFFE => Self::Agreement,
            0xFFFF_FFFD => Self::Done,
            // Rejections are 1000 + a non-negative reason, as a signed 32-bit value.
            REJECTION_BASE..=0x7FFF_FFFF => Self::Rejection(RejectReason(value - REJECTION_BASE)),
            other => return Err(HandshakeError::UnknownType(other)),
        })
    }

    fn to_wire(self) -> u32 {
        match self {
            Self::Waveahand => 0,
            Self::Induction => 1,
            Self::Conclusion => 0xFFFF_FFFF,
            Self::Agreement => 0xFFFF_FFFE,
            Self::Done => 0xFFFF_FFFD,
            Self::Rejection(reason) => reason.wire_type(),
        }
    }
}

/// One extension block; `contents` are the words as read in network order, so a block is
/// re-encoded byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub kind: u16,
    pub contents: Vec<u32>,
}

impl Extension {
    /// A stream id block, in libsrt's per-word reversed byte order, zero-padded to a word.
    pub fn stream_id(text: &str) -> Result<Self, HandshakeError> {
        if text.len() > MAX_STREAM_ID {
            return Err(HandshakeError::StreamIdTooLong(text.len()));
        }
        let contents = text
            .as_bytes()
            .chunks(4)
            .map(|chunk| {
                let mut word = [0; 4];
                word[..chunk.len()].copy_from_slice(chunk);
                u32::from_le_bytes(word)
            })
            .collect();
        Ok(Self {
            kind: ext::SID,
            contents,
        })
    }

    fn decode_stream_id(&self) -> Result<String, HandshakeError> {
        let mut bytes: Vec<u8> = self
            .contents
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        if bytes.len() > MAX_STREAM_ID {
            return Err(HandshakeError::StreamIdTooLong(bytes.len()));
        }
        String::from_utf8(bytes).map_err(|_| HandshakeError::StreamIdNotUtf8)
    }
}

/// Contents of an HSREQ or HSRSP block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtOptions {
    /// libsrt version as 0x00MMmmpp.
    pub srt_version: u32,
    pub flags: u32,
    /// TSBPD latency the sender of the block applies when receiving, milliseconds.
    pub receiver_delay_ms: u16,
    /// TSBPD latency it asks the peer to apply, milliseconds.
    pub sender_delay_ms: u16,
}

impl SrtOptions {
    fn decode(block: &Extension, kind: &'static str) -> Result<Self, HandshakeError> {
        let [version, flags, delays, ..] = block.contents[..] else {
            return Err(HandshakeError::ShortSrtBlock {
                kind,
                words: block.contents.len(),
            });
        };
        Ok(Self {
            srt_version: version,
            flags,
            receiver_delay_ms: (delays >> 16) as u16,
            sender_delay_ms: delays as u16,
        })
    }

    /// "1.5.1" from 0x00010501.
    pub fn version_string(&self) -> String {
        let v = self.srt_version;
        format!("{}.{}.{}", (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub version: u32,
    /// Cipher key length code (0: no encryption, 2/3/4: AES-128/192/256).
    pub encryption: u16,
    /// HSv5: which extension groups follow (EXT_FLAG_*); v4 induction: the socket type;
    /// HSv5 induction answer: [`SRT_MAGIC`].
    pub extension_field: u16,
    pub initial_sequence: u32,
    pub mtu: u32,
    pub flow_window: u32,
    pub kind: HandshakeType,
    /// The SRT socket id of the sender of this handshake.
    pub socket_id: u32,
    pub cookie: u32,
    /// Address the sender sees its peer at, in wire words ([`peer_ip_words`]).
    pub peer_ip: [u32; 4],
    pub extensions: Vec<Extension>,
}

impl Handshake {
    /// Decodes the control information field of a handshake packet.
    pub fn decode(cif: &[u8]) -> Result<Self, HandshakeError> {
        if cif.len() < HANDSHAKE_LEN {
            return Err(HandshakeError::Short(cif.len()));
        }
        let word = |index: usize| read_u32(cif, index * 4);
        let type_field = word(1);
        let handshake = Self {
            version: word(0),
            encryption: (type_field >> 16) as u16,
            extension_field: type_field as u16,
            initial_sequence: word(2),
            mtu: word(3),
            flow_window: word(4),
            kind: HandshakeType::from_wire(word(5))?,
            socket_id: word(6),
            cookie: word(7),
            peer_ip: [word(8), word(9), word(10), word(11)],
            extensions: decode_extensions(&cif[HANDSHAKE_LEN..])?,
        };
        Ok(handshake)
    }

    /// Decodes a whole datagram that must be a handshake control packet.
    pub fn decode_packet(datagram: &[u8]) -> Result<(Header, Self), HandshakeError> {
        let header = Header::decode(datagram)?;
        if !header.is_control(ControlType::Handshake) {
            return Err(HandshakeError::NotHandshake);
        }
        Ok((header, Self::decode(&datagram[HEADER_LEN..])?))
    }

    /// Appends the control information field to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let type_field = (u32::from(self.encryption) << 16) | u32::from(self.extension_field);
        let fixed = [
            self.version,
            type_field,
            self.initial_sequence,
            self.mtu,
            self.flow_window,
            self.kind.to_wire(),
            self.socket_id,
            self.cookie,
        ];
        for word in fixed.iter().chain(&self.peer_ip) {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for block in &self.extensions {
            // Blocks come from decoding (length already bounded) or from our own small ones.
            let words = u16::try_from(block.contents.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&block.kind.to_be_bytes());
            out.extend_from_slice(&words.to_be_bytes());
            for word in block.contents.iter().take(usize::from(words)) {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
    }

    /// A whole handshake datagram with this information.
    pub fn encode_packet(&self, timestamp: u32, destination: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + HANDSHAKE_LEN + 64);
        Header::control(ControlType::Handshake, 0, timestamp, destination).encode(&mut out);
        self.encode(&mut out);
        out
    }

    pub fn extension(&self, kind: u16) -> Option<&Extension> {
        self.extensions.iter().find(|block| block.kind == kind)
    }

    /// The stream id the caller sent, if any.
    pub fn stream_id(&self) -> Result<Option<String>, HandshakeError> {
        self.extension(ext::SID)
            .map(Extension::decode_stream_id)
            .transpose()
    }

    /// The HSREQ block of a caller's conclusion.
    pub fn srt_request(&self) -> Result<Option<SrtOptions>, HandshakeError> {
        self.extension(ext::HSREQ)
            .map(|block| SrtOptions::decode(block, "HSREQ"))
            .transpose()
    }

    /// The HSRSP block of a listener's conclusion answer.
    pub fn srt_response(&self) -> Result<Option<SrtOptions>, HandshakeError> {
        self.extension(ext::HSRSP)
            .map(|block| SrtOptions::decode(block, "HSRSP"))
            .transpose()
    }

    /// The sender wants an encrypted connection (a cipher is announced or keys are sent).
    pub fn wants_encryption(&self) -> bool {
        self.encryption != 0
            || self.extension_field & EXT_FLAG_KMREQ != 0
            || self.extension(ext::KMREQ).is_some()
    }

    /// A rejection answering this handshake: same numbers, the reason in the type field, no
    /// extensions (what libsrt's caller expects).
    pub fn rejection(&self, reason: RejectReason, socket_id: u32) -> Self {
        Self {
            version: VERSION_5,
            encryption: 0,
            extension_field: 0,
            kind: HandshakeType::Rejection(reason),
            socket_id,
            extensions: Vec::new(),
            ..self.clone()
        }
    }
}

fn decode_extensions(mut rest: &[u8]) -> Result<Vec<Extension>, HandshakeError> {
    if !rest.len().is_multiple_of(4) {
        return Err(HandshakeError::TrailingBytes(rest.len()));
    }
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        if blocks.len() == MAX_EXTENSIONS {
            return Err(HandshakeError::TooManyExtensions);
        }
        let head = read_u32(rest, 0);
        let kind = (head >> 16) as u16;
        let words = (head & 0xFFFF) as usize;
        let body = &rest[4..];
        if body.len() < words * 4 {
            return Err(HandshakeError::ExtensionOverrun {
                kind,
                words,
                available: body.len(),
            });
        }
        let contents = (0..words).map(|index| read_u32(body, index * 4)).collect();
        blocks.push(Extension { kind, contents });
        rest = &body[words * 4..];
    }
    Ok(blocks)
}

/// The peer-address field for `ip` as libsrt writes it: the address bytes in groups of four,
/// each group byte-reversed (IPv4 uses the first group only).
pub fn peer_ip_words(ip: IpAddr) -> [u32; 4] {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srt::packet::tests::hex;

    // Captured between srt-live-transmit 1.5.1 caller (streamid #!::r=live/cam,m=publish)
    // and a srt-live-transmit 1.5.1 listener.
    const CALLER_INDUCTION: &str = "80000000000000000007bc3500000000000000040000000259026f8f000005dc00002000\
        000000010f7027bc000000000100007f000000000000000000000000";
    const LISTENER_INDUCTION: &str = "800000000000000000142bd50f7027bc0000000500004a1759026f8f000005dc00002000\
        000000010f7027bc4163a8a00100007f000000000000000000000000";
    const CALLER_CONCLUSION: &str = "80000000000000000007bdfd00000000000000050000000559026f8f000005dc00002000\
        ffffffff0f7027bc4163a8a00100007f0000000000000000000000000001000300010501000000bf00780000\
        000500063a3a2123696c3d72632f65766d2c6d616275703d6873696c";
    const LISTENER_CONCLUSION: &str = "8000000000000000000003100f7027bc000000050000000159026f8f000005dc00002000\
        ffffffff3350de484163a8a00100007f0000000000000000000000000002000300010501000000bf00780078";

    #[test]
    fn decodes_a_v4_induction() {
        let (header, hs) = Handshake::decode_packet(&hex(CALLER_INDUCTION)).unwrap();
        assert_eq!(header.destination, 0);
        assert_eq!(hs.version, VERSION_4);
        assert_eq!(hs.extension_field, UDT_DGRAM);
        assert_eq!(hs.kind, HandshakeType::Induction);
        assert_eq!(hs.socket_id, 0x0f70_27bc);
        assert_eq!(hs.cookie, 0);
        assert_eq!(hs.mtu, 1500);
        assert_eq!(hs.flow_window, 8192);
        assert_eq!(hs.peer_ip, peer_ip_words("127.0.0.1".parse().unwrap()));
        assert!(hs.extensions.is_empty());
    }

    #[test]
    fn decodes_the_listener_induction_answer() {
        let (_, hs) = Handshake::decode_packet(&hex(LISTENER_INDUCTION)).unwrap();
        assert_eq!(hs.version, VERSION_5);
        assert_eq!(hs.extension_field, SRT_MAGIC);
        assert_eq!(hs.cookie, 0x4163_a8a0);
    }

    #[test]
    fn decodes_a_v5_conclusion_with_stream_id() {
        let (_, hs) = Handshake::decode_packet(&hex(CALLER_CONCLUSION)).unwrap();
        assert_eq!(hs.kind, HandshakeType::Conclusion);
        assert_eq!(hs.extension_field, EXT_FLAG_HSREQ | EXT_FLAG_CONFIG);
        assert_eq!(
            hs.stream_id().unwrap().as_deref(),
            Some("#!::r=live/cam,m=publish")
        );
        let options = hs.srt_request().unwrap().unwrap();
        assert_eq!(options.version_string(), "1.5.1");
        assert_eq!(options.receiver_delay_ms, 120);
        assert!(!hs.wants_encryption());
    }

    #[test]
    fn decodes_the_listener_conclusion_answer() {
        let (header, hs) = Handshake::decode_packet(&hex(LISTENER_CONCLUSION)).unwrap();
        assert_eq!(header.destination, 0x0f70_27bc);
        assert_eq!(hs.socket_id, 0x3350_de48);
        let options = hs.srt_response().unwrap().unwrap();
        assert_eq!(
            (options.receiver_delay_ms, options.sender_delay_ms),
            (120, 120)
        );
    }

    #[test]
    fn round_trips_byte_for_byte() {
        for packet in [
            CALLER_INDUCTION,
            LISTENER_INDUCTION,
            CALLER_CONCLUSION,
            LISTENER_CONCLUSION,
        ] {
            let bytes = hex(packet);
            let (header, hs) = Handshake::decode_packet(&bytes).unwrap();
            assert_eq!(
                hs.encode_packet(header.timestamp, header.destination),
                bytes
            );
        }
    }

    #[test]
    fn stream_id_encoding_matches_libsrt() {
        let (_, hs) = Handshake::decode_packet(&hex(CALLER_CONCLUSION)).unwrap();
        let block = Extension::stream_id("#!::r=live/cam,m=publish").unwrap();
        assert_eq!(hs.extension(ext::SID), Some(&block));
        // Lengths that are not a multiple of 4 are zero padded and read back unpadded.
        for text in ["a", "ab/c", "live/cam1", &"x".repeat(MAX_STREAM_ID)] {
            let hs = Handshake {
                extensions: vec![Extension::stream_id(text).unwrap()],
                ..hs.clone()
            };
            let mut bytes = Vec::new();
            hs.encode(&mut bytes);
            assert_eq!(
                Handshake::decode(&bytes)
                    .unwrap()
                    .stream_id()
                    .unwrap()
                    .as_deref(),
                Some(text)
            );
        }
        assert_eq!(
            Extension::stream_id(&"x".repeat(MAX_STREAM_ID + 1)),
            Err(HandshakeError::StreamIdTooLong(MAX_STREAM_ID + 1))
        );
    }

    #[test]
    fn rejections_use_1000_plus_reason() {
        let (_, hs) = Handshake::decode_packet(&hex(CALLER_CONCLUSION)).unwrap();
        let rejection = hs.rejection(RejectReason::NOT_FOUND, 0);
        let bytes = rejection.encode_packet(1, hs.socket_id);
        assert_eq!(read_u32(&bytes, HEADER_LEN + 20), 2404);
        let (_, back) = Handshake::decode_packet(&bytes).unwrap();
        assert_eq!(back.kind, HandshakeType::Rejection(RejectReason::NOT_FOUND));
        assert!(back.extensions.is_empty());
        assert_eq!(RejectReason::UNSECURE.to_string(), "UNSECURE (11)");
    }

    #[test]
    fn encryption_requests_are_seen() {
        let (_, mut hs) = Handshake::decode_packet(&hex(CALLER_CONCLUSION)).unwrap();
        hs.encryption = 2;
        assert!(hs.wants_encryption());
        hs.encryption = 0;
        hs.extensions.push(Extension {
            kind: ext::KMREQ,
            contents: vec![0; 4],
        });
        assert!(hs.wants_encryption());
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let conclusion = hex(CALLER_CONCLUSION);
        let cif = &conclusion[HEADER_LEN..];
        assert_eq!(
            Handshake::decode(&cif[..47]),
            Err(HandshakeError::Short(47))
        );
        assert_eq!(
            Handshake::decode(&cif[..cif.len() - 1]),
            Err(HandshakeError::TrailingBytes(43))
        );
        assert!(matches!(
            Handshake::decode(&cif[..cif.len() - 4]),
            Err(HandshakeError::ExtensionOverrun {
                kind: ext::SID,
                words: 6,
                available: 20
            })
        ));
        let mut unknown = cif.to_vec();
        unknown[20..24].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            Handshake::decode(&unknown),
            Err(HandshakeError::UnknownType(7))
        );
        let mut many = cif[..HANDSHAKE_LEN].to_vec();
        many.extend(std::iter::repeat_n([0u8, 9, 0, 0], MAX_EXTENSIONS + 1).flatten());
        assert_eq!(
            Handshake::decode(&many),
            Err(HandshakeError::TooManyExtensions)
        );
        let mut short_hsreq = cif[..HANDSHAKE_LEN].to_vec();
        short_hsreq.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(
            Handshake::decode(&short_hsreq).unwrap().srt_request(),
            Err(HandshakeError::ShortSrtBlock { words: 1, .. })
        ));
        let data = hex("59026f8fc000000100114c983350de48");
        assert_eq!(
            Handshake::decode_packet(&data),
            Err(HandshakeError::NotHandshake)
        );
        let mut bad_utf8 = cif[..HANDSHAKE_LEN].to_vec();
        bad_utf8.extend_from_slice(&[0, 5, 0, 1, 0xff, 0xfe, 0xfd, 0xfc]);
        assert_eq!(
            Handshake::decode(&bad_utf8).unwrap().stream_id(),
            Err(HandshakeError::StreamIdNotUtf8)
        );
    }
}
