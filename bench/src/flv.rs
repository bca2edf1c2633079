//! FLV, pure: tags of a file (to publish them over RTMP), tags written out (an HTTP-FLV
//! origin), and an incremental reader that checks what an HTTP-FLV player receives.

use bytes::{BufMut, Bytes, BytesMut};
use originstack_proxy::rtmp::{chunk::Message, control::kind};

/// FLV file header for a file with audio and video, followed by PreviousTagSize0.
pub const HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];
/// Tag header length (type, size, timestamp, stream id).
const TAG_HEADER: usize = 11;
/// Largest tag the reader accepts: what one FLV tag can declare.
const MAX_TAG: usize = 0xFF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("not an FLV stream (no FLV signature)")]
    NotFlv,
    #[error("FLV header declares an impossible length {0}")]
    BadHeader(u32),
    #[error("tag {index}: previous tag size {found} does not match {expected}")]
    BadPreviousSize {
        index: u64,
        expected: u32,
        found: u32,
    },
    #[error("tag {index}: unknown tag type {kind}")]
    BadTagType { index: u64, kind: u8 },
}

/// One FLV tag: audio (8), video (9) or script data (18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub kind: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

impl Tag {
    /// The tag as RTMP sends it (audio on chunk stream 4, video and data on 6, message
    /// stream 1 as a publisher's first stream).
    pub fn to_message(&self) -> Message {
        Message {
            csid: if self.kind == kind::AUDIO { 4 } else { 6 },
            timestamp: self.timestamp,
            type_id: self.kind,
            stream_id: 1,
            payload: self.payload.clone(),
        }
    }

    /// The tag as FLV bytes: header, payload, PreviousTagSize.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(TAG_HEADER + self.payload.len() + 4);
        self.encode_into(&mut out);
        out.freeze()
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        let size = self.payload.len().min(MAX_TAG) as u32;
        out.put_u8(self.kind);
        out.put_slice(&size.to_be_bytes()[1..]);
        out.put_slice(&self.timestamp.to_be_bytes()[1..]);
        out.put_u8((self.timestamp >> 24) as u8);
        out.put_slice(&[0, 0, 0]);
        out.put_slice(&self.payload[..size as usize]);
        out.put_u32(size + TAG_HEADER as u32);
    }

    /// A video keyframe, or an AVC/HEVC sequence header (both start a decodable stream).
    pub fn is_keyframe(&self) -> bool {
        self.kind == kind::VIDEO && self.payload.first().is_some_and(|b| b >> 4 == 1)
    }

    /// Codec configuration (AVC sequence header, AAC AudioSpecificConfig) or metadata: a
    /// player needs these before any frame.
    pub fn is_header(&self) -> bool {
        match self.kind {
            kind::DATA_AMF0 => true,
            kind::VIDEO => {
                self.payload.len() >= 2 && self.payload[0] & 0x0F == 7 && self.payload[1] == 0
            }
            kind::AUDIO => {
                self.payload.len() >= 2 && self.payload[0] >> 4 == 10 && self.payload[1] == 0
            }
            _ => false,
        }
    }

    /// An RTMP media or data message as a tag; `None` for anything else.
    pub fn from_message(message: &Message) -> Option<Self> {
        matches!(message.type_id, kind::AUDIO | kind::VIDEO | kind::DATA_AMF0).then(|| Self {
            kind: message.type_id,
            timestamp: message.timestamp,
            payload: message.payload.clone(),
        })
    }
}

/// Every tag of a whole FLV file; a truncated last tag is dropped.
pub fn read_file(data: &[u8]) -> Result<Vec<Tag>, FlvError> {
    let mut reader = Reader::default();
    let mut tags = Vec::new();
    reader.feed(data, |tag| tags.push(tag))?;
    Ok(tags)
}

/// Reads an FLV byte stream as it arrives, in pieces of any size, and hands out whole tags.
#[derive(Debug, Default)]
pub struct Reader {
    pending: BytesMut,
    header_done: bool,
    tags: u64,
    /// Size of the previous tag, which the next PreviousTagSize must repeat.
    last_size: u32,
}

impl Reader {
    /// Tags completed so far.
    pub fn tags(&self) -> u64 {
        self.tags
    }

    pub fn feed(&mut self, bytes: &[u8], mut on_tag: impl FnMut(Tag)) -> Result<(), FlvError> {
        self.pending.extend_from_slice(bytes);
        if !self.header_done {
            if self.pending.len() < 9 {
                return Ok(());
            }
            if &self.pending[..3] != b"FLV" {
                return Err(FlvError::NotFlv);
            }
            let offset = u32::from_be_bytes([
                self.pending[5],
                self.pending[6],
                self.pending[7],
                self.pending[8],
            ]);
            if !(9..=1024).contains(&offset) {
                return Err(FlvError::BadHeader(offset));
            }
            if self.pending.len() < offset as usize {
                return Ok(());
            }
            let _ = self.pending.split_to(offset as usize);
            self.header_done = true;
        }
        // Each step: PreviousTagSize (4), then a tag.
        loop {
            if self.pending.len() < 4 + TAG_HEADER {
                return Ok(());
            }
            let previous = u32::from_be_bytes([
                self.pending[0],
                self.pending[1],
                self.pending[2],
                self.pending[3],
            ]);
            let head = &self.pending[4..4 + TAG_HEADER];
            let kind = head[0] & 0x1F;
            let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
            if previous != self.last_size {
                return Err(FlvError::BadPreviousSize {
                    index: self.tags,
                    expected: self.last_size,
                    found: previous,
                });
            }
            if !matches!(kind, kind::AUDIO | kind::VIDEO | kind::DATA_AMF0) {
                return Err(FlvError::BadTagType {
                    index: self.tags,
                    kind,
                });
            }
            if self.pending.len() < 4 + TAG_HEADER + size {
                return Ok(());
            }
            let mut whole = self.pending.split_to(4 + TAG_HEADER + size);
            let payload = whole.split_off(4 + TAG_HEADER).freeze();
            self.last_size = (TAG_HEADER + size) as u32;
            self.tags += 1;
            on_tag(Tag {
                kind,
                timestamp,
                payload,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, timestamp: u32, payload: &'static [u8]) -> Tag {
        Tag {
            kind,
            timestamp,
            payload: Bytes::from_static(payload),
        }
    }

    fn stream(tags: &[Tag]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for tag in tags {
            out.extend_from_slice(&tag.encode());
        }
        out
    }

    #[test]
    fn tags_survive_encoding_and_reading_in_any_pieces() {
        let tags = vec![
            tag(kind::DATA_AMF0, 0, b"\x02\x00\x0aonMetaData"),
            tag(kind::VIDEO, 0, &[0x17, 0, 0, 0, 0]),
            tag(kind::AUDIO, 0x0123_4567, &[0xAF, 1, 2, 3]),
            tag(kind::VIDEO, 40, &[0x27, 1, 0, 0, 0, 9, 9]),
        ];
        let bytes = stream(&tags);
        assert_eq!(read_file(&bytes).unwrap(), tags);
        for piece in [1, 3, 7, 64] {
            let mut reader = Reader::default();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(piece) {
                reader.feed(chunk, |t| seen.push(t)).unwrap();
            }
            assert_eq!(seen, tags, "pieces of {piece}");
            assert_eq!(reader.tags(), 4);
        }
    }

    #[test]
    fn classifies_tags() {
        assert!(tag(kind::VIDEO, 0, &[0x17, 0, 0]).is_header());
        assert!(tag(kind::VIDEO, 0, &[0x17, 1, 0]).is_keyframe());
        assert!(!tag(kind::VIDEO, 0, &[0x27, 1, 0]).is_keyframe());
        assert!(tag(kind::AUDIO, 0, &[0xAF, 0, 0x12]).is_header());
        assert!(!tag(kind::AUDIO, 0, &[0xAF, 1, 0x12]).is_header());
        assert!(tag(kind::DATA_AMF0, 0, b"x").is_header());
        let message = tag(kind::AUDIO, 5, &[0xAF, 1]).to_message();
        assert_eq!(
            (message.csid, message.type_id, message.stream_id),
            (4, 8, 1)
        );
        assert_eq!(
            Tag::from_message(&message),
            Some(tag(kind::AUDIO, 5, &[0xAF, 1]))
        );
    }

    #[test]
    fn rejects_what_is_not_flv() {
        let mut reader = Reader::default();
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\n", |_| {}),
            Err(FlvError::NotFlv)
        );
        let mut bytes = stream(&[tag(kind::VIDEO, 0, &[0x17, 0])]);
        bytes[9] = 7; // PreviousTagSize0 must be 0
        assert!(matches!(
            read_file(&bytes),
            Err(FlvError::BadPreviousSize { index: 0, .. })
        ));
        let mut bytes = stream(&[tag(kind::VIDEO, 0, &[0x17, 0])]);
        bytes[13] = 3;
        assert!(matches!(
            read_file(&bytes),
            Err(FlvError::BadTagType { kind: 3, .. })
        ));
    }
}
