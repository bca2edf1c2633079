//! Stream names come from every protocol's clients: normalisation must never panic, accepted
//! keys must be clean, and normalising the display form again must give the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::origins::{MAX_PART_LEN, StreamKey};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (vhost, app, stream) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    for key in [
        StreamKey::new(Some(vhost), app, stream),
        StreamKey::from_path(None, &text),
    ]
    .into_iter()
    .flatten()
    {
        for part in [key.vhost(), key.app(), key.stream()] {
            assert!(
                !part.is_empty()
                    && part.len() <= MAX_PART_LEN
                    && !part.chars().any(char::is_control)
            );
        }
        assert!(!key.stream().contains('/') && !key.stream().contains('?'));
        let again = StreamKey::parse_display(&key.to_string())
            .expect("a key's display form is a valid key");
        assert_eq!(again, key);
    }
});
