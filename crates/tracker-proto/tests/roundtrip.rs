//! Round-trip properties: what one side writes, the other side reads back unchanged.
//! `from_query(query(req)) == req`, `parse(encode(resp)) == resp`, for announces and scrapes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::collections::BTreeMap;

use proptest::prelude::*;
use shoal_tracker_proto::{
    AnnounceReply, AnnounceRequest, AnnounceResponse, Event, ScrapeReply, ScrapeRequest,
    ScrapeResponse, ScrapeStats,
};

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        // IPv4-mapped IPv6 addresses print as `::ffff:a.b.c.d` and must stay IPv6.
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

fn event() -> impl Strategy<Value = Option<Event>> {
    prop_oneof![
        Just(None),
        Just(Some(Event::Started)),
        Just(Some(Event::Completed)),
        Just(Some(Event::Stopped)),
    ]
}

prop_compose! {
    fn request()(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        port in any::<u16>(),
        (uploaded, downloaded, left) in any::<(u64, u64, u64)>(),
        event in event(),
        compact in any::<bool>(),
        numwant in any::<Option<u32>>(),
        key in any::<Option<u32>>(),
        ip in proptest::option::of(ip()),
        no_peer_id in any::<bool>(),
        tracker_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        site in proptest::option::of("[A-Za-z0-9._-]{1,63}"),
    ) -> AnnounceRequest {
        AnnounceRequest {
            info_hash, peer_id, port, uploaded, downloaded, left, event, compact, numwant, key,
            ip, no_peer_id, tracker_id, site,
        }
    }
}

prop_compose! {
    fn response()(
        interval in any::<u32>(),
        min_interval in any::<Option<u32>>(),
        complete in any::<Option<u32>>(),
        incomplete in any::<Option<u32>>(),
        peers in proptest::collection::vec((ip(), any::<u16>()), 0..50),
        warning in proptest::option::of(".{0,40}"),
        tracker_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    ) -> AnnounceResponse {
        AnnounceResponse {
            interval, min_interval, complete, incomplete,
            peers: peers.into_iter().map(|(ip, port)| SocketAddr::new(ip, port)).collect(),
            warning, tracker_id,
        }
    }
}

/// The query part of `url`, after the first `?`.
fn query_of(url: &str) -> &str {
    url.split_once('?').expect("the URL has a query").1
}

proptest! {
    #[test]
    fn announce_request_round_trips(req in request()) {
        prop_assert_eq!(AnnounceRequest::from_query(&req.query()).unwrap(), req.clone());
        // Through a URL that already has a query (a passkey) and a fragment: the passkey is an
        // unknown parameter, and the fragment must not swallow the query.
        let url = req.url("http://tracker.example:6969/announce?passkey=s3cr3t#top");
        prop_assert!(url.ends_with("#top"));
        let query = query_of(&url).strip_suffix("#top").unwrap();
        prop_assert_eq!(AnnounceRequest::from_query(query).unwrap(), req);
    }

    #[test]
    fn announce_query_is_plain_ascii(req in request()) {
        let query = req.query();
        prop_assert!(query.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%&=".contains(&b)));
    }

    #[test]
    fn announce_response_round_trips_as_dictionaries(resp in response()) {
        let reply = AnnounceReply::Ok(resp);
        prop_assert_eq!(AnnounceReply::parse(&reply.encode(false)).unwrap(), reply);
    }

    #[test]
    fn announce_response_round_trips_compact_ipv4_first(resp in response()) {
        let body = resp.encode(true);
        // Compact peers travel in two strings: IPv4 in `peers`, IPv6 in `peers6`.
        let (mut expected, v6): (Vec<_>, Vec<_>) = resp.peers.iter().partition(|p| p.is_ipv4());
        expected.extend(v6);
        let want = AnnounceReply::Ok(AnnounceResponse { peers: expected, ..resp });
        prop_assert_eq!(AnnounceReply::parse(&body).unwrap(), want);
    }

    #[test]
    fn failure_round_trips(reason in ".{0,200}", compact in any::<bool>()) {
        let reply = AnnounceReply::Failure(reason.clone());
        prop_assert_eq!(AnnounceReply::parse(&reply.encode(compact)).unwrap(), reply);
        let reply = ScrapeReply::Failure(reason);
        prop_assert_eq!(ScrapeReply::parse(&reply.encode()).unwrap(), reply);
    }

    #[test]
    fn scrape_request_round_trips(info_hashes in proptest::collection::vec(any::<[u8; 20]>(), 0..20)) {
        let req = ScrapeRequest { info_hashes };
        prop_assert_eq!(ScrapeRequest::from_query(&req.query()).unwrap(), req.clone());
        let url = req.url("http://tracker.example/scrape?passkey=p");
        prop_assert_eq!(ScrapeRequest::from_query(query_of(&url)).unwrap(), req);
    }

    #[test]
    fn scrape_response_round_trips(
        files in proptest::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..20),
    ) {
        let files: BTreeMap<_, _> = files
            .into_iter()
            .map(|(hash, (complete, downloaded, incomplete))| {
                (hash, ScrapeStats { complete, downloaded, incomplete })
            })
            .collect();
        let reply = ScrapeReply::Ok(ScrapeResponse { files });
        prop_assert_eq!(ScrapeReply::parse(&reply.encode()).unwrap(), reply);
    }
}
