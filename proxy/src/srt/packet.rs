//! The 16-byte SRT packet header, common to data and control packets.
//!
//! ```text
//!  word 0: F (0 data, 1 control) | data: sequence number (31) | control: type (15), subtype (16)
//!  word 1: data: position, order, key, retransmitted, message number | control: type-specific
//!  word 2: timestamp (µs since the sender's socket started)
//!  word 3: destination socket id
//! ```
//!
//! Pure: bytes in, values out. The relay only needs the kind of packet and the destination
//! socket id, which it rewrites in place ([`set_destination`]).

/// Size of the header in front of every packet.
pub const HEADER_LEN: usize = 16;

/// Largest datagram libsrt sends: its MSS tops out at 1500 bytes including IP and UDP headers.
/// Anything longer is not SRT.
pub const MAX_DATAGRAM: usize = 1500;

const CONTROL_BIT: u32 = 0x8000_0000;
const DESTINATION_OFFSET: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte SRT header")]
    Short(usize),
    #[error("datagram of {0} bytes is longer than any SRT packet ({MAX_DATAGRAM} bytes)")]
    TooLong(usize),
}

/// Control packet types (the 15 bits after the control flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Handshake,
    Keepalive,
    Ack,
    Nak,
    CongestionWarning,
    Shutdown,
    AckAck,
    DropRequest,
    PeerError,
    UserDefined,
    /// A type this code does not know; relayed as is (a newer peer may send it).
    Other(u16),
}

impl ControlType {
    pub fn from_code(code: u16) -> Self {
        match code {
            0x0000 => Self::Handshake,
            0x0001 => Self::Keepalive,
            0x0002 => Self::Ack,
            0x0003 => Self::Nak,
            0x0004 => Self::CongestionWarning,
            0x0005 => Self::Shutdown,
            0x0006 => Self::AckAck,
            0x0007 => Self::DropRequest,
            0x0008 => Self::PeerError,
            0x7FFF => Self::UserDefined,
            other => Self::Other(other),
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Self::Handshake => 0x0000,
            Self::Keepalive => 0x0001,
            Self::Ack => 0x0002,
            Self::Nak => 0x0003,
            Self::CongestionWarning => 0x0004,
            Self::Shutdown => 0x0005,
            Self::AckAck => 0x0006,
            Self::DropRequest => 0x0007,
            Self::PeerError => 0x0008,
            Self::UserDefined => 0x7FFF,
            Self::Other(code) => code & 0x7FFF,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Data {
        sequence: u32,
    },
    Control {
        control_type: ControlType,
        subtype: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: PacketKind,
    /// Word 1: message number and flags for data, type-specific information for control.
    pub info: u32,
    pub timestamp: u32,
    pub destination: u32,
}

impl Header {
    /// Reads the header of a datagram; the rest of it is the payload (data) or the control
    /// information field.
    pub fn decode(datagram: &[u8]) -> Result<Self, PacketError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(PacketError::TooLong(datagram.len()));
        }
        if datagram.len() < HEADER_LEN {
            return Err(PacketError::Short(datagram.len()));
        }
        let word = |index: usize| read_u32(datagram, index * 4);
        let first = word(0);
        let kind = if first & CONTROL_BIT == 0 {
            PacketKind::Data { sequence: first }
        } else {
            PacketKind::Control {
                control_type: ControlType::from_code(((first >> 16) & 0x7FFF) as u16),
                subtype: (first & 0xFFFF) as u16,
            }
        };
        Ok(Self {
            kind,
            info: word(1),
            timestamp: word(2),
            destination: word(3),
        })
    }

    /// A control packet header.
    pub fn control(control_type: ControlType, info: u32, timestamp: u32, destination: u32) -> Self {
        Self {
            kind: PacketKind::Control {
                control_type,
                subtype: 0,
            },
            info,
            timestamp,
            destination,
        }
    }

    pub fn is_control(&self, wanted: ControlType) -> bool {
        matches!(self.kind, PacketKind::Control { control_type, .. } if control_type == wanted)
    }

    /// Appends the 16 header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let first = match self.kind {
            PacketKind::Data { sequence } => sequence & !CONTROL_BIT,
            PacketKind::Control {
                control_type,
                subtype,
            } => CONTROL_BIT | (u32::from(control_type.code()) << 16) | u32::from(subtype),
        };
        for word in [first, self.info, self.timestamp, self.destination] {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }
}

/// Rewrites the destination socket id of a datagram whose header was already decoded.
/// Returns false (and leaves the datagram alone) when it is too short to have one.
pub fn set_destination(datagram: &mut [u8], socket_id: u32) -> bool {
    match datagram.get_mut(DESTINATION_OFFSET..HEADER_LEN) {
        Some(field) => {
            field.copy_from_slice(&socket_id.to_be_bytes());
            true
        }
        None => false,
    }
}

/// A SHUTDOWN control packet: tells a peer the connection is gone so it stops at once
/// instead of waiting for its idle timeout.
pub fn shutdown_packet(timestamp: u32, destination: u32) -> Vec<u8> {
    // libsrt sends a 4-byte zero control information field with SHUTDOWN.
    let mut out = Vec::with_capacity(HEADER_LEN + 4);
    Header::control(ControlType::Shutdown, 0, timestamp, destination).encode(&mut out);
    out.extend_from_slice(&[0; 4]);
    out
}

/// Big-endian word at `offset`; callers check the length first.
pub(super) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes from a hex dump (captured packets in tests).
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_a_data_packet_from_libsrt() {
        // First data packet of a srt-live-transmit 1.5.1 publisher (payload cut).
        let packet = hex("59026f8fc000000100114c983350de4830303030");
        let header = Header::decode(&packet).unwrap();
        assert_eq!(
            header.kind,
            PacketKind::Data {
                sequence: 0x5902_6f8f
            }
        );
        assert_eq!(header.info, 0xc000_0001);
        assert_eq!(header.timestamp, 0x0011_4c98);
        assert_eq!(header.destination, 0x3350_de48);
    }

    #[test]
    fn decodes_a_handshake_header_from_libsrt() {
        let packet = hex("800000000000000000142bd50f7027bc");
        let header = Header::decode(&packet).unwrap();
        assert!(header.is_control(ControlType::Handshake));
        assert_eq!(header.timestamp, 0x0014_2bd5);
        assert_eq!(header.destination, 0x0f70_27bc);
    }

    #[test]
    fn header_round_trip_and_destination_rewrite() {
        for kind in [
            PacketKind::Data {
                sequence: 0x7fff_ffff,
            },
            PacketKind::Control {
                control_type: ControlType::Shutdown,
                subtype: 0,
            },
            PacketKind::Control {
                control_type: ControlType::UserDefined,
                subtype: 3,
            },
            PacketKind::Control {
                control_type: ControlType::Other(0x1234),
                subtype: 9,
            },
        ] {
            let header = Header {
                kind,
                info: 7,
                timestamp: 8,
                destination: 9,
            };
            let mut bytes = Vec::new();
            header.encode(&mut bytes);
            assert_eq!(Header::decode(&bytes).unwrap(), header);
            assert!(set_destination(&mut bytes, 0xdead_beef));
            assert_eq!(Header::decode(&bytes).unwrap().destination, 0xdead_beef);
        }
        let shutdown = shutdown_packet(5, 6);
        assert!(
            Header::decode(&shutdown)
                .unwrap()
                .is_control(ControlType::Shutdown)
        );
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert_eq!(Header::decode(&[0; 15]), Err(PacketError::Short(15)));
        assert_eq!(Header::decode(&[0; 1501]), Err(PacketError::TooLong(1501)));
        assert!(!set_destination(&mut [0; 10], 1));
    }
}
