//! Fuzz target: torrent parsing on arbitrary bytes. A torrent that parses must re-encode to
//! bytes that parse to the same torrent, and its info must re-encode to its own info bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::Torrent;

fuzz_target!(|data: &[u8]| {
    if let Ok(torrent) = Torrent::from_bytes(data) {
        let again = Torrent::from_bytes(&torrent.to_bytes()).expect("our own encoding parses");
        assert_eq!(again, torrent);
        let geometry = torrent
            .info()
            .geometry()
            .expect("a parsed torrent has a geometry");
        for piece in 0..geometry.piece_count().min(64) {
            let index = geometry.piece(piece).expect("in range");
            assert!(geometry.piece_len(index) > 0);
        }
        let _ = torrent.magnet().to_string();
    }
});
