//! Playlists come from origins and are rewritten for players: rewriting must never panic, and
//! every URI line of a rewritten playlist must be a proxy path carrying the session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::http::playlist::{SESSION_PARAM, rewrite};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, body) = text.split_once('\n').unwrap_or(("/live/cam.m3u8", &text));
    let Ok(out) = rewrite(body, path, "fuzz") else { return };
    for line in out.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Lines that are not URIs a player could resolve (e.g. `//` with no host, or
        // non-printable bytes) are left as
        // they were; every path the rewriter produced carries the session.
        let printable = line.bytes().all(|b| b.is_ascii_graphic());
        if printable && line.starts_with('/') && !line.starts_with("//") {
            assert!(line.contains(SESSION_PARAM), "{line}");
        }
    }
});
