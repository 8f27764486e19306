//! The public handle of one Raft member: [`RaftNode::start`] opens the stores and starts
//! openraft; the handle bootstraps a cluster, changes its membership, writes and reads
//! linearizably from any member (forwarding to the leader), and reports status.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{ChangeMembers, RaftMetrics, SnapshotPolicy};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;

use crate::error::Error;
use crate::log_store::LogStore;
use crate::network::{
    Call, CallError, ClientWriteReply, Network, Peers, ReadIndexReply, SNAPSHOT_CHUNK_LEN,
};
use crate::service::RaftService;
use crate::state_machine::{Shared, SmStore};
use crate::types::{Incarnation, Member, NodeId, Raft};
use crate::{RaftServer, StateMachine};

/// The largest command [`RaftNode::write`] accepts.
pub const MAX_COMMAND_LEN: usize = 4 << 20;

/// How a member is started.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// This member's id; unique in the cluster and never reused.
    pub id: NodeId,
    /// The node's data directory; the Raft files go in its `raft/` subdirectory.
    pub data_dir: PathBuf,
    /// The `host:port` the other members dial to reach this node's gRPC server.
    pub advertise_addr: String,
    /// The cluster secret every member shares; presented as a bearer token on every call.
    /// Printable ASCII, not empty.
    pub secret: String,
    /// How often the leader sends heartbeats. Default 100 ms. openraft also gives every
    /// AppendEntries this long: batches adapt (see `network::BatchBudget`), but one entry must
    /// cross to a follower and be written there within it.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range starts an election.
    /// Default 400 to 800 ms: `bench/raft.py` measured a killed leader replaced in 1.4 to 1.5 s
    /// (a candidate's first vote request is refused while the others' lease on the old leader
    /// lasts, so an election takes about two timeouts), under the 2 s target; 600 to 1200 ms
    /// took 2.0 s. Four missed heartbeats before anyone stands is ample on a loaded machine.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and compact the log) after this many entries since the last one.
    /// Default 10,000.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot, so a follower a little behind catches up
    /// from the log rather than a whole snapshot. Default 1,000.
    pub logs_kept_after_snapshot: u64,
    /// How long `write` and `read_linearizable` wait for a leader, and a read for this node to
    /// catch up to the leader. Default 10 s.
    pub leader_wait: Duration,
}

impl RaftConfig {
    /// A configuration with the defaults above.
    pub fn new(id: NodeId, data_dir: PathBuf, advertise_addr: String, secret: String) -> Self {
        Self {
            id,
            data_dir,
            advertise_addr,
            secret,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
            snapshot_threshold: 10_000,
            logs_kept_after_snapshot: 1_000,
            leader_wait: Duration::from_secs(10),
        }
    }

    fn openraft(&self) -> Result<openraft::Config, Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "shoal".to_owned(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            // One chunk of a snapshot per call: allow a slow disk and a loaded machine.
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_threshold.max(1)),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_LEN,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..openraft::Config::default()
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Votes and counts toward the quorum.
    Voter,
    /// Receives the log but does not vote.
    Learner,
}

/// One member, as [`RaftNode::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its gRPC address.
    pub addr: String,
    /// Voter or learner.
    pub role: Role,
    /// The last log index the leader knows it holds; `None` when this node is not the leader
    /// or has not heard from it yet.
    pub matched_index: Option<u64>,
    /// How many entries it is behind the leader's last log index; `None` as above.
    pub lag: Option<u64>,
}

/// This node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// The leader, if one is known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// The last index known committed.
    pub commit_index: Option<u64>,
    /// The last index applied to the state machine here.
    pub applied_index: Option<u64>,
    /// The last index in the log here.
    pub last_log_index: Option<u64>,
    /// The last index in the latest snapshot here.
    pub snapshot_index: Option<u64>,
    /// The members of the effective membership, by id.
    pub members: Vec<MemberStatus>,
}

/// One Raft member: start it, mount [`RaftNode::service`] on the server's gRPC port, then
/// [`RaftNode::initialize`] a new cluster on one member or [`RaftNode::add_member`] it from the
/// leader of an existing one.
pub struct RaftNode<S: StateMachine> {
    raft: Raft,
    id: NodeId,
    incarnation: Incarnation,
    config: RaftConfig,
    shared: Arc<Shared<S>>,
    peers: Peers,
    service: RaftService,
    /// True once openraft has dropped every handle on the log file and it is closed.
    log_closed: tokio::sync::watch::Receiver<bool>,
}

/// How one attempt at a write or a read failed, for the retry loop.
enum Attempt {
    /// The node asked is not the leader: nothing happened, ask the leader.
    NotLeader(NodeId),
    /// The call never reached the leader: nothing happened.
    Undelivered(NodeId, Error),
    /// Final.
    Failed(Error),
}

impl<S: StateMachine> RaftNode<S> {
    /// Opens the stores under `config.data_dir/raft/` (creating them, and this node's
    /// incarnation, at the first start), restores the last snapshot into `machine`, and starts
    /// openraft, which re-applies the committed log after the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable configuration, [`Error::DataDir`], [`Error::LogStore`],
    /// [`Error::Snapshot`] when the files cannot be used, [`Error::WrongNodeId`] when the
    /// directory belongs to another id, [`Error::Random`], [`Error::Stopped`] if openraft
    /// cannot start.
    pub async fn start(config: RaftConfig, machine: S) -> Result<Self, Error> {
        let raft_config = config.openraft()?;
        if config.secret.is_empty() {
            return Err(Error::Config("the cluster secret is empty".to_owned()));
        }
        let bearer =
            MetadataValue::try_from(format!("Bearer {}", config.secret)).map_err(|_| {
                Error::Config(
                    "the cluster secret must be printable ASCII without newlines".to_owned(),
                )
            })?;
        let dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&dir).map_err(|source| Error::DataDir {
            path: dir.clone(),
            source,
        })?;
        let log_path = dir.join("log.redb");
        let log_error = |e: &dyn std::error::Error| Error::LogStore {
            path: log_path.clone(),
            message: e.to_string(),
        };
        let log = LogStore::open(&log_path).map_err(|e| log_error(&e))?;
        let (stored, incarnation) = log
            .identity(config.id, random_u128)
            .map_err(|e| log_error(&e))?
            .map_err(Error::Random)?;
        if stored != config.id {
            return Err(Error::WrongNodeId {
                path: dir,
                stored,
                configured: config.id,
            });
        }
        let snapshot_path = dir.join("snapshot");
        let sm = SmStore::open(snapshot_path.clone(), machine).map_err(|e| Error::Snapshot {
            path: snapshot_path,
            message: e.to_string(),
        })?;
        let shared = sm.shared();
        let log_closed = log.watch_closed();
        let peers = Peers::new(config.id, bearer);
        let network = Network {
            peers: peers.clone(),
        };
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| Error::Stopped {
                id: config.id,
                reason: e.to_string(),
            })?;
        let service = RaftService::new(raft.clone(), config.id, incarnation, &config.secret);
        tracing::info!(id = config.id, %incarnation, addr = %config.advertise_addr, "raft node started");
        Ok(Self {
            raft,
            id: config.id,
            incarnation,
            config,
            shared,
            peers,
            service,
            log_closed,
        })
    }

    /// The `shoal.raft.v1.Raft` gRPC service, for the caller to mount on its server at
    /// `advertise_addr`.
    pub fn service(&self) -> RaftServer {
        self.service.clone().server()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's incarnation, drawn at its first start.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Bootstraps a new cluster whose voters are `members` (id -> address), this node among
    /// them. Every other member must be up: each is asked for its incarnation.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyInitialized`], [`Error::Config`] if this node is not among `members`,
    /// [`Error::Unreachable`] or [`Error::WrongNode`] for a member that cannot be identified.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), Error> {
        if !members.contains_key(&self.id) {
            return Err(Error::Config(format!(
                "initialize: this node ({}) must be one of the members",
                self.id
            )));
        }
        let mut nodes = BTreeMap::new();
        for (id, addr) in members {
            let member = if id == self.id {
                Member {
                    addr,
                    incarnation: self.incarnation,
                }
            } else {
                self.identify(id, addr).await?
            };
            nodes.insert(id, member);
        }
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(Error::AlreadyInitialized { id: self.id })
            }
            Err(RaftError::APIError(e)) => Err(Error::Config(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Adds node `id` at `addr` as a learner, waits for it to catch up, then makes it a voter.
    /// Runs on the leader. Asking again for a learner promotes it; for a voter at the same
    /// address, does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotLeader`] on a follower; [`Error::IdUsedBefore`] for an id that was ever a
    /// member; [`Error::Unreachable`] or [`Error::WrongNode`] when the server at `addr` cannot
    /// be identified as `id`; [`Error::Raft`] when openraft refuses the change (e.g. another
    /// change is in progress).
    pub async fn add_member(&self, id: NodeId, addr: String) -> Result<(), Error> {
        self.ensure_leader().await?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if let Some(node) = membership.get_node(&id) {
            if node.addr != addr {
                return Err(Error::Config(format!(
                    "node {id} is already a member at {}, not {addr}",
                    node.addr
                )));
            }
            if membership.voter_ids().any(|v| v == id) {
                return Ok(());
            }
        } else {
            if self.shared.read().ever_members.contains(&id) {
                return Err(Error::IdUsedBefore { id });
            }
            let member = self.identify(id, addr).await?;
            self.raft
                .add_learner(id, member, true)
                .await
                .map_err(|e| self.write_error(e))?;
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Removes node `id` (voter or learner) from the cluster. Runs on the leader. The id can
    /// never be added again.
    ///
    /// # Errors
    ///
    /// [`Error::NotLeader`] on a follower, [`Error::NotMember`], [`Error::Raft`] when openraft
    /// refuses the change.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), Error> {
        self.ensure_leader().await?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(Error::NotMember { id });
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Replicates `command` and returns the state machine's response once it is committed and
    /// applied on the leader, and applied on this node too (so a caller reads its own write
    /// here). Works on any member: a follower forwards the command to the leader. When the node asked turns out not to be the leader, or the leader cannot be
    /// dialled at all, the write is tried once more with the next leader.
    ///
    /// # Errors
    ///
    /// [`Error::CommandTooLarge`]; [`Error::NoLeader`] when no leader appears within
    /// `leader_wait`; [`Error::OutcomeUnknown`] when the leader was reached but did not answer
    /// (the command may have been applied); [`Error::Stopped`].
    pub async fn write(&self, command: Vec<u8>) -> Result<Vec<u8>, Error> {
        if command.len() > MAX_COMMAND_LEN {
            return Err(Error::CommandTooLarge {
                len: command.len(),
                max: MAX_COMMAND_LEN,
            });
        }
        let deadline = Instant::now() + self.config.leader_wait;
        let mut avoid = None;
        let mut last = None;
        for _ in 0..2 {
            let (leader, member) = match self.wait_for_leader(avoid, deadline).await {
                Ok(l) => l,
                Err(e) => return Err(last.unwrap_or(e)),
            };
            let attempt = if leader == self.id {
                self.write_locally(command.clone()).await
            } else {
                self.write_forwarded(leader, &member, command.clone(), deadline)
                    .await
            };
            match attempt {
                Ok((index, response)) => {
                    // Committed: the write stands even if this node is too slow to show it.
                    if let Err(e) = self.wait_applied(index, deadline).await {
                        tracing::warn!(
                            id = self.id,
                            index,
                            "a committed write is not applied here yet: {e}"
                        );
                    }
                    return Ok(response);
                }
                Err(Attempt::NotLeader(id)) => {
                    avoid = Some(id);
                    last = None;
                }
                Err(Attempt::Undelivered(id, e)) => {
                    avoid = Some(id);
                    last = Some(e);
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NoLeader {
            waited_ms: self.config.leader_wait.as_millis() as u64,
        }))
    }

    /// Waits until this node has applied the entry at `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), Error> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "a write applied here")
            .await
            .map(drop)
            .map_err(|e| match e {
                WaitError::Timeout(..) => Error::Lagging {
                    id: self.id,
                    index,
                    waited_ms: timeout.as_millis() as u64,
                },
                WaitError::ShuttingDown => Error::Stopped {
                    id: self.id,
                    reason: "shutting down".to_owned(),
                },
            })
    }

    async fn write_locally(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), Attempt> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok((response.log_id.index, response.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(Attempt::NotLeader(self.id))
            }
            Err(e) => Err(Attempt::Failed(self.write_error(e))),
        }
    }

    async fn write_forwarded(
        &self,
        leader: NodeId,
        member: &Member,
        command: Vec<u8>,
        deadline: Instant,
    ) -> Result<(u64, Vec<u8>), Attempt> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let reply = self
            .peers
            .call(Call::ClientWrite, leader, member, command, timeout)
            .await
            .and_then(|payload| {
                crate::codec::decode::<ClientWriteReply>(&payload, crate::network::MAX_MESSAGE_LEN)
                    .map_err(CallError::from)
            });
        match reply {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(Attempt::NotLeader(leader))
            }
            Ok(Err(RaftError::APIError(e))) => Err(Attempt::Failed(Error::Raft(e.to_string()))),
            Ok(Err(RaftError::Fatal(f))) => Err(Attempt::Failed(Error::OutcomeUnknown {
                leader,
                reason: format!("the leader stopped: {f}"),
            })),
            Err(e) if e.undelivered() => Err(Attempt::Undelivered(
                leader,
                self.unreachable(Call::ClientWrite, leader, member, &e),
            )),
            Err(e) => Err(Attempt::Failed(Error::OutcomeUnknown {
                leader,
                reason: e.to_string(),
            })),
        }
    }

    /// Runs `read` on this node's state machine as it is now, with no wait: it may be behind
    /// the leader (by however long replication takes, or without bound on a partitioned node).
    /// For start-up and for state that, once set, never changes; everything else reads with
    /// [`RaftNode::read_linearizable`].
    pub fn read_local<T>(&self, read: impl FnOnce(&S) -> T) -> T {
        read(&self.shared.read().machine)
    }

    /// Runs `read` on this node's state machine once it reflects every write committed before
    /// this call began (a linearizable read). On the leader: confirms leadership with a quorum.
    /// On a follower: asks the leader for its read index, then waits to apply up to it.
    ///
    /// # Errors
    ///
    /// [`Error::NoLeader`], [`Error::Lagging`] when this node does not catch up within
    /// `leader_wait`, [`Error::Raft`] when the leader cannot reach a quorum,
    /// [`Error::Unreachable`], [`Error::Stopped`].
    pub async fn read_linearizable<T>(&self, read: impl FnOnce(&S) -> T) -> Result<T, Error> {
        let deadline = Instant::now() + self.config.leader_wait;
        let mut avoid = None;
        let mut last = None;
        // Reads change nothing, so any failure to reach the leader may be retried.
        for _ in 0..3 {
            let (leader, member) = match self.wait_for_leader(avoid, deadline).await {
                Ok(l) => l,
                Err(e) => return Err(last.unwrap_or(e)),
            };
            let index = if leader == self.id {
                match self.raft.ensure_linearizable().await {
                    Ok(_) => None,
                    Err(e) => match self.read_error(e, leader) {
                        Attempt::Failed(e) => return Err(e),
                        Attempt::NotLeader(id) | Attempt::Undelivered(id, _) => {
                            avoid = Some(id);
                            continue;
                        }
                    },
                }
            } else {
                // A stalled leader accepts the call and never answers: give up on it after
                // twice the longest election timeout, by when the others have elected anew,
                // and ask the next leader (a read may always be retried).
                let timeout = deadline
                    .saturating_duration_since(Instant::now())
                    .min(self.config.election_timeout.1 * 2);
                let reply: Result<ReadIndexReply, CallError> = self
                    .peers
                    .call_typed(Call::ReadIndex, leader, &member, &(), timeout)
                    .await;
                match reply {
                    Ok(Ok(index)) => index,
                    Ok(Err(e)) => match self.read_error(e, leader) {
                        Attempt::Failed(e) => return Err(e),
                        Attempt::NotLeader(id) | Attempt::Undelivered(id, _) => {
                            avoid = Some(id);
                            continue;
                        }
                    },
                    Err(e) => {
                        last = Some(self.unreachable(Call::ReadIndex, leader, &member, &e));
                        avoid = Some(leader);
                        continue;
                    }
                }
            };
            if index.is_some() {
                let timeout = deadline.saturating_duration_since(Instant::now());
                self.raft
                    .wait(Some(timeout))
                    .applied_index_at_least(index, "linearizable read")
                    .await
                    .map_err(|e| match e {
                        WaitError::Timeout(..) => Error::Lagging {
                            id: self.id,
                            index: index.unwrap_or(0),
                            waited_ms: timeout.as_millis() as u64,
                        },
                        WaitError::ShuttingDown => Error::Stopped {
                            id: self.id,
                            reason: "shutting down".to_owned(),
                        },
                    })?;
            }
            return Ok(read(&self.shared.read().machine));
        }
        Err(last.unwrap_or(Error::NoLeader {
            waited_ms: self.config.leader_wait.as_millis() as u64,
        }))
    }

    fn read_error(
        &self,
        e: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>,
        asked: NodeId,
    ) -> Attempt {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => {
                Attempt::NotLeader(asked)
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                Attempt::Failed(Error::Raft(format!(
                    "the leader cannot confirm its leadership: {q}; a majority of voters must be reachable"
                )))
            }
            RaftError::Fatal(f) if asked == self.id => Attempt::Failed(self.stopped(f)),
            RaftError::Fatal(f) => {
                Attempt::Undelivered(asked, Error::Raft(format!("leader {asked} stopped: {f}")))
            }
        }
    }

    /// This node's view of the cluster, from openraft's metrics.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`].
    pub async fn status(&self) -> Result<Status, Error> {
        let commit_index = self
            .raft
            .with_raft_state(|state| state.committed.map(|c| c.index))
            .await
            .map_err(|f| self.stopped(f))?;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.map(|l| l.index));
                MemberStatus {
                    id: *id,
                    addr: node.addr.clone(),
                    role: if voters.contains(id) {
                        Role::Voter
                    } else {
                        Role::Learner
                    },
                    matched_index,
                    lag: m.replication.as_ref().and_then(|r| r.get(id)).map(|l| {
                        m.last_log_index
                            .unwrap_or(0)
                            .saturating_sub(l.map_or(0, |l| l.index))
                    }),
                }
            })
            .collect();
        Ok(Status {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            commit_index,
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            members,
        })
    }

    /// Stops openraft and waits (up to 10 s) until its tasks have let go of the log file, so
    /// the data directory can be opened again. The mounted service then answers every call
    /// with an error; stop the server too.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] if openraft's task had already failed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let result = self.raft.shutdown().await.map_err(|e| Error::Stopped {
            id: self.id,
            reason: e.to_string(),
        });
        // Replication tasks and blocking storage calls end shortly after the core does.
        let mut closed = self.log_closed.clone();
        let wait = closed.wait_for(|closed| *closed);
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!(id = self.id, "raft log file still open 10 s after shutdown");
        }
        result
    }

    fn metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    fn stopped(&self, fatal: openraft::error::Fatal<NodeId>) -> Error {
        Error::Stopped {
            id: self.id,
            reason: fatal.to_string(),
        }
    }

    fn unreachable(&self, call: Call, id: NodeId, member: &Member, e: &CallError) -> Error {
        Error::Unreachable {
            call: call.name(),
            id,
            addr: member.addr.clone(),
            status: e.to_string(),
        }
    }

    fn write_error(&self, e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
                id: self.id,
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Error::Raft(format!("membership change refused: {c}"))
            }
            RaftError::Fatal(f) => self.stopped(f),
        }
    }

    /// Confirms that this node is the leader.
    async fn ensure_leader(&self) -> Result<(), Error> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    id: self.id,
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(Error::Raft(format!(
                    "the leader cannot confirm its leadership: {q}; a majority of voters must be reachable"
                )))
            }
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Waits until a leader other than `avoid` is known, with its address.
    async fn wait_for_leader(
        &self,
        avoid: Option<NodeId>,
        deadline: Instant,
    ) -> Result<(NodeId, Member), Error> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let found = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.current_leader.is_some_and(|l| {
                        Some(l) != avoid && m.membership_config.membership().get_node(&l).is_some()
                    })
                },
                "a leader is known",
            )
            .await;
        match found {
            Ok(m) => m
                .current_leader
                .and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| (l, n.clone()))
                })
                .ok_or(Error::NoLeader {
                    waited_ms: self.config.leader_wait.as_millis() as u64,
                }),
            Err(WaitError::Timeout(..)) => Err(Error::NoLeader {
                waited_ms: self.config.leader_wait.as_millis() as u64,
            }),
            Err(WaitError::ShuttingDown) => Err(Error::Stopped {
                id: self.id,
                reason: "shutting down".to_owned(),
            }),
        }
    }

    /// Asks the server at `addr` who it is and checks that it is `id`.
    async fn identify(&self, id: NodeId, addr: String) -> Result<Member, Error> {
        let (found, incarnation) = self
            .peers
            .identify(id, &addr, self.config.leader_wait)
            .await
            .map_err(|e| Error::Unreachable {
                call: "Identify",
                id,
                addr: addr.clone(),
                status: e.to_string(),
            })?;
        if found != id {
            return Err(Error::WrongNode {
                addr,
                expected: id,
                found,
            });
        }
        let incarnation = incarnation.ok_or_else(|| Error::BadReply {
            id,
            message: "the incarnation is not 16 bytes".to_owned(),
        })?;
        Ok(Member { addr, incarnation })
    }
}

/// 128 random bits from the operating system.
fn random_u128() -> std::io::Result<u128> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u128::from_be_bytes(bytes))
}
