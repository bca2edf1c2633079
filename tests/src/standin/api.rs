//! SRS's HTTP API, the parts OriginStack and its operators use: `/api/v1/versions` (the
//! pods' probes), `/api/v1/summaries` (load) and `/api/v1/streams` (what the origin holds),
//! with the JSON of `srs_app_http_api.cpp` and `srs_app_statistic.cpp`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::{Request, State as AxumState},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{State, VERSION, VERSION_MAJOR, VERSION_MINOR, VERSION_REVISION, log_warn, stat, sys};

/// `ERROR_RTMP_STREAM_NOT_FOUND` (`srs_kernel_error.hpp`).
const ERROR_RTMP_STREAM_NOT_FOUND: i64 = 2048;

/// One API answer: the status and, when found, the JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub json: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            json: Some(body.to_string()),
        }
    }

    fn status(status: u16) -> Self {
        Self { status, json: None }
    }
}

/// The fields every answer of SRS's API starts with.
fn envelope(state: &State) -> Value {
    json!({
        "code": 0,
        "server": state.server_id,
        "service": state.service_id,
        "pid": state.pid.to_string(),
    })
}

/// SRS's `query_get`: the first value of `name` in a query string, percent-decoded.
pub fn query_get(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| super::http::percent_decode(value))
    })
}

/// Answers an API request: `path` without the query.
pub async fn dispatch(state: &State, method: &str, path: &str, query: &str) -> Answer {
    match path {
        // SrsGoApiVersion::serve_http (l. 301).
        "/api/v1/versions" => {
            let mut body = envelope(state);
            body["data"] = json!({
                "major": VERSION_MAJOR,
                "minor": VERSION_MINOR,
                "revision": VERSION_REVISION,
                "version": VERSION,
            });
            Answer::ok(body)
        }
        // SrsGoApiSummaries::serve_http (l. 331).
        "/api/v1/summaries" => {
            let mut body = envelope(state);
            let sample = state.sample.lock().expect("sample").clone();
            let summaries = sys::summaries(
                &sample,
                VERSION,
                &state.argv,
                &state.cwd,
                state.uptime().as_secs(),
            );
            body["data"] = summaries["data"].clone();
            Answer::ok(body)
        }
        "/api/v1/streams" | "/api/v1/streams/" => streams(state, method, None, query).await,
        _ => match path.strip_prefix("/api/v1/streams/") {
            Some(id) => streams(state, method, Some(id), query).await,
            None => Answer::status(404),
        },
    }
}

/// SrsGoApiStreams::serve_http (l. 759): the list (`streams`, paged by `start` and `count`,
/// at least 10) or one stream (`stream`) by id.
async fn streams(state: &State, method: &str, id: Option<&str>, query: &str) -> Answer {
    if method != "GET" {
        return Answer::status(405);
    }
    let listed = match list_streams(state).await {
        Ok(listed) => listed,
        Err(err) => {
            log_warn!("API: cannot read nginx's streams: {err:#}");
            return Answer::status(500);
        }
    };
    let mut body = envelope(state);
    match id {
        Some(id) => match listed.into_iter().find(|s| s["id"] == id) {
            Some(stream) => body["stream"] = stream,
            None => return Answer::ok(json!({"code": ERROR_RTMP_STREAM_NOT_FOUND})),
        },
        None => {
            let number = |name| {
                query_get(query, name)
                    .map(|v| super::conf::atoi(&v))
                    .unwrap_or(0)
            };
            let start = number("start").max(0) as usize;
            let count = number("count").max(10) as usize;
            body["streams"] = listed.into_iter().skip(start).take(count).collect();
        }
    }
    Answer::ok(body)
}

/// nginx's streams as SRS describes its own (SrsStatisticStream::dumps,
/// `srs_app_statistic.cpp` l. 109), sorted by id as SRS's map is. What nginx does not know
/// is left out: `tcUrl`, `frames`, the publisher's client id.
pub async fn list_streams(state: &State) -> anyhow::Result<Vec<Value>> {
    let stat = stat::parse(&stat::fetch(&state.stat_socket).await?)?;
    let mut ids = state.stream_ids.lock().expect("stream ids");
    let mut kept = HashMap::new();
    let mut listed: Vec<Value> = stat
        .streams
        .iter()
        .map(|stream| {
            let key = (stream.app.clone(), stream.name.clone());
            let id = ids
                .remove(&key)
                .unwrap_or_else(|| format!("vid-{}", sys::random_str(7)));
            kept.insert(key, id.clone());
            describe(state, &id, stream)
        })
        .collect();
    *ids = kept;
    listed.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(listed)
}

fn describe(state: &State, id: &str, stream: &stat::StatStream) -> Value {
    let video = stream.video.as_ref().map(|video| {
        json!({
            "codec": video_codec(&video.codec),
            "profile": avc_profile(&video.profile),
            "level": avc_level(&video.level),
            "width": video.width,
            "height": video.height,
        })
    });
    let audio = stream.audio.as_ref().map(|audio| {
        json!({
            "codec": audio_codec(&audio.codec),
            "sample_rate": audio.sample_rate,
            "channel": audio.channels,
            "profile": aac_profile(&audio.profile),
        })
    });
    json!({
        "id": id,
        "name": stream.name,
        "vhost": state.vhost_id,
        "app": stream.app,
        // SrsRequest::get_stream_url for the default vhost.
        "url": format!("/{}/{}", stream.app, stream.name),
        // SRS writes the current time here.
        "live_ms": sys::now_ms(),
        "clients": stream.clients,
        "send_bytes": stream.bytes_out,
        "recv_bytes": stream.bytes_in,
        // nginx-rtmp's own bandwidth estimate (bits/s), not SRS's 30 s window.
        "kbps": {
            "recv_30s": stream.bw_in / 1000,
            "send_30s": stream.bw_out / 1000,
        },
        "publish": {"active": stream.publishing},
        "video": video,
        "audio": audio,
    })
}

/// srs_video_codec_id2str (`srs_kernel_codec.cpp` l. 20).
fn video_codec(nginx: &str) -> &'static str {
    match nginx {
        "H264" => "H264",
        "HEVC" | "H265" => "HEVC",
        "AV1" => "AV1",
        "On2-VP6" | "On2-VP6-Alpha" => "VP6",
        _ => "Other",
    }
}

/// srs_audio_codec_id2str (l. 44).
fn audio_codec(nginx: &str) -> &'static str {
    match nginx {
        "AAC" => "AAC",
        "MP3" => "MP3",
        _ => "Other",
    }
}

/// srs_avc_profile2str (l. 428) from nginx-rtmp's profile names.
fn avc_profile(nginx: &str) -> &'static str {
    match nginx {
        "Baseline" => "Baseline",
        "Main" => "Main",
        "Extended" => "Extended",
        "High" => "High",
        "High10" => "High(10)",
        "High422" => "High(422)",
        "High444" => "High(444+Predictive)",
        _ => "Other",
    }
}

/// srs_avc_level2str (l. 447): nginx writes `3.0`, SRS `3`.
fn avc_level(nginx: &str) -> String {
    match nginx.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None if nginx.is_empty() => "Other".to_owned(),
        None => nginx.to_owned(),
    }
}

/// srs_aac_object2str (l. 394).
fn aac_profile(nginx: &str) -> &'static str {
    match nginx {
        "Main" => "Main",
        "LC" => "LC",
        "SSR" => "SSR",
        "HE" => "HE",
        "HEv2" => "HEv2",
        _ => "Other",
    }
}

/// An answer as HTTP, with the headers SRS sends (`Server`, JSON content type).
pub fn into_response(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer.json {
        Some(json) => (
            status,
            [
                (header::SERVER, super::SERVER_SIGNATURE),
                (header::CONTENT_TYPE, "application/json"),
            ],
            json,
        )
            .into_response(),
        None => (
            status,
            [
                (header::SERVER, super::SERVER_SIGNATURE),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            status.canonical_reason().unwrap_or_default().to_owned(),
        )
            .into_response(),
    }
}

async fn handle(AxumState(state): AxumState<Arc<State>>, request: Request) -> Response {
    let uri = request.uri();
    let answer = dispatch(
        &state,
        request.method().as_str(),
        uri.path(),
        uri.query().unwrap_or_default(),
    )
    .await;
    into_response(answer)
}

/// Serves the API on its own listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    let router = Router::new().fallback(handle).with_state(state);
    if let Err(err) = axum::serve(listener, router).await {
        log_warn!("HTTP API stopped: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_names_become_srs_names() {
        assert_eq!(avc_level("3.0"), "3");
        assert_eq!(avc_level("1.3"), "1.3");
        assert_eq!(avc_profile("High444"), "High(444+Predictive)");
        assert_eq!(video_codec("H264"), "H264");
        assert_eq!(aac_profile("LC"), "LC");
        assert_eq!(
            query_get("start=2&count=20", "count").as_deref(),
            Some("20")
        );
        assert_eq!(query_get("a=%41", "a").as_deref(), Some("A"));
        assert_eq!(query_get("a=1", "b"), None);
    }
}
