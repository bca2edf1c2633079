//! Relaying between a client and its origin once both sides are set up: whole messages both
//! ways, media untouched (so Enhanced RTMP HEVC/AV1 and anything newer passes through), only
//! message stream ids translated between the two hops. Each hop keeps its own chunk size,
//! acknowledgements and pings.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{
    chunk::Message,
    command::Command,
    connection::{ConnectionError, RtmpConnection},
    control::{self, kind},
};

/// Why a relay ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    ClientClosed,
    ClientDeletedStream,
    OriginClosed,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("client: {0}")]
    Client(ConnectionError),
    #[error("origin: {0}")]
    Origin(ConnectionError),
    #[error("no data in either direction for {0:?}")]
    Idle(Duration),
}

/// The two message stream ids of one relayed stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamIds {
    pub client: u32,
    pub origin: u32,
}

fn translate(mut message: Message, from: u32, to: u32) -> Message {
    if message.stream_id == from {
        message.stream_id = to;
    }
    if message.type_id == kind::USER_CONTROL
        && control::user_control_stream_id(&message.payload) == Some(from)
    {
        message.payload = control::with_user_control_stream_id(&message.payload, to);
    }
    message
}

fn is_delete_stream(message: &Message) -> bool {
    matches!(message.type_id, kind::COMMAND_AMF0 | kind::COMMAND_AMF3)
        && Command::decode(message.type_id, &message.payload)
            .is_ok_and(|c| c.name == "deleteStream")
}

/// Bytes the relays read from each side, for the bandwidth metrics. Shared by every session.
#[derive(Debug, Default)]
pub struct RelayBytes {
    /// Read from clients (publishers' media, players' commands), relayed to origins.
    pub to_origin: AtomicU64,
    /// Read from origins (players' media), relayed to clients.
    pub to_client: AtomicU64,
}

/// One relay's byte counts, added to the shared [`RelayBytes`] in batches and when the relay
/// ends: an atomic add per read would make every session of every core touch one cache line.
struct Tally<'a> {
    shared: &'a RelayBytes,
    to_origin: u64,
    to_client: u64,
}

impl Tally<'_> {
    /// About a second of a 400 kbit/s stream: the metric lags a live stream by that at most.
    const BATCH: u64 = 64 * 1024;

    fn read_from_client(&mut self, n: usize) {
        Self::add(&mut self.to_origin, &self.shared.to_origin, n);
    }

    fn read_from_origin(&mut self, n: usize) {
        Self::add(&mut self.to_client, &self.shared.to_client, n);
    }

    fn add(pending: &mut u64, shared: &AtomicU64, n: usize) {
        *pending += n as u64;
        if *pending >= Self::BATCH {
            shared.fetch_add(std::mem::take(pending), Ordering::Relaxed);
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.shared
            .to_origin
            .fetch_add(self.to_origin, Ordering::Relaxed);
        self.shared
            .to_client
            .fetch_add(self.to_client, Ordering::Relaxed);
    }
}

pub async fn relay(
    client: &mut RtmpConnection,
    origin: &mut RtmpConnection,
    ids: StreamIds,
    idle: Duration,
    terminate: &CancellationToken,
    bytes: &RelayBytes,
) -> Result<RelayEnd, RelayError> {
    let mut tally = Tally {
        shared: bytes,
        to_origin: 0,
        to_client: 0,
    };
    // One timer for the whole relay, pushed back lazily: re-arming a timer per read would
    // cost more than the relaying itself at full speed.
    let mut last_activity = Instant::now();
    let watchdog = tokio::time::sleep(idle);
    tokio::pin!(watchdog);
    // Made once: a new one per wake-up would register with the token (under its lock) each time.
    let shutdown = terminate.cancelled();
    tokio::pin!(shutdown);
    loop {
        // Messages already buffered (e.g. the origin's onStatus read with its setup answers)
        // go first.
        let mut end = None;
        while let Some(message) = origin.next_buffered().map_err(RelayError::Origin)? {
            client.queue(&translate(message, ids.origin, ids.client));
        }
        while let Some(message) = client.next_buffered().map_err(RelayError::Client)? {
            let deleting = is_delete_stream(&message);
            origin.queue(&translate(message, ids.client, ids.origin));
            if deleting {
                end = Some(RelayEnd::ClientDeletedStream);
                break;
            }
        }
        if client.has_pending_writes() || origin.has_pending_writes() {
            // A peer that stops reading must not hold the session forever either.
            let flush = async {
                client
                    .flush()
                    .await
                    .map_err(|e| RelayError::Client(e.into()))?;
                origin
                    .flush()
                    .await
                    .map_err(|e| RelayError::Origin(e.into()))
            };
            tokio::pin!(flush);
            loop {
                tokio::select! {
                    flushed = &mut flush => {
                        flushed?;
                        break;
                    }
                    _ = &mut watchdog => {
                        if last_activity.elapsed() >= idle {
                            return Err(RelayError::Idle(idle));
                        }
                        watchdog.as_mut().reset(last_activity + idle);
                    }
                }
            }
        }
        if let Some(end) = end {
            return Ok(end);
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(RelayEnd::Shutdown),
            read = client.fill() => {
                match read.map_err(|e| RelayError::Client(e.into()))? {
                    0 => return Ok(RelayEnd::ClientClosed),
                    n => tally.read_from_client(n),
                }
            }
            read = origin.fill() => {
                match read.map_err(|e| RelayError::Origin(e.into()))? {
                    0 => return Ok(RelayEnd::OriginClosed),
                    n => tally.read_from_origin(n),
                }
            }
            _ = &mut watchdog => {
                if last_activity.elapsed() >= idle {
                    return Err(RelayError::Idle(idle));
                }
                watchdog.as_mut().reset(last_activity + idle);
                continue;
            }
        }
        last_activity = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn stream_ids_are_translated_in_headers_and_user_control_events() {
        let media = Message {
            csid: 6,
            timestamp: 5,
            type_id: kind::VIDEO,
            stream_id: 1,
            payload: Bytes::from_static(&[0x17, 0x01]),
        };
        let moved = translate(media.clone(), 1, 7);
        assert_eq!((moved.stream_id, &moved.payload), (7, &media.payload));
        let begin = control::stream_begin(7);
        let moved = translate(begin, 7, 1);
        assert_eq!(control::user_control_stream_id(&moved.payload), Some(1));
        let connection_level = Message {
            stream_id: 0,
            ..media
        };
        assert_eq!(translate(connection_level, 1, 7).stream_id, 0);
    }
}
