//! Property tests: `decode(encode(v)) == v`, and dictionaries keep their exact raw bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

use proptest::prelude::*;
use shoal_bencode::{Dict, Value, decode, decode_prefix, encode};

fn value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 200, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..12), inner), 0..8)
                .prop_map(|entries| Value::Dict(entries.into_iter().collect::<Dict<'_>>())),
        ]
    })
}

proptest! {
    #[test]
    fn decode_inverts_encode(v in value()) {
        let bytes = encode(&v);
        prop_assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn dictionaries_keep_their_raw_span(v in value(), suffix in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut outer = Dict::new();
        outer.insert(b"info".to_vec(), v.clone());
        let bytes = encode(&Value::Dict(outer));
        let decoded = decode(&bytes).unwrap();
        let info = decoded.as_dict().unwrap().get(b"info").unwrap();
        if let Some(d) = info.as_dict() {
            let expected = encode(&v);
            prop_assert_eq!(d.raw().unwrap(), expected.as_slice());
        }
        // A prefix decode stops exactly at the end of the value.
        let mut with_suffix = bytes.clone();
        with_suffix.extend_from_slice(&suffix);
        let (_, end) = decode_prefix(&with_suffix, Default::default()).unwrap();
        prop_assert_eq!(end, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Whatever decodes must re-encode to the very same bytes: canonical means one encoding.
        if let Ok(v) = decode(&bytes) {
            prop_assert_eq!(encode(&v), bytes);
        }
    }
}

#[test]
fn raw_span_is_the_original_bytes() {
    let input = b"d4:infod6:lengthi5e4:name1:xe3:zzz0:e";
    let v = decode(input).unwrap();
    let info = v
        .as_dict()
        .unwrap()
        .get(b"info")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(info.raw().unwrap(), b"d6:lengthi5e4:name1:xe");
    assert_eq!(v.as_dict().unwrap().raw().unwrap(), input);
}
