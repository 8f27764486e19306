//! Policies and the post-completion action, carried out by real agents in one process: an
//! origin with the embedded control plane on 127.0.0.1 and edge agents on their own loopback
//! addresses, placements and policies set through the control plane's gRPC API.
//!
//! - The storage quota evicts unpinned artifacts least recently used first (a retrieve counts
//!   as a use), never a pinned one, and fails an assignment that cannot fit with `quota`
//!   instead of evicting for nothing.
//! - Seed retention removes an artifact once no placement has assigned it for that long, even
//!   when the placement ended while the agent was down.
//! - The post-completion action runs once per downloaded and verified copy, on the complete
//!   data, not again after a restart, again for a fresh copy, never for what the node
//!   published itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use shoal_agent::config::EmbeddedServer;
use shoal_agent::{AgentConfig, Running};
use shoal_api::testing::payload;
use shoal_api::v1;
use shoal_api::v1::agent_service_client::AgentServiceClient;
use shoal_api::v1::artifact_service_client::ArtifactServiceClient;
use shoal_api::v1::placement_service_client::PlacementServiceClient;
use shoal_api::v1::policy_service_client::PolicyServiceClient;
use tonic::transport::Channel;

const MIB: usize = 1 << 20;

/// How long anything here may take.
const LIMIT: Duration = Duration::from_secs(60);

struct Node {
    running: Running,
    router: Router,
    config: AgentConfig,
}

impl Node {
    async fn start(config: AgentConfig) -> Self {
        let running = shoal_agent::start(config.clone()).await.unwrap();
        let router = shoal_agent::api_router(&running.agent).unwrap();
        Self {
            running,
            router,
            config,
        }
    }

    async fn restart(self) -> Self {
        let config = self.config.clone();
        self.running.shutdown().await;
        Self::start(config).await
    }

    fn artifacts(&self) -> ArtifactServiceClient<Router> {
        ArtifactServiceClient::new(self.router.clone())
    }

    /// The content ids this agent holds, with their states.
    async fn holding(&self) -> BTreeMap<String, i32> {
        let status = AgentServiceClient::new(self.router.clone())
            .get_status(v1::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        status
            .torrents
            .into_iter()
            .map(|t| (t.content_id, t.state))
            .collect()
    }

    /// Waits until `check` holds for what the agent holds.
    async fn wait(&self, what: &str, check: impl Fn(&BTreeMap<String, i32>) -> bool) {
        let start = Instant::now();
        loop {
            let holding = self.holding().await;
            if check(&holding) {
                return;
            }
            assert!(start.elapsed() < LIMIT, "{what}: holding {holding:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_seeding(&self, id: &str) {
        let seeding = i32::from(v1::TorrentState::Seeding);
        self.wait(&format!("seeding {id}"), |h| h.get(id) == Some(&seeding))
            .await;
    }
}

struct Lab {
    dir: tempfile::TempDir,
    origin: Node,
    server: Channel,
}

impl Lab {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let origin = Node::start(AgentConfig {
            data_dir: dir.path().join("origin"),
            node_id: Some("origin".to_owned()),
            labels: BTreeMap::from([("role".to_owned(), "origin".to_owned())]),
            api_listen: any,
            peer_listen: any,
            server: EmbeddedServer {
                api_listen: any,
                tracker_listen: any,
                announce_url: None,
                trust_loopback: true,
            },
            ..AgentConfig::default()
        })
        .await;
        let api = origin.running.server_api_addr.unwrap();
        let server = Channel::from_shared(format!("http://{api}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            dir,
            origin,
            server,
        }
    }

    fn edge_config(&self, host: u8, role: &str, on_complete: Vec<String>) -> AgentConfig {
        let ip = IpAddr::from([127, 0, 0, host]);
        AgentConfig {
            data_dir: self.dir.path().join(format!("edge-{host}")),
            node_id: Some(format!("edge-{host}")),
            labels: BTreeMap::from([("role".to_owned(), role.to_owned())]),
            api_listen: SocketAddr::new(ip, 0),
            peer_listen: SocketAddr::new(ip, 0),
            control_plane: Some(
                shoal_agent::config::ControlPlanes::parse(&format!(
                    "http://{}",
                    self.origin.running.server_api_addr.unwrap()
                ))
                .unwrap(),
            ),
            on_complete,
            ..AgentConfig::default()
        }
    }

    /// Publishes `mib` MiB on the origin as `name_tag`; its content id.
    async fn publish(&self, name_tag: &str, mib: usize, seed: u64) -> String {
        let path = self
            .dir
            .path()
            .join("src")
            .join(name_tag.replace([':', '/'], "-"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, payload(seed, mib * MIB)).unwrap();
        self.origin
            .artifacts()
            .publish(v1::PublishRequest {
                path: path.to_str().unwrap().to_owned(),
                name_tag: name_tag.to_owned(),
                ..v1::PublishRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .artifact
            .unwrap()
            .content_id
    }

    fn source(&self, name_tag: &str) -> PathBuf {
        self.dir
            .path()
            .join("src")
            .join(name_tag.replace([':', '/'], "-"))
    }

    async fn place(&self, name: &str, name_tag: &str, selector: &str) {
        PlacementServiceClient::new(self.server.clone())
            .create_placement(v1::CreatePlacementRequest {
                name: name.to_owned(),
                r#ref: name_tag.to_owned(),
                selector: selector.to_owned(),
                until: None,
            })
            .await
            .unwrap();
    }

    async fn unplace(&self, name: &str) {
        PlacementServiceClient::new(self.server.clone())
            .delete_placement(v1::DeletePlacementRequest {
                name: name.to_owned(),
            })
            .await
            .unwrap();
    }

    async fn policy(&self, name: &str, selector: &str, rules: v1::PolicyRules) {
        PolicyServiceClient::new(self.server.clone())
            .set_policy(v1::SetPolicyRequest {
                name: name.to_owned(),
                selector: selector.to_owned(),
                rules: Some(rules),
            })
            .await
            .unwrap();
    }

    /// Waits until placement `name` reports `check` of its one node; that node.
    async fn wait_node(
        &self,
        name: &str,
        check: impl Fn(&v1::PlacementNode) -> bool,
    ) -> v1::PlacementNode {
        let start = Instant::now();
        loop {
            let status = PlacementServiceClient::new(self.server.clone())
                .get_placement(v1::GetPlacementRequest {
                    name: name.to_owned(),
                    ..v1::GetPlacementRequest::default()
                })
                .await
                .unwrap()
                .into_inner();
            if let Some(node) = status.nodes.iter().find(|n| check(n)) {
                return node.clone();
            }
            assert!(start.elapsed() < LIMIT, "placement {name}: {status:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_evicts_least_recently_used_unpinned_artifacts_and_fails_what_cannot_fit() {
    let lab = Lab::new().await;
    let edge = Node::start(lab.edge_config(2, "edge", Vec::new())).await;
    lab.policy(
        "small-disk",
        "role=edge",
        v1::PolicyRules {
            quota_bytes: Some(11 * MIB as u64),
            ..v1::PolicyRules::default()
        },
    )
    .await;
    let a = lab.publish("q/a:1", 3, 1).await;
    let b = lab.publish("q/b:1", 3, 2).await;
    let c = lab.publish("q/c:1", 3, 3).await;
    let d = lab.publish("q/d:1", 3, 4).await;
    let big = lab.publish("q/big:1", 8, 5).await;
    // a, b and c arrive in that order: 9 MiB of an 11 MiB quota.
    for (name, name_tag, id) in [
        ("pa", "q/a:1", &a),
        ("pb", "q/b:1", &b),
        ("pc", "q/c:1", &c),
    ] {
        lab.place(name, name_tag, "role=edge").await;
        edge.wait_seeding(id).await;
    }
    // a and b are no longer pinned; a is used again (retrieved), so b is the least recent.
    lab.unplace("pa").await;
    lab.unplace("pb").await;
    let copy = lab.dir.path().join("copy-of-a");
    let mut progress = edge
        .artifacts()
        .retrieve(v1::RetrieveRequest {
            r#ref: Some(v1::ArtifactRef {
                kind: Some(v1::artifact_ref::Kind::ContentId(a.clone())),
            }),
            destination: copy.to_str().unwrap().to_owned(),
            ..v1::RetrieveRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    while progress.message().await.unwrap().is_some() {}
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(lab.source("q/a:1")).unwrap()
    );

    // d needs 3 MiB: 12 > 11, so one artifact goes, the least recently used unpinned one: b.
    lab.place("pd", "q/d:1", "role=edge").await;
    edge.wait_seeding(&d).await;
    let holding = edge.holding().await;
    assert!(
        !holding.contains_key(&b),
        "b, the least recently used, was kept: {holding:?}"
    );
    for kept in [&a, &c, &d] {
        assert!(
            holding.contains_key(kept),
            "{kept} was evicted: {holding:?}"
        );
    }

    // big needs 8 MiB but c and d are pinned (6 MiB): it cannot fit, so it fails with `quota`
    // and a, which evicting would not have saved, stays.
    lab.place("pbig", "q/big:1", "role=edge").await;
    let node = lab
        .wait_node("pbig", |n| {
            n.state == i32::from(v1::AssignmentState::Failed)
        })
        .await;
    assert!(node.reason.starts_with("quota:"), "{node:?}");
    let holding = edge.holding().await;
    assert!(!holding.contains_key(&big), "{holding:?}");
    for kept in [&a, &c, &d] {
        assert!(
            holding.contains_key(kept),
            "{kept} was evicted for nothing: {holding:?}"
        );
    }

    // Ending c's placement makes room: d (pinned) and big make 11 MiB, so a and c both go
    // (c first, used less recently than a); d stays.
    lab.unplace("pc").await;
    edge.wait_seeding(&big).await;
    let holding = edge.holding().await;
    assert!(
        holding.contains_key(&d),
        "pinned d was evicted: {holding:?}"
    );
    assert!(
        !holding.contains_key(&a) && !holding.contains_key(&c),
        "{holding:?}"
    );
    edge.running.shutdown().await;
    lab.origin.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_retention_removes_an_artifact_once_no_placement_has_assigned_it_that_long() {
    let lab = Lab::new().await;
    let edge = Node::start(lab.edge_config(3, "cache", Vec::new())).await;
    let keeper = Node::start(lab.edge_config(4, "keeper", Vec::new())).await;
    lab.policy(
        "short-retention",
        "role=cache",
        v1::PolicyRules {
            seed_retention_seconds: Some(1),
            ..v1::PolicyRules::default()
        },
    )
    .await;
    let id = lab.publish("r/a:1", 2, 7).await;
    lab.place("everywhere", "r/a:1", "role in (cache,keeper)")
        .await;
    edge.wait_seeding(&id).await;
    keeper.wait_seeding(&id).await;
    // The placement ends while the edge agent is down: after its restart it still knows a
    // placement brought the artifact, and lets it go after the retention.
    let config = edge.config.clone();
    edge.running.shutdown().await;
    lab.unplace("everywhere").await;
    let edge = Node::start(config).await;
    let ended = Instant::now();
    edge.wait("released after the retention", |h| !h.contains_key(&id))
        .await;
    assert!(
        ended.elapsed() >= Duration::from_secs(1),
        "removed before the retention was over"
    );
    // With no retention rule, the artifact stays and seeds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(keeper.holding().await.contains_key(&id));
    edge.running.shutdown().await;
    keeper.running.shutdown().await;
    lab.origin.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_completion_action_runs_once_per_verified_copy_on_complete_data() {
    let lab = Lab::new().await;
    let log = lab.dir.path().join("actions.log");
    // The hook records the SHA-256 of what it was given, its id and name.
    let hook = format!(
        "sha256sum \"$1\" | cut -d' ' -f1 >> {log}; echo \"$SHOAL_CONTENT_ID $SHOAL_NAME_TAG\" >> {log}",
        log = log.display()
    );
    let edge = Node::start(lab.edge_config(
        5,
        "deploy",
        vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            hook,
            "hook".to_owned(),
        ],
    ))
    .await;
    let id = lab.publish("act/app:1", 4, 9).await;
    lab.place("deploy", "act/app:1", "role=deploy").await;
    edge.wait_seeding(&id).await;
    let expected = {
        use sha2::Digest as _;
        data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(
            std::fs::read(lab.source("act/app:1")).unwrap(),
        ))
    };
    let lines = |want: usize| {
        let log = log.clone();
        async move {
            let start = Instant::now();
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.lines().count() >= want {
                    return text;
                }
                assert!(start.elapsed() < LIMIT, "the action did not run: {text:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let once = format!("{expected}\n{id} act/app:1\n");
    assert_eq!(lines(2).await, once, "the action saw other data");

    // Not for what the node publishes itself: nothing was downloaded.
    let own = lab.dir.path().join("own.bin");
    std::fs::write(&own, payload(11, MIB)).unwrap();
    edge.artifacts()
        .publish(v1::PublishRequest {
            path: own.to_str().unwrap().to_owned(),
            name_tag: "act/own:1".to_owned(),
            ..v1::PublishRequest::default()
        })
        .await
        .unwrap();

    // Not again after a restart.
    let edge = edge.restart().await;
    edge.wait_seeding(&id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        once,
        "ran again after a restart"
    );

    // A fresh copy (the old one removed; the placement fetches it again) runs it again.
    edge.artifacts()
        .remove_local(v1::RemoveLocalRequest {
            r#ref: Some(v1::ArtifactRef {
                kind: Some(v1::artifact_ref::Kind::ContentId(id.clone())),
            }),
        })
        .await
        .unwrap();
    assert_eq!(lines(4).await, format!("{once}{once}"));
    edge.running.shutdown().await;
    lab.origin.running.shutdown().await;
}
