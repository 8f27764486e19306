//! Label selectors ([`Selector`]): which nodes an operation is for, chosen by their
//! [`Labels`] rather than by name, as in Kubernetes: `role=web,region=eu`,
//! `rack in (r1,r2)`, `!metered`.
//!
//! # Grammar
//!
//! A selector is comma-separated requirements; whitespace around tokens is ignored.
//!
//! | Requirement            | A node matches when                                   |
//! |------------------------|-------------------------------------------------------|
//! | `key=value`            | it has `key` set to `value`                           |
//! | `key==value`           | the same as `key=value`                               |
//! | `key!=value`           | it has no `key`, or `key` set to another value        |
//! | `key in (v1,v2,...)`   | it has `key` set to one of the values                 |
//! | `key notin (v1,v2,...)`| it has no `key`, or `key` set to none of the values   |
//! | `key`                  | it has `key`, whatever its value                      |
//! | `!key`                 | it has no `key`                                       |
//!
//! A node matches a selector when it matches every requirement (AND). Note that `!=` and
//! `notin` match nodes without the key at all, as in Kubernetes; write `key,key!=value` to
//! want the key present.
//!
//! Keys and values follow the label grammar of [`Labels`]: a key is an optional DNS
//! subdomain prefix and `/`, then a name of 1 to 63 bytes of `A-Z a-z 0-9 . _ -` that starts
//! and ends with a letter or digit; a value is empty or follows the same rule as a name.
//! `key=` and `key!=` compare with the empty value. A set (`in`, `notin`) holds 1 to
//! [`MAX_SET_VALUES`] non-empty values (unlike Kubernetes, where `key in ()` is the set of
//! the empty value; write `key=` for that).
//!
//! The empty selector (the empty string, or only whitespace) has no requirements and
//! selects **all** nodes ([`Selector::all`]).
//!
//! # Canonical form
//!
//! [`Selector`]'s [`Display`](fmt::Display) writes requirements sorted by key, then by kind
//! (`=`, `!=`, `in`, `notin`, exists, `!`), then by value; set values sorted and without
//! repeats; identical requirements once; no whitespace except around `in` and `notin`:
//! `rack in (r1,r2),region=eu,!metered` reads back as `!metered,rack in (r1,r2),region=eu`.
//! Parsing the canonical text gives back the same selector, and two selectors are equal if
//! and only if their canonical texts are. The empty selector's canonical text is the empty
//! string.
//!
//! # Limits
//!
//! At most [`MAX_SELECTOR_LEN`] bytes of text, [`MAX_REQUIREMENTS`] requirements and
//! [`MAX_SET_VALUES`] values in one set, each checked before anything is stored. Errors
//! ([`SelectorError`]) give the byte offset and the offending token, and an example of what
//! is expected there.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::nodes::{LabelError, Labels};

/// The longest selector text, in bytes.
pub const MAX_SELECTOR_LEN: usize = 4096;

/// The most requirements in one selector (identical ones counted each time they are written).
pub const MAX_REQUIREMENTS: usize = 64;

/// The most values in one `in` or `notin` set (repeats counted each time they are written).
pub const MAX_SET_VALUES: usize = 64;

/// The longest excerpt of a token quoted in an error, in bytes.
const MAX_EXCERPT: usize = 64;

/// A parsed label selector: requirements that a node's labels must all meet. See the module
/// documentation for the grammar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The requirements, in canonical order, each once.
    requirements: BTreeSet<Requirement>,
}

/// One requirement on one key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Requirement {
    /// The label key.
    key: String,
    /// What the key's value must be. Declared after `key`, so requirements sort by key first.
    op: Op,
}

/// What a requirement asks of its key. The variant order is the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Op {
    /// `key=value`: set to the value.
    Eq(String),
    /// `key!=value`: absent, or set to another value.
    NotEq(String),
    /// `key in (...)`: set to one of the values.
    In(BTreeSet<String>),
    /// `key notin (...)`: absent, or set to none of the values.
    NotIn(BTreeSet<String>),
    /// `key`: set, to anything.
    Exists,
    /// `!key`: absent.
    NotExists,
}

impl Requirement {
    /// Returns true if and only if `labels` meet this requirement.
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Op::Eq(want) => value == Some(want.as_str()),
            Op::NotEq(want) => value != Some(want.as_str()),
            Op::In(set) => value.is_some_and(|v| set.contains(v)),
            Op::NotIn(set) => !value.is_some_and(|v| set.contains(v)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.op {
            Op::Eq(value) => write!(f, "{key}={value}"),
            Op::NotEq(value) => write!(f, "{key}!={value}"),
            Op::In(set) => write_set(f, key, "in", set),
            Op::NotIn(set) => write_set(f, key, "notin", set),
            Op::Exists => f.write_str(key),
            Op::NotExists => write!(f, "!{key}"),
        }
    }
}

/// Writes `key keyword (a,b,c)`.
fn write_set(
    f: &mut fmt::Formatter<'_>,
    key: &str,
    keyword: &str,
    set: &BTreeSet<String>,
) -> fmt::Result {
    write!(f, "{key} {keyword} (")?;
    for (i, value) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        f.write_str(value)?;
    }
    f.write_str(")")
}

impl Selector {
    /// The empty selector, which matches every node. Its text is the empty string.
    pub fn all() -> Self {
        Self::default()
    }

    /// Returns true if and only if `labels` meet every requirement (always, for
    /// [`Selector::all`]).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Returns true if and only if this is the empty selector, which matches every node.
    pub fn is_all(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// Parses a selector; see the module documentation for the grammar. The empty string
    /// (or only whitespace) is [`Selector::all`].
    ///
    /// # Errors
    /// [`SelectorError::TooLong`] first, before anything else is looked at; then the first
    /// problem from the left.
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        if s.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong { len: s.len() });
        }
        Parser::new(s).selector()
    }
}

impl fmt::Display for Selector {
    /// The canonical text; see the module documentation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Why a selector was refused. Byte offsets count from the start of the text, whitespace
/// included; quoted tokens are cut to their first 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// More than [`MAX_SELECTOR_LEN`] bytes.
    #[error(
        "selector: {len} bytes is longer than the limit of {MAX_SELECTOR_LEN} bytes (a selector \
         is a short list of requirements, like `role=web,region=eu`)"
    )]
    TooLong {
        /// The text's length in bytes.
        len: usize,
    },
    /// More than [`MAX_REQUIREMENTS`] requirements.
    #[error(
        "selector: the requirement `{token}` at byte {at} is one more than the limit of \
         {MAX_REQUIREMENTS} (join values of one key in a set, like `rack in (r1,r2)`)"
    )]
    TooManyRequirements {
        /// Where the first requirement beyond the limit starts.
        at: usize,
        /// Its first token.
        token: String,
    },
    /// More than [`MAX_SET_VALUES`] values in one set.
    #[error(
        "selector: the value `{token}` at byte {at} is one more than the limit of \
         {MAX_SET_VALUES} values in the set opened at byte {open} (like `rack in (r1,r2)`)"
    )]
    TooManyValues {
        /// Where the set's `(` is.
        open: usize,
        /// Where the first value beyond the limit is.
        at: usize,
        /// That value.
        token: String,
    },
    /// A key that breaks the label grammar.
    #[error(
        "selector: invalid label key `{token}` at byte {at}: {reason} (like `role=web` or \
         `example.com/tier=gold`)"
    )]
    BadKey {
        /// Where the key is.
        at: usize,
        /// The key.
        token: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A value that breaks the label grammar.
    #[error(
        "selector: invalid label value `{token}` at byte {at}: {reason} (like `role=web` or \
         `rack in (r1,r2)`)"
    )]
    BadValue {
        /// Where the value is.
        at: usize,
        /// The value.
        token: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// `key in ()` or `key notin ()`.
    #[error(
        "selector: the set opened at byte {open} is empty: give at least one value (like \
         `rack in (r1,r2)`), or test for the key with `key` or `!key`"
    )]
    EmptySet {
        /// Where the set's `(` is.
        open: usize,
    },
    /// A token, or the end of the text, where the grammar wants something else.
    #[error("selector: unexpected {found} at byte {at}; expected {expected}", found = Found(.found))]
    Unexpected {
        /// Where the token is (the text's length, at the end).
        at: usize,
        /// The token, or `None` at the end of the text.
        found: Option<String>,
        /// What would have been valid there.
        expected: Expected,
    },
}

/// What the selector grammar wants at some point, in a [`SelectorError::Unexpected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expected {
    /// The start of a requirement: a key or `!`.
    Requirement,
    /// A key after `!`.
    KeyAfterBang,
    /// What may follow a key.
    Operator,
    /// A value after `=`, `==` or `!=`, or the end of the requirement for the empty value.
    Value,
    /// `(` after `in` or `notin`.
    OpenSet,
    /// A value in a set.
    SetValue {
        /// Where the set's `(` is.
        open: usize,
    },
    /// `,` or `)` after a value in a set.
    SetCloseOrComma {
        /// Where the set's `(` is.
        open: usize,
    },
    /// `,` or the end after a requirement.
    CommaOrEnd,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requirement => f.write_str(
                "a requirement: a label key or `!` (like `role=web`, `rack in (r1,r2)` or \
                 `!metered`)",
            ),
            Self::KeyAfterBang => f.write_str("a label key after `!` (like `!metered`)"),
            Self::Operator => f.write_str(
                "`=`, `==`, `!=`, `in`, `notin`, `,` or the end after a key (like `role=web`, \
                 `rack in (r1,r2)` or `metered`)",
            ),
            Self::Value => f.write_str(
                "a value, `,` or the end after the operator (like `role=web`; `role=` is the \
                 empty value)",
            ),
            Self::OpenSet => f.write_str(
                "`(` to open a set of values after `in` or `notin` (like `rack in (r1,r2)`)",
            ),
            Self::SetValue { open } => write!(
                f,
                "a value in the set opened at byte {open} (like `rack in (r1,r2)`)"
            ),
            Self::SetCloseOrComma { open } => write!(
                f,
                "`,` or `)` to close the set opened at byte {open} (like `rack in (r1,r2)`)"
            ),
            Self::CommaOrEnd => {
                f.write_str("`,` and another requirement, or the end (like `role=web,region=eu`)")
            }
        }
    }
}

/// Formats the token of a [`SelectorError::Unexpected`]: quoted, or "end" for `None`.
struct Found<'a>(&'a Option<String>);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(token) => write!(f, "`{token}`"),
            None => f.write_str("end"),
        }
    }
}

/// The kinds of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The end of the text.
    End,
    /// A key, a value, `in` or `notin`: a run of anything but whitespace and `!=(),`.
    Word,
    /// `!`
    Bang,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
}

/// A token: its kind, text and byte offset.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    at: usize,
}

/// Returns true for the bytes that end a word.
fn is_delimiter(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',')
}

/// Splits the text into tokens, one at a time.
struct Lexer<'a> {
    /// The whole text, for offsets.
    input: &'a str,
    /// What is left to read.
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Self { input, rest: input }
    }

    /// The next token, or [`Kind::End`] (again and again) at the end.
    fn next_token(&mut self) -> Token<'a> {
        let rest = self
            .rest
            .trim_start_matches(|c: char| c.is_ascii_whitespace());
        let at = self.input.len() - rest.len();
        let len = if rest.starts_with("!=") || rest.starts_with("==") {
            2
        } else if rest.starts_with(is_delimiter) {
            1
        } else {
            rest.find(is_delimiter).unwrap_or(rest.len())
        };
        // `len` is 0, 1 or 2 ASCII bytes, or ends at a delimiter or the end: a char boundary.
        let (text, tail) = rest.split_at_checked(len).unwrap_or((rest, ""));
        self.rest = tail;
        let kind = match text {
            "" => Kind::End,
            "!" => Kind::Bang,
            "=" => Kind::Eq,
            "==" => Kind::EqEq,
            "!=" => Kind::NotEq,
            "(" => Kind::Open,
            ")" => Kind::Close,
            "," => Kind::Comma,
            _ => Kind::Word,
        };
        Token { kind, text, at }
    }
}

/// A recursive-descent parser with one token of lookahead.
struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The next token, not yet consumed.
    peek: Token<'a>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        let mut lexer = Lexer::new(input);
        let peek = lexer.next_token();
        Self { lexer, peek }
    }

    /// Consumes and returns the next token.
    fn bump(&mut self) -> Token<'a> {
        let token = self.peek;
        self.peek = self.lexer.next_token();
        token
    }

    /// selector := "" | requirement ("," requirement)*
    fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut selector = Selector::all();
        if self.peek.kind == Kind::End {
            return Ok(selector);
        }
        let mut count = 0;
        loop {
            if count == MAX_REQUIREMENTS {
                return Err(SelectorError::TooManyRequirements {
                    at: self.peek.at,
                    token: excerpt(self.peek.text),
                });
            }
            selector.requirements.insert(self.requirement()?);
            count += 1;
            let token = self.bump();
            match token.kind {
                Kind::Comma => {}
                Kind::End => return Ok(selector),
                _ => return Err(unexpected(token, Expected::CommaOrEnd)),
            }
        }
    }

    /// requirement := "!" key | key | key ("=" | "==" | "!=") value? | key ("in" | "notin") set
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let token = self.bump();
        match token.kind {
            Kind::Bang => {
                let key = self.bump();
                if key.kind != Kind::Word {
                    return Err(unexpected(key, Expected::KeyAfterBang));
                }
                Ok(Requirement {
                    key: checked_key(key)?,
                    op: Op::NotExists,
                })
            }
            Kind::Word => {
                let key = checked_key(token)?;
                let op = self.op()?;
                Ok(Requirement { key, op })
            }
            _ => Err(unexpected(token, Expected::Requirement)),
        }
    }

    /// What follows a key.
    fn op(&mut self) -> Result<Op, SelectorError> {
        match self.peek.kind {
            Kind::Comma | Kind::End => Ok(Op::Exists),
            Kind::Eq | Kind::EqEq => {
                self.bump();
                Ok(Op::Eq(self.value()?))
            }
            Kind::NotEq => {
                self.bump();
                Ok(Op::NotEq(self.value()?))
            }
            Kind::Word if self.peek.text == "in" => {
                self.bump();
                Ok(Op::In(self.set()?))
            }
            Kind::Word if self.peek.text == "notin" => {
                self.bump();
                Ok(Op::NotIn(self.set()?))
            }
            _ => Err(unexpected(self.peek, Expected::Operator)),
        }
    }

    /// The value after `=`, `==` or `!=`: a word, or nothing (the empty value) before `,` or
    /// the end.
    fn value(&mut self) -> Result<String, SelectorError> {
        match self.peek.kind {
            Kind::Comma | Kind::End => Ok(String::new()),
            Kind::Word => checked_value(self.bump()),
            _ => Err(unexpected(self.peek, Expected::Value)),
        }
    }

    /// set := "(" value ("," value)* ")"
    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let open = self.bump();
        if open.kind != Kind::Open {
            return Err(unexpected(open, Expected::OpenSet));
        }
        let open = open.at;
        if self.peek.kind == Kind::Close {
            return Err(SelectorError::EmptySet { open });
        }
        let mut set = BTreeSet::new();
        let mut count = 0;
        loop {
            let value = self.bump();
            if value.kind != Kind::Word {
                return Err(unexpected(value, Expected::SetValue { open }));
            }
            if count == MAX_SET_VALUES {
                return Err(SelectorError::TooManyValues {
                    open,
                    at: value.at,
                    token: excerpt(value.text),
                });
            }
            set.insert(checked_value(value)?);
            count += 1;
            let next = self.bump();
            match next.kind {
                Kind::Comma => {}
                Kind::Close => return Ok(set),
                _ => return Err(unexpected(next, Expected::SetCloseOrComma { open })),
            }
        }
    }
}

/// A [`SelectorError::Unexpected`] for `token`.
fn unexpected(token: Token<'_>, expected: Expected) -> SelectorError {
    SelectorError::Unexpected {
        at: token.at,
        found: (token.kind != Kind::End).then(|| excerpt(token.text)),
        expected,
    }
}

/// The key in `token`, checked by the label grammar.
fn checked_key(token: Token<'_>) -> Result<String, SelectorError> {
    // The rules are those of `Labels::insert`, asked directly so they cannot drift apart.
    match Labels::new().insert(token.text, "") {
        Ok(_) => Ok(token.text.to_owned()),
        Err(error) => Err(SelectorError::BadKey {
            at: token.at,
            token: excerpt(token.text),
            reason: match error {
                LabelError::Key { reason, .. } => reason,
                _ => "not a valid label key",
            },
        }),
    }
}

/// The value in `token`, checked by the label grammar.
fn checked_value(token: Token<'_>) -> Result<String, SelectorError> {
    match Labels::new().insert("k", token.text) {
        Ok(_) => Ok(token.text.to_owned()),
        Err(error) => Err(SelectorError::BadValue {
            at: token.at,
            token: excerpt(token.text),
            reason: match error {
                LabelError::Value { reason, .. } => reason,
                _ => "not a valid label value",
            },
        }),
    }
}

/// The first [`MAX_EXCERPT`] bytes of `s`, cut at a character boundary.
fn excerpt(s: &str) -> String {
    s.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= MAX_EXCERPT)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    fn sel(s: &str) -> Selector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> SelectorError {
        match s.parse::<Selector>() {
            Ok(parsed) => panic!("{s:?} should be refused, but parsed as {parsed:?}"),
            Err(e) => e,
        }
    }

    fn labels(s: &str) -> Labels {
        s.parse().unwrap()
    }

    /// Asserts which of `nodes` `selector` matches.
    #[track_caller]
    fn check(selector: &str, nodes: &[(&str, bool)]) {
        let s = sel(selector);
        for &(node, want) in nodes {
            assert_eq!(
                s.matches(&labels(node)),
                want,
                "selector {selector:?} on node {node:?}"
            );
        }
    }

    #[test]
    fn equality() {
        for selector in ["role=web", "role==web", "  role =  web ", "role\t==\nweb"] {
            check(
                selector,
                &[
                    ("role=web", true),
                    ("role=web,region=eu", true),
                    ("role=db", false),
                    ("role=", false),
                    ("", false),
                    ("region=web", false),
                ],
            );
        }
        check(
            "role=",
            &[("role=", true), ("role=web", false), ("", false)],
        );
    }

    #[test]
    fn inequality_matches_absent_keys() {
        for selector in ["role!=web", " role != web "] {
            check(
                selector,
                &[
                    ("role=web", false),
                    ("role=db", true),
                    ("role=", true),
                    ("", true),
                    ("region=eu", true),
                ],
            );
        }
        check("role!=", &[("role=", false), ("role=x", true), ("", true)]);
        check(
            "role,role!=web",
            &[("role=db", true), ("role=web", false), ("", false)],
        );
    }

    #[test]
    fn sets() {
        for selector in [
            "rack in (r1,r2)",
            "rack in(r1 , r2)",
            " rack  in  ( r2,r1,r1 ) ",
        ] {
            check(
                selector,
                &[
                    ("rack=r1", true),
                    ("rack=r2", true),
                    ("rack=r3", false),
                    ("rack=", false),
                    ("", false),
                ],
            );
        }
        check("rack in (r1)", &[("rack=r1", true), ("rack=r2", false)]);
        for selector in ["rack notin (r1,r2)", "rack notin(r1,r2)"] {
            check(
                selector,
                &[
                    ("rack=r1", false),
                    ("rack=r2", false),
                    ("rack=r3", true),
                    ("rack=", true),
                    ("", true),
                    ("zone=z", true),
                ],
            );
        }
        // `in` and `notin` are keywords only after a key.
        check("in in (notin)", &[("in=notin", true), ("in=in", false)]);
        check("notin", &[("notin=", true), ("in=", false)]);
    }

    #[test]
    fn existence() {
        check(
            "metered",
            &[("metered=", true), ("metered=yes", true), ("", false)],
        );
        for selector in ["!metered", "! metered", " !metered "] {
            check(
                selector,
                &[
                    ("metered=", false),
                    ("metered=yes", false),
                    ("", true),
                    ("a=b", true),
                ],
            );
        }
        check(
            "example.com/gpu,!example.com/old",
            &[
                ("example.com/gpu=a100", true),
                ("example.com/gpu=a100,example.com/old=", false),
                ("gpu=a100", false),
            ],
        );
    }

    #[test]
    fn requirements_are_anded() {
        check(
            "role=web,region=eu,rack in (r1,r2),!metered",
            &[
                ("role=web,region=eu,rack=r1", true),
                ("role=web,region=eu,rack=r2,zone=z", true),
                ("role=web,region=eu,rack=r1,metered=yes", false),
                ("role=web,region=us,rack=r1", false),
                ("role=web,rack=r1", false),
                ("", false),
            ],
        );
        // Contradictions are allowed, and match nothing.
        check("a=1,a=2", &[("a=1", false), ("a=2", false), ("", false)]);
    }

    #[test]
    fn the_empty_selector_selects_all() {
        for text in ["", " ", " \t\r\n "] {
            let s = sel(text);
            assert!(s.is_all());
            assert_eq!(s, Selector::all());
            assert_eq!(s.to_string(), "");
            assert!(s.matches(&Labels::new()));
            assert!(s.matches(&labels("a=b,c=")));
        }
        assert_eq!(Selector::default(), Selector::all());
        assert!(!sel("a").is_all());
    }

    #[test]
    fn canonical_text() {
        let cases = [
            ("role=web", "role=web"),
            ("role==web", "role=web"),
            (" role = ", "role="),
            ("role != web", "role!=web"),
            ("rack in ( r2 , r1 , r2 )", "rack in (r1,r2)"),
            ("rack notin(r1)", "rack notin (r1)"),
            ("! metered", "!metered"),
            (
                "region=eu,role=web,rack in (r2,r1),!metered",
                "!metered,rack in (r1,r2),region=eu,role=web",
            ),
            // Sorted by key, then kind: `=`, `!=`, `in`, `notin`, exists, `!`.
            (
                "a,!a,a notin (x),a in (x),a!=x,a=x",
                "a=x,a!=x,a in (x),a notin (x),a,!a",
            ),
            // Identical requirements once.
            ("a=1,a==1, a = 1", "a=1"),
            ("a in (y,x),a in (x,y,x)", "a in (x,y)"),
            ("a=2,a=1", "a=1,a=2"),
        ];
        for (text, canonical) in cases {
            let s = sel(text);
            assert_eq!(s.to_string(), canonical, "{text:?}");
            assert_eq!(sel(canonical), s, "{text:?}");
        }
        assert_eq!(sel("b=1,a=1"), sel("a=1,b=1"));
        assert_ne!(sel("a in (x)"), sel("a=x"));
    }

    #[test]
    fn too_long() {
        // Just at the limit: a valid selector of exactly MAX_SELECTOR_LEN bytes.
        let mut text = String::from("k=v");
        while text.len() < MAX_SELECTOR_LEN {
            text.push(' ');
        }
        assert_eq!(text.len(), MAX_SELECTOR_LEN);
        assert_eq!(sel(&text), sel("k=v"));
        text.push(' ');
        let e = err(&text);
        assert_eq!(e, SelectorError::TooLong { len: 4097 });
        assert_eq!(
            e.to_string(),
            "selector: 4097 bytes is longer than the limit of 4096 bytes (a selector is a \
             short list of requirements, like `role=web,region=eu`)"
        );
        // Length is checked first, before any other problem.
        assert!(matches!(
            err(&"(".repeat(MAX_SELECTOR_LEN + 1)),
            SelectorError::TooLong { .. }
        ));
    }

    #[test]
    fn too_many_requirements() {
        let requirements: Vec<String> = (0..=MAX_REQUIREMENTS).map(|i| format!("k{i}")).collect();
        let at_limit = requirements[..MAX_REQUIREMENTS].join(",");
        assert_eq!(
            sel(&at_limit).to_string().split(',').count(),
            MAX_REQUIREMENTS
        );
        let over = requirements.join(",");
        let at = at_limit.len() + 1;
        let e = err(&over);
        assert_eq!(
            e,
            SelectorError::TooManyRequirements {
                at,
                token: "k64".into()
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "selector: the requirement `k64` at byte {at} is one more than the limit of 64 \
                 (join values of one key in a set, like `rack in (r1,r2)`)"
            )
        );
        // Repeats count as written, even though they are stored once.
        let repeated = vec!["a=1"; MAX_REQUIREMENTS + 1].join(",");
        assert!(matches!(
            err(&repeated),
            SelectorError::TooManyRequirements { at: 256, .. }
        ));
        assert_eq!(
            sel(&vec!["a=1"; MAX_REQUIREMENTS].join(",")).to_string(),
            "a=1"
        );
    }

    #[test]
    fn too_many_values() {
        let values: Vec<String> = (0..=MAX_SET_VALUES).map(|i| format!("v{i}")).collect();
        let at_limit = format!("k in ({})", values[..MAX_SET_VALUES].join(","));
        let parsed = sel(&at_limit);
        let Op::In(set) = &parsed.requirements.first().unwrap().op else {
            panic!("not a set");
        };
        assert_eq!(set.len(), MAX_SET_VALUES);
        let over = format!("k notin ({})", values.join(","));
        let at = over.find("v64").unwrap();
        let e = err(&over);
        assert_eq!(
            e,
            SelectorError::TooManyValues {
                open: 8,
                at,
                token: "v64".into()
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "selector: the value `v64` at byte {at} is one more than the limit of 64 \
                 values in the set opened at byte 8 (like `rack in (r1,r2)`)"
            )
        );
    }

    #[test]
    fn bad_keys() {
        for (text, at, token) in [
            ("-a=b", 0, "-a"),
            ("a-", 0, "a-"),
            ("  Ex.com/a in (x)", 2, "Ex.com/a"),
            ("a/b/c", 0, "a/b/c"),
            ("x=1, !/a", 6, "/a"),
            ("é", 0, "é"),
        ] {
            let e = err(text);
            let SelectorError::BadKey {
                at: got_at,
                token: got_token,
                reason,
            } = &e
            else {
                panic!("{text:?}: {e:?}");
            };
            assert_eq!((*got_at, got_token.as_str()), (at, token), "{text:?}");
            assert!(!reason.is_empty());
            assert!(
                e.to_string().starts_with(&format!(
                    "selector: invalid label key `{token}` at byte {at}: "
                )),
                "{e}"
            );
        }
        assert_eq!(
            err("a-=b").to_string(),
            "selector: invalid label key `a-` at byte 0: use A-Z a-z 0-9 . _ -, starting and \
             ending with a letter or digit (like `role=web` or `example.com/tier=gold`)"
        );
        // Just below and above the 63-byte name limit.
        assert!(
            sel(&format!("{}=v", "k".repeat(63)))
                .matches(&labels(&format!("{}=v", "k".repeat(63))))
        );
        let e = err(&format!("{}=v", "k".repeat(100)));
        assert_eq!(
            e,
            SelectorError::BadKey {
                at: 0,
                token: "k".repeat(64),
                reason: "longer than 63 bytes"
            }
        );
    }

    #[test]
    fn bad_values() {
        for (text, at, token) in [
            ("a=-v", 2, "-v"),
            ("a != v-", 5, "v-"),
            ("a in (x, y/z)", 9, "y/z"),
            ("a notin (_)", 9, "_"),
        ] {
            let e = err(text);
            assert!(
                matches!(&e, SelectorError::BadValue { at: a, token: t, .. } if *a == at && t == token),
                "{text:?}: {e:?}"
            );
        }
        assert_eq!(
            err("a=b c").to_string(),
            "selector: unexpected `c` at byte 4; expected `,` and another requirement, or the \
             end (like `role=web,region=eu`)"
        );
        assert_eq!(
            err("a=v-").to_string(),
            "selector: invalid label value `v-` at byte 2: use A-Z a-z 0-9 . _ -, starting and \
             ending with a letter or digit (like `role=web` or `rack in (r1,r2)`)"
        );
        assert!(
            sel(&format!("k={}", "v".repeat(63)))
                .matches(&labels(&format!("k={}", "v".repeat(63))))
        );
        assert!(matches!(
            err(&format!("k={}", "v".repeat(64))),
            SelectorError::BadValue {
                at: 2,
                reason: "longer than 63 bytes",
                ..
            }
        ));
    }

    #[test]
    fn empty_sets() {
        for (text, open) in [("rack in ()", 8), ("rack notin( )", 10)] {
            let e = err(text);
            assert_eq!(e, SelectorError::EmptySet { open });
            assert_eq!(
                e.to_string(),
                format!(
                    "selector: the set opened at byte {open} is empty: give at least one value \
                     (like `rack in (r1,r2)`), or test for the key with `key` or `!key`"
                )
            );
        }
    }

    #[test]
    fn unexpected_tokens() {
        let cases = [
            // (text, at, found, expected)
            (",", 0, Some(","), Expected::Requirement),
            ("a,", 2, None, Expected::Requirement),
            ("a,,b", 2, Some(","), Expected::Requirement),
            ("=b", 0, Some("="), Expected::Requirement),
            ("!", 1, None, Expected::KeyAfterBang),
            ("!!a", 1, Some("!"), Expected::KeyAfterBang),
            ("!a=b", 2, Some("="), Expected::CommaOrEnd),
            ("a b", 2, Some("b"), Expected::Operator),
            ("a (b)", 2, Some("("), Expected::Operator),
            ("a=(b)", 2, Some("("), Expected::Value),
            ("a===b", 3, Some("="), Expected::Value),
            ("a=!b", 2, Some("!"), Expected::Value),
            ("rack in", 7, None, Expected::OpenSet),
            ("rack in r1", 8, Some("r1"), Expected::OpenSet),
            (
                "rack in (r1,r2",
                14,
                None,
                Expected::SetCloseOrComma { open: 8 },
            ),
            (
                "rack in (r1 r2)",
                12,
                Some("r2"),
                Expected::SetCloseOrComma { open: 8 },
            ),
            (
                "rack in (r1,)",
                12,
                Some(")"),
                Expected::SetValue { open: 8 },
            ),
            (
                "rack in (,r1)",
                9,
                Some(","),
                Expected::SetValue { open: 8 },
            ),
            (
                "rack in (r1",
                11,
                None,
                Expected::SetCloseOrComma { open: 8 },
            ),
            ("rack in (r1))", 12, Some(")"), Expected::CommaOrEnd),
        ];
        for (text, at, found, expected) in cases {
            assert_eq!(
                err(text),
                SelectorError::Unexpected {
                    at,
                    found: found.map(str::to_owned),
                    expected
                },
                "{text:?}"
            );
        }
        assert_eq!(
            err("rack in (r1,r2").to_string(),
            "selector: unexpected end at byte 14; expected `,` or `)` to close the set opened \
             at byte 8 (like `rack in (r1,r2)`)"
        );
        assert_eq!(
            err("a,,b").to_string(),
            "selector: unexpected `,` at byte 2; expected a requirement: a label key or `!` \
             (like `role=web`, `rack in (r1,r2)` or `!metered`)"
        );
        assert_eq!(
            err("!").to_string(),
            "selector: unexpected end at byte 1; expected a label key after `!` (like \
             `!metered`)"
        );
        assert_eq!(
            err("a b").to_string(),
            "selector: unexpected `b` at byte 2; expected `=`, `==`, `!=`, `in`, `notin`, `,` \
             or the end after a key (like `role=web`, `rack in (r1,r2)` or `metered`)"
        );
        assert_eq!(
            err("a=(").to_string(),
            "selector: unexpected `(` at byte 2; expected a value, `,` or the end after the \
             operator (like `role=web`; `role=` is the empty value)"
        );
        assert_eq!(
            err("a in b").to_string(),
            "selector: unexpected `b` at byte 5; expected `(` to open a set of values after \
             `in` or `notin` (like `rack in (r1,r2)`)"
        );
        assert_eq!(
            err("a in (b,)").to_string(),
            "selector: unexpected `)` at byte 8; expected a value in the set opened at byte 5 \
             (like `rack in (r1,r2)`)"
        );
    }

    #[test]
    fn excerpts_are_at_most_64_bytes_on_char_boundaries() {
        let long = format!("a {}", "é".repeat(100));
        let SelectorError::Unexpected {
            found: Some(found), ..
        } = err(&long)
        else {
            panic!("not unexpected");
        };
        assert_eq!(found, "é".repeat(32));
        assert_eq!(excerpt(&"x".repeat(65)), "x".repeat(64));
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt(&format!("{}€", "x".repeat(62))), "x".repeat(62));
    }

    /// A valid key: optionally prefixed.
    fn key() -> impl Strategy<Value = String> {
        "([a-z0-9]{1,4}\\.)?([a-z]{1,4}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,6}[A-Za-z0-9])?"
    }

    /// A valid non-empty value.
    fn value() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([A-Za-z0-9._-]{0,6}[A-Za-z0-9])?"
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let set = || prop::collection::btree_set(value(), 1..5);
        let op = prop_oneof![
            prop_oneof![value(), Just(String::new())].prop_map(Op::Eq),
            prop_oneof![value(), Just(String::new())].prop_map(Op::NotEq),
            set().prop_map(Op::In),
            set().prop_map(Op::NotIn),
            Just(Op::Exists),
            Just(Op::NotExists),
        ];
        (key(), op).prop_map(|(key, op)| Requirement { key, op })
    }

    fn selector() -> impl Strategy<Value = Selector> {
        prop::collection::btree_set(requirement(), 0..8)
            .prop_map(|requirements| Selector { requirements })
    }

    proptest! {
        #[test]
        fn display_round_trips(s in selector()) {
            let text = s.to_string();
            prop_assert_eq!(text.parse::<Selector>().unwrap(), s.clone());
            // Whitespace around every token reads the same.
            let spaced = text
                .replace(',', " , ")
                .replace("!=", " != ")
                .replace('(', " ( ")
                .replace(')', " ) ");
            prop_assert_eq!(spaced.parse::<Selector>().unwrap(), s);
        }

        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = text.parse::<Selector>();
        }

        #[test]
        fn never_panics_near_the_grammar(text in "([a-c!=(), \t]|in |notin |é){0,60}") {
            if let Ok(s) = text.parse::<Selector>() {
                prop_assert_eq!(s.to_string().parse::<Selector>().unwrap(), s);
            }
        }

        #[test]
        fn negations_are_complements(
            k in "[a-c]",
            v in "[x-z]",
            node in prop::collection::btree_map("[a-c]", "[x-z]?", 0..3),
        ) {
            let mut labels = Labels::new();
            for (nk, nv) in &node {
                labels.insert(nk, nv).unwrap();
            }
            let m = |s: String| s.parse::<Selector>().unwrap().matches(&labels);
            prop_assert_ne!(m(format!("{k}={v}")), m(format!("{k}!={v}")));
            prop_assert_ne!(m(format!("{k} in ({v},w)")), m(format!("{k} notin ({v},w)")));
            prop_assert_ne!(m(k.clone()), m(format!("!{k}")));
        }
    }
}
