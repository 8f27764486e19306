//! The encoding of openraft's types on the wire and on disk: postcard (compact, varint
//! integers, serde), decoded from a bounded slice with trailing bytes refused.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("{len} bytes is over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("{0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Encodes `value`. Fails only for types serde cannot describe to postcard, which ours are not.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes one `T` that must fill `bytes` exactly; `bytes` is checked against `max` first.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_trailing_and_oversized_input() {
        let bytes = encode(&(7u64, vec![1u8, 2, 3])).unwrap();
        let back: (u64, Vec<u8>) = decode(&bytes, 64).unwrap();
        assert_eq!(back, (7, vec![1, 2, 3]));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<(u64, Vec<u8>)>(&long, 64),
            Err(DecodeError::Trailing(1))
        ));
        assert!(matches!(
            decode::<(u64, Vec<u8>)>(&bytes, 2),
            Err(DecodeError::TooLong { .. })
        ));
        // A length prefix far past the input fails without allocating it.
        let lying = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Vec<u8>>(&lying, 64).is_err());
    }
}
