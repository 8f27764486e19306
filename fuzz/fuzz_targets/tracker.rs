//! Fuzz target: the HTTP tracker codecs on arbitrary bytes: announce and scrape response
//! bodies, and, when the bytes are UTF-8, announce and scrape queries and the scrape URL rule.
//! Whatever parses must re-encode to something that parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_tracker_proto::{
    AnnounceReply, AnnounceRequest, MAX_BODY_LEN, MAX_QUERY_LEN, ScrapeReply, ScrapeRequest,
    TrackerError, scrape_url,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = AnnounceReply::parse(data) {
        let dict = reply.encode(false);
        if dict.len() > MAX_BODY_LEN {
            // Tens of thousands of IPv6 peers grow past the limit as dictionaries.
            assert!(matches!(
                AnnounceReply::parse(&dict),
                Err(TrackerError::BodyTooLarge { .. })
            ));
        } else {
            assert_eq!(
                AnnounceReply::parse(&dict).expect("our own encoding parses"),
                reply
            );
        }
        // Compact peers travel as IPv4 in `peers`, then IPv6 in `peers6`.
        let mut want = reply;
        if let AnnounceReply::Ok(resp) = &mut want {
            resp.peers.sort_by_key(|peer| peer.is_ipv6());
        }
        let compact = AnnounceReply::parse(&want.encode(true)).expect("our own encoding parses");
        assert_eq!(compact, want);
    }
    if let Ok(reply) = ScrapeReply::parse(data) {
        assert_eq!(
            ScrapeReply::parse(&reply.encode()).expect("our own encoding parses"),
            reply
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Our encoding may be longer than the input (`+` becomes `%20`), past the query limit.
        if let Ok(req) = AnnounceRequest::from_query(text) {
            let again = AnnounceRequest::from_query(&req.query());
            if req.query().len() > MAX_QUERY_LEN {
                assert!(matches!(again, Err(TrackerError::QueryTooLong { .. })));
            } else {
                assert_eq!(again.expect("our own query parses"), req);
            }
        }
        if let Ok(req) = ScrapeRequest::from_query(text) {
            let again = ScrapeRequest::from_query(&req.query());
            if req.query().len() > MAX_QUERY_LEN {
                assert!(matches!(again, Err(TrackerError::QueryTooLong { .. })));
            } else {
                assert_eq!(again.expect("our own query parses"), req);
            }
        }
        if let Some(url) = scrape_url(text) {
            assert!(url.contains("scrape"));
        }
    }
});
