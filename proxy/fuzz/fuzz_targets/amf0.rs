//! Hostile bytes into the AMF0 decoder and the command parser. Whatever decodes must
//! re-encode stably: encode(decode(encode(v))) == encode(v).
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::rtmp::{amf0, command::Command};

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data) {
        let encoded = amf0::encode_all(&values);
        let again = amf0::decode_all(&encoded).expect("our own encoding decodes");
        assert_eq!(amf0::encode_all(&again), encoded);
    }
    if let Ok(command) = Command::decode(20, data) {
        let encoded = command.encode();
        let again = Command::decode(20, &encoded).expect("our own encoding decodes");
        assert_eq!(again.encode(), encoded);
    }
});
