//! `srs-standin`: SRS 7 as far as OriginStack depends on it, built on nginx-rtmp and ffmpeg,
//! for tests and the one-node test cluster. Run it as SRS: `./objs/srs -c conf/srs.conf`.
//! See `originstack_e2e::standin` and docs/srs-compatibility.md.

fn main() -> std::process::ExitCode {
    originstack_e2e::standin::main()
}
