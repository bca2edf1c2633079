//! ffmpeg publishers of a synthetic live stream and ffprobe checks that a URL plays.
//!
//! [`Publisher`] encodes `testsrc2` video and a `sine` tone in real time (H.264 + AAC) and
//! sends it to an RTMP (FLV), SRT (MPEG-TS) or HTTP (FLV or MPEG-TS, POSTed) URL until it is
//! dropped. [`probe`] and [`assert_playable`] run ffprobe, which decodes a second of media,
//! so "playable" means frames really decoded, not just a header seen.

use std::{
    fmt::Write as _,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;

use crate::process::ChildGuard;

/// The container ffmpeg writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Flv,
    MpegTs,
}

impl Container {
    /// The one a URL implies: FLV for RTMP and `.flv` over HTTP, MPEG-TS for SRT, UDP, TCP
    /// and `.ts` over HTTP.
    pub fn for_url(url: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .with_context(|| format!("{url:?} is not a URL"))?;
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        match scheme {
            "rtmp" | "rtmps" => Ok(Self::Flv),
            "srt" | "udp" | "tcp" => Ok(Self::MpegTs),
            "http" | "https" if path.ends_with(".ts") => Ok(Self::MpegTs),
            "http" | "https" => Ok(Self::Flv),
            other => bail!(
                "no container known for {other}:// targets; set one with PublisherBuilder::container"
            ),
        }
    }

    fn ffmpeg_format(self) -> &'static str {
        match self {
            Self::Flv => "flv",
            Self::MpegTs => "mpegts",
        }
    }
}

/// How a [`Publisher`] encodes; build with [`Publisher::builder`].
#[derive(Debug, Clone)]
pub struct PublisherBuilder {
    url: String,
    width: u32,
    height: u32,
    fps: u32,
    duration: Option<Duration>,
    container: Option<Container>,
    copy: Option<PathBuf>,
}

impl PublisherBuilder {
    /// Video size; default 320x240.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        (self.width, self.height) = (width, height);
        self
    }

    /// Frames per second (also the keyframe interval, so one keyframe a second); default 25.
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }

    /// Stop by itself after this much media; default: run until dropped.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Overrides the container chosen from the URL.
    pub fn container(mut self, container: Container) -> Self {
        self.container = Some(container);
        self
    }

    /// Also writes exactly what is sent to the file `path` (the tee muxer, one encoding for
    /// both), so what arrives can be compared byte for byte with what left.
    pub fn copy_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.copy = Some(path.into());
        self
    }

    /// Starts ffmpeg. It connects in the background: see [`Publisher::wait_sending`].
    pub fn start(self) -> anyhow::Result<Publisher> {
        ensure!(
            self.width > 0 && self.height > 0 && self.fps > 0,
            "size and fps must be positive"
        );
        // x264 with yuv420p needs even dimensions.
        ensure!(
            self.width.is_multiple_of(2) && self.height.is_multiple_of(2),
            "width and height must be even"
        );
        let container = match self.container {
            Some(container) => container,
            None => Container::for_url(&self.url)?,
        };
        let (width, height, fps) = (self.width, self.height, self.fps);
        let mut args: Vec<String> = Vec::new();
        let mut push = |words: &[&str]| args.extend(words.iter().map(|w| w.to_string()));
        // -re on both inputs: real-time pace, as a live encoder sends.
        push(&["-re", "-f", "lavfi", "-i"]);
        push(&[&format!("testsrc2=size={width}x{height}:rate={fps}")]);
        push(&[
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
        ]);
        push(&["-map", "0:v", "-map", "1:a"]);
        if let Some(duration) = self.duration {
            push(&["-t", &format!("{:.3}", duration.as_secs_f64())]);
        }
        let gop = fps.to_string();
        push(&[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ]);
        push(&[
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
        ]);
        push(&["-c:a", "aac", "-b:a", "64k"]);
        Publisher::spawn(self.url, &args, container, self.copy.as_deref())
    }
}

/// A running ffmpeg that publishes a test stream; killed when dropped.
pub struct Publisher {
    run: FfmpegRun,
}

impl Publisher {
    /// Publishes 320x240 at 25 fps to `url` with the container the URL implies.
    pub fn start(url: impl Into<String>) -> anyhow::Result<Self> {
        Self::builder(url).start()
    }

    /// Publishes [`sample_flv`] to `url` in a loop at its real pace without re-encoding
    /// (`-c copy`): the same H.264 + AAC 320x240 picture as [`Publisher::start`] at almost no
    /// CPU, so a test can run dozens of publishers on a small machine.
    pub fn looping_sample(url: impl Into<String>) -> anyhow::Result<Self> {
        let url = url.into();
        let container = Container::for_url(&url)?;
        let sample = sample_flv()?.display().to_string();
        let args: Vec<String> = ["-re", "-stream_loop", "-1", "-i", &sample, "-c", "copy"]
            .map(String::from)
            .into();
        Self::spawn(url, &args, container, None)
    }

    /// Runs ffmpeg with `media_args` (inputs and codecs), writing `container` to `url` and,
    /// with `copy`, the same bytes to that file.
    fn spawn(
        url: String,
        media_args: &[String],
        container: Container,
        copy: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let format = container.ffmpeg_format();
        // A live target cannot seek back to patch duration and size in the FLV header.
        let flv = container == Container::Flv;
        let mut output = vec!["-f".to_owned()];
        match copy {
            None => {
                output.push(format.into());
                if flv {
                    output.extend(["-flvflags".into(), "no_duration_filesize".into()]);
                }
                output.push(url.clone());
            }
            Some(copy) => {
                let live = if flv {
                    ":flvflags=no_duration_filesize"
                } else {
                    ""
                };
                output.push("tee".into());
                output.push(format!(
                    "[f={format}{live}]{url}|[f={format}]{}",
                    copy.display()
                ));
            }
        }
        let run = FfmpegRun::spawn("publisher", url, &[media_args, &output].concat())?;
        Ok(Self { run })
    }

    pub fn builder(url: impl Into<String>) -> PublisherBuilder {
        PublisherBuilder {
            url: url.into(),
            width: 320,
            height: 240,
            fps: 25,
            duration: None,
            container: None,
            copy: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.run.url
    }

    /// ffmpeg's warnings and errors so far.
    pub fn log(&self) -> String {
        self.run.log()
    }

    /// Bytes ffmpeg has written to the target, from its `-progress` report (updated about
    /// twice a second).
    pub fn bytes_sent(&self) -> u64 {
        self.run.progress("total_size").unwrap_or(0)
    }

    /// Waits until ffmpeg has connected and sent media; fails with its log when it exits.
    pub fn wait_sending(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.run
            .wait_progress("total_size", 0, timeout, "sent nothing to")
    }

    /// Fails, with ffmpeg's log, when ffmpeg has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.run.ensure_running()
    }

    /// Waits for ffmpeg to end by itself (after a [`PublisherBuilder::duration`]).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.run.wait(timeout)
    }

    /// Waits for ffmpeg to end by itself (after a [`PublisherBuilder::duration`]) and fails,
    /// with its log, unless it sent everything and exited cleanly.
    pub fn wait_done(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait(timeout)?;
        ensure!(
            status.success(),
            "ffmpeg publishing to {} ended with {status}; its log:\n{}",
            self.url(),
            self.log()
        );
        Ok(())
    }

    /// Stops like an operator pressing Ctrl-C: ffmpeg closes the stream properly (FLV
    /// trailer, RTMP deleteStream) instead of vanishing.
    pub fn finish(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.run.process.signal("INT")?;
        self.wait(timeout)
    }

    /// Kills ffmpeg with SIGKILL now: the connection drops mid-stream.
    pub fn kill(&mut self) {
        self.run.process.kill();
    }
}

/// A long-lived viewer: ffmpeg reading a live URL in real time and discarding the media
/// (`-c copy -f null`), reporting how much it has played; killed when dropped.
pub struct Player {
    run: FfmpegRun,
}

impl Player {
    pub fn start(url: impl Into<String>) -> anyhow::Result<Self> {
        let url = url.into();
        // Reads time out (`-rw_timeout`, 5 s) so a stalled source ends the player instead of
        // leaving it hanging.
        let args: Vec<String> = ["-rw_timeout", "5000000", "-i", &url]
            .into_iter()
            .chain(["-map", "0", "-c", "copy", "-f", "null", "-"])
            .map(String::from)
            .collect();
        let run = FfmpegRun::spawn("player", url, &args)?;
        Ok(Self { run })
    }

    pub fn url(&self) -> &str {
        &self.run.url
    }

    pub fn log(&self) -> String {
        self.run.log()
    }

    /// Media time played so far.
    pub fn played(&self) -> Duration {
        Duration::from_micros(self.run.progress("out_time_us").unwrap_or(0))
    }

    /// Waits until the player has played more than `at_least` of media.
    pub fn wait_played(&mut self, at_least: Duration, timeout: Duration) -> anyhow::Result<()> {
        let micros = at_least.as_micros() as u64;
        self.run
            .wait_progress("out_time_us", micros, timeout, "played too little of")
    }

    /// Fails, with ffmpeg's log, when the player has stopped.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.run.ensure_running()
    }

    /// Waits for the player to stop by itself (its source ended or dropped).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.run.wait(timeout)
    }
}

/// One ffmpeg process with its log and `-progress` report in a private temp dir.
struct FfmpegRun {
    process: ChildGuard,
    url: String,
    log_path: PathBuf,
    progress_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FfmpegRun {
    fn spawn(role: &str, url: String, args: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ffmpeg-{role}-"))
            .tempdir()
            .with_context(|| format!("create the {role} temp dir"))?;
        let log_path = dir.path().join("ffmpeg.log");
        let progress_path = dir.path().join("progress");
        let log = File::create(&log_path).context("create ffmpeg.log")?;
        let mut command = Command::new("ffmpeg");
        command
            .args(words("-hide_banner -nostdin -nostats -loglevel warning"))
            .arg("-progress")
            .arg(&progress_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        without_http_proxy(&mut command);
        let process = ChildGuard::spawn(format!("ffmpeg {role} of {url}"), &mut command)?;
        Ok(Self {
            process,
            url,
            log_path,
            progress_path,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|err| format!("(no ffmpeg log: {err})"))
    }

    /// The latest value of `key` in the `-progress` report (updated about twice a second).
    fn progress(&self, key: &str) -> Option<u64> {
        let progress = std::fs::read_to_string(&self.progress_path).unwrap_or_default();
        let prefix = format!("{key}=");
        progress
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Waits until progress `key` exceeds `above`; fails with the log when ffmpeg exits.
    fn wait_progress(
        &mut self,
        key: &str,
        above: u64,
        timeout: Duration,
        failure: &str,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if self.progress(key).unwrap_or(0) > above {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "ffmpeg {failure} {} within {timeout:?}; its log:\n{}",
                self.url,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        let log = self.log();
        self.process
            .ensure_running()
            .with_context(|| format!("ffmpeg log:\n{log}"))
    }

    fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process
            .wait_timeout(timeout)?
            .with_context(|| format!("ffmpeg still running on {} after {timeout:?}", self.url))
    }
}

/// One elementary stream as ffprobe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    /// `video`, `audio`, `data`...
    pub codec_type: String,
    /// ffmpeg's codec name: `h264`, `aac`...
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames decoded from the second of media ffprobe read.
    pub frames: u64,
}

/// What ffprobe found at a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub streams: Vec<ProbedStream>,
}

impl ProbeResult {
    /// The first video stream.
    pub fn video(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.codec_type == "video")
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.codec_type == "audio")
    }
}

/// ffprobe's JSON (`-of json -show_entries stream=...`).
#[derive(Deserialize)]
struct FfprobeOutput {
    #[serde(default)]
    streams: Vec<FfprobeStream>,
}

#[derive(Deserialize)]
struct FfprobeStream {
    #[serde(default)]
    codec_type: String,
    #[serde(default)]
    codec_name: String,
    width: Option<u32>,
    height: Option<u32>,
    /// A string in ffprobe's JSON.
    nb_read_frames: Option<String>,
}

/// Reads and decodes about a second of media from `url` with ffprobe. Never hangs: reads
/// time out (`-rw_timeout`) and ffprobe is killed at `timeout` whatever it is doing.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<ProbeResult> {
    probe_with_options(url, &[], timeout)
}

/// [`probe`] with extra input options, e.g. `[("listen", "1")]` to receive an HTTP POST.
pub fn probe_with_options(
    url: &str,
    options: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<ProbeResult> {
    let dir = tempfile::Builder::new()
        .prefix("ffprobe-")
        .tempdir()
        .context("create the ffprobe temp dir")?;
    // Files, not pipes: nobody reads a pipe while we wait, and a full one would stall ffprobe.
    let (stdout_path, stderr_path) = (
        dir.path().join("stdout.json"),
        dir.path().join("stderr.log"),
    );
    let mut command = Command::new("ffprobe");
    command.args(["-hide_banner", "-v", "error"]);
    // Not `-timeout`: for rtmp:// it means "listen for a publisher".
    command
        .arg("-rw_timeout")
        .arg(timeout.as_micros().max(1).to_string());
    for (name, value) in options {
        command.arg(format!("-{name}")).arg(value);
    }
    command
        // ffprobe's default 5 s of analysis makes every check slow; 2 s still spans two of
        // the Publisher's keyframes, so a stream joined mid-GOP shows its picture size.
        .args(["-analyzeduration", "2000000"])
        .args(["-count_frames", "-read_intervals", "%+1"])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).context("create ffprobe stdout file")?)
        .stderr(File::create(&stderr_path).context("create ffprobe stderr file")?);
    without_http_proxy(&mut command);
    let mut process = ChildGuard::spawn(format!("ffprobe {url}"), &mut command)?;
    let status = process.wait_timeout(timeout)?;
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        bail!("ffprobe {url} did not finish within {timeout:?}; stderr:\n{stderr}");
    };
    ensure!(
        status.success(),
        "ffprobe {url} failed ({status}): {}",
        stderr.trim()
    );
    let stdout = std::fs::read_to_string(&stdout_path).context("read ffprobe output")?;
    parse_probe(&stdout).with_context(|| format!("ffprobe {url} output; stderr:\n{stderr}"))
}

fn parse_probe(json: &str) -> anyhow::Result<ProbeResult> {
    let output: FfprobeOutput =
        serde_json::from_str(json).context("ffprobe output is not the expected JSON")?;
    Ok(ProbeResult {
        streams: output
            .streams
            .into_iter()
            .map(|s| ProbedStream {
                codec_type: s.codec_type,
                codec_name: s.codec_name,
                // ffprobe says 0 before it has seen a keyframe.
                width: s.width.filter(|&w| w > 0),
                height: s.height.filter(|&h| h > 0),
                frames: s.nb_read_frames.and_then(|n| n.parse().ok()).unwrap_or(0),
            })
            .collect(),
    })
}

/// What [`assert_playable`] requires of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Video codec (ffmpeg's name, e.g. `h264`); `None`: no video stream required.
    pub video: Option<String>,
    /// Audio codec (e.g. `aac`); `None`: no audio stream required.
    pub audio: Option<String>,
    /// Video width and height.
    pub size: Option<(u32, u32)>,
}

impl Expect {
    /// H.264 video of `width`x`height` and AAC audio, what [`Publisher`] sends.
    pub fn h264_aac(width: u32, height: u32) -> Self {
        Self {
            video: Some("h264".to_owned()),
            audio: Some("aac".to_owned()),
            size: Some((width, height)),
        }
    }

    /// What a [`Publisher`] sends unless told otherwise ([`Publisher::start`],
    /// [`Publisher::looping_sample`]): H.264 320x240 and AAC.
    pub fn published() -> Self {
        Self::h264_aac(320, 240)
    }

    /// Why `probe` does not meet this expectation, if it does not.
    pub fn mismatch(&self, probe: &ProbeResult) -> Option<String> {
        let mut problems = Vec::new();
        if let Some(codec) = &self.video {
            match probe.video() {
                None => problems.push("no video stream".to_owned()),
                Some(video) => {
                    if &video.codec_name != codec {
                        problems.push(format!(
                            "video codec {} instead of {codec}",
                            video.codec_name
                        ));
                    }
                    if video.frames == 0 {
                        problems.push("no video frame decoded".to_owned());
                    }
                    if let Some((width, height)) = self.size
                        && (video.width, video.height) != (Some(width), Some(height))
                    {
                        problems.push(format!(
                            "video size {:?}x{:?} instead of {width}x{height}",
                            video.width, video.height
                        ));
                    }
                }
            }
        }
        if let Some(codec) = &self.audio {
            match probe.audio() {
                None => problems.push("no audio stream".to_owned()),
                Some(audio) if &audio.codec_name != codec => {
                    problems.push(format!(
                        "audio codec {} instead of {codec}",
                        audio.codec_name
                    ));
                }
                Some(audio) if audio.frames == 0 => {
                    problems.push("no audio frame decoded".to_owned())
                }
                Some(_) => {}
            }
        }
        (!problems.is_empty()).then(|| problems.join(", "))
    }
}

/// Probes `url` until it plays as `expect` says or `timeout` passes (a new stream takes a
/// moment to appear, HLS a segment or two). The error names the last mismatch or ffprobe's
/// stderr.
pub fn assert_playable(
    url: &str,
    expect: &Expect,
    timeout: Duration,
) -> anyhow::Result<ProbeResult> {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        // One attempt may not use the whole budget: a stuck read should be retried.
        let attempt_timeout = remaining.clamp(Duration::from_secs(1), Duration::from_secs(8));
        let problem = match probe(url, attempt_timeout) {
            Ok(found) => match expect.mismatch(&found) {
                None => return Ok(found),
                Some(mismatch) => format!("{mismatch} (found {found:?})"),
            },
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "{url} not playable as {expect:?} after {attempts} attempts in {timeout:?}: {problem}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`assert_playable`] as [`Expect::published`], allowing 30 s for the stream to appear: a
/// player at `url` meets a default [`Publisher`] (a file path works too).
pub fn assert_plays_published(url: &str) -> anyhow::Result<()> {
    assert_playable(url, &Expect::published(), Duration::from_secs(30)).map(drop)
}

/// A 10 s H.264 + AAC FLV of `testsrc` (320x240, 25 fps, a keyframe a second, 1 kHz tone),
/// encoded once per test process and kept in a temporary directory until it exits.
pub fn sample_flv() -> anyhow::Result<&'static Path> {
    static SAMPLE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    let sample = SAMPLE.get_or_init(|| {
        let make = || -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
            let dir = tempfile::Builder::new().prefix("sample-flv-").tempdir()?;
            let path = dir.path().join("sample.flv");
            encode_test_pattern(&path, "testsrc=size=320x240:rate=25", &["-g", "25"])?;
            Ok((dir, path))
        };
        make().map_err(|err| format!("{err:#}"))
    });
    match sample {
        Ok((_, path)) => Ok(path),
        Err(err) => bail!("cannot make the sample FLV: {err}"),
    }
}

/// Encodes 10 s of the lavfi video `source` and a 1 kHz sine to an H.264 + AAC FLV at
/// `path`; `video_args` adds x264 options (GOP, profile...).
pub fn encode_test_pattern(path: &Path, source: &str, video_args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new("ffmpeg");
    command
        .args(words(
            "-hide_banner -nostdin -loglevel error -y -f lavfi -i",
        ))
        .arg(source)
        .args(words(
            "-f lavfi -i sine=frequency=1000:sample_rate=48000 -t 10 \
             -c:v libx264 -preset ultrafast -pix_fmt yuv420p",
        ))
        .args(video_args)
        .args(words("-c:a aac -b:a 128k -f flv"))
        .arg(path)
        .stdin(Stdio::null());
    let output = command.output().context("run ffmpeg")?;
    ensure!(
        output.status.success(),
        "ffmpeg could not encode {source}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// An SRT caller URL for ffmpeg/ffprobe with `streamid` percent-encoded, as SRT stream ids
/// such as `#!::r=live/s,m=publish` need: ffmpeg decodes it before the handshake.
pub fn srt_caller_url(addr: SocketAddr, streamid: &str) -> String {
    let mut encoded = String::with_capacity(streamid.len() * 3);
    for byte in streamid.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    format!("srt://{addr}?streamid={encoded}&mode=caller")
}

/// Command-line words written as one string, for fixed option lists.
fn words(line: &'static str) -> impl Iterator<Item = &'static str> {
    line.split_whitespace()
}

/// ffmpeg honours `http_proxy`; the peers under test are on loopback.
fn without_http_proxy(command: &mut Command) {
    command.env_remove("http_proxy").env_remove("HTTP_PROXY");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_follows_the_url() {
        for (url, container) in [
            ("rtmp://h/live/s", Container::Flv),
            ("srt://h:1?streamid=a/b", Container::MpegTs),
            ("http://h/live/s.ts?token=1", Container::MpegTs),
            ("http://h/live/s.flv", Container::Flv),
        ] {
            assert_eq!(Container::for_url(url).unwrap(), container, "{url}");
        }
        assert!(Container::for_url("file.flv").is_err());
        assert!(Container::for_url("gopher://h/x").is_err());
    }

    #[test]
    fn srt_stream_id_is_percent_encoded() {
        let url = srt_caller_url("127.0.0.1:10080".parse().unwrap(), "#!::r=live/s,m=publish");
        assert_eq!(
            url,
            "srt://127.0.0.1:10080?streamid=%23%21%3A%3Ar%3Dlive%2Fs%2Cm%3Dpublish&mode=caller"
        );
    }

    #[test]
    fn probe_output_parses_and_mismatches_are_named() {
        let json = r#"{"programs":[],"streams":[
            {"codec_name":"aac","codec_type":"audio","nb_read_frames":"87"},
            {"codec_name":"h264","codec_type":"video","width":320,"height":240,"nb_read_frames":"26"}]}"#;
        let found = parse_probe(json).unwrap();
        assert_eq!(found.video().unwrap().frames, 26);
        assert_eq!(found.audio().unwrap().codec_name, "aac");
        assert_eq!(Expect::h264_aac(320, 240).mismatch(&found), None);
        let wrong = Expect::h264_aac(640, 360).mismatch(&found).unwrap();
        assert!(wrong.contains("instead of 640x360"), "{wrong}");

        let silent = parse_probe(
            r#"{"streams":[{"codec_name":"h264","codec_type":"video","width":0,"height":0}]}"#,
        )
        .unwrap();
        let problems = Expect::h264_aac(320, 240).mismatch(&silent).unwrap();
        assert!(problems.contains("no video frame decoded"), "{problems}");
        assert!(problems.contains("no audio stream"), "{problems}");
    }
}
