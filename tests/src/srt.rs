//! SRT peers speaking libsrt itself: `srt-live-transmit` (Debian's `srt-tools`) as an origin
//! that records what a caller publishes, as an origin serving what ffmpeg feeds it over UDP,
//! and as a player or publisher through the proxy.
//!
//! Each [`LiveTransmit`] writes what it receives for `file://con` (its stdout) to
//! [`LiveTransmit::output`] and its log to [`LiveTransmit::log`], both in a private temporary
//! directory, so tests compare what arrived byte for byte with what was sent. ffmpeg SRT
//! publishers and ffprobe players are in [`crate::ffmpeg`].

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use crate::process::{ChildGuard, free_udp_port, wait_for_udp};

/// How long srt-live-transmit may take to bind its listening port.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `srt-live-transmit`; killed when dropped.
pub struct LiveTransmit {
    process: ChildGuard,
    output: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LiveTransmit {
    /// `srt-live-transmit` with `args` (options, then the source and target URIs); a
    /// `file://con` target lands in [`LiveTransmit::output`].
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("srt-live-transmit-")
            .tempdir()
            .context("create the srt-live-transmit temp dir")?;
        let (output, log) = (dir.path().join("output"), dir.path().join("log"));
        let mut command = Command::new("srt-live-transmit");
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&output).context("create the output file")?)
            .stderr(File::create(&log).context("create the log file")?);
        let process = ChildGuard::spawn(
            format!("srt-live-transmit {}", args.join(" ")),
            &mut command,
        )
        .context("srt-live-transmit is part of srt-tools (`make deps`)")?;
        Ok(Self {
            process,
            output,
            log,
            _dir: dir,
        })
    }

    /// Receives from `source` into [`LiveTransmit::output`], once (`-a:no`: no reconnection
    /// when the source ends): a player of an `srt://` caller URL.
    pub fn record(source: &str) -> anyhow::Result<Self> {
        Self::start(&["-a:no", source, "file://con"])
    }

    /// An origin taking a publish: an SRT listener on a free loopback port recording what its
    /// caller sends into [`LiveTransmit::output`]. Returns once the port is bound, with its
    /// address.
    pub fn recording_listener() -> anyhow::Result<(Self, SocketAddr)> {
        let port = free_udp_port();
        let peer = Self::record(&format!("srt://127.0.0.1:{port}?mode=listener"))?;
        peer.listening(port)
    }

    /// An origin serving a stream: an SRT listener on a free loopback port relaying to its
    /// caller what arrives as MPEG-TS over UDP at `input` (where an ffmpeg publisher sends
    /// it). Returns once the port is bound, with its address.
    pub fn udp_fed_listener(input: SocketAddr) -> anyhow::Result<(Self, SocketAddr)> {
        let port = free_udp_port();
        let peer = Self::start(&[
            &format!("udp://{input}"),
            &format!("srt://127.0.0.1:{port}?mode=listener"),
        ])?;
        peer.listening(port)
    }

    fn listening(self, port: u16) -> anyhow::Result<(Self, SocketAddr)> {
        wait_for_udp(port, BIND_TIMEOUT).with_context(|| format!("log:\n{}", self.log()))?;
        Ok((self, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// What it received for a `file://con` target so far.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Its log (stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|err| format!("(no log: {err})"))
    }

    /// Waits until [`LiveTransmit::output`] has not grown for `quiet` (what was in flight
    /// has landed); returns its length.
    pub fn wait_output_settled(&self, quiet: Duration) -> u64 {
        let mut last = None;
        loop {
            let len = std::fs::metadata(&self.output).map_or(0, |m| m.len());
            if last == Some(len) {
                return len;
            }
            last = Some(len);
            std::thread::sleep(quiet);
        }
    }

    /// Waits up to `timeout` for it to exit by itself (its peer closed); its exit status,
    /// `None` while it still runs.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        self.process.wait_timeout(timeout)
    }

    /// Kills it now (SIGKILL): its peer hears nothing, as when a client vanishes.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
