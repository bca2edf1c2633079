//! An SRS origin's heartbeat, exactly as SRS 7 sends it (`trunk/src/app/srs_app_heartbeat.cpp`
//! and its HTTP client `srs_app_http_client.cpp`). Every test, the bench and the demo send
//! heartbeats through here, so what they send cannot drift from what SRS sends:
//!
//! - the body has `device_id`, `ip`, `server`, `service`, `pid` (strings); `summaries` only with
//!   `heartbeat.summaries on`; and only with `heartbeat.ports on`: `rtmp` (array of the listen
//!   ports), `http` and `api` (the HTTP server and API listen ports), `srt` and `rtc` as
//!   `udp://0.0.0.0:PORT`;
//! - it is POSTed to the **path** of `heartbeat.url` only: the query is dropped;
//! - no header of SRS's own beyond what its HTTP client always sends (no `Authorization`);
//! - SRS does not look at the answer; [`post`] returns it so tests can.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::Context;
use serde_json::{Value, json};

/// What one SRS origin announces.
#[derive(Debug, Clone, PartialEq)]
pub struct SrsHeartbeat {
    /// `heartbeat.device_id` (the operator sets it to the pod name).
    pub device_id: String,
    /// `SRS_DEVICE_IP`, else one of the machine's addresses.
    pub ip: String,
    /// The server id: stable for the life of the SRS process's working directory.
    pub server: String,
    /// The service id: new on every start of SRS.
    pub service: String,
    pub pid: String,
    /// `heartbeat.ports on`: the listen ports.
    pub ports: Option<SrsPorts>,
    /// `heartbeat.summaries on`: SRS's `/api/v1/summaries` data.
    pub summaries: Option<Value>,
}

/// The listen ports SRS reports with `heartbeat.ports on`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SrsPorts {
    /// `listen` (RTMP), one or more.
    pub rtmp: Vec<u16>,
    /// `http_server.listen`, when the HTTP server is enabled.
    pub http: Option<u16>,
    /// `http_api.listen`, when the HTTP API is enabled.
    pub api: Option<u16>,
    /// `srt_server.listen`, when SRT is enabled.
    pub srt: Option<u16>,
    /// `rtc_server.listen` (UDP), when WebRTC is enabled.
    pub rtc: Option<u16>,
}

impl SrsHeartbeat {
    /// An origin on loopback with `heartbeat.ports on`, RTMP on `rtmp` and HTTP on `http`.
    pub fn local(server: &str, rtmp: u16, http: Option<u16>) -> Self {
        Self {
            device_id: server.to_owned(),
            ip: "127.0.0.1".to_owned(),
            server: server.to_owned(),
            service: "svc".to_owned(),
            pid: "1".to_owned(),
            ports: Some(SrsPorts {
                rtmp: vec![rtmp],
                http,
                ..SrsPorts::default()
            }),
            summaries: None,
        }
    }

    /// With `heartbeat.summaries on`, reporting `cpu_percent` for the SRS process itself (the
    /// load figure the proxy ranks origins by).
    pub fn with_cpu_percent(mut self, cpu_percent: f64) -> Self {
        // As `srs_api_dump_summaries` lays it out: everything under `data`.
        self.summaries = Some(json!({"data": {"ok": true, "self": {"cpu_percent": cpu_percent}}}));
        self
    }

    /// The JSON body SRS posts.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "device_id": self.device_id,
            "ip": self.ip,
            "server": self.server,
            "service": self.service,
            "pid": self.pid,
        });
        if let Some(summaries) = &self.summaries {
            body["summaries"] = summaries.clone();
        }
        if let Some(ports) = &self.ports {
            let listen = |port: u16| json!([port.to_string()]);
            body["rtmp"] = ports.rtmp.iter().map(|p| p.to_string()).collect();
            if let Some(port) = ports.http {
                body["http"] = listen(port);
            }
            if let Some(port) = ports.api {
                body["api"] = listen(port);
            }
            if let Some(port) = ports.srt {
                body["srt"] = json!([format!("udp://0.0.0.0:{port}")]);
            }
            if let Some(port) = ports.rtc {
                body["rtc"] = json!([format!("udp://0.0.0.0:{port}")]);
            }
        }
        body
    }

    /// Posts this heartbeat to `url` as SRS does; see [`post`].
    pub fn post(&self, url: &str) -> anyhow::Result<(u16, String)> {
        post(url, &self.body())
    }

    /// Posts this heartbeat and fails unless the proxy accepted it (`{"code":0}`).
    pub fn register(&self, url: &str) -> anyhow::Result<()> {
        let (status, text) = self.post(url)?;
        anyhow::ensure!(
            status == 200 && text.contains("\"code\":0"),
            "register of {} answered {status}: {text}",
            self.server
        );
        Ok(())
    }
}

/// The heartbeat URL of a proxy's system API at `system`, with the token where an SRS
/// heartbeat can carry it (the path).
pub fn register_url(system: impl std::fmt::Display, token: Option<&str>) -> String {
    match token {
        Some(token) => format!("http://{system}/api/v1/srs/register/{token}"),
        None => format!("http://{system}/api/v1/srs/register"),
    }
}

/// POSTs `body` to `heartbeat_url` the way SRS's heartbeat does: connect to the URL's host and
/// port, send the path only (SRS's `uri.get_path()`; the query is dropped), with the headers
/// SRS's HTTP client always writes and nothing else. Returns the status and body of the
/// answer, which SRS itself ignores.
pub fn post(heartbeat_url: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    let url = url_parts(heartbeat_url)?;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {}", url.host))?
        .next()
        .with_context(|| format!("no address for {}", url.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.to_string();
    // SRS's client (SrsHttpClient::post) writes these headers, in this order, and no others.
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\nUser-Agent: {agent}\r\nConnection: Keep-Alive\r\nContent-Type: application/json\r\n\r\n{body}",
        path = url.path,
        host = url.host_header,
        length = body.len(),
        agent = SRS_USER_AGENT,
    );
    stream.write_all(request.as_bytes())?;
    read_answer(&mut stream)
}

/// The `User-Agent` of SRS 7's HTTP client (`RTMP_SIG_SRS_SERVER`).
const SRS_USER_AGENT: &str = "SRS/7.0.18(Hang)";

struct UrlParts {
    host: String,
    port: u16,
    host_header: String,
    path: String,
}

/// Scheme, host, port and path of an `http://` URL; the query and fragment are dropped, as
/// SRS drops them.
fn url_parts(url: &str) -> anyhow::Result<UrlParts> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: SRS heartbeats go to http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse()
                .with_context(|| format!("{url}: bad port {port:?}"))?,
        ),
        _ => (authority, 80),
    };
    Ok(UrlParts {
        host: host.to_owned(),
        port,
        host_header: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Reads one answer: the head, then a body of `Content-Length` bytes, chunks, or to the close.
fn read_answer(stream: &mut TcpStream) -> anyhow::Result<(u16, String)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).context("read the answer")?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if answer_complete(&raw) {
            break;
        }
    }
    Ok(crate::proxy::parse_response(&raw))
}

fn answer_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = raw.len() - end - 4;
    if let Some(length) = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
    {
        return body >= length;
    }
    head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_dropped_as_srs_drops_it() {
        let url = url_parts("http://proxy.ns.svc:12025/api/v1/srs/register/t0k?token=x#f").unwrap();
        assert_eq!(url.host, "proxy.ns.svc");
        assert_eq!(url.port, 12025);
        assert_eq!(url.path, "/api/v1/srs/register/t0k");
        let url = url_parts("http://[::1]:8080").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 8080, "/")
        );
    }

    #[test]
    fn fields_follow_the_ports_and_summaries_switches() {
        let mut heartbeat = SrsHeartbeat::local("o1", 1935, Some(8080));
        let body = heartbeat.body();
        assert_eq!(body["rtmp"], json!(["1935"]));
        assert_eq!(body["http"], json!(["8080"]));
        assert!(body.get("summaries").is_none() && body.get("srt").is_none());
        heartbeat.ports.as_mut().unwrap().srt = Some(10080);
        heartbeat.ports.as_mut().unwrap().rtc = Some(8000);
        let body = heartbeat.body();
        assert_eq!(body["srt"], json!(["udp://0.0.0.0:10080"]));
        assert_eq!(body["rtc"], json!(["udp://0.0.0.0:8000"]));
        heartbeat.ports = None;
        let body = heartbeat.body();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["device_id", "ip", "pid", "server", "service"]);
    }
}
