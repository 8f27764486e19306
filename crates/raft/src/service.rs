//! The server side of the `shoal.raft.v1.Raft` service: admits a call only with the cluster
//! secret (compared in constant time) and only if it names this node's id and incarnation, then
//! decodes openraft's request (bounded by the server's message limit), hands it to the local
//! Raft, and encodes openraft's answer, errors included, for the caller's openraft to read.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::codec;
use crate::network::{ClientWriteReply, MAX_MESSAGE_LEN, ReadIndexReply};
use crate::proto::{self, raft_server};
use crate::types::{Incarnation, NodeId, Raft};

/// The `shoal.raft.v1.Raft` service of one node; [`crate::RaftNode::service`] wraps it in the
/// tonic server to mount.
#[derive(Clone)]
pub struct RaftService {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    id: NodeId,
    incarnation: Incarnation,
    secret_sha256: [u8; 32],
}

impl RaftService {
    pub(crate) fn new(raft: Raft, id: NodeId, incarnation: Incarnation, secret: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                raft,
                id,
                incarnation,
                secret_sha256: Sha256::digest(secret.as_bytes()).into(),
            }),
        }
    }

    /// The tonic server for this service, with the message limits set.
    pub(crate) fn server(self) -> crate::RaftServer {
        raft_server::RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_LEN)
            .max_encoding_message_size(MAX_MESSAGE_LEN)
    }

    /// Checks the bearer secret. Both sides are hashed first, so the comparison takes the same
    /// time whatever the presented length and wherever the first difference is.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "raft node {}: no cluster secret presented (authorization: Bearer <secret>)",
                    self.inner.id
                ))
            })?;
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = hash
            .iter()
            .zip(&self.inner.secret_sha256)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(Status::unauthenticated(format!(
                "raft node {}: the cluster secret does not match; every member must be configured with the same secret",
                self.inner.id
            )));
        }
        Ok(())
    }

    /// Admits a Raft call: the secret, then the target.
    fn admit(&self, request: &Request<proto::RaftRequest>) -> Result<(), Status> {
        self.authenticate(request)?;
        let message = request.get_ref();
        let target = message
            .target
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("raft call names no target node"))?;
        if target.node_id != self.inner.id {
            return Err(Status::failed_precondition(format!(
                "a raft call from node {} meant for node {} reached node {}; the caller's membership has a wrong address for node {}",
                message.from, target.node_id, self.inner.id, target.node_id
            )));
        }
        check_incarnation(self.inner.id, self.inner.incarnation, &target.incarnation)
    }

    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
        codec::decode(payload, MAX_MESSAGE_LEN)
            .map_err(|e| Status::invalid_argument(format!("raft request does not decode: {e}")))
    }

    fn reply<T: Serialize>(value: &T) -> Result<Response<proto::RaftReply>, Status> {
        codec::encode(value)
            .map(|payload| Response::new(proto::RaftReply { payload }))
            .map_err(|e| Status::internal(format!("cannot encode the raft reply: {e}")))
    }
}

/// Refuses a call meant for another life of this node: the caller knows `presented`, this node
/// is `incarnation`.
fn check_incarnation(id: NodeId, incarnation: Incarnation, presented: &[u8]) -> Result<(), Status> {
    let presented = Incarnation::from_bytes(presented);
    if presented == Some(incarnation) {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "node {id} was wiped or reinstalled: the cluster knows incarnation {}, this is incarnation {incarnation}; \
         it lost the votes and entries it had, so it is refused. Remove node {id} from the cluster and add this server under a new id",
        presented.map_or_else(|| "(malformed)".to_owned(), |i| i.to_string()),
    )))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.admit(&request)?;
        let rpc = Self::decode(&request.into_inner().payload)?;
        Self::reply(&self.inner.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.admit(&request)?;
        let rpc = Self::decode(&request.into_inner().payload)?;
        Self::reply(&self.inner.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.admit(&request)?;
        let rpc = Self::decode(&request.into_inner().payload)?;
        Self::reply(&self.inner.raft.install_snapshot(rpc).await)
    }

    async fn client_write(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.admit(&request)?;
        let command = request.into_inner().payload;
        if command.len() > crate::MAX_COMMAND_LEN {
            return Err(Status::invalid_argument(format!(
                "a raft command of {} bytes is over the limit of {} bytes",
                command.len(),
                crate::MAX_COMMAND_LEN
            )));
        }
        let result: ClientWriteReply = self
            .inner
            .raft
            .client_write(command)
            .await
            .map(|r| (r.log_id.index, r.data));
        Self::reply(&result)
    }

    async fn read_index(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.admit(&request)?;
        let result: ReadIndexReply = self
            .inner
            .raft
            .ensure_linearizable()
            .await
            .map(|id| id.map(|id| id.index));
        Self::reply(&result)
    }

    async fn identify(
        &self,
        request: Request<proto::IdentifyRequest>,
    ) -> Result<Response<proto::IdentifyReply>, Status> {
        self.authenticate(&request)?;
        Ok(Response::new(proto::IdentifyReply {
            node_id: self.inner.id,
            incarnation: self.inner.incarnation.to_bytes().to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_incarnation_is_refused_with_what_to_do() {
        let me = Incarnation(0xabc);
        assert!(check_incarnation(3, me, &me.to_bytes()).is_ok());
        let old = Incarnation(0x123).to_bytes();
        let refused = check_incarnation(3, me, &old).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("node 3 was wiped"),
            "{}",
            refused.message()
        );
        assert!(
            refused.message().contains("new id"),
            "{}",
            refused.message()
        );
        let malformed = check_incarnation(3, me, &[1, 2]).unwrap_err();
        assert!(malformed.message().contains("(malformed)"));
    }
}
