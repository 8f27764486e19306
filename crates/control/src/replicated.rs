//! The control plane's replicated state machine: every change to the catalog, the node
//! registry, placements, policies, credentials and settings is a [`Command`], and
//! [`ControlState::apply`] carries it out deterministically, so every server node that applies
//! the same log holds the same state ([`ControlState::digest`]) and gives the same
//! [`Outcome`]s.
//!
//! Commands carry everything they depend on: times (a revocation's `at_ms`), random values (a
//! credential's id and hashed secret, a setting's first value) and who asked are decided by
//! the node that proposes the command, never while applying it. Commands, outcomes and
//! snapshots are canonical bencode with a `format` number, read back with bounded, checked
//! decoding: a log entry or snapshot that does not read is corruption, and the error names the
//! field.
//!
//! Soft state (the tracker's peers, agents' progress reports, heartbeats) is not here: it is
//! rebuilt from the agents after a failover, and replicating it would put every announce
//! through consensus.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use shoal_bencode::{Dict, Limits, Value};

use crate::record::{self, Fields, RecordError, uint};
use crate::{
    ArtifactError, ArtifactRecord, BindError, BindOutcome, ContentIdPrefix, CredentialId,
    CredentialName, CredentialRecord, NameTag, NodeRecord, Placement, Policy, decide_bind,
};

/// The format of commands, outcomes and snapshots.
const FORMAT: i64 = 1;

/// Bounds on a snapshot: 4 GiB, nesting 8, 64 million values (each record is one value: its
/// stored form as a byte string).
const SNAPSHOT_LIMITS: Limits = Limits {
    max_input: 4 << 30,
    max_depth: 8,
    max_values: 64_000_000,
};

/// One change to the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bind `record.name_tag` to its content (the bind rule: tags are immutable).
    Bind(ArtifactRecord),
    /// Store a node's registration (replacing the one with its id).
    PutNode(NodeRecord),
    /// Store a placement (replacing the one with its name): restores and imports.
    PutPlacement(Placement),
    /// Store a placement unless its name is taken: [`Outcome::PlacementExists`] then names the
    /// holder. Two admins creating one name through different server nodes: the first wins.
    CreatePlacement(Placement),
    /// Remove the placement with this name.
    DeletePlacement(String),
    /// Store a policy (replacing the one with its name).
    PutPolicy(Policy),
    /// Remove the policy with this name.
    DeletePolicy(String),
    /// Store a new credential, unless a valid one has its name (or, with `only_if_none`, any
    /// credential exists: the bootstrap admin is created once).
    IssueCredential {
        /// The credential, its secret already hashed.
        record: CredentialRecord,
        /// Store it only if there is no credential at all.
        only_if_none: bool,
    },
    /// Revoke the valid credential with this name, as of `at_ms`.
    RevokeCredential {
        /// Its name.
        name: CredentialName,
        /// When, in Unix milliseconds.
        at_ms: u64,
    },
    /// Set `key` to `value` unless it is set; the outcome is the value it holds.
    InitSetting {
        /// The setting.
        key: String,
        /// Its value if it has none.
        value: Vec<u8>,
    },
}

/// What applying a [`Command`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A bind: the record the tag holds, and whether it already held this content.
    Bound {
        /// The bound record (the stored one when already bound).
        record: ArtifactRecord,
        /// True if the tag already held this content (nothing changed).
        already: bool,
    },
    /// A bind refused: the tag holds other content.
    BindRefused(BindError),
    /// A record stored.
    Stored,
    /// A removal: whether the record existed.
    Deleted(bool),
    /// A credential issued (false: `only_if_none` and a credential exists).
    Issued(bool),
    /// A credential refused: a valid credential has its name.
    CredentialNameTaken(CredentialName),
    /// A credential refused: its random id is taken (astronomically rare; issue again).
    CredentialIdTaken,
    /// A credential revoked; the record as revoked.
    Revoked(CredentialRecord),
    /// No valid credential has the name to revoke.
    CredentialNotFound(CredentialName),
    /// A placement not created: its name holds this one (maybe the same request again).
    PlacementExists(Placement),
    /// The value a setting holds.
    Setting(Vec<u8>),
    /// A log entry that does not read as a command (written by a newer version, or corrupt):
    /// applied as nothing, on every node alike.
    Unreadable(String),
}

/// Why a command, outcome or snapshot could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicatedError {
    /// A field or record that does not read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An artifact record that does not read.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// The replicated state: everything a [`Command`] may change, in memory, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlState {
    artifacts: BTreeMap<String, ArtifactRecord>,
    /// (content id, `name:tag`): every name bound to a content.
    by_content: BTreeSet<([u8; 32], String)>,
    nodes: BTreeMap<String, NodeRecord>,
    placements: BTreeMap<String, Placement>,
    policies: BTreeMap<String, Policy>,
    credentials: BTreeMap<[u8; 8], CredentialRecord>,
    settings: BTreeMap<String, Vec<u8>>,
}

impl ControlState {
    /// Carries out the command encoded in `entry` (a log entry); an entry that does not read
    /// changes nothing and says why. Deterministic, like [`ControlState::apply`].
    pub fn apply_entry(&mut self, entry: &[u8]) -> Outcome {
        match Command::decode(entry) {
            Ok(command) => self.apply(&command),
            Err(e) => Outcome::Unreadable(e.to_string()),
        }
    }

    /// Carries out `command`. Deterministic: depends on nothing but the state and the command.
    /// The same as [`ControlState::decide`] then [`ControlState::commit`].
    pub fn apply(&mut self, command: &Command) -> Outcome {
        let outcome = self.decide(command);
        self.commit(command, &outcome);
        outcome
    }

    /// What `command` would do, changing nothing: a caller that must make the effect durable
    /// first (a single-node server) decides, stores, then commits, and readers are not held
    /// up meanwhile.
    pub fn decide(&self, command: &Command) -> Outcome {
        match command {
            Command::Bind(record) => {
                let existing = self.artifacts.get(&record.name_tag.to_string());
                match decide_bind(existing, record) {
                    Ok(BindOutcome::AlreadyBound) => Outcome::Bound {
                        record: existing.cloned().unwrap_or_else(|| record.clone()),
                        already: true,
                    },
                    Ok(BindOutcome::Bound) => Outcome::Bound {
                        record: record.clone(),
                        already: false,
                    },
                    Err(e) => Outcome::BindRefused(e),
                }
            }
            Command::PutNode(_) | Command::PutPlacement(_) | Command::PutPolicy(_) => {
                Outcome::Stored
            }
            Command::CreatePlacement(placement) => {
                match self.placements.get(placement.name.as_str()) {
                    Some(existing) => Outcome::PlacementExists(existing.clone()),
                    None => Outcome::Stored,
                }
            }
            Command::DeletePlacement(name) => Outcome::Deleted(self.placements.contains_key(name)),
            Command::DeletePolicy(name) => Outcome::Deleted(self.policies.contains_key(name)),
            Command::IssueCredential {
                record,
                only_if_none,
            } => {
                if *only_if_none && !self.credentials.is_empty() {
                    Outcome::Issued(false)
                } else if self
                    .credentials
                    .values()
                    .any(|other| other.name == record.name && other.revoked_ms.is_none())
                {
                    Outcome::CredentialNameTaken(record.name.clone())
                } else if self.credentials.contains_key(&record.id.0) {
                    Outcome::CredentialIdTaken
                } else {
                    Outcome::Issued(true)
                }
            }
            Command::RevokeCredential { name, at_ms } => {
                match self
                    .credentials
                    .values()
                    .find(|r| &r.name == name && r.revoked_ms.is_none())
                {
                    Some(record) => Outcome::Revoked(CredentialRecord {
                        revoked_ms: Some(*at_ms),
                        ..record.clone()
                    }),
                    None => Outcome::CredentialNotFound(name.clone()),
                }
            }
            Command::InitSetting { key, value } => {
                Outcome::Setting(self.settings.get(key).unwrap_or(value).clone())
            }
        }
    }

    /// Makes the effect [`ControlState::decide`] found for `command` (as `outcome`); a
    /// refusal or a no-op changes nothing.
    pub fn commit(&mut self, command: &Command, outcome: &Outcome) {
        match (command, outcome) {
            (Command::Bind(record), Outcome::Bound { already: false, .. }) => {
                let key = record.name_tag.to_string();
                self.by_content.insert((record.content_id, key.clone()));
                self.artifacts.insert(key, record.clone());
            }
            (Command::PutNode(node), _) => {
                self.nodes.insert(node.id.as_str().to_owned(), node.clone());
            }
            (Command::PutPlacement(placement), _)
            | (Command::CreatePlacement(placement), Outcome::Stored) => {
                self.placements
                    .insert(placement.name.as_str().to_owned(), placement.clone());
            }
            (Command::DeletePlacement(name), _) => {
                self.placements.remove(name);
            }
            (Command::PutPolicy(policy), _) => {
                self.policies
                    .insert(policy.name.as_str().to_owned(), policy.clone());
            }
            (Command::DeletePolicy(name), _) => {
                self.policies.remove(name);
            }
            (Command::IssueCredential { record, .. }, Outcome::Issued(true))
            | (Command::RevokeCredential { .. }, Outcome::Revoked(record)) => {
                self.credentials.insert(record.id.0, record.clone());
            }
            (Command::InitSetting { key, .. }, Outcome::Setting(value)) => {
                self.settings.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }

    /// The record bound to `name_tag`.
    pub fn artifact(&self, name_tag: &NameTag) -> Option<&ArtifactRecord> {
        self.artifacts.get(&name_tag.to_string())
    }

    /// The records whose content id starts with `prefix`, at most `limit`, in content id then
    /// `name:tag` order (one content may be bound under several names).
    pub fn by_content(&self, prefix: &ContentIdPrefix, limit: usize) -> Vec<&ArtifactRecord> {
        let start = (prefix.lower_bound(), String::new());
        self.by_content
            .range(start..)
            .take_while(|(content, _)| prefix.matches(content))
            .filter_map(|(_, name)| self.artifacts.get(name))
            .take(limit)
            .collect()
    }

    /// Up to `limit` records whose `name:tag` starts with `prefix`, strictly after `after`, in
    /// `name:tag` order; and whether more follow.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&ArtifactRecord>, bool) {
        let start = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        let from = std::ops::Bound::Included(start);
        for (key, record) in self
            .artifacts
            .range::<str, _>((from, std::ops::Bound::Unbounded))
        {
            if Some(key.as_str()) == after {
                continue;
            }
            if !key.starts_with(prefix) {
                break;
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(record);
        }
        (out, false)
    }

    /// Every bound record, in `name:tag` order.
    pub fn artifacts(&self) -> impl ExactSizeIterator<Item = &ArtifactRecord> {
        self.artifacts.values()
    }

    /// Every registered node, in id order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// The node registered under `id`.
    pub fn node(&self, id: &str) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    /// The placement named `name`.
    pub fn placement(&self, name: &str) -> Option<&Placement> {
        self.placements.get(name)
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// Every placement, in name order.
    pub fn placements(&self) -> impl ExactSizeIterator<Item = &Placement> {
        self.placements.values()
    }

    /// Every policy, in name order.
    pub fn policies(&self) -> impl ExactSizeIterator<Item = &Policy> {
        self.policies.values()
    }

    /// The credential with id `id`, valid or revoked.
    pub fn credential(&self, id: CredentialId) -> Option<&CredentialRecord> {
        self.credentials.get(&id.0)
    }

    /// Every credential, valid and revoked, in id order.
    pub fn credentials(&self) -> impl ExactSizeIterator<Item = &CredentialRecord> {
        self.credentials.values()
    }

    /// The value of setting `key`.
    pub fn setting(&self, key: &str) -> Option<&[u8]> {
        self.settings.get(key).map(Vec::as_slice)
    }

    /// The whole state as one canonical bencode dictionary: the snapshot a lagging node
    /// installs, and what [`ControlState::digest`] hashes.
    pub fn encode(&self) -> Vec<u8> {
        fn list<'a>(records: impl Iterator<Item = Vec<u8>>) -> Value<'a> {
            Value::List(records.map(Value::from).collect())
        }
        let mut d = Dict::new();
        d.insert(b"format".as_slice(), Value::Int(FORMAT));
        d.insert(
            b"artifacts".as_slice(),
            list(self.artifacts.values().map(ArtifactRecord::encode)),
        );
        d.insert(
            b"nodes".as_slice(),
            list(self.nodes.values().map(NodeRecord::encode)),
        );
        d.insert(
            b"placements".as_slice(),
            list(self.placements.values().map(Placement::encode)),
        );
        d.insert(
            b"policies".as_slice(),
            list(self.policies.values().map(Policy::encode)),
        );
        d.insert(
            b"credentials".as_slice(),
            list(self.credentials.values().map(CredentialRecord::encode)),
        );
        let mut settings = Dict::new();
        for (key, value) in &self.settings {
            settings.insert(key.as_bytes().to_vec(), value.as_slice());
        }
        d.insert(b"settings".as_slice(), Value::Dict(settings));
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a state written by [`ControlState::encode`], checking every record.
    ///
    /// # Errors
    /// [`ReplicatedError`] naming the record or field that does not read.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReplicatedError> {
        let value =
            shoal_bencode::decode_with(bytes, SNAPSHOT_LIMITS).map_err(RecordError::Bencode)?;
        let Value::Dict(dict) = value else {
            return Err(RecordError::NotDict {
                found: value.kind(),
            }
            .into());
        };
        let top = Fields::new(&dict, "");
        let found = top.int("format")?;
        if found != FORMAT {
            return Err(RecordError::Format {
                found,
                supported: FORMAT,
            }
            .into());
        }
        let mut settings = Vec::new();
        for (key, value) in top.dict("settings")?.iter() {
            let key = std::str::from_utf8(key).map_err(|_| RecordError::Invalid {
                field: "settings".into(),
                reason: "a key is not UTF-8".into(),
            })?;
            let value = value.as_bytes().ok_or_else(|| RecordError::WrongType {
                field: format!("settings.{key}"),
                expected: "a byte string",
                found: value.kind(),
            })?;
            settings.push((key.to_owned(), value.to_vec()));
        }
        let artifacts = records(&top, "artifacts")?
            .into_iter()
            .map(ArtifactRecord::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let state = Self::from_records(
            artifacts,
            decoded(&top, "nodes", NodeRecord::decode)?,
            decoded(&top, "placements", Placement::decode)?,
            decoded(&top, "policies", Policy::decode)?,
            decoded(&top, "credentials", CredentialRecord::decode)?,
            settings,
        );
        Ok(state)
    }

    /// A state holding exactly these records (what a single-node server stored).
    pub fn from_records(
        artifacts: impl IntoIterator<Item = ArtifactRecord>,
        nodes: impl IntoIterator<Item = NodeRecord>,
        placements: impl IntoIterator<Item = Placement>,
        policies: impl IntoIterator<Item = Policy>,
        credentials: impl IntoIterator<Item = CredentialRecord>,
        settings: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Self {
        let mut state = Self::default();
        for record in artifacts {
            let key = record.name_tag.to_string();
            state.by_content.insert((record.content_id, key.clone()));
            state.artifacts.insert(key, record);
        }
        state.nodes = nodes
            .into_iter()
            .map(|n| (n.id.as_str().to_owned(), n))
            .collect();
        state.placements = placements
            .into_iter()
            .map(|p| (p.name.as_str().to_owned(), p))
            .collect();
        state.policies = policies
            .into_iter()
            .map(|p| (p.name.as_str().to_owned(), p))
            .collect();
        state.credentials = credentials.into_iter().map(|c| (c.id.0, c)).collect();
        state.settings = settings.into_iter().collect();
        state
    }

    /// SHA-256 of [`ControlState::encode`]: equal on two nodes if and only if their states
    /// are.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// The records of list field `name`, each read with `decode`.
fn decoded<T>(
    fields: &Fields<'_, '_>,
    name: &str,
    decode: fn(&[u8]) -> Result<T, RecordError>,
) -> Result<Vec<T>, RecordError> {
    records(fields, name)?.into_iter().map(decode).collect()
}

/// The byte strings of list field `name`.
fn records<'d>(fields: &Fields<'d, '_>, name: &str) -> Result<Vec<&'d [u8]>, RecordError> {
    fields
        .list(name)?
        .iter()
        .enumerate()
        .map(|(i, value)| {
            value.as_bytes().ok_or_else(|| RecordError::WrongType {
                field: format!("{}[{i}]", fields.name(name)),
                expected: "a byte string",
                found: value.kind(),
            })
        })
        .collect()
}

impl Command {
    /// The log entry's bytes: a canonical bencode dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(b"format".as_slice(), Value::Int(FORMAT));
        let op = match self {
            Command::Bind(record) => {
                d.insert(b"record".as_slice(), Value::from(record.encode()));
                "bind"
            }
            Command::PutNode(node) => {
                d.insert(b"record".as_slice(), Value::from(node.encode()));
                "put node"
            }
            Command::PutPlacement(placement) => {
                d.insert(b"record".as_slice(), Value::from(placement.encode()));
                "put placement"
            }
            Command::CreatePlacement(placement) => {
                d.insert(b"record".as_slice(), Value::from(placement.encode()));
                "create placement"
            }
            Command::DeletePlacement(name) => {
                d.insert(b"name".as_slice(), name.as_str());
                "delete placement"
            }
            Command::PutPolicy(policy) => {
                d.insert(b"record".as_slice(), Value::from(policy.encode()));
                "put policy"
            }
            Command::DeletePolicy(name) => {
                d.insert(b"name".as_slice(), name.as_str());
                "delete policy"
            }
            Command::IssueCredential {
                record,
                only_if_none,
            } => {
                d.insert(b"record".as_slice(), Value::from(record.encode()));
                d.insert(
                    b"only if none".as_slice(),
                    Value::Int(i64::from(*only_if_none)),
                );
                "issue credential"
            }
            Command::RevokeCredential { name, at_ms } => {
                d.insert(b"name".as_slice(), name.as_str());
                d.insert(b"at".as_slice(), uint(*at_ms));
                "revoke credential"
            }
            Command::InitSetting { key, value } => {
                d.insert(b"name".as_slice(), key.as_str());
                d.insert(b"value".as_slice(), value.as_slice());
                "init setting"
            }
        };
        d.insert(b"op".as_slice(), op);
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a log entry written by [`Command::encode`].
    ///
    /// # Errors
    /// [`ReplicatedError`] naming the field that does not read.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReplicatedError> {
        let dict = record::decode(bytes, FORMAT)?;
        let f = Fields::new(&dict, "");
        let op = f.str("op")?;
        Ok(match op {
            "bind" => Command::Bind(ArtifactRecord::decode(f.bytes("record")?)?),
            "put node" => Command::PutNode(NodeRecord::decode(f.bytes("record")?)?),
            "put placement" => Command::PutPlacement(Placement::decode(f.bytes("record")?)?),
            "create placement" => Command::CreatePlacement(Placement::decode(f.bytes("record")?)?),
            "delete placement" => Command::DeletePlacement(f.str("name")?.to_owned()),
            "put policy" => Command::PutPolicy(Policy::decode(f.bytes("record")?)?),
            "delete policy" => Command::DeletePolicy(f.str("name")?.to_owned()),
            "issue credential" => Command::IssueCredential {
                record: CredentialRecord::decode(f.bytes("record")?)?,
                only_if_none: flag(&f, "only if none")?,
            },
            "revoke credential" => Command::RevokeCredential {
                name: f.parsed("name")?,
                at_ms: f.uint("at")?,
            },
            "init setting" => Command::InitSetting {
                key: f.str("name")?.to_owned(),
                value: f.bytes("value")?.to_vec(),
            },
            other => {
                return Err(f
                    .invalid("op", format!("unknown operation {other:?}"))
                    .into());
            }
        })
    }
}

impl Outcome {
    /// The response's bytes: a canonical bencode dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(b"format".as_slice(), Value::Int(FORMAT));
        let kind = match self {
            Outcome::Bound { record, already } => {
                d.insert(b"record".as_slice(), Value::from(record.encode()));
                d.insert(b"already".as_slice(), Value::Int(i64::from(*already)));
                "bound"
            }
            Outcome::BindRefused(BindError::TagBoundToOtherContent {
                name_tag,
                bound_content_id,
            }) => {
                d.insert(b"name".as_slice(), name_tag.to_string());
                d.insert(b"content".as_slice(), bound_content_id.as_slice());
                "bind refused"
            }
            Outcome::Stored => "stored",
            Outcome::PlacementExists(placement) => {
                d.insert(b"record".as_slice(), Value::from(placement.encode()));
                "placement exists"
            }
            Outcome::Deleted(existed) => {
                d.insert(b"existed".as_slice(), Value::Int(i64::from(*existed)));
                "deleted"
            }
            Outcome::Issued(issued) => {
                d.insert(b"issued".as_slice(), Value::Int(i64::from(*issued)));
                "issued"
            }
            Outcome::CredentialNameTaken(name) => {
                d.insert(b"name".as_slice(), name.as_str());
                "credential name taken"
            }
            Outcome::CredentialIdTaken => "credential id taken",
            Outcome::Revoked(record) => {
                d.insert(b"record".as_slice(), Value::from(record.encode()));
                "revoked"
            }
            Outcome::CredentialNotFound(name) => {
                d.insert(b"name".as_slice(), name.as_str());
                "credential not found"
            }
            Outcome::Setting(value) => {
                d.insert(b"value".as_slice(), value.as_slice());
                "setting"
            }
            Outcome::Unreadable(reason) => {
                d.insert(b"reason".as_slice(), reason.as_str());
                "unreadable"
            }
        };
        d.insert(b"kind".as_slice(), kind);
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a response written by [`Outcome::encode`].
    ///
    /// # Errors
    /// [`ReplicatedError`] naming the field that does not read.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReplicatedError> {
        let dict = record::decode(bytes, FORMAT)?;
        let f = Fields::new(&dict, "");
        Ok(match f.str("kind")? {
            "bound" => Outcome::Bound {
                record: ArtifactRecord::decode(f.bytes("record")?)?,
                already: flag(&f, "already")?,
            },
            "bind refused" => Outcome::BindRefused(BindError::TagBoundToOtherContent {
                name_tag: f.parsed("name")?,
                bound_content_id: f.array("content")?,
            }),
            "stored" => Outcome::Stored,
            "placement exists" => Outcome::PlacementExists(Placement::decode(f.bytes("record")?)?),
            "deleted" => Outcome::Deleted(flag(&f, "existed")?),
            "issued" => Outcome::Issued(flag(&f, "issued")?),
            "credential name taken" => Outcome::CredentialNameTaken(f.parsed("name")?),
            "credential id taken" => Outcome::CredentialIdTaken,
            "revoked" => Outcome::Revoked(CredentialRecord::decode(f.bytes("record")?)?),
            "credential not found" => Outcome::CredentialNotFound(f.parsed("name")?),
            "setting" => Outcome::Setting(f.bytes("value")?.to_vec()),
            "unreadable" => Outcome::Unreadable(f.str("reason")?.to_owned()),
            other => {
                return Err(f
                    .invalid("kind", format!("unknown outcome {other:?}"))
                    .into());
            }
        })
    }
}

/// Field `name` as a 0/1 flag.
fn flag(fields: &Fields<'_, '_>, name: &str) -> Result<bool, RecordError> {
    match fields.int(name)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(fields.invalid(name, format!("{n} is not 0 or 1"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use std::sync::OnceLock;

    use proptest::prelude::*;
    use shoal_metainfo::MetaVersion;

    use super::*;
    use crate::{PlacementName, PolicyName, Role, Rules};

    /// Three artifacts of different content, built once.
    fn artifacts() -> &'static [ArtifactRecord] {
        static RECORDS: OnceLock<Vec<ArtifactRecord>> = OnceLock::new();
        RECORDS.get_or_init(|| {
            [("a", 1_000), ("b", 20_000), ("c", 3)]
                .iter()
                .map(|&(path, len)| {
                    let t = crate::artifact::tests::torrent(MetaVersion::Hybrid, &[(path, len)]);
                    ArtifactRecord::from_torrent("x:1".parse().unwrap(), &t, "alice", 1).unwrap()
                })
                .collect()
        })
    }

    fn bind(content: usize, name_tag: &str) -> Command {
        let mut record = artifacts()[content].clone();
        record.name_tag = name_tag.parse().unwrap();
        Command::Bind(record)
    }

    fn credential(id: u8, name: &str) -> CredentialRecord {
        CredentialRecord {
            id: CredentialId([id; 8]),
            name: name.parse().unwrap(),
            role: Role::Publisher,
            secret_sha256: [id; 32],
            created_ms: 5,
            created_by: "bootstrap".to_owned(),
            revoked_ms: None,
        }
    }

    fn command() -> impl Strategy<Value = Command> {
        let names = || prop::sample::select(vec!["app:1", "app:2", "lib:1"]);
        let small = || prop::sample::select(vec!["one", "two"]);
        prop_oneof![
            (0..3usize, names()).prop_map(|(c, n)| bind(c, n)),
            crate::nodes::tests::record().prop_map(Command::PutNode),
            (small(), 0..3usize, any::<bool>()).prop_map(|(name, c, create)| {
                let placement = Placement {
                    name: name.parse::<PlacementName>().unwrap(),
                    content_id: artifacts()[c].content_id,
                    name_tag: None,
                    selector: "role=web".parse().unwrap(),
                    created_ms: 9,
                    created_by: "alice".to_owned(),
                    until_ms: None,
                };
                if create {
                    Command::CreatePlacement(placement)
                } else {
                    Command::PutPlacement(placement)
                }
            }),
            small().prop_map(|n| Command::DeletePlacement(n.to_owned())),
            (small(), prop::option::of(0..1u64 << 40)).prop_map(|(name, upload_rate)| {
                Command::PutPolicy(Policy {
                    name: name.parse::<PolicyName>().unwrap(),
                    selector: "metered".parse().unwrap(),
                    rules: Rules {
                        upload_rate,
                        ..Rules::default()
                    },
                    updated_ms: 3,
                    updated_by: "alice".to_owned(),
                })
            }),
            small().prop_map(|n| Command::DeletePolicy(n.to_owned())),
            (0..4u8, small(), any::<bool>()).prop_map(|(id, name, only_if_none)| {
                Command::IssueCredential {
                    record: credential(id, name),
                    only_if_none,
                }
            }),
            (small(), any::<u32>()).prop_map(|(name, at)| Command::RevokeCredential {
                name: name.parse().unwrap(),
                at_ms: u64::from(at),
            }),
            (small(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(key, value)| {
                Command::InitSetting {
                    key: key.to_owned(),
                    value,
                }
            }),
        ]
    }

    /// Applies `log`; checks on the way that deciding a command changes nothing and decides
    /// what applying it does.
    fn run(state: &mut ControlState, log: &[Command]) -> Vec<Outcome> {
        log.iter()
            .map(|c| {
                let before = state.clone();
                let decided = state.decide(c);
                assert_eq!(state, &before, "deciding {c:?} changed the state");
                let outcome = state.apply(c);
                assert_eq!(outcome, decided);
                outcome
            })
            .collect()
    }

    #[test]
    fn tags_bind_once_and_a_refusal_changes_nothing() {
        let mut state = ControlState::default();
        let Outcome::Bound { already: false, .. } = state.apply(&bind(0, "app:1")) else {
            panic!("first bind")
        };
        assert!(matches!(
            state.apply(&bind(0, "app:1")),
            Outcome::Bound { already: true, .. }
        ));
        let before = state.digest();
        assert_eq!(
            state.apply(&bind(1, "app:1")),
            Outcome::BindRefused(BindError::TagBoundToOtherContent {
                name_tag: "app:1".parse().unwrap(),
                bound_content_id: artifacts()[0].content_id,
            })
        );
        assert_eq!(state.digest(), before);
        // The same content under a second name: found by content id under both.
        state.apply(&bind(0, "app:latest"));
        let prefix: ContentIdPrefix = data_encoding::HEXLOWER
            .encode(&artifacts()[0].content_id[..8])
            .parse()
            .unwrap();
        let names: Vec<String> = state
            .by_content(&prefix, 10)
            .iter()
            .map(|r| r.name_tag.to_string())
            .collect();
        assert_eq!(names, ["app:1", "app:latest"]);
        let (page, more) = state.list("app:", None, 1);
        assert_eq!(
            (page[0].name_tag.to_string(), more),
            ("app:1".to_owned(), true)
        );
        let (page, more) = state.list("app:", Some("app:1"), 5);
        assert_eq!((page.len(), more), (1, false));
    }

    #[test]
    fn a_placement_is_created_once_and_the_loser_is_told_the_holder() {
        let placement = |c: usize, selector: &str| Placement {
            name: "rollout".parse::<PlacementName>().unwrap(),
            content_id: artifacts()[c].content_id,
            name_tag: None,
            selector: selector.parse().unwrap(),
            created_ms: 9,
            created_by: "alice".to_owned(),
            until_ms: None,
        };
        let mut state = ControlState::default();
        let first = placement(0, "role=web");
        assert_eq!(
            state.apply(&Command::CreatePlacement(first.clone())),
            Outcome::Stored
        );
        let other = placement(1, "role=db");
        assert_eq!(
            state.apply(&Command::CreatePlacement(other.clone())),
            Outcome::PlacementExists(first.clone())
        );
        assert_eq!(state.placement("rollout"), Some(&first));
        assert!(other.check_against(&first).is_err());
        // The same request again is told the holder too, which it matches.
        let again = placement(0, "role=web");
        assert_eq!(
            state.apply(&Command::CreatePlacement(again.clone())),
            Outcome::PlacementExists(first.clone())
        );
        assert!(again.check_against(&first).is_ok());
        // An import's put still replaces.
        assert_eq!(
            state.apply(&Command::PutPlacement(other.clone())),
            Outcome::Stored
        );
        assert_eq!(state.placement("rollout"), Some(&other));
        let exists = Outcome::PlacementExists(first);
        assert_eq!(Outcome::decode(&exists.encode()).unwrap(), exists);
    }

    #[test]
    fn credentials_are_issued_once_per_valid_name_and_revoked_by_name() {
        let mut state = ControlState::default();
        let issue = |id, name, only_if_none| Command::IssueCredential {
            record: credential(id, name),
            only_if_none,
        };
        assert_eq!(state.apply(&issue(1, "ci", true)), Outcome::Issued(true));
        assert_eq!(state.apply(&issue(2, "bob", true)), Outcome::Issued(false));
        assert_eq!(
            state.apply(&issue(2, "ci", false)),
            Outcome::CredentialNameTaken("ci".parse().unwrap())
        );
        assert_eq!(
            state.apply(&issue(1, "bob", false)),
            Outcome::CredentialIdTaken
        );
        let revoke = Command::RevokeCredential {
            name: "ci".parse().unwrap(),
            at_ms: 77,
        };
        let Outcome::Revoked(record) = state.apply(&revoke) else {
            panic!("revoked")
        };
        assert_eq!(record.revoked_ms, Some(77));
        assert_eq!(
            state.apply(&revoke),
            Outcome::CredentialNotFound("ci".parse().unwrap())
        );
        // The name is free again once its holder is revoked.
        assert_eq!(state.apply(&issue(3, "ci", false)), Outcome::Issued(true));
        assert_eq!(state.credentials().len(), 2);
    }

    #[test]
    fn a_setting_keeps_its_first_value() {
        let mut state = ControlState::default();
        let init = |v: &[u8]| Command::InitSetting {
            key: "page token key".into(),
            value: v.to_vec(),
        };
        assert_eq!(
            state.apply(&init(b"first")),
            Outcome::Setting(b"first".to_vec())
        );
        assert_eq!(
            state.apply(&init(b"second")),
            Outcome::Setting(b"first".to_vec())
        );
        assert_eq!(state.setting("page token key"), Some(b"first".as_slice()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Same log, same state, same outcomes; a snapshot taken anywhere and the rest of the
        /// log give the same state again; a tag never names two contents.
        #[test]
        fn the_same_log_gives_the_same_state(log in prop::collection::vec(command(), 0..40), cut in 0usize..40) {
            for command in &log {
                prop_assert_eq!(&Command::decode(&command.encode()).unwrap(), command);
            }
            let (mut a, mut b) = (ControlState::default(), ControlState::default());
            let outcomes = run(&mut a, &log);
            prop_assert_eq!(&run(&mut b, &log), &outcomes);
            prop_assert_eq!(a.digest(), b.digest());
            for outcome in &outcomes {
                prop_assert_eq!(&Outcome::decode(&outcome.encode()).unwrap(), outcome);
            }
            let restored = ControlState::decode(&a.encode()).unwrap();
            prop_assert_eq!(&restored, &a);

            let cut = cut.min(log.len());
            let mut first = ControlState::default();
            run(&mut first, &log[..cut]);
            let mut resumed = ControlState::decode(&first.encode()).unwrap();
            prop_assert_eq!(&run(&mut resumed, &log[cut..]), &outcomes[cut..].to_vec());
            prop_assert_eq!(resumed.digest(), a.digest());

            let mut bound: BTreeMap<String, [u8; 32]> = BTreeMap::new();
            for outcome in &outcomes {
                if let Outcome::Bound { record, .. } = outcome {
                    let content = *bound.entry(record.name_tag.to_string()).or_insert(record.content_id);
                    prop_assert_eq!(content, record.content_id);
                }
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Command::decode(&bytes);
            let mut state = ControlState::default();
            if let Outcome::Unreadable(_) = state.apply_entry(&bytes) {
                prop_assert_eq!(&state, &ControlState::default());
            }
            let _ = Outcome::decode(&bytes);
            let _ = ControlState::decode(&bytes);
        }
    }
}
