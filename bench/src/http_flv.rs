//! HTTP-FLV: players that read an endless FLV body and check it tag by tag, and a small
//! HTTP-FLV origin (nginx-rtmp serves no HTTP-FLV) for the fan-out benchmark.
//!
//! The origin does what SRS's HTTP-FLV remuxer does for a live stream: it plays the stream over
//! RTMP from a real RTMP origin (nginx-rtmp, fed by a publisher), keeps the codec headers and
//! the current group of pictures so a new player starts at a keyframe, and sends every tag to
//! every player as a chunked `video/x-flv` body. In `Loop` mode it serves a sample file in a
//! loop as fast as each player reads, to measure throughput rather than real-time delivery.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use originstack_proxy::rtmp::Intent;
use tokio::{net::TcpListener, sync::broadcast};
use tokio_util::sync::CancellationToken;

use crate::{
    flv::{self, Tag},
    rtmp_load::{self, Counters, RtmpTarget, split_host_port},
};

/// `http://host[:port]/app/stream.flv[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFlvTarget {
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub path: String,
}

impl HttpFlvTarget {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url:?} is not an http:// URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let route = path.split('?').next().unwrap_or_default();
        anyhow::ensure!(
            route.ends_with(".flv") && route.matches('/').count() >= 2,
            "{url:?} is not an HTTP-FLV URL (http://host/app/stream.flv)"
        );
        let (host, port) = split_host_port(authority, 80)?;
        Ok(Self {
            host,
            port,
            path: path.to_owned(),
        })
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        rtmp_load::resolve(&self.host, self.port)
    }
}

/// Plays an HTTP-FLV URL until `stop`: the body must be FLV, every tag is checked and its media
/// counted.
pub async fn play(
    addr: SocketAddr,
    target: HttpFlvTarget,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    if let Err(err) = play_inner(addr, &target, &counters, &stop).await {
        counters.count_failure(&target.path, "HTTP-FLV player failed", &format!("{err:#}"));
    }
}

async fn play_inner(
    addr: SocketAddr,
    target: &HttpFlvTarget,
    counters: &Counters,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    socket.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .context("HTTP handshake")?;
    let driver = tokio::spawn(connection);
    let request = Request::get(target.path.as_str())
        .header(header::HOST, format!("{}:{}", target.host, target.port))
        .header(header::USER_AGENT, "originstack-bench")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("send GET")?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "answered {}",
        response.status()
    );
    counters.count_up();
    let mut body = response.into_body();
    let mut reader = flv::Reader::default();
    let result = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            frame = body.frame() => frame,
        };
        match frame {
            None => break Err(anyhow::anyhow!("the body ended")),
            Some(Err(err)) => break Err(anyhow::Error::new(err).context("read body")),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    reader.feed(data, |tag| {
                        if tag.kind != originstack_proxy::rtmp::control::kind::DATA_AMF0 {
                            counters.count_media(tag.payload.len());
                        }
                    })?;
                }
            }
        }
    };
    driver.abort();
    result
}

/// Where the origin's FLV comes from.
pub enum OriginSource {
    /// A live stream played over RTMP (from nginx-rtmp) and fanned out to every player.
    Live {
        rtmp: SocketAddr,
        target: RtmpTarget,
    },
    /// A sample served in a loop at full speed to each player.
    Loop { tags: Vec<Tag> },
}

type OriginBody = BoxBody<Bytes, Infallible>;

/// Serves `GET /<app>/<stream>.flv` from `source` for as long as the process runs.
pub async fn serve_origin(listener: TcpListener, source: OriginSource) -> anyhow::Result<()> {
    let feed = match source {
        OriginSource::Live { rtmp, target } => {
            let feed = Arc::new(LiveFeed::new());
            tokio::spawn(feed.clone().pull(rtmp, target));
            Feed::Live(feed)
        }
        OriginSource::Loop { tags } => Feed::Loop(loop_pass(&tags)),
    };
    let feed = Arc::new(feed);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let feed = feed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let feed = feed.clone();
                async move { Ok::<_, Infallible>(answer(&feed, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

enum Feed {
    Live(Arc<LiveFeed>),
    /// One pass of the sample as FLV bytes; served in slices, so sending costs no copy.
    Loop(Bytes),
}

fn answer(feed: &Feed, req: &Request<hyper::body::Incoming>) -> Response<OriginBody> {
    if !req.uri().path().ends_with(".flv") {
        let mut response = Response::new(
            http_body_util::Full::new(Bytes::from_static(b"not found"))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let body = match feed {
        Feed::Live(live) => BodyExt::boxed(frames(live.subscribe())),
        Feed::Loop(pass) => BodyExt::boxed(frames(looped(pass.clone()))),
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "video/x-flv".parse().expect("static"));
    response
}

fn frames(
    stream: impl Stream<Item = Bytes> + Send + Sync + 'static,
) -> StreamBody<impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static> {
    StreamBody::new(stream.map(|bytes| Ok(Frame::data(bytes))))
}

/// The sample as one FLV byte run (header excluded). Timestamps restart at each pass; the
/// players of this benchmark check the FLV structure, they do not decode.
fn loop_pass(tags: &[Tag]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    for tag in tags {
        tag.encode_into(&mut out);
    }
    out.freeze()
}

/// Size of each body frame of a looped sample: large writes, as a busy origin makes.
const LOOP_FRAME: usize = 64 * 1024;

fn looped(pass: Bytes) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
    let header = Bytes::from_static(&flv::HEADER);
    futures::stream::once(async move { header }).chain(futures::stream::unfold(
        (pass, 0usize),
        |(pass, at)| async move {
            if pass.is_empty() {
                return None;
            }
            let end = (at + LOOP_FRAME).min(pass.len());
            let frame = pass.slice(at..end);
            let next = if end == pass.len() { 0 } else { end };
            Some((frame, (pass, next)))
        },
    ))
}

/// Tags sent to every player; a player more than this many behind skips ahead.
const FANOUT_QUEUE: usize = 2048;

/// The live stream as the origin holds it.
struct LiveFeed {
    state: Mutex<LiveState>,
}

struct LiveState {
    /// Metadata and codec configuration, latest of each kind.
    headers: Vec<(u8, Bytes)>,
    /// Tags since the last keyframe: a new player starts with these.
    gop: Vec<Bytes>,
    sender: broadcast::Sender<Bytes>,
}

impl LiveFeed {
    fn new() -> Self {
        Self {
            state: Mutex::new(LiveState {
                headers: Vec::new(),
                gop: Vec::new(),
                sender: broadcast::channel(FANOUT_QUEUE).0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays the stream over RTMP for as long as the process runs, reconnecting when it ends.
    async fn pull(self: Arc<Self>, rtmp: SocketAddr, target: RtmpTarget) {
        loop {
            match rtmp_load::open(rtmp, &target, Intent::Play).await {
                Ok(mut connection) => loop {
                    match connection.read_message().await {
                        Ok(message) => {
                            if let Some(tag) = Tag::from_message(&message) {
                                self.push(&tag);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "HTTP-FLV origin lost its RTMP source");
                            break;
                        }
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "HTTP-FLV origin cannot play its RTMP source")
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn push(&self, tag: &Tag) {
        let bytes = tag.encode();
        let mut state = self.lock();
        if tag.is_header() {
            let kind = tag.kind;
            state.headers.retain(|(k, _)| *k != kind);
            state.headers.push((kind, bytes));
            return;
        }
        if tag.is_keyframe() {
            state.gop.clear();
        }
        state.gop.push(bytes.clone());
        // No receivers is fine: nobody is playing yet.
        let _ = state.sender.send(bytes);
    }

    /// FLV header, headers and the current GOP, then every new tag. Taken under the lock so
    /// no tag falls between the snapshot and the subscription.
    fn subscribe(&self) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
        let state = self.lock();
        let mut first: Vec<Bytes> = vec![Bytes::from_static(&flv::HEADER)];
        first.extend(state.headers.iter().map(|(_, b)| b.clone()));
        first.extend(state.gop.iter().cloned());
        let receiver = state.sender.subscribe();
        drop(state);
        futures::stream::iter(first).chain(futures::stream::unfold(
            receiver,
            |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(bytes) => return Some((bytes, receiver)),
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            tracing::warn!(skipped, "an HTTP-FLV player fell behind; tags skipped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_flv_urls() {
        let target = HttpFlvTarget::parse("http://127.0.0.1:8080/live/cam.flv?token=x").unwrap();
        assert_eq!(
            target,
            HttpFlvTarget {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/live/cam.flv?token=x".into()
            }
        );
        assert_eq!(
            HttpFlvTarget::parse("http://h/live/cam.flv").unwrap().port,
            80
        );
        assert!(HttpFlvTarget::parse("http://h/live/cam.m3u8").is_err());
        assert!(HttpFlvTarget::parse("http://h/cam.flv").is_err());
        assert!(HttpFlvTarget::parse("rtmp://h/live/cam").is_err());
    }

    #[tokio::test]
    async fn looped_body_is_a_valid_endless_flv() {
        let tags = vec![
            Tag {
                kind: 9,
                timestamp: 0,
                payload: Bytes::from(vec![0x17; 50_000]),
            },
            Tag {
                kind: 8,
                timestamp: 20,
                payload: Bytes::from_static(&[0xAF, 1, 2]),
            },
        ];
        let mut stream = Box::pin(looped(loop_pass(&tags)));
        let mut reader = flv::Reader::default();
        let mut seen = 0;
        for _ in 0..10 {
            let bytes = stream.next().await.unwrap();
            reader.feed(&bytes, |_| seen += 1).unwrap();
        }
        assert!(seen >= 8, "{seen} tags");
    }

    #[tokio::test]
    async fn live_feed_starts_players_at_the_last_keyframe() {
        let feed = LiveFeed::new();
        let tag = |kind, payload: &'static [u8]| Tag {
            kind,
            timestamp: 0,
            payload: Bytes::from_static(payload),
        };
        feed.push(&tag(9, &[0x17, 0, 1])); // AVC sequence header
        feed.push(&tag(9, &[0x17, 1, 1])); // keyframe
        feed.push(&tag(9, &[0x27, 1, 2])); // inter frame
        feed.push(&tag(9, &[0x17, 1, 3])); // next keyframe: the GOP restarts
        let mut stream = Box::pin(feed.subscribe());
        feed.push(&tag(8, &[0xAF, 1, 4]));
        let mut reader = flv::Reader::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let bytes = stream.next().await.unwrap();
            reader.feed(&bytes, |t| seen.push(t.payload[2])).unwrap();
        }
        assert_eq!(seen, [1, 3, 4]);
    }
}
