//! Reading a tracker's bencoded response body: the bounds, the `failure reason` any response
//! may carry instead of an answer, and typed access to fields that names them in errors.

use std::borrow::Cow;

use shoal_bencode::{Dict, Limits, Value};

use crate::MAX_BODY_LEN;
use crate::error::TrackerError;

/// Bencode limits for response bodies. Depth 8 covers the deepest real shape (a dictionary-form
/// peer: body, `peers` list, peer dictionary, value) with room for trackers' extra keys; 500,000
/// values covers [`crate::MAX_PEERS`] dictionary-form peers of four values each and caps the
/// decoded tree at a few tens of MiB.
const LIMITS: Limits = Limits {
    max_input: MAX_BODY_LEN,
    max_depth: 8,
    max_values: 500_000,
};

/// Decodes `body`, which must be one bencoded dictionary.
///
/// # Errors
/// [`TrackerError::BodyTooLarge`], [`TrackerError::Bencode`], or [`TrackerError::WrongType`]
/// (field `response`) for a body that is not a dictionary.
pub(crate) fn decode(body: &[u8]) -> Result<Dict<'_>, TrackerError> {
    if body.len() > MAX_BODY_LEN {
        return Err(TrackerError::BodyTooLarge {
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    match shoal_bencode::decode_with(body, LIMITS)? {
        Value::Dict(dict) => Ok(dict),
        other => Err(wrong_type("response", "dictionary", &other)),
    }
}

/// The `failure reason`, if the tracker refused the request. Read as lossy UTF-8: it is text
/// for a person, and a refusal must not be lost to a stray byte.
///
/// # Errors
/// [`TrackerError::WrongType`] if it is not a byte string.
pub(crate) fn failure(dict: &Dict<'_>) -> Result<Option<String>, TrackerError> {
    text(dict, "failure reason", top)
}

/// Names a field of the body itself: the path is the key.
pub(crate) fn top(key: &str) -> String {
    key.to_owned()
}

/// The integer under `key`, converted to `T`; `at(key)` is the field's path in errors.
///
/// # Errors
/// [`TrackerError::WrongType`] if it is not an integer, [`TrackerError::OutOfRange`] if it
/// does not fit `T`.
pub(crate) fn int<T: TryFrom<i64>>(
    dict: &Dict<'_>,
    key: &str,
    at: impl Fn(&str) -> String,
) -> Result<Option<T>, TrackerError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(&Value::Int(n)) => T::try_from(n)
            .map(Some)
            .map_err(|_| TrackerError::OutOfRange {
                field: at(key),
                value: n,
            }),
        Some(other) => Err(wrong_type(at(key), "integer", other)),
    }
}

/// The byte string under `key`; `at(key)` is the field's path in errors.
///
/// # Errors
/// [`TrackerError::WrongType`] if it is not a byte string.
pub(crate) fn bytes<'d>(
    dict: &'d Dict<'_>,
    key: &str,
    at: impl Fn(&str) -> String,
) -> Result<Option<&'d [u8]>, TrackerError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(other) => Err(wrong_type(at(key), "byte string", other)),
    }
}

/// The byte string under `key` as lossy UTF-8, for text meant for a person.
///
/// # Errors
/// [`TrackerError::WrongType`] if it is not a byte string.
pub(crate) fn text(
    dict: &Dict<'_>,
    key: &str,
    at: impl Fn(&str) -> String,
) -> Result<Option<String>, TrackerError> {
    Ok(bytes(dict, key, at)?.map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// `value`, which must be present: the field `key` was read into it.
///
/// # Errors
/// [`TrackerError::MissingField`] if absent.
pub(crate) fn required<T>(
    value: Option<T>,
    key: &str,
    at: impl Fn(&str) -> String,
) -> Result<T, TrackerError> {
    value.ok_or_else(|| TrackerError::MissingField { field: at(key) })
}

/// The error for `found` where a value of kind `expected` belongs.
pub(crate) fn wrong_type(
    field: impl Into<String>,
    expected: &'static str,
    found: &Value<'_>,
) -> TrackerError {
    TrackerError::WrongType {
        field: field.into(),
        expected,
        found: found.kind(),
    }
}

/// The body `d14:failure reason<len>:<reason>e`.
pub(crate) fn encode_failure(reason: &str) -> Vec<u8> {
    let mut d = Dict::new();
    d.insert(key("failure reason"), Value::string(reason));
    shoal_bencode::encode(&Value::Dict(d))
}

/// A dictionary key borrowed from a literal.
pub(crate) fn key(name: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(name.as_bytes())
}
