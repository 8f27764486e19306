//! Typed access to dictionary fields, with the field's dotted path in every error.

use shoal_bencode::{Dict, Value};

use crate::error::MetainfoError;

/// A dictionary and where it sits in the torrent, for error messages.
pub(crate) struct Fields<'d, 'a> {
    pub dict: &'d Dict<'a>,
    pub at: String,
}

impl<'d, 'a> Fields<'d, 'a> {
    pub fn new(dict: &'d Dict<'a>, at: impl Into<String>) -> Self {
        Self {
            dict,
            at: at.into(),
        }
    }

    pub fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    pub fn get(&self, key: &str) -> Option<&'d Value<'a>> {
        self.dict.get(key.as_bytes())
    }

    fn wrong(&self, key: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
        MetainfoError::WrongType {
            field: self.path(key),
            expected,
            found: found.kind(),
        }
    }

    fn missing(&self, key: &str) -> MetainfoError {
        MetainfoError::Missing {
            field: self.path(key),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, MetainfoError> {
        self.get(key)
            .map(|v| v.as_int().ok_or_else(|| self.wrong(key, "an integer", v)))
            .transpose()
    }

    /// A non-negative integer.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, MetainfoError> {
        self.int(key)?
            .map(|n| {
                u64::try_from(n).map_err(|_| MetainfoError::OutOfRange {
                    field: self.path(key),
                    value: n,
                })
            })
            .transpose()
    }

    pub fn required_uint(&self, key: &str) -> Result<u64, MetainfoError> {
        self.uint(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn bytes(&self, key: &str) -> Result<Option<&'d [u8]>, MetainfoError> {
        self.get(key)
            .map(|v| {
                v.as_bytes()
                    .ok_or_else(|| self.wrong(key, "a byte string", v))
            })
            .transpose()
    }

    pub fn required_bytes(&self, key: &str) -> Result<&'d [u8], MetainfoError> {
        self.bytes(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn string(&self, key: &str) -> Result<Option<&'d str>, MetainfoError> {
        self.bytes(key)?
            .map(|b| {
                std::str::from_utf8(b).map_err(|_| MetainfoError::NotUtf8 {
                    field: self.path(key),
                })
            })
            .transpose()
    }

    pub fn list(&self, key: &str) -> Result<Option<&'d [Value<'a>]>, MetainfoError> {
        self.get(key)
            .map(|v| v.as_list().ok_or_else(|| self.wrong(key, "a list", v)))
            .transpose()
    }

    pub fn dict(&self, key: &str) -> Result<Option<&'d Dict<'a>>, MetainfoError> {
        self.get(key)
            .map(|v| {
                v.as_dict()
                    .ok_or_else(|| self.wrong(key, "a dictionary", v))
            })
            .transpose()
    }

    pub fn required_dict(&self, key: &str) -> Result<&'d Dict<'a>, MetainfoError> {
        self.dict(key)?.ok_or_else(|| self.missing(key))
    }
}

/// `value` as a dictionary, or a type error naming `field`.
pub(crate) fn as_dict<'d, 'a>(
    value: &'d Value<'a>,
    field: &str,
) -> Result<&'d Dict<'a>, MetainfoError> {
    value.as_dict().ok_or_else(|| MetainfoError::WrongType {
        field: field.to_owned(),
        expected: "a dictionary",
        found: value.kind(),
    })
}

/// `value` as a UTF-8 string, or an error naming `field`.
pub(crate) fn as_str<'d>(value: &'d Value<'_>, field: &str) -> Result<&'d str, MetainfoError> {
    let bytes = value.as_bytes().ok_or_else(|| MetainfoError::WrongType {
        field: field.to_owned(),
        expected: "a byte string",
        found: value.kind(),
    })?;
    std::str::from_utf8(bytes).map_err(|_| MetainfoError::NotUtf8 {
        field: field.to_owned(),
    })
}
