//! Safe relative paths from torrents.
//!
//! A torrent names its files with path components chosen by whoever made it. Before any of
//! them can reach a filesystem, each component must pass [`PathComponent::new`]:
//!
//! - valid UTF-8, 1 to 255 bytes;
//! - not `.` or `..`;
//! - no `/`, `\`, NUL or other ASCII control character (so no absolute paths, no drive
//!   prefixes, no separators smuggled inside a component);
//! - not a Windows reserved device name (`CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`,
//!   `LPT1`-`LPT9`), in any case, with or without an extension (`con.txt`).
//!
//! A component that breaks a rule is refused with a [`PathError`] naming it; it is never
//! rewritten, because a silently renamed file is a different artifact. The rule is the same
//! for v1 paths, v2 file trees and the torrent's `name`.

use std::fmt;

/// The longest component accepted, in bytes (the common filesystem limit).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Why a path component is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A component that is not UTF-8.
    #[error("path component is not valid UTF-8")]
    NotUtf8,
    /// An empty component.
    #[error("empty path component")]
    Empty,
    /// A component over [`MAX_COMPONENT_LEN`] bytes.
    #[error("path component {0:?}... is longer than 255 bytes")]
    TooLong(String),
    /// `.` or `..`.
    #[error("path component {0:?} would leave its directory")]
    DotOrDotDot(String),
    /// A component containing a separator, NUL or control character.
    #[error("path component {component:?} contains the forbidden character {ch:?}")]
    ForbiddenChar {
        /// The component.
        component: String,
        /// The first forbidden character in it.
        ch: char,
    },
    /// A Windows reserved device name.
    #[error("path component {0:?} is a reserved device name on Windows")]
    Reserved(String),
    /// A path with no components.
    #[error("path has no components")]
    NoComponents,
}

/// One validated path component. See the module documentation for the rule.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathComponent(String);

impl PathComponent {
    /// Validates `bytes` as a path component.
    ///
    /// # Errors
    /// The [`PathError`] for the first rule broken.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PathError> {
        let s = std::str::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
        Self::new(s)
    }

    /// Validates `s` as a path component.
    ///
    /// # Errors
    /// The [`PathError`] for the first rule broken.
    pub fn new(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_COMPONENT_LEN {
            return Err(PathError::TooLong(s.chars().take(40).collect()));
        }
        if s == "." || s == ".." {
            return Err(PathError::DotOrDotDot(s.to_owned()));
        }
        if let Some(ch) = s
            .chars()
            .find(|&c| c == '/' || c == '\\' || c.is_ascii_control())
        {
            return Err(PathError::ForbiddenChar {
                component: s.to_owned(),
                ch,
            });
        }
        if is_reserved_on_windows(s) {
            return Err(PathError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The component as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_reserved_on_windows(s: &str) -> bool {
    let stem = s.split('.').next().unwrap_or(s).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        // Bytes, not a `str` split: the name may have a multi-byte character at byte 3.
        _ => match upper.as_bytes() {
            [a, b, c, digit] => {
                matches!(&[*a, *b, *c], b"COM" | b"LPT") && matches!(digit, b'1'..=b'9')
            }
            _ => false,
        },
    }
}

impl fmt::Display for PathComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PathComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A non-empty relative path of validated components, displayed with `/` separators.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TorrentPath(Vec<PathComponent>);

impl TorrentPath {
    /// A path from its components.
    ///
    /// # Errors
    /// [`PathError::NoComponents`] for an empty list.
    pub fn new(components: Vec<PathComponent>) -> Result<Self, PathError> {
        if components.is_empty() {
            return Err(PathError::NoComponents);
        }
        Ok(Self(components))
    }

    /// Parses a `/`-separated path, validating every component.
    ///
    /// # Errors
    /// The [`PathError`] of the first bad component.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        Self::new(
            s.split('/')
                .map(PathComponent::new)
                .collect::<Result<_, _>>()?,
        )
    }

    /// The components, first to last.
    pub fn components(&self) -> &[PathComponent] {
        &self.0
    }

    /// The path as a platform path, relative.
    pub fn to_path_buf(&self) -> std::path::PathBuf {
        self.0.iter().map(PathComponent::as_str).collect()
    }
}

impl fmt::Display for TorrentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for TorrentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `torrent` fuzz target: a four-byte name with a multi-byte character
    /// across byte 3 made the reserved-name check slice inside the character and panic.
    #[test]
    fn multi_byte_names_near_reserved_lengths_are_fine() {
        for name in ["16ν4", "COMν", "LPν", "ν123", "CΟΜ1", "ǅ1.bin"] {
            assert!(PathComponent::new(name).is_ok(), "{name}");
        }
        assert!(PathComponent::new("com9.ν").is_err());
    }

    #[test]
    fn the_rule() {
        for ok in [
            "a",
            "file.tar.gz",
            ".hidden",
            "...",
            "CONSOLE",
            "COM0",
            "LPT10",
            "comma",
            "日本語",
        ] {
            assert!(PathComponent::new(ok).is_ok(), "{ok}");
        }
        type Check = fn(&PathError) -> bool;
        let bad: &[(&str, Check)] = &[
            ("", |e| matches!(e, PathError::Empty)),
            (".", |e| matches!(e, PathError::DotOrDotDot(_))),
            ("..", |e| matches!(e, PathError::DotOrDotDot(_))),
            ("a/b", |e| {
                matches!(e, PathError::ForbiddenChar { ch: '/', .. })
            }),
            ("/etc", |e| {
                matches!(e, PathError::ForbiddenChar { ch: '/', .. })
            }),
            ("c:\\x", |e| {
                matches!(e, PathError::ForbiddenChar { ch: '\\', .. })
            }),
            ("nul\0byte", |e| {
                matches!(e, PathError::ForbiddenChar { ch: '\0', .. })
            }),
            ("tab\there", |e| {
                matches!(e, PathError::ForbiddenChar { ch: '\t', .. })
            }),
            ("CON", |e| matches!(e, PathError::Reserved(_))),
            ("con.txt", |e| matches!(e, PathError::Reserved(_))),
            ("Lpt3.log", |e| matches!(e, PathError::Reserved(_))),
            ("aux ", |e| matches!(e, PathError::Reserved(_))),
        ];
        for (input, check) in bad {
            let e = PathComponent::new(input).unwrap_err();
            assert!(check(&e), "{input:?} gave {e:?}");
        }
        assert!(matches!(
            PathComponent::new(&"x".repeat(256)),
            Err(PathError::TooLong(_))
        ));
        assert!(PathComponent::new(&"x".repeat(255)).is_ok());
        assert_eq!(PathComponent::from_bytes(b"\xff"), Err(PathError::NotUtf8));
        assert_eq!(TorrentPath::parse("a/b/c").unwrap().to_string(), "a/b/c");
        assert!(TorrentPath::parse("a//c").is_err());
    }
}
