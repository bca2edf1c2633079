//! Answers chosen requests without hyper: the response head and body are written straight to
//! the socket, then the connection is closed.
//!
//! It exists for players of never-ending bodies (HTTP-FLV through the fan-out). hyper keeps an
//! 8 KiB read buffer and an 8 KiB head buffer for every connection's whole life, which is most
//! of what such a player would cost; here a player holds its socket, its task and the frames in
//! flight. hyper has no hook to give a connection back or to size those buffers, so the few
//! lines of HTTP/1 this needs are written here.
//!
//! The request head is peeked, not read: when it is incomplete in the first segment, not
//! plain (a body, odd framing, too many headers) or not one the [`Shortcut`] takes, the
//! untouched connection goes to hyper as any other.

use std::{
    io::{self, IoSlice},
    net::SocketAddr,
    pin::Pin,
    time::Duration,
};

use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use tokio::{io::AsyncWriteExt, net::TcpStream};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type DirectBody = UnsyncBoxBody<Bytes, BoxError>;
pub type DirectAnswer = Pin<Box<dyn Future<Output = Response<DirectBody>> + Send>>;

/// Picks the requests answered directly.
pub trait Shortcut: Send + Sync + 'static {
    /// The answer to `head` if this shortcut takes it; `None` leaves it to hyper.
    fn take(&self, head: Request<()>, client: SocketAddr) -> Option<DirectAnswer>;
}

/// Most of a player's request head looked at; a longer one goes to hyper.
const PEEK_BYTES: usize = 4096;
/// Headers of a head looked at; more go to hyper.
const MAX_HEADERS: usize = 32;
/// Body frames written at once, at most (each one I/O vector, well under `IOV_MAX`).
const MAX_BATCH: usize = 64;

/// Parses the start of a connection's bytes as an HTTP/1.x request head without a body: the
/// request and the head's length, or `None` for anything this module leaves to hyper
/// (incomplete so far, a body, odd framing or target).
pub fn parse_head(bytes: &[u8]) -> Option<(Request<()>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return None;
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .version(if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return None;
        };
        // A request with a body (or framing to check) is hyper's.
        if name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && value.as_bytes() != b"0")
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            return None;
        }
        builder = builder.header(name, value);
    }
    match builder.body(()) {
        // Only origin-form targets: hyper checks and answers the others.
        Ok(request) if request.uri().path().starts_with('/') && request.uri().host().is_none() => {
            Some((request, len))
        }
        _ => None,
    }
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The response says its length.
    Length,
    /// HTTP/1.1 chunks.
    Chunked,
    /// HTTP/1.0: the body ends with the connection.
    Close,
    /// HEAD or a status without a body.
    None,
}

impl Framing {
    pub fn of(
        method: &Method,
        version: Version,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Self {
        if method == Method::HEAD
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
        {
            Framing::None
        } else if headers.contains_key(header::CONTENT_LENGTH) {
            Framing::Length
        } else if version == Version::HTTP_10 {
            Framing::Close
        } else {
            Framing::Chunked
        }
    }
}

/// The status line and headers of `response`, for a `version` request, framed as `framing`;
/// the connection closes after it.
pub fn encode_head<B>(
    response: &Response<B>,
    version: Version,
    framing: Framing,
    date: &str,
) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        // Framing and connection handling are this writer's.
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !response.headers().contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// The size line of a chunk of `len` bytes: hex digits and CRLF, in a fixed buffer.
pub fn chunk_size_line(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = format!("{len:x}");
    line[..digits.len()].copy_from_slice(digits.as_bytes());
    line[digits.len()..digits.len() + 2].copy_from_slice(b"\r\n");
    (line, digits.len() + 2)
}

/// Serves `stream` directly if its first request is one `shortcut` takes; otherwise gives the
/// untouched stream back for hyper. `header_timeout` bounds the wait for the head's first
/// bytes; `write_timeout` closes a client that reads nothing.
pub(super) async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    header_timeout: Duration,
    write_timeout: Option<Duration>,
    shortcut: &dyn Shortcut,
) -> Option<TcpStream> {
    // A client slow to send its head is hyper's too: its header timeout closes it.
    if tokio::time::timeout(header_timeout, stream.readable())
        .await
        .is_err()
    {
        return Some(stream);
    }
    let Some((head, len)) = peek_head(&stream).await else {
        return Some(stream);
    };
    let method = head.method().clone();
    let version = head.version();
    let Some(answer) = shortcut.take(head, client) else {
        return Some(stream);
    };
    let mut stream = stream;
    if let Err(err) = consume(&mut stream, len).await {
        tracing::debug!(client = %client, error = %err, "HTTP connection failed");
        return None;
    }
    let response = answer.await;
    if let Err(err) = write_response(&mut stream, response, &method, version, write_timeout).await {
        tracing::debug!(client = %client, error = %err, "HTTP response ended early");
    }
    None
}

async fn peek_head(stream: &TcpStream) -> Option<(Request<()>, usize)> {
    // On the heap and freed before the answer: the task keeps no buffer while it streams.
    let mut buf = vec![0; PEEK_BYTES];
    match stream.peek(&mut buf).await {
        Ok(n) => parse_head(&buf[..n]),
        Err(_) => None,
    }
}

/// Reads the `len` bytes of the head peeked before.
async fn consume(stream: &mut TcpStream, len: usize) -> io::Result<()> {
    let mut buf = vec![0; len];
    tokio::io::AsyncReadExt::read_exact(stream, &mut buf).await?;
    Ok(())
}

async fn write_response(
    stream: &mut TcpStream,
    response: Response<DirectBody>,
    method: &Method,
    version: Version,
    write_timeout: Option<Duration>,
) -> io::Result<()> {
    let framing = Framing::of(method, version, response.status(), response.headers());
    let head = encode_head(
        &response,
        version,
        framing,
        &httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    write_all(stream, &mut [IoSlice::new(&head)], write_timeout).await?;
    drop(head);
    let mut body = response.into_body();
    if framing != Framing::None {
        let mut ended = false;
        while !ended {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                gone = client_gone(stream) => return gone,
            };
            let mut batch = Vec::new();
            let mut failed = None;
            ended = gather(frame, &mut batch, &mut failed);
            // What else is ready goes in the same write: a player behind (a new one's start,
            // a busy machine) catches up in a few system calls, not one per tag.
            while !ended && failed.is_none() && batch.len() < MAX_BATCH {
                match body.frame().now_or_never() {
                    None => break,
                    Some(None) => ended = true,
                    Some(Some(frame)) => ended = gather(Some(frame), &mut batch, &mut failed),
                }
            }
            write_batch(stream, &batch, framing, write_timeout).await?;
            if let Some(err) = failed {
                // The body failed (a player cut for falling behind): end the connection
                // without the last chunk, so the player sees the stream broke.
                return Err(io::Error::other(err));
            }
        }
        if framing == Framing::Chunked {
            write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")], write_timeout).await?;
        }
    }
    stream.shutdown().await
}

/// Adds a body frame's data to `batch`; true when the body ended. An error goes to `failed`.
fn gather(
    frame: Option<Result<hyper::body::Frame<Bytes>, BoxError>>,
    batch: &mut Vec<Bytes>,
    failed: &mut Option<BoxError>,
) -> bool {
    match frame {
        None => true,
        Some(Err(err)) => {
            *failed = Some(err);
            false
        }
        Some(Ok(frame)) => {
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                batch.push(data);
            }
            false
        }
    }
}

/// Writes `batch` as one chunk (or as is): the frames are shared with other players and
/// written from where they are, never copied.
async fn write_batch(
    stream: &mut TcpStream,
    batch: &[Bytes],
    framing: Framing,
    write_timeout: Option<Duration>,
) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let total = batch.iter().map(Bytes::len).sum();
    let (line, n) = chunk_size_line(total);
    let chunked = framing == Framing::Chunked;
    let mut slices = Vec::with_capacity(batch.len() + 2);
    if chunked {
        slices.push(IoSlice::new(&line[..n]));
    }
    slices.extend(batch.iter().map(|data| IoSlice::new(data)));
    if chunked {
        slices.push(IoSlice::new(b"\r\n"));
    }
    write_all(stream, &mut slices, write_timeout).await
}

/// Writes every slice, closing on a write that makes no progress for `write_timeout`.
async fn write_all(
    stream: &mut TcpStream,
    mut slices: &mut [IoSlice<'_>],
    write_timeout: Option<Duration>,
) -> io::Result<()> {
    while !slices.is_empty() {
        let write = stream.write_vectored(slices);
        let written = match write_timeout {
            Some(limit) => tokio::time::timeout(limit, write).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the client reads nothing")
            })??,
            None => write.await?,
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Completes when the client closes its side (or the socket fails); what it sends after its
/// request is read and ignored.
async fn client_gone(stream: &TcpStream) -> io::Result<()> {
    loop {
        stream.readable().await?;
        match discard(stream) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
}

fn discard(stream: &TcpStream) -> io::Result<usize> {
    let mut sink = [0u8; 256];
    stream.try_read(&mut sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(bytes: &[u8]) -> (Request<()>, usize) {
        parse_head(bytes)
            .unwrap_or_else(|| panic!("{:?} is a plain head", String::from_utf8_lossy(bytes)))
    }

    #[test]
    fn parses_a_players_head() {
        let bytes =
            b"GET /live/a.flv?token=x HTTP/1.1\r\nHost: p\r\nUser-Agent: ffplay\r\n\r\nextra";
        let (request, len) = plain(bytes);
        assert_eq!(len, bytes.len() - "extra".len());
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/live/a.flv");
        assert_eq!(request.uri().query(), Some("token=x"));
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["user-agent"], "ffplay");
        let (request, _) = plain(b"GET /live/a.flv HTTP/1.0\r\n\r\n");
        assert_eq!(request.version(), Version::HTTP_10);
    }

    #[test]
    fn leaves_anything_else_to_hyper() {
        for bytes in [
            &b"GET /live/a.flv HTTP/1.1\r\nHost: p\r\n"[..],
            b"GET /live/a.flv HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://elsewhere/x HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 TLS",
            b"GET /x HTTP/1.1\r\nBad\x01Name: v\r\n\r\n",
        ] {
            assert!(
                parse_head(bytes).is_none(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let bytes = format!("GET /x HTTP/1.1\r\n{many}\r\n");
        assert!(parse_head(bytes.as_bytes()).is_none());
        assert!(parse_head(b"GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_some());
    }

    #[test]
    fn frames_by_version_method_and_length() {
        let none = HeaderMap::new();
        let mut sized = HeaderMap::new();
        sized.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let ok = http::StatusCode::OK;
        assert_eq!(
            Framing::of(&Method::GET, Version::HTTP_11, ok, &none),
            Framing::Chunked
        );
        assert_eq!(
            Framing::of(&Method::GET, Version::HTTP_10, ok, &none),
            Framing::Close
        );
        assert_eq!(
            Framing::of(&Method::GET, Version::HTTP_11, ok, &sized),
            Framing::Length
        );
        assert_eq!(
            Framing::of(&Method::HEAD, Version::HTTP_11, ok, &none),
            Framing::None
        );
        assert_eq!(
            Framing::of(
                &Method::GET,
                Version::HTTP_11,
                http::StatusCode::NO_CONTENT,
                &none
            ),
            Framing::None
        );
    }

    #[test]
    fn encodes_the_head_with_its_framing() {
        let mut response = Response::new(());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("video/x-flv"),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let date = "Sat, 05 Dec 2026 16:00:00 GMT";
        let head = encode_head(&response, Version::HTTP_11, Framing::Chunked, date);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\ndate: Sat, 05 Dec 2026 16:00:00 GMT\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        let head = encode_head(&response, Version::HTTP_10, Framing::Close, date);
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.0 404 Not Found\r\n"), "{head}");
        assert!(
            !head.contains("chunked") && !head.contains("keep-alive"),
            "{head}"
        );
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        for (len, line) in [
            (0, "0\r\n"),
            (10, "a\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let (buf, n) = chunk_size_line(len);
            assert_eq!(&buf[..n], line.as_bytes());
        }
    }
}
