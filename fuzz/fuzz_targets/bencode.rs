//! Fuzz target: the bencode decoder on arbitrary bytes. Whatever decodes must re-encode to the
//! same bytes (canonical form has one encoding), and every decoded dictionary's raw span must
//! be its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_bencode::{Limits, Value, decode_with, encode};

fn check_spans(value: &Value<'_>) {
    match value {
        Value::Dict(dict) => {
            let raw = dict.raw().expect("decoded dictionaries keep their span");
            assert_eq!(raw, encode(value).as_slice());
            dict.iter().for_each(|(_, v)| check_spans(v));
        }
        Value::List(items) => items.iter().for_each(check_spans),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input: 1 << 20,
        max_depth: 32,
        max_values: 10_000,
    };
    if let Ok(value) = decode_with(data, limits) {
        assert_eq!(encode(&value), data);
        check_spans(&value);
    }
});
