//! openraft's type configuration for Shoal: node ids are `u64`, a member is its gRPC address and
//! its incarnation, a log entry carries opaque command bytes and a response is opaque bytes.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A member's id in the cluster, chosen by the operator; never reused once removed.
pub type NodeId = u64;

/// A random 128-bit value a node draws at its first start and keeps in its log store. A node
/// wiped and started again under the same id draws a new one, so its peers can tell it is not
/// the member they knew (which had voted and held log entries it has now lost).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Incarnation(pub u128);

impl Incarnation {
    /// The 16 big-endian bytes sent on the wire.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Reads 16 big-endian bytes; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Self(u128::from_be_bytes(b)))
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What the cluster knows of a member: where to reach it and which life of it joined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's gRPC address, `host:port`, as its peers dial it.
    pub addr: String,
    /// The incarnation the member had when it joined.
    pub incarnation: Incarnation,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (incarnation {})", self.addr, self.incarnation)
    }
}

openraft::declare_raft_types!(
    /// Shoal's openraft type configuration.
    pub(crate) TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StorageIOError = openraft::StorageIOError<NodeId>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
