//! The catalog's durable store: redb tables of artifact records by `name:tag`, an index by
//! content id, the registered nodes, the placements, the policies, the credentials (by id;
//! the SHA-256 of each token's secret, never the token), and the server's own settings (the
//! page-token secret).
//!
//! Every bind is one write transaction: read what the tag holds, apply the bind rule
//! ([`shoal_control::decide_bind`]), insert, commit. redb commits durably (fsync) before
//! `commit` returns, so an acknowledged bind survives a crash.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use shoal_control::{
    ArtifactRecord, BindOutcome, ContentIdPrefix, CredentialId, CredentialName, CredentialRecord,
    NameTag, NodeRecord, Placement, Policy, decide_bind,
};

use crate::error::ServerError;

/// `name:tag` -> the record's stored form.
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");
/// content id (32 bytes) followed by `name:tag` -> nothing: every name bound to a content.
const BY_CONTENT: TableDefinition<&[u8], ()> = TableDefinition::new("by_content");
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

/// The catalog database.
pub struct Catalog {
    db: Database,
}

impl Catalog {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the file cannot be opened (held by another process,
    /// corrupt, no permission).
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let db = Database::create(path).map_err(|e| ServerError::store(path, e))?;
        let txn = db.begin_write().map_err(|e| ServerError::store(path, e))?;
        {
            txn.open_table(ARTIFACTS)
                .map_err(|e| ServerError::store(path, e))?;
            txn.open_table(BY_CONTENT)
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
        Ok(Self { db })
    }

    /// Binds `record.name_tag` to `record`'s content, or finds it already bound to the same
    /// content (and returns the stored record, unchanged).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the tag holds other content; [`ServerError::Db`] when the
    /// store fails.
    pub fn bind(&self, record: ArtifactRecord) -> Result<(ArtifactRecord, bool), ServerError> {
        let txn = self.db.begin_write()?;
        let result = {
            let mut artifacts = txn.open_table(ARTIFACTS)?;
            let key = record.name_tag.to_string();
            let existing = match artifacts.get(key.as_str())? {
                Some(bytes) => Some(ArtifactRecord::decode(bytes.value())?),
                None => None,
            };
            match decide_bind(existing.as_ref(), &record)? {
                BindOutcome::AlreadyBound => {
                    let Some(existing) = existing else {
                        return Err(ServerError::Internal("already bound, but no record"));
                    };
                    (existing, true)
                }
                BindOutcome::Bound => {
                    artifacts.insert(key.as_str(), record.encode().as_slice())?;
                    let mut index = txn.open_table(BY_CONTENT)?;
                    index.insert(content_key(&record.content_id, &key).as_slice(), ())?;
                    (record, false)
                }
            }
        };
        txn.commit()?;
        Ok(result)
    }

    /// The record bound to `name_tag`.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn get(&self, name_tag: &NameTag) -> Result<Option<ArtifactRecord>, ServerError> {
        let txn = self.db.begin_read()?;
        let artifacts = txn.open_table(ARTIFACTS)?;
        match artifacts.get(name_tag.to_string().as_str())? {
            Some(bytes) => Ok(Some(ArtifactRecord::decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The records whose content id starts with `prefix` (at most `limit`; one content may be
    /// bound under several names). Callers decide what several distinct contents mean.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn by_content(
        &self,
        prefix: &ContentIdPrefix,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, ServerError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(BY_CONTENT)?;
        let artifacts = txn.open_table(ARTIFACTS)?;
        let start = prefix.lower_bound();
        let mut out = Vec::new();
        for entry in index.range(start.as_slice()..)? {
            let (key, _) = entry?;
            let key = key.value();
            let Some((content, name)) = key.split_first_chunk::<32>() else {
                continue;
            };
            if !prefix.matches(content) || out.len() >= limit {
                break;
            }
            let name = std::str::from_utf8(name).map_err(|_| ServerError::Internal("index key"))?;
            if let Some(bytes) = artifacts.get(name)? {
                out.push(ArtifactRecord::decode(bytes.value())?);
            }
        }
        Ok(out)
    }

    /// Up to `limit` records whose `name:tag` starts with `prefix`, strictly after `after`,
    /// in `name:tag` order; and whether more follow.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ArtifactRecord>, bool), ServerError> {
        let txn = self.db.begin_read()?;
        let artifacts = txn.open_table(ARTIFACTS)?;
        let start = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        for entry in artifacts.range(start..)? {
            let (key, value) = entry?;
            let key = key.value();
            if Some(key) == after {
                continue;
            }
            if !key.starts_with(prefix) {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(ArtifactRecord::decode(value.value())?);
        }
        Ok((out, false))
    }

    /// Every record (for the tracker's allow-list at start).
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn all_info_hashes(&self) -> Result<Vec<[u8; 20]>, ServerError> {
        let (records, _) = self.list("", None, usize::MAX)?;
        Ok(records
            .iter()
            .flat_map(ArtifactRecord::announce_info_hashes)
            .collect())
    }

    /// Stores a node's registration.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_node(&self, node: &NodeRecord) -> Result<(), ServerError> {
        self.put(NODES, node.id.as_str(), &node.encode())
    }

    /// Every stored node.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, ServerError> {
        self.all(NODES, NodeRecord::decode)
    }

    /// Stores a placement (one durable write transaction).
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_placement(&self, placement: &Placement) -> Result<(), ServerError> {
        self.put(PLACEMENTS, placement.name.as_str(), &placement.encode())
    }

    /// Deletes a placement; returns true if and only if it was stored.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn delete_placement(&self, name: &str) -> Result<bool, ServerError> {
        self.delete(PLACEMENTS, name)
    }

    /// Every stored placement.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails or a record does not read.
    pub fn placements(&self) -> Result<Vec<Placement>, ServerError> {
        self.all(PLACEMENTS, Placement::decode)
    }

    /// Stores a policy, replacing one of the same name (one durable write transaction).
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn put_policy(&self, policy: &Policy) -> Result<(), ServerError> {
        self.put(POLICIES, policy.name.as_str(), &policy.encode())
    }

    /// Deletes a policy; returns true if and only if it was stored.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails.
    pub fn delete_policy(&self, name: &str) -> Result<bool, ServerError> {
        self.delete(POLICIES, name)
    }

    /// Every stored policy.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails or a record does not read.
    pub fn policies(&self) -> Result<Vec<Policy>, ServerError> {
        self.all(POLICIES, Policy::decode)
    }

    /// The credential with id `id`, valid or revoked.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails or the record does not read.
    pub fn credential(&self, id: CredentialId) -> Result<Option<CredentialRecord>, ServerError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CREDENTIALS)?;
        match table.get(id.0.as_slice())? {
            Some(bytes) => Ok(Some(CredentialRecord::decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Every credential, valid and revoked, in no particular order.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the store fails or a record does not read.
    pub fn credentials(&self) -> Result<Vec<CredentialRecord>, ServerError> {
        self.all(CREDENTIALS, CredentialRecord::decode)
    }

    /// Stores a new credential, in one write transaction with the check that no valid
    /// credential has its name (and, when `only_if_none`, that there is no credential at all:
    /// the bootstrap admin). Returns false if and only if `only_if_none` and one exists.
    ///
    /// # Errors
    /// [`ServerError::CredentialExists`] when a valid credential has the name;
    /// [`ServerError::Db`] when the store fails.
    pub fn issue_credential(
        &self,
        record: &CredentialRecord,
        only_if_none: bool,
    ) -> Result<bool, ServerError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(CREDENTIALS)?;
            if only_if_none && !table.is_empty()? {
                return Ok(false);
            }
            for entry in table.iter()? {
                let (_, value) = entry?;
                let other = CredentialRecord::decode(value.value())?;
                if other.name == record.name && other.revoked_ms.is_none() {
                    return Err(ServerError::CredentialExists(record.name.to_string()));
                }
            }
            if table.get(record.id.0.as_slice())?.is_some() {
                // 64 random bits collided: astronomically rare, and refused rather than
                // overwriting someone's credential.
                return Err(ServerError::Internal(
                    "credential id collision; issue again",
                ));
            }
            table.insert(record.id.0.as_slice(), record.encode().as_slice())?;
        }
        txn.commit()?;
        Ok(true)
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
        let txn = self.db.begin_write()?;
        let revoked = {
            let mut table = txn.open_table(CREDENTIALS)?;
            let mut found = None;
            for entry in table.iter()? {
                let (_, value) = entry?;
                let record = CredentialRecord::decode(value.value())?;
                if &record.name == name && record.revoked_ms.is_none() {
                    found = Some(record);
                    break;
                }
            }
            let Some(mut record) = found else {
                return Err(ServerError::CredentialNotFound(name.to_string()));
            };
            record.revoked_ms = Some(now_ms);
            table.insert(record.id.0.as_slice(), record.encode().as_slice())?;
            record
        };
        txn.commit()?;
        Ok(revoked)
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
        let txn = self.db.begin_write()?;
        let value = {
            let mut meta = txn.open_table(META)?;
            let existing = meta.get(key)?.map(|v| v.value().to_vec());
            match existing {
                Some(v) => v,
                None => {
                    let v = make();
                    meta.insert(key, v.as_slice())?;
                    v
                }
            }
        };
        txn.commit()?;
        Ok(value)
    }
}

impl Catalog {
    /// Stores `value` under `key` in `table`, replacing what was there (one durable write
    /// transaction).
    fn put(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), ServerError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes `key` from `table`; returns true if and only if it was stored.
    fn delete(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<bool, ServerError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(table)?.remove(key)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// Every record of `table`, read with `decode`.
    fn all<K: redb::Key + 'static, T>(
        &self,
        table: TableDefinition<K, &[u8]>,
        decode: impl Fn(&[u8]) -> Result<T, shoal_control::RecordError>,
    ) -> Result<Vec<T>, ServerError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(decode(value.value())?);
        }
        Ok(out)
    }
}

fn content_key(content_id: &[u8; 32], name_tag: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + name_tag.len());
    key.extend_from_slice(content_id);
    key.extend_from_slice(name_tag.as_bytes());
    key
}
