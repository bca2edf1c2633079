//! HTTP streaming on `PROXY_HTTP_SERVER`: HTTP-FLV, HTTP-TS and HLS relayed from the origin
//! that owns the stream, plus static files.
//!
//! - `GET /app/stream.flv` and `/app/stream.ts`: the origin's never-ending body is streamed
//!   through frame by frame; the stream's lease lives as long as the response body, so a player
//!   keeps its stream owned and closing the player closes the origin request.
//! - `GET /app/stream.m3u8`: the playlist is fetched from the owner and every URI in it is
//!   rewritten to come back here with a playback session id (`spbhid`), stored through the
//!   load balancer so a segment request may land on any proxy replica.
//! - Requests carrying `spbhid` (segments, init sections, variant playlists) go to the origin
//!   recorded in that session.

pub mod chunked;
pub mod fanout;
pub(crate) mod forward;
mod live;
mod metered;
pub mod playlist;
pub mod request;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    config::Config,
    httpd::{
        direct::{DirectAnswer, Shortcut},
        server,
    },
    lifecycle::Lifecycle,
    origins::{Origins, StreamKey},
};
use forward::Forwarder;
use request::{RequestKind, classify};

pub use request::RequestError;

/// The body every handler answers with.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What HTTP streaming works with.
#[derive(Clone)]
pub struct Streaming {
    pub config: Arc<Config>,
    pub origins: Arc<Origins>,
    pub lifecycle: Lifecycle,
    pub requests: HttpMetrics,
}

/// HTTP streaming requests by kind, bytes sent, live players. The `Default` set records for
/// nobody.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    bytes_to_client: Counter,
    live_active: Gauge,
    fanout: fanout::FanoutMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    kind: &'static str,
}

impl HttpMetrics {
    /// A set registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "http_requests",
            "HTTP streaming requests, by kind (live, playlist, segment, other)",
            metrics.requests.clone(),
        );
        registry.register(
            "http_bytes_to_client",
            "Body bytes of HTTP-FLV/TS streams, HLS playlists and segments relayed from origins to players",
            metrics.bytes_to_client.clone(),
        );
        registry.register(
            "http_live_sessions_active",
            "HTTP-FLV and HTTP-TS players streaming now",
            metrics.live_active.clone(),
        );
        registry.register(
            "http_fanout_streams",
            "HTTP-FLV origin requests shared by this replica's players now (PROXY_HTTP_FANOUT)",
            metrics.fanout.hubs.clone(),
        );
        registry.register(
            "http_fanout_skips",
            "HTTP-FLV players that fell the whole backlog behind and skipped to the next keyframe",
            metrics.fanout.skips.clone(),
        );
        registry.register(
            "http_fanout_dropped",
            "HTTP-FLV players closed for falling behind too often",
            metrics.fanout.dropped.clone(),
        );
        metrics
    }

    fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&HttpLabels { kind }).inc();
    }
}

/// Everything a request handler needs.
struct HttpState {
    streaming: Streaming,
    forwarder: Forwarder,
    static_files: Option<ServeDir>,
}

/// Serves HTTP streaming until the proxy drains; connections already streaming finish on their
/// own or when sessions are terminated.
pub async fn serve(listener: TcpListener, streaming: Streaming) {
    let static_files = streaming.config.static_files.as_ref().map(ServeDir::new);
    let limits = server::HttpLimits::streaming(&streaming.config.http);
    let lifecycle = streaming.lifecycle.clone();
    let http = &streaming.config.http;
    let fanout = http.fanout.then(|| {
        fanout::Fanout::new(
            usize::from(http.fanout_backlog),
            streaming.requests.fanout.clone(),
        )
    });
    let players = fanout.is_some();
    let state = Arc::new(HttpState {
        forwarder: Forwarder::new(fanout),
        static_files,
        streaming,
    });
    let shortcut = players.then(|| Arc::new(FanoutPlayers(state.clone())) as Arc<dyn Shortcut>);
    server::serve_with_shortcut(
        listener,
        "HTTP streaming",
        limits,
        server::Role::Sessions,
        lifecycle,
        move |req, peer: server::Connection| {
            let state = state.clone();
            async move { allow_cors(route(&state, req, peer.client).await) }
        },
        shortcut,
    )
    .await;
}

/// HTTP-FLV players of the fan-out, answered without hyper: each then costs the proxy little
/// more than its socket (see `httpd::direct`). Anything else goes through [`route`].
struct FanoutPlayers(Arc<HttpState>);

impl Shortcut for FanoutPlayers {
    fn take(&self, head: Request<()>, client: SocketAddr) -> Option<DirectAnswer> {
        if head.method() != Method::GET || !head.uri().path().ends_with(".flv") {
            return None;
        }
        let kind = classify(&head).ok()?;
        let label = kind.label();
        let RequestKind::Live { key } = kind else {
            return None;
        };
        let state = self.0.clone();
        Some(Box::pin(async move {
            state.streaming.requests.request(label);
            allow_cors(live(&state, head, key, client).await)
        }))
    }
}

fn allow_cors(mut response: Response<Body>) -> Response<Body> {
    // SRS answers every origin with CORS allowed; players on other sites depend on it.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn route(state: &HttpState, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        return preflight();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and OPTIONS are served here",
        );
    }
    let kind = match classify(&req) {
        Ok(kind) => kind,
        Err(err) => {
            tracing::info!(client = %client, path = %req.uri().path(), error = %err, "bad HTTP request");
            return json_error(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };
    let metrics = &state.streaming.requests;
    metrics.request(kind.label());
    let relayed = match kind {
        RequestKind::Live { key } => return live(state, req, key, client).await,
        RequestKind::Playlist { key, session } => {
            state
                .forwarder
                .playlist(&state.streaming.origins, req, key, session, client)
                .await
        }
        RequestKind::SessionFile { session } => {
            state
                .forwarder
                .session_file(&state.streaming.origins, req, &session, client)
                .await
        }
        RequestKind::Other => return static_file(state, req).await,
    };
    relayed.map(|body| metered::meter(body, metrics.bytes_to_client.clone(), None))
}

/// HTTP-FLV and HTTP-TS: the origin's live body, metered.
async fn live<B: Sync>(
    state: &HttpState,
    req: Request<B>,
    key: StreamKey,
    client: SocketAddr,
) -> Response<Body> {
    let metrics = &state.streaming.requests;
    let response = state
        .forwarder
        .live(&state.streaming.origins, req, key, client)
        .await;
    let live = response
        .status()
        .is_success()
        .then(|| metrics.live_active.clone());
    response.map(|body| metered::meter(body, metrics.bytes_to_client.clone(), live))
}

async fn static_file(state: &HttpState, req: Request<Incoming>) -> Response<Body> {
    let Some(dir) = &state.static_files else {
        return json_error(StatusCode::NOT_FOUND, "no such stream or file");
    };
    match dir.clone().oneshot(req).await {
        Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed_unsync()),
        Err(err) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read static file: {err}"),
        ),
    }
}

fn preflight() -> Response<Body> {
    let mut response = Response::new(empty());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An error answer in the JSON shape the rest of the proxy uses.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
