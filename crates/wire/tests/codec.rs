//! Wire codec tests: every message round-trips through the framer; malformed frames give their
//! specific error; extension payloads decode what real clients send; which messages a writer may
//! send ahead of queued blocks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use proptest::prelude::*;
use shoal_metainfo::Sha256Hash;
use shoal_wire::extension::METADATA_PIECE_SIZE;
use shoal_wire::{
    DEFAULT_MAX_FRAME, ExtensionHandshake, HashRequest, Message, MetadataMessage, WireError,
    decode_frame, may_overtake_blocks,
};

fn hash_request() -> impl Strategy<Value = HashRequest> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(root, base_layer, index, length, proof_layers)| HashRequest {
                pieces_root: Sha256Hash(root),
                base_layer,
                index,
                length,
                proof_layers,
            },
        )
}

/// The numbers a message may carry; [`build`] turns them into a message of kind `kind`.
#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
    port: u16,
    request: HashRequest,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..21,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        hash_request(),
    )
        .prop_map(|(kind, a, b, c, port, request)| Spec {
            kind,
            a,
            b,
            c,
            port,
            request,
        })
}

/// Every message kind, with payloads borrowed from `bytes` (and `hashes`, whole hashes).
fn build<'a>(s: &Spec, bytes: &'a [u8], hashes: &'a [u8]) -> Message<'a> {
    let (piece, offset, len) = (s.a, s.b, s.c);
    match s.kind {
        0 => Message::KeepAlive,
        1 => Message::Choke,
        2 => Message::Unchoke,
        3 => Message::Interested,
        4 => Message::NotInterested,
        5 => Message::Have { piece },
        6 => Message::Bitfield(bytes),
        7 => Message::Request { piece, offset, len },
        8 => Message::Piece {
            piece,
            offset,
            data: bytes,
        },
        9 => Message::Cancel { piece, offset, len },
        10 => Message::Port(s.port),
        11 => Message::Suggest { piece },
        12 => Message::HaveAll,
        13 => Message::HaveNone,
        14 => Message::Reject { piece, offset, len },
        15 => Message::AllowedFast { piece },
        16 => Message::Extended {
            id: s.port as u8,
            payload: bytes,
        },
        17 => Message::HashRequest(s.request),
        18 => Message::Hashes {
            request: s.request,
            hashes,
        },
        19 => Message::HashReject(s.request),
        _ => Message::Unknown {
            id: 24 + (s.port % 232) as u8,
            payload: bytes,
        },
    }
}

proptest! {
    #[test]
    fn every_message_round_trips(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        hash_count in 0usize..5,
        specs in proptest::collection::vec(spec(), 1..8),
    ) {
        let hashes: Vec<u8> = (0..hash_count * 32).map(|i| i as u8).collect();
        // Encode a run of messages back to back, then decode them from the one buffer.
        let messages: Vec<Message<'_>> = specs.iter().map(|s| build(s, &bytes, &hashes)).collect();
        let mut buf = Vec::new();
        for m in &messages {
            m.encode(&mut buf);
        }
        let mut at = 0;
        for expected in &messages {
            let (decoded, used) = decode_frame(&buf[at..], DEFAULT_MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(&decoded, expected);
            at += used;
        }
        prop_assert_eq!(at, buf.len());
    }

    #[test]
    fn any_prefix_is_incomplete_never_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<proptest::sample::Index>()) {
        let mut buf = Vec::new();
        Message::Piece { piece: 3, offset: 16384, data: &bytes }.encode(&mut buf);
        let cut = cut.index(buf.len());
        prop_assert_eq!(decode_frame(&buf[..cut], DEFAULT_MAX_FRAME), Ok(None));
    }

    #[test]
    fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(m) = Message::decode(&frame) {
            let mut out = Vec::new();
            m.encode(&mut out);
            prop_assert_eq!(&out[4..], frame.as_slice());
        }
    }
}

#[test]
fn malformed_frames() {
    let frame = |id: u8, payload: &[u8]| [&[id][..], payload].concat();
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (frame(0, &[1]), WireError::BadLength { id: 0, len: 1 }),
        (frame(2, &[0; 4]), WireError::BadLength { id: 2, len: 4 }),
        (frame(4, &[0; 3]), WireError::BadLength { id: 4, len: 3 }),
        (frame(4, &[0; 5]), WireError::BadLength { id: 4, len: 5 }),
        (frame(6, &[0; 11]), WireError::BadLength { id: 6, len: 11 }),
        (frame(7, &[0; 7]), WireError::BadLength { id: 7, len: 7 }),
        (frame(9, &[0; 3]), WireError::BadLength { id: 9, len: 3 }),
        (frame(0x0E, &[0]), WireError::BadLength { id: 0x0E, len: 1 }),
        (
            frame(0x10, &[0; 13]),
            WireError::BadLength { id: 0x10, len: 13 },
        ),
        (frame(20, &[]), WireError::BadLength { id: 20, len: 0 }),
        (
            frame(21, &[0; 47]),
            WireError::BadLength { id: 21, len: 47 },
        ),
        (
            frame(22, &[0; 48 + 31]),
            WireError::RaggedHashes { len: 31 },
        ),
        (
            frame(22, &[0; 40]),
            WireError::BadLength { id: 22, len: 40 },
        ),
        (
            frame(23, &[0; 49]),
            WireError::BadLength { id: 23, len: 49 },
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(Message::decode(&frame), Err(expected), "{frame:?}");
    }
}

#[test]
fn the_length_prefix_is_checked_before_anything_else() {
    let hostile = [0xFF, 0xFF, 0xFF, 0xFF, 7];
    assert_eq!(
        decode_frame(&hostile, DEFAULT_MAX_FRAME),
        Err(WireError::FrameTooLarge {
            len: u32::MAX,
            max: DEFAULT_MAX_FRAME
        })
    );
    let just_over = (DEFAULT_MAX_FRAME + 1).to_be_bytes();
    assert!(matches!(
        decode_frame(&just_over, DEFAULT_MAX_FRAME),
        Err(WireError::FrameTooLarge { .. })
    ));
    let at_limit = DEFAULT_MAX_FRAME.to_be_bytes();
    assert_eq!(decode_frame(&at_limit, DEFAULT_MAX_FRAME), Ok(None));
    assert_eq!(
        decode_frame(&[0, 0, 0, 0], 0),
        Ok(Some((Message::KeepAlive, 4)))
    );
}

#[test]
fn extension_handshake_as_libtorrent_sends_it() {
    // Shaped like the extension handshake libtorrent 2.0 sends (its keys, sorted as it writes them).
    let payload = b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e4:reqqi500e11:upload_onlyi0e1:v17:libtorrent/2.0.116:yourip4:\x7f\x00\x00\x01e";
    let hs = ExtensionHandshake::decode(payload).unwrap();
    assert_eq!(hs.extensions.get("ut_metadata"), Some(&2));
    assert_eq!(hs.extensions.get("ut_pex"), Some(&1));
    assert_eq!(hs.metadata_size, Some(31235));
    assert_eq!(hs.request_queue, Some(500));
    assert_eq!(hs.client.as_deref(), Some("libtorrent/2.0.11"));
    assert_eq!(hs.your_ip, Some("127.0.0.1".parse().unwrap()));
    assert!(!hs.upload_only);
    assert_eq!(ExtensionHandshake::decode(&hs.encode()).unwrap(), hs);

    assert!(matches!(
        ExtensionHandshake::decode(b"li1ee"),
        Err(WireError::BadExtension { .. })
    ));
    assert!(matches!(
        ExtensionHandshake::decode(b"d1:m"),
        Err(WireError::BadExtension { .. })
    ));
}

#[test]
fn metadata_messages() {
    let data = vec![9u8; 1000];
    for m in [
        MetadataMessage::Request { piece: 2 },
        MetadataMessage::Reject { piece: 0 },
        MetadataMessage::Data {
            piece: 1,
            total_size: 17_384,
            data: &data,
        },
    ] {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(MetadataMessage::decode(&out).unwrap(), m);
    }
    let bad = |payload: &[u8]| MetadataMessage::decode(payload).unwrap_err();
    assert_eq!(
        bad(b"d8:msg_typei7e5:piecei0ee"),
        WireError::UnknownMetadataType(7)
    );
    assert!(matches!(
        bad(b"d8:msg_typei0e5:piecei0eextra"),
        WireError::BadExtension { .. }
    ));
    assert!(matches!(
        bad(b"d8:msg_typei0e5:piecei-1ee"),
        WireError::BadExtension { .. }
    ));
    assert!(matches!(
        bad(b"d8:msg_typei1e5:piecei0ee"),
        WireError::BadExtension { .. }
    ));
    assert!(matches!(
        bad(b"d8:msg_typei1e5:piecei0e10:total_sizei99999999999ee"),
        WireError::BadExtension { .. }
    ));
    let too_big = [
        b"d8:msg_typei1e5:piecei0e10:total_sizei100000ee".as_slice(),
        &vec![0u8; METADATA_PIECE_SIZE + 1],
    ]
    .concat();
    assert!(matches!(bad(&too_big), WireError::BadExtension { .. }));
}

fn frames(messages: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        message.encode(&mut out);
    }
    out
}

#[test]
fn only_blocks_chokes_and_rejects_keep_their_place_behind_blocks() {
    let request = Message::Request {
        piece: 1,
        offset: 0,
        len: 16384,
    };
    let overtaking = [
        Message::KeepAlive,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have { piece: 3 },
        request,
        Message::Cancel {
            piece: 1,
            offset: 0,
            len: 16384,
        },
        Message::HaveAll,
    ];
    for message in &overtaking {
        assert!(may_overtake_blocks(&frames(&[*message])), "{message:?}");
    }
    assert!(
        may_overtake_blocks(&frames(&overtaking)),
        "all of them at once"
    );
    let ordered = [
        Message::Choke,
        Message::Reject {
            piece: 1,
            offset: 0,
            len: 16384,
        },
        Message::Piece {
            piece: 1,
            offset: 0,
            data: &[7; 16],
        },
    ];
    for message in &ordered {
        assert!(!may_overtake_blocks(&frames(&[*message])), "{message:?}");
        // One ordered message among others keeps the whole frame in order.
        let mixed = frames(&[request, *message, Message::Unchoke]);
        assert!(!may_overtake_blocks(&mixed), "{message:?} among others");
    }
    // What does not parse as whole messages stays in order.
    let have = frames(&[Message::Have { piece: 3 }]);
    assert!(!may_overtake_blocks(&have[..have.len() - 1]));
    assert!(!may_overtake_blocks(&[0, 0]));
    assert!(may_overtake_blocks(&[]));
}
