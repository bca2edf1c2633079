//! WebRTC through the real proxy binary with a real WebRTC stack (str0m) on both ends: a
//! WHIP/WHEP client and an SRS-like origin registered through the register API. ICE, DTLS
//! and SRTP run end to end; the proxy only rewrites candidates and relays UDP.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use originstack_e2e::{
    ProxyProcess,
    redis::RedisServer,
    webrtc::{WebRtcClient, WebRtcOrigin},
};
use originstack_proxy::webrtc::stun;

const PROXY: &str = env!("CARGO_BIN_EXE_originstack-proxy");

fn proxy(envs: &[(&str, String)]) -> ProxyProcess {
    ProxyProcess::start(PROXY, envs).unwrap()
}

/// A WebRTC origin registered (with its `api` and `rtc` endpoints) with a proxy of its own.
fn origin_behind_proxy(envs: &[(&str, String)]) -> (WebRtcOrigin, ProxyProcess) {
    let origin = WebRtcOrigin::start().unwrap();
    let proxy = proxy(envs);
    proxy
        .register_heartbeat(&origin.heartbeat("origin-1"))
        .unwrap();
    (origin, proxy)
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a sample on `proxy`'s /metrics, 0 when absent.
fn metric(proxy: &ProxyProcess, name: &str) -> f64 {
    originstack_e2e::proxy::metric(&proxy.metrics().unwrap(), name)
}

/// The `ip port` of every candidate in an SDP.
fn candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|c| c.split(' ').skip(4).take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned()
}

/// A WHIP publisher, a WHEP player and a sendrecv peer through one proxy: ICE and DTLS
/// complete through it, media written by one side arrives at the other, both ways.
#[test]
fn whip_whep_and_sendrecv_media_flow_through_the_proxy() {
    let (origin, proxy) = origin_behind_proxy(&[]);
    let logs = || proxy.log();

    let publisher = WebRtcClient::whip(proxy.api, "app=live&stream=cam").unwrap();
    // The answer's candidate is the proxy's media port at the address the API was reached on.
    assert_eq!(
        candidates(&publisher.answer),
        vec![format!("127.0.0.1 {}", proxy.webrtc.port())],
        "{}",
        publisher.answer
    );
    assert!(
        publisher
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/rtc/v1/resource/")),
        "{:?}",
        publisher.location
    );
    wait_until(
        "the publisher's media at the origin",
        Duration::from_secs(20),
        || {
            origin
                .sessions()
                .iter()
                .any(|s| s.publish && s.stream == "live/cam" && s.counters.received() >= 50)
        },
        &logs,
    );
    assert!(publisher.counters.is_connected());

    let player = WebRtcClient::whep(proxy.api, "app=live&stream=cam").unwrap();
    wait_until(
        "the origin's media at the player",
        Duration::from_secs(20),
        || player.counters.received() >= 50,
        &logs,
    );

    let both = WebRtcClient::connect(
        &format!("http://{}/rtc/v1/whip/?app=live&stream=both", proxy.api),
        str0m::media::Direction::SendRecv,
    )
    .unwrap();
    wait_until(
        "media both ways in one session",
        Duration::from_secs(20),
        || {
            both.counters.received() >= 50
                && origin
                    .sessions()
                    .iter()
                    .any(|s| s.stream == "live/both" && s.counters.received() >= 50)
        },
        &logs,
    );

    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_sessions_active"),
        3.0
    );
    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_sessions_total"),
        3.0
    );
    assert!(
        metric(&proxy, "originstack_proxy_webrtc_datagrams_to_origin_total") > 0.0 || {
            // Counts are flushed about every idle/4; give it a moment.
            std::thread::sleep(Duration::from_secs(2));
            metric(&proxy, "originstack_proxy_webrtc_datagrams_to_origin_total") > 0.0
        }
    );
    // Every datagram carries at least a 12-byte RTP or 20-byte STUN header.
    let (datagrams, bytes) = (
        metric(&proxy, "originstack_proxy_webrtc_datagrams_to_origin_total"),
        metric(&proxy, "originstack_proxy_webrtc_bytes_to_origin_total"),
    );
    assert!(
        bytes >= 12.0 * datagrams,
        "{bytes} bytes in {datagrams} datagrams"
    );
    assert_eq!(
        metric(
            &proxy,
            "originstack_proxy_webrtc_offers_total{api=\"whip\",result=\"ok\"}"
        ),
        2.0
    );
    // Every protocol names the same stream: the WHIP publish owns `live/cam` on origin-1.
    let (_, streams) =
        originstack_e2e::http_request(proxy.system, "GET", "/api/v1/streams", &[], "").unwrap();
    assert!(streams.contains("__defaultVhost__/live/cam"), "{streams}");
}

/// SRS's JSON RTC API (`/rtc/v1/publish/`, `/rtc/v1/play/`) through the proxy.
#[test]
fn srs_json_rtc_api_publish_and_play() {
    let (origin, proxy) = origin_behind_proxy(&[]);
    let logs = || proxy.log();
    let url = format!("webrtc://{}/live/json", proxy.api);
    let publisher = WebRtcClient::srs_api(proxy.api, true, &url).unwrap();
    assert_eq!(
        candidates(&publisher.answer),
        vec![format!("127.0.0.1 {}", proxy.webrtc.port())]
    );
    let player = WebRtcClient::srs_api(proxy.api, false, &url).unwrap();
    wait_until(
        "media of the JSON API sessions",
        Duration::from_secs(20),
        || {
            player.counters.received() >= 50
                && origin
                    .sessions()
                    .iter()
                    .any(|s| s.publish && s.stream == "live/json" && s.counters.received() >= 50)
        },
        &logs,
    );
}

/// Two proxies on one Redis: the offer goes through A, media through B (as a load balancer
/// may route the UDP flow); PATCH through B and DELETE through A reach the origin, and B ends
/// the session it relays when it sees the DELETE's tombstone in Redis.
#[test]
fn signalling_through_one_replica_media_and_delete_through_another() {
    let redis = RedisServer::start().unwrap();
    let origin = WebRtcOrigin::start().unwrap();
    let envs = [
        ("PROXY_LOAD_BALANCER_TYPE", "redis".to_owned()),
        ("PROXY_REDIS_URL", redis.url()),
        ("PROXY_WEBRTC_IDLE_TIMEOUT", "3s".to_owned()),
    ];
    let a = proxy(&envs);
    let b = proxy(&envs);
    // Only A hears the heartbeat; B learns the origin from Redis.
    a.register_heartbeat(&origin.heartbeat("origin-1")).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());

    let a_port = a.webrtc.port().to_string();
    let b_port = b.webrtc.port().to_string();
    let publisher = WebRtcClient::connect_with(
        &format!("http://{}/rtc/v1/whip/?app=live&stream=cam", a.api),
        str0m::media::Direction::SendOnly,
        |answer| {
            answer.replace(
                &format!("127.0.0.1 {a_port} "),
                &format!("127.0.0.1 {b_port} "),
            )
        },
    )
    .unwrap();
    wait_until(
        "media through B",
        Duration::from_secs(20),
        || {
            origin
                .sessions()
                .iter()
                .any(|s| s.publish && s.counters.received() >= 50)
        },
        &logs,
    );
    assert_eq!(metric(&b, "originstack_proxy_webrtc_sessions_active"), 1.0);
    assert_eq!(metric(&a, "originstack_proxy_webrtc_sessions_total"), 0.0);

    // A trickle PATCH on A's Location, sent to B, reaches the origin as the client wrote it.
    let location = publisher.location.clone().unwrap();
    let fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 192.0.2.1 9999 typ host\r\n";
    let response = ureq::patch(&format!("http://{}{location}", b.api))
        .header("Content-Type", "application/trickle-ice-sdpfrag")
        .send(fragment)
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(origin.patches(), vec![fragment.to_owned()]);

    // DELETE on A's Location, sent to B: routed to the origin through Redis.
    let response = ureq::delete(&format!("http://{}{location}", b.api))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        origin.sessions()[0]
            .deleted
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    wait_until(
        "B ends the deleted session",
        Duration::from_secs(10),
        || metric(&b, "originstack_proxy_webrtc_sessions_active") == 0.0,
        &logs,
    );
    assert!(b.log().contains("\"deleted\""), "{}", b.log());
    // The resource is gone for every replica: a second DELETE finds nothing.
    let again = ureq::delete(&format!("http://{}{location}", b.api)).call();
    assert!(
        matches!(again, Err(ureq::Error::StatusCode(404))),
        "{again:?}"
    );
}

/// `PROXY_WEBRTC_CANDIDATE` is written into every candidate, host names as given.
#[test]
fn candidate_rewrite_uses_the_configured_public_address() {
    let (origin, proxy) =
        origin_behind_proxy(&[("PROXY_WEBRTC_CANDIDATE", "Media.Example.com".to_owned())]);
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtc.add_local_candidate(str0m::Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = change.apply().unwrap();
    let mut response = ureq::post(&format!(
        "http://{}/rtc/v1/whip/?app=live&stream=cam",
        proxy.api
    ))
    .header("Content-Type", "application/sdp")
    .send(offer.to_sdp_string().as_str())
    .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/sdp");
    let answer = response.body_mut().read_to_string().unwrap();
    assert_eq!(
        candidates(&answer),
        vec![format!("media.example.com {}", proxy.webrtc.port())],
        "{answer}"
    );
    assert!(!answer.contains(&origin.rtc.port().to_string()), "{answer}");
    assert!(answer.contains("\r\n") && !answer.replace("\r\n", "").contains('\n'));
}

/// The client's socket changes mid-session (NAT rebinding): its next verified STUN request
/// moves the session, and media keeps arriving.
#[test]
fn nat_rebinding_is_followed() {
    let (origin, proxy) = origin_behind_proxy(&[]);
    let logs = || proxy.log();
    let publisher = WebRtcClient::whip(proxy.api, "app=live&stream=cam").unwrap();
    let received = || {
        origin
            .sessions()
            .first()
            .map_or(0, |s| s.counters.received())
    };
    wait_until(
        "media before the rebinding",
        Duration::from_secs(20),
        || received() >= 50,
        &logs,
    );
    let before = publisher.source_addr();
    let after = publisher.rebind();
    assert_ne!(before, after);
    let at_rebind = received();
    wait_until(
        "media from the new address",
        Duration::from_secs(20),
        || received() >= at_rebind + 100,
        &logs,
    );
    assert!(metric(&proxy, "originstack_proxy_webrtc_rebinds_total") >= 1.0);
    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_sessions_total"),
        1.0
    );
    assert!(proxy.log().contains(&after.to_string()), "{}", proxy.log());
}

/// Garbage on the media port while a session runs changes nothing for it (and forged STUN
/// for its ufrag is refused); a client that goes silent is forgotten after the idle timeout.
#[test]
fn garbage_is_ignored_and_idle_sessions_are_forgotten() {
    let (origin, proxy) = origin_behind_proxy(&[("PROXY_WEBRTC_IDLE_TIMEOUT", "2s".to_owned())]);
    let logs = || proxy.log();
    let publisher = WebRtcClient::whip(proxy.api, "app=live&stream=cam").unwrap();
    let received = || {
        origin
            .sessions()
            .first()
            .map_or(0, |s| s.counters.received())
    };
    wait_until("media", Duration::from_secs(20), || received() >= 50, &logs);

    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = proxy.webrtc;
    let session_ufrag = ufrag(&publisher.answer);
    for i in 0..200u32 {
        let mut rtp = vec![0x80, 111];
        rtp.extend_from_slice(&i.to_be_bytes());
        rtp.resize(200, 0xab);
        attacker.send_to(&rtp, to).unwrap();
        attacker.send_to(&[0x16, 0xfe, 0xfd, 0, 0], to).unwrap();
        attacker.send_to(b"\x00\x01garbage", to).unwrap();
        attacker.send_to(&[0xff; 64], to).unwrap();
        // STUN naming the running session but without its password.
        let forged = stun::binding_request(
            [i as u8; 12],
            &format!("{session_ufrag}:attacker"),
            "not-the-password",
            true,
        );
        attacker.send_to(&forged, to).unwrap();
        // And an unknown session.
        let unknown = stun::binding_request([1; 12], "nobody:x", "pw", false);
        attacker.send_to(&unknown, to).unwrap();
        // Paced, so the kernel's socket buffers do not drop the garbage before the proxy sees it.
        std::thread::sleep(Duration::from_millis(2));
    }
    let at_garbage = received();
    wait_until(
        "media goes on",
        Duration::from_secs(10),
        || received() >= at_garbage + 50,
        &logs,
    );
    let dropped = metric(&proxy, "originstack_proxy_webrtc_dropped_unknown_total");
    let rejected = metric(&proxy, "originstack_proxy_webrtc_stun_rejected_total");
    assert!(
        dropped >= 600.0 && rejected >= 200.0,
        "dropped {dropped}, rejected {rejected}"
    );
    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_sessions_total"),
        1.0
    );
    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_rebinds_total"),
        0.0
    );

    // The client vanishes without a DELETE.
    drop(publisher);
    let vanished = Instant::now();
    wait_until(
        "the idle session is forgotten",
        Duration::from_secs(10),
        || metric(&proxy, "originstack_proxy_webrtc_sessions_active") == 0.0,
        &logs,
    );
    assert!(vanished.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        metric(&proxy, "originstack_proxy_webrtc_idle_closed_total"),
        1.0
    );
    // Forgotten: media from its old address is now just garbage.
    let dropped = metric(&proxy, "originstack_proxy_webrtc_dropped_unknown_total");
    attacker.send_to(&[0x80, 111, 0, 0], to).unwrap();
    wait_until(
        "the datagram is counted",
        Duration::from_secs(5),
        || metric(&proxy, "originstack_proxy_webrtc_dropped_unknown_total") > dropped,
        &logs,
    );
}

/// The stream's ownership lives as long as the media session, not the HTTP exchange: it is
/// still held well after the answer's setup window, and let go once the session is closed.
#[test]
fn the_stream_stays_owned_while_media_flows_and_is_released_after() {
    let (origin, proxy) = origin_behind_proxy(&[
        ("PROXY_STREAM_LEASE", "1s".to_owned()),
        ("PROXY_WEBRTC_SETUP_TIMEOUT", "1s".to_owned()),
        ("PROXY_WEBRTC_IDLE_TIMEOUT", "2s".to_owned()),
    ]);
    let logs = || proxy.log();
    let owned = || {
        let (_, streams) =
            originstack_e2e::http_request(proxy.system, "GET", "/api/v1/streams", &[], "").unwrap();
        streams.contains("__defaultVhost__/live/cam")
    };
    let publisher = WebRtcClient::whip(proxy.api, "app=live&stream=cam").unwrap();
    wait_until(
        "media",
        Duration::from_secs(20),
        || {
            origin
                .sessions()
                .first()
                .is_some_and(|s| s.counters.received() >= 20)
        },
        &logs,
    );
    // Several lease and setup periods later, media still holds the stream.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        owned(),
        "the stream was let go while its media flowed\n{}",
        logs()
    );
    drop(publisher);
    wait_until(
        "the stream is released",
        Duration::from_secs(15),
        || !owned(),
        &logs,
    );
}
