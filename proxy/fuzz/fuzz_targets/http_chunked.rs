//! Chunked bodies come from origins: decoding must never panic or take more than it was given,
//! and any split of the input into reads gives the same data and the same verdict as one read
//! (a live body arrives in whatever pieces TCP delivers).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use originstack_proxy::http::chunked::ChunkedDecoder;

fn decode(pieces: impl Iterator<Item = Vec<u8>>) -> (Vec<u8>, Option<usize>, bool) {
    let mut decoder = ChunkedDecoder::default();
    let mut out = BytesMut::new();
    let mut used = 0;
    for piece in pieces {
        match decoder.decode(&piece, &mut out) {
            Ok(n) => {
                assert!(n <= piece.len());
                used += n;
                if decoder.is_done() {
                    return (out.to_vec(), Some(used), true);
                }
            }
            Err(_) => return (out.to_vec(), None, false),
        }
    }
    (out.to_vec(), Some(used), decoder.is_done())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(body.to_vec()));
    let size = usize::from(split % 17) + 1;
    let pieces = decode(body.chunks(size).map(<[u8]>::to_vec));
    // The decoder works byte by byte, so even the data given out before an error is the same.
    assert_eq!(whole, pieces, "{body:?}");
    assert!(whole.0.len() <= body.len());
});
