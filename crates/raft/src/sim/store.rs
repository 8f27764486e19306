//! The simulation's storage: openraft's log store and state machine store kept in memory, so a
//! run does no I/O and replays exactly. Our redb log store and file-backed [`SmStore`] are not
//! used here (both go through tokio's blocking pool and the file system, whose timing is not
//! ours to replay); they are covered by openraft's storage suite (`storage_suite.rs`) and the
//! gRPC cluster tests (`tests/cluster.rs`).
//!
//! What a node keeps across a crash is its [`Disk`]: the vote, the log, the last purged id, the
//! snapshot, and the committed id as of its last durable write (the redb store writes the
//! committed id without an fsync, so a crash may take the latest one back; the model does the
//! same). The applied state is volatile, as in [`SmStore`]: a restarted node restores the
//! snapshot and openraft re-applies the committed log after it.
//!
//! A crash marks the node's current [`Life`] dead: every later call on its stores fails, so the
//! tasks of the stopped `Raft` cannot touch the disk its successor starts from.
//!
//! [`SmStore`]: crate::state_machine::SmStore

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader, RaftSnapshotBuilder,
};

use super::check::Checks;
use crate::StateMachine;
use crate::types::{
    Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig, Vote,
};

/// What survives a crash.
#[derive(Clone, Default)]
pub(super) struct Disk {
    vote: Option<Vote>,
    /// As last saved.
    committed: Option<LogId>,
    /// As of the last durable write: what a crash leaves.
    committed_synced: Option<LogId>,
    purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

impl Disk {
    /// A durable write also makes the committed id saved before it durable.
    fn synced(&mut self) {
        self.committed_synced = self.committed;
    }

    /// What a node restarting after a crash finds.
    pub(super) fn after_crash(&self) -> Disk {
        let mut disk = self.clone();
        disk.committed = disk.committed_synced;
        disk
    }
}

/// One life of a node: its disk, and whether it is still running.
pub(super) struct Life {
    pub(super) node: NodeId,
    pub(super) disk: Disk,
    pub(super) alive: bool,
}

pub(super) type LifeRef = Arc<Mutex<Life>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn crashed(subject: ErrorSubject<NodeId>, node: NodeId) -> StorageError {
    StorageIOError::new(
        subject,
        ErrorVerb::Write,
        AnyError::error(format!("node {node} has crashed")),
    )
    .into()
}

/// Runs `f` on the disk of a live node; fails once the node has crashed.
#[allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError as it is"
)]
fn with_disk<T>(
    life: &LifeRef,
    subject: ErrorSubject<NodeId>,
    f: impl FnOnce(&mut Disk) -> T,
) -> Result<T, StorageError> {
    let mut life = lock(life);
    if !life.alive {
        return Err(crashed(subject, life.node));
    }
    Ok(f(&mut life.disk))
}

/// openraft's log store over one life's [`Disk`]. Cloning shares it (the clone is the reader).
#[derive(Clone)]
pub(super) struct SimLog {
    pub(super) life: LifeRef,
    pub(super) checks: Arc<Checks>,
}

impl RaftLogReader<TypeConfig> for SimLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        with_disk(&self.life, ErrorSubject::Logs, |d| {
            d.log.range(range).map(|(_, e)| e.clone()).collect()
        })
    }
}

impl RaftLogStorage<TypeConfig> for SimLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        with_disk(&self.life, ErrorSubject::Logs, |d| LogState {
            last_purged_log_id: d.purged,
            last_log_id: d
                .log
                .values()
                .next_back()
                .map(|e| *e.get_log_id())
                .or(d.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        with_disk(&self.life, ErrorSubject::Vote, |d| {
            d.vote = Some(*vote);
            d.synced();
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        with_disk(&self.life, ErrorSubject::Vote, |d| d.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        with_disk(&self.life, ErrorSubject::Store, |d| d.committed = committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        with_disk(&self.life, ErrorSubject::Store, |d| d.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let node = lock(&self.life).node;
        let result = with_disk(&self.life, ErrorSubject::Logs, |d| {
            for entry in entries {
                self.checks.appended(node, &entry);
                let index = entry.get_log_id().index;
                if let Some(old) = d.log.get(&index)
                    && d.committed.is_some_and(|c| c.index >= index)
                    && old.get_log_id() != entry.get_log_id()
                {
                    self.checks.violation(format!(
                        "node {node} overwrote committed entry {} with {}",
                        old.get_log_id(),
                        entry.get_log_id()
                    ));
                }
                d.log.insert(index, entry);
            }
            d.synced();
        });
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let node = lock(&self.life).node;
        with_disk(&self.life, ErrorSubject::Logs, |d| {
            if d.committed.is_some_and(|c| c.index >= log_id.index) {
                self.checks.violation(format!(
                    "node {node} truncated its log from {log_id}, at or below its committed {}",
                    d.committed.map(|c| c.to_string()).unwrap_or_default()
                ));
            }
            d.log.split_off(&log_id.index);
            d.synced();
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        with_disk(&self.life, ErrorSubject::Logs, |d| {
            d.purged = Some(log_id);
            d.log = d.log.split_off(&(log_id.index + 1));
            d.synced();
        })
    }
}

/// The applied state of one life: lost in a crash.
pub(super) struct Applied<S> {
    pub(super) machine: S,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// openraft's state machine store over the user's [`StateMachine`], the snapshot on the
/// life's [`Disk`]. Cloning shares it (the clone is a snapshot builder).
pub(super) struct SimSm<S> {
    pub(super) life: LifeRef,
    pub(super) applied: Arc<Mutex<Applied<S>>>,
    checks: Arc<Checks>,
    built: u64,
}

impl<S> Clone for SimSm<S> {
    fn clone(&self) -> Self {
        Self {
            life: Arc::clone(&self.life),
            applied: Arc::clone(&self.applied),
            checks: Arc::clone(&self.checks),
            built: self.built,
        }
    }
}

impl<S: StateMachine> SimSm<S> {
    /// The store of a life starting on `life`'s disk: `machine` restored from its snapshot.
    pub(super) fn open(life: LifeRef, mut machine: S, checks: Arc<Checks>) -> Result<Self, String> {
        let mut last_applied = None;
        let mut membership = StoredMembership::default();
        if let Some((meta, bytes)) = &lock(&life).disk.snapshot {
            machine.restore(bytes)?;
            last_applied = meta.last_log_id;
            membership = meta.last_membership.clone();
        }
        Ok(Self {
            life,
            applied: Arc::new(Mutex::new(Applied {
                machine,
                last_applied,
                membership,
            })),
            checks,
            built: 0,
        })
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SimSm<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.built += 1;
        let (meta, bytes) = {
            let applied = lock(&self.applied);
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.built),
                None => format!("none-{}", self.built),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, applied.machine.snapshot())
        };
        with_disk(&self.life, ErrorSubject::Snapshot(None), |d| {
            if d.snapshot
                .as_ref()
                .is_none_or(|(m, _)| m.last_log_id < meta.last_log_id)
            {
                d.snapshot = Some((meta.clone(), bytes.clone()));
            }
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SimSm<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = lock(&self.applied);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let node = {
            let life = lock(&self.life);
            if !life.alive {
                return Err(crashed(ErrorSubject::StateMachine, life.node));
            }
            life.node
        };
        let mut applied = lock(&self.applied);
        let mut responses = Vec::new();
        for entry in entries {
            self.checks.applied(node, &entry);
            applied.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(command) => applied.machine.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            });
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
        let bytes = snapshot.into_inner();
        {
            let mut applied = lock(&self.applied);
            applied.machine.restore(&bytes).map_err(|e| {
                StorageError::from(StorageIOError::new(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Read,
                    AnyError::error(e),
                ))
            })?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        with_disk(&self.life, ErrorSubject::Snapshot(None), |d| {
            d.snapshot = Some((meta.clone(), bytes));
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        with_disk(&self.life, ErrorSubject::Snapshot(None), |d| {
            d.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(bytes.clone())),
            })
        })
    }
}
