//! An origin as the proxy knows it, and the parser that turns an SRS heartbeat into one.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Identity fields and endpoint strings are short in SRS; these bounds keep a hostile
/// registration from filling the registry with megabytes.
const MAX_ID_LEN: usize = 128;
const MAX_ENDPOINT_LEN: usize = 64;
const MAX_ENDPOINTS_PER_PROTOCOL: usize = 16;

/// One SRS origin. `server` is its lasting identity; `service`/`pid` change when it restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub server: String,
    pub service: String,
    pub pid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub ip: IpAddr,
    pub endpoints: Endpoints,
    /// Load figure used to rank origins with equal stream counts: the origin's CPU percentage
    /// from the heartbeat's `summaries` (lower is better), 0 when not sent.
    pub load: f64,
    /// The heartbeat's `summaries` object as sent, for operators reading `/api/v1/origins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summaries: Option<serde_json::Value>,
    /// When the backend last stored a heartbeat, in Unix milliseconds of the backend's clock.
    /// Discovery refreshes it too: it says the origin is alive.
    #[serde(default)]
    pub last_heartbeat_ms: u64,
    /// When a proxy last received the origin's own heartbeat, in Unix milliseconds of that
    /// proxy's clock; 0 while it is known from discovery only. A Ready pod whose SRS stopped
    /// heartbeating (a wrong URL or token, a stuck process) shows here and nowhere else.
    #[serde(default)]
    pub last_report_ms: u64,
}

/// Where an origin accepts each protocol, resolved to socket addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub rtmp: Vec<SocketAddr>,
    #[serde(default)]
    pub http: Vec<SocketAddr>,
    #[serde(default)]
    pub api: Vec<SocketAddr>,
    #[serde(default)]
    pub rtc: Vec<SocketAddr>,
    #[serde(default)]
    pub srt: Vec<SocketAddr>,
}

/// The protocols an origin serves, to ask for its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    /// HTTP-FLV/TS and HLS.
    Http,
    /// HTTP API: WHIP/WHEP and the SRS RTC API.
    Api,
    /// WebRTC media (UDP).
    Rtc,
    Srt,
}

impl Origin {
    /// The address to relay a protocol to, `None` when the origin did not announce one.
    pub fn endpoint(&self, protocol: Protocol) -> Option<SocketAddr> {
        let list = match protocol {
            Protocol::Rtmp => &self.endpoints.rtmp,
            Protocol::Http => &self.endpoints.http,
            Protocol::Api => &self.endpoints.api,
            Protocol::Rtc => &self.endpoints.rtc,
            Protocol::Srt => &self.endpoints.srt,
        };
        list.first().copied()
    }

    /// Same address and endpoints: the origin is reached the same way.
    pub fn same_addresses(&self, other: &Origin) -> bool {
        self.ip == other.ip && self.endpoints == other.endpoints
    }

    /// Names one run of the origin process: a different value for the same `server` means the
    /// origin restarted. Both parts are free of control characters, so `\n` cannot be forged.
    pub fn incarnation(&self) -> String {
        format!("{}\n{}", self.service, self.pid)
    }
}

/// Why a heartbeat was refused. Each message names the field so an operator can fix the
/// origin's configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("the body is not a JSON heartbeat: {0}")]
    Json(String),
    #[error("field `{field}` is empty")]
    EmptyField { field: &'static str },
    #[error("field `{field}` is longer than {MAX_ID_LEN} characters")]
    FieldTooLong { field: &'static str },
    #[error("field `{field}` contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("field `ip` must be an IP address an origin can be reached at, got {0:?}")]
    BadIp(String),
    #[error("field `rtmp` must list at least one endpoint")]
    NoRtmpEndpoint,
    #[error("field `{field}` lists more than {MAX_ENDPOINTS_PER_PROTOCOL} endpoints")]
    TooManyEndpoints { field: &'static str },
    #[error("endpoint {value:?} in `{field}` is not a port, proto://ip:port or proto://:port")]
    BadEndpoint { field: &'static str, value: String },
    #[error("field `summaries` must be a JSON object")]
    BadSummaries,
}

/// The SRS heartbeat body. Unknown fields are ignored, as SRS adds some between versions.
#[derive(Deserialize)]
struct HeartbeatBody {
    #[serde(default)]
    device_id: Option<String>,
    ip: String,
    server: String,
    service: String,
    pid: StringOrNumber,
    rtmp: Vec<String>,
    #[serde(default)]
    http: Vec<String>,
    #[serde(default)]
    api: Vec<String>,
    #[serde(default)]
    rtc: Vec<String>,
    #[serde(default)]
    srt: Vec<String>,
    #[serde(default)]
    summaries: Option<serde_json::Value>,
}

/// SRS sends `pid` as a string; other senders use a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(u64),
}

/// Parses and validates a heartbeat body. Pure (bytes in, origin out) so it can be fuzzed.
pub fn parse_heartbeat(body: &[u8]) -> Result<Origin, HeartbeatError> {
    let body: HeartbeatBody =
        serde_json::from_slice(body).map_err(|err| HeartbeatError::Json(err.to_string()))?;
    let pid = match body.pid {
        StringOrNumber::String(pid) => pid,
        StringOrNumber::Number(pid) => pid.to_string(),
    };
    let server = identity("server", body.server)?;
    let service = identity("service", body.service)?;
    let pid = identity("pid", pid)?;
    let device_id = match body.device_id {
        Some(id) if !id.is_empty() => Some(identity("device_id", id)?),
        _ => None,
    };
    let ip = parse_origin_ip(&body.ip)?;
    if body.rtmp.is_empty() {
        return Err(HeartbeatError::NoRtmpEndpoint);
    }
    let endpoints = Endpoints {
        rtmp: endpoint_list("rtmp", &body.rtmp, ip)?,
        http: endpoint_list("http", &body.http, ip)?,
        api: endpoint_list("api", &body.api, ip)?,
        rtc: endpoint_list("rtc", &body.rtc, ip)?,
        srt: endpoint_list("srt", &body.srt, ip)?,
    };
    let summaries = match body.summaries {
        None | Some(serde_json::Value::Null) => None,
        Some(value @ serde_json::Value::Object(_)) => Some(value),
        Some(_) => return Err(HeartbeatError::BadSummaries),
    };
    let load = summaries.as_ref().map_or(0.0, load_figure);
    Ok(Origin {
        server,
        service,
        pid,
        device_id,
        ip,
        endpoints,
        load,
        summaries,
        last_heartbeat_ms: 0,
        last_report_ms: 0,
    })
}

fn identity(field: &'static str, value: String) -> Result<String, HeartbeatError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(HeartbeatError::EmptyField { field });
    }
    if value.chars().count() > MAX_ID_LEN {
        return Err(HeartbeatError::FieldTooLong { field });
    }
    if value.chars().any(char::is_control) {
        return Err(HeartbeatError::ControlCharacter { field });
    }
    Ok(value)
}

fn parse_origin_ip(raw: &str) -> Result<IpAddr, HeartbeatError> {
    match raw.trim().parse::<IpAddr>() {
        Ok(ip)
            if !ip.is_unspecified()
                && !ip.is_multicast()
                && ip != IpAddr::from([255, 255, 255, 255]) =>
        {
            Ok(ip)
        }
        _ => Err(HeartbeatError::BadIp(
            raw.chars().take(MAX_ENDPOINT_LEN).collect(),
        )),
    }
}

fn endpoint_list(
    field: &'static str,
    values: &[String],
    ip: IpAddr,
) -> Result<Vec<SocketAddr>, HeartbeatError> {
    if values.len() > MAX_ENDPOINTS_PER_PROTOCOL {
        return Err(HeartbeatError::TooManyEndpoints { field });
    }
    values
        .iter()
        .map(|value| {
            parse_endpoint(value, ip).ok_or_else(|| HeartbeatError::BadEndpoint {
                field,
                value: value.chars().take(MAX_ENDPOINT_LEN).collect(),
            })
        })
        .collect()
}

/// An endpoint is `1935`, `:1935`, `ip:port` or `proto://ip:port` / `proto://:port`; an
/// unspecified or missing ip means the origin's own `ip` (SRS announces `0.0.0.0`).
pub fn parse_endpoint(raw: &str, origin_ip: IpAddr) -> Option<SocketAddr> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_ENDPOINT_LEN {
        return None;
    }
    let address = match raw.split_once("://") {
        Some((scheme, rest)) => {
            if scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
            {
                return None;
            }
            rest
        }
        None => raw,
    };
    let port_only = address.strip_prefix(':').unwrap_or(address);
    let resolved = if let Ok(port) = port_only.parse::<u16>() {
        SocketAddr::new(origin_ip, port)
    } else {
        let mut addr = address.parse::<SocketAddr>().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(origin_ip);
        }
        addr
    };
    (resolved.port() != 0 && !resolved.ip().is_multicast()).then_some(resolved)
}

/// SRS's `summaries` (its `/api/v1/summaries` object: `srs_api_dump_summaries` in
/// `srs_app_utility.cpp`) carry `data.self.cpu_percent` (the SRS process) and
/// `data.system.cpu_percent`; the process figure is what limits how many more streams the
/// origin takes. Senders other than SRS may leave out the `data` level.
fn load_figure(summaries: &serde_json::Value) -> f64 {
    let summaries = summaries.get("data").unwrap_or(summaries);
    let figure = |section: &str| summaries.get(section)?.get("cpu_percent")?.as_f64();
    figure("self")
        .or_else(|| figure("system"))
        .filter(|value| value.is_finite() && *value >= 0.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRS_HEARTBEAT: &str = r#"{"device_id":"origin1","ip":"10.0.0.7","server":"vid-o788x4d",
        "service":"2e0q10z8","pid":"23798","rtmp":["19351"],"http":["8081"],"api":["19851"],
        "srt":["udp://0.0.0.0:10081"],"rtc":["udp://0.0.0.0:8001"],"unknown":{"x":1},
        "summaries":{"data":{"ok":true,"self":{"cpu_percent":12.5},"system":{"cpu_percent":40}}}}"#;

    #[test]
    fn srs_heartbeat_parses() {
        let origin = parse_heartbeat(SRS_HEARTBEAT.as_bytes()).unwrap();
        assert_eq!(origin.server, "vid-o788x4d");
        assert_eq!(origin.incarnation(), "2e0q10z8\n23798");
        assert_eq!(
            origin.endpoint(Protocol::Rtmp),
            Some("10.0.0.7:19351".parse().unwrap())
        );
        assert_eq!(
            origin.endpoint(Protocol::Srt),
            Some("10.0.0.7:10081".parse().unwrap())
        );
        assert_eq!(
            origin.endpoint(Protocol::Rtc),
            Some("10.0.0.7:8001".parse().unwrap())
        );
        assert_eq!(origin.load, 12.5);
    }

    /// SRS 7.0.67 and later ("Support IPv6 for all protocols") report raw listens: `rtc` as
    /// `udp://8000`, `srt` without a scheme, and every listen of `http`/`api` (`[::]:8080`).
    /// From 7.0.47 `rtsp` is sent too (not routed, ignored).
    #[test]
    fn srs_7_0_67_heartbeat_parses() {
        let body = r#"{"device_id":"live-origin-0","ip":"10.0.0.9","server":"vid-a","service":"s",
            "pid":"7","rtmp":["1935","[::]:1935"],"http":["8080","[::]:8080"],"api":["1985"],
            "srt":["10080"],"rtc":["udp://8000","tcp://8000"],"rtsp":["8554"]}"#;
        let origin = parse_heartbeat(body.as_bytes()).unwrap();
        for (protocol, expected) in [
            (Protocol::Rtmp, "10.0.0.9:1935"),
            (Protocol::Http, "10.0.0.9:8080"),
            (Protocol::Api, "10.0.0.9:1985"),
            (Protocol::Srt, "10.0.0.9:10080"),
            (Protocol::Rtc, "10.0.0.9:8000"),
        ] {
            assert_eq!(
                origin.endpoint(protocol),
                Some(expected.parse().unwrap()),
                "{protocol:?}"
            );
        }
    }

    #[test]
    fn load_is_read_with_or_without_srs_data_level() {
        let with = |summaries: &str| {
            let body = SRS_HEARTBEAT.replace(
                r#""summaries":{"data":{"ok":true,"self":{"cpu_percent":12.5},"system":{"cpu_percent":40}}}"#,
                &format!(r#""summaries":{summaries}"#),
            );
            parse_heartbeat(body.as_bytes()).unwrap().load
        };
        assert_eq!(with(r#"{"data":{"system":{"cpu_percent":40}}}"#), 40.0);
        assert_eq!(with(r#"{"self":{"cpu_percent":7.5}}"#), 7.5);
        assert_eq!(with(r#"{"data":{"ok":true}}"#), 0.0);
    }

    #[test]
    fn endpoint_forms() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let at = |s: &str| parse_endpoint(s, ip).map(|a| a.to_string());
        assert_eq!(at("1935").as_deref(), Some("10.0.0.7:1935"));
        assert_eq!(at(":1935").as_deref(), Some("10.0.0.7:1935"));
        assert_eq!(at("tcp://:1935").as_deref(), Some("10.0.0.7:1935"));
        assert_eq!(at("udp://10.1.1.1:8000").as_deref(), Some("10.1.1.1:8000"));
        assert_eq!(at("udp://[::]:8000").as_deref(), Some("10.0.0.7:8000"));
        assert_eq!(at("[fd00::1]:8000").as_deref(), Some("[fd00::1]:8000"));
        for bad in [
            "",
            "0",
            "70000",
            "x://",
            "://1935",
            "tcp://host:1935",
            "udp://224.0.0.1:5",
            "-1",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_heartbeats_name_the_field() {
        let err = |s: &str| parse_heartbeat(s.as_bytes()).unwrap_err();
        assert!(matches!(err("{"), HeartbeatError::Json(_)));
        assert!(
            err(r#"{"ip":"1.2.3.4"}"#)
                .to_string()
                .contains("missing field")
        );
        let base = r#"{"ip":"1.2.3.4","server":"s","service":"v","pid":"1","rtmp":["1935"]}"#;
        assert!(parse_heartbeat(base.as_bytes()).is_ok());
        assert_eq!(
            err(&base.replace("1.2.3.4", "0.0.0.0")),
            HeartbeatError::BadIp("0.0.0.0".into())
        );
        assert_eq!(
            err(&base.replace(r#""s""#, r#""""#)),
            HeartbeatError::EmptyField { field: "server" }
        );
        assert_eq!(
            err(&base.replace(r#"["1935"]"#, "[]")),
            HeartbeatError::NoRtmpEndpoint
        );
        assert!(matches!(
            err(&base.replace("1935", "99999")),
            HeartbeatError::BadEndpoint { field: "rtmp", .. }
        ));
        assert_eq!(
            err(&base.replace(r#""s""#, r#""a\u0000b""#)),
            HeartbeatError::ControlCharacter { field: "server" }
        );
        assert_eq!(
            err(&base.replace('}', r#","summaries":[1]}"#)),
            HeartbeatError::BadSummaries
        );
    }
}
