//! Who may do what on the control plane: roles ([`Role`]), the actions a call performs
//! ([`Action`]), the one table that joins them ([`permits`], checked by [`authorize`]), and
//! bearer credentials: the token a caller presents ([`Token`]: `shoal_<id>_<secret>`), and
//! the record the control plane stores for it ([`CredentialRecord`]: the SHA-256 of the
//! secret, never the secret).
//!
//! A token's id is public (it names the record, so the server finds it with one lookup); its
//! secret is 32 random bytes the caller passes in (this crate reads no randomness). A presented
//! secret is checked by hashing it and comparing the hashes in constant time
//! ([`CredentialRecord::verify`]).
//!
//! mTLS and signed publish statements come later: they will produce the same [`Role`] for a
//! caller by another route, and [`authorize`] will not change.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use shoal_bencode::{Dict, Value};

use crate::record::{self, Fields, RecordError, uint};

/// The stored format of [`CredentialRecord`].
const FORMAT: i64 = 1;

/// What a credential may do, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything: placements, policies, credentials, and what every other role may do.
    Admin,
    /// Publish (bind `name:tag` to content) and read.
    Publisher,
    /// Read only: artifacts, nodes, placements, policies.
    Reader,
    /// An agent's own credential: read, register and heartbeat, watch its assignments and
    /// report progress. It cannot publish or place.
    Agent,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Publisher, Role::Reader, Role::Agent];

    /// Its name as people type it: `admin`, `publisher`, `reader`, `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role; the roles are admin, publisher, reader and agent")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleError(s.to_owned()))
    }
}

/// What a call does, as far as permission goes. Every service method names exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Any read: list or get artifacts, nodes, placements, policies.
    Read,
    /// Bind a `name:tag` to content (`BindArtifact`).
    Publish,
    /// Register a node or refresh its registration (`Heartbeat`).
    Heartbeat,
    /// Open a node's assignment stream (`WatchAssignments`).
    WatchAssignments,
    /// Report a node's progress on its assignments (`ReportProgress`).
    ReportProgress,
    /// Create or delete a placement.
    ChangePlacement,
    /// Create, change or delete a policy.
    ChangePolicy,
    /// Issue, list or revoke credentials.
    ManageCredentials,
    /// See and change the control plane's own cluster (its server nodes), export and import
    /// its state.
    ManageCluster,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Publish,
        Action::Heartbeat,
        Action::WatchAssignments,
        Action::ReportProgress,
        Action::ChangePlacement,
        Action::ChangePolicy,
        Action::ManageCredentials,
        Action::ManageCluster,
    ];

    /// A short description for messages: "publish", "change placements", ...
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Publish => "publish",
            Action::Heartbeat => "register a node",
            Action::WatchAssignments => "watch a node's assignments",
            Action::ReportProgress => "report a node's progress",
            Action::ChangePlacement => "change placements",
            Action::ChangePolicy => "change policies",
            Action::ManageCredentials => "manage credentials",
            Action::ManageCluster => "manage the control plane's cluster",
        }
    }
}

/// Returns true if and only if `role` may perform `action`. The whole permission model is this
/// table.
pub fn permits(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::Admin => true,
        Role::Publisher => matches!(action, A::Read | A::Publish),
        Role::Reader => matches!(action, A::Read),
        Role::Agent => matches!(
            action,
            A::Read | A::Heartbeat | A::WatchAssignments | A::ReportProgress
        ),
    }
}

/// The roles that may perform `action`, most powerful first.
pub fn roles_for(action: Action) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|r| permits(*r, action))
        .collect()
}

/// A refusal: the role held may not perform the action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {held} role may not {}; that needs {}", action.describe(), needed(*action))]
pub struct Denied {
    /// The caller's role.
    pub held: Role,
    /// What it tried.
    pub action: Action,
}

fn needed(action: Action) -> String {
    let names: Vec<&str> = roles_for(action).into_iter().map(Role::as_str).collect();
    match names.as_slice() {
        [one] => format!("the {one} role"),
        [rest @ .., last] => format!("the {} or {last} role", rest.join(", ")),
        [] => "a role that does not exist".to_owned(),
    }
}

/// Checks [`permits`].
///
/// # Errors
/// [`Denied`] naming the role held and the roles that would do.
pub fn authorize(role: Role, action: Action) -> Result<(), Denied> {
    if permits(role, action) {
        Ok(())
    } else {
        Err(Denied { held: role, action })
    }
}

/// The prefix of every token, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "shoal_";

/// The length of a token's text: `shoal_` + 16 hex digits + `_` + 64 hex digits.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 16 + 1 + 64;

/// A credential's public id: 8 random bytes, written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(pub [u8; 8]);

impl CredentialId {
    /// Its text: 16 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A bearer token: the credential's id and its 32-byte secret. Shown once, when issued; the
/// control plane keeps only [`Token::secret_hash`]. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Which credential.
    pub id: CredentialId,
    secret: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({TOKEN_PREFIX}{}_<secret>)", self.id)
    }
}

/// Why a presented token does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `shoal_` + 16 hex digits + `_` + 64 hex digits.
    #[error("not a Shoal token (shoal_ followed by 16 and 64 hex digits)")]
    Malformed,
}

impl Token {
    /// A token from 40 random bytes: the first 8 are the id, the other 32 the secret. The
    /// caller draws them from a cryptographic source.
    pub fn from_random(random: [u8; 40]) -> Self {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        id.copy_from_slice(&random[..8]);
        secret.copy_from_slice(&random[8..]);
        Self {
            id: CredentialId(id),
            secret,
        }
    }

    /// Parses a presented token (surrounding whitespace, such as a token file's final newline,
    /// is ignored).
    ///
    /// # Errors
    /// [`TokenError::Malformed`] for anything but the exact form.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
        let hex = |s: &str| {
            // Lowercase only, so each token has exactly one spelling.
            if s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                data_encoding::HEXLOWER.decode(s.as_bytes()).ok()
            } else {
                None
            }
        };
        let id: [u8; 8] = hex(id)
            .and_then(|b| b.try_into().ok())
            .ok_or(TokenError::Malformed)?;
        let secret: [u8; 32] = hex(secret)
            .and_then(|b| b.try_into().ok())
            .ok_or(TokenError::Malformed)?;
        Ok(Self {
            id: CredentialId(id),
            secret,
        })
    }

    /// The token's text, `shoal_<id>_<secret>`: what the holder presents as
    /// `Authorization: Bearer ...`.
    pub fn reveal(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}_{}",
            self.id,
            data_encoding::HEXLOWER.encode(&self.secret)
        )
    }

    /// SHA-256 of the secret: what the control plane stores. The secret is 256 random bits,
    /// so a plain hash (no salt, no stretching) cannot be reversed or guessed.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }
}

/// A credential's name: 1 to 128 of `A-Z a-z 0-9 . _ - @`, e.g. `alice@example.com`,
/// `ci-publisher`, `agent-build-17`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialName(String);

/// The longest credential name, in bytes.
pub const MAX_CREDENTIAL_NAME_LEN: usize = 128;

/// A credential name that breaks the grammar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential name {0:?} is not 1 to {MAX_CREDENTIAL_NAME_LEN} of letters, digits, '.', '_', '-' and '@'"
)]
pub struct CredentialNameError(pub String);

impl CredentialName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CredentialName {
    type Err = CredentialNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b".-_@".contains(&b);
        if s.is_empty() || s.len() > MAX_CREDENTIAL_NAME_LEN || !s.bytes().all(allowed) {
            return Err(CredentialNameError(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the control plane stores for a credential: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Its id (the public half of the token).
    pub id: CredentialId,
    /// Who or what holds it.
    pub name: CredentialName,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token's secret.
    pub secret_sha256: [u8; 32],
    /// When it was issued, Unix milliseconds.
    pub created_ms: u64,
    /// The principal that issued it.
    pub created_by: String,
    /// When it was revoked; `None` while it is valid.
    pub revoked_ms: Option<u64>,
}

impl CredentialRecord {
    /// A new credential for `token`.
    pub fn issue(
        token: &Token,
        name: CredentialName,
        role: Role,
        created_by: &str,
        now_ms: u64,
    ) -> Self {
        Self {
            id: token.id,
            name,
            role,
            secret_sha256: token.secret_hash(),
            created_ms: now_ms,
            created_by: created_by.to_owned(),
            revoked_ms: None,
        }
    }

    /// Returns true if and only if the record is not revoked, belongs to `token`'s id, and
    /// `token`'s secret hashes to the stored hash (compared in constant time).
    pub fn verify(&self, token: &Token) -> bool {
        let presented = token.secret_hash();
        let same = presented
            .iter()
            .zip(&self.secret_sha256)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        self.revoked_ms.is_none() && self.id == token.id && same == 0
    }

    /// The stored form: a canonical bencode dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(b"created".as_slice(), uint(self.created_ms));
        d.insert(b"created by".as_slice(), self.created_by.as_str());
        d.insert(b"format".as_slice(), FORMAT);
        d.insert(b"id".as_slice(), Value::bytes(&self.id.0[..]));
        d.insert(b"name".as_slice(), self.name.as_str());
        if let Some(revoked) = self.revoked_ms {
            d.insert(b"revoked".as_slice(), uint(revoked));
        }
        d.insert(b"role".as_slice(), self.role.as_str());
        d.insert(
            b"secret sha256".as_slice(),
            Value::bytes(&self.secret_sha256[..]),
        );
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a record written by [`CredentialRecord::encode`], validating every field.
    ///
    /// # Errors
    /// A [`RecordError`] naming the field that is missing, mistyped or invalid.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let dict = record::decode(bytes, FORMAT)?;
        let top = Fields::new(&dict, "");
        let name: CredentialName = top.parsed("name")?;
        let role: Role = top.parsed("role")?;
        Ok(Self {
            id: CredentialId(top.array::<8>("id")?),
            name,
            role,
            secret_sha256: top.array::<32>("secret sha256")?,
            created_ms: top.uint("created")?,
            created_by: top.str("created by")?.to_owned(),
            revoked_ms: top.opt_uint("revoked")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: a change to [`permits`] must change this too.
    #[test]
    fn every_role_and_every_action() {
        use Action as A;
        let allowed: &[(Role, &[Action])] = &[
            (Role::Admin, &A::ALL),
            (Role::Publisher, &[A::Read, A::Publish]),
            (Role::Reader, &[A::Read]),
            (
                Role::Agent,
                &[
                    A::Read,
                    A::Heartbeat,
                    A::WatchAssignments,
                    A::ReportProgress,
                ],
            ),
        ];
        for (role, actions) in allowed {
            for action in A::ALL {
                assert_eq!(
                    permits(*role, action),
                    actions.contains(&action),
                    "{role} / {action:?}"
                );
                assert_eq!(authorize(*role, action).is_ok(), actions.contains(&action));
            }
        }
        assert_eq!(allowed.len(), Role::ALL.len());
    }

    #[test]
    fn agents_cannot_publish_or_place_and_only_admins_manage() {
        assert!(!permits(Role::Agent, Action::Publish));
        assert!(!permits(Role::Agent, Action::ChangePlacement));
        assert_eq!(roles_for(Action::ManageCredentials), [Role::Admin]);
        assert_eq!(roles_for(Action::ChangePolicy), [Role::Admin]);
        assert_eq!(roles_for(Action::Read), Role::ALL);
    }

    #[test]
    fn a_refusal_names_the_role_held_and_the_roles_needed() {
        let e = authorize(Role::Reader, Action::Publish).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the reader role may not publish; that needs the admin or publisher role"
        );
        let e = authorize(Role::Agent, Action::ChangePlacement).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the agent role may not change placements; that needs the admin role"
        );
    }

    #[test]
    fn roles_round_trip_and_unknown_ones_are_refused() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    fn token(n: u8) -> Token {
        Token::from_random(std::array::from_fn(|i| n.wrapping_add(i as u8)))
    }

    #[test]
    fn a_token_round_trips_through_its_text() {
        let t = token(7);
        let text = t.reveal();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("shoal_0708090a0b0c0d0e_0f10"), "{text}");
        assert_eq!(Token::parse(&text), Ok(t.clone()));
        assert_eq!(Token::parse(&format!("{text}\n")), Ok(t.clone()));
        assert!(
            !format!("{t:?}").contains(&text[23..]),
            "Debug hides the secret"
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token(1).reveal();
        let cases = [
            String::new(),
            "shoal_".to_owned(),
            good.to_uppercase(),
            good.replacen("shoal_", "shoat_", 1),
            good.replacen('_', "-", 2),
            format!("{good}0"),
            good[..good.len() - 1].to_owned(),
            format!("{}g", &good[..good.len() - 1]),
            format!("{}_{}", &good[..22], &good[22..]),
            "é".repeat(TOKEN_LEN / 2),
        ];
        for case in cases {
            assert_eq!(Token::parse(&case), Err(TokenError::Malformed), "{case:?}");
        }
    }

    #[test]
    fn a_record_verifies_its_own_token_only_while_valid() {
        let t = token(3);
        let name: CredentialName = "ci".parse().unwrap();
        let mut record = CredentialRecord::issue(&t, name, Role::Publisher, "local", 1000);
        assert!(record.verify(&t));
        assert!(!record.verify(&token(4)));
        // Same id, other secret.
        let mut forged = token(4);
        forged.id = t.id;
        assert!(!record.verify(&forged));
        record.revoked_ms = Some(2000);
        assert!(!record.verify(&t));
    }

    #[test]
    fn a_record_round_trips_and_holds_no_secret() {
        let t = token(9);
        let mut record = CredentialRecord::issue(
            &t,
            "alice@example.com".parse().unwrap(),
            Role::Admin,
            "bootstrap",
            5,
        );
        for revoked in [None, Some(6)] {
            record.revoked_ms = revoked;
            let bytes = record.encode();
            assert_eq!(CredentialRecord::decode(&bytes), Ok(record.clone()));
            let secret = &t.reveal()[23..];
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
            assert!(!bytes.windows(32).any(|w| w == t.secret));
        }
    }

    #[test]
    fn credential_names_follow_the_grammar() {
        for good in ["a", "alice@example.com", "agent-host-1", "CI_bot.2"] {
            assert!(good.parse::<CredentialName>().is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(bad.parse::<CredentialName>().is_err(), "{bad}");
        }
    }
}
