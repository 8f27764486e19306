//! Node labels ([`Labels`]): `key=value` pairs an agent registers with (`region=eu-west`,
//! `zone=eu-west-1a`, `rack=r12`), validated by the Kubernetes label grammar so they read the
//! same to anyone who has written a node selector.
//!
//! - A key is an optional prefix and `/`, then a name. The name is 1 to 63 bytes of
//!   `A-Z a-z 0-9 . _ -` that starts and ends with a letter or digit; the prefix is a DNS
//!   subdomain (at most 253 bytes of dot-separated `a-z 0-9 -` labels, each 1 to 63 bytes,
//!   starting and ending with a letter or digit).
//! - A value is empty, or 1 to 63 bytes by the same rule as a key's name.
//! - A node has at most [`MAX_LABELS`] labels. `region`, `zone` and `rack` are ordinary keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The most labels one node may have.
pub const MAX_LABELS: usize = 64;

/// The longest key name and value, in bytes.
const MAX_NAME_LEN: usize = 63;

/// The longest key prefix, in bytes.
const MAX_PREFIX_LEN: usize = 253;

/// A node's validated labels, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `key=value` items, as given by repeated command-line flags.
    ///
    /// # Errors
    /// The first bad item: [`LabelError::MissingEquals`], [`LabelError::Key`],
    /// [`LabelError::Value`], [`LabelError::Duplicate`], or [`LabelError::TooMany`] beyond
    /// [`MAX_LABELS`].
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let mut labels = Self::new();
        for item in items {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| LabelError::MissingEquals {
                    item: excerpt(item),
                })?;
            if labels.insert(key, value)?.is_some() {
                return Err(LabelError::Duplicate {
                    key: key.to_owned(),
                });
            }
        }
        Ok(labels)
    }

    /// Sets `key` to `value`, returning the value it replaces.
    ///
    /// # Errors
    /// [`LabelError::Key`], [`LabelError::Value`], or [`LabelError::TooMany`] when `key` is
    /// new and there are already [`MAX_LABELS`].
    pub fn insert(&mut self, key: &str, value: &str) -> Result<Option<String>, LabelError> {
        check_key(key).map_err(|reason| LabelError::Key {
            key: excerpt(key),
            reason,
        })?;
        if !value.is_empty() {
            check_name(value).map_err(|reason| LabelError::Value {
                key: key.to_owned(),
                value: excerpt(value),
                reason,
            })?;
        }
        if self.0.len() >= MAX_LABELS && !self.0.contains_key(key) {
            return Err(LabelError::TooMany);
        }
        Ok(self.0.insert(key.to_owned(), value.to_owned()))
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The labels in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns true if and only if there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns true if and only if every label of `selector` is set here to the same value
    /// (an empty selector matches every node).
    pub fn matches(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl FromStr for Labels {
    type Err = LabelError;

    /// Parses a comma-separated list, `region=eu,zone=eu-1a`; the empty string is no labels.
    /// Neither `,` nor `=` can appear in a key or a value, so the list is unambiguous.
    ///
    /// # Errors
    /// As [`Labels::parse`].
    fn from_str(s: &str) -> Result<Self, LabelError> {
        if s.is_empty() {
            return Ok(Self::new());
        }
        Self::parse(s.split(','))
    }
}

impl fmt::Display for Labels {
    /// `key=value` pairs in key order, comma-separated: what [`Labels::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Why a label was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// An item without `=`.
    #[error("label {item:?} has no '=': write KEY=VALUE, e.g. region=eu-west")]
    MissingEquals {
        /// The item (its start, if long).
        item: String,
    },
    /// A key that breaks the grammar.
    #[error("invalid label key {key:?}: {reason}")]
    Key {
        /// The key (its start, if long).
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A value that breaks the grammar.
    #[error("invalid value {value:?} for label {key:?}: {reason}")]
    Value {
        /// The key.
        key: String,
        /// The value (its start, if long).
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The same key twice in one list.
    #[error("label {key:?} is given twice: give each key once")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// More than [`MAX_LABELS`].
    #[error("more than {MAX_LABELS} labels: a node may have at most {MAX_LABELS}")]
    TooMany,
}

/// Checks a key: `[prefix/]name`.
fn check_key(key: &str) -> Result<(), &'static str> {
    match key.split_once('/') {
        None => check_name(key),
        Some((prefix, name)) => {
            check_prefix(prefix)?;
            if name.contains('/') {
                return Err("a key has at most one '/', after its prefix");
            }
            check_name(name)
        }
    }
}

/// Checks a key's name part or a non-empty value.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 63 bytes");
    }
    let bytes = name.as_bytes();
    let edges_ok =
        bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    let chars_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !(edges_ok && chars_ok) {
        return Err("use A-Z a-z 0-9 . _ -, starting and ending with a letter or digit");
    }
    Ok(())
}

/// Checks a key's prefix: a DNS subdomain.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    const RULE: &str = "the prefix before '/' must be a DNS subdomain: dot-separated labels of \
                        a-z 0-9 -, each starting and ending with a letter or digit";
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err("the prefix before '/' must be 1 to 253 bytes");
    }
    for part in prefix.split('.') {
        let bytes = part.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_NAME_LEN
            && bytes
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !ok {
            return Err(RULE);
        }
    }
    Ok(())
}

/// The start of `s`, for quoting in an error.
fn excerpt(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_the_kubernetes_grammar() {
        let labels = Labels::parse([
            "region=eu-west",
            "zone=eu-west-1a",
            "rack=",
            "shoal.example.com/tier=Gold_1",
            "A.b-c_9=x",
        ])
        .unwrap();
        assert_eq!(labels.len(), 5);
        assert_eq!(labels.get("region"), Some("eu-west"));
        assert_eq!(labels.get("rack"), Some(""));
        assert_eq!(labels.get("shoal.example.com/tier"), Some("Gold_1"));
        let text = labels.to_string();
        assert_eq!(text.parse::<Labels>().unwrap(), labels);
        assert_eq!("".parse::<Labels>().unwrap(), Labels::new());
    }

    #[test]
    fn refuses_with_reasons() {
        let err = |item: &str| Labels::parse([item]).unwrap_err();
        assert!(matches!(err("region"), LabelError::MissingEquals { .. }));
        assert!(matches!(err("=x"), LabelError::Key { .. }));
        for key in [
            "-a", "a-", "a b", "Ex.com/a", "a//b", "/a", "a/", "a/b/c", ".x/a", "x..y/a",
        ] {
            assert!(
                matches!(err(&format!("{key}=v")), LabelError::Key { .. }),
                "{key:?}"
            );
        }
        for value in ["-v", "v-", "a b", "a/b", "a=b"] {
            assert!(
                matches!(err(&format!("k={value}")), LabelError::Value { .. }),
                "{value:?}"
            );
        }
        assert!(Labels::parse([format!("{}=v", "k".repeat(63)).as_str()]).is_ok());
        assert!(matches!(
            err(&format!("{}=v", "k".repeat(64))),
            LabelError::Key { .. }
        ));
        assert!(matches!(
            err(&format!("k={}", "v".repeat(64))),
            LabelError::Value { .. }
        ));
        assert_eq!(
            Labels::parse(["a=1", "a=2"]),
            Err(LabelError::Duplicate { key: "a".into() })
        );
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            Labels::parse(many.iter().map(String::as_str)),
            Err(LabelError::TooMany)
        );
        assert!(Labels::parse(many[..MAX_LABELS].iter().map(String::as_str)).is_ok());
        assert_eq!(
            err("region").to_string(),
            "label \"region\" has no '=': write KEY=VALUE, e.g. region=eu-west"
        );
    }

    #[test]
    fn selectors() {
        let node: Labels = "region=eu,zone=eu-1a".parse().unwrap();
        assert!(node.matches(&Labels::new()));
        assert!(node.matches(&"region=eu".parse().unwrap()));
        assert!(!node.matches(&"region=us".parse().unwrap()));
        assert!(!node.matches(&"rack=r1".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn never_panics(items in prop::collection::vec("\\PC{0,20}", 0..5)) {
            let _ = Labels::parse(items.iter().map(String::as_str));
        }

        #[test]
        fn display_round_trips(pairs in prop::collection::btree_map(
            "([a-z]{1,5}\\.)?[a-z]{1,5}/[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?",
            "([A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?)?",
            0..10,
        )) {
            let mut labels = Labels::new();
            for (k, v) in &pairs {
                labels.insert(k, v).unwrap();
            }
            prop_assert_eq!(labels.to_string().parse::<Labels>().unwrap(), labels);
        }
    }
}
