//! Hostile request targets and Host headers into the HTTP streaming classifier: never a
//! panic; every stream it names is a clean key, and hostile paths are refused.
#![no_main]

use http::{Request, header};
use libfuzzer_sys::fuzz_target;
use originstack_proxy::http::request::{RequestKind, classify};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (target, host) = text.split_once('\n').unwrap_or((&text, "live.example"));
    let Ok(request) = Request::builder()
        .uri(target)
        .header(header::HOST, host)
        .body(())
    else {
        return;
    };
    let Ok(kind) = classify(&request) else {
        return;
    };
    // The contract stated independently of the classifier: no `..` segment, in any of its
    // percent-encoded spellings, and no backslash.
    let path = request.uri().path().to_ascii_lowercase();
    assert!(
        !path.contains('\\') && !path.contains("%5c"),
        "{path:?} accepted"
    );
    for segment in path.split('/') {
        assert!(
            !matches!(segment, ".." | "%2e%2e" | ".%2e" | "%2e."),
            "{path:?} accepted"
        );
    }
    if let RequestKind::Live { key } | RequestKind::Playlist { key, .. } = kind {
        for part in [key.vhost(), key.app(), key.stream()] {
            assert!(!part.is_empty() && !part.chars().any(char::is_control));
        }
        assert!(!key.stream().contains('/') && !key.stream().contains('?'));
    }
});
