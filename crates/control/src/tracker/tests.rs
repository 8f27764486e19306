//! Tests of the swarm table: announces, refusals, scrapes, expiry, and a property test that
//! checks the table's invariants and every reply after random sequences of announces.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const HASH: [u8; 20] = [0xab; 20];

fn request(peer: u8, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: HASH,
        peer_id: [peer; 20],
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left,
        event: None,
        compact: true,
        numwant: None,
        key: None,
        ip: None,
        no_peer_id: false,
        tracker_id: None,
        site: None,
    }
}

fn v4(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

fn ok(reply: AnnounceReply) -> AnnounceResponse {
    match reply {
        AnnounceReply::Ok(r) => r,
        AnnounceReply::Failure(reason) => panic!("refused: {reason}"),
    }
}

fn refused(reply: AnnounceReply) -> String {
    match reply {
        AnnounceReply::Failure(reason) => reason,
        AnnounceReply::Ok(r) => panic!("accepted: {r:?}"),
    }
}

#[test]
fn peers_find_each_other_but_not_themselves() {
    let mut t = Tracker::default();
    let first = ok(t.announce(0, &request(1, 100), v4(1), 1));
    assert!(first.peers.is_empty());
    assert_eq!((first.complete, first.incomplete), (Some(0), Some(1)));
    assert_eq!((first.interval, first.min_interval), (60, Some(30)));
    let second = ok(t.announce(0, &request(2, 0), v4(2), 1));
    assert_eq!(second.peers, [SocketAddr::new(v4(1), 6881)]);
    assert_eq!((second.complete, second.incomplete), (Some(1), Some(1)));
    let again = ok(t.announce(1, &request(1, 100), v4(1), 2));
    assert_eq!(again.peers, [SocketAddr::new(v4(2), 6881)]);
    t.check_invariants();
    assert_eq!(
        t.stats(),
        TrackerStats {
            swarms: 1,
            peers: 2,
            seeds: 1
        }
    );
}

#[test]
fn seeds_get_only_leechers() {
    let mut t = Tracker::default();
    for n in 0..10 {
        t.announce(0, &request(n, 0), v4(n), 0);
    }
    t.announce(0, &request(10, 5), v4(10), 0);
    let seed = ok(t.announce(0, &request(0, 0), v4(0), 0));
    assert_eq!(seed.peers, [SocketAddr::new(v4(10), 6881)]);
    let leecher = ok(t.announce(0, &request(10, 5), v4(10), 0));
    assert_eq!(leecher.peers.len(), 10);
}

#[test]
fn numwant_is_honoured_and_capped() {
    let config = TrackerConfig {
        max_numwant: 20,
        default_numwant: 5,
        ..TrackerConfig::default()
    };
    let mut t = Tracker::new(config);
    for n in 0..50 {
        t.announce(0, &request(n, 1), v4(n), 0);
    }
    let mut r = request(200, 1);
    assert_eq!(ok(t.announce(0, &r, v4(200), 0)).peers.len(), 5);
    r.numwant = Some(12);
    assert_eq!(ok(t.announce(0, &r, v4(200), 0)).peers.len(), 12);
    r.numwant = Some(1000);
    assert_eq!(ok(t.announce(0, &r, v4(200), 0)).peers.len(), 20);
    r.numwant = Some(0);
    assert!(ok(t.announce(0, &r, v4(200), 0)).peers.is_empty());
}

#[test]
fn picks_are_random_and_reproducible() {
    let mut t = Tracker::default();
    for n in 0..=250 {
        t.announce(0, &request(n, 1), IpAddr::V4(Ipv4Addr::new(10, 1, 0, n)), 0);
    }
    let me = request(0, 1);
    let source = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0));
    let a = ok(t.announce(0, &me, source, 7)).peers;
    let b = ok(t.announce(0, &me, source, 7)).peers;
    assert_eq!(a, b, "same seed, same pick");
    let mut seen = BTreeSet::new();
    for seed in 0..100 {
        seen.extend(ok(t.announce(0, &me, source, seed)).peers);
    }
    assert_eq!(
        seen.len(),
        250,
        "every other peer comes up over 100 picks of 50"
    );
}

#[test]
fn stopped_removes_and_completed_counts() {
    let mut t = Tracker::default();
    t.announce(0, &request(1, 10), v4(1), 0);
    t.announce(0, &request(2, 10), v4(2), 0);
    let mut done = request(1, 0);
    done.event = Some(Event::Completed);
    t.announce(1, &done, v4(1), 0);
    let scrape = ScrapeRequest {
        info_hashes: vec![HASH, [0; 20]],
    };
    let ScrapeReply::Ok(s) = t.scrape(&scrape) else {
        panic!("scrape refused")
    };
    assert_eq!(
        s.files.get(&HASH),
        Some(&ScrapeStats {
            complete: 1,
            downloaded: 1,
            incomplete: 1
        })
    );
    assert!(
        !s.files.contains_key(&[0; 20]),
        "unknown torrents are left out"
    );

    let mut stop = request(2, 10);
    stop.event = Some(Event::Stopped);
    let reply = ok(t.announce(2, &stop, v4(2), 0));
    assert!(reply.peers.is_empty());
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(0)));
    stop.peer_id = [1; 20];
    t.announce(2, &stop, v4(1), 0);
    t.check_invariants();
    assert_eq!(
        t.stats(),
        TrackerStats::default(),
        "the empty swarm is dropped"
    );
    // Stopping again, or in an unknown swarm, is harmless.
    ok(t.announce(2, &stop, v4(1), 0));
    assert!(matches!(
        t.scrape(&ScrapeRequest::default()),
        ScrapeReply::Failure(_)
    ));
}

#[test]
fn refusals_say_why() {
    let mut t = Tracker::new(TrackerConfig {
        max_swarms: 1,
        max_peers_per_swarm: 2,
        ..TrackerConfig::default()
    });
    let mut r = request(1, 1);
    r.port = 0;
    assert!(refused(t.announce(0, &r, v4(1), 0)).contains("port 0"));
    t.announce(0, &request(1, 1), v4(1), 0);
    t.announce(0, &request(2, 1), v4(2), 0);
    assert!(refused(t.announce(0, &request(3, 1), v4(3), 0)).contains("swarm is full"));
    // Known peers still get through.
    ok(t.announce(0, &request(2, 1), v4(2), 0));
    let mut other = request(1, 1);
    other.info_hash = [1; 20];
    assert!(refused(t.announce(0, &other, v4(1), 0)).contains("tracker is full"));
    t.check_invariants();

    let mut t = Tracker::new(TrackerConfig {
        max_peers_per_swarm: 0,
        ..TrackerConfig::default()
    });
    refused(t.announce(0, &request(1, 1), v4(1), 0));
    t.check_invariants();
    assert_eq!(t.stats().swarms, 0, "no empty swarm is left behind");
}

#[test]
fn allow_list() {
    let mut t = Tracker::default();
    t.announce(0, &request(1, 1), v4(1), 0);
    let mut other = request(1, 1);
    other.info_hash = [2; 20];
    t.announce(0, &other, v4(1), 0);
    t.set_allowed(Some(BTreeSet::from([HASH])));
    t.check_invariants();
    assert_eq!(t.stats().swarms, 1, "the unlisted swarm is forgotten");
    assert!(refused(t.announce(0, &other, v4(1), 0)).contains("unknown info-hash"));
    t.allow([2; 20]);
    ok(t.announce(0, &other, v4(1), 0));
    t.disallow(&HASH);
    t.check_invariants();
    assert_eq!(t.stats().peers, 1);
    refused(t.announce(0, &request(1, 1), v4(1), 0));
    // Allowed torrents without peers scrape as zeros.
    t.allow([3; 20]);
    let ScrapeReply::Ok(s) = t.scrape(&ScrapeRequest {
        info_hashes: vec![[3; 20]],
    }) else {
        panic!("scrape refused")
    };
    assert_eq!(s.files.get(&[3; 20]), Some(&ScrapeStats::default()));
    t.set_allowed(None);
    ok(t.announce(0, &request(1, 1), v4(1), 0));
}

#[test]
fn addresses() {
    let mut t = Tracker::default();
    let mut claims = request(1, 1);
    claims.ip = Some(v4(99));
    t.announce(0, &claims, v4(1), 0);
    assert_eq!(t.swarm_peers(&HASH)[0].addr.ip(), v4(1), "ip is ignored");
    t.announce(0, &claims, IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    assert_eq!(
        t.swarm_peers(&HASH)[0].addr.ip(),
        v4(99),
        "unless from loopback"
    );

    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped());
    t.announce(0, &request(2, 1), mapped, 0);
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3));
    t.announce(0, &request(3, 1), v6, 0);
    let addrs: BTreeSet<IpAddr> = t.swarm_peers(&HASH).iter().map(|p| p.addr.ip()).collect();
    assert_eq!(addrs, BTreeSet::from([v4(99), v4(2), v6]));

    // Compact form: IPv4 in `peers`, IPv6 in `peers6`.
    let reply = t.announce(0, &request(4, 1), v4(4), 0);
    let body = reply.encode(true);
    assert!(body.windows(6).any(|w| w == b"peers6"));
    let AnnounceReply::Ok(parsed) = AnnounceReply::parse(&body).unwrap() else {
        panic!("failure")
    };
    assert_eq!(parsed.peers.len(), 3);

    let mut trusting = Tracker::new(TrackerConfig {
        trust_ip_param: true,
        ..TrackerConfig::default()
    });
    trusting.announce(0, &claims, v4(1), 0);
    assert_eq!(trusting.swarm_peers(&HASH)[0].addr.ip(), v4(99));
}

#[test]
fn expiry() {
    let mut t = Tracker::default();
    let ttl = t.config().peer_ttl_ms;
    t.announce(1_000, &request(1, 1), v4(1), 0);
    t.announce(2_000, &request(2, 1), v4(2), 0);
    let mut other = request(3, 1);
    other.info_hash = [9; 20];
    t.announce(1_000, &other, v4(3), 0);
    assert_eq!(t.expire(1_000 + ttl), 0, "silent for exactly the TTL: kept");
    assert_eq!(t.expire(1_001 + ttl), 2);
    t.check_invariants();
    assert_eq!(t.stats().swarms, 1);
    let peers = t.swarm_peers(&HASH);
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0],
        TrackedPeer {
            addr: SocketAddr::new(v4(2), 6881),
            peer_id: [2; 20],
            seed: false,
            last_seen_ms: 2_000
        }
    );
    assert!(t.swarm_peers(&[9; 20]).is_empty());
}

#[test]
fn queries() {
    let mut t = Tracker::default();
    let body = t.announce_query(0, &request(1, 1).query(), v4(1), 0);
    assert!(matches!(
        AnnounceReply::parse(&body),
        Ok(AnnounceReply::Ok(_))
    ));
    let body = t.announce_query(0, "info_hash=x", v4(1), 0);
    let Ok(AnnounceReply::Failure(reason)) = AnnounceReply::parse(&body) else {
        panic!("accepted")
    };
    assert!(reason.starts_with("bad announce: info_hash"), "{reason}");
    let scrape = ScrapeRequest {
        info_hashes: vec![HASH],
    };
    let body = t.scrape_query(&scrape.query());
    let Ok(ScrapeReply::Ok(s)) = ScrapeReply::parse(&body) else {
        panic!("refused")
    };
    assert_eq!(s.files[&HASH].incomplete, 1);
    assert!(matches!(
        ScrapeReply::parse(&t.scrape_query("info_hash=%zz")),
        Ok(ScrapeReply::Failure(_))
    ));
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    Announce {
        swarm: u8,
        peer: u8,
        left: u64,
        event: Option<Event>,
        numwant: Option<u32>,
        ipv6: bool,
        seed: u64,
        site: Option<u8>,
    },
    Advance(u64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let event = prop_oneof![
        4 => Just(None),
        1 => Just(Some(Event::Started)),
        1 => Just(Some(Event::Completed)),
        1 => Just(Some(Event::Stopped)),
    ];
    prop_oneof![
        10 => (0u8..3, 0u8..24, prop_oneof![Just(0u64), 1u64..5], event,
               prop::option::of(0u32..30), any::<bool>(), any::<u64>(), prop::option::of(0u8..3))
            .prop_map(|(swarm, peer, left, event, numwant, ipv6, seed, site)| Op::Announce {
                swarm, peer, left, event, numwant, ipv6, seed, site
            }),
        1 => (0u64..100_000).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #[test]
    fn random_runs_keep_the_invariants(ops in prop::collection::vec(op(), 1..200)) {
        let mut t = Tracker::new(TrackerConfig {
            max_swarms: 2,
            max_peers_per_swarm: 16,
            default_numwant: 8,
            ..TrackerConfig::default()
        });
        let mut now = 0;
        for op in ops {
            match op {
                Op::Announce { swarm, peer, left, event, numwant, ipv6, seed, site } => {
                    let mut r = request(peer, left);
                    r.site = site.map(|s| format!("site-{s}"));
                    r.info_hash = [swarm; 20];
                    r.event = event;
                    r.numwant = numwant;
                    let source = if ipv6 {
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(peer)))
                    } else {
                        v4(peer)
                    };
                    let me = SocketAddr::new(source, r.port);
                    if let AnnounceReply::Ok(reply) = t.announce(now, &r, source, seed) {
                        let want = numwant.unwrap_or(8) as usize;
                        prop_assert!(reply.peers.len() <= want);
                        prop_assert!(!reply.peers.contains(&me), "never the requester");
                        let distinct: BTreeSet<_> = reply.peers.iter().collect();
                        prop_assert_eq!(distinct.len(), reply.peers.len());
                        if left == 0 {
                            let listed = t.swarm_peers(&r.info_hash);
                            for addr in &reply.peers {
                                let p = listed.iter().find(|p| p.addr == *addr);
                                prop_assert!(p.is_some_and(|p| !p.seed), "seeds get leechers only");
                            }
                        }
                    }
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => {
                    t.expire(now);
                }
            }
            t.check_invariants();
        }
    }
}
