//! Sample media made with ffmpeg once per run (`originstack_e2e::ffmpeg`): real H.264 + AAC in
//! FLV, so every byte relayed is what an encoder sends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use originstack_e2e::ffmpeg::encode_test_pattern;

use crate::flv::{self, Tag};

/// 320x240 at 25 fps, a keyframe every second: the stream many real-time publishers send (the
/// same sample the RTMP tests publish).
pub fn light_sample() -> anyhow::Result<PathBuf> {
    Ok(originstack_e2e::ffmpeg::sample_flv()?.to_owned())
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
