//! Playlists come from origins and are rewritten for players: rewriting must never panic, it
//! keeps one output line per input line, and every URI line is either rewritten to carry the
//! session or, when no player could resolve it either, left exactly as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::http::playlist::{SESSION_PARAM, rewrite};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, body) = text.split_once('\n').unwrap_or(("/live/cam.m3u8", &text));
    let Ok(out) = rewrite(body, path, "fuzz") else {
        return;
    };
    assert_eq!(out.lines().count(), body.lines().count());
    for (before, after) in body.lines().zip(out.lines()) {
        let before = before.trim();
        if before.is_empty() || before.starts_with('#') {
            continue;
        }
        assert!(
            after == before || after.contains(SESSION_PARAM),
            "{before:?} -> {after:?}"
        );
    }
});
