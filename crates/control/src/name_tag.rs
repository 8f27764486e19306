//! Artifact names: `NAME:TAG`, validated once at the edge ([`NameTag`]) so nothing further in
//! holds a malformed one.
//!
//! The grammar, chosen so a name is also a safe path and a safe URL segment:
//!
//! - `NAME` is 1 to [`MAX_NAME_LEN`] bytes of one or more `/`-separated segments; a segment is
//!   non-empty, uses `a-z`, `0-9`, `.`, `_` and `-`, and starts and ends with `a-z` or `0-9`
//!   (so `.` and `..` are never segments);
//! - `TAG` is 1 to [`MAX_TAG_LEN`] bytes of `A-Z`, `a-z`, `0-9`, `_`, `.` and `-`, starting with
//!   a letter, a digit or `_`;
//! - exactly one `:` separates them: names cannot contain `:`, and every name has a tag (tags
//!   are immutable, so "latest" is not implied).

use std::fmt;
use std::str::FromStr;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// The longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// A validated `NAME:TAG`. Ordered, compared and hashed by its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameTag {
    /// `name:tag`.
    text: String,
    /// The byte offset of the `:` in `text`.
    colon: usize,
}

impl NameTag {
    /// The name, before the `:`.
    pub fn name(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The tag, after the `:`.
    pub fn tag(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// `name:tag`, as parsed and displayed.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for NameTag {
    type Err = NameTagError;

    /// Parses `NAME:TAG` by the grammar in the module documentation. Nothing is trimmed or
    /// case-folded: text that is not already in the grammar is refused.
    ///
    /// # Errors
    /// The first problem found, left to right: the name's (empty, too long, a bad character,
    /// an empty segment, a segment edge), then [`NameTagError::MissingTag`] or
    /// [`NameTagError::ExtraColon`], then the tag's.
    fn from_str(s: &str) -> Result<Self, NameTagError> {
        let colon = s.find(':');
        check_name(&s[..colon.unwrap_or(s.len())])?;
        let colon = colon.ok_or(NameTagError::MissingTag)?;
        let tag = &s[colon + 1..];
        if let Some(extra) = tag.find(':') {
            return Err(NameTagError::ExtraColon {
                offset: colon + 1 + extra,
            });
        }
        check_tag(tag, colon + 1)?;
        Ok(Self {
            text: s.to_owned(),
            colon,
        })
    }
}

impl fmt::Display for NameTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for NameTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameTag({:?})", self.text)
    }
}

/// Why a `NAME:TAG` was refused. Offsets are byte offsets into the whole text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameTagError {
    /// Nothing before the `:` (or no text at all).
    #[error("missing name: write NAME:TAG, e.g. app/build:1234")]
    EmptyName,
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("name of {len} bytes is longer than the {MAX_NAME_LEN}-byte limit")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// A character outside `a-z 0-9 . _ - /` in the name.
    #[error(
        "invalid character {ch:?} at byte {offset} in name: names use lowercase a-z, 0-9, \
         '.', '_', '-', and '/' between segments"
    )]
    InvalidNameChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// An empty `/`-separated segment: a leading, trailing or doubled `/`.
    #[error("empty segment at byte {offset} in name: remove the leading, trailing or doubled '/'")]
    EmptySegment {
        /// Where the empty segment starts.
        offset: usize,
    },
    /// A segment that starts or ends with `.`, `_` or `-`.
    #[error(
        "{ch:?} at byte {offset} in name: each '/'-separated segment must start and end with \
         a lowercase letter or digit"
    )]
    SegmentEdge {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// No `:` at all.
    #[error("missing tag: add ':TAG' (tags are immutable; e.g. app/build:1234)")]
    MissingTag,
    /// A second `:`.
    #[error("second ':' at byte {offset}: names cannot contain ':', so write exactly one")]
    ExtraColon {
        /// Its byte offset.
        offset: usize,
    },
    /// Nothing after the `:`.
    #[error("empty tag after ':': write NAME:TAG, e.g. app/build:1234")]
    EmptyTag,
    /// A tag longer than [`MAX_TAG_LEN`].
    #[error("tag of {len} bytes is longer than the {MAX_TAG_LEN}-byte limit")]
    TagTooLong {
        /// The tag's length in bytes.
        len: usize,
    },
    /// A tag starting with `.` or `-`.
    #[error("{ch:?} at byte {offset}: a tag must start with a letter, a digit or '_'")]
    TagStart {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// A character outside `A-Z a-z 0-9 _ . -` in the tag.
    #[error(
        "invalid character {ch:?} at byte {offset} in tag: tags use A-Z, a-z, 0-9, '_', '.' \
         and '-'"
    )]
    InvalidTagChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
}

/// Checks `name`, which starts at byte 0 of the text.
fn check_name(name: &str) -> Result<(), NameTagError> {
    if name.is_empty() {
        return Err(NameTagError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameTagError::NameTooLong { len: name.len() });
    }
    let edge = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let mut segment_start = 0;
    let mut last = None;
    for (offset, ch) in name.char_indices() {
        if ch == '/' {
            end_segment(segment_start, last)?;
            segment_start = offset + 1;
            last = None;
            continue;
        }
        if !(edge(ch) || matches!(ch, '.' | '_' | '-')) {
            return Err(NameTagError::InvalidNameChar { ch, offset });
        }
        if offset == segment_start && !edge(ch) {
            return Err(NameTagError::SegmentEdge { ch, offset });
        }
        last = Some((offset, ch));
    }
    end_segment(segment_start, last)
}

/// Checks the end of the segment starting at `start` whose last character is `last`.
fn end_segment(start: usize, last: Option<(usize, char)>) -> Result<(), NameTagError> {
    match last {
        None => Err(NameTagError::EmptySegment { offset: start }),
        Some((offset, ch)) if !(ch.is_ascii_lowercase() || ch.is_ascii_digit()) => {
            Err(NameTagError::SegmentEdge { ch, offset })
        }
        Some(_) => Ok(()),
    }
}

/// Checks `tag`, which starts at byte `base` of the text.
fn check_tag(tag: &str, base: usize) -> Result<(), NameTagError> {
    if tag.is_empty() {
        return Err(NameTagError::EmptyTag);
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(NameTagError::TagTooLong { len: tag.len() });
    }
    for (i, ch) in tag.char_indices() {
        let offset = base + i;
        if !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')) {
            return Err(NameTagError::InvalidTagChar { ch, offset });
        }
        if i == 0 && !(ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(NameTagError::TagStart { ch, offset });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    fn parse(s: &str) -> Result<NameTag, NameTagError> {
        s.parse()
    }

    #[test]
    fn accepts_the_grammar() {
        for ok in [
            "a:1",
            "app/build:1234",
            "org/team/app:v1.2.3-rc_1",
            "a.b_c-d/e9:_",
            "0:0",
            "x:LATEST",
        ] {
            let nt = parse(ok).unwrap();
            assert_eq!(nt.as_str(), ok);
            assert_eq!(nt.to_string(), ok);
            assert_eq!(format!("{}:{}", nt.name(), nt.tag()), ok);
        }
        let nt = parse("app/build:1234").unwrap();
        assert_eq!((nt.name(), nt.tag()), ("app/build", "1234"));
    }

    #[test]
    fn says_what_is_wrong_and_where() {
        use NameTagError::*;
        let cases: &[(&str, NameTagError)] = &[
            ("", EmptyName),
            (":1", EmptyName),
            ("app", MissingTag),
            ("app/build", MissingTag),
            ("app:", EmptyTag),
            ("app:1:2", ExtraColon { offset: 5 }),
            ("App:1", InvalidNameChar { ch: 'A', offset: 0 }),
            ("ap p:1", InvalidNameChar { ch: ' ', offset: 2 }),
            (
                "app/é:1",
                InvalidNameChar {
                    ch: 'é', offset: 4
                },
            ),
            ("/app:1", EmptySegment { offset: 0 }),
            ("app/:1", EmptySegment { offset: 4 }),
            ("a//b:1", EmptySegment { offset: 2 }),
            (".:1", SegmentEdge { ch: '.', offset: 0 }),
            ("a/..:1", SegmentEdge { ch: '.', offset: 2 }),
            ("a/b-:1", SegmentEdge { ch: '-', offset: 3 }),
            ("a_/b:1", SegmentEdge { ch: '_', offset: 1 }),
            ("a:-1", TagStart { ch: '-', offset: 2 }),
            ("a:.1", TagStart { ch: '.', offset: 2 }),
            ("a:1/2", InvalidTagChar { ch: '/', offset: 3 }),
            ("a:1+2", InvalidTagChar { ch: '+', offset: 3 }),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let name = "a".repeat(MAX_NAME_LEN);
        let tag = "t".repeat(MAX_TAG_LEN);
        assert!(parse(&format!("{name}:{tag}")).is_ok());
        assert_eq!(
            parse(&format!("{name}a:1")),
            Err(NameTagError::NameTooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        assert_eq!(
            parse(&format!("a:{tag}t")),
            Err(NameTagError::TagTooLong {
                len: MAX_TAG_LEN + 1
            })
        );
    }

    #[test]
    fn messages_tell_the_operator_what_to_do() {
        assert_eq!(
            NameTagError::MissingTag.to_string(),
            "missing tag: add ':TAG' (tags are immutable; e.g. app/build:1234)"
        );
        assert_eq!(
            parse("App:1").unwrap_err().to_string(),
            "invalid character 'A' at byte 0 in name: names use lowercase a-z, 0-9, '.', '_', \
             '-', and '/' between segments"
        );
    }

    #[test]
    fn orders_by_text() {
        let mut v: Vec<NameTag> = ["b:1", "a:2", "a/x:1", "a:10"]
            .iter()
            .map(|s| parse(s).unwrap())
            .collect();
        v.sort();
        let texts: Vec<&str> = v.iter().map(NameTag::as_str).collect();
        assert_eq!(texts, ["a/x:1", "a:10", "a:2", "b:1"]);
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?"
    }

    fn name_tag() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(segment(), 1..5),
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        )
            .prop_map(|(segments, tag)| format!("{}:{tag}", segments.join("/")))
    }

    proptest! {
        #[test]
        fn valid_text_round_trips(text in name_tag()) {
            let nt = parse(&text).unwrap();
            prop_assert_eq!(nt.to_string(), text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,64}") {
            if let Ok(nt) = parse(&text) {
                // Whatever is accepted is in the grammar: one colon, no empty segments.
                prop_assert_eq!(nt.as_str().matches(':').count(), 1);
                prop_assert!(!nt.name().split('/').any(str::is_empty));
            }
        }

        #[test]
        fn error_offsets_point_inside_the_text(text in "[a-zA-Z0-9:/._ -]{0,40}") {
            if let Err(e) = parse(&text) {
                let offset = match e {
                    NameTagError::InvalidNameChar { offset, .. }
                    | NameTagError::EmptySegment { offset }
                    | NameTagError::SegmentEdge { offset, .. }
                    | NameTagError::ExtraColon { offset }
                    | NameTagError::TagStart { offset, .. }
                    | NameTagError::InvalidTagChar { offset, .. } => offset,
                    _ => 0,
                };
                prop_assert!(offset <= text.len());
            }
        }
    }
}
