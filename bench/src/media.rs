//! Sample media made with ffmpeg once per run: real H.264 + AAC in FLV, so every byte relayed
//! is what an encoder sends.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::flv::{self, Tag};

/// Encodes 10 s of an ffmpeg test pattern (`source`, a lavfi video source) and a sine tone
/// to an H.264 + AAC FLV at `path`.
pub fn encode_test_pattern(path: &Path, source: &str, video_args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args([
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(video_args)
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
        .arg(path)
        .status()
        .context("run ffmpeg (install it with `make deps`)")?;
    anyhow::ensure!(status.success(), "ffmpeg could not encode {source}");
    Ok(())
}

/// 320x240 at 25 fps, a keyframe every second: the stream many real-time publishers send.
pub fn light_sample(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("light.flv");
    encode_test_pattern(&path, "testsrc=size=320x240:rate=25", &["-g", "25"])?;
    Ok(path)
}

/// 1280x720 at 30 fps and 20 Mbit/s: big frames, for throughput at full speed.
pub fn heavy_sample(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("heavy.flv");
    encode_test_pattern(
        &path,
        "testsrc2=size=1280x720:rate=30",
        &["-b:v", "20M", "-g", "60"],
    )?;
    Ok(path)
}

/// The tags of an FLV file.
pub fn tags(path: &Path) -> anyhow::Result<Vec<Tag>> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    flv::read_file(&data).with_context(|| format!("{} is not FLV", path.display()))
}

/// Length of one pass over `tags` in milliseconds (the last timestamp plus one frame), so a
/// looped sample keeps its timestamps increasing.
pub fn loop_span_ms(tags: &[Tag]) -> u32 {
    tags.iter().map(|t| t.timestamp).max().unwrap_or(0) + 40
}
