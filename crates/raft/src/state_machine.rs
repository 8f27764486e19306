//! openraft's `RaftStateMachine` over the user's [`StateMachine`]: the applied state in memory,
//! snapshots in one file replaced atomically, and the set of every node id that was ever a member
//! (carried in the snapshot, rebuilt from membership entries), so an id is never reused.
//!
//! The applied state need not be durable: at start the last snapshot is restored and openraft
//! re-applies the committed log after it.

use std::collections::BTreeSet;
use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::StateMachine;
use crate::codec;
use crate::types::{
    Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig,
};

/// A snapshot's file is read whole; this bounds it (the catalog is far smaller).
pub(crate) const MAX_SNAPSHOT_LEN: usize = 4 << 30;

/// What a snapshot carries besides openraft's metadata: ours, then the user's state.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    ever_members: BTreeSet<NodeId>,
    state: Vec<u8>,
}

/// The snapshot file: the metadata and the body openraft sends to followers.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    body: Vec<u8>,
}

/// Why the snapshot file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} does not decode ({source}): the snapshot is damaged or from an incompatible version"
    )]
    Decode {
        what: &'static str,
        source: codec::DecodeError,
    },
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[from] postcard::Error),
    #[error("the state machine refused the snapshot: {0}")]
    Restore(String),
    #[error("the snapshot task did not finish: {0}")]
    Task(String),
}

/// The applied state: the user's machine and what openraft needs to know about it.
pub(crate) struct Applied<S> {
    pub(crate) machine: S,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    /// Every node id that appeared in any membership applied so far.
    pub(crate) ever_members: BTreeSet<NodeId>,
}

/// The state shared by the store, its snapshot builders, and the node's readers.
pub(crate) struct Shared<S> {
    applied: RwLock<Applied<S>>,
    /// The metadata of the snapshot on disk; held while the file is replaced.
    snapshot: Mutex<Option<SnapshotMeta>>,
    path: PathBuf,
    built: AtomicU64,
}

impl<S> Shared<S> {
    /// Read access to the applied state. A panic inside the user's `apply` poisons the lock;
    /// the state it left is still the best there is, and the node reports the panic itself.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Applied<S>> {
        self.applied.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied<S>> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot_meta(&self) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The state machine store. Cloning shares the state: a clone is a snapshot builder.
pub(crate) struct SmStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for SmStore<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

fn snapshot_error(meta: Option<&SnapshotMeta>, verb: ErrorVerb, e: &SnapshotError) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Snapshot(meta.map(SnapshotMeta::signature)),
        verb,
        AnyError::new(e),
    )
    .into()
}

impl<S: StateMachine> SmStore<S> {
    /// Wraps `machine`, restoring the snapshot at `path` if there is one.
    pub(crate) fn open(path: PathBuf, mut machine: S) -> Result<Self, SnapshotError> {
        let mut applied_meta = None;
        let mut ever_members = BTreeSet::new();
        if let Some(file) = read_file(&path)? {
            let body = decode_body(&file.body)?;
            machine
                .restore(&body.state)
                .map_err(SnapshotError::Restore)?;
            ever_members = body.ever_members;
            applied_meta = Some(file.meta);
        }
        let applied = Applied {
            machine,
            last_applied: applied_meta.as_ref().and_then(|m| m.last_log_id),
            membership: applied_meta
                .as_ref()
                .map(|m| m.last_membership.clone())
                .unwrap_or_default(),
            ever_members,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                applied: RwLock::new(applied),
                snapshot: Mutex::new(applied_meta),
                path,
                built: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared<S>> {
        Arc::clone(&self.shared)
    }

    /// Writes `file` as the snapshot unless the one on disk is as new; on the blocking pool.
    async fn persist(&self, meta: SnapshotMeta, body: Vec<u8>) -> Result<(), SnapshotError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut current = shared.snapshot_meta();
            if current
                .as_ref()
                .is_some_and(|c| c.last_log_id >= meta.last_log_id)
            {
                return Ok(());
            }
            let file = SnapshotFile { meta, body };
            write_atomically(&shared.path, &codec::encode(&file)?)?;
            *current = Some(file.meta);
            Ok(())
        })
        .await
        .map_err(|e| SnapshotError::Task(e.to_string()))?
    }
}

fn decode_body(bytes: &[u8]) -> Result<SnapshotBody, SnapshotError> {
    codec::decode(bytes, MAX_SNAPSHOT_LEN).map_err(|source| SnapshotError::Decode {
        what: "the snapshot body",
        source,
    })
}

fn read_file(path: &Path) -> Result<Option<SnapshotFile>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    codec::decode(&bytes, MAX_SNAPSHOT_LEN)
        .map(Some)
        .map_err(|source| SnapshotError::Decode {
            what: "the snapshot file",
            source,
        })
}

/// Replaces `path` with `bytes` so that a crash leaves either the old file or the new one:
/// write a temporary file beside it, fsync it, rename it over, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SmStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, body) = {
            let applied = self.shared.read();
            let body = SnapshotBody {
                ever_members: applied.ever_members.clone(),
                state: applied.machine.snapshot(),
            };
            let built = self.shared.built.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}-{built}", id.leader_id, id.index),
                None => format!("none-{built}"),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, body)
        };
        let body = codec::encode(&body)
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, &e.into()))?;
        self.persist(meta.clone(), body.clone())
            .await
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(body)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.shared.write();
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(command) => applied.machine.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied
                        .ever_members
                        .extend(membership.nodes().map(|(id, _)| *id));
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let body_bytes = snapshot.into_inner();
        let body = decode_body(&body_bytes)
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, &e))?;
        {
            let mut applied = self.shared.write();
            applied.machine.restore(&body.state).map_err(|e| {
                snapshot_error(Some(meta), ErrorVerb::Read, &SnapshotError::Restore(e))
            })?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.ever_members = body.ever_members;
        }
        self.persist(meta.clone(), body_bytes)
            .await
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, &e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.shared.path.clone();
        let file = tokio::task::spawn_blocking(move || read_file(&path))
            .await
            .map_err(|e| SnapshotError::Task(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| snapshot_error(None, ErrorVerb::Read, &e))?;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.body)),
        }))
    }
}
