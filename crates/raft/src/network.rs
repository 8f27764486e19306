//! The client side of the `shoal.raft.v1.Raft` service: openraft's `RaftNetworkFactory` and
//! `RaftNetwork` over tonic, and the calls a node makes on its own behalf (forwarding a write or
//! a read-index request to the leader, asking a server who it is). One lazily connected HTTP/2
//! channel per address, shared by every call; every request carries the cluster secret and names
//! its target.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Infallible, InstallSnapshotError, NetworkError,
    PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::proto::{self, raft_client::RaftClient};
use crate::types::{Incarnation, Member, NodeId, TypeConfig};

/// The largest message either side sends or accepts. AppendEntries batches stay under half of
/// it (see [`BatchBudget`]); a snapshot goes in chunks well under it.
pub(crate) const MAX_MESSAGE_LEN: usize = 16 << 20;
/// The snapshot chunk size openraft is configured with.
pub(crate) const SNAPSHOT_CHUNK_LEN: u64 = 4 << 20;
/// How long dialling a member may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The bytes of entries a member's first AppendEntries may carry; then [`BatchBudget`] adapts.
const FIRST_BATCH_LEN: usize = 256 << 10;
/// The least a batch budget shrinks to (one entry always goes, whatever its size).
const MIN_BATCH_LEN: usize = 16 << 10;

/// The RPCs, for dispatch and messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Call {
    AppendEntries,
    Vote,
    InstallSnapshot,
    ClientWrite,
    ReadIndex,
}

impl Call {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Call::AppendEntries => "AppendEntries",
            Call::Vote => "Vote",
            Call::InstallSnapshot => "InstallSnapshot",
            Call::ClientWrite => "ClientWrite",
            Call::ReadIndex => "ReadIndex",
        }
    }
}

/// How a call failed before its answer could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("the answer does not decode: {0}")]
    Decode(#[from] codec::DecodeError),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] postcard::Error),
}

impl CallError {
    /// True if and only if the request certainly never reached the server's handler: the
    /// connection could not be made. tonic reports a failed dial as `Unavailable` with the
    /// connector's message ("tcp connect error", ...), which is what this looks for.
    pub(crate) fn undelivered(&self) -> bool {
        match self {
            CallError::Address(_) | CallError::Encode(_) => true,
            CallError::Status(s) => {
                s.code() == tonic::Code::Unavailable && s.message().contains("connect")
            }
            CallError::Decode(_) => false,
        }
    }
}

/// The members' channels and what every request carries.
#[derive(Clone)]
pub(crate) struct Peers {
    from: NodeId,
    bearer: MetadataValue<Ascii>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// `bearer` is `Bearer <secret>`, already checked to be valid metadata.
    pub(crate) fn new(from: NodeId, bearer: MetadataValue<Ascii>) -> Self {
        Self {
            from,
            bearer,
            channels: Arc::default(),
        }
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, CallError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| CallError::Address(format!("{addr}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(addr.to_owned(), channel.clone());
                channel
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_LEN)
            .max_encoding_message_size(MAX_MESSAGE_LEN))
    }

    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// Sends `payload` to member `id` and returns the reply's payload.
    pub(crate) async fn call(
        &self,
        call: Call,
        id: NodeId,
        member: &Member,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut client = self.client(&member.addr)?;
        let request = self.request(
            proto::RaftRequest {
                target: Some(proto::Target {
                    node_id: id,
                    incarnation: member.incarnation.to_bytes().to_vec(),
                }),
                from: self.from,
                payload,
            },
            timeout,
        );
        let reply = match call {
            Call::AppendEntries => client.append_entries(request).await,
            Call::Vote => client.vote(request).await,
            Call::InstallSnapshot => client.install_snapshot(request).await,
            Call::ClientWrite => client.client_write(request).await,
            Call::ReadIndex => client.read_index(request).await,
        }?;
        Ok(reply.into_inner().payload)
    }

    /// Encodes `request`, sends it, and decodes the reply as `T`.
    pub(crate) async fn call_typed<Req: Serialize, T: DeserializeOwned>(
        &self,
        call: Call,
        id: NodeId,
        member: &Member,
        request: &Req,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let payload = codec::encode(request)?;
        let reply = self.call(call, id, member, payload, timeout).await?;
        Ok(codec::decode(&reply, MAX_MESSAGE_LEN)?)
    }

    /// Asks the server at `addr` for its id and incarnation.
    pub(crate) async fn identify(
        &self,
        expected: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<(NodeId, Option<Incarnation>), CallError> {
        let mut client = self.client(addr)?;
        let reply = client
            .identify(self.request(proto::IdentifyRequest { node_id: expected }, timeout))
            .await?
            .into_inner();
        Ok((reply.node_id, Incarnation::from_bytes(&reply.incarnation)))
    }
}

/// Builds one [`PeerLink`] per replication target.
pub(crate) struct Network {
    pub(crate) peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerLink {
        PeerLink {
            peers: self.peers.clone(),
            target,
            member: node.clone(),
            budget: BatchBudget::default(),
        }
    }
}

/// openraft's connection to one member.
pub(crate) struct PeerLink {
    peers: Peers,
    target: NodeId,
    member: Member,
    budget: BatchBudget,
}

/// How many bytes of entries one AppendEntries to a member may carry.
///
/// openraft 0.9 gives every AppendEntries one heartbeat interval (100 ms by default) and, when
/// it runs out, sends the same range again. A batch that cannot cross the link (or be written
/// by the follower) in that time would be re-sent forever, and a follower far behind with large
/// entries (artifact records of big datasets are megabytes) would never catch up. So batches
/// are sized by bytes, from what the last ones achieved: halved after an append openraft gave
/// up on, doubled after one that took under a third of its time, between [`MIN_BATCH_LEN`] and
/// half of [`MAX_MESSAGE_LEN`]. A single entry always goes alone, whatever its size.
#[derive(Debug)]
pub(crate) struct BatchBudget {
    len: usize,
    /// Set while an append is in flight. openraft drops the call's future at its deadline, so
    /// still being set at the next call means the last one timed out.
    in_flight: bool,
}

impl Default for BatchBudget {
    fn default() -> Self {
        Self {
            len: FIRST_BATCH_LEN,
            in_flight: false,
        }
    }
}

impl BatchBudget {
    /// How many of `sizes` (entry sizes, in order) the next append may carry: at least one.
    /// Shrinks the budget first if the previous append never completed.
    pub(crate) fn admit(&mut self, sizes: impl IntoIterator<Item = usize>) -> usize {
        if std::mem::take(&mut self.in_flight) {
            self.len = (self.len / 2).max(MIN_BATCH_LEN);
        }
        let mut total = 0;
        let mut count = 0;
        for size in sizes {
            total += size;
            if count > 0 && total > self.len {
                break;
            }
            count += 1;
        }
        count
    }

    /// Marks an append as sent; [`BatchBudget::finished`] follows unless openraft drops it.
    pub(crate) fn started(&mut self) {
        self.in_flight = true;
    }

    /// Records an append that completed after `took` of its `allowed` time; a quick one that
    /// used most of the budget lets the next carry twice as much.
    pub(crate) fn finished(&mut self, len: usize, took: Duration, allowed: Duration) {
        self.in_flight = false;
        if took < allowed / 3 && len >= self.len / 2 {
            self.len = (self.len * 2).min(MAX_MESSAGE_LEN / 2);
        }
    }

    /// The current budget in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerLink {
    async fn send<Req, Resp, E>(
        &self,
        call: Call,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError,
        RaftError<NodeId, E>: DeserializeOwned,
    {
        let result: Result<Resp, RaftError<NodeId, E>> = self
            .peers
            .call_typed(call, self.target, &self.member, request, option.hard_ttl())
            .await
            .map_err(|e| match &e {
                // The target is down, refuses us, or is not the member we knew: back off.
                CallError::Address(_) => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Status(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::FailedPrecondition
                    ) =>
                {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        // More than the budget: tell openraft to send fewer entries at a time.
        let fit = self.budget.admit(rpc.entries.iter().map(entry_size));
        if fit < rpc.entries.len() {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        let len: usize = rpc.entries.iter().map(entry_size).sum();
        let start = Instant::now();
        self.budget.started();
        let result = self.send(Call::AppendEntries, &rpc, &option).await;
        if result.is_ok() {
            self.budget
                .finished(len, start.elapsed(), option.hard_ttl());
        } else {
            self.budget.finished(0, Duration::MAX, option.hard_ttl());
        }
        result
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(Call::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.send(Call::Vote, &rpc, &option).await
    }
}

/// An upper bound of an entry's encoded size, for splitting batches before encoding them.
fn entry_size(entry: &openraft::Entry<TypeConfig>) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.len() + 32,
        openraft::EntryPayload::Membership(m) => {
            64 + m.nodes().map(|(_, n)| n.addr.len() + 40).sum::<usize>()
        }
        openraft::EntryPayload::Blank => 32,
    }
}

/// The reply of a forwarded write: the entry's log index and the state machine's response.
pub(crate) type ClientWriteReply =
    Result<(u64, Vec<u8>), RaftError<NodeId, ClientWriteError<NodeId, Member>>>;
/// The reply of a read-index request: the index to wait for.
pub(crate) type ReadIndexReply =
    Result<Option<u64>, RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>>;

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_millis(100);

    #[test]
    fn a_batch_is_cut_at_the_budget_but_one_entry_always_goes() {
        let mut budget = BatchBudget::default();
        assert_eq!(budget.admit([100 << 10; 10]), 2);
        assert_eq!(
            budget.admit([4 << 20, 10]),
            1,
            "an entry over the budget goes alone"
        );
        assert_eq!(budget.admit([10; 5]), 5);
        assert_eq!(budget.admit(std::iter::empty()), 0);
    }

    #[test]
    fn a_timed_out_append_halves_the_budget_and_quick_full_ones_double_it() {
        let mut budget = BatchBudget::default();
        budget.started();
        // openraft dropped the call: the next admission sees it still in flight.
        assert_eq!(budget.admit([1]), 1);
        assert_eq!(budget.len(), FIRST_BATCH_LEN / 2);
        for _ in 0..20 {
            budget.started();
            assert_eq!(budget.admit([1]), 1);
        }
        assert_eq!(budget.len(), MIN_BATCH_LEN, "never below the floor");

        // Quick appends that used the budget grow it, up to half a message.
        for _ in 0..20 {
            let len = budget.len();
            budget.started();
            budget.finished(len, HEARTBEAT / 10, HEARTBEAT);
        }
        assert_eq!(budget.len(), MAX_MESSAGE_LEN / 2);

        // A slow one, or a quick small one, leaves it alone.
        budget.started();
        budget.finished(MAX_MESSAGE_LEN / 2, HEARTBEAT / 2, HEARTBEAT);
        budget.started();
        budget.finished(10, Duration::ZERO, HEARTBEAT);
        assert_eq!(budget.len(), MAX_MESSAGE_LEN / 2);
        let mut small = BatchBudget::default();
        small.started();
        small.finished(10, Duration::ZERO, HEARTBEAT);
        assert_eq!(
            small.len(),
            FIRST_BATCH_LEN,
            "a heartbeat says nothing of the link"
        );
    }
}
