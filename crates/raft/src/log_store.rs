//! The durable Raft log (openraft's `RaftLogStorage`) in its own redb file: the vote, the
//! entries, the committed log id, the last purged log id, and this node's identity (id and
//! incarnation). Every write that openraft relies on (vote, entries, truncation, purge) commits
//! with `Durability::Immediate`, i.e. fsynced, before the call returns or the append callback
//! fires: openraft may not count a vote or an entry that a crash could take back.
//!
//! redb is blocking, so each operation runs on tokio's blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec;
use crate::types::{
    Entry, Incarnation, LogId, NodeId, StorageError, StorageIOError, TypeConfig, Vote,
};

/// Log entries by index, each postcard-encoded.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Single values by name, each postcard-encoded.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const NODE_ID: &str = "node_id";
const INCARNATION: &str = "incarnation";

/// No stored value is near this: entries are bounded by the transport, the rest are tiny.
const MAX_RECORD_LEN: usize = 256 << 20;

/// Why the log store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogStoreError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error(
        "stored {what} does not decode ({source}): the log file is damaged or was written by an incompatible version"
    )]
    Decode {
        what: &'static str,
        source: codec::DecodeError,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: postcard::Error,
    },
    #[error("the storage task did not finish: {0}")]
    Task(String),
}

fn redb_err(e: impl Into<redb::Error>) -> LogStoreError {
    LogStoreError::Redb(e.into())
}

fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, LogStoreError> {
    codec::encode(value).map_err(|source| LogStoreError::Encode { what, source })
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LogStoreError> {
    codec::decode(bytes, MAX_RECORD_LEN).map_err(|source| LogStoreError::Decode { what, source })
}

/// The log store. Cloning shares the database: the clone is the log reader openraft's
/// replication tasks use.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Handle>,
}

/// The open database, and what says it is closed (its file lock released): after the last
/// clone is dropped *and* redb has finished closing the file. Fields drop in declaration order,
/// so `closer` fires after `db` is gone.
struct Handle {
    db: Database,
    closer: Closer,
}

struct Closer(tokio::sync::watch::Sender<bool>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl LogStore {
    /// Opens (or creates) the log file at `path` and makes sure both tables exist.
    pub(crate) fn open(path: &Path) -> Result<Self, LogStoreError> {
        let db = Database::create(path).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(LOG).map_err(redb_err)?;
        txn.open_table(META).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        let (closed, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            db: Arc::new(Handle {
                db,
                closer: Closer(closed),
            }),
        })
    }

    /// Becomes true once every clone of this store is gone and the file is closed.
    pub(crate) fn watch_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.db.closer.0.subscribe()
    }

    /// The node id and incarnation this store belongs to, recording them at the first start:
    /// `id` is recorded with a fresh incarnation from `random` if the store has none.
    /// Returns the stored id, which the caller compares with its configuration.
    pub(crate) fn identity(
        &self,
        id: NodeId,
        random: impl FnOnce() -> std::io::Result<u128>,
    ) -> Result<Result<(NodeId, Incarnation), std::io::Error>, LogStoreError> {
        let stored_id: Option<NodeId> = self.meta_sync(NODE_ID)?;
        let stored_inc: Option<Incarnation> = self.meta_sync(INCARNATION)?;
        if let (Some(id), Some(inc)) = (stored_id, stored_inc) {
            return Ok(Ok((id, inc)));
        }
        let inc = match random() {
            Ok(r) => Incarnation(r),
            Err(e) => return Ok(Err(e)),
        };
        let txn = self.db.db.begin_write().map_err(redb_err)?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert(NODE_ID, encode("node id", &id)?.as_slice())
                .map_err(redb_err)?;
            meta.insert(INCARNATION, encode("incarnation", &inc)?.as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(Ok((id, inc)))
    }

    fn meta_sync<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, LogStoreError> {
        let txn = self.db.db.begin_read().map_err(redb_err)?;
        let meta = txn.open_table(META).map_err(redb_err)?;
        let value = meta.get(key).map_err(redb_err)?;
        value.map(|v| decode(key, v.value())).transpose()
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, LogStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, LogStoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db.db))
            .await
            .map_err(|e| LogStoreError::Task(e.to_string()))?
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, LogStoreError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let this = self.clone();
        self.blocking(move |_| this.meta_sync(key)).await
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), LogStoreError> {
        let bytes = encode(key, value)?;
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(redb_err)?;
            txn.set_durability(durability)
                .map_err(|e| LogStoreError::Task(e.to_string()))?;
            {
                let mut meta = txn.open_table(META).map_err(redb_err)?;
                meta.insert(key, bytes.as_slice()).map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        })
        .await
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: &LogStoreError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_err)?;
            let log = txn.open_table(LOG).map_err(redb_err)?;
            let mut entries = Vec::new();
            for item in log.range::<u64>((start, end)).map_err(redb_err)? {
                let (_, value) = item.map_err(redb_err)?;
                entries.push(decode::<Entry>("log entry", value.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let this = self.clone();
        self.blocking(move |db| {
            let last_purged: Option<LogId> = this.meta_sync(LAST_PURGED)?;
            let txn = db.begin_read().map_err(redb_err)?;
            let log = txn.open_table(LOG).map_err(redb_err)?;
            let last = match log.last().map_err(redb_err)? {
                Some((_, value)) => {
                    Some(*decode::<Entry>("log entry", value.value())?.get_log_id())
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    // The committed log id only saves re-applying at start: losing the last one to a crash
    // costs a little replay, never safety, so it rides along with the next fsynced commit.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED)
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, &e))?
            .flatten())
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
        let mut records = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
            records.push((entry.get_log_id().index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let mut txn = db.begin_write().map_err(redb_err)?;
                txn.set_durability(Durability::Immediate)
                    .map_err(|e| LogStoreError::Task(e.to_string()))?;
                {
                    let mut log = txn.open_table(LOG).map_err(redb_err)?;
                    for (index, bytes) in &records {
                        log.insert(*index, bytes.as_slice()).map_err(redb_err)?;
                    }
                }
                txn.commit().map_err(redb_err)
            })
            .await;
        // Only now, with the entries fsynced, may openraft count them.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(redb_err)?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| LogStoreError::Task(e.to_string()))?;
            {
                let mut log = txn.open_table(LOG).map_err(redb_err)?;
                log.retain_in::<u64, _>(log_id.index.., |_, _| false)
                    .map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = encode(LAST_PURGED, &log_id)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(redb_err)?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| LogStoreError::Task(e.to_string()))?;
            {
                // The purged id first: the log state must never claim entries it deleted.
                let mut meta = txn.open_table(META).map_err(redb_err)?;
                meta.insert(LAST_PURGED, purged.as_slice())
                    .map_err(redb_err)?;
                let mut log = txn.open_table(LOG).map_err(redb_err)?;
                log.retain_in::<u64, _>(
                    (Bound::Unbounded, Bound::Included(log_id.index)),
                    |_, _| false,
                )
                .map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}
