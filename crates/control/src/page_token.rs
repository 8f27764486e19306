//! Pagination: opaque page tokens that carry the last key of a page, signed so a client can
//! neither forge nor edit one ([`PageToken`]), and the page-size rule ([`page_size`]).
//!
//! A token is `base64url(after_key) "." base64url(tag)`, without padding, where `tag` is the
//! first 16 bytes of HMAC-SHA256 under the server's secret. The key is visible to the client
//! (it is a name it was already shown); the tag only stops it from steering a listing to keys
//! it chose, so a listing cannot be used to probe the key space.

use data_encoding::BASE64URL_NOPAD;

use crate::hmac::hmac_sha256;

/// The longest token [`PageToken::open`] accepts, in bytes. Tokens sealed over keys of up to
/// 700 bytes fit.
pub const MAX_TOKEN_LEN: usize = 1024;

/// The page size when the client asks for none (0).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest page a client may ask for; larger requests get this many.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The bytes of HMAC kept in a token: 128 bits.
const TAG_LEN: usize = 16;

/// The page size to serve for a request of `requested` items: [`DEFAULT_PAGE_SIZE`] for 0,
/// else `requested` capped at [`MAX_PAGE_SIZE`].
pub fn page_size(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => usize::try_from(n).map_or(MAX_PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE)),
    }
}

/// Sealing and opening page tokens. A token says "continue after this key".
#[derive(Clone, Copy, Debug)]
pub struct PageToken;

impl PageToken {
    /// The token for continuing a listing after `after_key`, signed with `secret`.
    pub fn seal(after_key: &str, secret: &[u8]) -> String {
        let tag = hmac_sha256(secret, after_key.as_bytes());
        let mut token = BASE64URL_NOPAD.encode(after_key.as_bytes());
        token.push('.');
        token.push_str(&BASE64URL_NOPAD.encode(&tag[..TAG_LEN]));
        token
    }

    /// The key a token sealed with `secret` continues after.
    ///
    /// # Errors
    /// [`PageTokenError::TooLong`] above [`MAX_TOKEN_LEN`] (checked before decoding),
    /// [`PageTokenError::Malformed`] for anything [`PageToken::seal`] does not write, and
    /// [`PageTokenError::Forged`] for a token whose tag does not match (edited, made up, or
    /// sealed under another secret).
    pub fn open(token: &str, secret: &[u8]) -> Result<String, PageTokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(PageTokenError::TooLong { len: token.len() });
        }
        let (key, tag) = token.split_once('.').ok_or(PageTokenError::Malformed)?;
        let key = BASE64URL_NOPAD
            .decode(key.as_bytes())
            .map_err(|_| PageTokenError::Malformed)?;
        let tag = BASE64URL_NOPAD
            .decode(tag.as_bytes())
            .map_err(|_| PageTokenError::Malformed)?;
        if tag.len() != TAG_LEN {
            return Err(PageTokenError::Malformed);
        }
        let expected = hmac_sha256(secret, &key);
        // Every byte is compared, whatever differs first, so timing does not reveal how much
        // of a guessed tag was right.
        let diff = expected[..TAG_LEN]
            .iter()
            .zip(&tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(PageTokenError::Forged);
        }
        String::from_utf8(key).map_err(|_| PageTokenError::Malformed)
    }
}

/// Why a page token was refused. In every case the client should start its listing again
/// without a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageTokenError {
    /// A token longer than [`MAX_TOKEN_LEN`].
    #[error(
        "page token of {len} bytes is longer than the {MAX_TOKEN_LEN}-byte limit: pass the \
         token from the previous page unchanged, or none to start over"
    )]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not the shape of a token.
    #[error(
        "page token is malformed: pass the token from the previous page unchanged, or none to \
         start over"
    )]
    Malformed,
    /// A token this server did not issue, or issued under a secret it no longer has.
    #[error(
        "page token was not issued by this server (or its secret has changed): start the \
         listing again without a token"
    )]
    Forged,
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"server secret";

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1), 1);
        assert_eq!(page_size(1000), 1000);
        assert_eq!(page_size(1001), MAX_PAGE_SIZE);
        assert_eq!(page_size(u32::MAX), MAX_PAGE_SIZE);
    }

    #[test]
    fn seals_and_opens() {
        let token = PageToken::seal("app/build:1234", SECRET);
        assert!(!token.contains(['+', '/', '=']), "URL-safe: {token}");
        assert_eq!(PageToken::open(&token, SECRET).unwrap(), "app/build:1234");
        assert_eq!(
            PageToken::open(&PageToken::seal("", SECRET), SECRET).unwrap(),
            ""
        );
    }

    #[test]
    fn refuses_forgeries() {
        let token = PageToken::seal("app:1", SECRET);
        assert_eq!(
            PageToken::open(&token, b"other"),
            Err(PageTokenError::Forged)
        );
        // Another key with the first token's tag.
        let (_, tag) = token.split_once('.').unwrap();
        let edited = format!("{}.{tag}", BASE64URL_NOPAD.encode(b"app:2"));
        assert_eq!(
            PageToken::open(&edited, SECRET),
            Err(PageTokenError::Forged)
        );
        for bad in [
            "",
            ".",
            "abc",
            "!!.AAAA",
            "YQ.AAAA",
            "YQ.AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert_eq!(
                PageToken::open(bad, SECRET),
                Err(PageTokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            PageToken::open(&"a".repeat(MAX_TOKEN_LEN + 1), SECRET),
            Err(PageTokenError::TooLong {
                len: MAX_TOKEN_LEN + 1
            })
        );
        let longest_key = "k".repeat(700);
        let token = PageToken::seal(&longest_key, SECRET);
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(PageToken::open(&token, SECRET).unwrap(), longest_key);
    }

    proptest! {
        #[test]
        fn round_trips(key in "\\PC{0,100}", secret in prop::collection::vec(any::<u8>(), 0..100)) {
            let token = PageToken::seal(&key, &secret);
            prop_assert_eq!(PageToken::open(&token, &secret), Ok(key));
        }

        #[test]
        fn any_single_edit_is_refused(key in "[a-z:/]{1,40}", at in any::<prop::sample::Index>(),
                                      with in "[A-Za-z0-9_-]") {
            let token = PageToken::seal(&key, SECRET);
            let i = at.index(token.len());
            let mut edited = token.clone();
            edited.replace_range(i..=i, &with);
            if edited != token {
                prop_assert!(PageToken::open(&edited, SECRET).is_err());
            }
        }

        #[test]
        fn open_never_panics(token in "\\PC{0,200}") {
            let _ = PageToken::open(&token, SECRET);
        }
    }
}
