//! Real peers for tests (redis-server, nginx with the RTMP module, ffmpeg/ffprobe, the
//! OriginStack binaries), started on free loopback ports and stopped on drop.
//!
//! Every helper here starts a real process; nothing is mocked. Tests using them run in
//! parallel: ports come from [`free_port`], files from a per-peer temporary directory.

pub mod process;

pub use process::{ChildGuard, free_port, free_udp_port, wait_for_tcp};
