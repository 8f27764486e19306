//! openraft's own storage conformance suite (`openraft::testing::Suite`) run against the redb
//! log store and the state machine store, each test on a fresh directory.

#![allow(clippy::panic, reason = "test code: a panic is the failure report")]

use openraft::testing::{StoreBuilder, Suite};

use crate::StateMachine;
use crate::log_store::LogStore;
use crate::state_machine::SmStore;
use crate::types::{StorageError, StorageIOError, TypeConfig};

/// A trivial machine: the state is the concatenation of every command.
#[derive(Default)]
struct Concat(Vec<u8>);

impl StateMachine for Concat {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(command);
        command.to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = snapshot.to_vec();
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, SmStore<Concat>, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, SmStore<Concat>), StorageError> {
        let io = |e: &dyn std::error::Error| -> StorageError {
            StorageIOError::write(openraft::AnyError::error(e.to_string())).into()
        };
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let log = LogStore::open(&dir.path().join("log.redb")).map_err(|e| io(&e))?;
        let sm =
            SmStore::open(dir.path().join("snapshot"), Concat::default()).map_err(|e| io(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft's storage suite failed: {e}");
    }
}
