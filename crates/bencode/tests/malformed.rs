//! Every malformed or non-canonical input gives its own typed error at the right offset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

use shoal_bencode::{DecodeError, DecodeErrorKind as K, Limits, decode, decode_with};

fn err(input: &[u8]) -> DecodeError {
    match decode(input) {
        Ok(v) => panic!(
            "{:?} decoded to {v:?}, expected an error",
            String::from_utf8_lossy(input)
        ),
        Err(e) => e,
    }
}

#[test]
fn table_of_malformed_inputs() {
    let cases: &[(&[u8], usize, K)] = &[
        (b"", 0, K::UnexpectedEof),
        (b"i42", 3, K::UnexpectedEof),
        (b"5:abc", 0, K::LengthExceedsInput { len: 5 }),
        (b"l", 1, K::UnexpectedEof),
        (b"d3:key", 6, K::UnexpectedEof),
        (b"x", 0, K::UnexpectedByte(b'x')),
        (b"i4x2e", 2, K::UnexpectedByte(b'x')),
        (b"3x:abc", 1, K::UnexpectedByte(b'x')),
        (b"i03e", 1, K::LeadingZero),
        (b"i-03e", 2, K::LeadingZero),
        (b"03:abc", 0, K::LeadingZero),
        (b"i-0e", 1, K::NegativeZero),
        (b"ie", 1, K::EmptyInteger),
        (b"i-e", 2, K::EmptyInteger),
        (b"i9223372036854775808e", 19, K::IntegerOverflow),
        (b"i-9223372036854775809e", 20, K::IntegerOverflow),
        (
            b"99999999999999999999999:x",
            0,
            K::LengthExceedsInput { len: u64::MAX },
        ),
        (
            b"4294967296:x",
            0,
            K::LengthExceedsInput { len: 4_294_967_296 },
        ),
        (b"di1ei2ee", 1, K::KeyNotBytes),
        (b"dlee1:ae", 1, K::KeyNotBytes),
        (b"d1:bi1e1:ai2ee", 7, K::UnsortedKeys),
        (b"d1:ai1e1:ai2ee", 7, K::DuplicateKey),
        (b"d2:abi1e1:ai2ee", 8, K::UnsortedKeys),
        (b"i1ei2e", 3, K::TrailingBytes),
        (b"le ", 2, K::TrailingBytes),
    ];
    for (input, offset, kind) in cases {
        let e = err(input);
        assert_eq!(
            (e.offset, &e.kind),
            (*offset, kind),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn depth_bomb_is_refused_at_the_limit() {
    let limits = Limits {
        max_depth: 64,
        ..Limits::default()
    };
    let ok = [b"l".repeat(64), b"e".repeat(64)].concat();
    assert!(decode_with(&ok, limits).is_ok());
    let bomb = [b"l".repeat(100_000), b"e".repeat(100_000)].concat();
    let e = decode_with(&bomb, limits).unwrap_err();
    assert_eq!((e.offset, e.kind), (64, K::DepthLimit { max: 64 }));
    // A configured depth above the hard ceiling is clamped, so the stack stays bounded.
    let e = decode_with(
        &bomb,
        Limits {
            max_depth: usize::MAX,
            ..limits
        },
    )
    .unwrap_err();
    assert_eq!(
        e.kind,
        K::DepthLimit {
            max: Limits::HARD_MAX_DEPTH
        }
    );
}

#[test]
fn value_and_input_limits() {
    let many = [b"l".as_slice(), &b"i0e".repeat(10), b"e"].concat();
    let limits = Limits {
        max_values: 10,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(&many, limits).unwrap_err().kind,
        K::ValueLimit { max: 10 }
    );
    assert!(
        decode_with(
            &many,
            Limits {
                max_values: 11,
                ..limits
            }
        )
        .is_ok()
    );

    let limits = Limits {
        max_input: 4,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"5:abcde", limits).unwrap_err().kind,
        K::InputTooLarge { len: 7, max: 4 }
    );
}

#[test]
fn extremes_decode() {
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap().as_int(),
        Some(i64::MAX)
    );
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap().as_int(),
        Some(i64::MIN)
    );
    assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
    assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
}

#[test]
fn errors_read_well() {
    let e = err(b"d1:bi1e1:ai2ee");
    assert_eq!(
        e.to_string(),
        "invalid bencode at byte 7: dictionary keys out of order"
    );
}
