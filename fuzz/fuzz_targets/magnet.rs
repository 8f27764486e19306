//! Fuzz target: magnet link parsing on arbitrary text. A link that parses must print a link
//! that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(magnet) = Magnet::parse(text) {
            let printed = magnet.to_string();
            assert_eq!(
                Magnet::parse(&printed).expect("our own link parses"),
                magnet,
                "{printed}"
            );
        }
    }
});
