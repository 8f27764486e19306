//! Fuzz target: arbitrary event sequences against one swarm engine (peers connecting and
//! leaving, any decodable message from any peer, verification results, time passing), with the
//! engine's invariant checker after every step. Nothing a peer sends may panic the engine or
//! leave its bookkeeping inconsistent.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::{Bitfield, Geometry, PieceLength};
use shoal_swarm::{Command, Config, PeerKey, Swarm, Verification};
use shoal_wire::{Message, Reserved};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, mut rest)) = data.split_first() else {
        return;
    };
    // A small torrent: 1..=16 pieces of 16 or 32 KiB, the last one short.
    let pieces = u64::from(shape % 16) + 1;
    let piece_length = if shape & 0x80 != 0 {
        32 * 1024
    } else {
        16 * 1024
    };
    let total = pieces * piece_length - 1000;
    let geometry =
        Geometry::new(PieceLength::new_v2(piece_length).expect("valid"), [total]).expect("valid");
    let mut have = Bitfield::new(geometry.piece_count());
    if shape & 0x40 != 0 {
        have.insert(0);
    }
    // A complete origin that super-seeds (BEP 16).
    let super_seed = shape & 0x20 != 0;
    if super_seed {
        have = Bitfield::full(geometry.piece_count());
    }
    let mut swarm = Swarm::new(
        Config {
            upload_slots: 2,
            super_seed,
            ..Config::default()
        },
        geometry,
        have,
        Some(vec![7; 40_000]),
        true,
    );
    let mut now = Duration::ZERO;
    let mut verifying = Vec::new();
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let peer = PeerKey(u64::from(op & 0x07));
        match op >> 3 {
            0 => swarm.handle_connected(now, peer, Reserved([0, 0, 0, 0, 0, 0x10, 0, op & 0x04])),
            1 => swarm.handle_disconnected(now, peer),
            2 => {
                now += Duration::from_millis(u64::from(op) * 97);
                swarm.handle_timeout(now);
            }
            3 => {
                if let Some(piece) = verifying.pop() {
                    swarm.handle_verified(
                        now,
                        piece,
                        Verification {
                            passed: op & 1 == 0,
                            block_digests: None,
                        },
                    );
                }
            }
            _ => {
                // The next bytes are one frame payload, length-prefixed by one byte.
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len).min(tail.len());
                let (frame, tail) = tail.split_at(len);
                rest = tail;
                if let Ok(message) = Message::decode(frame) {
                    swarm.handle_message(now, peer, message);
                }
            }
        }
        while let Some(command) = swarm.poll_command() {
            if let Command::Verify { piece, .. } = command {
                verifying.push(piece);
            }
        }
        if let Err(problem) = swarm.check_invariants() {
            panic!("invariant broken: {problem}");
        }
    }
});
