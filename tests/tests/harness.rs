//! Proves the real-peer harness: ffmpeg publishes to an nginx-rtmp origin and ffprobe plays
//! the stream back over RTMP and over HLS from the origin's HTTP port; the SRT and HTTP
//! publishers deliver decodable H.264/AAC to an ffprobe listening for them.
//!
//! The tests run in parallel, each with its own origin, ports and stream names.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use originstack_e2e::{
    Expect, NginxRtmpConfig, NginxRtmpOrigin, ProbeResult, Publisher, assert_playable, free_port,
    probe_with_options, srt_caller_url,
};

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Publishes `app/stream` at `width`x`height` to a fresh origin and checks every way the
/// origin lets a client see it.
fn publish_and_play_back(
    config: NginxRtmpConfig,
    app: &str,
    stream: &str,
    (width, height): (u32, u32),
) {
    let started = Instant::now();
    let origin = NginxRtmpOrigin::start_with(config).expect("start nginx-rtmp");
    let origin_up = started.elapsed();
    assert!(
        !origin.has_stream(app, stream).unwrap(),
        "fresh origin already has {app}/{stream}"
    );

    let mut publisher = Publisher::builder(origin.rtmp_url(app, stream))
        .size(width, height)
        .start()
        .expect("start ffmpeg");
    publisher
        .wait_sending(STEP_TIMEOUT)
        .expect("publisher connects");

    origin
        .wait_for_stream(app, stream, STEP_TIMEOUT)
        .expect("origin reports the stream");
    assert!(!origin.has_stream(app, "nobody-publishes-this").unwrap());
    let published = started.elapsed();

    let expect = Expect::h264_aac(width, height);
    let rtmp = assert_playable(&origin.rtmp_url(app, stream), &expect, STEP_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err:#}\npublisher log:\n{}", publisher.log()));
    let rtmp_done = started.elapsed();
    // The codec metadata shows on the stat page once media has flowed, as it has by now.
    let reported = origin.wait_for_stream(app, stream, STEP_TIMEOUT).unwrap();
    assert_eq!(
        reported.video_codec.as_deref(),
        Some("H264"),
        "{reported:?}"
    );
    assert_eq!(reported.audio_codec.as_deref(), Some("AAC"), "{reported:?}");
    assert_eq!(
        (reported.width, reported.height),
        (Some(width), Some(height)),
        "{reported:?}"
    );
    let hls = assert_playable(&origin.hls_url(app, stream), &expect, STEP_TIMEOUT).unwrap_or_else(
        |err| {
            panic!(
                "{err:#}\npublisher log:\n{}\nnginx log:\n{}",
                publisher.log(),
                origin.error_log()
            )
        },
    );
    let hls_done = started.elapsed();

    // The stat page is live, not a snapshot: the stream goes when its publisher does.
    publisher.kill();
    origin
        .wait_for_stream_gone(app, stream, STEP_TIMEOUT)
        .expect("stream leaves the origin");
    let sessions = origin.rtmp_access_log();
    for command in ["PUBLISH", "PLAY"] {
        assert!(
            sessions.contains(&format!("{command} \"{app}\" \"{stream}\"")),
            "no {command} session in the RTMP access log:\n{sessions}"
        );
    }

    eprintln!(
        "{app}/{stream}: origin up {origin_up:?}, published {published:?}, rtmp plays {rtmp_done:?}, \
         hls plays {hls_done:?}, gone {:?} (rtmp {} video frames, hls {})",
        started.elapsed(),
        frames(&rtmp),
        frames(&hls),
    );
}

fn frames(probe: &ProbeResult) -> u64 {
    probe.video().map_or(0, |v| v.frames)
}

#[test]
fn rtmp_publish_plays_back_over_rtmp_and_hls() {
    publish_and_play_back(NginxRtmpConfig::default(), "live", "harness-a", (320, 240));
}

/// A second origin next to the first, with its own application list and picture size, so
/// both the parallel isolation and the size check are exercised.
#[test]
fn second_origin_with_custom_app_plays_back_in_parallel() {
    let config = NginxRtmpConfig {
        apps: vec!["cam".to_owned()],
        ..NginxRtmpConfig::default()
    };
    publish_and_play_back(config, "cam", "harness-b", (352, 288));
}

/// The fault-injection kill: nginx is gone at once, its publisher loses the connection.
#[test]
fn killed_origin_drops_its_publisher() {
    let mut origin = NginxRtmpOrigin::start().expect("start nginx-rtmp");
    let mut publisher =
        Publisher::start(origin.rtmp_url("live", "harness-kill")).expect("start ffmpeg");
    publisher
        .wait_sending(STEP_TIMEOUT)
        .expect("publisher connects");
    origin
        .wait_for_stream("live", "harness-kill", STEP_TIMEOUT)
        .expect("origin reports the stream");

    origin.kill();
    assert!(
        TcpStream::connect(origin.rtmp_addr()).is_err(),
        "killed origin still accepts RTMP"
    );
    assert!(
        origin.streams().is_err(),
        "killed origin still answers /stat"
    );
    let status = publisher
        .wait(STEP_TIMEOUT)
        .expect("ffmpeg notices the origin is gone");
    assert!(
        !status.success(),
        "ffmpeg ended cleanly ({status}) though its origin died"
    );
}

/// Publishes to `url` where an ffprobe started with `listen_options` waits, and checks what
/// it decoded. The publisher retries until the listener is up: it binds in its own time.
fn publish_to_listening_probe(
    url: &str,
    listen_url: &str,
    listen_options: &'static [(&str, &str)],
) -> ProbeResult {
    let listener = {
        let listen_url = listen_url.to_owned();
        thread::spawn(move || probe_with_options(&listen_url, listen_options, STEP_TIMEOUT))
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut publisher = loop {
        let mut publisher = Publisher::start(url).expect("start ffmpeg");
        match publisher.wait_sending(Duration::from_secs(3)) {
            Ok(()) => break publisher,
            Err(err) if Instant::now() < deadline && !listener.is_finished() => {
                eprintln!("retrying publish to {url}: {err:#}");
                thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("cannot publish to {url}: {err:#}"),
        }
    };
    let probed = listener
        .join()
        .expect("probe thread")
        .unwrap_or_else(|err| {
            panic!("{err:#}\npublisher log:\n{}", publisher.log());
        });
    publisher.kill();
    probed
}

#[test]
fn srt_publisher_sends_h264_aac() {
    let started = Instant::now();
    let port = free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let probed = publish_to_listening_probe(
        &srt_caller_url(addr, "#!::r=live/harness-srt,m=publish"),
        &format!("srt://{addr}?mode=listener"),
        &[],
    );
    assert_eq!(
        Expect::h264_aac(320, 240).mismatch(&probed),
        None,
        "{probed:?}"
    );
    eprintln!("srt: decoded {probed:?} in {:?}", started.elapsed());
}

#[test]
fn http_publisher_posts_h264_aac_flv() {
    let url = format!("http://127.0.0.1:{}/live/harness-http.flv", free_port());
    let probed = publish_to_listening_probe(&url, &url, &[("listen", "1")]);
    assert_eq!(
        Expect::h264_aac(320, 240).mismatch(&probed),
        None,
        "{probed:?}"
    );
}
