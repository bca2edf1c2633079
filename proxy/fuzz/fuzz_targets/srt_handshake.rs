//! Any datagram on the SRT port: header, handshake with extensions, stream id. Decoding never
//! panics, and whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::srt::{
    StreamId,
    handshake::{Handshake, RejectReason},
    packet::{HEADER_LEN, Header, set_destination},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = Header::decode(data) {
        let mut rewritten = data.to_vec();
        assert!(set_destination(&mut rewritten, 0x0102_0304));
        let again = Header::decode(&rewritten).expect("a rewritten header still decodes");
        assert_eq!(
            again,
            Header {
                destination: 0x0102_0304,
                ..header
            }
        );
    }
    if let Ok((header, handshake)) = Handshake::decode_packet(data) {
        let encoded = handshake.encode_packet(header.timestamp, header.destination);
        assert_eq!(
            &encoded[HEADER_LEN..],
            &data[HEADER_LEN..],
            "handshake re-encodes byte for byte"
        );
        let _ = handshake.srt_request();
        let _ = handshake.srt_response();
        let _ = handshake.wants_encryption();
        if let Ok(Some(streamid)) = handshake.stream_id() {
            let _ = StreamId::parse(&streamid);
        }
        let rejection = handshake
            .rejection(RejectReason::BAD_REQUEST, 1)
            .encode_packet(0, handshake.socket_id);
        assert!(Handshake::decode_packet(&rejection).is_ok());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = StreamId::parse(text) {
            assert!(!id.app.is_empty() && !id.stream.is_empty());
        }
    }
});
