//! Replication of Shoal's control plane with Raft: the one crate that names openraft.
//!
//! A [`RaftNode`] replicates a user's [`StateMachine`] (the catalog, later) over 3 or 5 servers.
//! The log, the vote and the committed index live in redb (`<data_dir>/raft/log.redb`, every
//! write fsynced before openraft is told of it); the applied state lives in memory and is
//! rebuilt at start from the last snapshot (`<data_dir>/raft/snapshot`, replaced atomically) and
//! the committed log after it. Members talk over the `shoal.raft.v1.Raft` gRPC service, which
//! [`RaftNode::service`] hands back for the caller to mount next to its own services; every call
//! carries the cluster secret and names its target's id and incarnation.
//!
//! Modules, from the bottom: `codec` (bounded postcard encoding), `types` (openraft's type
//! configuration, [`Member`], [`Incarnation`]), `log_store` and `state_machine` (openraft's two
//! storage traits), `network` (the gRPC client side) and `service` (the gRPC server side),
//! `node` (the public handle).

mod codec;
mod error;
mod log_store;
mod network;
mod node;
mod service;
mod state_machine;
mod types;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod storage_suite;

/// The generated `shoal.raft.v1` messages, client and server.
#[allow(missing_docs, clippy::all, unused_qualifications)]
mod proto {
    tonic::include_proto!("shoal.raft.v1");
}

pub use error::Error;
pub use node::{MAX_COMMAND_LEN, MemberStatus, RaftConfig, RaftNode, Role, Status};
pub use service::RaftService;
pub use types::{Incarnation, Member, NodeId};

/// The tonic server of the `shoal.raft.v1.Raft` service, as [`RaftNode::service`] returns it.
pub type RaftServer = proto::raft_server::RaftServer<RaftService>;

/// The replicated state, applied in log order. Must be deterministic: the same commands in the
/// same order give the same state and the same responses on every node.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed command (opaque bytes) and returns the response (opaque bytes).
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;
    /// The whole state, encoded, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot's. On error the state must be left as it was.
    ///
    /// # Errors
    ///
    /// A message saying why the snapshot cannot be read; the node then stops, since it cannot
    /// follow the cluster without it.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
