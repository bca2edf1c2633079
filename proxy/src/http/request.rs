//! What an HTTP streaming request asks for (pure: request head in, [`RequestKind`] out).

use http::Request;

use super::playlist::SESSION_PARAM;
use crate::{
    httpd::message::{host_without_port, query_param},
    origins::{StreamKey, StreamKeyError, vhost_of_host},
};

/// Longest path + query accepted; real stream URLs with tokens are far shorter.
pub const MAX_TARGET_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A never-ending HTTP-FLV or HTTP-TS body from the stream's owner.
    Live { key: StreamKey },
    /// An HLS playlist; `session` when the player already has a playback session.
    Playlist {
        key: StreamKey,
        session: Option<String>,
    },
    /// A file of a playback session (segment, init section, key): goes to the session's origin.
    SessionFile { session: String },
    /// Anything else: static files when configured, else 404.
    Other,
}

impl RequestKind {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            RequestKind::Live { .. } => "live",
            RequestKind::Playlist { .. } => "playlist",
            RequestKind::SessionFile { .. } => "segment",
            RequestKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request target is {0} bytes long, at most {MAX_TARGET_LEN} are accepted")]
    TooLong(usize),
    #[error("the path contains `..`, a backslash, a NUL or a control character")]
    Traversal,
    #[error("the stream in the path is not valid: {0}")]
    BadStream(#[from] StreamKeyError),
}

pub fn classify<B>(req: &Request<B>) -> Result<RequestKind, RequestError> {
    let uri = req.uri();
    let target_len = uri.path().len() + uri.query().map_or(0, str::len);
    if target_len > MAX_TARGET_LEN {
        return Err(RequestError::TooLong(target_len));
    }
    let path = uri.path();
    if is_hostile_path(path) {
        return Err(RequestError::Traversal);
    }
    let query = uri.query().unwrap_or("");
    let session = query_param(query, SESSION_PARAM).filter(|s| !s.is_empty());
    let file = path.rsplit('/').next().unwrap_or("");
    let extension = file
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());

    let stream_key = || {
        let vhost = query_param(query, "vhost")
            .or_else(|| query_param(query, "domain"))
            .or_else(|| host_without_port(req.headers()).map(|host| vhost_of_host(&host)));
        StreamKey::from_path(vhost.as_deref(), path)
    };
    Ok(match (extension.as_deref(), session) {
        (Some("m3u8"), session) => RequestKind::Playlist {
            key: stream_key()?,
            session,
        },
        (Some("flv"), _) | (Some("ts"), None) => RequestKind::Live { key: stream_key()? },
        (Some(_), Some(session)) => RequestKind::SessionFile { session },
        _ => RequestKind::Other,
    })
}

/// Rejects `..` segments (also percent-encoded), backslashes and control bytes; an origin or a
/// static file server must never see them.
fn is_hostile_path(path: &str) -> bool {
    let decoded = percent_decode(path);
    decoded.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f)
        || decoded
            .split(|&b| b == b'/')
            .any(|segment| segment == b"..")
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(value) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn get(target: &str, host: &str) -> Request<()> {
        Request::get(target)
            .header(header::HOST, host)
            .body(())
            .unwrap()
    }

    fn key(vhost: Option<&str>, app: &str, stream: &str) -> StreamKey {
        StreamKey::new(vhost, app, stream).unwrap()
    }

    #[test]
    fn live_streams_and_vhosts() {
        assert_eq!(
            classify(&get("/live/cam.flv?token=x", "127.0.0.1:8080")).unwrap(),
            RequestKind::Live {
                key: key(None, "live", "cam")
            }
        );
        assert_eq!(
            classify(&get("/live/cam.ts", "Stream.Example.com:8080")).unwrap(),
            RequestKind::Live {
                key: key(Some("stream.example.com"), "live", "cam")
            }
        );
        assert_eq!(
            classify(&get("/live/cam.flv?vhost=v1", "[::1]:8080")).unwrap(),
            RequestKind::Live {
                key: key(Some("v1"), "live", "cam")
            }
        );
    }

    #[test]
    fn hls_playlists_and_session_files() {
        assert_eq!(
            classify(&get("/live/cam.m3u8", "localhost:8080")).unwrap(),
            RequestKind::Playlist {
                key: key(None, "live", "cam"),
                session: None
            }
        );
        assert_eq!(
            classify(&get("/live/cam-12.ts?spbhid=abc", "h")).unwrap(),
            RequestKind::SessionFile {
                session: "abc".into()
            }
        );
        assert_eq!(
            classify(&get("/live/init.mp4?x=1&spbhid=s", "h")).unwrap(),
            RequestKind::SessionFile {
                session: "s".into()
            }
        );
        assert_eq!(
            classify(&get("/index.html", "h")).unwrap(),
            RequestKind::Other
        );
        assert_eq!(classify(&get("/", "h")).unwrap(), RequestKind::Other);
    }

    #[test]
    fn hostile_paths() {
        for bad in [
            "/../etc/passwd",
            "/live/%2e%2e/x.flv",
            "/a/%2E%2E/b",
            "/a%5c..%5cb.flv",
            "/a/%00.flv",
        ] {
            assert_eq!(
                classify(&get(bad, "h")),
                Err(RequestError::Traversal),
                "{bad}"
            );
        }
        let long = format!("/live/{}.flv", "a".repeat(MAX_TARGET_LEN));
        assert!(matches!(
            classify(&get(&long, "h")),
            Err(RequestError::TooLong(_))
        ));
        assert!(matches!(
            classify(&get("/cam.flv", "h")),
            Err(RequestError::BadStream(_))
        ));
    }
}
