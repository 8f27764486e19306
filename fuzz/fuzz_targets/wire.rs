//! Fuzz target: the peer wire codec on arbitrary bytes: a stream of frames, the handshake, and
//! the BEP 10 / BEP 9 extension payloads. Whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_wire::{ExtensionHandshake, Handshake, Message, MetadataMessage, decode_frame};

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    let mut at = 0;
    // A small frame limit so the fuzzer reaches the "too large" path too.
    while let Ok(Some((message, used))) = decode_frame(&data[at..], 64 * 1024) {
        let mut out = Vec::new();
        message.encode(&mut out);
        assert_eq!(out, &data[at..at + used]);
        if let Message::Extended { id: 0, payload } = message {
            if let Ok(hs) = ExtensionHandshake::decode(payload) {
                assert_eq!(
                    ExtensionHandshake::decode(&hs.encode()).expect("our own encoding decodes"),
                    hs
                );
            }
        }
        if let Message::Extended { payload, .. } = message {
            if let Ok(m) = MetadataMessage::decode(payload) {
                let mut again = Vec::new();
                m.encode(&mut again);
                assert_eq!(
                    MetadataMessage::decode(&again).expect("our own encoding decodes"),
                    m
                );
            }
        }
        at += used;
    }
});
