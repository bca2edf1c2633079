//! SRS 7's heartbeat (`srs_app_heartbeat.cpp`), sent through [`crate::srs`], which builds
//! the body and posts it exactly as SRS's HTTP client does.

use std::{net::IpAddr, sync::Arc};

use serde_json::{Value, json};

use super::{State, VERSION, log_info, log_warn, sys};
use crate::srs::{self, SrsHeartbeat, SrsPorts};

/// The heartbeat's `ip`: `SRS_DEVICE_IP` (read with `srs_getenv("srs.device.ip")`, l. 58),
/// else the first of the machine's addresses in SRS's order (`stats.network` 0).
fn device_ip() -> String {
    super::conf::process_env("SRS_DEVICE_IP")
        .filter(|ip| !ip.is_empty())
        .or_else(|| sys::local_ips().first().map(IpAddr::to_string))
        .unwrap_or_default()
}

/// The body of one heartbeat.
pub fn body(state: &State) -> Value {
    let config = &state.config;
    let heartbeat = &config.heartbeat;
    let ports = heartbeat.ports.then(|| SrsPorts {
        rtmp: config.listens.iter().map(|l| l.port).collect(),
        http: config.http_server.as_ref().map(|s| s.listen.port),
        api: config.http_api.as_ref().map(|a| a.port),
        // The stand-in refuses configs with SRT or WebRTC enabled.
        srt: None,
        rtc: None,
    });
    let summaries = heartbeat.summaries.then(|| {
        let sample = state.sample.lock().expect("sample").clone();
        sys::summaries(
            &sample,
            VERSION,
            &state.argv,
            &state.cwd,
            state.uptime().as_secs(),
        )
    });
    let mut body = SrsHeartbeat {
        device_id: heartbeat.device_id.clone(),
        ip: device_ip(),
        server: state.server_id.clone(),
        service: state.service_id.clone(),
        pid: state.pid.to_string(),
        ports,
        summaries,
    }
    .body();
    if heartbeat.ports {
        // SRS reports each listen as written (`get_listens()`, the HTTP listens), which
        // differs from the bare port only for `ip:port` listens.
        body["rtmp"] = config.listens.iter().map(|l| json!(l.raw)).collect();
        if let Some(server) = &config.http_server {
            body["http"] = json!([server.listen.raw]);
        }
        if let Some(api) = &config.http_api {
            body["api"] = json!([api.raw]);
        }
    }
    body
}

/// Every `heartbeat.interval` while enabled, the first at once (SrsHourGlass fires at 0,
/// `srs_app_hourglass.cpp` l. 111). Failures are logged and the next beat comes anyway; the
/// answer is not looked at, as in SRS. The URL's host is resolved again for every beat.
pub async fn run(state: Arc<State>) {
    let heartbeat = state.config.heartbeat.clone();
    if !heartbeat.enabled {
        return;
    }
    log_info!(
        "heartbeat every {}s to {}",
        heartbeat.interval.as_secs(),
        // The URL's path may hold the register token: only scheme and authority here.
        heartbeat
            .url
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
    );
    let mut tick = tokio::time::interval(heartbeat.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = None;
    loop {
        tick.tick().await;
        let body = body(&state);
        let url = heartbeat.url.clone();
        let posted = tokio::task::spawn_blocking(move || srs::post(&url, &body)).await;
        match posted {
            Ok(Ok((status, _))) => {
                // SRS logs nothing; one line when the answer changes helps whoever reads.
                if last_status != Some(status) {
                    log_info!("heartbeat answered {status}");
                    last_status = Some(status);
                }
            }
            Ok(Err(err)) => {
                log_warn!("heartbeat err={err:#}");
                last_status = None;
            }
            Err(err) => log_warn!("heartbeat task: {err}"),
        }
    }
}
