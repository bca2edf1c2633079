//! Hostile bytes into the chunk decoder, fed in pieces of varying size, with Set Chunk Size
//! and Abort applied as a connection applies them. Every decoded message must survive an
//! encode/decode round trip unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use originstack_proxy::rtmp::{
    chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits},
    control::{self, Control},
};

fuzz_target!(|data: &[u8]| {
    let Some((&step_seed, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step_seed % 64) + 1;
    let limits = DecoderLimits {
        max_message_size: 64 * 1024,
        max_chunk_streams: 8,
    };
    let mut decoder = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            let message = match decoder.decode(&mut buf) {
                Ok(Some(message)) => message,
                Ok(None) => {
                    // Whatever is left unconsumed is an incomplete chunk header, never payload.
                    assert!(buf.len() < 18);
                    break;
                }
                Err(_) => return,
            };
            assert!(message.payload.len() <= limits.max_message_size as usize);
            match control::parse(&message) {
                Ok(Some(Control::SetChunkSize(size))) => {
                    if decoder.set_chunk_size(size).is_err() {
                        return;
                    }
                }
                Ok(Some(Control::Abort { csid })) => decoder.abort(csid),
                _ => {}
            }
            let mut encoder = ChunkEncoder::new();
            encoder.set_chunk_size(u32::from(step_seed) + 1);
            let mut wire = BytesMut::new();
            encoder.encode(&message, &mut wire);
            let mut check = ChunkDecoder::new(limits);
            check.set_chunk_size(u32::from(step_seed) + 1).unwrap();
            let again = check
                .decode(&mut wire)
                .unwrap()
                .expect("a whole encoded message decodes");
            assert_eq!(again, message);
            assert!(wire.is_empty());
        }
    }
});
