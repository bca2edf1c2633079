//! FLV, the body of an HTTP-FLV stream: the file header, then tags. Pure (bytes in, items out)
//! so it can be fuzzed; the HTTP-FLV fan-out (`http::fanout`) drives it.
//!
//! Each tag is handed out whole (11-byte tag header, data, 4-byte PreviousTagSize) as the very
//! bytes that arrived, classified only as far as a new player's start needs: codec sequence
//! headers, video keyframes, script data (`onMetaData`). Enhanced RTMP's FLV (HEVC, AV1, VP9;
//! Opus, FLAC) is recognised by its ExHeader bit; anything else passes through untouched.

use bytes::{Buf, Bytes, BytesMut};

/// "FLV", version, flags, data offset (u32): the data offset is at least this.
const HEADER_LEN: usize = 9;
/// PreviousTagSize, after the header and after every tag.
const PREVIOUS_TAG_SIZE_LEN: usize = 4;
const TAG_HEADER_LEN: usize = 11;
/// A data offset past this is not an FLV stream SRS or ffmpeg writes (they write 9).
const MAX_HEADER_LEN: usize = 1024;

const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const SCRIPT: u8 = 18;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("the body does not start with an FLV header")]
    NotFlv,
    #[error("FLV data offset {0} is out of range")]
    BadHeaderLength(u32),
    #[error("FLV tag of {size} bytes is larger than the {max} allowed")]
    TagTooLarge { size: usize, max: usize },
}

/// What a tag is, as far as starting a player goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Decoder configuration (AVC/HEVC/AV1 sequence start, AAC AudioSpecificConfig): every
    /// player needs the latest before media.
    VideoSequenceHeader,
    AudioSequenceHeader,
    /// A video frame a decoder can start at.
    Keyframe,
    /// Other video frames, and video command frames.
    Video,
    Audio,
    /// Script data, such as `onMetaData`.
    Script,
    /// Any other tag type, passed through.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvItem {
    /// The file header and the PreviousTagSize0 after it.
    Header(Bytes),
    Tag {
        kind: TagKind,
        bytes: Bytes,
    },
}

/// Splits an FLV byte stream into its header and tags. Holds at most one incomplete tag.
#[derive(Debug)]
pub struct FlvDecoder {
    buffer: BytesMut,
    header_done: bool,
    max_tag_size: usize,
}

impl FlvDecoder {
    /// `max_tag_size`: the largest tag data accepted (a keyframe of a high-rate stream is a few
    /// hundred KiB; SRS's RTMP messages stop at 8 MiB by default).
    pub fn new(max_tag_size: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            header_done: false,
            max_tag_size,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, input: &[u8]) {
        self.buffer.extend_from_slice(input);
    }

    /// The next complete item, `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<FlvItem>, FlvError> {
        if !self.header_done {
            return self.header();
        }
        if self.buffer.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let size = u32::from_be_bytes([0, self.buffer[1], self.buffer[2], self.buffer[3]]) as usize;
        if size > self.max_tag_size {
            return Err(FlvError::TagTooLarge {
                size,
                max: self.max_tag_size,
            });
        }
        let total = TAG_HEADER_LEN + size + PREVIOUS_TAG_SIZE_LEN;
        if self.buffer.len() < total {
            // Room for the rest of this tag only: never more than one tag is buffered.
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let bytes = self.buffer.split_to(total).freeze();
        let kind = classify(
            bytes[0] & 0x1f,
            &bytes[TAG_HEADER_LEN..TAG_HEADER_LEN + size],
        );
        Ok(Some(FlvItem::Tag { kind, bytes }))
    }

    fn header(&mut self) -> Result<Option<FlvItem>, FlvError> {
        let seen = self.buffer.len().min(3);
        if self.buffer[..seen] != b"FLV"[..seen] {
            return Err(FlvError::NotFlv);
        }
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let offset = (&self.buffer[5..9]).get_u32();
        let len = offset as usize;
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
            return Err(FlvError::BadHeaderLength(offset));
        }
        if self.buffer.len() < len + PREVIOUS_TAG_SIZE_LEN {
            return Ok(None);
        }
        self.header_done = true;
        let header = self.buffer.split_to(len + PREVIOUS_TAG_SIZE_LEN).freeze();
        Ok(Some(FlvItem::Header(header)))
    }
}

/// The kind of a tag of `tag_type` with `data` (its body after the 11-byte header).
pub fn classify(tag_type: u8, data: &[u8]) -> TagKind {
    match tag_type {
        VIDEO => classify_video(data),
        AUDIO => classify_audio(data),
        SCRIPT => TagKind::Script,
        _ => TagKind::Other,
    }
}

fn classify_video(data: &[u8]) -> TagKind {
    let Some(&first) = data.first() else {
        return TagKind::Video;
    };
    let frame_type = (first >> 4) & 0x07;
    let sequence_start = if first & 0x80 != 0 {
        // Enhanced RTMP: the low nibble is the packet type; SequenceStart (0) and
        // MPEG2TSSequenceStart (5) carry decoder configuration.
        matches!(first & 0x0f, 0 | 5)
    } else {
        // AVC (7) and the HEVC id (12) that encoders used before Enhanced RTMP: an
        // AVCPacketType of 0 is the sequence header.
        matches!(first & 0x0f, 7 | 12) && data.get(1) == Some(&0)
    };
    if sequence_start {
        TagKind::VideoSequenceHeader
    } else if frame_type == 1 {
        TagKind::Keyframe
    } else {
        TagKind::Video
    }
}

fn classify_audio(data: &[u8]) -> TagKind {
    let Some(&first) = data.first() else {
        return TagKind::Audio;
    };
    let sequence_start = match first >> 4 {
        // AAC: an AACPacketType of 0 is the AudioSpecificConfig.
        10 => data.get(1) == Some(&0),
        // Enhanced RTMP audio (ExHeader): packet type SequenceStart.
        9 => first & 0x0f == 0,
        _ => false,
    };
    if sequence_start {
        TagKind::AudioSequenceHeader
    } else {
        TagKind::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tag(tag_type: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let mut out = vec![tag_type];
        out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        out.push((timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&((TAG_HEADER_LEN + data.len()) as u32).to_be_bytes());
        out
    }

    const HEADER: &[u8] = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

    fn decode_all(input: &[u8], step: usize) -> Vec<FlvItem> {
        let mut decoder = FlvDecoder::new(1 << 20);
        let mut items = Vec::new();
        for chunk in input.chunks(step) {
            decoder.push(chunk);
            while let Some(item) = decoder.next_item().unwrap() {
                items.push(item);
            }
        }
        items
    }

    #[test]
    fn header_and_tags_come_out_whole_however_the_bytes_arrive() {
        let mut stream = HEADER.to_vec();
        let tags = [
            tag(SCRIPT, 0, b"\x02\x00\x0aonMetaData"),
            tag(VIDEO, 0, &[0x17, 0x00, 0, 0, 0, 1]),
            tag(AUDIO, 0, &[0xaf, 0x00, 0x12, 0x10]),
            tag(VIDEO, 0, &[0x17, 0x01, 0, 0, 0, 9, 9]),
            tag(AUDIO, 23, &[0xaf, 0x01, 7]),
            tag(VIDEO, 33, &[0x27, 0x01, 0, 0, 0, 8]),
        ];
        for t in &tags {
            stream.extend_from_slice(t);
        }
        for step in [1, 2, 7, 1000] {
            let items = decode_all(&stream, step);
            assert_eq!(items[0], FlvItem::Header(Bytes::from_static(HEADER)));
            let kinds: Vec<TagKind> = items[1..]
                .iter()
                .map(|item| match item {
                    FlvItem::Tag { kind, .. } => *kind,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                kinds,
                [
                    TagKind::Script,
                    TagKind::VideoSequenceHeader,
                    TagKind::AudioSequenceHeader,
                    TagKind::Keyframe,
                    TagKind::Audio,
                    TagKind::Video,
                ]
            );
            for (item, expected) in items[1..].iter().zip(&tags) {
                let FlvItem::Tag { bytes, .. } = item else {
                    unreachable!()
                };
                assert_eq!(&bytes[..], &expected[..]);
            }
        }
    }

    #[test]
    fn enhanced_rtmp_tags_are_recognised() {
        // HEVC ('hvc1'): ExHeader bit, frame type 1, packet type SequenceStart, then
        // CodedFrames on a keyframe and on an inter frame.
        assert_eq!(
            classify(VIDEO, &[0x90, b'h', b'v', b'c', b'1']),
            TagKind::VideoSequenceHeader
        );
        assert_eq!(
            classify(VIDEO, &[0x91, b'h', b'v', b'c', b'1']),
            TagKind::Keyframe
        );
        assert_eq!(
            classify(VIDEO, &[0xa3, b'a', b'v', b'0', b'1']),
            TagKind::Video
        );
        // Opus with the audio ExHeader: SequenceStart, then a coded frame.
        assert_eq!(
            classify(AUDIO, &[0x90, b'O', b'p', b'u', b's']),
            TagKind::AudioSequenceHeader
        );
        assert_eq!(
            classify(AUDIO, &[0x91, b'O', b'p', b'u', b's']),
            TagKind::Audio
        );
        // Empty bodies and other types pass through.
        assert_eq!(classify(VIDEO, &[]), TagKind::Video);
        assert_eq!(classify(AUDIO, &[]), TagKind::Audio);
        assert_eq!(classify(7, &[1]), TagKind::Other);
        // A VP6 keyframe (no packet type byte).
        assert_eq!(classify(VIDEO, &[0x14, 0]), TagKind::Keyframe);
    }

    #[test]
    fn bad_streams_are_refused_before_they_are_buffered() {
        let mut decoder = FlvDecoder::new(1000);
        decoder.push(b"HTTP/1.1");
        assert_eq!(decoder.next_item(), Err(FlvError::NotFlv));

        let mut decoder = FlvDecoder::new(1000);
        decoder.push(b"FLV\x01\x05\xff\xff\xff\xff");
        assert!(matches!(
            decoder.next_item(),
            Err(FlvError::BadHeaderLength(_))
        ));

        let mut decoder = FlvDecoder::new(1000);
        decoder.push(HEADER);
        assert!(matches!(decoder.next_item(), Ok(Some(FlvItem::Header(_)))));
        // A tag announcing 16 MiB: refused from its header alone.
        decoder.push(&[VIDEO, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decoder.next_item(),
            Err(FlvError::TagTooLarge {
                size: 0xff_ffff,
                max: 1000
            })
        );
    }
}
