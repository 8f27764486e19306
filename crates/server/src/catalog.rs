//! The catalog: the control plane's replicated state ([`ControlState`]), in one of two
//! backends.
//!
//! - **Local** (a single-node control plane): the state in memory, kept durable in redb
//!   tables of artifact records by `name:tag`, the registered nodes, the placements, the
//!   policies, the credentials (by id; the SHA-256 of each token's secret, never the token),
//!   and the server's own settings (the page-token secret). Writers, one at a time, have
//!   [`ControlState::decide`] what a [`Command`] does, write that effect in one redb write
//!   transaction, which commits durably (fsync), and only then [`ControlState::commit`] it to
//!   memory and tell the caller. So an acknowledged bind survives a crash, memory never holds
//!   what the disk does not, and readers (every call's credential check among them) are never
//!   held up by a write's fsync. (Databases from before this layout also hold a `by_content`
//!   index table, now unused: the index lives in memory.)
//! - **Replicated** (a 3- or 5-node cluster): the state is a [`Replica`] that `shoal-raft`
//!   replicates. A command is written to the Raft log from any member (followers forward it
//!   to the leader), applied on every member in log order, and the write returns once it is
//!   applied here too. Reads are linearizable: they wait until this member has applied every
//!   write committed before the read began.
//!
//! Either way, every applied command is reported, in order, to an [`Observer`] (the control
//! plane, which keeps its in-memory tables and the tracker's allow-list in step), and so is a
//! state replaced wholesale by a snapshot. The observer is called with the state's lock held,
//! so it must not call back into the catalog.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, Weak};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shoal_control::{
    ArtifactRecord, Command, ContentIdPrefix, ControlState, CredentialId, CredentialName,
    CredentialRecord, NameTag, NodeRecord, Outcome, Placement, Policy,
};
use shoal_raft::{RaftConfig, RaftNode, StateMachine};

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

/// Told of every change to the state, in the order applied.
pub(crate) trait Observer: Send + Sync {
    /// `command` was applied with `outcome`; `state` is the state after it.
    fn applied(&self, state: &ControlState, command: &Command, outcome: &Outcome);
    /// The whole state was replaced (a snapshot from the leader was installed).
    fn replaced(&self, state: &ControlState);
}

/// Where the observer is, once there is one; shared by the catalog and its replica.
#[derive(Clone, Default)]
pub(crate) struct ObserverSlot(Arc<OnceLock<Weak<dyn Observer>>>);

impl ObserverSlot {
    fn get(&self) -> Option<Arc<dyn Observer>> {
        self.0.get().and_then(Weak::upgrade)
    }

    fn applied(&self, state: &ControlState, command: &Command, outcome: &Outcome) {
        if let Some(observer) = self.get() {
            observer.applied(state, command, outcome);
        }
    }

    fn replaced(&self, state: &ControlState) {
        if let Some(observer) = self.get() {
            observer.replaced(state);
        }
    }
}

/// The state machine a replicated catalog hands to Raft: the state, and who to tell.
pub struct Replica {
    state: ControlState,
    observer: ObserverSlot,
}

impl StateMachine for Replica {
    fn apply(&mut self, entry: &[u8]) -> Vec<u8> {
        let outcome = match Command::decode(entry) {
            Ok(command) => {
                let outcome = self.state.apply(&command);
                self.observer.applied(&self.state, &command, &outcome);
                outcome
            }
            // Applied as nothing, alike on every member; the writer is told why.
            Err(e) => Outcome::Unreadable(e.to_string()),
        };
        outcome.encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.encode()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.state = ControlState::decode(snapshot).map_err(|e| e.to_string())?;
        self.observer.replaced(&self.state);
        Ok(())
    }
}

/// The single-node backend: memory, kept durable in redb.
struct Local {
    db: Database,
    state: RwLock<ControlState>,
    /// Held by the one writer at a time, from its decision to its commit.
    writer: Mutex<()>,
}

enum Backend {
    Local(Local),
    Replicated(RaftNode<Replica>),
}

/// The catalog: the replicated state, stored locally or replicated with Raft.
pub struct Catalog {
    backend: Backend,
    observer: ObserverSlot,
}

impl Catalog {
    /// Opens (or creates) the single-node database at `path` and reads the state from it.
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
            backend: Backend::Local(Local {
                db,
                state: RwLock::new(state),
                writer: Mutex::new(()),
            }),
            observer: ObserverSlot::default(),
        })
    }

    /// Starts this server node's Raft member (its files under `config.data_dir/raft/`), with
    /// the state its last snapshot and committed log hold.
    ///
    /// # Errors
    /// [`ServerError::Cluster`] when the Raft member cannot start (see [`RaftNode::start`]).
    pub async fn open_replicated(config: RaftConfig) -> Result<Self, ServerError> {
        let observer = ObserverSlot::default();
        let replica = Replica {
            state: ControlState::default(),
            observer: observer.clone(),
        };
        let raft = RaftNode::start(config, replica).await?;
        Ok(Self {
            backend: Backend::Replicated(raft),
            observer,
        })
    }

    /// Sets who is told of changes (once; later calls change nothing).
    pub(crate) fn set_observer(&self, observer: Weak<dyn Observer>) {
        let _ = self.observer.0.set(observer);
    }

    /// The Raft member, when the catalog is replicated.
    pub(crate) fn raft(&self) -> Option<&RaftNode<Replica>> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Replicated(raft) => Some(raft),
        }
    }

    /// Runs `read` on the state as this node holds it now, without waiting for the cluster:
    /// for start-up, and for what never changes once set.
    pub(crate) fn read_local<T>(&self, read: impl FnOnce(&ControlState) -> T) -> T {
        match &self.backend {
            Backend::Local(local) => read(&local.state()),
            Backend::Replicated(raft) => raft.read_local(|replica| read(&replica.state)),
        }
    }

    /// Runs `read` on a state that reflects every write acknowledged before this call began
    /// (on a cluster, a linearizable read; alone, simply the state).
    ///
    /// # Errors
    /// [`ServerError::Cluster`] when the cluster cannot confirm it (no leader, no quorum).
    pub(crate) async fn read<T>(
        &self,
        read: impl FnOnce(&ControlState) -> T,
    ) -> Result<T, ServerError> {
        match &self.backend {
            Backend::Local(local) => Ok(read(&local.state())),
            Backend::Replicated(raft) => Ok(raft
                .read_linearizable(|replica| read(&replica.state))
                .await?),
        }
    }

    /// Carries out `command` and returns its outcome once it is durable (alone: fsynced; on a
    /// cluster: committed by a majority) and applied here.
    ///
    /// # Errors
    /// [`ServerError::Db`] when the local store fails (nothing changed, in memory or on disk);
    /// [`ServerError::Cluster`] when the cluster cannot take the write (the error says whether
    /// it may have been applied); [`ServerError::Corrupt`] for an answer that does not read.
    pub(crate) async fn execute(&self, command: &Command) -> Result<Outcome, ServerError> {
        match &self.backend {
            Backend::Local(local) => local.execute(command, &self.observer),
            Backend::Replicated(raft) => {
                let answer = raft.write(command.encode()).await?;
                match Outcome::decode(&answer) {
                    Ok(Outcome::Unreadable(why)) => Err(ServerError::Corrupt(format!(
                        "the cluster could not read the command: {why} (do the server nodes \
                         run different versions?)"
                    ))),
                    Ok(outcome) => Ok(outcome),
                    Err(e) => Err(ServerError::Corrupt(format!(
                        "the cluster's answer does not read: {e}"
                    ))),
                }
            }
        }
    }

    /// Carries out `command` at start-up on the single-node backend, where there is no
    /// cluster to wait for; `None` on a replicated catalog.
    pub(crate) fn execute_local(&self, command: &Command) -> Option<Result<Outcome, ServerError>> {
        match &self.backend {
            Backend::Local(local) => Some(local.execute(command, &self.observer)),
            Backend::Replicated(_) => None,
        }
    }

    /// Binds `record.name_tag` to `record`'s content, or finds it already bound to the same
    /// content (and returns the stored record, unchanged, and true).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the tag holds other content; as [`Catalog::execute`].
    pub async fn bind(
        &self,
        record: ArtifactRecord,
    ) -> Result<(ArtifactRecord, bool), ServerError> {
        match self.execute(&Command::Bind(record)).await? {
            Outcome::Bound { record, already } => Ok((record, already)),
            Outcome::BindRefused(e) => Err(e.into()),
            _ => Err(ServerError::Internal("a bind has a bind's outcome")),
        }
    }

    /// The record bound to `name_tag`.
    ///
    /// # Errors
    /// As [`Catalog::read`].
    pub async fn get(&self, name_tag: &NameTag) -> Result<Option<ArtifactRecord>, ServerError> {
        self.read(|s| s.artifact(name_tag).cloned()).await
    }

    /// The records whose content id starts with `prefix` (at most `limit`; one content may be
    /// bound under several names). Callers decide what several distinct contents mean.
    ///
    /// # Errors
    /// As [`Catalog::read`].
    pub async fn by_content(
        &self,
        prefix: &ContentIdPrefix,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, ServerError> {
        self.read(|s| s.by_content(prefix, limit).into_iter().cloned().collect())
            .await
    }

    /// Up to `limit` records whose `name:tag` starts with `prefix`, strictly after `after`,
    /// in `name:tag` order; and whether more follow.
    ///
    /// # Errors
    /// As [`Catalog::read`].
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ArtifactRecord>, bool), ServerError> {
        self.read(|s| {
            let (records, more) = s.list(prefix, after, limit);
            (records.into_iter().cloned().collect(), more)
        })
        .await
    }

    /// Stores a node's registration.
    ///
    /// # Errors
    /// As [`Catalog::execute`].
    pub async fn put_node(&self, node: &NodeRecord) -> Result<(), ServerError> {
        self.execute(&Command::PutNode(node.clone()))
            .await
            .map(drop)
    }

    /// Stores a placement unless its name is taken; returns the placement that holds the name
    /// when it is (perhaps an identical one: see [`Placement::check_against`]).
    ///
    /// # Errors
    /// As [`Catalog::execute`].
    pub async fn create_placement(
        &self,
        placement: &Placement,
    ) -> Result<Option<Placement>, ServerError> {
        match self
            .execute(&Command::CreatePlacement(placement.clone()))
            .await?
        {
            Outcome::PlacementExists(existing) => Ok(Some(existing)),
            _ => Ok(None),
        }
    }

    /// Deletes a placement; returns true if and only if it was stored.
    ///
    /// # Errors
    /// As [`Catalog::execute`].
    pub async fn delete_placement(&self, name: &str) -> Result<bool, ServerError> {
        deleted(
            self.execute(&Command::DeletePlacement(name.to_owned()))
                .await?,
        )
    }

    /// Stores a policy.
    ///
    /// # Errors
    /// As [`Catalog::execute`].
    pub async fn put_policy(&self, policy: &Policy) -> Result<(), ServerError> {
        self.execute(&Command::PutPolicy(policy.clone()))
            .await
            .map(drop)
    }

    /// Deletes a policy; returns true if and only if it was stored.
    ///
    /// # Errors
    /// As [`Catalog::execute`].
    pub async fn delete_policy(&self, name: &str) -> Result<bool, ServerError> {
        deleted(
            self.execute(&Command::DeletePolicy(name.to_owned()))
                .await?,
        )
    }

    /// The credential with id `id`, valid or revoked.
    ///
    /// # Errors
    /// As [`Catalog::read`].
    pub async fn credential(
        &self,
        id: CredentialId,
    ) -> Result<Option<CredentialRecord>, ServerError> {
        self.read(|s| s.credential(id).cloned()).await
    }

    /// Every credential, valid and revoked, in id order.
    ///
    /// # Errors
    /// As [`Catalog::read`].
    pub async fn credentials(&self) -> Result<Vec<CredentialRecord>, ServerError> {
        self.read(|s| s.credentials().cloned().collect()).await
    }

    /// Stores a new credential unless a valid credential has its name (and, when
    /// `only_if_none`, unless there is any credential: the bootstrap admin). Returns false if
    /// and only if `only_if_none` and one exists.
    ///
    /// # Errors
    /// [`ServerError::CredentialExists`] when a valid credential has the name; as
    /// [`Catalog::execute`].
    pub async fn issue_credential(
        &self,
        record: &CredentialRecord,
        only_if_none: bool,
    ) -> Result<bool, ServerError> {
        let command = Command::IssueCredential {
            record: record.clone(),
            only_if_none,
        };
        issued(self.execute(&command).await?)
    }

    /// Revokes the valid credential named `name` at `now_ms`; the revoked record.
    ///
    /// # Errors
    /// [`ServerError::CredentialNotFound`] when no valid credential has the name; as
    /// [`Catalog::execute`].
    pub async fn revoke_credential(
        &self,
        name: &CredentialName,
        now_ms: u64,
    ) -> Result<CredentialRecord, ServerError> {
        let command = Command::RevokeCredential {
            name: name.clone(),
            at_ms: now_ms,
        };
        match self.execute(&command).await? {
            Outcome::Revoked(record) => Ok(record),
            Outcome::CredentialNotFound(name) => {
                Err(ServerError::CredentialNotFound(name.to_string()))
            }
            _ => Err(ServerError::Internal(
                "a revocation has a revocation's outcome",
            )),
        }
    }
}

/// What an `IssueCredential` outcome means for the caller.
pub(crate) fn issued(outcome: Outcome) -> Result<bool, ServerError> {
    match outcome {
        Outcome::Issued(issued) => Ok(issued),
        Outcome::CredentialNameTaken(name) => Err(ServerError::CredentialExists(name.to_string())),
        // 64 random bits collided: astronomically rare, and refused rather than overwriting
        // someone's credential.
        Outcome::CredentialIdTaken => Err(ServerError::Internal(
            "credential id collision; issue again",
        )),
        _ => Err(ServerError::Internal("an issue has an issue's outcome")),
    }
}

impl Local {
    fn state(&self) -> RwLockReadGuard<'_, ControlState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides what `command` does, stores that effect durably, applies it in memory, tells
    /// the observer; its outcome.
    fn execute(&self, command: &Command, observer: &ObserverSlot) -> Result<Outcome, ServerError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = self.state().decide(command);
        self.store(command, &outcome)?;
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .commit(command, &outcome);
        // Still the one writer: observers see changes in the order they were made.
        observer.applied(&self.state(), command, &outcome);
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
            (Command::PutPlacement(placement), _)
            | (Command::CreatePlacement(placement), Outcome::Stored) => {
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
