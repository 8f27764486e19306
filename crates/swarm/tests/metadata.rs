//! BEP 9 metadata exchange between a fetcher and seeding engines, in memory: the right bytes
//! arrive and are verified; a peer serving other metadata is dropped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::time::Duration;

use shoal_metainfo::{Bitfield, MetaVersion};
use shoal_swarm::{Command, Config, MetadataFetch, PeerKey, Swarm};
use shoal_wire::{DEFAULT_MAX_FRAME, Reserved, decode_frame};

/// Moves frames between the fetcher (key 0 as the seeds see it) and the seeds (keys 1..).
fn pump(fetch: &mut MetadataFetch, seeds: &mut [Swarm]) -> Vec<PeerKey> {
    let now = Duration::ZERO;
    let mut dropped = Vec::new();
    for _ in 0..100 {
        let mut moved = false;
        while let Some(command) = fetch.poll_command() {
            moved = true;
            match command {
                Command::Send { peer, frame } => {
                    let mut at = 0;
                    while let Ok(Some((m, used))) = decode_frame(&frame[at..], DEFAULT_MAX_FRAME) {
                        seeds[peer.0 as usize - 1].handle_message(now, PeerKey(0), m);
                        at += used;
                    }
                }
                Command::Disconnect { peer, .. } => dropped.push(peer),
                other => panic!("unexpected {other:?}"),
            }
        }
        for (i, seed) in seeds.iter_mut().enumerate() {
            while let Some(command) = seed.poll_command() {
                moved = true;
                if let Command::Send { frame, .. } = command {
                    let mut at = 0;
                    while let Ok(Some((m, used))) = decode_frame(&frame[at..], DEFAULT_MAX_FRAME) {
                        fetch.handle_message(now, PeerKey(i as u64 + 1), m);
                        at += used;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    dropped
}

fn seed_serving(metadata: Vec<u8>, pieces: u32) -> Swarm {
    let (t, _) = support::torrent(100_000, 16 * 1024, MetaVersion::Hybrid, 1);
    let geometry = t.info().geometry().unwrap();
    assert_eq!(geometry.piece_count(), pieces);
    let mut seed = Swarm::new(
        Config::default(),
        geometry,
        Bitfield::full(pieces),
        Some(metadata),
        true,
    );
    seed.handle_connected(Duration::ZERO, PeerKey(0), Reserved::shoal(true));
    seed
}

#[test]
fn fetches_and_verifies_metadata_from_seeds() {
    // A torrent whose info dictionary spans several 16 KiB metadata pieces.
    let (t, _) = support::torrent(100_000, 16 * 1024, MetaVersion::Hybrid, 1);
    let pieces = t.info().geometry().unwrap().piece_count();
    let info = t.info_bytes().to_vec();
    let mut seeds = vec![
        seed_serving(info.clone(), pieces),
        seed_serving(info.clone(), pieces),
    ];
    let mut fetch = MetadataFetch::new(t.info_hashes(), "test".into());
    for i in 1..=2 {
        fetch.handle_connected(Duration::ZERO, PeerKey(i), Reserved::shoal(true));
    }
    let dropped = pump(&mut fetch, &mut seeds);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(fetch.metadata(), Some(info.as_slice()));
}

#[test]
fn a_peer_serving_other_metadata_is_dropped() {
    let (t, _) = support::torrent(100_000, 16 * 1024, MetaVersion::Hybrid, 1);
    let pieces = t.info().geometry().unwrap().piece_count();
    let mut forged = t.info_bytes().to_vec();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    let mut seeds = vec![seed_serving(forged, pieces)];
    let mut fetch = MetadataFetch::new(t.info_hashes(), "test".into());
    fetch.handle_connected(Duration::ZERO, PeerKey(1), Reserved::shoal(true));
    let dropped = pump(&mut fetch, &mut seeds);
    assert_eq!(dropped, [PeerKey(1)]);
    assert_eq!(fetch.metadata(), None);
}
