//! The errors of a [`RaftNode`](crate::RaftNode): one variant per cause an operator or a caller
//! can act on, each message saying what happened and what to do.

use std::path::PathBuf;

use crate::types::NodeId;

/// Why a Raft operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (e.g. an empty secret, an election timeout not above the
    /// heartbeat interval).
    #[error("invalid raft configuration: {0}; fix the [raft] settings and restart")]
    Config(String),
    /// The data directory could not be created or read.
    #[error(
        "raft data directory {path}: {source}; check that it exists, is writable, and has space"
    )]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log store (redb) failed: the node cannot go on safely.
    #[error(
        "raft log store {path}: {message}; check the disk, then restart; if the file is damaged, remove this node from the cluster, wipe its raft directory and add it back under a new id"
    )]
    LogStore {
        /// The log file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The snapshot on disk could not be read or restored.
    #[error(
        "raft snapshot {path}: {message}; if the file is damaged, remove this node from the cluster, wipe its raft directory and add it back under a new id"
    )]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The data directory belongs to another node id.
    #[error(
        "raft data directory {path} belongs to node {stored}, but this node is configured as node {configured}; point data_dir at node {configured}'s own directory, or fix the id"
    )]
    WrongNodeId {
        /// The data directory.
        path: PathBuf,
        /// The id recorded in it.
        stored: NodeId,
        /// The id in the configuration.
        configured: NodeId,
    },
    /// No random bytes for the incarnation.
    #[error("cannot read random bytes from /dev/urandom for this node's incarnation: {0}")]
    Random(std::io::Error),
    /// The local Raft node has stopped (shut down, or stopped by a storage failure).
    #[error(
        "raft node {id} has stopped ({reason}); restart the server, and check its log for the storage error if it was not shut down on purpose"
    )]
    Stopped {
        /// This node.
        id: NodeId,
        /// openraft's reason.
        reason: String,
    },
    /// No leader is known, e.g. during an election or without a quorum of voters.
    #[error(
        "no raft leader is known after waiting {waited_ms} ms; a majority of voters must be up and reachable: check the other servers"
    )]
    NoLeader {
        /// How long this call waited for one.
        waited_ms: u64,
    },
    /// A membership change was asked of a node that is not the leader.
    #[error("node {id} is not the raft leader; run membership changes on the leader{}", leader_hint(.leader))]
    NotLeader {
        /// This node.
        id: NodeId,
        /// The leader, if known: id and address.
        leader: Option<(NodeId, String)>,
    },
    /// `initialize` on a cluster that already has members.
    #[error("the raft cluster is already initialized on node {id}; use add_member to grow it")]
    AlreadyInitialized {
        /// This node.
        id: NodeId,
    },
    /// The id was a member before: reusing it could let a wiped node vote with lost state.
    #[error(
        "node id {id} was a member of this cluster before and cannot be added again; give the new server a new id"
    )]
    IdUsedBefore {
        /// The refused id.
        id: NodeId,
    },
    /// `remove_member` of an id that is not a member.
    #[error("node {id} is not a member of this raft cluster; nothing to remove")]
    NotMember {
        /// The id.
        id: NodeId,
    },
    /// The server at an address answered with another node id.
    #[error(
        "the server at {addr} is raft node {found}, not node {expected}; check the address and the id"
    )]
    WrongNode {
        /// The address dialled.
        addr: String,
        /// The id asked for.
        expected: NodeId,
        /// The id it has.
        found: NodeId,
    },
    /// A call to another member failed before it was answered.
    #[error(
        "raft call {call} to node {id} at {addr} failed: {status}; check that the server is up, reachable, and has the same cluster secret"
    )]
    Unreachable {
        /// Which call.
        call: &'static str,
        /// The member.
        id: NodeId,
        /// Its address.
        addr: String,
        /// What gRPC said.
        status: String,
    },
    /// A forwarded write's fate is not known: the leader may or may not have committed it.
    #[error(
        "the write was sent to leader {leader} but no answer came back ({reason}); it may or may not have been applied: read before retrying unless the command is idempotent"
    )]
    OutcomeUnknown {
        /// The leader it went to.
        leader: NodeId,
        /// What failed.
        reason: String,
    },
    /// The command is larger than a log entry may be.
    #[error("a raft command of {len} bytes is over the limit of {max} bytes; split it")]
    CommandTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The leader could not confirm its leadership with a quorum (for a linearizable read) or
    /// the cluster refused a membership change.
    #[error("raft: {0}")]
    Raft(String),
    /// A peer's answer did not decode.
    #[error(
        "raft node {id} sent an answer that does not decode ({message}); are all servers running the same version?"
    )]
    BadReply {
        /// The peer.
        id: NodeId,
        /// The decode error.
        message: String,
    },
    /// Waiting for this node to apply up to the leader's read index timed out.
    #[error(
        "node {id} did not apply up to index {index} within {waited_ms} ms; it is behind the leader: check its disk and network"
    )]
    Lagging {
        /// This node.
        id: NodeId,
        /// The index it must reach.
        index: u64,
        /// How long it waited.
        waited_ms: u64,
    },
}

fn leader_hint(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!(", node {id} at {addr}"),
        None => " (none is known right now; retry once one is elected)".to_owned(),
    }
}
