//! The RTMP chunk stream: messages cut into chunks, chunks of several chunk streams
//! interleaved on one connection. Pure: bytes in, messages out (and back).
//!
//! Written here rather than taken from rml_rtmp: its deserializer loses track of partial
//! messages when chunk streams interleave (a video message split across chunks with audio
//! chunks between them), which real encoders do all the time. This decoder keeps one
//! reassembly buffer per chunk stream, consumes partial chunk payloads as they arrive (so the
//! read buffer never has to hold a whole chunk, whatever chunk size the peer picks) and bounds
//! everything it buffers.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Chunk size every RTMP connection starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size the protocol can express (the top bit must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Timestamps at or above this value travel in the extended timestamp field.
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Most allocated up front for a message being reassembled: enough for a typical video frame
/// in one allocation, while a header declaring a huge length costs no more until its bytes
/// really arrive (the buffer grows only with them).
const INITIAL_REASSEMBLY_CAPACITY: usize = 256 * 1024;

/// One RTMP message: what the relay forwards, never looking inside media payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream the message travelled on (kept when relaying so priorities stay as the
    /// sender chose them).
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest message accepted (declared length).
    pub max_message_size: u32,
    /// Most chunk streams tracked at once on one connection.
    pub max_chunk_streams: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_message_size: 16 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk stream {csid} continues (fmt {fmt}) without an earlier full header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("message of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { length: u32, limit: u32 },
    #[error("more than {limit} chunk streams in use on one connection")]
    TooManyChunkStreams { limit: usize },
    #[error("chunk stream {csid} starts a new message while the previous one is incomplete")]
    InterruptedMessage { csid: u32 },
    #[error("more than {limit} bytes of incomplete messages buffered")]
    TooMuchBuffered { limit: usize },
    #[error("chunk size {0} is outside 1..=2147483647")]
    InvalidChunkSize(u32),
}

#[derive(Debug, Default)]
struct InboundStream {
    timestamp: u32,
    /// What a type-3 header starting a new message adds to the timestamp: the last delta, or
    /// the absolute timestamp after a type-0 header (as ffmpeg, librtmp and SRS read it).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header used the extended timestamp field, so type-3 chunks repeat it.
    extended: bool,
    /// Payload received so far of the message in progress.
    payload: BytesMut,
    in_progress: bool,
}

/// Turns the bytes of one direction of a connection into messages.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    limits: DecoderLimits,
    streams: HashMap<u32, InboundStream>,
    /// The chunk whose header was consumed but whose payload has not fully arrived.
    open_chunk: Option<(u32, u32)>,
    /// Bytes held in incomplete messages across all chunk streams.
    buffered: usize,
}

struct ParsedHeader {
    fmt: u8,
    csid: u32,
    header_len: usize,
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
            open_chunk: None,
            buffered: 0,
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Applies the peer's Abort Message: the partial message on `csid` is dropped.
    pub fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.get_mut(&csid) {
            self.buffered -= stream.payload.len();
            stream.payload = BytesMut::new();
            stream.in_progress = false;
        }
        if matches!(self.open_chunk, Some((open, _)) if open == csid) {
            self.open_chunk = None;
        }
    }

    /// Consumes whole chunk headers and any available payload from `buf`; returns the next
    /// complete message, or `None` when more bytes are needed. Call again until `None`:
    /// messages that change decoding (Set Chunk Size, Abort) must be applied in between.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            if let Some((csid, remaining)) = self.open_chunk {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (remaining as usize).min(buf.len());
                let stream = self
                    .streams
                    .get_mut(&csid)
                    .expect("open chunk has a stream");
                stream.payload.extend_from_slice(&buf[..n]);
                buf.advance(n);
                self.buffered += n;
                if self.buffered > self.buffer_limit() {
                    return Err(ChunkError::TooMuchBuffered {
                        limit: self.buffer_limit(),
                    });
                }
                let remaining = remaining - n as u32;
                if remaining > 0 {
                    self.open_chunk = Some((csid, remaining));
                    return Ok(None);
                }
                self.open_chunk = None;
                if let Some(message) = self.take_if_complete(csid) {
                    return Ok(Some(message));
                }
                continue;
            }
            let Some(header) = self.peek_header(buf)? else {
                return Ok(None);
            };
            if let Some(message) = self.apply_header(header, buf)? {
                return Ok(Some(message));
            }
        }
    }

    fn buffer_limit(&self) -> usize {
        // Two maximal messages may legitimately be in flight (audio and video interleaved).
        2 * self.limits.max_message_size as usize
    }

    /// Parses the basic header and works out the full header length without consuming.
    fn peek_header(&self, buf: &[u8]) -> Result<Option<ParsedHeader>, ChunkError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, basic_len) = match first & 0x3F {
            0 => match buf.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let message_header_len = [11, 7, 3, 0][fmt as usize];
        let extended = match fmt {
            3 => match self.streams.get(&csid) {
                Some(stream) => stream.extended,
                None => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
            },
            _ => {
                if fmt != 0 && !self.streams.contains_key(&csid) {
                    return Err(ChunkError::NoPreviousHeader { csid, fmt });
                }
                let ts_at = basic_len;
                match buf.get(ts_at..ts_at + 3) {
                    Some(ts) => read_u24(ts) == EXTENDED_TIMESTAMP,
                    None => return Ok(None),
                }
            }
        };
        let header_len = basic_len + message_header_len + if extended { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        Ok(Some(ParsedHeader {
            fmt,
            csid,
            header_len,
        }))
    }

    /// Consumes a complete header, updates the chunk stream and opens its chunk payload.
    fn apply_header(
        &mut self,
        header: ParsedHeader,
        buf: &mut BytesMut,
    ) -> Result<Option<Message>, ChunkError> {
        let ParsedHeader {
            fmt,
            csid,
            header_len,
        } = header;
        if !self.streams.contains_key(&csid) && self.streams.len() >= self.limits.max_chunk_streams
        {
            return Err(ChunkError::TooManyChunkStreams {
                limit: self.limits.max_chunk_streams,
            });
        }
        let raw = buf.split_to(header_len);
        let mut h = &raw[basic_header_len(&raw)..];
        let stream = self.streams.entry(csid).or_default();
        if fmt < 3 && stream.in_progress {
            return Err(ChunkError::InterruptedMessage { csid });
        }
        let starts_message = !stream.in_progress;
        match fmt {
            0..=2 => {
                let field = read_u24(&h[..3]);
                h = &h[3..];
                if fmt <= 1 {
                    stream.length = read_u24(&h[..3]);
                    stream.type_id = h[3];
                    h = &h[4..];
                }
                if fmt == 0 {
                    stream.stream_id = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                    h = &h[4..];
                }
                stream.extended = field == EXTENDED_TIMESTAMP;
                let value = if stream.extended {
                    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
                } else {
                    field
                };
                if fmt == 0 {
                    stream.timestamp = value;
                } else {
                    stream.timestamp = stream.timestamp.wrapping_add(value);
                }
                stream.delta = value;
            }
            _ => {
                // The extended timestamp repeated on type-3 chunks (when present) carries
                // nothing new; a type-3 header starting a message reuses the last delta.
                if starts_message {
                    stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
                }
            }
        }
        if starts_message {
            if stream.length > self.limits.max_message_size {
                return Err(ChunkError::MessageTooLarge {
                    length: stream.length,
                    limit: self.limits.max_message_size,
                });
            }
            stream.in_progress = true;
            stream.payload =
                BytesMut::with_capacity((stream.length as usize).min(INITIAL_REASSEMBLY_CAPACITY));
        }
        let left = stream.length - stream.payload.len() as u32;
        let chunk_len = left.min(self.chunk_size);
        if chunk_len > 0 {
            self.open_chunk = Some((csid, chunk_len));
            return Ok(None);
        }
        // A zero-length message is complete with its header.
        Ok(self.take_if_complete(csid))
    }

    fn take_if_complete(&mut self, csid: u32) -> Option<Message> {
        let stream = self.streams.get_mut(&csid)?;
        if stream.payload.len() < stream.length as usize {
            return None;
        }
        stream.in_progress = false;
        self.buffered -= stream.payload.len();
        let payload = std::mem::take(&mut stream.payload).freeze();
        Some(Message {
            csid,
            timestamp: stream.timestamp,
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            payload,
        })
    }
}

fn basic_header_len(raw: &[u8]) -> usize {
    match raw[0] & 0x3F {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

fn read_u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn put_u24(out: &mut BytesMut, value: u32) {
    out.put_slice(&value.to_be_bytes()[1..]);
}

#[derive(Debug, Clone, Copy)]
struct OutboundStream {
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Delta of the last type-1/2 header; `None` after a type-0 header, where readers
    /// disagree on what a following type-3 header means, so none is written then.
    delta: Option<u32>,
}

/// Turns messages into chunks for one direction of a connection, compressing headers the
/// way the spec intends (type 1/2/3 when the chunk stream's previous message allows it).
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: HashMap<u32, OutboundStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Must be called right after writing our Set Chunk Size message.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Appends the chunks of `message` to `out`. Chunk stream ids outside 2..=65599 are
    /// clamped into range (0 and 1 are escape values of the basic header).
    pub fn encode(&mut self, message: &Message, out: &mut BytesMut) {
        let csid = message.csid.clamp(2, 65599);
        let length = u32::try_from(message.payload.len()).unwrap_or(u32::MAX) & 0xFF_FFFF;
        let prev = self.streams.get(&csid).copied();
        let (fmt, field) = match prev {
            Some(prev)
                if prev.stream_id == message.stream_id && message.timestamp >= prev.timestamp =>
            {
                let delta = message.timestamp - prev.timestamp;
                if prev.length == length && prev.type_id == message.type_id {
                    if prev.delta == Some(delta) {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, message.timestamp),
        };
        let delta = if fmt == 0 { None } else { Some(field) };
        self.streams.insert(
            csid,
            OutboundStream {
                timestamp: message.timestamp,
                length,
                type_id: message.type_id,
                stream_id: message.stream_id,
                delta,
            },
        );
        let extended = field >= EXTENDED_TIMESTAMP;
        let chunk_size = self.chunk_size as usize;
        let payload = &message.payload[..length as usize];
        out.reserve(payload.len() + 18 + (payload.len() / chunk_size) * 8);
        put_basic_header(out, fmt, csid);
        if fmt < 3 {
            put_u24(out, if extended { EXTENDED_TIMESTAMP } else { field });
        }
        if fmt < 2 {
            put_u24(out, length);
            out.put_u8(message.type_id);
        }
        if fmt == 0 {
            out.put_u32_le(message.stream_id);
        }
        if extended {
            out.put_u32(field);
        }
        let mut chunks = payload.chunks(chunk_size);
        if let Some(first) = chunks.next() {
            out.put_slice(first);
        }
        for chunk in chunks {
            put_basic_header(out, 3, csid);
            if extended {
                // Repeated on continuation chunks, as the spec, ffmpeg, nginx-rtmp and SRS expect.
                out.put_u32(field);
            }
            out.put_slice(chunk);
        }
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid - 64;
            out.put_u8((fmt << 6) | 1);
            out.put_u8((id & 0xFF) as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        len: usize,
        seed: u8,
    ) -> Message {
        let payload: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::from(payload),
        }
    }

    fn decode_all(decoder: &mut ChunkDecoder, wire: &[u8], step: usize) -> Vec<Message> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn round_trip_at_any_chunk_size_and_read_size() {
        let messages = vec![
            message(4, 0, 9, 1, 5000, 1),
            message(4, 40, 9, 1, 5000, 2),
            message(4, 80, 9, 1, 5000, 3),
            message(4, 120, 9, 1, 700, 4),
            message(6, 0x0100_0000, 8, 1, 300, 5),
            message(6, 0x0100_0017, 8, 1, 300, 6),
            message(3, 0, 20, 0, 0, 7),
            message(400, 1, 18, 1, 10, 8),
            message(65599, 2, 18, 1, 129, 9),
        ];
        for chunk_size in [1, 128, 129, 4096, 65536] {
            let mut encoder = ChunkEncoder::new();
            encoder.set_chunk_size(chunk_size);
            let mut wire = BytesMut::new();
            for m in &messages {
                encoder.encode(m, &mut wire);
            }
            for step in [1, 7, 4096, wire.len()] {
                let mut decoder = ChunkDecoder::new(DecoderLimits::default());
                decoder.set_chunk_size(chunk_size).unwrap();
                assert_eq!(
                    decode_all(&mut decoder, &wire, step),
                    messages,
                    "chunk size {chunk_size}, step {step}"
                );
            }
        }
    }

    /// Hand-built wire bytes: a video message on csid 6 interleaved with an audio message on
    /// csid 4 at chunk size 128, type-3 continuations carrying the extended timestamp, a
    /// type-2 and a type-3 header starting new messages.
    #[test]
    fn decodes_interleaved_chunk_streams_with_extended_timestamps() {
        let mut wire = Vec::new();
        // Video, fmt 0, csid 6, ts extended 0x01000000, len 200, type 9, msid 1.
        wire.extend_from_slice(&[
            0x06, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 200, 9, 1, 0, 0, 0, 0x01, 0, 0, 0,
        ]);
        wire.extend_from_slice(&[0xAA; 128]);
        // Audio, fmt 0, csid 4, ts 10, len 3, type 8, msid 1: complete in one chunk.
        wire.extend_from_slice(&[0x04, 0, 0, 10, 0, 0, 3, 8, 1, 0, 0, 0, 1, 2, 3]);
        // Video continuation: fmt 3 csid 6 with the repeated extended timestamp.
        wire.extend_from_slice(&[0xC6, 0x01, 0, 0, 0]);
        wire.extend_from_slice(&[0xBB; 72]);
        // Audio, fmt 2 csid 4, delta 23: same length and type.
        wire.extend_from_slice(&[0x84, 0, 0, 23, 4, 5, 6]);
        // Audio, fmt 3 csid 4 starting a new message: delta 23 again.
        wire.extend_from_slice(&[0xC4, 7, 8, 9]);
        let mut decoder = ChunkDecoder::new(DecoderLimits::default());
        let got = decode_all(&mut decoder, &wire, 5);
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0].csid, got[0].timestamp, got[0].payload.as_ref()),
            (4, 10, &[1u8, 2, 3][..])
        );
        assert_eq!(
            (
                got[1].csid,
                got[1].timestamp,
                got[1].type_id,
                got[1].stream_id
            ),
            (6, 0x0100_0000, 9, 1)
        );
        assert_eq!(&got[1].payload[..128], &[0xAA; 128][..]);
        assert_eq!(&got[1].payload[128..], &[0xBB; 72][..]);
        assert_eq!(
            (got[2].timestamp, got[2].payload.as_ref()),
            (33, &[4u8, 5, 6][..])
        );
        assert_eq!(
            (got[3].timestamp, got[3].payload.as_ref()),
            (56, &[7u8, 8, 9][..])
        );
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut encoder = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        encoder.encode(&message(5, 0, 9, 1, 300, 1), &mut wire);
        let mut decoder = ChunkDecoder::new(DecoderLimits::default());
        let mut first = wire.split_to(1 + 11 + 128);
        assert_eq!(decoder.decode(&mut first).unwrap(), None);
        decoder.abort(5);
        // A fresh full header on the same chunk stream is accepted after the abort.
        let mut next = BytesMut::new();
        ChunkEncoder::new().encode(&message(5, 9, 9, 1, 10, 2), &mut next);
        assert_eq!(
            decoder.decode(&mut next).unwrap(),
            Some(message(5, 9, 9, 1, 10, 2))
        );
    }

    #[test]
    fn limits_are_enforced() {
        let limits = DecoderLimits {
            max_message_size: 1000,
            max_chunk_streams: 2,
        };
        let mut decoder = ChunkDecoder::new(limits);
        let mut buf = BytesMut::from(&[0x03, 0, 0, 0, 0x00, 0x10, 0x00, 9, 0, 0, 0, 0][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ChunkError::MessageTooLarge {
                length: 4096,
                limit: 1000
            })
        );

        let mut decoder = ChunkDecoder::new(limits);
        let mut buf = BytesMut::new();
        for csid in [3u8, 4, 5] {
            buf.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0xEE]);
        }
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ChunkError::TooManyChunkStreams { limit: 2 })
        );

        let mut decoder = ChunkDecoder::new(limits);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&[0x43, 0, 0, 0, 0, 0, 1, 9][..])),
            Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 1 })
        );
        assert_eq!(
            decoder.set_chunk_size(0),
            Err(ChunkError::InvalidChunkSize(0))
        );
        assert_eq!(
            decoder.set_chunk_size(0x8000_0000),
            Err(ChunkError::InvalidChunkSize(0x8000_0000))
        );
    }

    #[test]
    fn interrupting_a_message_with_a_full_header_is_an_error() {
        let mut decoder = ChunkDecoder::new(DecoderLimits::default());
        let mut buf = BytesMut::from(&[0x03, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 0][..]);
        buf.extend_from_slice(&[0u8; 128]);
        buf.extend_from_slice(&[0x03, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 0]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ChunkError::InterruptedMessage { csid: 3 })
        );
    }
}
