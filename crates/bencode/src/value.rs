//! The bencode value tree: borrowed from the input when decoded, owned when built.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// One bencode value.
///
/// Byte strings borrow from the decoded input (`Cow::Borrowed`) or own their bytes when a value
/// is built by hand. Equality compares content only: a decoded dictionary equals a built one
/// with the same entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer (`i<n>e`), limited to the `i64` range.
    Int(i64),
    /// A byte string (`<len>:<bytes>`); not necessarily UTF-8.
    Bytes(Cow<'a, [u8]>),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`).
    Dict(Dict<'a>),
}

impl<'a> Value<'a> {
    /// A byte string value borrowing `bytes`.
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(bytes))
    }

    /// A byte string value owning `bytes`.
    pub fn owned_bytes(bytes: Vec<u8>) -> Value<'static> {
        Value::Bytes(Cow::Owned(bytes))
    }

    /// A byte string value holding the UTF-8 bytes of `s`.
    pub fn string(s: &'a str) -> Self {
        Value::Bytes(Cow::Borrowed(s.as_bytes()))
    }

    /// Returns the integer if and only if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// Returns the bytes if and only if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Returns the string if and only if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Returns the items if and only if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// Returns the dictionary for changing it, if and only if this is a dictionary.
    pub fn as_dict_mut(&mut self) -> Option<&mut Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Returns the dictionary if and only if this is a dictionary.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The name of this value's kind, for error messages: `integer`, `byte string`, `list` or
    /// `dictionary`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// Copies every borrowed byte string so the value no longer borrows the input.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Int(n) => Value::Int(n),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::List(items) => Value::List(items.into_iter().map(Value::into_owned).collect()),
            Value::Dict(d) => Value::Dict(d.into_owned()),
        }
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<Vec<u8>> for Value<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Bytes(Cow::Owned(bytes))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(bytes))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::string(s)
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Bytes(Cow::Owned(s.into_bytes()))
    }
}

impl<'a> From<Vec<Value<'a>>> for Value<'a> {
    fn from(items: Vec<Value<'a>>) -> Self {
        Value::List(items)
    }
}

impl<'a> From<Dict<'a>> for Value<'a> {
    fn from(dict: Dict<'a>) -> Self {
        Value::Dict(dict)
    }
}

/// A dictionary: byte-string keys in sorted order, so encoding is canonical by construction.
///
/// A decoded dictionary also keeps the exact input bytes it was decoded from ([`Dict::raw`]).
#[derive(Clone, Debug, Default)]
pub struct Dict<'a> {
    entries: BTreeMap<Cow<'a, [u8]>, Value<'a>>,
    raw: Option<&'a [u8]>,
}

impl<'a> Dict<'a> {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_raw(entries: BTreeMap<Cow<'a, [u8]>, Value<'a>>, raw: &'a [u8]) -> Self {
        Self {
            entries,
            raw: Some(raw),
        }
    }

    /// Inserts `value` under `key`, returning the value it replaces, if any. Inserting into a
    /// decoded dictionary forgets its raw bytes, which no longer describe it.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'a, [u8]>>,
        value: impl Into<Value<'a>>,
    ) -> Option<Value<'a>> {
        self.raw = None;
        self.entries.insert(key.into(), value.into())
    }

    /// Returns the value under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.get(key)
    }

    /// Returns the value under `key` for changing it; this forgets the raw bytes, which would
    /// no longer describe the dictionary.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value<'a>> {
        self.raw = None;
        self.entries.get_mut(key)
    }

    /// Removes and returns the value under `key`, forgetting the raw bytes.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value<'a>> {
        self.raw = None;
        self.entries.remove(key)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns true if and only if the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The exact input bytes this dictionary was decoded from, `d` to `e` inclusive; `None` for a
    /// dictionary built (or modified) in memory.
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw
    }

    /// Copies every borrowed byte string so the dictionary no longer borrows the input. The raw
    /// span is dropped with the borrow.
    pub fn into_owned(self) -> Dict<'static> {
        Dict {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            raw: None,
        }
    }
}

impl PartialEq for Dict<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Dict<'_> {}

impl<'a, K: Into<Cow<'a, [u8]>>, V: Into<Value<'a>>> FromIterator<(K, V)> for Dict<'a> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            raw: None,
        }
    }
}
