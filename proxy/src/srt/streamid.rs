//! The SRT stream id as SRS reads it: which stream, and publish or play.
//!
//! - `#!::r=app/stream,m=publish|request,h=vhost,...` (SRT's access-control syntax); keys
//!   other than `r`, `m` and `h` are parameters (SRS passes them to its hooks as a query);
//!   a `?` counts as a `,` (older SRS clients wrote `r=live/cam?secret=x`).
//! - Legacy SRS forms: `h=app/stream` and `h=vhost/app/stream`.
//! - Plain `app/stream`, or just `stream` (app `live`), which SRS treats as a request (play).
//!
//! App and stream split at the first `/`, as SRS does for SRT. Pure: text in, values out.

/// SRS's default app when the stream id names only a stream.
pub const DEFAULT_APP: &str = "live";
/// SRS's name of the vhost of clients that name none.
const DEFAULT_VHOST: &str = "__defaultVhost__";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("the stream id is empty")]
    Empty,
    #[error("the stream id {0:?} names no resource (r=app/stream)")]
    NoResource(String),
    #[error("the stream id {streamid:?} has mode {mode:?}; use m=publish or m=request")]
    BadMode { streamid: String, mode: String },
    #[error("the stream id {0:?} names an empty app or stream")]
    EmptyPart(String),
}

/// What a stream id asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// The vhost named with `h=`, if any.
    pub vhost: Option<String>,
    pub app: String,
    pub stream: String,
    /// `m=publish`; everything else plays.
    pub publish: bool,
    /// Other `key=value` items, in order.
    pub params: Vec<(String, String)>,
}

impl StreamId {
    pub fn parse(raw: &str) -> Result<Self, StreamIdError> {
        if raw.is_empty() {
            return Err(StreamIdError::Empty);
        }
        let Some(items) = raw.strip_prefix("#!::") else {
            let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
            let (app, stream) = split_resource(raw, path)?;
            let params = query.split(['&', ',']).filter_map(key_value).collect();
            return Ok(Self {
                vhost: None,
                app,
                stream,
                publish: false,
                params,
            });
        };

        let mut vhost = None;
        let mut resource = None;
        let mut publish = false;
        let mut params = Vec::new();
        for (key, value) in items.split([',', '?']).filter_map(key_value) {
            match key.as_str() {
                "h" => match value.split_once('/') {
                    // Legacy `h=vhost/app/stream`: a second slash means the first part is a vhost.
                    Some((host, path)) if path.contains('/') => {
                        vhost = Some(host.to_owned());
                        resource = Some(path.to_owned());
                    }
                    // Legacy `h=app/stream`.
                    Some(_) => resource = Some(value),
                    None => vhost = Some(value),
                },
                "r" => resource = Some(value),
                "m" => {
                    publish = match value.to_ascii_lowercase().as_str() {
                        "publish" => true,
                        "request" => false,
                        _ => {
                            return Err(StreamIdError::BadMode {
                                streamid: raw.to_owned(),
                                mode: value,
                            });
                        }
                    }
                }
                _ => params.push((key, value)),
            }
        }
        let resource = resource
            .filter(|r| !r.is_empty())
            .ok_or_else(|| StreamIdError::NoResource(raw.to_owned()))?;
        let (app, stream) = split_resource(raw, &resource)?;
        Ok(Self {
            vhost: vhost.filter(|v| !v.is_empty()),
            app,
            stream,
            publish,
            params,
        })
    }

    /// `vhost/app/stream` for logs (SRS's `__defaultVhost__` when no vhost was named).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.vhost.as_deref().unwrap_or(DEFAULT_VHOST),
            self.app,
            self.stream
        )
    }
}

fn key_value(item: &str) -> Option<(String, String)> {
    let (key, value) = item.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
}

fn split_resource(raw: &str, path: &str) -> Result<(String, String), StreamIdError> {
    let path = path.trim_start_matches('/');
    let (app, stream) = path.split_once('/').unwrap_or((DEFAULT_APP, path));
    if app.is_empty() || stream.is_empty() {
        return Err(StreamIdError::EmptyPart(raw.to_owned()));
    }
    Ok((app.to_owned(), stream.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> StreamId {
        StreamId::parse(raw).unwrap()
    }

    #[test]
    fn access_control_syntax() {
        let id = parse("#!::r=live/cam,m=publish");
        assert_eq!(
            (
                id.vhost.as_deref(),
                id.app.as_str(),
                id.stream.as_str(),
                id.publish
            ),
            (None, "live", "cam", true)
        );
        let id = parse("#!::h=example.com,r=live/cam,m=request,token=abc");
        assert_eq!(id.vhost.as_deref(), Some("example.com"));
        assert!(!id.publish);
        assert_eq!(id.params, vec![("token".to_owned(), "abc".to_owned())]);
        assert_eq!(id.key(), "example.com/live/cam");
        assert_eq!(parse("live/cam").key(), "__defaultVhost__/live/cam");
        // Mode is case-insensitive; no mode plays.
        assert!(parse("#!::r=live/cam,m=PUBLISH").publish);
        assert!(!parse("#!::r=live/cam").publish);
    }

    #[test]
    fn question_mark_parameters_as_older_srs_clients_send_them() {
        let id = parse("#!::r=live/cam?secret=x,m=publish");
        assert_eq!(id.stream, "cam");
        assert!(id.publish);
        assert_eq!(id.params, vec![("secret".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn legacy_h_forms() {
        let id = parse("#!::h=live/cam,m=publish");
        assert_eq!(
            (id.vhost, id.app.as_str(), id.stream.as_str()),
            (None, "live", "cam")
        );
        let id = parse("#!::h=srs.example/live/cam,m=request");
        assert_eq!(
            (id.vhost.as_deref(), id.app.as_str(), id.stream.as_str()),
            (Some("srs.example"), "live", "cam")
        );
    }

    #[test]
    fn plain_forms_play() {
        let id = parse("live/cam");
        assert_eq!(
            (id.app.as_str(), id.stream.as_str(), id.publish),
            ("live", "cam", false)
        );
        let id = parse("cam");
        assert_eq!((id.app.as_str(), id.stream.as_str()), (DEFAULT_APP, "cam"));
        // App and stream split at the first slash, as in SRS.
        let id = parse("live/sub/cam?token=1");
        assert_eq!((id.app.as_str(), id.stream.as_str()), ("live", "sub/cam"));
        assert_eq!(id.params, vec![("token".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn errors() {
        assert_eq!(StreamId::parse(""), Err(StreamIdError::Empty));
        assert!(matches!(
            StreamId::parse("#!::m=publish"),
            Err(StreamIdError::NoResource(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=,m=publish"),
            Err(StreamIdError::NoResource(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=live/cam,m=bidirectional"),
            Err(StreamIdError::BadMode { mode, .. }) if mode == "bidirectional"
        ));
        assert!(matches!(
            StreamId::parse("live/"),
            Err(StreamIdError::EmptyPart(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=live/,m=publish"),
            Err(StreamIdError::EmptyPart(_))
        ));
    }
}
