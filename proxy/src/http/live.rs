//! The origin side of HTTP-FLV and HTTP-TS: one plain TCP connection per player, whose body is
//! read straight from the socket while hyper writes it to the player.
//!
//! Why not hyper's client here: every hyper HTTP/1 connection keeps an 8 KiB read buffer and an
//! 8 KiB header buffer for its whole life, plus a connection task and a body channel. A live
//! body never ends, so that was paid per player for hours (40 KiB a player with the server side
//! included). This client holds no buffer between reads: it reads into the stack and copies
//! out only what arrived. Playlists and segments, which end, still go through hyper's client.

use std::{
    io,
    mem::MaybeUninit,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use hyper::body::{Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use super::chunked::{ChunkedDecoder, ChunkedError};
use crate::origins::StreamLease;

/// Largest response head accepted from an origin.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;
/// Bytes read from the origin at a time, on the stack of the task that writes to the player.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no response head within {0:?}")]
    HeadTimeout(Duration),
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("closed the connection before a response head")]
    NoResponse,
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid response head: {0}")]
    BadHead(String),
    #[error("invalid chunked body: {0}")]
    Chunked(#[from] ChunkedError),
    #[error("closed the connection {0} bytes before the announced end of the body")]
    Truncated(u64),
}

impl LiveError {
    /// Nothing listens on the origin's port.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Connect(err) if err.kind() == io::ErrorKind::ConnectionRefused)
    }
}

/// How the end of the origin's body is known (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// Timeouts of one origin request.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub connect: Duration,
    pub head: Duration,
}

/// Sends `method target` with `headers` to `origin` and reads the response head; the body
/// streams from the returned [`LiveBody`].
pub async fn open(
    origin: SocketAddr,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    deadlines: Deadlines,
) -> Result<Response<LiveBody>, LiveError> {
    let mut stream = tokio::time::timeout(deadlines.connect, TcpStream::connect(origin))
        .await
        .map_err(|_| LiveError::ConnectTimeout(deadlines.connect))?
        .map_err(LiveError::Connect)?;
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(deadlines.head, async {
        stream
            .write_all(&request_head(origin, method, target, headers))
            .await?;
        read_head(&mut stream, method).await
    })
    .await
    .map_err(|_| LiveError::HeadTimeout(deadlines.head))?
    .map(|(head, framing, leftover)| {
        head.map(|()| LiveBody {
            stream,
            framing,
            leftover,
            lease: None,
        })
    })
}

/// The request line and headers. The client's Host is kept (origins pick the vhost from it);
/// the connection is never reused, so it says so.
fn request_head(origin: SocketAddr, method: &Method, target: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    if !headers.contains_key(header::HOST) {
        head.extend_from_slice(format!("host: {origin}\r\n").as_bytes());
    }
    for (name, value) in headers {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Reads until a final (non-1xx) response head; returns it, the body's framing and the body
/// bytes read along with the head.
async fn read_head(
    stream: &mut TcpStream,
    method: &Method,
) -> Result<(Response<()>, Framing, Bytes), LiveError> {
    use tokio::io::AsyncReadExt;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(LiveError::HeadTooLarge);
        }
        buf.reserve(1024.min(MAX_HEAD - buf.len()));
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(LiveError::NoResponse);
        }
        while let Some((response, used)) = parse_head(&buf)? {
            let _ = buf.split_to(used);
            if response.status().is_informational() {
                continue;
            }
            let framing = framing(method, &response)?;
            return Ok((response, framing, buf.freeze()));
        }
    }
}

/// Parses one response head from the start of `buf`, if it is all there.
fn parse_head(buf: &[u8]) -> Result<Option<(Response<()>, usize)>, LiveError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(LiveError::BadHead(err.to_string())),
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| LiveError::BadHead("invalid status code".into()))?;
    // The version stays the proxy's own: the player's connection is not the origin's.
    let mut response = Response::new(());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| LiveError::BadHead(format!("invalid header name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| LiveError::BadHead(format!("invalid value of header {name}")))?;
        headers.append(name, value);
    }
    Ok(Some((response, used)))
}

fn framing(method: &Method, response: &Response<()>) -> Result<Framing, LiveError> {
    let status = response.status();
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let headers = response.headers();
    if let Some(last) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|coding| !coding.is_empty())
    {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked(ChunkedDecoder::default())
        } else {
            Framing::UntilClose
        });
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(Framing::UntilClose),
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Framing::Length)
            .ok_or_else(|| LiveError::BadHead("invalid Content-Length".into())),
        (Some(_), Some(_)) => Err(LiveError::BadHead("more than one Content-Length".into())),
    }
}

/// An origin's live body, read as hyper asks for the next frame; dropping it (the player went
/// away) closes the origin connection and ends the stream's lease.
pub struct LiveBody {
    stream: TcpStream,
    framing: Framing,
    /// Body bytes that came with the response head.
    leftover: Bytes,
    lease: Option<StreamLease>,
}

impl LiveBody {
    /// Holds `lease` for as long as the body streams.
    pub fn with_lease(mut self, lease: StreamLease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Body data of `input` by the framing; `None` once the body has ended.
    fn decode(&mut self, input: &[u8]) -> Result<Option<Bytes>, LiveError> {
        match &mut self.framing {
            Framing::Empty => Ok(None),
            Framing::UntilClose => Ok(Some(Bytes::copy_from_slice(input))),
            Framing::Length(remaining) => {
                let take = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= take as u64;
                let data = Bytes::copy_from_slice(&input[..take]);
                if *remaining == 0 {
                    self.framing = Framing::Empty;
                }
                Ok(Some(data))
            }
            Framing::Chunked(decoder) => {
                // Never more data than input: one allocation of the right size at most.
                let mut out = BytesMut::with_capacity(input.len());
                decoder.decode(input, &mut out)?;
                if decoder.is_done() {
                    self.framing = Framing::Empty;
                }
                Ok(Some(out.freeze()))
            }
        }
    }

    fn ended(&self) -> bool {
        matches!(self.framing, Framing::Empty)
    }
}

impl hyper::body::Body for LiveBody {
    type Data = Bytes;
    type Error = LiveError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, LiveError>>> {
        let this = self.get_mut();
        loop {
            if !this.leftover.is_empty() {
                let leftover = std::mem::take(&mut this.leftover);
                match this.decode(&leftover) {
                    Ok(Some(data)) if !data.is_empty() => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(_) => continue,
                    Err(err) => return Poll::Ready(Some(Err(err))),
                }
            }
            if this.ended() {
                return Poll::Ready(None);
            }
            let mut space = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut read = ReadBuf::uninit(&mut space);
            if let Err(err) = ready!(Pin::new(&mut this.stream).poll_read(cx, &mut read)) {
                return Poll::Ready(Some(Err(err.into())));
            }
            let input = read.filled();
            if input.is_empty() {
                return Poll::Ready(match this.framing {
                    Framing::UntilClose => {
                        this.framing = Framing::Empty;
                        None
                    }
                    Framing::Length(remaining) => Some(Err(LiveError::Truncated(remaining))),
                    _ => Some(Err(LiveError::Io(io::ErrorKind::UnexpectedEof.into()))),
                });
            }
            match this.decode(input) {
                Ok(Some(data)) if !data.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(_) => continue,
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended() && self.leftover.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Version;

    use super::*;

    fn head(raw: &[u8]) -> Response<()> {
        parse_head(raw).unwrap().unwrap().0
    }

    #[test]
    fn response_heads_and_their_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n";
        let (response, used) = parse_head(raw).unwrap().unwrap();
        assert_eq!(used, raw.len() - 3);
        assert_eq!(response.headers()["content-type"], "video/x-flv");
        assert!(matches!(
            framing(&Method::GET, &response).unwrap(),
            Framing::Chunked(_)
        ));
        let sized = head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(sized.status(), 404);
        assert!(matches!(
            framing(&Method::GET, &sized).unwrap(),
            Framing::Length(12)
        ));
        assert!(matches!(
            framing(&Method::HEAD, &sized).unwrap(),
            Framing::Empty
        ));
        let old = head(b"HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(old.version(), Version::HTTP_11);
        assert!(matches!(
            framing(&Method::GET, &old).unwrap(),
            Framing::UntilClose
        ));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nX: y").unwrap().is_none());
    }

    #[test]
    fn hostile_heads_are_refused() {
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        let twice = head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert!(framing(&Method::GET, &twice).is_err());
        let bad = head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
        assert!(framing(&Method::GET, &bad).is_err());
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_head(&many).is_err());
    }

    #[test]
    fn the_request_keeps_the_client_host_and_closes() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("live.example"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("ffplay"));
        let origin: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let text = String::from_utf8(request_head(
            origin,
            &Method::GET,
            "/live/a.flv?t=1",
            &headers,
        ))
        .unwrap();
        assert!(
            text.starts_with("GET /live/a.flv?t=1 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("host: live.example\r\n"), "{text}");
        assert!(text.contains("user-agent: ffplay\r\n"), "{text}");
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        let bare =
            String::from_utf8(request_head(origin, &Method::GET, "/", &HeaderMap::new())).unwrap();
        assert!(bare.contains("host: 10.0.0.1:8080\r\n"), "{bare}");
    }
}
