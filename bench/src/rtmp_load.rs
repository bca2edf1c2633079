//! RTMP publishers and players built on the proxy's own client side (handshake, connect,
//! createStream, publish/play from `originstack_proxy::rtmp::origin`), so the load generator
//! speaks exactly the RTMP the proxy speaks to origins.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use originstack_proxy::rtmp::{
    Intent, RtmpStreamKey,
    amf0::Value,
    chunk::{DecoderLimits, Message},
    connection::RtmpConnection,
    control::kind,
    origin::{self, OriginRequest},
    stream_key::DEFAULT_VHOST,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::crowd::Counters;

/// Where to publish or play: `rtmp://host[:port]/app/stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpTarget {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub stream: String,
}

impl RtmpTarget {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("rtmp://")
            .with_context(|| format!("{url:?} is not an rtmp:// URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .with_context(|| format!("{url:?} has no /app/stream path"))?;
        let (app, stream) = path
            .split_once('/')
            .with_context(|| format!("{url:?} needs both an app and a stream name"))?;
        anyhow::ensure!(
            !app.is_empty() && !stream.is_empty(),
            "{url:?} needs both an app and a stream name"
        );
        let (host, port) = split_host_port(authority, 1935)?;
        Ok(Self {
            host,
            port,
            app: app.to_owned(),
            stream: stream.to_owned(),
        })
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        resolve(&self.host, self.port)
    }

    /// The same target with another stream name (one per publisher).
    pub fn with_stream(&self, stream: String) -> Self {
        Self {
            stream,
            ..self.clone()
        }
    }
}

/// `host:port`, `[v6]:port` or `host` (then `default_port`).
pub fn split_host_port(authority: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .with_context(|| format!("bad address {authority:?}"))?;
        let port = match rest.strip_prefix(':') {
            Some(port) => port
                .parse()
                .with_context(|| format!("bad port in {authority:?}"))?,
            None => default_port,
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            port.parse()
                .with_context(|| format!("bad port in {authority:?}"))?,
        )),
        None => Ok((authority.to_owned(), default_port)),
    }
}

pub fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// An RTMP session publishing or playing `target` at `addr`.
pub async fn open(
    addr: SocketAddr,
    target: &RtmpTarget,
    intent: Intent,
) -> anyhow::Result<RtmpConnection> {
    let key = RtmpStreamKey {
        vhost: DEFAULT_VHOST.into(),
        app: target.app.clone(),
        stream: target.stream.clone(),
        query: String::new(),
    };
    let stream_args = match intent {
        Intent::Publish => vec![Value::string("live")],
        Intent::Play => Vec::new(),
    };
    let request = OriginRequest {
        key: &key,
        intent,
        connect_object: &Value::Null,
        tc_query: "",
        stream_args: &stream_args,
        buffer_millis: 1000,
    };
    let session = origin::open(addr, request, DecoderLimits::default())
        .await
        .with_context(|| format!("{} {} at {addr}", intent.as_str(), target.stream))?;
    Ok(session.connection)
}

/// [`open`] for a session of a crowd: counted up, or counted failed and logged.
async fn open_counted(
    addr: SocketAddr,
    target: &RtmpTarget,
    intent: Intent,
    counters: &Counters,
) -> Option<RtmpConnection> {
    match open(addr, target, intent).await {
        Ok(connection) => {
            counters.count_up();
            Some(connection)
        }
        Err(err) => {
            let what = format!("{} could not start", intent.as_str());
            counters.count_failure(&target.stream, &what, &format!("{err:#}"));
            None
        }
    }
}

/// A sample's messages, looped with increasing timestamps.
pub struct Looped<'a> {
    messages: &'a [Message],
    span_ms: u32,
    round: u32,
    at: usize,
}

impl<'a> Looped<'a> {
    pub fn new(messages: &'a [Message], span_ms: u32) -> Self {
        Self {
            messages,
            span_ms,
            round: 0,
            at: 0,
        }
    }
}

impl Iterator for Looped<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if self.messages.is_empty() {
            return None;
        }
        if self.at == self.messages.len() {
            self.at = 0;
            self.round = self.round.wrapping_add(1);
        }
        let mut message = self.messages[self.at].clone();
        self.at += 1;
        message.timestamp = message
            .timestamp
            .wrapping_add(self.round.wrapping_mul(self.span_ms));
        Some(message)
    }
}

/// Publishes the sample in a loop as fast as the path takes it; returns media bytes per second
/// over `duration`, counted after `warm_up`.
pub async fn publish_full_speed(
    addr: SocketAddr,
    target: &RtmpTarget,
    messages: &[Message],
    span_ms: u32,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut connection = open(addr, target, Intent::Publish).await?;
    let warm_until = Instant::now() + warm_up;
    let mut counted_from: Option<(Instant, u64)> = None;
    let mut sent: u64 = 0;
    for (i, message) in Looped::new(messages, span_ms).enumerate() {
        sent += message.payload.len() as u64;
        connection.queue(&message);
        // Flushing every few messages keeps writes large, as an encoder's are.
        if i % 8 == 7 {
            connection.flush().await?;
            let now = Instant::now();
            match counted_from {
                None if now >= warm_until => counted_from = Some((now, sent)),
                Some((start, base)) if now - start >= duration => {
                    return Ok((sent - base) as f64 / (now - start).as_secs_f64());
                }
                _ => {}
            }
        }
    }
    anyhow::bail!("the sample has no messages")
}

/// Publishes the sample at its own pace (as `ffmpeg -re`) until `stop`.
pub async fn publish_real_time(
    addr: SocketAddr,
    target: RtmpTarget,
    messages: Arc<Vec<Message>>,
    span_ms: u32,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let Some(mut connection) = open_counted(addr, &target, Intent::Publish, &counters).await else {
        return;
    };
    let start = Instant::now();
    for message in Looped::new(&messages, span_ms) {
        let due = start + Duration::from_millis(u64::from(message.timestamp));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        connection.queue(&message);
        if let Err(err) = connection.flush().await {
            counters.count_failure(&target.stream, "publisher lost its connection", &err);
            return;
        }
        counters.count_media(message.payload.len());
    }
}

/// Plays `target` until `stop`, counting the media received.
pub async fn play(
    addr: SocketAddr,
    target: RtmpTarget,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let Some(mut connection) = open_counted(addr, &target, Intent::Play, &counters).await else {
        return;
    };
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            message = connection.read_message() => message,
        };
        match message {
            Ok(message) if matches!(message.type_id, kind::AUDIO | kind::VIDEO) => {
                counters.count_media(message.payload.len());
            }
            Ok(_) => {}
            Err(err) => {
                counters.count_failure(&target.stream, "player lost its connection", &err);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn parses_rtmp_urls() {
        let target = RtmpTarget::parse("rtmp://127.0.0.1:19350/live/cam").unwrap();
        assert_eq!(
            target,
            RtmpTarget {
                host: "127.0.0.1".into(),
                port: 19350,
                app: "live".into(),
                stream: "cam".into()
            }
        );
        assert_eq!(RtmpTarget::parse("rtmp://h/a/s").unwrap().port, 1935);
        assert_eq!(RtmpTarget::parse("rtmp://[::1]:1/a/s").unwrap().host, "::1");
        assert!(RtmpTarget::parse("http://h/a/s").is_err());
        assert!(RtmpTarget::parse("rtmp://h/a").is_err());
        assert!(RtmpTarget::parse("rtmp://h:x/a/s").is_err());
    }

    #[test]
    fn looped_messages_keep_timestamps_increasing() {
        let message = |timestamp| Message {
            csid: 6,
            timestamp,
            type_id: kind::VIDEO,
            stream_id: 1,
            payload: Bytes::from_static(&[0x17]),
        };
        let sample = [message(0), message(40)];
        let stamps: Vec<u32> = Looped::new(&sample, 80)
            .take(5)
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(stamps, [0, 40, 80, 120, 160]);
        assert_eq!(Looped::new(&[], 80).next(), None);
    }
}
