//! The register API as an SRS origin speaks it (`POST /api/v1/srs/register`, `heartbeat { ports
//! on; }`): one heartbeat now, then one per interval, as SRS does.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// What one origin announces.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub server: String,
    pub service: String,
    pub pid: String,
    pub ip: String,
    pub rtmp: u16,
    pub http: Option<u16>,
    /// CPU load figure (`summaries.self.cpu_percent`), a tie-breaker for placement.
    pub cpu_percent: f64,
}

impl Heartbeat {
    /// An origin on loopback.
    pub fn local(server: &str, rtmp: u16, http: Option<u16>) -> Self {
        Self {
            server: server.to_owned(),
            service: "bench".to_owned(),
            pid: std::process::id().to_string(),
            ip: "127.0.0.1".to_owned(),
            rtmp,
            http,
            cpu_percent: 0.0,
        }
    }

    /// The JSON body SRS sends.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({
            "device_id": self.server,
            "ip": self.ip,
            "server": self.server,
            "service": self.service,
            "pid": self.pid,
            "rtmp": [self.rtmp.to_string()],
            "summaries": {"self": {"cpu_percent": self.cpu_percent}},
        });
        if let Some(http) = self.http {
            body["http"] = serde_json::json!([http.to_string()]);
        }
        body.to_string()
    }
}

/// Sends one heartbeat to the proxy's system API and checks the answer (`{"code":0,...}`).
pub async fn send(api: SocketAddr, heartbeat: &Heartbeat) -> anyhow::Result<()> {
    let socket = tokio::net::TcpStream::connect(api)
        .await
        .with_context(|| format!("connect to the system API at {api}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .context("HTTP handshake with the system API")?;
    let driver = tokio::spawn(connection);
    let request = Request::post("/api/v1/srs/register")
        .header(header::HOST, api.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(heartbeat.body())))?;
    let response = sender
        .send_request(request)
        .await
        .context("POST register")?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    anyhow::ensure!(
        status == StatusCode::OK && answer["code"] == 0,
        "register of {} answered {status}: {}",
        heartbeat.server,
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Registers now (failing if the proxy refuses), then heartbeats every `every` until `stop`.
pub async fn keep_registered(
    api: SocketAddr,
    heartbeat: Heartbeat,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    send(api, &heartbeat).await?;
    Ok(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(err) = send(api, &heartbeat).await {
                tracing::warn!(server = %heartbeat.server, error = %format!("{err:#}"), "heartbeat failed");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_what_the_proxy_parses() {
        let mut heartbeat = Heartbeat::local("origin-7", 19350, Some(8081));
        heartbeat.cpu_percent = 12.5;
        let origin = originstack_proxy::origins::parse_heartbeat(heartbeat.body().as_bytes())
            .expect("the proxy accepts the heartbeat");
        assert_eq!(origin.server, "origin-7");
        assert_eq!(origin.load, 12.5);
        assert_eq!(
            origin.endpoint(originstack_proxy::origins::Protocol::Rtmp),
            Some("127.0.0.1:19350".parse().unwrap())
        );
        assert_eq!(
            origin.endpoint(originstack_proxy::origins::Protocol::Http),
            Some("127.0.0.1:8081".parse().unwrap())
        );
        let without_http = Heartbeat::local("o", 1935, None).body();
        assert!(!without_http.contains("\"http\""));
    }
}
