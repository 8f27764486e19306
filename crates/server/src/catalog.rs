//! The catalog: the control plane's replicated state ([`ControlState`]) in memory, kept
//! durable in redb tables of artifact records by `name:tag`, the registered nodes, the
//! placements, the policies, the credentials (by id; the SHA-256 of each token's secret, never
//! the token), and the server's own settings (the page-token secret).
//!
//! Every change is a [`Command`], carried out by the state machine's own deterministic logic
//! (the apply a replicated control plane runs on every node): writers, one at a time, have
//! [`ControlState::decide`] what the command does, write that effect in one redb write
//! transaction, which commits durably (fsync), and only then [`ControlState::commit`] it to
//! memory and tell the caller. So an acknowledged bind survives a crash, memory never holds
//! what the disk does not, and readers (every call's credential check among them) are never
//! held up by a write's fsync. Reads are served from memory. (Databases from before this layout also hold a `by_content` index table, now
//! unused: the index lives in memory.)

use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shoal_control::{
    ArtifactRecord, Command, ContentIdPrefix, ControlState, CredentialId, CredentialName,
    CredentialRecord, NameTag, NodeRecord, Outcome, Placement, Policy,
};

use crate::error::ServerError;

/// `name:tag` -> the record's stored form.
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");
/// node id -> the node's stored form.
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// placement name -> the placement's stored form.
const PLACEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("placements");
/// policy name -> the policy's stored form.
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
/// credential id (8 bytes) -> the credential's stored form.
const CREDENTIALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("credentials");
/// Server settings.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The catalog: the state in memory and the database that keeps it.
pub struct Catalog {
    db: Database,
    state: RwLock<ControlState>,
    /// Held by the one writer at a time, from its decision to its commit.
    writer: Mutex<()>,
}

impl Catalog {
    /// Opens (or creates) the database at `path` and reads the state from it.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the file cannot be opened (held by another process,
    /// corrupt, no permission); [`ServerError::Corrupt`] when a stored record does not read.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let db = Database::create(path).map_err(|e| ServerError::store(path, e))?;
        let txn = db.begin_write().map_err(|e| ServerError::store(path, e))?;
        {
            txn.open_table(ARTIFACTS)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(NODES)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(META)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(PLACEMENTS)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(POLICIES)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(CREDENTIALS)
                .map_err(|e| ServerError::store(path, e))?;
        }
        txn.commit().map_err(|e| ServerError::store(path, e))?;
        let state = load(&db)?;
        Ok(Self {
            db,
            state: RwLock::new(state),
            writer: Mutex::new(()),
        })
    }

    /// The state, for reading.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, ControlState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides what `command` does, stores that effect durably, then applies it in memory; its
    /// outcome.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails (nothing changed, in memory or on disk).
    pub(crate) fn execute(&self, command: &Command) -> Result<Outcome, ServerError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = self.state().decide(command);
        self.store(command, &outcome)?;
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .commit(command, &outcome);
        Ok(outcome)
    }

    /// Writes what `command` changed (as `outcome` says) in one durable transaction.
    fn store(&self, command: &Command, outcome: &Outcome) -> Result<(), ServerError> {
        let txn = self.db.begin_write()?;
        match (command, outcome) {
            (Command::Bind(record), Outcome::Bound { already: false, .. }) => {
                txn.open_table(ARTIFACTS)?.insert(
                    record.name_tag.to_string().as_str(),
                    record.encode().as_slice(),
                )?;
            }
            (Command::PutNode(node), _) => {
                txn.open_table(NODES)?
                    .insert(node.id.as_str(), node.encode().as_slice())?;
            }
            (Command::PutPlacement(placement), _) => {
                txn.open_table(PLACEMENTS)?
                    .insert(placement.name.as_str(), placement.encode().as_slice())?;
            }
            (Command::DeletePlacement(name), Outcome::Deleted(true)) => {
                txn.open_table(PLACEMENTS)?.remove(name.as_str())?;
            }
            (Command::PutPolicy(policy), _) => {
                txn.open_table(POLICIES)?
                    .insert(policy.name.as_str(), policy.encode().as_slice())?;
            }
            (Command::DeletePolicy(name), Outcome::Deleted(true)) => {
                txn.open_table(POLICIES)?.remove(name.as_str())?;
            }
            (Command::IssueCredential { record, .. }, Outcome::Issued(true))
            | (Command::RevokeCredential { .. }, Outcome::Revoked(record)) => {
                txn.open_table(CREDENTIALS)?
                    .insert(record.id.0.as_slice(), record.encode().as_slice())?;
            }
            (Command::InitSetting { key, .. }, Outcome::Setting(value)) => {
                txn.open_table(META)?
                    .insert(key.as_str(), value.as_slice())?;
            }
            // Refusals and no-ops change nothing.
            _ => return Ok(()),
        }
        txn.commit()?;
        Ok(())
    }

    /// Binds `record.name_tag` to `record`'s content, or finds it already bound to the same
    /// content (and returns the stored record, unchanged, and true).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the tag holds other content; [`ServerError::Db`] when the
    /// store fails.
    pub fn bind(&self, record: ArtifactRecord) -> Result<(ArtifactRecord, bool), ServerError> {
        match self.execute(&Command::Bind(record))? {
            Outcome::Bound { record, already } => Ok((record, already)),
            Outcome::BindRefused(e) => Err(e.into()),
            _ => Err(ServerError::Internal("a bind has a bind's outcome")),
        }
    }

    /// The record bound to `name_tag`.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn get(&self, name_tag: &NameTag) -> Result<Option<ArtifactRecord>, ServerError> {
        Ok(self.state().artifact(name_tag).cloned())
    }

    /// The records whose content id starts with `prefix` (at most `limit`; one content may be
    /// bound under several names). Callers decide what several distinct contents mean.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn by_content(
        &self,
        prefix: &ContentIdPrefix,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, ServerError> {
        Ok(self
            .state()
            .by_content(prefix, limit)
            .into_iter()
            .cloned()
            .collect())
    }

    /// Up to `limit` records whose `name:tag` starts with `prefix`, strictly after `after`,
    /// in `name:tag` order; and whether more follow.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ArtifactRecord>, bool), ServerError> {
        let state = self.state();
        let (records, more) = state.list(prefix, after, limit);
        Ok((records.into_iter().cloned().collect(), more))
    }

    /// Every info-hash a client may announce (for the tracker's allow-list at start).
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn all_info_hashes(&self) -> Result<Vec<[u8; 20]>, ServerError> {
        Ok(self
            .state()
            .artifacts()
            .flat_map(ArtifactRecord::announce_info_hashes)
            .collect())
    }

    /// Stores a node's registration.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_node(&self, node: &NodeRecord) -> Result<(), ServerError> {
        self.execute(&Command::PutNode(node.clone())).map(drop)
    }

    /// Every stored node.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, ServerError> {
        Ok(self.state().nodes().cloned().collect())
    }

    /// Stores a placement (one durable write transaction).
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_placement(&self, placement: &Placement) -> Result<(), ServerError> {
        self.execute(&Command::PutPlacement(placement.clone()))
            .map(drop)
    }

    /// Deletes a placement; returns true if and only if it was stored.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn delete_placement(&self, name: &str) -> Result<bool, ServerError> {
        deleted(self.execute(&Command::DeletePlacement(name.to_owned()))?)
    }

    /// Every stored placement.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn placements(&self) -> Result<Vec<Placement>, ServerError> {
        Ok(self.state().placements().cloned().collect())
    }

    /// Stores a policy (one durable write transaction).
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_policy(&self, policy: &Policy) -> Result<(), ServerError> {
        self.execute(&Command::PutPolicy(policy.clone())).map(drop)
    }

    /// Deletes a policy; returns true if and only if it was stored.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn delete_policy(&self, name: &str) -> Result<bool, ServerError> {
        deleted(self.execute(&Command::DeletePolicy(name.to_owned()))?)
    }

    /// Every stored policy.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn policies(&self) -> Result<Vec<Policy>, ServerError> {
        Ok(self.state().policies().cloned().collect())
    }

    /// The credential with id `id`, valid or revoked.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn credential(&self, id: CredentialId) -> Result<Option<CredentialRecord>, ServerError> {
        Ok(self.state().credential(id).cloned())
    }

    /// Every credential, valid and revoked, in id order.
    ///
    /// # Errors
    /// None today; reads will wait for the cluster when the catalog is replicated.
    pub fn credentials(&self) -> Result<Vec<CredentialRecord>, ServerError> {
        Ok(self.state().credentials().cloned().collect())
    }

    /// Stores a new credential unless a valid credential has its name (and, when
    /// `only_if_none`, unless there is any credential: the bootstrap admin). Returns false if
    /// and only if `only_if_none` and one exists.
    ///
    /// # Errors
    /// [`ServerError::CredentialExists`] when a valid credential has the name;
    /// [`ServerError::Db`] when the store fails.
    pub fn issue_credential(
        &self,
        record: &CredentialRecord,
        only_if_none: bool,
    ) -> Result<bool, ServerError> {
        let command = Command::IssueCredential {
            record: record.clone(),
            only_if_none,
        };
        match self.execute(&command)? {
            Outcome::Issued(issued) => Ok(issued),
            Outcome::CredentialNameTaken(name) => {
                Err(ServerError::CredentialExists(name.to_string()))
            }
            // 64 random bits collided: astronomically rare, and refused rather than
            // overwriting someone's credential.
            Outcome::CredentialIdTaken => Err(ServerError::Internal(
                "credential id collision; issue again",
            )),
            _ => Err(ServerError::Internal("an issue has an issue's outcome")),
        }
    }

    /// Revokes the valid credential named `name` at `now_ms`; the revoked record.
    ///
    /// # Errors
    /// [`ServerError::CredentialNotFound`] when no valid credential has the name;
    /// [`ServerError::Db`] when the store fails.
    pub fn revoke_credential(
        &self,
        name: &CredentialName,
        now_ms: u64,
    ) -> Result<CredentialRecord, ServerError> {
        let command = Command::RevokeCredential {
            name: name.clone(),
            at_ms: now_ms,
        };
        match self.execute(&command)? {
            Outcome::Revoked(record) => Ok(record),
            Outcome::CredentialNotFound(name) => {
                Err(ServerError::CredentialNotFound(name.to_string()))
            }
            _ => Err(ServerError::Internal(
                "a revocation has a revocation's outcome",
            )),
        }
    }

    /// The setting `key`, created with `make` the first time it is asked for.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn setting(
        &self,
        key: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, ServerError> {
        if let Some(value) = self.state().setting(key) {
            return Ok(value.to_vec());
        }
        let command = Command::InitSetting {
            key: key.to_owned(),
            value: make(),
        };
        match self.execute(&command)? {
            Outcome::Setting(value) => Ok(value),
            _ => Err(ServerError::Internal("a setting has a setting's outcome")),
        }
    }
}

fn deleted(outcome: Outcome) -> Result<bool, ServerError> {
    match outcome {
        Outcome::Deleted(existed) => Ok(existed),
        _ => Err(ServerError::Internal("a removal has a removal's outcome")),
    }
}

/// The state the tables hold.
fn load(db: &Database) -> Result<ControlState, ServerError> {
    let txn = db.begin_read()?;
    let artifacts = all(&txn, ARTIFACTS, |b| {
        ArtifactRecord::decode(b).map_err(Into::into)
    })?;
    let nodes = all(&txn, NODES, |b| NodeRecord::decode(b).map_err(Into::into))?;
    let placements = all(&txn, PLACEMENTS, |b| {
        Placement::decode(b).map_err(Into::into)
    })?;
    let policies = all(&txn, POLICIES, |b| Policy::decode(b).map_err(Into::into))?;
    let credentials = all(&txn, CREDENTIALS, |b| {
        CredentialRecord::decode(b).map_err(Into::into)
    })?;
    let mut settings = Vec::new();
    for entry in txn.open_table(META)?.iter()? {
        let (key, value) = entry?;
        settings.push((key.value().to_owned(), value.value().to_vec()));
    }
    Ok(ControlState::from_records(
        artifacts,
        nodes,
        placements,
        policies,
        credentials,
        settings,
    ))
}

/// Every record of `table`, read with `decode`.
fn all<K: redb::Key + 'static, T>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
    decode: impl Fn(&[u8]) -> Result<T, ServerError>,
) -> Result<Vec<T>, ServerError> {
    let table = txn.open_table(table)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (_, value) = entry?;
        out.push(decode(value.value())?);
    }
    Ok(out)
}
