//! The strict, bounded decoder.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::value::{Dict, Value};

/// Resource limits for one decode. Checked before any allocation they guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest input accepted, in bytes. Default: 64 MiB.
    pub max_input: usize,
    /// The deepest nesting of lists and dictionaries; a scalar at top level has depth 0.
    /// Default: 64. Values above [`Limits::HARD_MAX_DEPTH`] are treated as that maximum, since
    /// the decoder recurses once per level.
    pub max_depth: usize,
    /// The most values (of any kind, dictionary keys not counted) one input may hold. Bounds the
    /// memory of the decoded tree to a few dozen bytes per value. Default: 1,000,000.
    pub max_values: usize,
}

impl Limits {
    /// The nesting depth no configuration can exceed.
    pub const HARD_MAX_DEPTH: usize = 256;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input: 64 << 20,
            max_depth: 64,
            max_values: 1_000_000,
        }
    }
}

/// Why decoding failed, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid bencode at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset into the input of the byte where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub kind: DecodeErrorKind,
}

/// The causes of a [`DecodeError`], one per rule of the canonical form or limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// An integer or length with a leading zero (`i03e`, `03:abc`).
    #[error("leading zero in a number")]
    LeadingZero,
    /// The integer `i-0e`.
    #[error("negative zero")]
    NegativeZero,
    /// An integer with no digits (`ie`, `i-e`).
    #[error("integer without digits")]
    EmptyInteger,
    /// An integer outside the `i64` range.
    #[error("integer out of range")]
    IntegerOverflow,
    /// A byte-string length longer than the remaining input.
    #[error("byte string of {len} bytes runs past the end of the input")]
    LengthExceedsInput {
        /// The declared length.
        len: u64,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    KeyNotBytes,
    /// A dictionary key not greater than the key before it.
    #[error("dictionary keys out of order")]
    UnsortedKeys,
    /// A dictionary key equal to the key before it.
    #[error("duplicate dictionary key")]
    DuplicateKey,
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {max} levels")]
    DepthLimit {
        /// The limit in force.
        max: usize,
    },
    /// More values than [`Limits::max_values`].
    #[error("more than {max} values")]
    ValueLimit {
        /// The limit in force.
        max: usize,
    },
    /// An input longer than [`Limits::max_input`].
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    InputTooLarge {
        /// The input length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// Bytes after the one top-level value.
    #[error("trailing bytes after the value")]
    TrailingBytes,
}

/// Decodes `input`, which must be exactly one canonical value, with the default [`Limits`].
///
/// # Errors
/// A [`DecodeError`] naming the first violation and its offset.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    decode_with(input, Limits::default())
}

/// Decodes `input`, which must be exactly one canonical value, within `limits`.
///
/// # Errors
/// A [`DecodeError`] naming the first violation and its offset.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, DecodeError> {
    let (value, end) = decode_prefix(input, limits)?;
    if end != input.len() {
        return Err(DecodeError {
            offset: end,
            kind: DecodeErrorKind::TrailingBytes,
        });
    }
    Ok(value)
}

/// Decodes one canonical value from the start of `input` and returns it with the offset just
/// past it; what follows is left to the caller (BEP 9 metadata messages append raw data).
///
/// # Errors
/// A [`DecodeError`] naming the first violation and its offset.
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), DecodeError> {
    if input.len() > limits.max_input {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::InputTooLarge {
                len: input.len(),
                max: limits.max_input,
            },
        });
    }
    let mut decoder = Decoder {
        input,
        pos: 0,
        values_left: limits.max_values,
        max_values: limits.max_values,
        max_depth: limits.max_depth.min(Limits::HARD_MAX_DEPTH),
    };
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    values_left: usize,
    max_values: usize,
    max_depth: usize,
}

impl<'a> Decoder<'a> {
    fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error(DecodeErrorKind::UnexpectedEof))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        if self.values_left == 0 {
            return Err(self.error(DecodeErrorKind::ValueLimit {
                max: self.max_values,
            }));
        }
        self.values_left -= 1;
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(|b| Value::Bytes(Cow::Borrowed(b))),
            b'l' => self.list(depth + 1),
            b'd' => self.dict(depth + 1),
            other => Err(self.error(DecodeErrorKind::UnexpectedByte(other))),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.max_depth {
            return Err(self.error(DecodeErrorKind::DepthLimit {
                max: self.max_depth,
            }));
        }
        Ok(())
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        self.pos += 1; // 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut n: i64 = 0;
        loop {
            let byte = self.peek()?;
            match byte {
                b'0'..=b'9' => {
                    if self.pos > digits_start && self.input[digits_start] == b'0' {
                        return Err(DecodeError {
                            offset: digits_start,
                            kind: DecodeErrorKind::LeadingZero,
                        });
                    }
                    let digit = i64::from(byte - b'0');
                    // Accumulate negatively so i64::MIN is representable.
                    n = n
                        .checked_mul(10)
                        .and_then(|n| {
                            if negative {
                                n.checked_sub(digit)
                            } else {
                                n.checked_add(digit)
                            }
                        })
                        .ok_or_else(|| self.error(DecodeErrorKind::IntegerOverflow))?;
                    self.pos += 1;
                }
                b'e' => break,
                other => return Err(self.error(DecodeErrorKind::UnexpectedByte(other))),
            }
        }
        if self.pos == digits_start {
            return Err(self.error(DecodeErrorKind::EmptyInteger));
        }
        if negative && n == 0 {
            return Err(DecodeError {
                offset: digits_start - 1,
                kind: DecodeErrorKind::NegativeZero,
            });
        }
        self.pos += 1; // 'e'
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let mut len: u64 = 0;
        loop {
            let byte = self.peek()?;
            match byte {
                b'0'..=b'9' => {
                    if self.pos > start && self.input[start] == b'0' {
                        return Err(DecodeError {
                            offset: start,
                            kind: DecodeErrorKind::LeadingZero,
                        });
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(byte - b'0')))
                        .ok_or(DecodeError {
                            offset: start,
                            kind: DecodeErrorKind::LengthExceedsInput { len: u64::MAX },
                        })?;
                    self.pos += 1;
                }
                b':' => break,
                other => return Err(self.error(DecodeErrorKind::UnexpectedByte(other))),
            }
        }
        self.pos += 1; // ':'
        let remaining = self.input.len() - self.pos;
        let fits = usize::try_from(len).is_ok_and(|len| len <= remaining);
        if !fits {
            return Err(DecodeError {
                offset: start,
                kind: DecodeErrorKind::LengthExceedsInput { len },
            });
        }
        // `len <= remaining` was just checked, so the slice is in bounds and the cast lossless.
        let end = self.pos + len as usize;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn list(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        self.enter(depth)?;
        self.pos += 1; // 'l'
        let mut items = Vec::new();
        while self.peek()? != b'e' {
            items.push(self.value(depth)?);
        }
        self.pos += 1; // 'e'
        Ok(Value::List(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        self.enter(depth)?;
        let start = self.pos;
        self.pos += 1; // 'd'
        let mut entries = BTreeMap::new();
        let mut previous: Option<&'a [u8]> = None;
        while self.peek()? != b'e' {
            let key_offset = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.error(DecodeErrorKind::KeyNotBytes));
            }
            let key = self.bytes()?;
            if let Some(previous) = previous {
                let kind = match key.cmp(previous) {
                    std::cmp::Ordering::Greater => None,
                    std::cmp::Ordering::Equal => Some(DecodeErrorKind::DuplicateKey),
                    std::cmp::Ordering::Less => Some(DecodeErrorKind::UnsortedKeys),
                };
                if let Some(kind) = kind {
                    return Err(DecodeError {
                        offset: key_offset,
                        kind,
                    });
                }
            }
            previous = Some(key);
            let value = self.value(depth)?;
            entries.insert(Cow::Borrowed(key), value);
        }
        self.pos += 1; // 'e'
        Ok(Value::Dict(Dict::with_raw(
            entries,
            &self.input[start..self.pos],
        )))
    }
}
