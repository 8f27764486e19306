//! Engines wired together in memory (no sockets), deterministic under a seed: downloads
//! complete with the right bytes, pieces are picked rarest first, upload slots rotate without
//! tit-for-tat, endgame cancels duplicates, and peers sending bad data are banned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::time::Duration;

use shoal_metainfo::{Bitfield, MetaVersion};
use shoal_swarm::{Config, DisconnectReason, PeerKey};
use support::{Behaviour, Net, torrent};

const MS: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(600);

fn config(seed: u64) -> Config {
    Config {
        seed,
        ..Config::default()
    }
}

#[test]
fn one_seed_one_leecher_every_version() {
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let (t, data) = torrent(1_000_000, 64 * 1024, version, 1);
        let mut net = Net::new(&t, data.clone());
        let n = net.piece_count();
        let seed = net.add(config(1), Bitfield::full(n), Behaviour::Honest);
        let leecher = net.add(config(2), Bitfield::new(n), Behaviour::Honest);
        net.connect(seed, leecher);
        net.run_until_complete(&[leecher], MS, LIMIT);
        assert!(net.nodes[leecher].swarm.is_complete(), "{version:?}");
        assert_eq!(net.content(leecher), data, "{version:?}");
        let stats = net.nodes[leecher].swarm.stats();
        assert_eq!(stats.downloaded, data.len() as u64);
        assert_eq!(stats.pieces_failed, 0);
        // Once both are seeds there is nothing to exchange: the connection is closed.
        assert_eq!(net.nodes[seed].swarm.peer_count(), 0);
    }
}

#[test]
fn many_seeds_and_leechers_all_complete() {
    let (t, data) = torrent(3_000_000, 32 * 1024, MetaVersion::Hybrid, 2);
    let mut net = Net::new(&t, data.clone());
    let n = net.piece_count();
    let seeds: Vec<usize> = (0..3)
        .map(|i| net.add(config(10 + i), Bitfield::full(n), Behaviour::Honest))
        .collect();
    let leechers: Vec<usize> = (0..4)
        .map(|i| net.add(config(20 + i), Bitfield::new(n), Behaviour::Honest))
        .collect();
    let all: Vec<usize> = seeds.iter().chain(&leechers).copied().collect();
    for (i, &a) in all.iter().enumerate() {
        for &b in &all[i + 1..] {
            if !(seeds.contains(&a) && seeds.contains(&b)) {
                net.connect(a, b);
            }
        }
    }
    net.run_until_complete(&leechers, MS, LIMIT);
    for &l in &leechers {
        assert_eq!(net.content(l), data, "leecher {l}");
    }
    // Leechers also served each other: always share.
    let uploaded_by_leechers: u64 = leechers
        .iter()
        .map(|&l| net.nodes[l].swarm.stats().uploaded)
        .sum();
    assert!(uploaded_by_leechers > 0);
}

#[test]
fn the_rarest_pieces_are_requested_first() {
    let (t, data) = torrent(10 * 16 * 1024, 16 * 1024, MetaVersion::V2, 3);
    let mut net = Net::new(&t, data);
    let n = net.piece_count();
    assert_eq!(n, 10);
    let with = |pieces: &[u32]| {
        let mut b = Bitfield::new(n);
        pieces.iter().for_each(|&p| {
            b.insert(p);
        });
        b
    };
    // Pieces 5..=8 are held by two peers, the rest by three.
    let p1 = net.add(
        config(1),
        with(&[0, 1, 2, 3, 4, 5, 6, 7, 8]),
        Behaviour::Honest,
    );
    let p2 = net.add(
        config(2),
        with(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        Behaviour::Honest,
    );
    let p3 = net.add(config(3), with(&[0, 1, 2, 3, 4, 9]), Behaviour::Honest);
    let leecher = net.add(
        Config {
            min_requests: 4,
            max_requests: 4,
            ..config(4)
        },
        Bitfield::new(n),
        Behaviour::Honest,
    );
    // Connect the leecher to everyone before any unchoke is delivered.
    for p in [p1, p2, p3] {
        net.connect(p, leecher);
    }
    net.step(MS);
    let first: Vec<u32> = net.nodes[leecher]
        .sent_messages
        .iter()
        .filter_map(|(_, m)| {
            m.strip_prefix("request ")
                .and_then(|r| r.split(':').next()?.parse().ok())
        })
        .take(4)
        .collect();
    assert_eq!(first.len(), 4, "{:?}", net.nodes[leecher].sent_messages);
    assert!(
        first.iter().all(|p| (5..=8).contains(p)),
        "first requests {first:?} are not the rarest pieces"
    );
    net.run_until_complete(&[leecher], MS, LIMIT);
    assert!(net.nodes[leecher].swarm.is_complete());
}

#[test]
fn upload_slots_rotate_fairly_without_tit_for_tat() {
    let (t, data) = torrent(16_000_000, 64 * 1024, MetaVersion::V2, 4);
    let mut net = Net::new(&t, data);
    // 64 KiB per 10 ms step: 6.4 MB/s per link, so a turn of 1 s moves 6.4 MB.
    net.link_budget = 64 * 1024 + 1024;
    let n = net.piece_count();
    let seed_config = Config {
        upload_slots: 2,
        rotation_interval: Duration::from_secs(1),
        ..config(1)
    };
    let seed = net.add(seed_config, Bitfield::full(n), Behaviour::Honest);
    let leechers: Vec<usize> = (0..6)
        .map(|i| net.add(config(10 + i), Bitfield::new(n), Behaviour::Honest))
        .collect();
    for &l in &leechers {
        net.connect(seed, l);
    }
    let mut unchoked_ever = std::collections::BTreeSet::new();
    for _ in 0..500 {
        net.step(MS);
        let mut state = std::collections::BTreeMap::new();
        for (peer, m) in &net.nodes[seed].sent_messages {
            match m.as_str() {
                "unchoke" => {
                    state.insert(*peer, true);
                    unchoked_ever.insert(*peer);
                }
                "choke" => {
                    state.insert(*peer, false);
                }
                _ => {}
            }
        }
        let holding = state
            .iter()
            .filter(|(p, u)| **u && net.is_connected(seed, p.0 as usize))
            .count();
        assert!(
            holding <= 2,
            "{holding} peers unchoked at once with 2 slots"
        );
    }
    // Every leecher had a turn within 5 s of virtual time, though none uploaded anything back:
    // 6 peers, 2 slots, 1 s turns.
    let expected: std::collections::BTreeSet<PeerKey> =
        leechers.iter().map(|&l| PeerKey(l as u64)).collect();
    assert_eq!(unchoked_ever, expected);
    let chokes = net.nodes[seed]
        .sent_messages
        .iter()
        .filter(|(_, m)| m == "choke")
        .count();
    assert!(chokes >= 4, "slots rotated only {chokes} times");
}

#[test]
fn endgame_requests_twice_and_cancels_the_loser() {
    let (t, data) = torrent(40 * 16 * 1024, 16 * 1024, MetaVersion::V2, 5);
    let mut net = Net::new(&t, data.clone());
    let n = net.piece_count();
    let a = net.add(config(1), Bitfield::full(n), Behaviour::Honest);
    let b = net.add(config(2), Bitfield::full(n), Behaviour::Honest);
    let leecher = net.add(config(3), Bitfield::new(n), Behaviour::Honest);
    net.connect(a, leecher);
    net.connect(b, leecher);
    net.run_until_complete(&[leecher], MS, LIMIT);
    assert_eq!(net.content(leecher), data);
    let cancels = net.nodes[leecher]
        .sent_messages
        .iter()
        .filter(|(_, m)| m.starts_with("cancel"))
        .count();
    assert!(cancels > 0, "endgame sent no cancel");
}

#[test]
fn peers_serving_bad_data_are_banned_and_the_download_completes() {
    let (t, data) = torrent(2_000_000, 32 * 1024, MetaVersion::Hybrid, 6);
    let mut net = Net::new(&t, data.clone());
    let n = net.piece_count();
    let honest: Vec<usize> = (0..2)
        .map(|i| net.add(config(i), Bitfield::full(n), Behaviour::Honest))
        .collect();
    let liars: Vec<usize> = (0..3)
        .map(|i| net.add(config(10 + i), Bitfield::full(n), Behaviour::Corrupt))
        .collect();
    let leecher = net.add(config(99), Bitfield::new(n), Behaviour::Honest);
    for &s in honest.iter().chain(&liars) {
        net.connect(s, leecher);
    }
    net.run_until_complete(&[leecher], MS, LIMIT);
    assert_eq!(net.content(leecher), data);
    let mut banned = net.nodes[leecher].banned.clone();
    banned.sort();
    let expected: Vec<PeerKey> = liars.iter().map(|&l| PeerKey(l as u64)).collect();
    assert_eq!(banned, expected, "exactly the liars are banned");
    assert!(net.nodes[leecher].swarm.stats().pieces_failed > 0);
}

#[test]
fn a_peer_with_a_tiny_request_queue_is_respected_not_a_crash() {
    // Its extension handshake says reqq = 1, below our minimum of 16 requests in flight.
    let (t, data) = torrent(200_000, 16 * 1024, MetaVersion::V2, 7);
    let mut net = Net::new(&t, data.clone());
    let n = net.piece_count();
    let seed = net.add(
        Config {
            max_requests: 1,
            ..config(1)
        },
        Bitfield::full(n),
        Behaviour::Honest,
    );
    let leecher = net.add(config(2), Bitfield::new(n), Behaviour::Honest);
    // About one block per step: with our default minimum of 16 requests, 13 would go out at
    // once; honouring reqq = 1, a request follows each block, so the first step sends at most 2.
    net.link_budget = 17 * 1024;
    net.connect(seed, leecher);
    net.step(MS);
    let requests = net.nodes[leecher]
        .sent_messages
        .iter()
        .filter(|(_, m)| m.starts_with("request"))
        .count();
    assert!(
        (1..=2).contains(&requests),
        "{:?}",
        net.nodes[leecher].sent_messages
    );
    net.run_until_complete(&[leecher], MS, LIMIT);
    assert_eq!(net.content(leecher), data);
}

/// One origin seed and `leechers` leechers, all connected, links of 64 KiB per 10 ms step;
/// returns the bytes the origin uploaded and the file's size, after checking every leecher got
/// the right bytes and no connection was closed for anything but both ends being seeds.
fn origin_upload(super_seed: bool, leechers: u64) -> (u64, u64) {
    let (t, data) = torrent(4_000_000, 32 * 1024, MetaVersion::Hybrid, 7);
    let mut net = Net::new(&t, data.clone());
    net.link_budget = 64 * 1024 + 1024;
    let n = net.piece_count();
    let origin_config = Config {
        super_seed,
        ..config(1)
    };
    let origin = net.add(origin_config, Bitfield::full(n), Behaviour::Honest);
    let downloaders: Vec<usize> = (0..leechers)
        .map(|i| net.add(config(30 + i), Bitfield::new(n), Behaviour::Honest))
        .collect();
    for (i, &a) in downloaders.iter().enumerate() {
        net.connect(origin, a);
        for &b in &downloaders[i + 1..] {
            net.connect(a, b);
        }
    }
    net.run_until_complete(&downloaders, MS, LIMIT);
    for &d in &downloaders {
        assert!(
            net.nodes[d].swarm.is_complete(),
            "super_seed={super_seed} leecher {d}: {:?} after {:?}",
            net.nodes[d].swarm.stats(),
            net.now
        );
        assert!(
            net.content(d) == data,
            "super_seed={super_seed} leecher {d}: wrong bytes"
        );
    }
    // Endgame cancels cross blocks already on the slow links: those late blocks are no
    // protocol violation, and nobody drops a good peer over them.
    for node in &net.nodes {
        for (peer, reason) in &node.disconnects {
            assert_eq!(
                *reason,
                DisconnectReason::BothSeeds,
                "super_seed={super_seed}: dropped {peer:?}"
            );
        }
    }
    (net.nodes[origin].swarm.stats().uploaded, data.len() as u64)
}

#[test]
fn super_seeding_sends_each_piece_out_of_the_origin_about_once() {
    let (plain, size) = origin_upload(false, 5);
    let (super_seeded, _) = origin_upload(true, 5);
    eprintln!("origin uploaded {plain} bytes plain, {super_seeded} super-seeding, file {size}");
    // Plain seeding serves whichever pieces leechers ask for, to all of them at once.
    assert!(
        plain > 2 * size,
        "plain seeding uploaded {plain} bytes of a {size}-byte file"
    );
    assert!(
        super_seeded <= size + size / 4,
        "super-seeding uploaded {super_seeded} bytes of a {size}-byte file"
    );
}

#[test]
fn a_super_seed_offers_a_window_of_fresh_pieces_and_sends_each_once_to_a_lone_leecher() {
    let (t, data) = torrent(2_000_000, 64 * 1024, MetaVersion::V2, 8);
    let mut net = Net::new(&t, data.clone());
    // 16 KiB per 10 ms step: a 64 KiB piece takes several steps.
    net.link_budget = 16 * 1024 + 1024;
    let n = net.piece_count();
    let origin_config = Config {
        super_seed: true,
        // Two pieces until the leecher's rate is known.
        super_seed_window: 128 * 1024,
        ..config(1)
    };
    let origin = net.add(origin_config, Bitfield::full(n), Behaviour::Honest);
    let a = net.add(config(2), Bitfield::new(n), Behaviour::Honest);
    net.connect(origin, a);
    let announced = |net: &Net| -> Vec<String> {
        net.nodes[origin]
            .sent_messages
            .iter()
            .map(|(_, m)| m.clone())
            .filter(|m| m.starts_with("have"))
            .collect()
    };
    // On connect: `have none`, then one `have` per piece of the window.
    net.step(MS);
    assert_eq!(announced(&net), ["havenone", "have", "have"]);
    net.run_until_complete(&[a], MS, LIMIT);
    assert!(net.nodes[a].swarm.is_complete());
    assert_eq!(net.content(a), data);
    // Every piece offered exactly once, and never `have all` or a bitfield.
    assert_eq!(
        announced(&net).len(),
        1 + n as usize,
        "{:?}",
        announced(&net)
    );
    assert!(
        !net.nodes[origin]
            .sent_messages
            .iter()
            .any(|(_, m)| m == "haveall" || m == "bitfield"),
        "the origin never reveals it has everything"
    );
    // Each piece left the origin once.
    assert_eq!(net.nodes[origin].swarm.stats().uploaded, data.len() as u64);
}

/// libtorrent 2.0 (qBittorrent 4.5) drops a peer whose `have` shows it is a seed if it arrives
/// while libtorrent is not interested in it, as it is for a moment after finishing each piece a
/// super-seed offered it. The origin's last offer to a peer therefore goes out with the one
/// before it, which makes the peer interested first: qBittorrent used to stall a minute, one
/// piece short, until it reconnected.
#[test]
fn a_super_seed_is_never_dropped_for_revealing_its_last_piece() {
    for leechers in [1, 3] {
        let (t, data) = torrent(600_000, 16 * 1024, MetaVersion::Hybrid, 9);
        let mut net = Net::new(&t, data.clone());
        net.link_budget = 16 * 1024 + 1024;
        let n = net.piece_count();
        let origin_config = Config {
            super_seed: true,
            // One piece at a time, as BEP 16 has it (and as a fast peer gets small pieces).
            super_seed_window: 1,
            request_queue_time: Duration::from_millis(1),
            ..config(1)
        };
        let origin = net.add(origin_config, Bitfield::full(n), Behaviour::Honest);
        let downloaders: Vec<usize> = (0..leechers)
            .map(|i| {
                net.add(
                    config(40 + i),
                    Bitfield::new(n),
                    Behaviour::DropsSeedsWhenUninterested,
                )
            })
            .collect();
        for (i, &a) in downloaders.iter().enumerate() {
            net.connect(origin, a);
            for &b in &downloaders[i + 1..] {
                net.connect(a, b);
            }
        }
        net.run_until_complete(&downloaders, MS, LIMIT);
        for &d in &downloaders {
            assert!(
                !net.nodes[d].dropped_seeds.contains(&PeerKey(origin as u64)),
                "{leechers} leechers: {d} dropped the origin"
            );
            assert!(
                net.nodes[d].swarm.is_complete(),
                "{leechers} leechers: {d} has {} of {n} pieces",
                net.nodes[d].swarm.have().count()
            );
            assert!(net.content(d) == data);
        }
    }
}

#[test]
fn a_host_with_no_upload_slots_uploads_nothing_and_resumes_when_given_some() {
    let (t, data) = torrent(1_000_000, 64 * 1024, MetaVersion::V2, 7);
    let mut net = Net::new(&t, data.clone());
    let n = net.piece_count();
    let seed = net.add(config(1), Bitfield::full(n), Behaviour::Honest);
    let metered = net.add(config(2), Bitfield::new(n), Behaviour::Honest);
    let other = net.add(config(3), Bitfield::new(n), Behaviour::Honest);
    net.connect(seed, metered);
    net.connect(metered, other);
    // The metered host downloads from the seed but serves nobody, so `other`, which only
    // knows it, gets nothing.
    net.nodes[metered].swarm.set_upload_slots(Duration::ZERO, 0);
    net.run_until_complete(&[metered], MS, LIMIT);
    assert!(net.nodes[metered].swarm.is_complete());
    assert_eq!(net.content(metered), data);
    for _ in 0..100 {
        net.step(MS);
    }
    assert_eq!(net.nodes[metered].swarm.stats().uploaded, 0);
    assert_eq!(net.nodes[other].swarm.have().count(), 0);
    // The policy lifted, it serves again at once.
    let now = net.now;
    net.nodes[metered].swarm.set_upload_slots(now, 4);
    net.run_until_complete(&[other], MS, LIMIT);
    assert_eq!(net.content(other), data);
    assert_eq!(net.nodes[metered].swarm.stats().uploaded, data.len() as u64);
}

/// A seed of a 1 MiB torrent in 16 pieces, driven by hand, with one upload slot.
fn one_slot_seed() -> shoal_swarm::Swarm {
    use shoal_metainfo::{Geometry, PieceLength};

    let geometry = Geometry::new(PieceLength::new_v2(64 * 1024).unwrap(), [1 << 20]).unwrap();
    let n = geometry.piece_count();
    let config = Config {
        upload_slots: 1,
        ..config(1)
    };
    shoal_swarm::Swarm::new(config, geometry, Bitfield::full(n), None, true)
}

/// The chokes (false) and unchokes (true) `swarm` sent since last asked, in order.
fn chokes(swarm: &mut shoal_swarm::Swarm) -> Vec<(PeerKey, bool)> {
    use shoal_wire::Message;

    let mut out = Vec::new();
    while let Some(command) = swarm.poll_command() {
        if let shoal_swarm::Command::Send { peer, frame } = command {
            match Message::decode(&frame[4..]) {
                Ok(Message::Choke) => out.push((peer, false)),
                Ok(Message::Unchoke) => out.push((peer, true)),
                _ => {}
            }
        }
    }
    out
}

#[test]
fn an_upload_slot_held_by_a_peer_that_asks_for_nothing_goes_to_one_that_waits() {
    use shoal_wire::{Message, Reserved};

    let mut swarm = one_slot_seed();
    let (a, b) = (PeerKey(1), PeerKey(2));
    let at = Duration::from_millis;
    for key in [a, b] {
        swarm.handle_connected(at(0), key, Reserved::shoal(true));
        swarm.handle_message(at(0), key, Message::Interested);
    }
    assert_eq!(chokes(&mut swarm), [(a, true)], "one slot, first come");
    // `a` asks for a block at 600 ms, then nothing: it keeps its slot for a second after that.
    let request = Message::Request {
        piece: 0,
        offset: 0,
        len: 16 * 1024,
    };
    swarm.handle_message(at(600), a, request);
    for ms in [700, 1200, 1599] {
        swarm.handle_timeout(at(ms));
        assert_eq!(chokes(&mut swarm), [], "at {ms} ms");
    }
    assert_eq!(
        swarm.poll_timeout(),
        at(1600),
        "wakes when `a` has been idle for 1 s"
    );
    swarm.handle_timeout(at(1600));
    assert_eq!(chokes(&mut swarm), [(a, false), (b, true)]);
    swarm.check_invariants().unwrap();
}

/// A bitfield of `n` pieces holding the first `pieces`.
fn first_pieces(n: u32, pieces: u32) -> Bitfield {
    let mut bits = Bitfield::new(n);
    for p in 0..pieces {
        bits.insert(p);
    }
    bits
}

#[test]
fn a_free_upload_slot_goes_to_the_waiting_peer_furthest_behind() {
    use shoal_wire::{Message, Reserved};

    // 16 pieces: eighths of two pieces each.
    let mut swarm = one_slot_seed();
    let n = swarm.have().len();
    let at = Duration::from_millis;
    let unchoked = |swarm: &mut shoal_swarm::Swarm| -> Vec<PeerKey> {
        chokes(swarm)
            .into_iter()
            .filter_map(|(peer, unchoke)| unchoke.then_some(peer))
            .collect()
    };
    let holds = |pieces: u32| first_pieces(n, pieces);
    // `holder` takes the slot; `ahead` (half the torrent) waits from 1 ms, `behind` (one piece:
    // the same first eighth as an empty peer) from 2 ms, `level` (two pieces, the second
    // eighth) from 3 ms.
    let (holder, ahead, behind, level) = (PeerKey(1), PeerKey(2), PeerKey(3), PeerKey(4));
    for (ms, key, pieces) in [(0, holder, 0), (1, ahead, 8), (2, behind, 1), (3, level, 2)] {
        swarm.handle_connected(at(ms), key, Reserved::shoal(true));
        swarm.handle_message(at(ms), key, Message::Bitfield(holds(pieces).as_bytes()));
        swarm.handle_message(at(ms), key, Message::Interested);
    }
    assert_eq!(unchoked(&mut swarm), [holder]);
    // The holder wants nothing more: its slot goes to the waiting peer furthest behind, though
    // `ahead` has waited longer.
    swarm.handle_message(at(100), holder, Message::NotInterested);
    assert_eq!(unchoked(&mut swarm), [behind]);
    swarm.handle_message(at(200), behind, Message::NotInterested);
    assert_eq!(unchoked(&mut swarm), [level]);
    swarm.handle_message(at(300), level, Message::NotInterested);
    assert_eq!(unchoked(&mut swarm), [ahead]);
    swarm.check_invariants().unwrap();
}

#[test]
fn at_a_rotation_a_slot_passes_only_to_a_peer_no_further_along() {
    use shoal_wire::{Message, Reserved};

    // 16 pieces, one slot, turns of 10 s (the default).
    let mut swarm = one_slot_seed();
    let n = swarm.have().len();
    let at = Duration::from_millis;
    let (behind, ahead, empty) = (PeerKey(1), PeerKey(2), PeerKey(3));
    let join = |swarm: &mut shoal_swarm::Swarm, ms: u64, key: PeerKey, pieces: u32| {
        swarm.handle_connected(at(ms), key, Reserved::shoal(true));
        let bits = first_pieces(n, pieces);
        swarm.handle_message(at(ms), key, Message::Bitfield(bits.as_bytes()));
        swarm.handle_message(at(ms), key, Message::Interested);
    };
    join(&mut swarm, 0, behind, 1);
    join(&mut swarm, 1, ahead, 8);
    assert_eq!(chokes(&mut swarm), [(behind, true)]);
    // `behind` keeps asking (it is never idle); `empty` (no pieces) starts waiting at 10.5 s.
    for ms in (500..=20_000).step_by(500) {
        let request = Message::Request {
            piece: 15,
            offset: 0,
            len: 16 * 1024,
        };
        swarm.handle_message(at(ms), behind, request);
        if ms == 10_500 {
            join(&mut swarm, ms, empty, 0);
        }
        swarm.handle_timeout(at(ms));
        // At 10 s the turn is over, but the only peer waiting, `ahead`, is further along: the
        // slot stays. At 20 s `empty` is no further along than `behind` and takes it.
        let expected: &[(PeerKey, bool)] = if ms == 20_000 {
            &[(behind, false), (empty, true)]
        } else {
            &[]
        };
        assert_eq!(chokes(&mut swarm), expected, "at {ms} ms");
    }
    swarm.check_invariants().unwrap();
}

/// What `swarm` sent since last asked, one line per message: `(peer, "interested")`,
/// `(peer, "request 0+16384")` and so on (requests show piece and offset).
fn sent(swarm: &mut shoal_swarm::Swarm) -> Vec<(PeerKey, String)> {
    use shoal_wire::{DEFAULT_MAX_FRAME, Message, decode_frame};

    let mut out = Vec::new();
    while let Some(command) = swarm.poll_command() {
        let shoal_swarm::Command::Send { peer, frame } = command else {
            continue;
        };
        let mut rest = &frame[..];
        while let Some((message, used)) = decode_frame(rest, DEFAULT_MAX_FRAME).unwrap() {
            let line = match message {
                Message::Interested => "interested".to_owned(),
                Message::NotInterested => "not interested".to_owned(),
                Message::Request { piece, offset, .. } => format!("request {piece}+{offset}"),
                other => format!("{other:?}"),
            };
            out.push((peer, line));
            rest = &rest[used..];
        }
    }
    out
}

/// Messages to `peer` among `lines`.
fn to_peer(lines: &[(PeerKey, String)], peer: PeerKey) -> Vec<String> {
    lines
        .iter()
        .filter(|(p, _)| *p == peer)
        .map(|(_, l)| l.clone())
        .collect()
}

/// A downloader of two pieces of four blocks, driven by hand: `a` (key 1) and `b` (key 2) have
/// piece 0, `c` (key 3) has piece 1 and chokes us. `a` unchokes us and is asked for all of
/// piece 0; then `b` unchokes us, with nothing left to ask of it.
fn starved_of_b() -> shoal_swarm::Swarm {
    use shoal_metainfo::{Geometry, PieceLength};
    use shoal_wire::{Message, Reserved};

    let geometry = Geometry::new(PieceLength::new_v2(64 * 1024).unwrap(), [128 * 1024]).unwrap();
    let n = geometry.piece_count();
    let mut swarm = shoal_swarm::Swarm::new(config(1), geometry, Bitfield::new(n), None, true);
    let at = Duration::from_millis;
    let (a, b, c) = (PeerKey(1), PeerKey(2), PeerKey(3));
    for (key, piece) in [(a, 0), (b, 0), (c, 1)] {
        swarm.handle_connected(at(0), key, Reserved::shoal(true));
        let mut bits = Bitfield::new(n);
        bits.insert(piece);
        swarm.handle_message(at(0), key, Message::Bitfield(bits.as_bytes()));
    }
    // Each peer gets our handshake messages, then `interested`.
    let opening = sent(&mut swarm);
    for key in [a, b, c] {
        assert_eq!(to_peer(&opening, key).last().unwrap(), "interested");
    }
    swarm.handle_message(at(1), a, Message::Unchoke);
    let requests = sent(&mut swarm);
    assert_eq!(
        to_peer(&requests, a),
        [
            "request 0+0",
            "request 0+16384",
            "request 0+32768",
            "request 0+49152"
        ]
    );
    assert_eq!(requests.len(), 4);
    // All `b` has is already asked of `a`: its upload slot is better spent on someone else.
    swarm.handle_message(at(2), b, Message::Unchoke);
    assert_eq!(sent(&mut swarm), [(b, "not interested".to_owned())]);
    swarm.check_invariants().unwrap();
    swarm
}

#[test]
fn a_peer_with_nothing_left_to_ask_for_is_told_not_interested_until_a_block_frees_up() {
    use shoal_wire::Message;

    let mut swarm = starved_of_b();
    let (a, b) = (PeerKey(1), PeerKey(2));
    // `a` will not send one block after all: `b` is worth asking again, and is asked for it.
    let reject = Message::Reject {
        piece: 0,
        offset: 16384,
        len: 16384,
    };
    swarm.handle_message(Duration::from_millis(3), a, reject);
    let lines = sent(&mut swarm);
    assert_eq!(to_peer(&lines, b), ["interested", "request 0+16384"]);
    assert_eq!(lines.len(), 2);
    swarm.check_invariants().unwrap();
}

#[test]
fn a_starved_peer_is_wanted_again_in_endgame() {
    use shoal_wire::Message;

    let mut swarm = starved_of_b();
    let (b, c) = (PeerKey(2), PeerKey(3));
    // `c` unchokes us and is asked for piece 1: every block is now asked for, and `b` may be
    // asked for piece 0's a second time (whoever answers first wins).
    swarm.handle_message(Duration::from_millis(3), c, Message::Unchoke);
    let lines = sent(&mut swarm);
    assert_eq!(to_peer(&lines, c).len(), 4, "piece 1 goes to `c`");
    assert_eq!(
        to_peer(&lines, b),
        [
            "interested",
            "request 0+0",
            "request 0+16384",
            "request 0+32768",
            "request 0+49152"
        ]
    );
    swarm.check_invariants().unwrap();
}

#[test]
fn a_bitfield_sent_late_is_taken_as_the_peers_state_however_often() {
    use shoal_wire::Message;

    // aria2 sends a bitfield instead of many `have`s whenever it verified many pieces at once.
    let mut swarm = starved_of_b();
    let b = PeerKey(2);
    let mut both = Bitfield::new(2);
    both.insert(0);
    both.insert(1);
    for n in 0..30 {
        swarm.handle_message(
            Duration::from_millis(10 + n),
            b,
            Message::Bitfield(both.as_bytes()),
        );
        swarm.check_invariants().unwrap();
    }
    let lines = sent(&mut swarm);
    // `b` now has piece 1, which nobody was asked for: we want `b` again and ask it for piece
    // 1; with every block asked for, endgame asks it for piece 0's too.
    assert_eq!(
        to_peer(&lines, b),
        [
            "interested",
            "request 1+0",
            "request 1+16384",
            "request 1+32768",
            "request 1+49152",
            "request 0+0",
            "request 0+16384",
            "request 0+32768",
            "request 0+49152"
        ]
    );
    assert_eq!(swarm.peer_count(), 3, "nobody was dropped");
}
