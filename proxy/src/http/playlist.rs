//! HLS playlist rewriting (pure: text in, text out).
//!
//! Every URI in a playlist (media segments, variant playlists, and the `URI="…"` attributes of
//! `EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`, `EXT-X-KEY`, `EXT-X-MEDIA`, …), relative or
//! absolute, is turned into a path on the proxy that carries the playback session id, so the
//! follow-up request reaches the same origin through any proxy replica.

use url::Url;

/// Query parameter naming the playback session (the upstream SRS proxy's name).
pub const SESSION_PARAM: &str = "spbhid";

/// Playlists are small; anything bigger is not one we should hold in memory.
pub const MAX_PLAYLIST_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaylistError {
    #[error("the origin's playlist is {0} bytes, over the {MAX_PLAYLIST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the origin's response is not an HLS playlist (no #EXTM3U header)")]
    NotAPlaylist,
    #[error("the playlist path {0:?} is not a valid base for its URIs")]
    BadBase(String),
}

/// Rewrites `playlist`, fetched at `request_path` (e.g. `/live/stream.m3u8`), so that every URI
/// it names is a proxy path carrying `session`.
pub fn rewrite(playlist: &str, request_path: &str, session: &str) -> Result<String, PlaylistError> {
    if playlist.len() > MAX_PLAYLIST_BYTES {
        return Err(PlaylistError::TooLarge(playlist.len()));
    }
    if !playlist
        .trim_start_matches('\u{feff}')
        .starts_with("#EXTM3U")
    {
        return Err(PlaylistError::NotAPlaylist);
    }
    // A dummy authority lets `Url::join` resolve relative references, dot segments and
    // absolute URLs exactly as a player would.
    let base = Url::parse("http://origin.invalid")
        .and_then(|root| root.join(request_path))
        .map_err(|_| PlaylistError::BadBase(request_path.to_owned()))?;

    let mut out = String::with_capacity(playlist.len() + playlist.len() / 4);
    for line in playlist.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if trimmed.starts_with('#') {
            rewrite_tag(trimmed, &base, session, &mut out);
        } else {
            out.push_str(&proxied(trimmed, &base, session));
        }
        out.push('\n');
    }
    Ok(out)
}

/// Rewrites the `URI="…"` attribute of a tag, if it has one; other tags pass unchanged.
fn rewrite_tag(tag: &str, base: &Url, session: &str, out: &mut String) {
    const ATTR: &str = "URI=\"";
    let Some(start) = find_uri_attr(tag) else {
        out.push_str(tag);
        return;
    };
    let value_start = start + ATTR.len();
    let Some(len) = tag[value_start..].find('"') else {
        out.push_str(tag);
        return;
    };
    out.push_str(&tag[..value_start]);
    out.push_str(&proxied(
        &tag[value_start..value_start + len],
        base,
        session,
    ));
    out.push_str(&tag[value_start + len..]);
}

/// Finds `URI="` as an attribute name (after `:` or `,`), not inside another attribute's value.
fn find_uri_attr(tag: &str) -> Option<usize> {
    let mut in_quotes = false;
    let bytes = tag.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'U' if !in_quotes
                && i > 0
                && matches!(bytes[i - 1], b':' | b',')
                && tag[i..].starts_with("URI=\"") =>
            {
                return Some(i);
            }
            _ => {}
        }
    }
    None
}

/// The proxy path for `uri`: resolved against the playlist, authority dropped, the origin's own
/// query kept, and the session id set.
fn proxied(uri: &str, base: &Url, session: &str) -> String {
    let Ok(mut resolved) = base.join(uri) else {
        // Not a URI a player could fetch either; leave it for the player to reject.
        return uri.to_owned();
    };
    if !matches!(resolved.scheme(), "http" | "https") {
        return uri.to_owned();
    }
    let kept: Vec<(String, String)> = resolved
        .query_pairs()
        .filter(|(key, _)| key != SESSION_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    resolved
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(SESSION_PARAM, session);
    format!(
        "{}?{}",
        resolved.path(),
        resolved.query().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(playlist: &str) -> String {
        rewrite(playlist, "/live/cam.m3u8?token=abc", "S1").unwrap()
    }

    #[test]
    fn media_playlist_segments_relative_and_absolute() {
        let out = rw(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\ncam-1.ts\n#EXTINF:2.0,\n\
             http://10.0.0.7:8080/live/cam-2.ts?k=v\n#EXTINF:2.0,\n/other/cam-3.ts\n#EXTINF:2,\n../up/cam-4.ts\n",
        );
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n/live/cam-1.ts?spbhid=S1\n#EXTINF:2.0,\n\
             /live/cam-2.ts?k=v&spbhid=S1\n#EXTINF:2.0,\n/other/cam-3.ts?spbhid=S1\n#EXTINF:2,\n/up/cam-4.ts?spbhid=S1\n"
        );
    }

    #[test]
    fn uri_attributes_of_ll_hls_and_fmp4_tags() {
        let out = rw("#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-PART:DURATION=0.5,URI=\"seg1.part0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg1.part1.m4s\"\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example/k?id=1\",IV=0x1\n");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"/live/init.mp4?spbhid=S1\"\n\
             #EXT-X-PART:DURATION=0.5,URI=\"/live/seg1.part0.m4s?spbhid=S1\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/live/seg1.part1.m4s?spbhid=S1\"\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"/k?id=1&spbhid=S1\",IV=0x1\n"
        );
    }

    #[test]
    fn variant_playlists_and_existing_session_replaced() {
        let out = rw(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,NAME=\"a URI=\\\"x\"\nlow/index.m3u8?spbhid=OLD\n",
        );
        assert!(!out.contains("\nlow/index.m3u8"));
        assert!(out.contains("/live/low/index.m3u8?spbhid=S1\n"), "{out}");
        assert!(
            out.contains("NAME=\"a URI=\\\"x\""),
            "attribute values untouched: {out}"
        );
    }

    #[test]
    fn rejects_non_playlists_and_huge_bodies() {
        assert_eq!(
            rewrite("<html>", "/a/b.m3u8", "s"),
            Err(PlaylistError::NotAPlaylist)
        );
        let huge = format!("#EXTM3U\n{}", "x".repeat(MAX_PLAYLIST_BYTES));
        assert!(matches!(
            rewrite(&huge, "/a/b.m3u8", "s"),
            Err(PlaylistError::TooLarge(_))
        ));
    }

    #[test]
    fn unresolvable_uris_are_left_for_the_player() {
        assert_eq!(
            rewrite("#EXTM3U\n//\n", "/a/b.m3u8", "s").unwrap(),
            "#EXTM3U\n//\n"
        );
        assert_eq!(
            rewrite("#EXTM3U\n//cdn.example/x/seg.ts\n", "/a/b.m3u8", "s").unwrap(),
            "#EXTM3U\n/x/seg.ts?spbhid=s\n"
        );
    }

    #[test]
    fn session_is_query_encoded() {
        let out = rewrite("#EXTM3U\nseg.ts\n", "/a/b.m3u8", "a b&c").unwrap();
        assert_eq!(out, "#EXTM3U\n/a/seg.ts?spbhid=a+b%26c\n");
    }
}
