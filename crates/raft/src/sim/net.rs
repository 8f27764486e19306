//! The simulated network: openraft's RPCs delivered in process by calling the target's `Raft`
//! handle, through a seeded fault model (messages and replies dropped or delayed, partitions,
//! stalled nodes whose messages are held). The [`World`] also holds the run's one random
//! stream and its trace hash, so everything random comes from the seed and everything that
//! happens is in the digest.
//!
//! Every failure is reported to openraft as `RPCError::Network`, never `Unreachable`: an
//! `Unreachable` puts openraft's replication task into its back-off, whose unbiased
//! `tokio::select!` draws from tokio's own, unseeded random source (seeding it needs
//! `--cfg tokio_unstable`), and a run would no longer replay.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RaftNetwork, RaftNetworkFactory};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::store::lock;
use crate::types::{Member, NodeId, Raft, TypeConfig};

/// A small, fast, seeded generator (SplitMix64): the run's only source of randomness.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `per_mille / 1000`.
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub(super) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

/// The faults in force.
#[derive(Default)]
pub(super) struct Faults {
    /// Per mille of messages (and, separately, of replies) lost.
    pub(super) drop_per_mille: u64,
    /// Each message and reply is delayed uniformly in `0..=max_delay`.
    pub(super) max_delay: Duration,
    /// When set, only nodes on the same side of the split talk.
    pub(super) isolated: Option<BTreeSet<NodeId>>,
    /// Nodes whose messages, both ways, are held until the given time.
    pub(super) stalled: BTreeMap<NodeId, Instant>,
}

/// One node as the network knows it: its running `Raft`, if any, and which life it is in.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) raft: Option<Raft>,
    pub(super) life: u64,
    /// Taken around `ensure_linearizable` on this node, so at most one caller at a time waits
    /// inside it (see [`World::linearizable`]).
    pub(super) read_gate: Arc<tokio::sync::Mutex<()>>,
}

pub(super) struct WorldInner {
    pub(super) rng: Rng,
    pub(super) faults: Faults,
    pub(super) nodes: BTreeMap<NodeId, Slot>,
    trace: Sha256,
    /// The trace's lines, kept so a run that does not replay can say where it diverged.
    pub(super) lines: Vec<String>,
    start: Instant,
    pub(super) delivered: u64,
    pub(super) lost: u64,
}

/// Everything the simulated nodes share.
pub(super) struct World {
    pub(super) inner: Mutex<WorldInner>,
}

/// Why a message was not answered.
#[derive(Debug)]
pub(super) struct Undelivered(pub(super) &'static str);

impl World {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            inner: Mutex::new(WorldInner {
                rng: Rng::new(seed),
                faults: Faults::default(),
                nodes: BTreeMap::new(),
                trace: Sha256::new(),
                lines: Vec::new(),
                start: Instant::now(),
                delivered: 0,
                lost: 0,
            }),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WorldInner> {
        lock(&self.inner)
    }

    /// Adds a line to the trace, stamped with the virtual time.
    pub(super) fn trace(&self, line: &str) {
        let mut w = self.lock();
        let at = w.start.elapsed().as_micros();
        let line = format!("{at} {line}");
        w.trace.update(line.as_bytes());
        w.trace.update(b"\n");
        w.lines.push(line);
    }

    /// Virtual milliseconds since the run began.
    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.lock().start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn trace_digest(&self) -> [u8; 32] {
        self.lock().trace.clone().finalize().into()
    }

    /// The running `Raft` of `id`, if it is up.
    pub(super) fn raft(&self, id: NodeId) -> Option<Raft> {
        self.lock().nodes.get(&id).and_then(|s| s.raft.clone())
    }

    /// `raft.ensure_linearizable()` on node `id`, one caller at a time (FIFO).
    ///
    /// openraft waits inside it for the state machine to catch up by awaiting `changed()` on its
    /// metrics `watch` channel; tokio's `watch` parks each waiter on one of eight `Notify`s
    /// picked with tokio's own unseeded random source, so two waiters woken by one change wake
    /// in an order that differs from run to run. With one waiter per node there is no order.
    pub(super) async fn linearizable(
        &self,
        id: NodeId,
        raft: Raft,
    ) -> Result<
        Option<crate::types::LogId>,
        RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, Member>>,
    > {
        let gate = self
            .lock()
            .nodes
            .get(&id)
            .map(|s| Arc::clone(&s.read_gate))
            .unwrap_or_default();
        let _turn = gate.lock().await;
        raft.ensure_linearizable().await
    }

    /// Sends `kind` from `from` (in life `life`) to `to` and returns what `call` on the target
    /// returns, through the faults: a delay each way, a drop each way, a partition, stalls.
    pub(super) async fn deliver<T, F, Fut>(
        &self,
        from: NodeId,
        life: u64,
        to: NodeId,
        kind: &'static str,
        call: F,
    ) -> Result<T, Undelivered>
    where
        F: FnOnce(Raft) -> Fut,
        Fut: Future<Output = T>,
    {
        let (there, back, drop_there, drop_back, cut, give_up) = {
            let mut w = self.lock();
            if w.nodes
                .get(&from)
                .is_none_or(|s| s.life != life || s.raft.is_none())
            {
                return Err(Undelivered("the sender has crashed"));
            }
            let max = u64::try_from(w.faults.max_delay.as_millis()).unwrap_or(0);
            let per_mille = w.faults.drop_per_mille;
            let cut = w
                .faults
                .isolated
                .as_ref()
                .is_some_and(|side| side.contains(&from) != side.contains(&to));
            (
                w.rng.millis(0, max),
                w.rng.millis(0, max),
                w.rng.chance(per_mille),
                w.rng.chance(per_mille),
                cut,
                w.rng.millis(20, 100),
            )
        };
        tokio::time::sleep(there).await;
        self.held(from, to).await;
        let outcome = if cut {
            Err(Undelivered("partitioned"))
        } else if drop_there {
            Err(Undelivered("message lost"))
        } else {
            match self.raft(to) {
                None => Err(Undelivered("the target is down")),
                Some(raft) => {
                    let reply = call(raft).await;
                    tokio::time::sleep(back).await;
                    self.held(from, to).await;
                    if drop_back {
                        Err(Undelivered("reply lost"))
                    } else {
                        Ok(reply)
                    }
                }
            }
        };
        // A failure takes time to notice, as a timeout or a refused connection would; without
        // it a sender could retry in a loop that never lets virtual time advance.
        if outcome.is_err() {
            tokio::time::sleep(give_up).await;
        }
        {
            let mut w = self.lock();
            match &outcome {
                Ok(_) => w.delivered += 1,
                Err(_) => w.lost += 1,
            }
        }
        self.trace(&format!(
            "{kind} {from}->{to} {}",
            match &outcome {
                Ok(_) => "ok",
                Err(e) => e.0,
            }
        ));
        outcome
    }

    /// Waits while either end is stalled.
    async fn held(&self, a: NodeId, b: NodeId) {
        loop {
            let until = {
                let w = self.lock();
                let now = Instant::now();
                [a, b]
                    .iter()
                    .filter_map(|n| w.faults.stalled.get(n))
                    .filter(|t| **t > now)
                    .max()
                    .copied()
            };
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => return,
            }
        }
    }
}

/// openraft's network factory for one life of one node.
pub(super) struct SimNetwork {
    pub(super) world: Arc<World>,
    pub(super) from: NodeId,
    pub(super) life: u64,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimLink;

    async fn new_client(&mut self, target: NodeId, _node: &Member) -> SimLink {
        SimLink {
            world: Arc::clone(&self.world),
            from: self.from,
            life: self.life,
            to: target,
        }
    }
}

/// openraft's connection from one node's life to one target.
pub(super) struct SimLink {
    world: Arc<World>,
    from: NodeId,
    life: u64,
    to: NodeId,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl SimLink {
    async fn send<T, E, F, Fut>(&self, kind: &'static str, call: F) -> RpcResult<T, E>
    where
        E: std::error::Error,
        F: FnOnce(Raft) -> Fut,
        Fut: Future<Output = Result<T, RaftError<NodeId, E>>>,
    {
        match self
            .world
            .deliver(self.from, self.life, self.to, kind, call)
            .await
        {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.to, e))),
            Err(Undelivered(why)) => {
                Err(RPCError::Network(NetworkError::new(&AnyError::error(why))))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for SimLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.send(
            "append",
            |raft| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send("snapshot", |raft| async move {
            raft.install_snapshot(rpc).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.send("vote", |raft| async move { raft.vote(rpc).await })
            .await
    }
}
