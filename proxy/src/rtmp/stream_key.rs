//! Which stream an RTMP client means: `vhost/app/stream` from the connect tcUrl/app and the
//! publish/play stream name, the same key every other protocol of the proxy derives.

use std::fmt;

pub use crate::origins::DEFAULT_VHOST;
use crate::origins::vhost_of_host;

/// The stream a session publishes or plays. `query` (without `?`) is not part of the
/// identity: it is forwarded to the origin, where it usually carries an auth token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtmpStreamKey {
    pub vhost: String,
    pub app: String,
    pub stream: String,
    pub query: String,
}

impl fmt::Display for RtmpStreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

/// What connect told us about the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// Host of the tcUrl without port (empty when the client sent no tcUrl).
    pub host: String,
    /// Application name without query.
    pub app: String,
    /// Query of the tcUrl or app (without `?`); forwarded to the origin's tcUrl.
    pub query: String,
}

impl ConnectTarget {
    /// From the connect command's `tcUrl` and `app`. The app property wins over the tcUrl path
    /// (it is what the client meant); a query on either is kept.
    pub fn parse(tc_url: Option<&str>, app: Option<&str>) -> Self {
        let tc_url = tc_url.unwrap_or_default();
        let after_scheme = tc_url.split_once("://").map_or(tc_url, |(_, rest)| rest);
        let (authority, path) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
        let host = strip_port(authority.rsplit('@').next().unwrap_or_default()).to_owned();
        let (path_app, path_query) = split_query(path);
        let (app, app_query) = match app.filter(|a| !a.is_empty()) {
            Some(app) => split_query(app),
            None => (path_app, ""),
        };
        let query = if app_query.is_empty() {
            path_query
        } else {
            app_query
        };
        Self {
            host,
            app: app.trim_matches('/').to_owned(),
            query: query.to_owned(),
        }
    }

    /// The key for a publish/play of `stream_name` (which may carry its own query).
    pub fn stream_key(&self, stream_name: &str) -> RtmpStreamKey {
        let (stream, query) = split_query(stream_name);
        let vhost = query_param(query, &["vhost", "domain"])
            .or_else(|| query_param(&self.query, &["vhost", "domain"]))
            .map(str::to_owned)
            .unwrap_or_else(|| vhost_of_host(&self.host));
        RtmpStreamKey {
            vhost,
            app: self.app.clone(),
            stream: stream.to_owned(),
            query: query.to_owned(),
        }
    }
}

fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Value of the first of `names` present in a query string (`a=1&b=2`).
pub fn query_param<'q>(query: &'q str, names: &[&str]) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| names.contains(key) && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_bare_hosts_mean_the_default_vhost() {
        let target = ConnectTarget::parse(Some("rtmp://127.0.0.1:1935/live"), Some("live"));
        let key = target.stream_key("cam1");
        assert_eq!(key.to_string(), "__defaultVhost__/live/cam1");
        assert_eq!(key.query, "");
        let target = ConnectTarget::parse(Some("rtmp://localhost/live"), None);
        assert_eq!(target.stream_key("s").vhost, DEFAULT_VHOST);
        let target = ConnectTarget::parse(Some("rtmp://[::1]:1935/live"), None);
        assert_eq!(target.host, "::1");
        assert_eq!(target.stream_key("s").vhost, DEFAULT_VHOST);
    }

    #[test]
    fn domain_hosts_and_query_parameters_name_the_vhost() {
        let target = ConnectTarget::parse(Some("rtmp://Live.Example.com:1935/app"), Some("app"));
        assert_eq!(target.stream_key("s").vhost, "live.example.com");
        let target = ConnectTarget::parse(
            Some("rtmp://10.0.0.1/app?vhost=a.com&token=t"),
            Some("app?vhost=a.com&token=t"),
        );
        assert_eq!(target.app, "app");
        assert_eq!(target.query, "vhost=a.com&token=t");
        assert_eq!(target.stream_key("s").vhost, "a.com");
        let key = target.stream_key("s?domain=b.com&token=u");
        assert_eq!(
            (key.vhost.as_str(), key.stream.as_str(), key.query.as_str()),
            ("b.com", "s", "domain=b.com&token=u")
        );
    }

    #[test]
    fn app_property_wins_over_the_tc_url_path() {
        let target = ConnectTarget::parse(Some("rtmp://h/ignored"), Some("/live/"));
        assert_eq!(target.app, "live");
        let target = ConnectTarget::parse(None, None);
        assert_eq!((target.host.as_str(), target.app.as_str()), ("", ""));
        let target = ConnectTarget::parse(Some("rtmp://h/live/inst?x=1"), None);
        assert_eq!(
            (target.app.as_str(), target.query.as_str()),
            ("live/inst", "x=1")
        );
    }
}
