//! HTTP-FLV fan-out: the players of one stream on this replica share one origin request.
//!
//! A hub per stream (and query) reads the origin's FLV body, splits it into tags (`crate::flv`)
//! and broadcasts each to its players, keeping what a new player needs to start at once: the
//! FLV header, the latest `onMetaData`, the codec sequence headers and the tags since the last
//! keyframe. Players hold only a cursor into the broadcast ring (shared, `backlog` tags long),
//! so a player costs the same whatever the stream's rate. A player that falls a whole ring
//! behind skips to the next keyframe; one that does so [`MAX_SKIPS`] times is closed. The hub,
//! and with it the origin request and the stream's lease, ends with its last player or with
//! the origin's body.
//!
//! Players whose URLs differ in their query do not share: an origin that authorizes each player
//! by a token in the query (an SRS `on_play` hook) still sees every token.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Body, BoxError, live::LiveBody};
use crate::{
    flv::{FlvDecoder, FlvItem, TagKind},
    origins::StreamKey,
};

/// Times a player may fall a whole backlog behind (and skip to a keyframe) before it is closed.
pub const MAX_SKIPS: u32 = 3;
/// Largest FLV tag accepted from an origin (SRS's largest RTMP message by default).
const MAX_TAG_SIZE: usize = 8 * 1024 * 1024;
/// A GOP cache larger than this (a stream with rare keyframes) is dropped until the next
/// keyframe; players joining meanwhile wait for it.
const MAX_GOP_BYTES: usize = 16 * 1024 * 1024;
/// How often a hub whose origin sends nothing checks whether its players are gone.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The fan-out's counters, registered with the HTTP metrics.
#[derive(Clone, Debug, Default)]
pub struct FanoutMetrics {
    /// Hubs (shared origin requests) open now.
    pub hubs: Gauge,
    /// Players that fell a whole backlog behind and skipped to the next keyframe.
    pub skips: Counter,
    /// Players closed for falling behind too often.
    pub dropped: Counter,
}

/// Who shares a hub: the same stream, asked with the same query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubKey {
    pub stream: StreamKey,
    pub query: String,
}

pub struct Fanout {
    slots: Arc<Mutex<HashMap<HubKey, Arc<Slot>>>>,
    backlog: usize,
    metrics: FanoutMetrics,
}

/// One stream's place in the map; its async lock makes concurrent first players open one
/// origin request, not one each.
#[derive(Default)]
struct Slot {
    hub: tokio::sync::Mutex<Option<Arc<Hub>>>,
}

struct Hub {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    state: Mutex<HubState>,
    sender: broadcast::Sender<Item>,
}

/// What a new player is sent before the live tags.
#[derive(Default)]
struct HubState {
    header: Option<Bytes>,
    script: Option<Bytes>,
    video_sequence: Option<Bytes>,
    audio_sequence: Option<Bytes>,
    /// Tags since the last keyframe, starting with it; empty while none is cached.
    gop: Vec<Bytes>,
    gop_bytes: usize,
    has_video: bool,
    /// No more players: the hub is closing (or closed).
    ended: bool,
}

#[derive(Clone, Debug)]
struct Item {
    bytes: Bytes,
    /// A player skipping ahead may start here.
    start: bool,
    /// Header, script and sequence headers: sent even to a player skipping ahead.
    config: bool,
}

impl Fanout {
    pub fn new(backlog: usize, metrics: FanoutMetrics) -> Self {
        Self {
            slots: Arc::default(),
            backlog,
            metrics,
        }
    }

    /// The response for a player of `key`: a share of the running hub, or a new hub on the
    /// origin response `open` gets (which holds the stream's lease). An error answer of `open`,
    /// and an origin's non-success response, go to this player alone.
    pub async fn play<F, Fut>(&self, key: HubKey, open: F) -> Response<Body>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Response<LiveBody>, Response<Body>>>,
    {
        let slot = lock(&self.slots).entry(key.clone()).or_default().clone();
        let mut current = slot.hub.lock().await;
        if let Some(hub) = current.as_ref()
            && let Some(body) = hub.join(&self.metrics)
        {
            return hub.response(body);
        }
        let response = match open().await {
            Ok(response) if response.status().is_success() => response,
            other => {
                *current = None;
                self.forget(&key, &slot);
                return match other {
                    Ok(response) => {
                        response.map(|body| body.map_err(BoxError::from).boxed_unsync())
                    }
                    Err(answer) => answer,
                };
            }
        };
        let (parts, origin_body) = response.into_parts();
        let hub = Arc::new(Hub {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            state: Mutex::default(),
            sender: broadcast::Sender::new(self.backlog),
        });
        let body = hub.join(&self.metrics).expect("a new hub takes players");
        *current = Some(hub.clone());
        drop(current);
        self.metrics.hubs.inc();
        let reader = Reader {
            hub: hub.clone(),
            key,
            slot: Arc::downgrade(&slot),
            slots: Arc::downgrade(&self.slots),
            hubs: self.metrics.hubs.clone(),
        };
        tokio::spawn(reader.run(origin_body));
        hub.response(body)
    }

    /// Drops `slot` from the map unless another took its place.
    fn forget(&self, key: &HubKey, slot: &Arc<Slot>) {
        let mut slots = lock(&self.slots);
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// A player's body, or `None` once the hub is closing.
    fn join(&self, metrics: &FanoutMetrics) -> Option<Body> {
        let state = lock(&self.state);
        if state.ended {
            return None;
        }
        // Subscribed under the lock the reader broadcasts under: nothing falls between the
        // snapshot and the first live tag.
        let receiver = self.sender.subscribe();
        let mut start: VecDeque<Bytes> = [
            &state.header,
            &state.script,
            &state.video_sequence,
            &state.audio_sequence,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        start.extend(state.gop.iter().cloned());
        let waiting = state.has_video && state.gop.is_empty();
        drop(state);
        Some(player_body(
            Player {
                start,
                receiver,
                waiting,
                skips: 0,
            },
            metrics.clone(),
        ))
    }

    fn response(&self, body: Body) -> Response<Body> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers.clone();
        response
    }

    /// Keeps what new players need from `kind` and sends it to the players; false once no
    /// player is left.
    fn publish(&self, kind: TagKind, bytes: Bytes) -> bool {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let config = match kind {
            TagKind::Script => {
                state.script = Some(bytes.clone());
                true
            }
            TagKind::VideoSequenceHeader => {
                state.has_video = true;
                state.video_sequence = Some(bytes.clone());
                true
            }
            TagKind::AudioSequenceHeader => {
                state.audio_sequence = Some(bytes.clone());
                true
            }
            TagKind::Keyframe => {
                state.has_video = true;
                state.gop.clear();
                state.gop_bytes = 0;
                false
            }
            TagKind::Video | TagKind::Audio | TagKind::Other => false,
        };
        let start = kind == TagKind::Keyframe || (!state.has_video && kind == TagKind::Audio);
        if !config && (kind == TagKind::Keyframe || !state.gop.is_empty()) {
            state.gop_bytes += bytes.len();
            state.gop.push(bytes.clone());
            if state.gop_bytes > MAX_GOP_BYTES {
                state.gop.clear();
                state.gop_bytes = 0;
            }
        }
        self.broadcast(
            state,
            Item {
                bytes,
                start,
                config,
            },
        )
    }

    fn publish_header(&self, bytes: Bytes) -> bool {
        let mut state = lock(&self.state);
        state.header = Some(bytes.clone());
        self.broadcast(
            &mut state,
            Item {
                bytes,
                start: false,
                config: true,
            },
        )
    }

    fn broadcast(&self, state: &mut HubState, item: Item) -> bool {
        // Err: no receiver, the last player left.
        if self.sender.send(item).is_err() {
            state.ended = true;
        }
        !state.ended
    }

    /// Ends the hub when no player is left; true if it ended.
    fn end_if_unwatched(&self) -> bool {
        let mut state = lock(&self.state);
        if self.sender.receiver_count() == 0 {
            state.ended = true;
        }
        state.ended
    }
}

/// The task that reads a hub's origin body.
struct Reader {
    hub: Arc<Hub>,
    key: HubKey,
    slot: Weak<Slot>,
    slots: Weak<Mutex<HashMap<HubKey, Arc<Slot>>>>,
    hubs: Gauge,
}

impl Reader {
    async fn run(self, mut body: LiveBody) {
        let mut decoder = FlvDecoder::new(MAX_TAG_SIZE);
        let mut idle = tokio::time::interval(IDLE_CHECK);
        idle.tick().await;
        let ended = loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                _ = idle.tick() => {
                    if self.hub.end_if_unwatched() {
                        break "its last player left";
                    }
                    continue;
                }
            };
            let data = match frame {
                None => break "the origin ended the stream",
                Some(Err(err)) => {
                    tracing::info!(stream = %self.key.stream, error = %err, "HTTP-FLV fan-out: origin connection failed");
                    break "the origin connection failed";
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            idle.reset();
            decoder.push(&data);
            match self.publish_all(&mut decoder) {
                Ok(true) => {}
                Ok(false) => break "its last player left",
                Err(err) => {
                    tracing::warn!(stream = %self.key.stream, error = %err, "HTTP-FLV fan-out: the origin's body is not FLV");
                    break "the origin's body is not FLV";
                }
            }
        };
        tracing::debug!(stream = %self.key.stream, "HTTP-FLV fan-out closed: {ended}");
        lock(&self.hub.state).ended = true;
        self.hubs.dec();
        self.leave_map();
        // The origin connection and the lease go with `body`; the players' receivers see the
        // channel closed once the hub (holding the sender) is dropped.
    }

    fn publish_all(&self, decoder: &mut FlvDecoder) -> Result<bool, crate::flv::FlvError> {
        while let Some(item) = decoder.next_item()? {
            let watched = match item {
                FlvItem::Header(bytes) => self.hub.publish_header(bytes),
                FlvItem::Tag { kind, bytes } => self.hub.publish(kind, bytes),
            };
            if !watched {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes the slot out of the map if it still holds this hub and nobody is opening another.
    fn leave_map(&self) {
        let (Some(slot), Some(slots)) = (self.slot.upgrade(), self.slots.upgrade()) else {
            return;
        };
        let mut slots = lock(&slots);
        let Ok(mut current) = slot.hub.try_lock() else {
            return; // a player is joining or opening: it takes over the slot
        };
        if current
            .as_ref()
            .is_some_and(|hub| Arc::ptr_eq(hub, &self.hub))
        {
            *current = None;
            if slots.get(&self.key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(&self.key);
            }
        }
    }
}

/// One player's place in a hub's stream.
struct Player {
    /// Sent first: header, metadata, sequence headers, the cached GOP.
    start: VecDeque<Bytes>,
    receiver: broadcast::Receiver<Item>,
    /// Skipping media until a tag a decoder can start at.
    waiting: bool,
    skips: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("the player fell more than the backlog behind the stream {MAX_SKIPS} times")]
struct TooSlow;

fn player_body(player: Player, metrics: FanoutMetrics) -> Body {
    let frames = futures::stream::unfold(player, move |mut player| {
        let metrics = metrics.clone();
        async move {
            if let Some(bytes) = player.start.pop_front() {
                return Some((Ok(Frame::data(bytes)), player));
            }
            loop {
                match player.receiver.recv().await {
                    Ok(item) if player.waiting && !item.config && !item.start => continue,
                    Ok(item) => {
                        if item.start {
                            player.waiting = false;
                        }
                        return Some((Ok(Frame::data(item.bytes)), player));
                    }
                    Err(RecvError::Lagged(_)) => {
                        player.skips += 1;
                        if player.skips > MAX_SKIPS {
                            metrics.dropped.inc();
                            return Some((Err(BoxError::from(TooSlow)), player));
                        }
                        metrics.skips.inc();
                        player.waiting = true;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    // After an error hyper closes the connection and polls no more.
    StreamBody::new(frames.boxed()).boxed_unsync()
}
