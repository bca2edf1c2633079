//! Answers come from origins and go to clients: the candidate rewrite must never panic, keep
//! every other line byte for byte (line endings included), and leave no candidate that does
//! not point at the proxy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::webrtc::sdp::{CandidateAddress, ice_credentials, rewrite_candidates};

fuzz_target!(|data: &[u8]| {
    let sdp = String::from_utf8_lossy(data);
    let to = CandidateAddress {
        host: "203.0.113.9".into(),
        port: 8000,
    };
    let out = rewrite_candidates(&sdp, &to);
    let others = |text: &str| -> Vec<String> {
        text.split_inclusive('\n')
            .filter(|line| !line.starts_with("a=candidate:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(others(&sdp), others(&out), "non-candidate lines changed");
    for line in out.split_inclusive('\n') {
        if let Some(candidate) = line.strip_prefix("a=candidate:") {
            let tokens: Vec<&str> = candidate
                .trim_end_matches(['\r', '\n'])
                .split(' ')
                .collect();
            assert_eq!(tokens[4], "203.0.113.9", "{line:?}");
            assert_eq!(tokens[5], "8000", "{line:?}");
            assert!(tokens[2].eq_ignore_ascii_case("udp"), "{line:?}");
            assert!(tokens[1].parse::<u16>().is_ok(), "{line:?}");
            assert!(tokens[3].parse::<u32>().is_ok(), "{line:?}");
            // The related address is gone (a foundation may still spell `raddr`).
            assert!(!tokens[6..].contains(&"raddr"), "{line:?}");
        }
    }
    // Rewriting is idempotent: a rewritten answer rewrites to itself.
    assert_eq!(rewrite_candidates(&out, &to), out);
    for credentials in ice_credentials(&sdp) {
        assert!(!credentials.ufrag.is_empty() && !credentials.pwd.is_empty());
    }
});
