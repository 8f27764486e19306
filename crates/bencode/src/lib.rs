//! Strict bencode (BEP 3) for untrusted input.
//!
//! Bencode has four kinds of value: integers (`i42e`), byte strings (`4:spam`), lists
//! (`l...e`) and dictionaries (`d...e`, keys are byte strings). This crate decodes only the
//! *canonical* form, the one encoding every value has:
//!
//! - dictionary keys are byte strings in strictly increasing byte order (sorted, unique);
//! - integers have no leading zeros and no `-0`; lengths have no leading zeros;
//! - the input is exactly one value: trailing bytes are an error.
//!
//! Decoding is bounded: nesting depth and the number of values are limited ([`Limits`]), every
//! length prefix is checked against the bytes that remain before anything is sliced, and byte
//! strings are borrowed from the input, never copied. Every error carries the byte offset where
//! decoding stopped ([`DecodeError`]).
//!
//! Decoded dictionaries remember the exact input bytes they came from ([`Dict::raw`]), so a
//! torrent's info-hash is computed over the original bytes, not a re-encoding.
//!
//! Why our own crate: the published bencode crates each miss one of the above (item-count
//! limits, offsets in errors, borrowed raw spans with canonical checks). This one is small,
//! has no `unsafe`, and is fuzzed (`fuzz/fuzz_targets/bencode.rs`).
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod value;

pub use decode::{DecodeError, DecodeErrorKind, Limits, decode, decode_prefix, decode_with};
pub use encode::{encode, encode_bytes_into};
pub use value::{Dict, Value};
