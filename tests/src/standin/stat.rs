//! What nginx-rtmp says about its streams: its `/stat` XML, read over the private unix socket.

use std::{path::Path, time::Duration};

use crate::nginx_rtmp::{child, child_text, children};
use anyhow::{Context as _, bail, ensure};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixStream,
};

/// A stat page is a few KiB per stream; anything far bigger is not one.
const MAX_STAT_BYTES: u64 = 16 * 1024 * 1024;

/// The whole page.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub pid: u32,
    pub streams: Vec<StatStream>,
}

/// One live stream (published, or only waited for by players).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatStream {
    pub app: String,
    pub name: String,
    pub publishing: bool,
    /// Connected clients, the publisher included.
    pub clients: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bits per second, as nginx-rtmp measures them.
    pub bw_in: u64,
    pub bw_out: u64,
    pub video: Option<Video>,
    pub audio: Option<Audio>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Video {
    pub codec: String,
    pub profile: String,
    pub level: String,
    pub width: u64,
    pub height: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audio {
    pub codec: String,
    pub profile: String,
    pub channels: u64,
    pub sample_rate: u64,
}

/// GETs `/stat` from nginx's unix socket.
pub async fn fetch(socket: &Path) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connect to {}", socket.display()))?;
        // HTTP/1.0: nginx answers with a plain body and closes.
        stream
            .write_all(b"GET /stat HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_STAT_BYTES)
            .read_to_end(&mut raw)
            .await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("nginx's stat page did not answer within 5 s")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("nginx's stat answer has no header end")?;
    ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "nginx's stat page answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// Parses nginx-rtmp's stat XML (`<rtmp><pid/><server><application><name/><live><stream>`).
pub fn parse(xml: &str) -> anyhow::Result<Stat> {
    let doc = roxmltree::Document::parse(xml).context("stat page is not XML")?;
    let root = doc.root_element();
    if !root.has_tag_name("rtmp") {
        bail!("stat page root is <{}>, not <rtmp>", root.tag_name().name());
    }
    let pid = child_text(root, "pid")
        .and_then(|pid| pid.parse().ok())
        .context("stat page has no <pid>")?;
    let number = |node, tag| {
        child_text(node, tag)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut streams = Vec::new();
    for application in children(root, "server").flat_map(|s| children(s, "application")) {
        let app = child_text(application, "name").unwrap_or_default();
        for stream in children(application, "live").flat_map(|l| children(l, "stream")) {
            let meta = child(stream, "meta");
            let video = meta.and_then(|m| child(m, "video")).map(|v| Video {
                codec: child_text(v, "codec").unwrap_or_default().to_owned(),
                profile: child_text(v, "profile").unwrap_or_default().to_owned(),
                level: child_text(v, "level").unwrap_or_default().to_owned(),
                width: number(v, "width"),
                height: number(v, "height"),
            });
            let audio = meta.and_then(|m| child(m, "audio")).map(|a| Audio {
                codec: child_text(a, "codec").unwrap_or_default().to_owned(),
                profile: child_text(a, "profile").unwrap_or_default().to_owned(),
                channels: number(a, "channels"),
                sample_rate: number(a, "sample_rate"),
            });
            streams.push(StatStream {
                app: app.to_owned(),
                name: child_text(stream, "name").unwrap_or_default().to_owned(),
                publishing: child(stream, "publishing").is_some(),
                clients: number(stream, "nclients"),
                bytes_in: number(stream, "bytes_in"),
                bytes_out: number(stream, "bytes_out"),
                bw_in: number(stream, "bw_in"),
                bw_out: number(stream, "bw_out"),
                video,
                audio,
            });
        }
    }
    Ok(Stat { pid, streams })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from nginx 1.22.1 with Debian's RTMP module: one publisher, one player.
    const STAT: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><pid>3820</pid><server><application><name>live</name><live>
<stream><name>s1</name><time>7117</time><bw_in>811000</bw_in><bytes_in>753298</bytes_in><bw_out>0</bw_out><bytes_out>124618</bytes_out>
<client><id>2</id><address>::1</address><active/></client>
<client><id>1</id><address>::ffff:127.0.0.1</address><publishing/><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>25</frame_rate><codec>H264</codec><profile>Baseline</profile><compat>192</compat><level>1.3</level></video><audio><codec>AAC</codec><profile>LC</profile><channels>1</channels><sample_rate>44100</sample_rate></audio></meta>
<nclients>2</nclients><publishing/><active/></stream>
<stream><name>waiting</name><nclients>1</nclients></stream>
<nclients>3</nclients></live></application></server></rtmp>"#;

    #[test]
    fn streams_and_their_codecs_are_read() {
        let stat = parse(STAT).unwrap();
        assert_eq!(stat.pid, 3820);
        let s1 = &stat.streams[0];
        assert_eq!((s1.app.as_str(), s1.name.as_str()), ("live", "s1"));
        assert!(s1.publishing);
        assert_eq!((s1.clients, s1.bytes_in, s1.bw_in), (2, 753298, 811000));
        let video = s1.video.as_ref().unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("H264", 320, 240)
        );
        assert_eq!(
            (video.profile.as_str(), video.level.as_str()),
            ("Baseline", "1.3")
        );
        let audio = s1.audio.as_ref().unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.channels, audio.sample_rate),
            ("AAC", 1, 44100)
        );
        let waiting = &stat.streams[1];
        assert!(!waiting.publishing && waiting.video.is_none());
        assert!(parse("<html/>").is_err());
    }
}
