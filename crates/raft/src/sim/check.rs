//! Invariants the simulation checks while it runs: one leader per leader id, and committed
//! entries never change (every node, in every life, applies the same entry at each index; no
//! node truncates or overwrites its log at or below its committed index). Violations are
//! collected, not panicked on, since they are found inside openraft's tasks.
//!
//! "At most one leader per term" is not an invariant of openraft 0.9 as we build it: without
//! its `single-term-leader` feature a leader id is (term, node id), votes compare in that
//! order, and two nodes may each lead the same term (the simulation sees it happen). What
//! makes that safe, and what is checked instead: a leader id names one node, so no two
//! different entries may ever carry the same log id (term, node id, index), on any node, in
//! any life; and a node acts as leader only under a vote a quorum granted (committed).

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
    /// log id -> encoded payload of every entry ever appended anywhere, with the first node.
    appended: BTreeMap<LogId, (Vec<u8>, NodeId)>,
    /// term -> the nodes seen leading it.
    leaders: BTreeMap<u64, std::collections::BTreeSet<NodeId>>,
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

    /// Records that `node` appended `entry`; another entry with its log id is a violation.
    pub(super) fn appended(&self, node: NodeId, entry: &Entry) {
        let payload = codec::encode(&entry.payload).unwrap_or_default();
        let mut inner = lock(&self.inner);
        match inner.appended.get(&entry.log_id) {
            Some((bytes, first)) if *bytes != payload => {
                let message = format!(
                    "two different entries with log id {}: on node {first} and node {node}",
                    entry.log_id
                );
                inner.violations.push(message);
            }
            Some(_) => {}
            None => {
                inner.appended.insert(entry.log_id, (payload, node));
            }
        }
    }

    /// Records that `node` leads `term` under `vote`, which must be its own and committed.
    pub(super) fn leader(&self, node: NodeId, vote: &crate::types::Vote) {
        let mut inner = lock(&self.inner);
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(node) {
            let message = format!("node {node} leads under vote {vote}, not its own committed one");
            inner.violations.push(message);
        }
        inner
            .leaders
            .entry(vote.leader_id().get_term())
            .or_default()
            .insert(node);
    }

    /// How many terms had two leaders or more (allowed by openraft; see the module doc).
    pub(super) fn terms_shared(&self) -> usize {
        lock(&self.inner)
            .leaders
            .values()
            .filter(|l| l.len() > 1)
            .count()
    }

    /// How many terms had a leader.
    pub(super) fn terms_led(&self) -> usize {
        lock(&self.inner).leaders.len()
    }

    pub(super) fn violations(&self) -> Vec<String> {
        lock(&self.inner).violations.clone()
    }
}
