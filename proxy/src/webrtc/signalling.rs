//! WebRTC signalling on `PROXY_HTTP_API`, as SRS serves it:
//!
//! - WHIP `POST /rtc/v1/whip/?app=&stream=` and WHEP `POST /rtc/v1/whep/?app=&stream=`
//!   (`application/sdp` offer in, `201` with the answer and a `Location` out);
//! - SRS's JSON API `POST /rtc/v1/publish/` and `/rtc/v1/play/` (`{"streamurl":..,"sdp":..}`);
//! - `DELETE` and `PATCH` (trickle ICE, ICE restart) on the proxy's `Location`,
//!   `/rtc/v1/resource/<id>`, forwarded to the origin's own `Location` from any replica.
//!
//! The offer goes unchanged to the API of the origin that owns the stream; in the answer
//! every ICE candidate is rewritten to the proxy's WebRTC address (see [`super::sdp`]) and
//! the origin's ICE credentials are stored (see [`super::directory`]) so the UDP relay on
//! any replica can find the session.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::net::TcpListener;

use super::{
    WebRtc, WebRtcOffer,
    directory::{Directory, ResourceRecord, SessionRecord},
    sdp::{self, CandidateAddress},
};
use crate::{
    httpd::{
        json_error,
        message::{forwarded_headers, host_without_port, query_param, strip_hop_by_hop},
        server,
    },
    origins::{PickError, Protocol, StreamKey, StreamKeyError, vhost_of_host},
};

/// SDP offers and answers are a few KB; a JSON envelope adds little.
const MAX_BODY: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Where the proxy's resources live; the id is random and unguessable (it allows DELETE).
const RESOURCE_PATH: &str = "/rtc/v1/resource/";

/// The client's TCP connection: who it is and which proxy address it reached.
pub type Conn = crate::httpd::server::Connection;

pub(super) struct Signalling {
    proxy: WebRtc,
    directory: Arc<Directory>,
    /// The UDP port of `PROXY_WEBRTC_SERVER` as bound.
    media_port: u16,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The kinds of offer, as the metric labels name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Whip,
    Whep,
    Publish,
    Play,
}

impl Api {
    fn is_json(self) -> bool {
        matches!(self, Api::Publish | Api::Play)
    }

    fn label(self) -> &'static str {
        match self {
            Api::Whip => "whip",
            Api::Whep => "whep",
            Api::Publish => "publish",
            Api::Play => "play",
        }
    }
}

/// Why signalling failed, with the status the client gets.
#[derive(Debug, thiserror::Error)]
enum SignalError {
    #[error("the stream is not valid: {0}")]
    BadStream(#[from] StreamKeyError),
    #[error("the request body is larger than {MAX_BODY} bytes or could not be read")]
    BadBody,
    #[error("the JSON body is not an SRS RTC request (`streamurl` and `sdp`): {0}")]
    BadJson(String),
    #[error(transparent)]
    Pick(#[from] PickError),
    #[error("origin {origin} of stream {stream} announces no {what} endpoint in its heartbeat")]
    NoEndpoint {
        origin: String,
        stream: String,
        what: &'static str,
    },
    #[error("origin {origin} is unreachable: {cause}")]
    Origin { origin: SocketAddr, cause: String },
    #[error("origin {origin} answered without usable SDP: {cause}")]
    BadAnswer { origin: SocketAddr, cause: String },
    #[error("unknown or closed WebRTC session")]
    UnknownResource,
    #[error(
        "{0} answered WebRTC sessions are waiting for their client's first STUN request; try again shortly"
    )]
    TooManyWaiting(usize),
    #[error(transparent)]
    Directory(#[from] super::directory::DirectoryError),
}

impl SignalError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadStream(_) | Self::BadJson(_) => StatusCode::BAD_REQUEST,
            Self::BadBody => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Pick(_) | Self::Directory(_) | Self::TooManyWaiting(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NoEndpoint { .. } | Self::Origin { .. } | Self::BadAnswer { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UnknownResource => StatusCode::NOT_FOUND,
        }
    }

    fn label(&self) -> WebRtcOffer {
        match self {
            Self::BadStream(_) | Self::BadJson(_) | Self::BadBody => WebRtcOffer::bad_request,
            Self::Pick(_) => WebRtcOffer::no_origin,
            Self::Directory(_) => WebRtcOffer::backend_error,
            Self::TooManyWaiting(_) => WebRtcOffer::overloaded,
            Self::NoEndpoint { .. } | Self::Origin { .. } | Self::BadAnswer { .. } => {
                WebRtcOffer::origin_error
            }
            Self::UnknownResource => WebRtcOffer::bad_request,
        }
    }

    fn into_response(self) -> Response {
        json_error(self.status(), self)
    }
}

/// What the origin answered.
struct OriginAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

pub(super) fn router(proxy: WebRtc, directory: Arc<Directory>, media_port: u16) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let state = Arc::new(Signalling {
        proxy,
        directory,
        media_port,
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector),
    });
    let offer = |api: Api| {
        move |State(s): State<Arc<Signalling>>, ConnectInfo(conn): ConnectInfo<Conn>, req| async move {
            s.offer(api, conn, req).await
        }
    };
    Router::new()
        .route("/rtc/v1/whip/", post(offer(Api::Whip)))
        .route("/rtc/v1/whip", post(offer(Api::Whip)))
        .route("/rtc/v1/whep/", post(offer(Api::Whep)))
        .route("/rtc/v1/whep", post(offer(Api::Whep)))
        // SRS's older name of WHEP.
        .route("/rtc/v1/whip-play/", post(offer(Api::Whep)))
        .route("/rtc/v1/publish/", post(offer(Api::Publish)))
        .route("/rtc/v1/play/", post(offer(Api::Play)))
        .route("/rtc/v1/resource/{id}", any(resource))
        .fallback(not_found)
        .layer(axum::middleware::map_response(cors))
        .with_state(state)
}

/// Serves signalling until the proxy drains; media sessions go on in the UDP relay.
pub(super) async fn serve(listener: TcpListener, router: Router, proxy: WebRtc) {
    server::serve_router(
        listener,
        "WebRTC signalling",
        server::HttpLimits::api(&proxy.config.http),
        server::Role::Sessions,
        proxy.lifecycle.clone(),
        router,
    )
    .await;
}

/// SRS allows every origin; browser WHIP/WHEP clients must also read `Location` and `ETag`.
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch"),
    );
    response
}

fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "POST, DELETE, PATCH, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Content-Type, Authorization, If-Match",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

async fn not_found(method: Method) -> Response {
    if method == Method::OPTIONS {
        return preflight();
    }
    json_error(StatusCode::NOT_FOUND, "no such WebRTC endpoint")
}

/// DELETE, PATCH and OPTIONS on `/rtc/v1/resource/<id>`.
async fn resource(
    State(s): State<Arc<Signalling>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    match *req.method() {
        Method::OPTIONS => preflight(),
        Method::DELETE | Method::PATCH => match s.on_resource(&id, conn, req).await {
            Ok(response) => response,
            Err(err) => {
                tracing::info!(resource = %id, client = %conn.client, error = %err, "WebRTC resource request failed");
                err.into_response()
            }
        },
        _ => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebRTC session resource takes DELETE or PATCH",
        ),
    }
}

impl Signalling {
    async fn offer(&self, api: Api, conn: Conn, req: Request) -> Response {
        let result = self.try_offer(api, conn, req).await;
        let label = match &result {
            Ok(_) => WebRtcOffer::ok,
            Err(err) => err.label(),
        };
        self.proxy.offers.record(api.label(), label);
        result.unwrap_or_else(|err| {
            tracing::warn!(api = api.label(), client = %conn.client, error = %err, "WebRTC offer failed");
            err.into_response()
        })
    }

    async fn try_offer(&self, api: Api, conn: Conn, req: Request) -> Result<Response, SignalError> {
        // Each answer parks a lease and a record until its client comes: bound them.
        let waiting = self.directory.parked_count();
        if waiting >= self.proxy.config.webrtc.max_sessions {
            return Err(SignalError::TooManyWaiting(waiting));
        }
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let key = if api.is_json() {
            json_stream_key(&body)?
        } else {
            whip_stream_key(&parts.headers, parts.uri.query().unwrap_or(""))?
        };
        let lease = self.proxy.origins.lease(&key).await?;
        let origin = lease.origin().clone();
        let endpoint = |protocol, what| {
            origin
                .endpoint(protocol)
                .ok_or_else(|| SignalError::NoEndpoint {
                    origin: origin.server.clone(),
                    stream: key.to_string(),
                    what,
                })
        };
        let api_addr = endpoint(Protocol::Api, "api")?;
        let rtc_addr = endpoint(Protocol::Rtc, "rtc")?;
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let answer = self
            .send(
                api_addr,
                Method::POST,
                target,
                &parts.headers,
                conn.client,
                body,
            )
            .await?;
        if !answer.status.is_success() {
            tracing::info!(stream = %key, client = %conn.client, origin = %origin.server, status = %answer.status, "origin refused the WebRTC offer");
            return Ok(pass_through(answer, answer_body_unchanged));
        }
        let bad = |cause: String| SignalError::BadAnswer {
            origin: api_addr,
            cause,
        };
        let mut json = None;
        let sdp_text = if api.is_json() {
            let value: serde_json::Value =
                serde_json::from_slice(&answer.body).map_err(|err| bad(err.to_string()))?;
            if value.get("code").and_then(|c| c.as_i64()).unwrap_or(0) != 0 {
                // SRS reports its errors in `code` with HTTP 200: pass them on as they are.
                return Ok(pass_through(answer, answer_body_unchanged));
            }
            let sdp_text = value
                .get("sdp")
                .and_then(|s| s.as_str())
                .ok_or_else(|| bad("no `sdp` in the JSON answer".into()))?
                .to_owned();
            json = Some(value);
            sdp_text
        } else {
            std::str::from_utf8(&answer.body)
                .map_err(|_| bad("the answer is not UTF-8".into()))?
                .to_owned()
        };
        let credentials = sdp::ice_credentials(&sdp_text);
        if credentials.is_empty() {
            return Err(bad("no a=ice-ufrag/a=ice-pwd in the answer".into()));
        }
        let rewritten = sdp::rewrite_candidates(&sdp_text, &self.candidate(conn.local));

        let resource = match answer.headers.get(header::LOCATION) {
            Some(location) => {
                let location = location
                    .to_str()
                    .ok()
                    .and_then(origin_path)
                    .ok_or_else(|| bad("its Location is not a URL".into()))?;
                Some((
                    new_resource_id(),
                    ResourceRecord {
                        stream: key.to_string(),
                        origin: origin.server.clone(),
                        api: api_addr,
                        location,
                        ufrags: credentials.iter().map(|c| c.ufrag.clone()).collect(),
                    },
                ))
            }
            None => None,
        };
        let records: Vec<(String, SessionRecord)> = credentials
            .iter()
            .map(|c| {
                (
                    c.ufrag.clone(),
                    SessionRecord {
                        stream: key.to_string(),
                        origin: origin.server.clone(),
                        rtc: rtc_addr,
                        pwd: c.pwd.clone(),
                        resource: resource.as_ref().map(|(id, _)| id.clone()),
                    },
                )
            })
            .collect();
        self.directory
            .publish(
                &records,
                resource.as_ref().map(|(id, r)| (id.as_str(), r)),
                Some(Arc::new(lease)),
            )
            .await?;
        tracing::info!(
            api = api.label(),
            stream = %key,
            client = %conn.client,
            origin = %origin.server,
            ufrag = %credentials[0].ufrag,
            "WebRTC session answered"
        );

        let body = match json {
            Some(mut value) => {
                value["sdp"] = serde_json::Value::String(rewritten);
                Bytes::from(value.to_string())
            }
            None => Bytes::from(rewritten),
        };
        let mut response = pass_through(answer, |_| body);
        if let Some((id, _)) = &resource {
            let location = HeaderValue::from_str(&format!("{RESOURCE_PATH}{id}"))
                .expect("resource ids are URL-safe");
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }

    async fn on_resource(
        &self,
        id: &str,
        conn: Conn,
        req: Request,
    ) -> Result<Response, SignalError> {
        let mut resource = self
            .directory
            .resource(id)
            .await?
            .ok_or(SignalError::UnknownResource)?;
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let answer = self
            .send(
                resource.api,
                parts.method.clone(),
                &resource.location,
                &parts.headers,
                conn.client,
                body,
            )
            .await?;
        if parts.method == Method::DELETE {
            if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
                for ufrag in &resource.ufrags {
                    self.directory.close(ufrag).await?;
                }
                self.directory.forget_resource(id).await?;
                tracing::info!(stream = %resource.stream, client = %conn.client, origin = %resource.origin, "WebRTC session deleted");
            }
            return Ok(pass_through(answer, answer_body_unchanged));
        }
        // PATCH: a trickle answer or an ICE restart. New credentials name the same session.
        if !answer.status.is_success() || answer.body.is_empty() {
            return Ok(pass_through(answer, answer_body_unchanged));
        }
        let Ok(fragment) = std::str::from_utf8(&answer.body) else {
            return Ok(pass_through(answer, answer_body_unchanged));
        };
        let fresh: Vec<_> = sdp::ice_credentials(fragment)
            .into_iter()
            .filter(|c| !resource.ufrags.contains(&c.ufrag))
            .collect();
        if !fresh.is_empty() {
            let known = self.directory.lookup(&resource.ufrags[0]).await?;
            let Some(template) = known else {
                return Err(SignalError::UnknownResource);
            };
            let records: Vec<(String, SessionRecord)> = fresh
                .iter()
                .map(|c| {
                    (
                        c.ufrag.clone(),
                        SessionRecord {
                            pwd: c.pwd.clone(),
                            ..template.clone()
                        },
                    )
                })
                .collect();
            resource
                .ufrags
                .extend(fresh.iter().map(|c| c.ufrag.clone()));
            self.directory.put_resource(id, &resource).await?;
            self.directory.publish(&records, None, None).await?;
            tracing::info!(stream = %resource.stream, client = %conn.client, ufrag = %fresh[0].ufrag, "WebRTC ICE restart");
        }
        let rewritten = sdp::rewrite_candidates(fragment, &self.candidate(conn.local));
        Ok(pass_through(answer, |_| Bytes::from(rewritten)))
    }

    /// The address written into candidates: the configured public one, else the address the
    /// client reached this API on (never a wildcard: it is a connected socket's address).
    fn candidate(&self, local: SocketAddr) -> CandidateAddress {
        let host = match &self.proxy.config.webrtc.candidate {
            Some(host) => host.clone(),
            None => local.ip().to_canonical().to_string(),
        };
        CandidateAddress {
            host,
            port: self.media_port,
        }
    }

    /// One request to an origin's API with the client's headers (minus hop-by-hop ones).
    async fn send(
        &self,
        origin: SocketAddr,
        method: Method,
        target: &str,
        headers: &HeaderMap,
        client: SocketAddr,
        body: Bytes,
    ) -> Result<OriginAnswer, SignalError> {
        let failed = |cause: String| SignalError::Origin { origin, cause };
        let uri: http::Uri = format!("http://{origin}{target}")
            .parse()
            .map_err(|_| failed(format!("cannot build a request to {target:?}")))?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|err| failed(err.to_string()))?;
        *request.headers_mut() = forwarded_headers(headers, client);
        request.headers_mut().remove(header::CONTENT_LENGTH);
        let timeout = self.proxy.config.webrtc.origin_timeout;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| failed(err.to_string()))?;
            let (mut parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|err| failed(format!("cannot read its answer: {err}")))?
                .to_bytes();
            strip_hop_by_hop(&mut parts.headers);
            Ok(OriginAnswer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {timeout:?}")))?
    }
}

fn answer_body_unchanged(body: Bytes) -> Bytes {
    body
}

/// The origin's answer as the client gets it: status and headers kept, body replaced.
fn pass_through(answer: OriginAnswer, body: impl FnOnce(Bytes) -> Bytes) -> Response {
    let mut response = Response::new(Body::from(body(answer.body)));
    *response.status_mut() = answer.status;
    let mut headers = answer.headers;
    headers.remove(header::CONTENT_LENGTH);
    // The origin's Location must not reach clients: only the proxy's resource routes back.
    headers.remove(header::LOCATION);
    *response.headers_mut() = headers;
    response
}

async fn read_body(body: Body) -> Result<Bytes, SignalError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| SignalError::BadBody)
}

/// WHIP/WHEP name the stream in the query; the vhost comes from `vhost=` (or `domain=`), else
/// from the Host header, as for HTTP streaming. Missing names default as SRS defaults them.
fn whip_stream_key(headers: &HeaderMap, query: &str) -> Result<StreamKey, SignalError> {
    let app = query_param(query, "app").filter(|a| !a.is_empty());
    let stream = query_param(query, "stream").filter(|s| !s.is_empty());
    let vhost = query_param(query, "vhost")
        .or_else(|| query_param(query, "domain"))
        .or_else(|| host_without_port(headers).map(|host| vhost_of_host(&host)));
    Ok(StreamKey::new(
        vhost.as_deref(),
        app.as_deref().unwrap_or("live"),
        stream.as_deref().unwrap_or("livestream"),
    )?)
}

/// SRS's JSON API names the stream in `streamurl`: `webrtc://host[:port]/app/stream[?vhost=]`.
fn json_stream_key(body: &[u8]) -> Result<StreamKey, SignalError> {
    #[derive(serde::Deserialize)]
    struct RtcRequest {
        streamurl: String,
        #[allow(dead_code)] // required, forwarded as it is
        sdp: String,
    }
    let request: RtcRequest =
        serde_json::from_slice(body).map_err(|err| SignalError::BadJson(err.to_string()))?;
    let url = url::Url::parse(&request.streamurl)
        .map_err(|err| SignalError::BadJson(format!("streamurl: {err}")))?;
    let query = url.query().unwrap_or("");
    let vhost = query_param(query, "vhost")
        .or_else(|| query_param(query, "domain"))
        .unwrap_or_else(|| vhost_of_host(url.host_str().unwrap_or("")));
    Ok(StreamKey::from_path(Some(&vhost), url.path())?)
}

/// Path and query of an origin's `Location` (relative, or absolute on the origin's host:
/// the request goes to the registered API address either way).
fn origin_path(location: &str) -> Option<String> {
    if location.starts_with('/') {
        return Some(location.to_owned());
    }
    let url = url::Url::parse(location).ok()?;
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    Some(path)
}

fn new_resource_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whip_keys_match_the_other_protocols() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("10.0.0.1:1985"));
        let key = whip_stream_key(&headers, "app=live&stream=cam&token=x").unwrap();
        assert_eq!(key, StreamKey::from_path(None, "/live/cam.flv").unwrap());
        let key = whip_stream_key(&headers, "").unwrap();
        assert_eq!(key.to_string(), "__defaultVhost__/live/livestream");
        let key = whip_stream_key(&headers, "app=live&stream=cam&vhost=Live.Example.com").unwrap();
        assert_eq!(key.to_string(), "live.example.com/live/cam");
        headers.insert(header::HOST, HeaderValue::from_static("live.example.com"));
        let key = whip_stream_key(&headers, "app=a&stream=b").unwrap();
        assert_eq!(key.to_string(), "live.example.com/a/b");
        assert!(whip_stream_key(&headers, "app=a&stream=..%2Fb").is_err());
    }

    #[test]
    fn json_keys_come_from_streamurl() {
        let body = br#"{"api":"http://x/rtc/v1/play/","streamurl":"webrtc://127.0.0.1:1985/live/cam?token=1","sdp":"v=0"}"#;
        assert_eq!(
            json_stream_key(body).unwrap().to_string(),
            "__defaultVhost__/live/cam"
        );
        let body = br#"{"streamurl":"webrtc://cdn.example.com/live/cam","sdp":"v=0"}"#;
        assert_eq!(
            json_stream_key(body).unwrap().to_string(),
            "cdn.example.com/live/cam"
        );
        assert!(matches!(
            json_stream_key(b"{}"),
            Err(SignalError::BadJson(_))
        ));
    }

    #[test]
    fn origin_locations_become_paths() {
        assert_eq!(
            origin_path("/rtc/v1/whip/?action=delete&token=t").as_deref(),
            Some("/rtc/v1/whip/?action=delete&token=t")
        );
        assert_eq!(
            origin_path("http://10.0.0.7:1985/rtc/v1/whep/?session=a:b").as_deref(),
            Some("/rtc/v1/whep/?session=a:b")
        );
        assert_eq!(origin_path("not a url"), None);
        assert_eq!(new_resource_id().len(), 32);
    }
}
