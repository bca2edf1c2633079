//! The one stream identity every protocol maps to: `vhost/app/stream`.

use std::{borrow::Cow, collections::BTreeSet, fmt, net::IpAddr};

use serde::Serialize;

/// The vhost a stream belongs to when the client names none (SRS's name for it).
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// Longest vhost, app or stream name accepted. Far above anything real; it bounds Redis keys and
/// log lines that a hostile client could otherwise inflate.
pub const MAX_PART_LEN: usize = 256;

/// Suffixes that name a container or playlist, not a stream: `live/cam.flv`, `live/cam.m3u8`
/// and `live/cam` are one stream. `.m4s`/`.mp4` cover fMP4 segments.
const MEDIA_EXTENSIONS: &[&str] = &[
    ".flv", ".ts", ".m3u8", ".m4s", ".mp4", ".m4a", ".m4v", ".aac", ".mp3", ".mpd", ".webm",
];

/// A normalised stream key. Build it with [`StreamKey::new`] or [`StreamKey::from_path`]; two
/// keys are equal exactly when clients of any protocol must meet on the same origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StreamKey {
    vhost: String,
    app: String,
    stream: String,
}

/// Which part of a stream key was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    Vhost,
    App,
    Stream,
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPart::Vhost => "vhost",
            KeyPart::App => "app",
            KeyPart::Stream => "stream name",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamKeyError {
    #[error("the {0} is empty")]
    Empty(KeyPart),
    #[error("the {part} is {len} bytes long, at most {MAX_PART_LEN} are accepted")]
    TooLong { part: KeyPart, len: usize },
    #[error("the {0} contains a control character")]
    ControlCharacter(KeyPart),
    #[error("the {0} contains a `.` or `..` path segment or an empty segment")]
    BadSegment(KeyPart),
    #[error("the stream name contains `/`; it belongs in the app")]
    SlashInStream,
    #[error("the vhost {0:?} is not a host name (letters, digits, `.`, `-`, `_`)")]
    BadVhost(String),
    #[error("the path {0:?} has no app/stream form")]
    NoAppInPath(String),
}

impl StreamKey {
    /// Normalises what a client named. `vhost` is the vhost the client asked for explicitly
    /// (e.g. a `vhost=` parameter), `None` or empty for the default; an IP literal also means the
    /// default vhost, as in SRS. Query strings and media extensions are cut from `stream`.
    pub fn new(vhost: Option<&str>, app: &str, stream: &str) -> Result<Self, StreamKeyError> {
        let vhost = normalise_vhost(vhost.unwrap_or(""))?;
        let app = normalise_app(app)?;
        let stream = normalise_stream(stream)?;
        Ok(Self { vhost, app, stream })
    }

    /// Splits a request path such as `/live/cam.flv?token=x` or `live/sub/cam` at its last `/`
    /// into app and stream (HTTP-FLV/TS, HLS, SRT `r=app/stream`).
    pub fn from_path(vhost: Option<&str>, path: &str) -> Result<Self, StreamKeyError> {
        let path = strip_query(path).trim_matches('/');
        let (app, stream) = path
            .rsplit_once('/')
            .ok_or_else(|| StreamKeyError::NoAppInPath(truncate_for_error(path)))?;
        Self::new(vhost, app, stream)
    }

    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Parses the `vhost/app/stream` form produced by `Display` (what backends store).
    pub fn parse_display(text: &str) -> Result<Self, StreamKeyError> {
        let (vhost, rest) = text
            .split_once('/')
            .ok_or_else(|| StreamKeyError::NoAppInPath(truncate_for_error(text)))?;
        Self::from_path(Some(vhost), rest)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

fn strip_query(text: &str) -> &str {
    text.split_once('?').map_or(text, |(before, _)| before)
}

fn check_common(part: KeyPart, value: &str) -> Result<(), StreamKeyError> {
    if value.is_empty() {
        return Err(StreamKeyError::Empty(part));
    }
    if value.len() > MAX_PART_LEN {
        return Err(StreamKeyError::TooLong {
            part,
            len: value.len(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(StreamKeyError::ControlCharacter(part));
    }
    Ok(())
}

/// The vhosts the origins configure (`vhost NAME { }` blocks of srs.conf besides the default).
///
/// SRS serves a stream named under a vhost it has no block for as a stream of its default vhost
/// (`SrsConfig::get_vhost` falls back to `__defaultVhost__` and the request takes its name). So
/// `rtmp://ingest.example.com/live/s`, `http://cdn.example.com/live/s.flv` and an SRS edge's pull
/// through the proxy's Service name are one stream on an origin without such blocks, and
/// ownership must key them as one: a vhost outside this set is owned as the default vhost's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vhosts {
    configured: BTreeSet<String>,
}

impl Vhosts {
    /// Names that are not valid vhosts, or name the default one, are left out.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let configured = names
            .into_iter()
            .filter_map(|name| normalise_vhost(name.as_ref()).ok())
            .filter(|name| name != DEFAULT_VHOST)
            .collect();
        Self { configured }
    }

    /// The key ownership uses for `key`: its own when its vhost is configured, else the same
    /// app and stream on the default vhost.
    pub fn owner_key<'a>(&self, key: &'a StreamKey) -> Cow<'a, StreamKey> {
        if key.vhost == DEFAULT_VHOST || self.configured.contains(&key.vhost) {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(StreamKey {
                vhost: DEFAULT_VHOST.to_owned(),
                ..key.clone()
            })
        }
    }
}

/// The vhost a client means by the host it connected to (RTMP tcUrl host, HTTP `Host`): only a
/// domain names a vhost; an IP address or a bare name (localhost, a Service name) means the
/// default vhost, as with SRS. Every protocol uses this so they all name the same stream.
pub fn vhost_of_host(host: &str) -> String {
    if host.is_empty() || !host.contains('.') || host.parse::<IpAddr>().is_ok() {
        DEFAULT_VHOST.to_owned()
    } else {
        host.to_ascii_lowercase()
    }
}

fn normalise_vhost(raw: &str) -> Result<String, StreamKeyError> {
    let vhost = raw.trim();
    if vhost.is_empty()
        || vhost.eq_ignore_ascii_case(DEFAULT_VHOST)
        || vhost.parse::<IpAddr>().is_ok()
    {
        return Ok(DEFAULT_VHOST.to_owned());
    }
    check_common(KeyPart::Vhost, vhost)?;
    let valid = vhost
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid || vhost.starts_with('.') || vhost.contains("..") {
        return Err(StreamKeyError::BadVhost(truncate_for_error(vhost)));
    }
    Ok(vhost.to_ascii_lowercase())
}

fn normalise_app(raw: &str) -> Result<String, StreamKeyError> {
    let app = strip_query(raw).trim_matches('/');
    check_common(KeyPart::App, app)?;
    // Multi-level apps (`live/sub`) exist in SRS; path tricks do not belong in a key.
    if app
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(StreamKeyError::BadSegment(KeyPart::App));
    }
    Ok(app.to_owned())
}

fn normalise_stream(raw: &str) -> Result<String, StreamKeyError> {
    let mut stream = strip_query(raw).trim_matches('/');
    // Every trailing media extension goes (`cam.flv.flv` is `cam`), so normalising a key again
    // never changes it.
    while let Some(dot) = stream.rfind('.') {
        let extension = &stream[dot..];
        if !MEDIA_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(extension))
        {
            break;
        }
        stream = stream[..dot].trim_end_matches('/');
    }
    check_common(KeyPart::Stream, stream)?;
    if stream.contains('/') {
        return Err(StreamKeyError::SlashInStream);
    }
    if stream == "." || stream == ".." {
        return Err(StreamKeyError::BadSegment(KeyPart::Stream));
    }
    Ok(stream.to_owned())
}

/// Error messages echo client input; keep them short.
fn truncate_for_error(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vhost: Option<&str>, app: &str, stream: &str) -> String {
        StreamKey::new(vhost, app, stream).unwrap().to_string()
    }

    #[test]
    fn every_protocol_spelling_gives_one_key() {
        let expected = "__defaultVhost__/live/cam";
        assert_eq!(key(None, "live", "cam"), expected);
        assert_eq!(key(Some(""), "/live/", "cam.flv"), expected);
        assert_eq!(
            key(Some("__DEFAULTVHOST__"), "live", "cam.m3u8?token=abc"),
            expected
        );
        assert_eq!(key(Some("10.0.0.7"), "live", "/cam.TS/"), expected);
        assert_eq!(
            StreamKey::from_path(None, "/live/cam.flv?x=1")
                .unwrap()
                .to_string(),
            expected
        );
        assert_eq!(
            StreamKey::from_path(None, "live/cam").unwrap().to_string(),
            expected
        );
        assert_eq!(
            StreamKey::parse_display(expected).unwrap().to_string(),
            expected
        );
    }

    #[test]
    fn vhost_lowercased_and_multi_level_app_kept() {
        assert_eq!(
            key(Some("Live.Example.COM"), "a/b", "s.mp4"),
            "live.example.com/a/b/s"
        );
        assert_eq!(
            StreamKey::from_path(Some("v"), "/a/b/s.m4s").unwrap().app(),
            "a/b"
        );
        // Only known extensions go: a dot inside a name stays.
        assert_eq!(key(None, "live", "cam.v2"), "__defaultVhost__/live/cam.v2");
        assert_eq!(
            key(None, "live", "cam.flv.m3u8"),
            "__defaultVhost__/live/cam"
        );
    }

    #[test]
    fn bad_parts_are_typed_errors() {
        use StreamKeyError as E;
        assert_eq!(StreamKey::new(None, "", "s"), Err(E::Empty(KeyPart::App)));
        assert_eq!(
            StreamKey::new(None, "live", ".flv"),
            Err(E::Empty(KeyPart::Stream))
        );
        assert_eq!(
            StreamKey::new(None, "live", "?a=b"),
            Err(E::Empty(KeyPart::Stream))
        );
        assert_eq!(
            StreamKey::new(None, "../etc", "s"),
            Err(E::BadSegment(KeyPart::App))
        );
        assert_eq!(
            StreamKey::new(None, "a//b", "s"),
            Err(E::BadSegment(KeyPart::App))
        );
        assert_eq!(
            StreamKey::new(None, "live", ".."),
            Err(E::BadSegment(KeyPart::Stream))
        );
        assert_eq!(StreamKey::new(None, "live", "a/b"), Err(E::SlashInStream));
        assert_eq!(
            StreamKey::new(None, "li\nve", "s"),
            Err(E::ControlCharacter(KeyPart::App))
        );
        assert_eq!(
            StreamKey::new(None, "live", "s\0"),
            Err(E::ControlCharacter(KeyPart::Stream))
        );
        assert!(matches!(
            StreamKey::new(Some("a b"), "live", "s"),
            Err(E::BadVhost(_))
        ));
        assert!(matches!(
            StreamKey::new(Some("a..b"), "live", "s"),
            Err(E::BadVhost(_))
        ));
        let long = "x".repeat(MAX_PART_LEN + 1);
        assert_eq!(
            StreamKey::new(None, "live", &long),
            Err(E::TooLong {
                part: KeyPart::Stream,
                len: MAX_PART_LEN + 1
            })
        );
        assert!(matches!(
            StreamKey::from_path(None, "/onlystream"),
            Err(E::NoAppInPath(_))
        ));
    }

    #[test]
    fn vhosts_the_origins_do_not_configure_are_owned_as_the_default() {
        let key = |vhost: &str| StreamKey::new(Some(vhost), "live", "s").unwrap();
        let none = Vhosts::default();
        assert_eq!(
            none.owner_key(&key("live-proxy.media.svc")).to_string(),
            "__defaultVhost__/live/s"
        );
        let some = Vhosts::new(["VOD.example.com", "__defaultVhost__", "bad name"]);
        assert_eq!(
            some.owner_key(&key("vod.example.com")).to_string(),
            "vod.example.com/live/s"
        );
        assert_eq!(
            some.owner_key(&key("cdn.example.com")).to_string(),
            "__defaultVhost__/live/s"
        );
        assert!(matches!(
            some.owner_key(&key("__defaultVhost__")),
            Cow::Borrowed(_)
        ));
    }
}
