//! Response bodies counted for the metrics: bytes sent to players, and live (HTTP-FLV/TS)
//! players held now.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use super::{Body, BoxError};

/// Counts `inner`'s data into `bytes` and, for a live body, holds one in `live` until the
/// body is dropped (the player went away or the stream ended).
pub(super) fn meter(inner: Body, bytes: Counter, live: Option<Gauge>) -> Body {
    if let Some(live) = &live {
        live.inc();
    }
    Metered {
        inner,
        bytes,
        pending: 0,
        live,
    }
    .boxed_unsync()
}

struct Metered {
    inner: Body,
    bytes: Counter,
    /// Counted but not yet added: a shared counter per frame would be an atomic add per read
    /// of every player.
    pending: u64,
    live: Option<Gauge>,
}

impl Metered {
    /// About a second of a 400 kbit/s stream: the metric lags a player by that at most.
    const BATCH: u64 = 64 * 1024;
}

impl hyper::body::Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.pending += data.len() as u64;
            if this.pending >= Self::BATCH {
                this.bytes.inc_by(std::mem::take(&mut this.pending));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.bytes.inc_by(self.pending);
        if let Some(live) = &self.live {
            live.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn counts_every_byte_and_holds_a_live_player_until_dropped() {
        let (bytes, live) = (Counter::default(), Gauge::default());
        let metered = meter(
            body(&[b"FLV\x01", b"tag", b""]),
            bytes.clone(),
            Some(live.clone()),
        );
        assert_eq!(live.get(), 1);
        let collected = metered.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"FLV\x01tag");
        assert_eq!(bytes.get(), 7);
        assert_eq!(live.get(), 0);

        let whole = Full::new(Bytes::from_static(b"#EXTM3U\n"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let metered = meter(whole, bytes.clone(), None);
        drop(metered);
        assert_eq!(bytes.get(), 7, "nothing sent, nothing counted");
        assert_eq!(live.get(), 0);
    }
}
