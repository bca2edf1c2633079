//! A real WebRTC stack (str0m: ICE, DTLS, SRTP, RTP) on both ends: [`WebRtcClient`] is a
//! WHIP/WHEP client, [`WebRtcOrigin`] a minimal SRS-like origin (an axum HTTP API serving
//! WHIP, WHEP, DELETE and SRS's JSON RTC API, and one UDP port for every session, ICE-lite
//! as SRS is).
//!
//! Both write one Opus-sized frame every 20 ms on every media they may send and count what
//! they receive, so a test proves media flows by watching the counters. Each peer drives its
//! `Rtc`s from a thread of its own and stops when dropped.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use str0m::{
    Candidate, Event, IceConnectionState, Input, Output, Rtc,
    change::{SdpAnswer, SdpOffer, SdpPendingOffer},
    media::{Direction, Frequency, MediaKind, MediaTime, Mid},
    net::{Protocol, Receive},
};

/// How often each side writes a frame.
const FRAME_EVERY: Duration = Duration::from_millis(20);

/// What one side of a session saw.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// ICE connected and DTLS done.
    pub connected: AtomicBool,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
}

impl PeerCounters {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> u64 {
        self.frames_received.load(Ordering::SeqCst)
    }

    pub fn sent(&self) -> u64 {
        self.frames_sent.load(Ordering::SeqCst)
    }
}

/// One `Rtc` with the media it sends and its counters.
struct Peer {
    rtc: Rtc,
    /// Mids this side may send on.
    sending: Vec<Mid>,
    counters: Arc<PeerCounters>,
    /// Frames carry this label so a receiver can tell whose they are.
    label: &'static str,
    next_frame: Instant,
    frame: u64,
}

impl Peer {
    fn new(rtc: Rtc, counters: Arc<PeerCounters>, label: &'static str) -> Self {
        Self {
            rtc,
            sending: Vec::new(),
            counters,
            label,
            next_frame: Instant::now(),
            frame: 0,
        }
    }

    /// Drains the `Rtc` until it wants to wait; sends transmits with `send`.
    fn drain(&mut self, send: &mut dyn FnMut(&[u8], SocketAddr)) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => return at,
                Ok(Output::Transmit(t)) => send(&t.contents, t.destination),
                Ok(Output::Event(event)) => self.on_event(event),
                Err(_) => {
                    self.rtc.disconnect();
                    return Instant::now() + Duration::from_secs(3600);
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => self.counters.connected.store(true, Ordering::SeqCst),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.counters.connected.store(false, Ordering::SeqCst);
            }
            Event::MediaAdded(added)
                if matches!(added.direction, Direction::SendOnly | Direction::SendRecv) =>
            {
                self.sending.push(added.mid);
            }
            Event::MediaData(data) if data.data.starts_with(b"frame ") => {
                self.counters.frames_received.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    /// Writes a frame on every sending mid when one is due; `true` when it did.
    fn write_due(&mut self, now: Instant) -> bool {
        if !self.rtc.is_connected() || now < self.next_frame || self.sending.is_empty() {
            return false;
        }
        self.next_frame = now + FRAME_EVERY;
        self.frame += 1;
        let payload = format!("frame {} {}", self.label, self.frame).into_bytes();
        let rtp_time = MediaTime::new(self.frame * 960, Frequency::FORTY_EIGHT_KHZ);
        for mid in self.sending.clone() {
            let Some(writer) = self.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else {
                continue;
            };
            if writer.write(pt, now, rtp_time, payload.clone()).is_ok() {
                self.counters.frames_sent.fetch_add(1, Ordering::SeqCst);
            }
        }
        true
    }

    fn next_wakeup(&self, timeout: Instant) -> Instant {
        if self.rtc.is_connected() && !self.sending.is_empty() {
            timeout.min(self.next_frame)
        } else {
            timeout
        }
    }
}

/// The next input for the `Rtc`s on `socket`: a datagram (as received on `local`, the
/// address ICE knows), a timeout when none came within the read timeout, `None` when the
/// datagram is not one str0m can take.
fn next_input<'b>(socket: &UdpSocket, buf: &'b mut [u8], local: SocketAddr) -> Option<Input<'b>> {
    match socket.recv_from(buf) {
        Ok((len, from)) => Some(Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: local,
                contents: buf[..len].try_into().ok()?,
            },
        )),
        // Read timeout; ICMP errors (a peer went away) surface here too: keep going.
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Some(Input::Timeout(Instant::now()))
        }
        Err(_) => Some(Input::Timeout(Instant::now())),
    }
}

fn until(at: Instant) -> Duration {
    at.saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), Duration::from_millis(50))
}

// ---------------------------------------------------------------------------------------------
// Client

struct Offer {
    offer: SdpOffer,
    pending: SdpPendingOffer,
    mid: Mid,
}

enum ClientControl {
    /// Send from a new socket from now on, as after a NAT rebinding.
    Rebind,
    Stop,
}

/// A WHIP or WHEP client: offers one audio media over HTTP, then runs ICE/DTLS/SRTP towards
/// the candidate of the answer.
pub struct WebRtcClient {
    pub counters: Arc<PeerCounters>,
    /// The `Location` of the answer.
    pub location: Option<String>,
    /// The answer as received.
    pub answer: String,
    /// The client's current UDP source address.
    source: Arc<Mutex<SocketAddr>>,
    control: mpsc::Sender<ClientControl>,
    thread: Option<JoinHandle<()>>,
}

impl WebRtcClient {
    /// WHIP: publishes (sends) to `http://{api}/rtc/v1/whip/?{query}`.
    pub fn whip(api: SocketAddr, query: &str) -> anyhow::Result<Self> {
        Self::connect(
            &format!("http://{api}/rtc/v1/whip/?{query}"),
            Direction::SendOnly,
        )
    }

    /// WHEP: plays (receives) from `http://{api}/rtc/v1/whep/?{query}`.
    pub fn whep(api: SocketAddr, query: &str) -> anyhow::Result<Self> {
        Self::connect(
            &format!("http://{api}/rtc/v1/whep/?{query}"),
            Direction::RecvOnly,
        )
    }

    /// Offers one audio media with `direction` to a WHIP/WHEP `url`.
    pub fn connect(url: &str, direction: Direction) -> anyhow::Result<Self> {
        Self::connect_with(url, direction, |answer| answer)
    }

    /// As [`connect`](Self::connect), with the answer passed through `edit` before use (to
    /// send media elsewhere than the answer says, as a load balancer in front may).
    pub fn connect_with(
        url: &str,
        direction: Direction,
        edit: impl FnOnce(String) -> String,
    ) -> anyhow::Result<Self> {
        let (mut rtc, socket, offer) = Self::offer(direction)?;
        let (mid, pending) = (offer.mid, offer.pending);
        let offer = offer.offer.to_sdp_string();
        let mut response = ureq::post(url)
            .header("Content-Type", "application/sdp")
            .send(offer.as_str())
            .map_err(|err| anyhow::anyhow!("POST {url}: {err}"))?;
        anyhow::ensure!(
            response.status() == 201,
            "POST {url} answered {}",
            response.status()
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = response.body_mut().read_to_string()?;
        let edited = edit(answer.clone());
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&edited)?)?;
        Ok(Self::start(rtc, socket, direction, mid, location, answer))
    }

    /// SRS's JSON API: `POST http://{api}/rtc/v1/publish/` (or `play/`) with `streamurl`.
    pub fn srs_api(api: SocketAddr, publish: bool, streamurl: &str) -> anyhow::Result<Self> {
        let direction = if publish {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let (mut rtc, socket, offer) = Self::offer(direction)?;
        let path = if publish { "publish" } else { "play" };
        let url = format!("http://{api}/rtc/v1/{path}/");
        let body = serde_json::json!({
            "api": url, "streamurl": streamurl, "clientip": null, "tid": "test",
            "sdp": offer.offer.to_sdp_string(),
        });
        let mut response = ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_str())
            .map_err(|err| anyhow::anyhow!("POST {url}: {err}"))?;
        let json: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
        anyhow::ensure!(json["code"] == 0, "{url} answered {json}");
        let answer = json["sdp"].as_str().unwrap_or_default().to_owned();
        rtc.sdp_api()
            .accept_answer(offer.pending, SdpAnswer::from_sdp_string(&answer)?)?;
        Ok(Self::start(rtc, socket, direction, offer.mid, None, answer))
    }

    fn offer(direction: Direction) -> anyhow::Result<(Rtc, UdpSocket, Offer)> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let mut rtc = Rtc::builder().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(socket.local_addr()?, "udp")?);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending) = change.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        Ok((
            rtc,
            socket,
            Offer {
                offer,
                pending,
                mid,
            },
        ))
    }

    fn start(
        rtc: Rtc,
        socket: UdpSocket,
        direction: Direction,
        mid: Mid,
        location: Option<String>,
        answer: String,
    ) -> Self {
        let counters = Arc::new(PeerCounters::default());
        let source = Arc::new(Mutex::new(socket.local_addr().expect("bound")));
        let (control, control_rx) = mpsc::channel();
        let mut peer = Peer::new(rtc, counters.clone(), "client");
        if matches!(direction, Direction::SendOnly | Direction::SendRecv) {
            // Our own media: its mid is known from the offer, not from an event.
            peer.sending.push(mid);
        }
        let thread_source = source.clone();
        let thread =
            std::thread::spawn(move || run_client(peer, socket, thread_source, control_rx));
        Self {
            counters,
            location,
            answer,
            source,
            control,
            thread: Some(thread),
        }
    }

    /// From now on the client sends from (and listens on) a new UDP port; ICE does not know,
    /// exactly as behind a NAT that changed its mapping.
    pub fn rebind(&self) -> SocketAddr {
        let before = self.source_addr();
        let _ = self.control.send(ClientControl::Rebind);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.source_addr() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.source_addr()
    }

    pub fn source_addr(&self) -> SocketAddr {
        *self.source.lock().expect("source lock")
    }
}

impl Drop for WebRtcClient {
    fn drop(&mut self) {
        let _ = self.control.send(ClientControl::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_client(
    mut peer: Peer,
    mut socket: UdpSocket,
    source: Arc<Mutex<SocketAddr>>,
    control: mpsc::Receiver<ClientControl>,
) {
    // ICE keeps believing in its first local address; only the socket under it changes.
    let local = socket.local_addr().expect("bound");
    let mut buf = vec![0u8; 2000];
    loop {
        match control.try_recv() {
            Ok(ClientControl::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
            Ok(ClientControl::Rebind) => {
                socket = UdpSocket::bind("127.0.0.1:0").expect("bind a new client socket");
                *source.lock().expect("source lock") = socket.local_addr().expect("bound");
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let timeout = peer.drain(&mut |data, to| {
            let _ = socket.send_to(data, to);
        });
        if peer.write_due(Instant::now()) {
            continue;
        }
        let _ = socket.set_read_timeout(Some(until(peer.next_wakeup(timeout))));
        let Some(input) = next_input(&socket, &mut buf, local) else {
            continue;
        };
        if peer.rtc.handle_input(input).is_err() {
            peer.rtc.disconnect();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Origin

/// One session on the origin, as a test sees it.
#[derive(Debug)]
pub struct OriginSession {
    /// `app/stream` of the offer.
    pub stream: String,
    pub publish: bool,
    /// `origin-ufrag:client-ufrag`, SRS's session id (the `session` of its `Location`).
    pub session: String,
    pub counters: Arc<PeerCounters>,
    pub deleted: AtomicBool,
}

#[derive(Default)]
struct OriginShared {
    sessions: Mutex<Vec<Arc<OriginSession>>>,
    /// Bodies of PATCH requests (trickle ICE), as received.
    patches: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A minimal SRS-like WebRTC origin on free loopback ports.
pub struct WebRtcOrigin {
    /// HTTP API (WHIP, WHEP, DELETE, `/rtc/v1/publish/`, `/rtc/v1/play/`).
    pub api: SocketAddr,
    /// UDP media port of every session.
    pub rtc: SocketAddr,
    shared: Arc<OriginShared>,
    threads: Vec<JoinHandle<()>>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct NewSession {
    rtc: Rtc,
    session: Arc<OriginSession>,
}

struct ApiState {
    rtc_addr: SocketAddr,
    shared: Arc<OriginShared>,
    new_sessions: Mutex<mpsc::Sender<NewSession>>,
}

impl WebRtcOrigin {
    pub fn start() -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let rtc = socket.local_addr()?;
        let http = std::net::TcpListener::bind("127.0.0.1:0")?;
        let api = http.local_addr()?;
        http.set_nonblocking(true)?;
        let shared = Arc::new(OriginShared::default());
        let (new_tx, new_rx) = mpsc::channel();
        let state = Arc::new(ApiState {
            rtc_addr: rtc,
            shared: shared.clone(),
            new_sessions: Mutex::new(new_tx),
        });
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("origin runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(http).expect("origin listener");
                let app = origin_router(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let media_shared = shared.clone();
        let media_thread =
            std::thread::spawn(move || run_origin_media(socket, new_rx, media_shared));
        Ok(Self {
            api,
            rtc,
            shared,
            threads: vec![http_thread, media_thread],
            http_stop: Some(http_stop),
        })
    }

    pub fn sessions(&self) -> Vec<Arc<OriginSession>> {
        self.shared.sessions.lock().expect("sessions").clone()
    }

    /// The trickle fragments PATCHed to the origin's `Location`s.
    pub fn patches(&self) -> Vec<String> {
        self.shared.patches.lock().expect("patches").clone()
    }

    /// The heartbeat body SRS would send, with `api` and `rtc` endpoints (this origin serves
    /// no RTMP; SRS always reports an RTMP listen, so port 1 stands in).
    pub fn heartbeat(&self, server: &str) -> serde_json::Value {
        let mut heartbeat = crate::srs::SrsHeartbeat::local(server, 1, None);
        if let Some(ports) = heartbeat.ports.as_mut() {
            ports.api = Some(self.api.port());
            ports.rtc = Some(self.rtc.port());
        }
        heartbeat.body()
    }
}

impl Drop for WebRtcOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn origin_router(state: Arc<ApiState>) -> axum::Router {
    use axum::{
        extract::{Query, State},
        http::{StatusCode, header},
        response::IntoResponse,
        routing::post,
    };
    type Params = Query<HashMap<String, String>>;
    async fn whip(
        State(s): State<Arc<ApiState>>,
        Query(q): Params,
        body: String,
    ) -> axum::response::Response {
        sdp_offer(&s, &q, body, true)
    }
    async fn whep(
        State(s): State<Arc<ApiState>>,
        Query(q): Params,
        body: String,
    ) -> axum::response::Response {
        sdp_offer(&s, &q, body, false)
    }
    fn sdp_offer(
        s: &ApiState,
        q: &HashMap<String, String>,
        body: String,
        publish: bool,
    ) -> axum::response::Response {
        let app = q.get("app").cloned().unwrap_or_else(|| "live".into());
        let stream = q
            .get("stream")
            .cloned()
            .unwrap_or_else(|| "livestream".into());
        match accept(s, &format!("{app}/{stream}"), &body, publish) {
            Ok((answer, session)) => {
                let kind = if publish { "whip" } else { "whep" };
                let location = format!(
                    "/rtc/v1/{kind}/?action=delete&token=t0k3n&app={app}&stream={stream}&session={session}"
                );
                (
                    StatusCode::CREATED,
                    [
                        (header::CONTENT_TYPE, "application/sdp".to_owned()),
                        (header::LOCATION, location),
                    ],
                    answer,
                )
                    .into_response()
            }
            Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
        }
    }
    async fn delete(State(s): State<Arc<ApiState>>, Query(q): Params) -> axum::response::Response {
        if q.get("token").map(String::as_str) != Some("t0k3n") {
            return (StatusCode::FORBIDDEN, "token").into_response();
        }
        let session = q.get("session").cloned().unwrap_or_default();
        let sessions = s.shared.sessions.lock().expect("sessions");
        match sessions.iter().find(|x| x.session == session) {
            Some(found) => {
                found.deleted.store(true, Ordering::SeqCst);
                StatusCode::OK.into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    /// Trickle ICE: the fragment is recorded and acknowledged, as RFC 8840 servers do.
    async fn patch(State(s): State<Arc<ApiState>>, body: String) -> axum::response::Response {
        s.shared.patches.lock().expect("patches").push(body);
        StatusCode::NO_CONTENT.into_response()
    }
    async fn json_api(
        State(s): State<Arc<ApiState>>,
        publish: bool,
        body: String,
    ) -> axum::response::Response {
        let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let url = request["streamurl"].as_str().unwrap_or_default();
        let stream = url
            .splitn(4, '/')
            .nth(3)
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default();
        let answer = match accept(
            &s,
            stream,
            request["sdp"].as_str().unwrap_or_default(),
            publish,
        ) {
            Ok((answer, session)) => {
                serde_json::json!({"code": 0, "server": "origin", "sdp": answer, "sessionid": session})
            }
            Err(err) => serde_json::json!({"code": 5012, "message": err.to_string()}),
        };
        axum::Json(answer).into_response()
    }
    axum::Router::new()
        .route("/rtc/v1/whip/", post(whip).delete(delete).patch(patch))
        .route("/rtc/v1/whep/", post(whep).delete(delete).patch(patch))
        .route(
            "/rtc/v1/publish/",
            post(|s: State<Arc<ApiState>>, body: String| json_api(s, true, body)),
        )
        .route(
            "/rtc/v1/play/",
            post(|s: State<Arc<ApiState>>, body: String| json_api(s, false, body)),
        )
        .with_state(state)
}

/// Accepts an offer with an ICE-lite `Rtc` whose only candidate is the origin's UDP port.
fn accept(
    state: &ApiState,
    stream: &str,
    offer: &str,
    publish: bool,
) -> anyhow::Result<(String, String)> {
    let offer_sdp = offer;
    let offer = SdpOffer::from_sdp_string(offer)?;
    let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(state.rtc_addr, "udp")?);
    let answer = rtc.sdp_api().accept_offer(offer)?.to_sdp_string();
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:").map(str::to_owned))
            .unwrap_or_default()
    };
    let session = Arc::new(OriginSession {
        stream: stream.to_owned(),
        publish,
        session: format!("{}:{}", ufrag(&answer), ufrag(offer_sdp)),
        counters: Arc::new(PeerCounters::default()),
        deleted: AtomicBool::new(false),
    });
    state
        .shared
        .sessions
        .lock()
        .expect("sessions")
        .push(session.clone());
    state
        .new_sessions
        .lock()
        .expect("new sessions")
        .send(NewSession {
            rtc,
            session: session.clone(),
        })?;
    Ok((answer, session.session.clone()))
}

fn run_origin_media(
    socket: UdpSocket,
    new_sessions: mpsc::Receiver<NewSession>,
    shared: Arc<OriginShared>,
) {
    let local = socket.local_addr().expect("bound");
    let mut peers: Vec<(Peer, Arc<OriginSession>)> = Vec::new();
    let mut buf = vec![0u8; 2000];
    while !shared.stop.load(Ordering::SeqCst) {
        while let Ok(new) = new_sessions.try_recv() {
            let peer = Peer::new(new.rtc, new.session.counters.clone(), "origin");
            peers.push((peer, new.session));
        }
        // A deleted session stops, as SRS expires it.
        peers.retain_mut(|(peer, session)| {
            if session.deleted.load(Ordering::SeqCst) {
                peer.rtc.disconnect();
            }
            peer.rtc.is_alive()
        });
        let now = Instant::now();
        let mut wake = now + Duration::from_millis(50);
        for (peer, _) in &mut peers {
            let mut send = |data: &[u8], to| {
                let _ = socket.send_to(data, to);
            };
            let mut timeout = peer.drain(&mut send);
            if peer.write_due(now) {
                timeout = peer.drain(&mut send);
            }
            wake = wake.min(peer.next_wakeup(timeout));
        }
        let _ = socket.set_read_timeout(Some(until(wake)));
        let Some(input) = next_input(&socket, &mut buf, local) else {
            continue;
        };
        match &input {
            Input::Timeout(_) => {
                for (peer, _) in &mut peers {
                    if peer
                        .rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .is_err()
                    {
                        peer.rtc.disconnect();
                    }
                }
            }
            Input::Receive(..) => {
                if let Some((peer, _)) = peers.iter_mut().find(|(p, _)| p.rtc.accepts(&input))
                    && peer.rtc.handle_input(input).is_err()
                {
                    peer.rtc.disconnect();
                }
            }
        }
    }
}
