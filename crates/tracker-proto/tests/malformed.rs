//! Tables of malformed requests and responses: each gives its own typed error naming the
//! parameter or field, never a panic and never a partial result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use shoal_bencode::{DecodeError, DecodeErrorKind};
use shoal_tracker_proto::{
    AnnounceReply, AnnounceRequest, MAX_BODY_LEN, MAX_PEERS, MAX_QUERY_LEN, ScrapeReply,
    ScrapeRequest, TrackerError as E,
};

/// A valid announce query with every required parameter; cases append to it.
fn base() -> String {
    format!(
        "info_hash={}&peer_id=-SH0001-aaaaaaaaaaaa&port=6881&uploaded=0&downloaded=0&left=0",
        "%00".repeat(20)
    )
}

fn query_err(query: &str) -> E {
    match AnnounceRequest::from_query(query) {
        Ok(req) => panic!("{query:?} parsed to {req:?}, expected an error"),
        Err(e) => e,
    }
}

fn bencode(offset: usize, kind: DecodeErrorKind) -> E {
    E::Bencode(DecodeError { offset, kind })
}

#[test]
fn the_base_query_is_valid() {
    AnnounceRequest::from_query(&base()).unwrap();
}

#[test]
fn table_of_malformed_announce_queries() {
    let bad_number = |field| E::BadNumber { field };
    let cases: Vec<(String, E)> = vec![
        // Bounds.
        (
            "x".repeat(MAX_QUERY_LEN + 1),
            E::QueryTooLong {
                len: MAX_QUERY_LEN + 1,
                max: MAX_QUERY_LEN,
            },
        ),
        // Required parameters.
        (
            base().replace("port=6881&", ""),
            E::MissingParam { field: "port" },
        ),
        (
            base().replace("&uploaded=0", ""),
            E::MissingParam { field: "uploaded" },
        ),
        (
            base().replace("&downloaded=0", ""),
            E::MissingParam {
                field: "downloaded",
            },
        ),
        (
            base().replace("&left=0", ""),
            E::MissingParam { field: "left" },
        ),
        (
            base().replace("&peer_id=-SH0001-aaaaaaaaaaaa", ""),
            E::MissingParam { field: "peer_id" },
        ),
        (
            base().replace("info_hash=", "info_hash_v2="),
            E::MissingParam { field: "info_hash" },
        ),
        (String::new(), E::MissingParam { field: "info_hash" }),
        // Repeats.
        (
            format!("{}&port=6881", base()),
            E::DuplicateParam { field: "port" },
        ),
        (
            format!("{}&info_hash={}", base(), "%00".repeat(20)),
            E::DuplicateParam { field: "info_hash" },
        ),
        (
            format!("{}&event=started&event=stopped", base()),
            E::DuplicateParam { field: "event" },
        ),
        // Binary ids.
        (
            base().replace(&"%00".repeat(20), &"%00".repeat(19)),
            E::HashLength {
                field: "info_hash",
                len: 19,
            },
        ),
        (
            base().replace(&"%00".repeat(20), &"%00".repeat(21)),
            E::HashLength {
                field: "info_hash",
                len: 21,
            },
        ),
        (
            base().replace("-SH0001-aaaaaaaaaaaa", ""),
            E::HashLength {
                field: "peer_id",
                len: 0,
            },
        ),
        (
            base().replace("%00%00%00", "%zz%00"),
            E::BadEscape { field: "info_hash" },
        ),
        (
            base().replace("-SH0001-aaaaaaaaaaaa", "-SH0001-aaaaaaaaaaa%"),
            E::BadEscape { field: "peer_id" },
        ),
        (
            base().replace("-SH0001-aaaaaaaaaaaa", "-SH0001-aaaaaaaaaaa%4"),
            E::BadEscape { field: "peer_id" },
        ),
        // Numbers.
        (
            base().replace("port=6881", "port=65536"),
            bad_number("port"),
        ),
        (base().replace("port=6881", "port=-1"), bad_number("port")),
        (base().replace("port=6881", "port=+1"), bad_number("port")),
        (base().replace("port=6881", "port="), bad_number("port")),
        (base().replace("port=6881", "port"), bad_number("port")),
        (
            base().replace("port=6881", "port=6881%20"),
            bad_number("port"),
        ),
        (
            base().replace("port=6881", "port=0x1ae1"),
            bad_number("port"),
        ),
        (
            base().replace("port=6881", "port=%zz"),
            E::BadEscape { field: "port" },
        ),
        (
            base().replace("uploaded=0", "uploaded=18446744073709551616"),
            bad_number("uploaded"),
        ),
        (
            base().replace("downloaded=0", "downloaded=1e3"),
            bad_number("downloaded"),
        ),
        (base().replace("left=0", "left=1.5"), bad_number("left")),
        (format!("{}&numwant=-1", base()), bad_number("numwant")),
        (
            format!("{}&numwant=4294967296", base()),
            bad_number("numwant"),
        ),
        (format!("{}&compact=2", base()), bad_number("compact")),
        (format!("{}&compact=yes", base()), bad_number("compact")),
        (
            format!("{}&no_peer_id=true", base()),
            bad_number("no_peer_id"),
        ),
        // Words and addresses.
        (format!("{}&event=start", base()), E::BadEvent),
        (format!("{}&event=STARTED", base()), E::BadEvent),
        (
            format!("{}&event=%ZZ", base()),
            E::BadEscape { field: "event" },
        ),
        (format!("{}&ip=tracker.example", base()), E::BadIp),
        (format!("{}&ip=%5B%3A%3A1%5D", base()), E::BadIp),
        (format!("{}&ip=1.2.3.4.5", base()), E::BadIp),
        (format!("{}&ip=", base()), E::BadIp),
        (format!("{}&key=%G0", base()), E::BadEscape { field: "key" }),
        (
            format!("{}&trackerid=%", base()),
            E::BadEscape { field: "trackerid" },
        ),
    ];
    for (query, want) in cases {
        assert_eq!(query_err(&query), want, "{query:?}");
    }
}

#[test]
fn unknown_parameters_and_odd_keys_are_ignored() {
    for extra in [
        "&x=%zz",
        "&%zz=1",
        "&&",
        "&=",
        "&supportcrypto=1",
        "&info%5fhash2=1",
    ] {
        AnnounceRequest::from_query(&format!("{}{extra}", base())).unwrap();
    }
    // Keys are decoded: an escaped `info_hash` is still `info_hash`.
    let escaped = base().replace("info_hash=", "info%5Fhash=");
    assert_eq!(
        AnnounceRequest::from_query(&escaped).unwrap(),
        AnnounceRequest::from_query(&base()).unwrap()
    );
}

#[test]
fn table_of_malformed_scrape_queries() {
    let cases: Vec<(String, E)> = vec![
        (
            "info_hash=".repeat(MAX_QUERY_LEN),
            E::QueryTooLong {
                len: 10 * MAX_QUERY_LEN,
                max: MAX_QUERY_LEN,
            },
        ),
        (
            "info_hash=abc".to_owned(),
            E::HashLength {
                field: "info_hash",
                len: 3,
            },
        ),
        (
            format!("info_hash={}&info_hash=", "%00".repeat(20)),
            E::HashLength {
                field: "info_hash",
                len: 0,
            },
        ),
        (
            format!("info_hash={}%", "%00".repeat(19)),
            E::BadEscape { field: "info_hash" },
        ),
    ];
    for (query, want) in cases {
        assert_eq!(ScrapeRequest::from_query(&query), Err(want), "{query:?}");
    }
}

fn reply_err(body: &[u8]) -> E {
    match AnnounceReply::parse(body) {
        Ok(reply) => panic!(
            "{:?} parsed to {reply:?}, expected an error",
            String::from_utf8_lossy(body)
        ),
        Err(e) => e,
    }
}

#[test]
fn table_of_malformed_announce_responses() {
    let field = |f: &str| f.to_owned();
    let wrong = |f: &str, expected, found| E::WrongType {
        field: field(f),
        expected,
        found,
    };
    let cases: Vec<(&[u8], E)> = vec![
        // Not canonical bencode, or not a dictionary.
        (b"", bencode(0, DecodeErrorKind::UnexpectedEof)),
        (b"<html>", bencode(0, DecodeErrorKind::UnexpectedByte(b'<'))),
        (
            b"d8:intervali1e8:completei1ee",
            bencode(14, DecodeErrorKind::UnsortedKeys),
        ),
        (
            b"d8:intervali1ee\n",
            bencode(15, DecodeErrorKind::TrailingBytes),
        ),
        (
            b"d8:intervali1e1:xllllllllleeeeeeeeee",
            bencode(24, DecodeErrorKind::DepthLimit { max: 8 }),
        ),
        (b"le", wrong("response", "dictionary", "list")),
        (b"i1e", wrong("response", "dictionary", "integer")),
        // Top-level fields.
        (
            b"de",
            E::MissingField {
                field: field("interval"),
            },
        ),
        (
            b"d5:peers0:e",
            E::MissingField {
                field: field("interval"),
            },
        ),
        (
            b"d8:intervali-1ee",
            E::OutOfRange {
                field: field("interval"),
                value: -1,
            },
        ),
        (
            b"d8:intervali4294967296ee",
            E::OutOfRange {
                field: field("interval"),
                value: 4_294_967_296,
            },
        ),
        (
            b"d8:interval4:1800e",
            wrong("interval", "integer", "byte string"),
        ),
        (
            b"d8:intervali1e12:min intervali-5ee",
            E::OutOfRange {
                field: field("min interval"),
                value: -5,
            },
        ),
        (
            b"d8:completele8:intervali1ee",
            wrong("complete", "integer", "list"),
        ),
        (
            b"d10:incompletede8:intervali1ee",
            wrong("incomplete", "integer", "dictionary"),
        ),
        (
            b"d14:failure reasoni1ee",
            wrong("failure reason", "byte string", "integer"),
        ),
        (
            b"d8:intervali1e15:warning messagei1ee",
            wrong("warning message", "byte string", "integer"),
        ),
        (
            b"d8:intervali1e10:tracker idi1ee",
            wrong("tracker id", "byte string", "integer"),
        ),
        // Compact peers.
        (
            b"d8:intervali1e5:peers7:\x7f\0\0\x01\x1a\xe1\0e",
            E::RaggedPeers {
                field: "peers",
                len: 7,
                unit: 6,
            },
        ),
        (
            b"d8:intervali1e5:peers5:\x7f\0\0\x01\x1ae",
            E::RaggedPeers {
                field: "peers",
                len: 5,
                unit: 6,
            },
        ),
        (
            b"d8:intervali1e5:peers0:6:peers66:\x7f\0\0\x01\x1a\xe1e",
            E::RaggedPeers {
                field: "peers6",
                len: 6,
                unit: 18,
            },
        ),
        (
            b"d8:intervali1e5:peersi1ee",
            wrong("peers", "byte string or list", "integer"),
        ),
        (
            b"d8:intervali1e5:peers0:6:peers6lee",
            wrong("peers6", "byte string", "list"),
        ),
        // Dictionary peers.
        (
            b"d8:intervali1e5:peersli1eee",
            wrong("peers[0]", "dictionary", "integer"),
        ),
        (
            b"d8:intervali1e5:peersld4:porti1eeee",
            E::MissingField {
                field: field("peers[0].ip"),
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ip7:1.2.3.4eee",
            E::MissingField {
                field: field("peers[0].port"),
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ip7:1.2.3.44:porti70000eeee",
            E::OutOfRange {
                field: field("peers[0].port"),
                value: 70000,
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ip7:1.2.3.44:porti-1eeee",
            E::OutOfRange {
                field: field("peers[0].port"),
                value: -1,
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ip7:1.2.3.44:porti1eed2:ip9:host.test4:porti1eeee",
            E::BadPeerIp {
                field: field("peers[1].ip"),
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ip4:\x7f\0\0\x014:porti1eeee",
            E::BadPeerIp {
                field: field("peers[0].ip"),
            },
        ),
        (
            b"d8:intervali1e5:peersld2:ipi1e4:porti1eeee",
            wrong("peers[0].ip", "byte string", "integer"),
        ),
        (
            b"d8:intervali1e5:peersld2:ip7:1.2.3.44:port4:6881eee",
            wrong("peers[0].port", "integer", "byte string"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(reply_err(body), want, "{:?}", String::from_utf8_lossy(body));
    }
}

/// A response body listing `v4` compact IPv4 peers and `v6` compact IPv6 peers.
fn many_peers(v4: usize, v6: usize) -> Vec<u8> {
    let mut body = format!("d8:intervali1e5:peers{}:", v4 * 6).into_bytes();
    body.resize(body.len() + v4 * 6, 1);
    body.extend_from_slice(format!("6:peers6{}:", v6 * 18).as_bytes());
    body.resize(body.len() + v6 * 18, 1);
    body.push(b'e');
    body
}

#[test]
fn responses_are_bounded() {
    assert_eq!(
        reply_err(&vec![b' '; MAX_BODY_LEN + 1]),
        E::BodyTooLarge {
            len: MAX_BODY_LEN + 1,
            max: MAX_BODY_LEN,
        }
    );
    let too_many = E::TooManyPeers {
        count: MAX_PEERS + 1,
        max: MAX_PEERS,
    };
    assert_eq!(reply_err(&many_peers(MAX_PEERS + 1, 0)), too_many);
    assert_eq!(reply_err(&many_peers(MAX_PEERS - 1, 2)), too_many);
    let AnnounceReply::Ok(resp) = AnnounceReply::parse(&many_peers(MAX_PEERS - 1, 1)).unwrap()
    else {
        panic!("not a failure");
    };
    assert_eq!(resp.peers.len(), MAX_PEERS);
    assert_eq!(
        ScrapeReply::parse(&vec![b' '; MAX_BODY_LEN + 1]),
        Err(E::BodyTooLarge {
            len: MAX_BODY_LEN + 1,
            max: MAX_BODY_LEN,
        })
    );
}

#[test]
fn table_of_malformed_scrape_responses() {
    const HEX: &str = "0000000000000000000000000000000000000000";
    let field = |f: &str| f.to_owned();
    let entry = |rest: &str| {
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&[0; 20]);
        body.extend_from_slice(rest.as_bytes());
        body.extend_from_slice(b"ee");
        body
    };
    let cases: Vec<(Vec<u8>, E)> = vec![
        (
            b"de".to_vec(),
            E::MissingField {
                field: field("files"),
            },
        ),
        (
            b"d5:fileslee".to_vec(),
            E::WrongType {
                field: field("files"),
                expected: "dictionary",
                found: "list",
            },
        ),
        (b"d5:filesd3:abcdeee".to_vec(), E::ScrapeKey { len: 3 }),
        (
            entry("i1e"),
            E::WrongType {
                field: format!("files[{HEX}]"),
                expected: "dictionary",
                found: "integer",
            },
        ),
        (
            entry("d8:completei1e10:incompletei0ee"),
            E::MissingField {
                field: format!("files[{HEX}].downloaded"),
            },
        ),
        (
            entry("d8:completei-1e10:downloadedi0e10:incompletei0ee"),
            E::OutOfRange {
                field: format!("files[{HEX}].complete"),
                value: -1,
            },
        ),
        (
            entry("d8:completei0e10:downloaded1:010:incompletei0ee"),
            E::WrongType {
                field: format!("files[{HEX}].downloaded"),
                expected: "integer",
                found: "byte string",
            },
        ),
        (
            b"d5:filesd1:a1:b1:a1:bee".to_vec(),
            bencode(15, DecodeErrorKind::DuplicateKey),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            ScrapeReply::parse(&body),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn errors_name_their_field() {
    for (err, text) in [
        (
            E::MissingParam { field: "port" },
            "port: required parameter is missing",
        ),
        (
            E::HashLength {
                field: "info_hash",
                len: 19,
            },
            "info_hash: 19 bytes after decoding, expected 20",
        ),
        (
            E::MissingField {
                field: "peers[3].port".to_owned(),
            },
            "peers[3].port: required field is missing",
        ),
        (
            E::RaggedPeers {
                field: "peers6",
                len: 20,
                unit: 18,
            },
            "peers6: 20 bytes is not a whole number of 18-byte peers",
        ),
        (
            bencode(3, DecodeErrorKind::UnsortedKeys),
            "response: malformed bencode",
        ),
    ] {
        assert_eq!(err.to_string(), text);
    }
    let source = std::error::Error::source(&bencode(3, DecodeErrorKind::UnsortedKeys))
        .unwrap()
        .to_string();
    assert_eq!(
        source,
        "invalid bencode at byte 3: dictionary keys out of order"
    );
}
