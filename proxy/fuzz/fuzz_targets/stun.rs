//! STUN arrives from anyone on the WebRTC port: parsing must never panic, and what it accepts
//! must be self-consistent (a username inside the message, integrity that verifies only with
//! the key it was made with).
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::webrtc::{
    Kind, classify,
    stun::{Message, binding_request},
};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    if let Ok(message) = Message::parse(data) {
        assert_eq!(classify(data), Kind::Stun);
        if let Some(username) = message.username() {
            assert!(username.len() <= data.len());
        }
        let _ = message.transaction_id();
        let _ = message.verify_fingerprint();
        let _ = message.verify_integrity(b"fuzz");
        let _ = message.ice_ufrags();
    }
    // A request built from fuzzed credentials parses back and verifies with its password only.
    let text = String::from_utf8_lossy(data);
    let (username, password) = text.split_once('\n').unwrap_or((&text, "pw"));
    if username.len() <= 513 {
        let request = binding_request([9; 12], username, password, data.len() % 2 == 0);
        let message = Message::parse(&request).expect("own requests parse");
        assert_eq!(message.username(), Some(username));
        assert!(message.verify_integrity(password.as_bytes()));
        assert_eq!(message.verify_fingerprint(), Some(true));
        let mut other = password.as_bytes().to_vec();
        other.push(b'x');
        assert!(!message.verify_integrity(&other));
    }
});
