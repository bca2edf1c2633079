//! What the proxy reads from and writes into the HTTP messages it relays: hop-by-hop and
//! forwarding headers, the client's Host, query parameters.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// The client's headers minus hop-by-hop ones, plus who the client is.
pub fn forwarded_headers(incoming: &HeaderMap, client: SocketAddr) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    let ip = client.ip();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {ip}"),
        None => ip.to_string(),
    };
    let node = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let mut forwarded = format!("for={node};proto=http");
    if let Some(host) = incoming.get(header::HOST).and_then(|v| v.to_str().ok())
        && host.bytes().all(|b| b.is_ascii_graphic())
    {
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    for (name, value) in [
        ("x-forwarded-for", xff),
        ("x-real-ip", ip.to_string()),
        ("forwarded", forwarded),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// The decoded value of the first `name=` parameter in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The Host header's host name or IP, without port or IPv6 brackets.
pub fn host_without_port(headers: &http::HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    Some(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_name_the_client_and_drop_hop_by_hop() {
        let mut incoming = HeaderMap::new();
        incoming.insert(header::HOST, HeaderValue::from_static("live.example:8080"));
        incoming.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        incoming.insert("x-secret", HeaderValue::from_static("1"));
        incoming.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        incoming.insert(header::USER_AGENT, HeaderValue::from_static("ffmpeg"));
        let out = forwarded_headers(&incoming, "10.9.8.7:5555".parse().unwrap());
        assert_eq!(out["x-forwarded-for"], "1.2.3.4, 10.9.8.7");
        assert_eq!(
            out["forwarded"],
            "for=10.9.8.7;proto=http;host=\"live.example:8080\""
        );
        assert_eq!(out[header::USER_AGENT], "ffmpeg");
        assert!(out.get(header::CONNECTION).is_none());
        assert!(out.get("x-secret").is_none());
        let v6 = forwarded_headers(&HeaderMap::new(), "[::1]:1".parse().unwrap());
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http");
    }
}
