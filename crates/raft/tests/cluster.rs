//! Clusters of real `RaftNode`s in one process, talking gRPC over loopback: bootstrap, writes
//! and reads through any member, leader loss, restarts, catching up through a snapshot, refusing
//! a wiped node and a reused id, no acknowledged write lost when the leader dies, and the leader
//! dying in the middle of adding a server (a newcomer catching up with megabyte entries); and the
//! control plane's own state machine (`shoal_control::ControlState`) replicated with binds
//! racing through every member.
//!
//! Nothing here asserts a duration: every wait is a generous deadline, so a loaded 2-core CI
//! machine is slow, not flaky.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_raft::{Error, NodeId, RaftConfig, RaftNode, Role, StateMachine};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Deadline for anything the cluster should do "soon".
const PATIENCE: Duration = Duration::from_secs(60);

/// Set-if-absent key-value machine: mirrors the catalog's immutable name:tag binds. A command is
/// `key \0 value`; the response is `[1]` when the key was bound now, `[0]` when it already was.
#[derive(Default)]
struct Binds(BTreeMap<Vec<u8>, Vec<u8>>);

fn bind(key: &str, value: &str) -> Vec<u8> {
    format!("{key}\0{value}").into_bytes()
}

impl StateMachine for Binds {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let Some(split) = command.iter().position(|b| *b == 0) else {
            return vec![2];
        };
        let (key, value) = (&command[..split], &command[split + 1..]);
        if self.0.contains_key(key) {
            vec![0]
        } else {
            self.0.insert(key.to_vec(), value.to_vec());
            vec![1]
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), String> {
        let mut map = BTreeMap::new();
        let take = |s: &mut &[u8]| -> Result<Vec<u8>, String> {
            if s.len() < 4 {
                return Err("truncated length".into());
            }
            let len = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
            if s.len() < 4 + len {
                return Err("truncated bytes".into());
            }
            let out = s[4..4 + len].to_vec();
            *s = &s[4 + len..];
            Ok(out)
        };
        while !snapshot.is_empty() {
            let k = take(&mut snapshot)?;
            let v = take(&mut snapshot)?;
            map.insert(k, v);
        }
        self.0 = map;
        Ok(())
    }
}

struct Options {
    snapshot_threshold: u64,
    logs_kept: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            snapshot_threshold: 10_000,
            logs_kept: 1_000,
        }
    }
}

/// One running member and its gRPC server.
struct Member<S: StateMachine = Binds> {
    id: NodeId,
    addr: SocketAddr,
    dir: PathBuf,
    node: Arc<RaftNode<S>>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl<S: StateMachine + Default> Member<S> {
    /// Starts node `id` on `addr` (port 0 picks one) with its data in `dir`.
    async fn start(id: NodeId, addr: SocketAddr, dir: &Path, options: &Options) -> Member<S> {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut config = RaftConfig::new(
            id,
            dir.to_owned(),
            addr.to_string(),
            "test cluster secret".to_owned(),
        );
        config.heartbeat_interval = Duration::from_millis(150);
        config.election_timeout = (Duration::from_millis(1000), Duration::from_millis(2000));
        config.snapshot_threshold = options.snapshot_threshold;
        config.logs_kept_after_snapshot = options.logs_kept;
        config.leader_wait = Duration::from_secs(30);
        let node = Arc::new(RaftNode::start(config, S::default()).await.expect("start"));
        let (stop, stopped) = oneshot::channel::<()>();
        let service = node.service();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("serve");
        });
        Member {
            id,
            addr,
            dir: dir.to_owned(),
            node,
            stop: Some(stop),
            server,
        }
    }

    /// Stops raft and the server, as a crash would (the data directory stays).
    async fn kill(mut self) -> (NodeId, SocketAddr, PathBuf) {
        let _ = self.node.shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        (self.id, self.addr, self.dir)
    }
}

struct Cluster<S: StateMachine = Binds> {
    _tmp: tempfile::TempDir,
    members: BTreeMap<NodeId, Member<S>>,
}

impl<S: StateMachine + Default> Cluster<S> {
    /// Starts nodes 1..=n on 127.0.0.(10+id) and bootstraps them from node 1.
    async fn start(n: u64, options: &Options) -> Cluster<S> {
        let tmp = tempfile::tempdir().unwrap();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let addr: SocketAddr = format!("127.0.0.{}:0", 10 + id).parse().unwrap();
            let dir = tmp.path().join(format!("node{id}"));
            members.insert(id, Member::start(id, addr, &dir, options).await);
        }
        let addrs = members
            .values()
            .map(|m| (m.id, m.addr.to_string()))
            .collect();
        members[&1]
            .node
            .initialize(addrs)
            .await
            .expect("initialize");
        Cluster { _tmp: tmp, members }
    }

    fn node(&self, id: NodeId) -> &Arc<RaftNode<S>> {
        &self.members[&id].node
    }

    /// Waits until every running member agrees on one leader, and returns it.
    async fn leader(&self) -> NodeId {
        let start = Instant::now();
        loop {
            let mut leaders = BTreeSet::new();
            for m in self.members.values() {
                leaders.insert(m.node.status().await.ok().and_then(|s| s.leader));
            }
            if leaders.len() == 1
                && let Some(Some(l)) = leaders.into_iter().next()
                && self.members.contains_key(&l)
            {
                return l;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no agreed leader within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn follower(&self, leader: NodeId) -> NodeId {
        *self.members.keys().find(|id| **id != leader).unwrap()
    }

    /// Writes with retries over the transition of a leader change; only for setup writes whose
    /// outcome the test does not judge.
    async fn write(&self, via: NodeId, key: &str, value: &str) -> Vec<u8> {
        self.write_command(via, bind(key, value)).await
    }

    /// Writes `command` with retries over the transition of a leader change.
    async fn write_command(&self, via: NodeId, command: Vec<u8>) -> Vec<u8> {
        let key = "the command";
        let start = Instant::now();
        loop {
            match self.node(via).write(command.clone()).await {
                Ok(r) => return r,
                Err(e) => {
                    assert!(start.elapsed() < PATIENCE, "write {key} via {via}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Every running member's state, read linearizably, must be byte-equal; returns it.
    async fn converged(&self) -> Vec<u8> {
        let mut states = BTreeMap::new();
        for (id, m) in &self.members {
            let state = read(&m.node).await;
            states.insert(*id, state);
        }
        let first = states.values().next().unwrap().clone();
        for (id, state) in &states {
            assert_eq!(state, &first, "node {id} differs");
        }
        first
    }
}

async fn read<S: StateMachine>(node: &RaftNode<S>) -> Vec<u8> {
    let start = Instant::now();
    loop {
        match node.read_linearizable(|sm| sm.snapshot()).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(start.elapsed() < PATIENCE, "read on {}: {e}", node.id());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn has_key(node: &RaftNode<Binds>, key: &str, value: &str) -> bool {
    let start = Instant::now();
    loop {
        match node
            .read_linearizable(|sm| sm.0.get(key.as_bytes()).cloned())
            .await
        {
            Ok(v) => return v.as_deref() == Some(value.as_bytes()),
            Err(e) => {
                assert!(start.elapsed() < PATIENCE, "read on {}: {e}", node.id());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_writes_made_through_a_follower() {
    let cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    for i in 0..20 {
        let response = cluster
            .node(follower)
            .write(bind(&format!("app:{i}"), &format!("content-{i}")))
            .await
            .expect("write through a follower");
        assert_eq!(response, vec![1], "app:{i} is bound now");
    }
    // Tags are immutable: a second bind of the same name reports it was already bound.
    let again = cluster
        .node(leader)
        .write(bind("app:0", "other"))
        .await
        .unwrap();
    assert_eq!(again, vec![0]);
    let state = cluster.converged().await;
    let mut expected = Binds::default();
    for i in 0..20 {
        expected.apply(&bind(&format!("app:{i}"), &format!("content-{i}")));
    }
    assert_eq!(state, expected.snapshot());

    let status = cluster.node(leader).status().await.unwrap();
    assert_eq!(status.leader, Some(leader));
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == Role::Voter));
    assert!(status.commit_index >= Some(21), "{status:?}");
    assert!(status.applied_index >= Some(21), "{status:?}");
    // The leader knows how far each follower is.
    let start = Instant::now();
    loop {
        let status = cluster.node(leader).status().await.unwrap();
        let caught_up = status
            .members
            .iter()
            .filter(|m| m.id != leader)
            .all(|m| m.lag == Some(0) && m.matched_index == status.last_log_index);
        if caught_up {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "followers never caught up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_is_elected_when_the_leader_stops_and_writes_continue() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let old = cluster.leader().await;
    cluster.write(old, "before", "1").await;
    let killed = Instant::now();
    cluster.members.remove(&old).unwrap().kill().await;
    let new = cluster.leader().await;
    println!(
        "new leader {new} elected {:?} after leader {old} stopped",
        killed.elapsed()
    );
    assert_ne!(new, old);
    let follower = cluster.follower(new);
    assert_eq!(cluster.write(follower, "after", "2").await, vec![1]);
    assert!(has_key(cluster.node(new), "before", "1").await);
    assert!(has_key(cluster.node(follower), "after", "2").await);
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_from_its_data_dir() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    for i in 0..5 {
        cluster.write(leader, &format!("a{i}"), "x").await;
    }
    let follower = cluster.follower(leader);
    let (id, addr, dir) = cluster.members.remove(&follower).unwrap().kill().await;
    for i in 0..10 {
        cluster.write(leader, &format!("b{i}"), "y").await;
    }
    let member = Member::<Binds>::start(id, addr, &dir, &Options::default()).await;
    cluster.members.insert(id, member);
    assert!(has_key(cluster.node(id), "b9", "y").await);
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_catches_up_through_a_snapshot() {
    let options = Options {
        snapshot_threshold: 5,
        logs_kept: 0,
    };
    let mut cluster = Cluster::<Binds>::start(3, &options).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let (id, addr, dir) = cluster.members.remove(&follower).unwrap().kill().await;
    for i in 0..40 {
        cluster.write(leader, &format!("k{i}"), "v").await;
    }
    // The leader has compacted its log past everything the stopped follower has.
    let start = Instant::now();
    loop {
        let status = cluster.node(leader).status().await.unwrap();
        if status.snapshot_index >= Some(30) {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "no snapshot: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let member = Member::<Binds>::start(id, addr, &dir, &options).await;
    cluster.members.insert(id, member);
    assert!(has_key(cluster.node(id), "k39", "v").await);
    let status = cluster.node(id).status().await.unwrap();
    assert!(status.snapshot_index.is_some(), "{status:?}");
    cluster.converged().await;

    // The snapshot on disk restores the node after another restart.
    let (id, addr, dir) = cluster.members.remove(&id).unwrap().kill().await;
    let member = Member::<Binds>::start(id, addr, &dir, &options).await;
    cluster.members.insert(id, member);
    assert!(has_key(cluster.node(id), "k0", "v").await);
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_under_an_old_id_is_refused() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    cluster.write(leader, "first", "1").await;
    let follower = cluster.follower(leader);
    let old_incarnation = cluster.node(follower).incarnation();
    let (id, addr, dir) = cluster.members.remove(&follower).unwrap().kill().await;
    std::fs::remove_dir_all(&dir).unwrap();
    let wiped = Member::<Binds>::start(id, addr, &dir, &Options::default()).await;
    assert_ne!(wiped.node.incarnation(), old_incarnation);
    for i in 0..5 {
        cluster.write(leader, &format!("later{i}"), "2").await;
    }
    // Give the leader many heartbeats' worth of chances to (wrongly) bring it back in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = wiped.node.status().await.unwrap();
    assert_eq!(status.applied_index, None, "{status:?}");
    assert!(status.members.is_empty(), "{status:?}");
    assert_eq!(status.term, 0, "{status:?}");
    // The two others still make progress.
    cluster.write(leader, "still", "3").await;
    cluster.converged().await;
    wiped.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_id_cannot_be_added_again_and_a_new_one_can() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    cluster.write(leader, "a", "1").await;
    let follower = cluster.follower(leader);
    let on_follower = cluster
        .node(follower)
        .add_member(9, "127.0.0.1:1".into())
        .await;
    assert!(
        matches!(on_follower, Err(Error::NotLeader { .. })),
        "{on_follower:?}"
    );

    cluster
        .node(leader)
        .remove_member(follower)
        .await
        .expect("remove");
    let (id, addr, dir) = cluster.members.remove(&follower).unwrap().kill().await;
    let status = cluster.node(leader).status().await.unwrap();
    assert!(status.members.iter().all(|m| m.id != id), "{status:?}");

    // Same id, wiped or not: refused, durably (also after the leader's restart).
    std::fs::remove_dir_all(&dir).unwrap();
    let again = Member::<Binds>::start(id, addr, &dir, &Options::default()).await;
    let refused = cluster.node(leader).add_member(id, addr.to_string()).await;
    assert!(
        matches!(refused, Err(Error::IdUsedBefore { id: i }) if i == id),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("new id"));
    again.kill().await;

    let (lid, laddr, ldir) = cluster.members.remove(&leader).unwrap().kill().await;
    cluster.members.insert(
        lid,
        Member::<Binds>::start(lid, laddr, &ldir, &Options::default()).await,
    );
    let leader = cluster.leader().await;
    let refused = cluster.node(leader).add_member(id, addr.to_string()).await;
    assert!(
        matches!(refused, Err(Error::IdUsedBefore { .. })),
        "{refused:?}"
    );

    // A new server under a new id joins as a learner and then a voter.
    let tmp = tempfile::tempdir().unwrap();
    let newcomer = Member::<Binds>::start(
        7,
        "127.0.0.17:0".parse().unwrap(),
        tmp.path(),
        &Options::default(),
    )
    .await;
    cluster
        .node(leader)
        .add_member(7, newcomer.addr.to_string())
        .await
        .expect("add 7");
    cluster.members.insert(7, newcomer);
    let status = cluster.node(leader).status().await.unwrap();
    assert!(
        status
            .members
            .iter()
            .any(|m| m.id == 7 && m.role == Role::Voter),
        "{status:?}"
    );
    cluster.write(7, "b", "2").await;
    assert!(has_key(cluster.node(7), "a", "1").await);
    cluster.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_leader_dies() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    let writers = Writers::start(&cluster);
    writers.progress(30, "before the leader dies").await;
    cluster.members.remove(&leader).unwrap().kill().await;
    let new = cluster.leader().await;
    writers
        .progress(20, &format!("after the new leader {new}"))
        .await;
    let acknowledged = writers.stop().await;
    println!(
        "{} writes acknowledged across the leader change",
        acknowledged.len()
    );
    assert_none_lost(&cluster, &acknowledged).await;
    cluster.converged().await;
}

/// Every running member holds every key in `acknowledged`.
async fn assert_none_lost(cluster: &Cluster<Binds>, acknowledged: &[String]) {
    for member in cluster.members.values() {
        let missing = member
            .node
            .read_linearizable(|sm| {
                acknowledged
                    .iter()
                    .filter(|k| !sm.0.contains_key(k.as_bytes()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
        assert!(
            missing.is_empty(),
            "node {} lost acknowledged writes {missing:?}",
            member.id
        );
    }
}

/// The control plane's state machine as the server replicates it.
#[derive(Default)]
struct Replica(shoal_control::ControlState);

impl StateMachine for Replica {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.apply_entry(command).encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.encode()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = shoal_control::ControlState::decode(snapshot).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// An artifact record of `len` bytes of content `fill`, bound as `name_tag`.
fn artifact(fill: u8, len: usize) -> shoal_control::ArtifactRecord {
    use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
    use shoal_metainfo::{MetaVersion, PathComponent, TorrentPath};
    let data = vec![fill; len];
    let name = PathComponent::new("payload.bin").unwrap();
    let input = InputFile {
        path: TorrentPath::new(vec![name.clone()]).unwrap(),
        length: len as u64,
        executable: false,
    };
    let options = CreateOptions {
        version: MetaVersion::Hybrid,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    let torrent = Plan::new(name, vec![input], true, options)
        .unwrap()
        .finish_in_memory(|_| &data)
        .unwrap();
    shoal_control::ArtifactRecord::from_torrent("x:1".parse().unwrap(), &torrent, "ci", 1).unwrap()
}

fn bind_as(record: &shoal_control::ArtifactRecord, name_tag: &str) -> Vec<u8> {
    let mut record = record.clone();
    record.name_tag = name_tag.parse().unwrap();
    shoal_control::Command::Bind(record).encode()
}

/// Two publishers race to bind the same tags to different contents through different members:
/// each tag ends bound to exactly one content, the loser is told which, every member holds the
/// same state (digest), and so do the survivors after the leader dies and binds go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_state_binds_each_tag_once_when_publishers_race_through_every_member() {
    use shoal_control::{BindError, ControlState, Outcome};
    let mut cluster = Cluster::<Replica>::start(3, &Options::default()).await;
    let (a, b) = (artifact(1, 40_000), artifact(2, 40_000));
    assert_ne!(a.content_id, b.content_id);
    let leader = cluster.leader().await;
    let mut winners = BTreeMap::new();
    for i in 0..10 {
        let name = format!("app:{i}");
        let (first, second) = tokio::join!(
            cluster.write_command(1, bind_as(&a, &name)),
            cluster.write_command(2, bind_as(&b, &name))
        );
        let outcomes = [first, second].map(|bytes| Outcome::decode(&bytes).unwrap());
        let bound: Vec<[u8; 32]> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Bound {
                    record,
                    already: false,
                } => Some(record.content_id),
                _ => None,
            })
            .collect();
        assert_eq!(
            bound.len(),
            1,
            "{name}: exactly one bind wins: {outcomes:?}"
        );
        let refused = outcomes.iter().any(|o| {
            matches!(o, Outcome::BindRefused(BindError::TagBoundToOtherContent { bound_content_id, .. })
                if *bound_content_id == bound[0])
        });
        assert!(
            refused,
            "{name}: the loser is told the winner's content: {outcomes:?}"
        );
        winners.insert(name, bound[0]);
    }
    let state = ControlState::decode(&cluster.converged().await).unwrap();
    println!("digest after the race: {:02x?}", &state.digest()[..8]);

    // The leader dies; binds go on through a survivor and every survivor agrees.
    let dead = cluster.members.remove(&leader).unwrap();
    dead.kill().await;
    let survivor = *cluster.members.keys().next().unwrap();
    for i in 10..15 {
        let name = format!("app:{i}");
        let outcome =
            Outcome::decode(&cluster.write_command(survivor, bind_as(&a, &name)).await).unwrap();
        assert!(
            matches!(outcome, Outcome::Bound { .. }),
            "{name}: {outcome:?}"
        );
        winners.insert(name, a.content_id);
    }
    let state = ControlState::decode(&cluster.converged().await).unwrap();
    for (name, content) in &winners {
        let record = state.artifact(&name.parse().unwrap()).unwrap();
        assert_eq!(&record.content_id, content, "{name}");
    }
    assert_eq!(state.artifacts().len(), winners.len());
}

/// Where a kill landed in an `add_member`, as the dying leader last reported the newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotYetAMember,
    Learner,
    Voter,
}

/// When to kill the leader after asking it to add a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillWhen {
    /// As soon as the newcomer shows up as a learner (it is still catching up).
    ALearner,
    /// As soon as the newcomer, a learner, has caught up: when the leader proposes the joint
    /// configuration that makes it a voter.
    CaughtUp,
}

/// Writers that bind fresh keys through every member until stopped, keeping what was
/// acknowledged.
struct Writers {
    running: Arc<AtomicBool>,
    acknowledged: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    fn start(cluster: &Cluster<Binds>) -> Writers {
        let running = Arc::new(AtomicBool::new(true));
        let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = cluster
            .members
            .values()
            .map(|member| {
                let (node, id) = (Arc::clone(&member.node), member.id);
                let (running, acknowledged) = (Arc::clone(&running), Arc::clone(&acknowledged));
                tokio::spawn(async move {
                    let mut i = 0;
                    while running.load(Ordering::Relaxed) {
                        let key = format!("via{id}-{i}");
                        i += 1;
                        match node.write(bind(&key, "v")).await {
                            Ok(r) => {
                                assert_eq!(r, vec![1], "{key} was bound once");
                                acknowledged.lock().unwrap().push(key);
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Writers {
            running,
            acknowledged,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond now were acknowledged.
    async fn progress(&self, more: usize, what: &str) {
        let target = self.count() + more;
        let start = Instant::now();
        while self.count() < target {
            assert!(start.elapsed() < PATIENCE, "no writes acknowledged {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers and returns every acknowledged key.
    async fn stop(self) -> Vec<String> {
        self.running.store(false, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Waits until every running member of `cluster` and `newcomer` report the same membership,
/// and returns it (id -> role).
async fn agreed_membership(
    cluster: &Cluster<Binds>,
    newcomer: &Member<Binds>,
) -> BTreeMap<NodeId, Role> {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for node in cluster
            .members
            .values()
            .map(|m| &m.node)
            .chain([&newcomer.node])
        {
            let status = node.status().await.unwrap();
            let members: Vec<(NodeId, Role)> =
                status.members.iter().map(|m| (m.id, m.role)).collect();
            seen.push(members);
        }
        if seen.iter().all(|m| *m == seen[0]) {
            return seen.swap_remove(0).into_iter().collect();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the members never agreed on one membership: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks the leader to add server `id` (started fresh in `dir`), kills that leader as `when`
/// says, and then checks the cluster recovers: a new leader among the survivors, asking it
/// again completes the change, and every member ends with the same membership, `id` a voter.
/// Returns the dead leader's id and where its death caught the change.
async fn add_while_the_leader_dies(
    cluster: &mut Cluster<Binds>,
    id: NodeId,
    dir: &Path,
    when: KillWhen,
) -> (NodeId, Phase) {
    let leader = cluster.leader().await;
    let addr: SocketAddr = format!("127.0.0.{}:0", 10 + id).parse().unwrap();
    let newcomer = Member::<Binds>::start(id, addr, dir, &Options::default()).await;
    let addr = newcomer.addr.to_string();
    let adding = tokio::spawn({
        let (node, addr) = (Arc::clone(cluster.node(leader)), addr.clone());
        async move { node.add_member(id, addr).await }
    });
    let phase_on = |status: shoal_raft::Status| match status.members.iter().find(|m| m.id == id) {
        None => Phase::NotYetAMember,
        Some(m) if m.role == Role::Learner => Phase::Learner,
        Some(_) => Phase::Voter,
    };
    match when {
        KillWhen::ALearner => {
            let start = Instant::now();
            while phase_on(cluster.node(leader).status().await.unwrap()) == Phase::NotYetAMember {
                assert!(start.elapsed() < PATIENCE, "{id} never became a learner");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        KillWhen::CaughtUp => {
            let start = Instant::now();
            loop {
                let status = cluster.node(leader).status().await.unwrap();
                let newcomer = status.members.iter().find(|m| m.id == id);
                if newcomer.is_some_and(|m| m.role == Role::Voter || m.lag == Some(0)) {
                    break;
                }
                assert!(start.elapsed() < PATIENCE, "{id} never caught up");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let phase = phase_on(cluster.node(leader).status().await.unwrap());
    cluster.members.remove(&leader).unwrap().kill().await;
    let first_try = adding.await.unwrap();
    println!("adding {id}: leader {leader} killed with {id} {phase:?}; the call: {first_try:?}");
    if phase == Phase::Learner && when == KillWhen::ALearner {
        assert!(
            first_try.is_err(),
            "the add cannot have finished: its leader died while {id} was a learner"
        );
    }

    // The survivors elect a leader (the newcomer may not know the cluster yet, so it is not
    // asked), and asking that leader again finishes the change.
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let start = Instant::now();
    loop {
        let again = cluster.node(new_leader).add_member(id, addr.clone());
        match tokio::time::timeout(PATIENCE, again).await {
            Ok(Ok(())) => break,
            Err(_) => {
                for node in cluster
                    .members
                    .values()
                    .map(|m| &m.node)
                    .chain([&newcomer.node])
                {
                    println!("{:?}", node.status().await);
                }
                panic!("asking the new leader {new_leader} to add {id} again hangs");
            }
            Ok(Err(e)) => {
                assert!(
                    start.elapsed() < PATIENCE,
                    "asking the new leader {new_leader} to add {id} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let membership = agreed_membership(cluster, &newcomer).await;
    assert_eq!(membership.get(&id), Some(&Role::Voter), "{membership:?}");
    assert_eq!(
        membership.get(&leader),
        Some(&Role::Voter),
        "the dead leader is still a voter until removed: {membership:?}"
    );
    cluster.members.insert(id, newcomer);
    (leader, phase)
}

/// The leader dies in the middle of adding a server, twice: once while the newcomer catches up
/// as a learner, once the moment it has caught up (as the joint configuration is proposed;
/// just before or after, as timing has it). Each time the survivors elect a leader, asking it again
/// completes the change, every member agrees on one membership, and the dead leader is then
/// removed through the new one (a membership change with a member down). Writes go on through
/// every member all along, and none acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dying_during_a_membership_change_leaves_one_membership_and_loses_no_write() {
    let mut cluster = Cluster::<Binds>::start(3, &Options::default()).await;
    let leader = cluster.leader().await;
    // A log a newcomer takes a while to catch up with: 8 MiB.
    let big = "x".repeat(1 << 20);
    for i in 0..8 {
        cluster.write(leader, &format!("big{i}"), &big).await;
    }
    let writers = Writers::start(&cluster);
    writers.progress(20, "before the first change").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut phases = Vec::new();
    for (id, when) in [(4, KillWhen::ALearner), (5, KillWhen::CaughtUp)] {
        let (dead, phase) = add_while_the_leader_dies(
            &mut cluster,
            id,
            &tmp.path().join(format!("node{id}")),
            when,
        )
        .await;
        phases.push(phase);
        writers.progress(20, &format!("after adding {id}")).await;
        let leader = cluster.leader().await;
        cluster
            .node(leader)
            .remove_member(dead)
            .await
            .expect("remove the dead leader");
        writers
            .progress(20, &format!("after removing {dead}"))
            .await;
    }
    assert_eq!(phases[0], Phase::Learner, "{phases:?}");
    println!("the kills caught the changes at {phases:?}");

    let acknowledged = writers.stop().await;
    println!(
        "{} writes acknowledged across both changes",
        acknowledged.len()
    );
    let leader = cluster.leader().await;
    let status = cluster.node(leader).status().await.unwrap();
    let voters: BTreeSet<NodeId> = status.members.iter().map(|m| m.id).collect();
    assert_eq!(
        voters,
        cluster.members.keys().copied().collect(),
        "{status:?}"
    );
    assert_none_lost(&cluster, &acknowledged).await;
    cluster.converged().await;
}
