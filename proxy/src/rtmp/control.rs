//! Protocol control and user control messages: the per-connection housekeeping each hop of
//! the relay answers itself (chunk size, acknowledgements, pings). Pure.

use bytes::{BufMut, Bytes, BytesMut};

use super::chunk::Message;

/// Message type ids.
pub mod kind {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream protocol control messages travel on.
pub const CONTROL_CSID: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    SetChunkSize(u32),
    Abort { csid: u32 },
    Acknowledgement { sequence: u32 },
    WindowAckSize(u32),
    SetPeerBandwidth { size: u32, limit_type: u8 },
    User(UserControl),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// Events this proxy does not act on (they are relayed as they are).
    Other(u16),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("control message of type {type_id} has {len} bytes, too short")]
pub struct ControlError {
    pub type_id: u8,
    pub len: usize,
}

fn be32(payload: &[u8], at: usize) -> Option<u32> {
    payload
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a protocol or user control message; `Ok(None)` for every other message type.
pub fn parse(message: &Message) -> Result<Option<Control>, ControlError> {
    let p = &message.payload[..];
    let short = || ControlError {
        type_id: message.type_id,
        len: p.len(),
    };
    Ok(Some(match message.type_id {
        // The top bit of a chunk size must be zero; masking it matches what ffmpeg does.
        kind::SET_CHUNK_SIZE => Control::SetChunkSize(be32(p, 0).ok_or_else(short)? & 0x7FFF_FFFF),
        kind::ABORT => Control::Abort {
            csid: be32(p, 0).ok_or_else(short)?,
        },
        kind::ACKNOWLEDGEMENT => Control::Acknowledgement {
            sequence: be32(p, 0).ok_or_else(short)?,
        },
        kind::WINDOW_ACK_SIZE => Control::WindowAckSize(be32(p, 0).ok_or_else(short)?),
        kind::SET_PEER_BANDWIDTH => Control::SetPeerBandwidth {
            size: be32(p, 0).ok_or_else(short)?,
            // Some encoders omit the limit type; treat that as dynamic (2).
            limit_type: p.get(4).copied().unwrap_or(2),
        },
        kind::USER_CONTROL => {
            let event = p
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(short)?;
            let arg = || be32(p, 2).ok_or_else(short);
            Control::User(match event {
                0 => UserControl::StreamBegin(arg()?),
                1 => UserControl::StreamEof(arg()?),
                2 => UserControl::StreamDry(arg()?),
                3 => UserControl::SetBufferLength {
                    stream_id: arg()?,
                    millis: be32(p, 6).ok_or_else(short)?,
                },
                4 => UserControl::StreamIsRecorded(arg()?),
                6 => UserControl::PingRequest(arg()?),
                7 => UserControl::PingResponse(arg()?),
                other => UserControl::Other(other),
            })
        }
        _ => return Ok(None),
    }))
}

/// User control events whose first four data bytes name a message stream, which the relay
/// translates between the two hops.
pub fn user_control_stream_id(payload: &[u8]) -> Option<u32> {
    let event = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    matches!(event, 0..=4).then(|| be32(payload, 2)).flatten()
}

/// The same user control message naming `stream_id` instead.
pub fn with_user_control_stream_id(payload: &Bytes, stream_id: u32) -> Bytes {
    let mut out = BytesMut::from(&payload[..]);
    out[2..6].copy_from_slice(&stream_id.to_be_bytes());
    out.freeze()
}

fn control_message(type_id: u8, body: &[u8]) -> Message {
    Message {
        csid: CONTROL_CSID,
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload: Bytes::copy_from_slice(body),
    }
}

pub fn set_chunk_size(size: u32) -> Message {
    control_message(kind::SET_CHUNK_SIZE, &size.to_be_bytes())
}

pub fn acknowledgement(sequence: u32) -> Message {
    control_message(kind::ACKNOWLEDGEMENT, &sequence.to_be_bytes())
}

pub fn window_ack_size(size: u32) -> Message {
    control_message(kind::WINDOW_ACK_SIZE, &size.to_be_bytes())
}

pub fn set_peer_bandwidth(size: u32, limit_type: u8) -> Message {
    let mut body = BytesMut::with_capacity(5);
    body.put_u32(size);
    body.put_u8(limit_type);
    control_message(kind::SET_PEER_BANDWIDTH, &body)
}

fn user_control(event: u16, args: &[u32]) -> Message {
    let mut body = BytesMut::with_capacity(2 + 4 * args.len());
    body.put_u16(event);
    for arg in args {
        body.put_u32(*arg);
    }
    control_message(kind::USER_CONTROL, &body)
}

pub fn stream_begin(stream_id: u32) -> Message {
    user_control(0, &[stream_id])
}

pub fn set_buffer_length(stream_id: u32, millis: u32) -> Message {
    user_control(3, &[stream_id, millis])
}

pub fn ping_response(timestamp: u32) -> Message {
    user_control(7, &[timestamp])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses() {
        assert_eq!(
            parse(&set_chunk_size(4096)),
            Ok(Some(Control::SetChunkSize(4096)))
        );
        assert_eq!(
            parse(&window_ack_size(2_500_000)),
            Ok(Some(Control::WindowAckSize(2_500_000)))
        );
        assert_eq!(
            parse(&set_peer_bandwidth(5, 2)),
            Ok(Some(Control::SetPeerBandwidth {
                size: 5,
                limit_type: 2
            }))
        );
        assert_eq!(
            parse(&set_buffer_length(1, 3000)),
            Ok(Some(Control::User(UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000
            })))
        );
        assert_eq!(
            parse(&ping_response(9)),
            Ok(Some(Control::User(UserControl::PingResponse(9))))
        );
        let begin = stream_begin(7);
        assert_eq!(user_control_stream_id(&begin.payload), Some(7));
        assert_eq!(
            user_control_stream_id(&with_user_control_stream_id(&begin.payload, 1)),
            Some(1)
        );
        assert_eq!(user_control_stream_id(&ping_response(1).payload), None);
    }

    #[test]
    fn short_control_messages_are_errors() {
        let mut m = set_chunk_size(1);
        m.payload = Bytes::from_static(&[0, 1]);
        assert_eq!(parse(&m), Err(ControlError { type_id: 1, len: 2 }));
        m.type_id = kind::USER_CONTROL;
        m.payload = Bytes::from_static(&[0, 3, 0, 0, 0, 1]);
        assert!(parse(&m).is_err());
    }
}
