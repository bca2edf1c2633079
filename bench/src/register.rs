//! The register API as an SRS origin speaks it (`heartbeat { ports on; }`): one heartbeat now,
//! then one per interval, as SRS does. The request itself is the test harness's
//! [`originstack_e2e::srs`], so the bench sends exactly what SRS sends.

use std::time::Duration;

use anyhow::Context;
use originstack_e2e::srs::{SrsHeartbeat, SrsPorts};
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
    /// The HTTP API (WHIP/WHEP), SRT (UDP) and WebRTC media (UDP) ports, when announced.
    pub api: Option<u16>,
    pub srt: Option<u16>,
    pub rtc: Option<u16>,
    /// CPU load figure (`summaries.data.self.cpu_percent`), a tie-breaker for placement.
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
            api: None,
            srt: None,
            rtc: None,
            cpu_percent: 0.0,
        }
    }

    /// The heartbeat as SRS would send it (`heartbeat { ports on; summaries on; }`).
    pub fn srs(&self) -> SrsHeartbeat {
        SrsHeartbeat {
            device_id: self.server.clone(),
            ip: self.ip.clone(),
            server: self.server.clone(),
            service: self.service.clone(),
            pid: self.pid.clone(),
            ports: Some(SrsPorts {
                rtmp: vec![self.rtmp],
                http: self.http,
                api: self.api,
                srt: self.srt,
                rtc: self.rtc,
            }),
            summaries: None,
        }
        .with_cpu_percent(self.cpu_percent)
    }

    /// The JSON body SRS sends.
    pub fn body(&self) -> String {
        self.srs().body().to_string()
    }
}

/// Sends one heartbeat to `url` (an SRS `heartbeat.url`) and checks the answer
/// (`{"code":0,...}`).
pub async fn send(url: &str, heartbeat: &Heartbeat) -> anyhow::Result<()> {
    let (url, srs) = (url.to_owned(), heartbeat.srs());
    tokio::task::spawn_blocking(move || srs.register(&url))
        .await
        .context("heartbeat thread")?
}

/// Registers now (failing if the proxy refuses), then heartbeats every `every` until `stop`.
pub async fn keep_registered(
    url: String,
    heartbeat: Heartbeat,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    send(&url, &heartbeat).await?;
    Ok(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(err) = send(&url, &heartbeat).await {
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
