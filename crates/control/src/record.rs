//! The stored form of the control plane's records (artifacts, nodes): canonical bencode
//! dictionaries with a `format` number, read back with errors that name the field.
//!
//! Records are written by this crate and read back from the server's own store, so a record
//! that does not read is corruption or a newer format, never a user's mistake; the errors say
//! which field and why, so an operator can find the bad entry.

use shoal_bencode::{Dict, Limits, Value};

/// The bencode limits for a stored record: 128 MiB (an info dictionary and piece layers of
/// up to [`shoal_metainfo::MAX_TORRENT_SIZE`], plus the file list), nesting 8 deep, 4 million
/// values.
pub(crate) const RECORD_LIMITS: Limits = Limits {
    max_input: 2 * shoal_metainfo::MAX_TORRENT_SIZE,
    max_depth: 8,
    max_values: 4_000_000,
};

/// Why a stored record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Not canonical bencode within the record limits (128 MiB, nesting 8, 4 million values).
    #[error("stored record is not canonical bencode (corrupt entry)")]
    Bencode(#[source] shoal_bencode::DecodeError),
    /// The top-level value is not a dictionary.
    #[error("stored record is a {found}, not a dictionary (corrupt entry)")]
    NotDict {
        /// The kind of value found.
        found: &'static str,
    },
    /// A record written by a newer (or unknown) format.
    #[error(
        "stored record has format {found}, but this build reads format {supported}: \
         upgrade shoal on this server"
    )]
    Format {
        /// The record's format number.
        found: i64,
        /// The format this build reads.
        supported: i64,
    },
    /// A required field is absent.
    #[error("stored record lacks field {field:?} (corrupt entry)")]
    Missing {
        /// The field, e.g. `files[2].path`.
        field: String,
    },
    /// A field of the wrong bencode type.
    #[error("stored record field {field:?} is a {found}, expected {expected} (corrupt entry)")]
    WrongType {
        /// The field.
        field: String,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A field whose value breaks a rule.
    #[error("stored record field {field:?} is invalid: {reason} (corrupt entry)")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Decodes `bytes` as a record dictionary of `format` (checked).
pub(crate) fn decode(bytes: &[u8], format: i64) -> Result<Dict<'_>, RecordError> {
    let value = shoal_bencode::decode_with(bytes, RECORD_LIMITS).map_err(RecordError::Bencode)?;
    let Value::Dict(dict) = value else {
        return Err(RecordError::NotDict {
            found: value.kind(),
        });
    };
    let found = Fields::new(&dict, "").int("format")?;
    if found != format {
        return Err(RecordError::Format {
            found,
            supported: format,
        });
    }
    Ok(dict)
}

/// `n` as a bencode integer. Bencode integers are `i64`: values above `i64::MAX` (sizes over
/// 8 EiB, times after the year 292 million) are written as `i64::MAX`.
pub(crate) fn uint(n: u64) -> Value<'static> {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Typed access to the fields of one record dictionary, naming fields in errors as
/// `prefix.name`.
pub(crate) struct Fields<'d, 'a> {
    dict: &'d Dict<'a>,
    prefix: &'d str,
}

impl<'d, 'a> Fields<'d, 'a> {
    /// The fields of `dict`, which sits at `prefix` (empty at the top).
    pub(crate) fn new(dict: &'d Dict<'a>, prefix: &'d str) -> Self {
        Self { dict, prefix }
    }

    /// The full name of field `name`.
    pub(crate) fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// An [`RecordError::Invalid`] for field `name`.
    pub(crate) fn invalid(&self, name: &str, reason: impl Into<String>) -> RecordError {
        RecordError::Invalid {
            field: self.name(name),
            reason: reason.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&'d Value<'a>> {
        self.dict.get(name.as_bytes())
    }

    fn required(&self, name: &str) -> Result<&'d Value<'a>, RecordError> {
        self.get(name).ok_or_else(|| RecordError::Missing {
            field: self.name(name),
        })
    }

    fn wrong_type(&self, name: &str, expected: &'static str, found: &Value<'_>) -> RecordError {
        RecordError::WrongType {
            field: self.name(name),
            expected,
            found: found.kind(),
        }
    }

    /// Field `name` as an integer.
    pub(crate) fn int(&self, name: &str) -> Result<i64, RecordError> {
        let value = self.required(name)?;
        value
            .as_int()
            .ok_or_else(|| self.wrong_type(name, "an integer", value))
    }

    /// Field `name` as an unsigned integer that fits `T`.
    pub(crate) fn uint<T: TryFrom<i64>>(&self, name: &str) -> Result<T, RecordError> {
        let n = self.int(name)?;
        T::try_from(n).map_err(|_| self.invalid(name, format!("{n} is out of range")))
    }

    /// Optional field `name` as an unsigned integer that fits `T`.
    pub(crate) fn opt_uint<T: TryFrom<i64>>(&self, name: &str) -> Result<Option<T>, RecordError> {
        match self.get(name) {
            Some(_) => self.uint(name).map(Some),
            None => Ok(None),
        }
    }

    /// Optional field `name` as a byte string.
    pub(crate) fn opt_bytes(&self, name: &str) -> Result<Option<&'d [u8]>, RecordError> {
        self.get(name)
            .map(|value| {
                value
                    .as_bytes()
                    .ok_or_else(|| self.wrong_type(name, "a byte string", value))
            })
            .transpose()
    }

    /// Field `name` as a byte string.
    pub(crate) fn bytes(&self, name: &str) -> Result<&'d [u8], RecordError> {
        self.opt_bytes(name)?.ok_or_else(|| RecordError::Missing {
            field: self.name(name),
        })
    }

    /// Optional field `name` as exactly `N` bytes.
    pub(crate) fn opt_array<const N: usize>(
        &self,
        name: &str,
    ) -> Result<Option<[u8; N]>, RecordError> {
        self.opt_bytes(name)?
            .map(|b| {
                <[u8; N]>::try_from(b)
                    .map_err(|_| self.invalid(name, format!("{} bytes, expected {N}", b.len())))
            })
            .transpose()
    }

    /// Field `name` as exactly `N` bytes.
    pub(crate) fn array<const N: usize>(&self, name: &str) -> Result<[u8; N], RecordError> {
        self.opt_array(name)?.ok_or_else(|| RecordError::Missing {
            field: self.name(name),
        })
    }

    /// Optional field `name` as UTF-8 text.
    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&'d str>, RecordError> {
        self.opt_bytes(name)?
            .map(|b| std::str::from_utf8(b).map_err(|_| self.invalid(name, "not UTF-8")))
            .transpose()
    }

    /// Field `name` as UTF-8 text.
    pub(crate) fn str(&self, name: &str) -> Result<&'d str, RecordError> {
        self.opt_str(name)?.ok_or_else(|| RecordError::Missing {
            field: self.name(name),
        })
    }

    /// Field `name` as text parsed into a `T`, its parse error naming the field.
    pub(crate) fn parsed<T>(&self, name: &str) -> Result<T, RecordError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.str(name)?
            .parse()
            .map_err(|e: T::Err| self.invalid(name, e.to_string()))
    }

    /// Optional field `name` as text parsed into a `T`.
    pub(crate) fn opt_parsed<T>(&self, name: &str) -> Result<Option<T>, RecordError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.opt_str(name)?
            .map(|s| {
                s.parse()
                    .map_err(|e: T::Err| self.invalid(name, e.to_string()))
            })
            .transpose()
    }

    /// Field `name` as a list.
    pub(crate) fn list(&self, name: &str) -> Result<&'d [Value<'a>], RecordError> {
        let value = self.required(name)?;
        value
            .as_list()
            .ok_or_else(|| self.wrong_type(name, "a list", value))
    }

    /// Field `name` as a dictionary.
    pub(crate) fn dict(&self, name: &str) -> Result<&'d Dict<'a>, RecordError> {
        let value = self.required(name)?;
        value
            .as_dict()
            .ok_or_else(|| self.wrong_type(name, "a dictionary", value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use super::*;

    #[test]
    fn names_fields_and_checks_the_format() {
        assert!(matches!(
            decode(b"i1e", 1),
            Err(RecordError::NotDict { .. })
        ));
        assert!(matches!(decode(b"d", 1), Err(RecordError::Bencode(_))));
        assert_eq!(
            decode(b"de", 1),
            Err(RecordError::Missing {
                field: "format".into()
            })
        );
        assert_eq!(
            decode(b"d6:formati2ee", 1),
            Err(RecordError::Format {
                found: 2,
                supported: 1
            })
        );
        let dict = decode(b"d1:ai-1e1:b2:xy6:formati1ee", 1).unwrap();
        let fields = Fields::new(&dict, "files[0]");
        assert_eq!(
            fields.uint::<u64>("a"),
            Err(RecordError::Invalid {
                field: "files[0].a".into(),
                reason: "-1 is out of range".into()
            })
        );
        assert!(matches!(
            fields.array::<3>("b"),
            Err(RecordError::Invalid { .. })
        ));
        assert_eq!(fields.array::<2>("b"), Ok(*b"xy"));
        assert!(matches!(
            fields.list("b"),
            Err(RecordError::WrongType { .. })
        ));
        assert_eq!(fields.opt_str("c"), Ok(None));
        assert_eq!(uint(u64::MAX), Value::Int(i64::MAX));
    }
}
