//! Decoder of HTTP/1.1 chunked bodies (RFC 9112 §7.1): bytes in as they arrive, data out.
//!
//! Written here because the live relay reads origins with its own small client (see
//! [`super::live`]) and no well-kept crate offers a resumable decoder over borrowed input;
//! `httparse::parse_chunk_size` needs a whole size line in one buffer.

use bytes::BytesMut;

/// Longest chunk-size line (with extensions) or trailer line accepted.
pub const MAX_LINE: usize = 4096;
/// Chunk sizes above this are refused (no origin sends a 1 TiB chunk).
const MAX_CHUNK: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid byte {0:#04x} in a chunk size")]
    InvalidSize(u8),
    #[error("chunk size line without a size")]
    MissingSize,
    #[error("chunk larger than 1 TiB")]
    ChunkTooLarge,
    #[error("chunk size or trailer line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size {
        value: u64,
        digits: u32,
    },
    /// Extensions or whitespace after the size, up to the line's LF.
    SizeRest {
        value: u64,
    },
    /// Saw CR at the end of a size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// Start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerEndLf,
    Done,
}

/// Resumable: feed it any split of a body and it gives the same data as if fed at once.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// The last chunk and the trailers have been read; bytes after them are not the body's.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending chunk data to `out`. Returns how many bytes of `input` were
    /// part of the body (all of them unless the body ended inside `input`).
    pub fn decode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<usize, ChunkedError> {
        let mut at = 0;
        while at < input.len() {
            let byte = input[at];
            match self.state {
                State::Done => return Ok(at),
                State::Data { remaining } => {
                    let take =
                        (input.len() - at).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[at..at + take]);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                    continue;
                }
                State::Size { value, digits } => {
                    self.count_line()?;
                    if let Some(digit) = (byte as char).to_digit(16) {
                        let value = value * 16 + u64::from(digit);
                        if value > MAX_CHUNK {
                            return Err(ChunkedError::ChunkTooLarge);
                        }
                        self.state = State::Size {
                            value,
                            digits: digits + 1,
                        };
                    } else if digits == 0 {
                        return Err(if matches!(byte, b'\r' | b'\n' | b';') {
                            ChunkedError::MissingSize
                        } else {
                            ChunkedError::InvalidSize(byte)
                        });
                    } else {
                        match byte {
                            b';' | b' ' | b'\t' => self.state = State::SizeRest { value },
                            b'\r' => self.state = State::SizeLf { value },
                            b'\n' => self.end_size_line(value),
                            other => return Err(ChunkedError::InvalidSize(other)),
                        }
                    }
                }
                State::SizeRest { value } => {
                    self.count_line()?;
                    match byte {
                        b'\r' => self.state = State::SizeLf { value },
                        b'\n' => self.end_size_line(value),
                        _ => {}
                    }
                }
                State::SizeLf { value } => {
                    if byte != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.end_size_line(value);
                }
                State::DataCr => match byte {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => self.start_size(),
                    _ => return Err(ChunkedError::MissingCrlf),
                },
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.start_size();
                }
                State::TrailerStart => match byte {
                    b'\r' => self.state = State::TrailerEndLf,
                    b'\n' => self.state = State::Done,
                    _ => {
                        self.line = 1;
                        self.state = State::TrailerLine;
                    }
                },
                State::TrailerLine => {
                    self.count_line()?;
                    if byte == b'\n' {
                        self.state = State::TrailerStart;
                    }
                }
                State::TrailerEndLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    self.state = State::Done;
                }
            }
            at += 1;
        }
        Ok(at)
    }

    fn count_line(&mut self) -> Result<(), ChunkedError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(())
    }

    fn end_size_line(&mut self, value: u64) {
        self.line = 0;
        self.state = if value == 0 {
            State::TrailerStart
        } else {
            State::Data { remaining: value }
        };
    }

    fn start_size(&mut self) {
        self.line = 0;
        self.state = State::Size {
            value: 0,
            digits: 0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> (Result<usize, ChunkedError>, Vec<u8>, bool) {
        let mut decoder = ChunkedDecoder::default();
        let mut out = BytesMut::new();
        let result = decoder.decode(input, &mut out);
        (result, out.to_vec(), decoder.is_done())
    }

    fn byte_by_byte(input: &[u8]) -> (Result<usize, ChunkedError>, Vec<u8>, bool) {
        let mut decoder = ChunkedDecoder::default();
        let mut out = BytesMut::new();
        let mut used = 0;
        for byte in input.chunks(1) {
            match decoder.decode(byte, &mut out) {
                Ok(n) => used += n,
                Err(err) => return (Err(err), out.to_vec(), false),
            }
        }
        (Ok(used), out.to_vec(), decoder.is_done())
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_in_any_split() {
        let body = b"4\r\nWiki\r\n5;name=\"x\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";
        for decode in [whole, byte_by_byte] {
            let (used, data, done) = decode(body);
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
            assert!(done);
            assert_eq!(
                used,
                Ok(body.len() - 4),
                "the bytes after the body are left"
            );
        }
    }

    #[test]
    fn a_live_body_that_never_ends_streams_what_it_has() {
        let (used, data, done) = whole(b"9\r\nFLV\x01\x05\0\0\0\x09\r\n4\r\n\0\0");
        assert_eq!(used, Ok(19));
        assert_eq!(data, b"FLV\x01\x05\0\0\0\x09\0\0");
        assert!(!done);
        // Bare LF line ends, as some servers send.
        assert_eq!(whole(b"3\nabc\n0\n\n").1, b"abc");
        assert!(whole(b"3\nabc\n0\n\n").2);
    }

    #[test]
    fn refuses_what_is_not_a_chunked_body() {
        assert_eq!(whole(b"zz\r\n").0, Err(ChunkedError::InvalidSize(b'z')));
        assert_eq!(whole(b"\r\n").0, Err(ChunkedError::MissingSize));
        assert_eq!(whole(b"3\r\nabcX").0, Err(ChunkedError::MissingCrlf));
        assert_eq!(whole(b"3\rX").0, Err(ChunkedError::MissingCrlf));
        assert_eq!(
            whole(b"fffffffffffffffffff\r\n").0,
            Err(ChunkedError::ChunkTooLarge)
        );
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE));
        assert_eq!(whole(&long).0, Err(ChunkedError::LineTooLong));
        assert_eq!(byte_by_byte(&long).0, Err(ChunkedError::LineTooLong));
        let mut trailer = b"0\r\nX-A: ".to_vec();
        trailer.extend(std::iter::repeat_n(b'y', MAX_LINE));
        assert_eq!(whole(&trailer).0, Err(ChunkedError::LineTooLong));
    }
}
