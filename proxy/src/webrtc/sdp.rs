//! The two things the proxy does to an origin's SDP answer (pure: text in, text out):
//! point every ICE candidate at the proxy, and read the ICE credentials that name the session.
//!
//! Everything else is kept byte for byte, line endings (CRLF or LF) included, so what the
//! origin negotiated reaches the client unchanged.

/// Where clients send media: the proxy's public WebRTC address (an IP or a host name) and
/// its UDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateAddress {
    pub host: String,
    pub port: u16,
}

/// The origin's ICE credentials of one transport (`a=ice-ufrag`, `a=ice-pwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

const CANDIDATE_PREFIX: &str = "a=candidate:";

/// Rewrites every `a=candidate` line (an answer, or a trickle `sdpfrag`) to `to`:
/// - UDP candidates get the proxy's address and port; `raddr`/`rport` (the origin's own
///   addresses behind a NAT) are removed, the rest of the line is kept.
/// - Candidates of other transports (ICE-TCP) and lines that are not candidates one can parse
///   are removed: the proxy relays UDP only, and leaving them would hand clients the
///   origin's internal address.
pub fn rewrite_candidates(sdp: &str, to: &CandidateAddress) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let (body, ending) = split_ending(line);
        match body.strip_prefix(CANDIDATE_PREFIX) {
            None => out.push_str(line),
            Some(candidate) => {
                if let Some(rewritten) = rewrite_candidate(candidate, to) {
                    out.push_str(CANDIDATE_PREFIX);
                    out.push_str(&rewritten);
                    out.push_str(ending);
                }
            }
        }
    }
    out
}

fn split_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// `foundation component transport priority address port typ type [raddr a rport p] ext...`
/// (RFC 8839 §5.1). The tokens are rebuilt with single spaces, as the grammar writes them.
fn rewrite_candidate(candidate: &str, to: &CandidateAddress) -> Option<String> {
    let tokens: Vec<&str> = candidate.split(' ').collect();
    // `typ` needs its type: `typ raddr ...` would lose its type once raddr is removed, and
    // a control character (a stray CR inside the line) could end up before the line ending
    // and change it (both found by fuzzing).
    if tokens.len() < 8
        || tokens[6] != "typ"
        || matches!(tokens[7], "raddr" | "rport")
        || tokens
            .iter()
            .any(|t| t.is_empty() || t.chars().any(char::is_control))
    {
        return None;
    }
    if !tokens[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    // component-id and priority are numbers; a candidate whose priority reads `raddr` is not
    // one a browser could use (found by fuzzing).
    if tokens[1].parse::<u16>().is_err() || tokens[3].parse::<u32>().is_err() {
        return None;
    }
    let port = to.port.to_string();
    let mut out: Vec<&str> = Vec::with_capacity(tokens.len());
    out.extend_from_slice(&tokens[..4]);
    out.push(&to.host);
    out.push(&port);
    let mut rest = tokens[6..].iter().copied();
    while let Some(token) = rest.next() {
        if token == "raddr" || token == "rport" {
            rest.next();
            continue;
        }
        out.push(token);
    }
    Some(out.join(" "))
}

/// The distinct ICE credentials of the SDP: per media section, its own `a=ice-ufrag` and
/// `a=ice-pwd` or else the session-level ones. With BUNDLE (what SRS answers) there is one.
pub fn ice_credentials(sdp: &str) -> Vec<IceCredentials> {
    let mut session = (None, None);
    let mut sections: Vec<(Option<&str>, Option<&str>)> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            sections.push((None, None));
            continue;
        }
        let target = sections.last_mut().unwrap_or(&mut session);
        if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            target.0 = Some(ufrag.trim());
        } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
            target.1 = Some(pwd.trim());
        }
    }
    if sections.is_empty() {
        sections.push((None, None));
    }
    let mut found: Vec<IceCredentials> = Vec::new();
    for (ufrag, pwd) in sections {
        if let (Some(ufrag), Some(pwd)) = (ufrag.or(session.0), pwd.or(session.1))
            && !ufrag.is_empty()
            && !pwd.is_empty()
            && !found.iter().any(|c| c.ufrag == ufrag)
        {
            found.push(IceCredentials {
                ufrag: ufrag.to_owned(),
                pwd: pwd.to_owned(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> CandidateAddress {
        CandidateAddress {
            host: "203.0.113.9".into(),
            port: 8000,
        }
    }

    const SRS_ANSWER: &str = "v=0\r\n\
        o=SRS/6.0.0(Bee) 1234 2 IN IP4 0.0.0.0\r\n\
        s=SRSPublishSession\r\n\
        t=0 0\r\n\
        a=ice-lite\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:8y2b5e1p\r\n\
        a=ice-pwd:35q8160zb1k5f2959t9q7a36nt7m8m11\r\n\
        a=mid:0\r\n\
        a=candidate:0 1 udp 2130706431 10.0.0.7 8001 typ host generation 0\r\n\
        a=candidate:1 1 tcp 2130706431 10.0.0.7 8001 typ host tcptype passive\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 106\r\n\
        a=ice-ufrag:8y2b5e1p\r\n\
        a=ice-pwd:35q8160zb1k5f2959t9q7a36nt7m8m11\r\n\
        a=mid:1\r\n\
        a=candidate:0 1 udp 2130706431 10.0.0.7 8001 typ host generation 0\r\n";

    #[test]
    fn srs_answer_points_at_the_proxy_and_keeps_the_rest() {
        let out = rewrite_candidates(SRS_ANSWER, &proxy());
        let expected = SRS_ANSWER
            .replace(
                "10.0.0.7 8001 typ host generation",
                "203.0.113.9 8000 typ host generation",
            )
            .replace(
                "a=candidate:1 1 tcp 2130706431 10.0.0.7 8001 typ host tcptype passive\r\n",
                "",
            );
        assert_eq!(out, expected);
        assert!(!out.contains("10.0.0.7"));
    }

    #[test]
    fn lf_endings_and_a_missing_final_newline_are_kept() {
        let sdp = "v=0\na=candidate:1 1 UDP 1 192.168.1.2 5000 typ srflx raddr 10.1.1.1 rport 6000 ufrag x\na=end-of-candidates";
        let out = rewrite_candidates(sdp, &proxy());
        assert_eq!(
            out,
            "v=0\na=candidate:1 1 UDP 1 203.0.113.9 8000 typ srflx ufrag x\na=end-of-candidates"
        );
    }

    #[test]
    fn host_names_and_ipv6_are_written_as_given() {
        let sdp = "a=candidate:1 1 udp 1 ::1 5000 typ host\r\n";
        let to = CandidateAddress {
            host: "media.example.com".into(),
            port: 443,
        };
        assert_eq!(
            rewrite_candidates(sdp, &to),
            "a=candidate:1 1 udp 1 media.example.com 443 typ host\r\n"
        );
        let to = CandidateAddress {
            host: "2001:db8::1".into(),
            port: 8000,
        };
        assert_eq!(
            rewrite_candidates(sdp, &to),
            "a=candidate:1 1 udp 1 2001:db8::1 8000 typ host\r\n"
        );
    }

    #[test]
    fn unparsable_candidates_are_removed() {
        let sdp = "a=candidate:1 1 udp\r\na=candidate:1 1 udp 1 h 2 notyp host\r\na=candidate:1  1 udp 1 h 2 typ host\r\na=candidate:2 1 udp 1 h 2 typ raddr h rport 3\r\nx\r\n";
        assert_eq!(rewrite_candidates(sdp, &proxy()), "x\r\n");
    }

    #[test]
    fn candidates_without_numeric_component_or_priority_are_removed() {
        // Found by fuzzing: a priority of `raddr` survived the rewrite as if it were one.
        let sdp = "a=candidate:4 1 udp raddr 1.2.3.4 5000 typ srflx raddr 1.1.1.1 rport 6000\r\na=candidate:4 x udp 1 1.2.3.4 5000 typ host\r\na=candidate:4 1 udp 4294967296 1.2.3.4 5000 typ host\r\nx\r\n";
        assert_eq!(rewrite_candidates(sdp, &proxy()), "x\r\n");
    }

    #[test]
    fn candidates_with_control_characters_are_removed() {
        // A CR inside the line would otherwise end up just before the LF and turn the
        // rewritten line's ending into CRLF (found by fuzzing).
        let sdp = "a=candidate:2 1 udp 1 h 5000 typ srflx raddr a 1e \r raddr b rport 6\nx\n";
        let out = rewrite_candidates(sdp, &proxy());
        assert_eq!(out, "x\n");
        assert_eq!(rewrite_candidates(&out, &proxy()), out);
    }

    #[test]
    fn credentials_per_section_or_from_the_session() {
        assert_eq!(
            ice_credentials(SRS_ANSWER),
            vec![IceCredentials {
                ufrag: "8y2b5e1p".into(),
                pwd: "35q8160zb1k5f2959t9q7a36nt7m8m11".into()
            }]
        );
        let session_level = "v=0\na=ice-ufrag:u1\na=ice-pwd:p1\nm=audio 9 x\nm=video 9 x\na=ice-ufrag:u2\na=ice-pwd:p2\n";
        let found = ice_credentials(session_level);
        assert_eq!(
            found.iter().map(|c| c.ufrag.as_str()).collect::<Vec<_>>(),
            ["u1", "u2"]
        );
        assert_eq!(found[1].pwd, "p2");
        // A trickle fragment has no m= line at all.
        assert_eq!(
            ice_credentials("a=ice-ufrag:f\r\na=ice-pwd:g\r\n")[0].ufrag,
            "f"
        );
        assert!(ice_credentials("v=0\r\na=ice-ufrag:only\r\n").is_empty());
    }
}
