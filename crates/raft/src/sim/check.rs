//! Invariants the simulation checks while it runs: at most one leader per term, and committed
//! entries never change (every node, in every life, applies the same entry at each index; no
//! node truncates or overwrites its log at or below its committed index). Violations are
//! collected, not panicked on, since they are found inside openraft's tasks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::store::lock;
use crate::codec;
use crate::types::{Entry, LogId, NodeId};

/// What the run has seen so far, shared by every node's stores and the observer.
#[derive(Default)]
pub(super) struct Checks {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    violations: Vec<String>,
    /// index -> (log id, encoded payload, first node that applied it).
    applied: BTreeMap<u64, (LogId, Vec<u8>, NodeId)>,
    /// term -> the node seen leading it.
    leaders: BTreeMap<u64, NodeId>,
}

impl Checks {
    pub(super) fn violation(&self, message: String) {
        lock(&self.inner).violations.push(message);
    }

    /// Records that `node` applied `entry`; a different entry applied at its index before is a
    /// violation.
    pub(super) fn applied(&self, node: NodeId, entry: &Entry) {
        let payload = codec::encode(&entry.payload).unwrap_or_default();
        let mut inner = lock(&self.inner);
        let index = entry.log_id.index;
        match inner.applied.get(&index) {
            Some((id, bytes, first)) if *id != entry.log_id || *bytes != payload => {
                let message = format!(
                    "committed entry {index} changed: node {first} applied {id}, node {node} applied {}",
                    entry.log_id
                );
                inner.violations.push(message);
            }
            Some(_) => {}
            None => {
                inner.applied.insert(index, (entry.log_id, payload, node));
            }
        }
    }

    /// Records that `node` leads `term`; another leader of the same term is a violation.
    pub(super) fn leader(&self, term: u64, node: NodeId) {
        let mut inner = lock(&self.inner);
        match inner.leaders.get(&term) {
            Some(other) if *other != node => {
                let message = format!("two leaders in term {term}: node {other} and node {node}");
                inner.violations.push(message);
            }
            Some(_) => {}
            None => {
                inner.leaders.insert(term, node);
            }
        }
    }

    /// How many terms had a leader.
    pub(super) fn terms_led(&self) -> usize {
        lock(&self.inner).leaders.len()
    }

    pub(super) fn violations(&self) -> Vec<String> {
        lock(&self.inner).violations.clone()
    }
}
