//! Hostile C0+C1 into the server side of the handshake and hostile S0+S1 into the client side
//! (toward an origin): never a panic; a well-sized packet of version 3 is always answered,
//! with S0 + S1 + S2 of the right size, and a plain-form C1 is echoed in S2.
#![no_main]

use libfuzzer_sys::fuzz_target;
use originstack_proxy::rtmp::handshake::{
    ClientHandshake, Form, PACKET_SIZE, RTMP_VERSION, client_form, server_response,
};
use rand::{SeedableRng, rngs::StdRng};

fuzz_target!(|data: &[u8]| {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(7);
    // Short inputs are padded so the digest search runs on fuzzed bytes too.
    let mut packet = rest.to_vec();
    if packet.len() < PACKET_SIZE && version & 1 == 1 {
        packet.resize(PACKET_SIZE, 0);
    }
    let answer = server_response(version, &packet, &mut rng);
    if version == RTMP_VERSION && packet.len() == PACKET_SIZE {
        let answer = answer.expect("a well-formed C0+C1 is answered");
        assert_eq!(answer.len(), 1 + 2 * PACKET_SIZE);
        assert_eq!(answer[0], RTMP_VERSION);
        if client_form(&packet) == Ok(Form::Plain) {
            assert_eq!(
                &answer[1 + PACKET_SIZE..],
                &packet[..],
                "S2 echoes a plain C1"
            );
        }
    } else {
        assert!(answer.is_err());
    }
    let (client, _) = ClientHandshake::start(&mut rng);
    let c2 = client.c2(version, &packet, &mut rng);
    assert_eq!(
        c2.is_ok(),
        version == RTMP_VERSION && packet.len() == PACKET_SIZE
    );
});
