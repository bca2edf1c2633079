//! FLV bodies come from origins (the HTTP-FLV fan-out splits them into tags): decoding must
//! never panic, never hold more than one tag, and any split of the input into reads gives the
//! same items and the same verdict as one read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::flv::{FlvDecoder, FlvItem};

const MAX_TAG: usize = 4096;

fn decode(pieces: impl Iterator<Item = Vec<u8>>) -> (Vec<FlvItem>, bool) {
    let mut decoder = FlvDecoder::new(MAX_TAG);
    let mut items = Vec::new();
    for piece in pieces {
        decoder.push(&piece);
        loop {
            match decoder.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(_) => return (items, false),
            }
        }
    }
    (items, true)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(body.to_vec()));
    let size = usize::from(split % 17) + 1;
    let pieces = decode(body.chunks(size).map(<[u8]>::to_vec));
    assert_eq!(whole, pieces, "{body:?}");
    let given: usize = whole
        .0
        .iter()
        .map(|item| match item {
            FlvItem::Header(bytes) | FlvItem::Tag { bytes, .. } => bytes.len(),
        })
        .sum();
    assert!(given <= body.len());
    for item in &whole.0 {
        if let FlvItem::Tag { bytes, .. } = item {
            assert!(bytes.len() <= 11 + MAX_TAG + 4);
        }
    }
});
