//! Hostile request heads into the peek parser of the HTTP listener's direct path: never a
//! panic; a head it takes lies inside the bytes, parses the same from those bytes alone, and
//! announces no body.
#![no_main]

use http::header;
use libfuzzer_sys::fuzz_target;
use originstack_proxy::httpd::direct::parse_head;

fuzz_target!(|data: &[u8]| {
    let Some((request, len)) = parse_head(data) else {
        return;
    };
    assert!(len <= data.len());
    let head = &data[..len];
    // httparse ends a head at an empty line after LF or CRLF.
    assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"), "{head:?}");
    let (again, again_len) = parse_head(head).expect("the head alone parses");
    assert_eq!(again_len, len);
    assert_eq!(again.method(), request.method());
    assert_eq!(again.uri(), request.uri());
    assert!(request.uri().path().starts_with('/'));
    assert!(!request.headers().contains_key(header::TRANSFER_ENCODING));
    assert!(
        request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
    );
});
