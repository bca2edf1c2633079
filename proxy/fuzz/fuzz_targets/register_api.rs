//! The registration body parser gets hostile bytes: it must never panic, and whatever it
//! accepts must satisfy the registry's invariants and survive the JSON round trip the Redis
//! backend stores it through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::origins::{Origin, parse_heartbeat};

fuzz_target!(|body: &[u8]| {
    let Ok(origin) = parse_heartbeat(body) else {
        return;
    };
    for id in [&origin.server, &origin.service, &origin.pid] {
        assert!(!id.is_empty() && id.chars().count() <= 128 && !id.chars().any(char::is_control));
    }
    assert!(!origin.ip.is_unspecified());
    assert!(!origin.endpoints.rtmp.is_empty());
    let all = [
        &origin.endpoints.rtmp,
        &origin.endpoints.http,
        &origin.endpoints.api,
        &origin.endpoints.rtc,
        &origin.endpoints.srt,
    ];
    for list in all {
        assert!(list.len() <= 16);
        assert!(
            list.iter()
                .all(|addr| addr.port() != 0 && !addr.ip().is_unspecified())
        );
    }
    assert!(origin.load.is_finite() && origin.load >= 0.0);
    let stored = serde_json::to_string(&origin).expect("an accepted origin serialises");
    let restored: Origin = serde_json::from_str(&stored).expect("and reads back");
    assert_eq!(restored, origin);
});
