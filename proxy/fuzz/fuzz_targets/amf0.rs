//! Hostile bytes into the AMF0 decoder, the command parser and the stream key derived from a
//! connect/publish command. Whatever decodes must re-encode stably:
//! encode(decode(encode(v))) == encode(v).
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::rtmp::{
    amf0::{self, Value},
    command::Command,
    stream_key::ConnectTarget,
};

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
        let target = ConnectTarget::parse(
            command.object.property("tcUrl").and_then(Value::as_str),
            command.object.property("app").and_then(Value::as_str),
        );
        let key = target.stream_key(command.stream_name().unwrap_or_default());
        assert!(!key.vhost.is_empty());
        assert!(!key.stream.contains('?'));
    }
});
