//! Relaying HTTP requests to origins: live bodies streamed as they come, playlists rewritten.

use std::{
    hash::{Hash, Hasher},
    net::SocketAddr,
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};

use super::{
    Body, BoxError,
    fanout::{Fanout, HubKey},
    json_error, live, playlist,
};
use crate::{
    httpd::message::{forwarded_headers, strip_hop_by_hop},
    origins::{Origins, PickError, Protocol, StreamKey, StreamLease},
};

/// Kind under which playback sessions are stored through the load balancer.
const SESSION_KIND: &str = "hls";
/// A playback session outlives a few playlist reloads; each reload refreshes it.
const SESSION_TTL: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes read from an origin at a time by hyper's client, which carries playlists and segments
/// (see [`Forwarder::new`]; live bodies have their own client, [`live`]); also the largest
/// response head accepted from an origin.
const ORIGIN_READ_SIZE: usize = 8 * 1024;
/// Time allowed for the origin's response head (a live body then streams without a limit).
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a playback session records: where its files are.
#[derive(Debug, Serialize, Deserialize)]
struct PlaybackSession {
    origin: SocketAddr,
    stream: String,
}

pub(super) struct Forwarder {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// HTTP-FLV players sharing origin requests (`PROXY_HTTP_FANOUT`), when on.
    fanout: Option<Fanout>,
}

impl Forwarder {
    pub(super) fn new(fanout: Option<Fanout>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            // hyper's read buffer otherwise grows up to ~400 KiB on a burst (a new player's
            // first GOP) and keeps that allocation for the life of the connection: with many
            // players of live bodies that was most of the proxy's memory (174 KiB a player).
            // Fixed 8 KiB reads carry any live stream; an origin's response head must fit too.
            .http1_read_buf_exact_size(ORIGIN_READ_SIZE)
            .build(connector);
        Self { client, fanout }
    }

    /// HTTP-FLV / HTTP-TS: the body streams for as long as the player reads it, holding the
    /// lease. HTTP-FLV players share a request per stream when the fan-out is on.
    pub(super) async fn live<B: Sync>(
        &self,
        origins: &Origins,
        req: Request<B>,
        key: StreamKey,
        client: SocketAddr,
    ) -> Response<Body> {
        if let Some(fanout) = &self.fanout
            && req.method() == Method::GET
            && req.uri().path().ends_with(".flv")
        {
            tracing::info!(stream = %key, client = %client, "HTTP-FLV player");
            let hub = HubKey {
                stream: key.clone(),
                query: req.uri().query().unwrap_or_default().to_string(),
            };
            return fanout
                .play(hub, || self.open_live(origins, &req, &key, client))
                .await;
        }
        match self.open_live(origins, &req, &key, client).await {
            Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed_unsync()),
            Err(answer) => answer,
        }
    }

    /// The live body of `req` from the owner of `key`, holding its lease; or the answer for a
    /// stream that cannot be reached.
    async fn open_live<B: Sync>(
        &self,
        origins: &Origins,
        req: &Request<B>,
        key: &StreamKey,
        client: SocketAddr,
    ) -> Result<Response<live::LiveBody>, Response<Body>> {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let headers = forwarded_headers(req.headers(), client);
        let deadlines = live::Deadlines {
            connect: CONNECT_TIMEOUT,
            head: RESPONSE_HEAD_TIMEOUT,
        };
        let fetched = self
            .fetch_from_owner(origins, key, client, |origin| {
                let headers = &headers;
                let method = req.method();
                async move {
                    let response = live::open(origin, method, target, headers, deadlines)
                        .await
                        .map_err(FetchError::Live)?;
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(parts, body))
                }
            })
            .await;
        let (lease, _, response) = fetched?;
        tracing::info!(stream = %key, client = %client, origin = %lease.origin().server, "HTTP live stream from the origin");
        Ok(response.map(|body| body.with_lease(lease)))
    }

    /// HLS playlist: fetched from the owner (or the session's origin), URIs rewritten.
    pub(super) async fn playlist(
        &self,
        origins: &Origins,
        req: Request<Incoming>,
        key: StreamKey,
        session: Option<String>,
        client: SocketAddr,
    ) -> Response<Body> {
        // A variant playlist of an existing session comes from that session's origin.
        if let Some(id) = session
            && let Some(known) = self.load_session(origins, &id).await
        {
            return self
                .fetch_playlist(origins, &req, known.origin, &known.stream, &id, client)
                .await;
        }
        let fetched = self
            .fetch_from_owner(origins, &key, client, |origin| {
                self.fetch(origin, &req, client)
            })
            .await;
        let (lease, origin, response) = match fetched {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let id = session_id(&key, &lease.origin().server, &lease.origin().incarnation());
        self.rewrite_playlist(
            origins,
            &req,
            response,
            origin,
            &key.to_string(),
            &id,
            client,
        )
        .await
    }

    /// Picks the owner of `key` and sends it the request. An owner that refuses the connection
    /// is taken out of the registry and the stream picked once more, so a player is not lost
    /// to an origin that died before its heartbeats stopped counting.
    async fn fetch_from_owner<T, F, Fut>(
        &self,
        origins: &Origins,
        key: &StreamKey,
        client: SocketAddr,
        fetch: F,
    ) -> Result<(StreamLease, SocketAddr, T), Response<Body>>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let lease = origins
                .lease(key)
                .await
                .map_err(|err| pick_failed(key, client, &err))?;
            let Some(origin) = lease.origin().endpoint(Protocol::Http) else {
                return Err(no_http_endpoint(&lease));
            };
            match fetch(origin).await {
                Ok(response) => return Ok((lease, origin, response)),
                Err(err) if attempts < 2 && err.is_refused() => {
                    tracing::warn!(stream = %key, client = %client, origin = %origin, error = %err, "origin refused, picking again");
                    origins.origin_refused(&lease.origin().server).await;
                }
                Err(err) => return Err(origin_unreachable(&key.to_string(), origin, client, &err)),
            }
        }
    }

    /// A segment, init section or key of a playback session.
    pub(super) async fn session_file(
        &self,
        origins: &Origins,
        req: Request<Incoming>,
        id: &str,
        client: SocketAddr,
    ) -> Response<Body> {
        let Some(session) = self.load_session(origins, id).await else {
            return json_error(
                StatusCode::NOT_FOUND,
                "unknown or expired playback session; reload the playlist",
            );
        };
        match self.fetch(session.origin, &req, client).await {
            Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed_unsync()),
            Err(err) => origin_unreachable(&session.stream, session.origin, client, &err),
        }
    }

    async fn fetch_playlist(
        &self,
        origins: &Origins,
        req: &Request<Incoming>,
        origin: SocketAddr,
        stream: &str,
        id: &str,
        client: SocketAddr,
    ) -> Response<Body> {
        match self.fetch(origin, req, client).await {
            Ok(response) => {
                self.rewrite_playlist(origins, req, response, origin, stream, id, client)
                    .await
            }
            Err(err) => origin_unreachable(stream, origin, client, &err),
        }
    }

    /// Rewrites the origin's playlist so every URI comes back here with session `id`, and
    /// records the session (which origin serves its files) through the load balancer.
    #[allow(clippy::too_many_arguments)] // one request's context, passed once
    async fn rewrite_playlist(
        &self,
        origins: &Origins,
        req: &Request<Incoming>,
        response: Response<Incoming>,
        origin: SocketAddr,
        stream: &str,
        id: &str,
        client: SocketAddr,
    ) -> Response<Body> {
        if response.status() != StatusCode::OK {
            return response.map(|body| body.map_err(BoxError::from).boxed_unsync());
        }
        let (mut parts, body) = response.into_parts();
        let text = match Limited::new(body, playlist::MAX_PLAYLIST_BYTES)
            .collect()
            .await
        {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            Err(err) => {
                tracing::warn!(stream, client = %client, origin = %origin, error = %err, "cannot read the origin's playlist");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot read the origin's playlist: {err}"),
                );
            }
        };
        let rewritten = match playlist::rewrite(&text, req.uri().path(), id) {
            Ok(rewritten) => rewritten,
            Err(err) => {
                tracing::warn!(stream, client = %client, origin = %origin, error = %err, "unusable playlist from origin");
                return json_error(StatusCode::BAD_GATEWAY, &err.to_string());
            }
        };
        let record = PlaybackSession {
            origin,
            stream: stream.to_owned(),
        };
        let value = serde_json::to_string(&record).expect("a playback session serialises");
        if let Err(err) = origins
            .put_session(SESSION_KIND, id, &value, SESSION_TTL)
            .await
        {
            tracing::warn!(stream, client = %client, error = %err, "cannot store the HLS playback session");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot store the playback session: {err}"),
            );
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        let mut out = Response::from_parts(
            parts,
            Full::new(Bytes::from(rewritten))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.apple.mpegurl"),
        );
        out
    }

    async fn load_session(&self, origins: &Origins, id: &str) -> Option<PlaybackSession> {
        match origins.get_session(SESSION_KIND, id).await {
            Ok(Some(value)) => serde_json::from_str(&value).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(session = id, error = %err, "cannot read the HLS playback session");
                None
            }
        }
    }

    /// Sends the client's request to `origin` (same path and query) and returns the response
    /// head with its body still streaming.
    async fn fetch(
        &self,
        origin: SocketAddr,
        req: &Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<Incoming>, FetchError> {
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = format!("http://{origin}{path_and_query}")
            .parse()
            .map_err(|_| FetchError::BadTarget)?;
        let mut upstream = Request::builder()
            .method(req.method())
            .uri(uri)
            .body(Empty::new())
            .map_err(|_| FetchError::BadTarget)?;
        *upstream.headers_mut() = forwarded_headers(req.headers(), client);
        let response = tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, self.client.request(upstream))
            .await
            .map_err(|_| FetchError::Timeout)?
            .map_err(FetchError::Http)?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the request target cannot be sent to an origin")]
    BadTarget,
    #[error("the origin sent no response head within {RESPONSE_HEAD_TIMEOUT:?}")]
    Timeout,
    #[error("{0}")]
    Http(hyper_util::client::legacy::Error),
    #[error("{0}")]
    Live(live::LiveError),
}

impl FetchError {
    /// Nothing listens on the origin's port (the connection was refused).
    fn is_refused(&self) -> bool {
        let err = match self {
            Self::Http(err) => err,
            Self::Live(err) => return err.is_refused(),
            _ => return false,
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(current) = cause {
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                return io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            cause = current.source();
        }
        false
    }
}

/// The session id of one stream on one origin incarnation. Deterministic, so a player that
/// reloads the playlist from its original URL refreshes one session instead of creating one
/// per reload; a new owner (failover, restart) gives a new id.
fn session_id(key: &StreamKey, server: &str, incarnation: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    (key.to_string(), server, incarnation).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn pick_failed(key: &StreamKey, client: SocketAddr, err: &PickError) -> Response<Body> {
    tracing::warn!(stream = %key, client = %client, error = %err, "no origin for HTTP request");
    json_error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
}

fn no_http_endpoint(lease: &StreamLease) -> Response<Body> {
    let message = format!(
        "origin {} of stream {} has no HTTP endpoint",
        lease.origin().server,
        lease.stream()
    );
    tracing::warn!(stream = %lease.stream(), "{message}");
    json_error(StatusCode::BAD_GATEWAY, &message)
}

fn origin_unreachable(
    stream: &str,
    origin: SocketAddr,
    client: SocketAddr,
    err: &FetchError,
) -> Response<Body> {
    tracing::warn!(stream, client = %client, origin = %origin, error = %err, "origin unreachable");
    json_error(
        StatusCode::BAD_GATEWAY,
        &format!("origin {origin} is unreachable: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_follow_the_owner() {
        let key = StreamKey::new(None, "live", "cam").unwrap();
        assert_eq!(session_id(&key, "o1", "a"), session_id(&key, "o1", "a"));
        assert_ne!(session_id(&key, "o1", "a"), session_id(&key, "o2", "a"));
        assert_ne!(session_id(&key, "o1", "a"), session_id(&key, "o1", "b"));
    }
}
