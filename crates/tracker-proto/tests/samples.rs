//! Real-world shaped requests and responses: what libtorrent, aria2, Go clients and opentracker
//! actually put on the wire, and the exact bytes and URLs Shoal writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use shoal_tracker_proto::{
    AnnounceReply, AnnounceRequest, AnnounceResponse, Event, ScrapeReply, ScrapeRequest,
    ScrapeResponse, ScrapeStats, scrape_url,
};

/// Bytes that exercise both escaped and literal (unreserved) characters.
const INFO_HASH: [u8; 20] = *b"\x124Vx\x9a\xbc\xde\xf1\x23Eg\x89\xab\xcd\xef\x124Vx\x9a";
const INFO_HASH_ENCODED: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn libtorrent_request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: INFO_HASH,
        peer_id: *b"-LT2110-abcdefghijkl",
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1_048_576,
        event: Some(Event::Started),
        compact: true,
        numwant: Some(200),
        key: Some(0x5E3F_B2A9),
        ip: None,
        no_peer_id: true,
        tracker_id: None,
        site: None,
    }
}

#[test]
fn url_is_byte_exact() {
    let url = libtorrent_request().url("http://tracker.example:6969/announce");
    assert_eq!(
        url,
        format!(
            "http://tracker.example:6969/announce?info_hash={INFO_HASH_ENCODED}\
             &peer_id=-LT2110-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=1048576\
             &event=started&key=5E3FB2A9&numwant=200&compact=1&no_peer_id=1"
        )
    );
}

#[test]
fn url_joins_an_existing_query_and_keeps_the_fragment() {
    let req = AnnounceRequest {
        event: None,
        numwant: None,
        key: None,
        no_peer_id: false,
        compact: false,
        ..libtorrent_request()
    };
    let tail = format!(
        "info_hash={INFO_HASH_ENCODED}&peer_id=-LT2110-abcdefghijkl&port=6881&uploaded=0\
         &downloaded=0&left=1048576&compact=0"
    );
    for (announce, want) in [
        ("http://t/announce", format!("http://t/announce?{tail}")),
        (
            "http://t/announce?pk=1",
            format!("http://t/announce?pk=1&{tail}"),
        ),
        ("http://t/announce?", format!("http://t/announce?{tail}")),
        (
            "http://t/announce?pk=1&",
            format!("http://t/announce?pk=1&{tail}"),
        ),
        ("http://t/announce#x", format!("http://t/announce?{tail}#x")),
    ] {
        assert_eq!(req.url(announce), want, "{announce}");
    }
}

#[test]
fn url_writes_ip_and_tracker_id_encoded() {
    let req = AnnounceRequest {
        ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        tracker_id: Some(b"id 1".to_vec()),
        site: None,
        ..libtorrent_request()
    };
    assert!(req.query().ends_with("&ip=%3A%3A1&trackerid=id%201"));
    assert_eq!(AnnounceRequest::from_query(&req.query()).unwrap(), req);
}

#[test]
fn reads_a_libtorrent_announce() {
    // libtorrent 2.x's parameter order, with the extra parameters it sends.
    let query = format!(
        "info_hash={INFO_HASH_ENCODED}&peer_id=-LT2110-abcdefghijkl&port=6881&uploaded=0\
         &downloaded=0&left=1048576&corrupt=0&key=5e3fb2a9&event=started&numwant=200&compact=1\
         &no_peer_id=1&supportcrypto=1&redundant=0"
    );
    assert_eq!(
        AnnounceRequest::from_query(&query).unwrap(),
        libtorrent_request()
    );
}

#[test]
fn reads_an_aria2_announce_with_a_binary_key() {
    // aria2 sends the last 8 bytes of its peer id as `key`: not a number, so it reads as absent.
    let query = format!(
        "info_hash={INFO_HASH_ENCODED}&peer_id=A2-1-36-0-%8F%D2%E1%8A%F7%3B%C1%99%E0%F1\
         &uploaded=0&downloaded=0&left=100&compact=1&key=%E1%8A%F7%3B%C1%99%E0%F1&numwant=50\
         &no_peer_id=1&port=6881&event=started&supportcrypto=1"
    );
    let req = AnnounceRequest::from_query(&query).unwrap();
    assert_eq!(req.key, None);
    assert_eq!(
        req.peer_id,
        *b"A2-1-36-0-\x8f\xd2\xe1\x8a\xf7\x3b\xc1\x99\xe0\xf1"
    );
    assert_eq!((req.port, req.left, req.numwant), (6881, 100, Some(50)));
}

#[test]
fn reads_a_site_when_it_is_a_label_value_and_ignores_it_otherwise() {
    let base = format!(
        "info_hash={INFO_HASH_ENCODED}&peer_id=-SH0100-abcdefghijkl&port=6881&uploaded=0\
         &downloaded=0&left=1"
    );
    let site = |value: &str| {
        AnnounceRequest::from_query(&format!("{base}&shoal_site={value}"))
            .unwrap()
            .site
    };
    assert_eq!(site("eu-west.1_a"), Some("eu-west.1_a".to_owned()));
    assert_eq!(site(""), None);
    assert_eq!(site("a%20b"), None);
    assert_eq!(site("%FF"), None);
    assert_eq!(site(&"x".repeat(64)), None);
    assert_eq!(AnnounceRequest::from_query(&base).unwrap().site, None);
    let twice = AnnounceRequest::from_query(&format!("{base}&shoal_site=a&shoal_site=b"));
    assert!(twice.is_err(), "{twice:?}");
}

#[test]
fn reads_form_encoded_spaces_and_lowercase_escapes() {
    // Go's url.QueryEscape writes the byte 0x20 as `+`; `%2B` is a literal `+`.
    let query = "info_hash=++++++++++++++++++%2b%2B&peer_id=%2d%2D------------------\
                 &port=1&uploaded=0&downloaded=0&left=0&event=&ip=10.0.0.1";
    let req = AnnounceRequest::from_query(query).unwrap();
    assert_eq!(req.info_hash, *b"                  ++");
    assert_eq!(req.peer_id, [b'-'; 20]);
    assert_eq!(req.event, None);
    assert!(!req.compact);
    assert_eq!(req.ip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
}

#[test]
fn reads_every_event() {
    let base = format!(
        "info_hash={INFO_HASH_ENCODED}&peer_id=-LT2110-abcdefghijkl&port=1&uploaded=0\
         &downloaded=0&left=0"
    );
    for (value, want) in [
        ("started", Some(Event::Started)),
        ("completed", Some(Event::Completed)),
        ("stopped", Some(Event::Stopped)),
        ("", None),
        ("empty", None),
        ("paused", None),
    ] {
        let req = AnnounceRequest::from_query(&format!("{base}&event={value}")).unwrap();
        assert_eq!(req.event, want, "event={value}");
    }
}

#[test]
fn reads_an_opentracker_compact_reply() {
    let body = b"d8:completei1e10:incompletei0e8:intervali1800e12:min intervali900e\
                 5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
    let want = AnnounceResponse {
        interval: 1800,
        min_interval: Some(900),
        complete: Some(1),
        incomplete: Some(0),
        peers: vec![v4(127, 0, 0, 1, 6881)],
        warning: None,
        tracker_id: None,
    };
    let reply = AnnounceReply::parse(body).unwrap();
    assert_eq!(reply, AnnounceReply::Ok(want.clone()));
    // And Shoal writes the same bytes.
    assert_eq!(want.encode(true), body);
}

#[test]
fn reads_a_failure_reply() {
    let body = b"d14:failure reason63:Requested download is not authorized for use with this \
                 tracker.e";
    let reason = "Requested download is not authorized for use with this tracker.";
    assert_eq!(
        AnnounceReply::parse(body).unwrap(),
        AnnounceReply::Failure(reason.to_owned())
    );
    assert_eq!(AnnounceReply::Failure(reason.to_owned()).encode(true), body);
    // BEP 31 `retry in` and other keys beside it change nothing.
    assert_eq!(
        AnnounceReply::parse(b"d14:failure reason3:no!8:retry in5:nevere").unwrap(),
        AnnounceReply::Failure("no!".to_owned())
    );
    // The reason is text for a person: a stray byte does not hide the refusal.
    assert_eq!(
        AnnounceReply::parse(b"d14:failure reason3:n\xffoe").unwrap(),
        AnnounceReply::Failure("n\u{fffd}o".to_owned())
    );
}

#[test]
fn reads_a_dictionary_peers_reply() {
    let body = b"d8:intervali1800e5:peersl\
                 d2:ip8:10.0.0.17:peer id20:-TR4050-abcdefghijkl4:porti51413ee\
                 d2:ip11:2001:db8::14:porti6881ee\
                 ee";
    let AnnounceReply::Ok(resp) = AnnounceReply::parse(body).unwrap() else {
        panic!("not a failure");
    };
    assert_eq!(resp.interval, 1800);
    assert_eq!(
        resp.peers,
        vec![
            v4(10, 0, 0, 1, 51413),
            SocketAddr::new("2001:db8::1".parse().unwrap(), 6881),
        ]
    );
    assert_eq!(
        (resp.complete, resp.incomplete, resp.min_interval),
        (None, None, None)
    );
}

#[test]
fn reads_a_peers6_reply() {
    let mut body = b"d8:intervali60e5:peers0:6:peers618:".to_vec();
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&[0x1a, 0xe1]);
    body.push(b'e');
    let AnnounceReply::Ok(resp) = AnnounceReply::parse(&body).unwrap() else {
        panic!("not a failure");
    };
    assert_eq!(
        resp.peers,
        vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 6881)]
    );
}

#[test]
fn reads_a_reply_without_peers_and_with_extras() {
    let body = b"d8:intervali30e10:tracker id3:abc15:warning message4:slowe";
    let want = AnnounceResponse {
        interval: 30,
        min_interval: None,
        complete: None,
        incomplete: None,
        peers: Vec::new(),
        warning: Some("slow".to_owned()),
        tracker_id: Some(b"abc".to_vec()),
    };
    assert_eq!(AnnounceReply::parse(body).unwrap(), AnnounceReply::Ok(want));
}

#[test]
fn writes_dictionary_peers_in_order() {
    let resp = AnnounceResponse {
        interval: 1800,
        min_interval: None,
        complete: None,
        incomplete: None,
        peers: vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1),
            v4(10, 0, 0, 1, 2),
        ],
        warning: None,
        tracker_id: None,
    };
    assert_eq!(
        resp.encode(false),
        b"d8:intervali1800e5:peersld2:ip3:::14:porti1eed2:ip8:10.0.0.14:porti2eeee"
    );
}

#[test]
fn scrape_url_follows_bep_48() {
    for (announce, want) in [
        (
            "http://example.com/announce",
            Some("http://example.com/scrape"),
        ),
        (
            "http://example.com/x/announce",
            Some("http://example.com/x/scrape"),
        ),
        (
            "http://example.com/announce.php",
            Some("http://example.com/scrape.php"),
        ),
        (
            "http://example.com/a/p4ss/announce",
            Some("http://example.com/a/p4ss/scrape"),
        ),
        (
            "http://example.com/announce?x2%0644",
            Some("http://example.com/scrape?x2%0644"),
        ),
        (
            "http://example.com/announce?x=2/4",
            Some("http://example.com/scrape?x=2/4"),
        ),
        ("http://example.com/x%064announce", None),
        ("http://example.com/a", None),
        ("http://example.com/announce/x", None),
        ("http://example.com", None),
        ("http://announce.example.com", None),
        ("http://announce.example.com/", None),
        (
            "udp://tracker.example:1337/announce",
            Some("udp://tracker.example:1337/scrape"),
        ),
    ] {
        assert_eq!(scrape_url(announce).as_deref(), want, "{announce}");
    }
}

#[test]
fn scrape_request_reads_repeated_info_hashes() {
    let query = format!(
        "info_hash={INFO_HASH_ENCODED}&passkey=x&info_hash={}",
        "%00".repeat(20)
    );
    assert_eq!(
        ScrapeRequest::from_query(&query).unwrap(),
        ScrapeRequest {
            info_hashes: vec![INFO_HASH, [0; 20]]
        }
    );
    assert_eq!(
        ScrapeRequest::from_query("").unwrap(),
        ScrapeRequest::default()
    );
    assert_eq!(
        ScrapeRequest::default().url("http://t/scrape"),
        "http://t/scrape"
    );
}

#[test]
fn reads_an_opentracker_scrape_reply() {
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&INFO_HASH);
    body.extend_from_slice(b"d8:completei1e10:downloadedi3e10:incompletei2eeee");
    let want = ScrapeResponse {
        files: [(
            INFO_HASH,
            ScrapeStats {
                complete: 1,
                downloaded: 3,
                incomplete: 2,
            },
        )]
        .into(),
    };
    assert_eq!(
        ScrapeReply::parse(&body).unwrap(),
        ScrapeReply::Ok(want.clone())
    );
    assert_eq!(want.encode(), body);
    // BEP 48's optional `name`, and opentracker's `flags`, are ignored.
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&INFO_HASH);
    body.extend_from_slice(
        b"d8:completei1e10:downloadedi3e10:incompletei2e4:name1:xee5:flagsd20:min_request_intervali60eee",
    );
    assert_eq!(ScrapeReply::parse(&body).unwrap(), ScrapeReply::Ok(want));
    assert_eq!(
        ScrapeReply::parse(b"d5:filesdee").unwrap(),
        ScrapeReply::Ok(ScrapeResponse::default())
    );
}
