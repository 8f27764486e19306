//! The control plane: the catalog, the node registry, the placements and the tracker behind
//! one value, and the gRPC services over the catalog and registry (`shoal.v1.CatalogService`,
//! `shoal.v1.NodeService`; placements and assignments are in `placements`, policies in
//! `policies`). The REST routes
//! call these same implementations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_api::v1::catalog_service_server::CatalogService;
use shoal_api::v1::node_service_server::NodeService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{
    Action, ArtifactRecord, ArtifactRef, Command, ContentIdPrefix, ControlState, Labels, NameTag,
    NodeConfig, NodeId, NodeRecord, NodeRegistry, Outcome, PageToken, PlacementName,
    PlacementTable, PolicyTable, Tracker, TrackerConfig, page_size,
};
use shoal_metainfo::Torrent;
use tonic::{Request, Response, Status};

use crate::catalog::{Catalog, Observer};
use crate::convert;
use crate::error::ServerError;

/// The longest `prefix` a list accepts, in bytes.
const MAX_PREFIX: usize = 512;

/// How a control plane is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the catalog database lives (`catalog.redb`), or, on a cluster, the Raft files
    /// (`raft/`).
    pub data_dir: PathBuf,
    /// This server node's tracker announce URL as agents and standard clients reach it, e.g.
    /// `http://10.0.0.1:6969/announce`.
    pub announce_url: String,
    /// Every tracker of the control plane, in the same order on every server node, each put
    /// in `.torrent`s and magnets as its own BEP 12 tier so clients fail over. Empty: just
    /// `announce_url`.
    pub announce_urls: Vec<String>,
    /// The tracker's settings.
    pub tracker: TrackerConfig,
    /// The registry's settings (heartbeat timeout).
    pub nodes: NodeConfig,
}

/// How a server node takes part in a replicated control plane.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's Raft settings: its id, its address as the other members dial it (its API
    /// port, which serves replication too), the cluster secret, timeouts.
    pub raft: shoal_raft::RaftConfig,
    /// The voters of a new cluster (id -> address), the same on every node's command line.
    /// The member with the smallest id initializes the cluster once every member answers,
    /// and creates the bootstrap admin credential; on a cluster that exists this changes
    /// nothing. Empty: this node waits to be added (`shoal server join`).
    pub initial_members: BTreeMap<u64, String>,
}

/// The setting that holds the key page tokens are sealed with.
pub(crate) const PAGE_TOKEN_SECRET: &str = "page_token_secret";

/// The control plane, on one node or replicated.
pub struct ControlPlane {
    pub(crate) catalog: Catalog,
    /// Lock order: `nodes`, then `placements`, then `tracker`.
    pub(crate) nodes: Mutex<NodeRegistry>,
    pub(crate) placements: Mutex<PlacementTable>,
    /// Taken alone, or after `nodes`.
    pub(crate) policies: Mutex<PolicyTable>,
    tracker: Mutex<Tracker>,
    /// The page-token key, once the catalog holds one (it never changes).
    secret: OnceLock<Vec<u8>>,
    announce_url: String,
    trackers: Vec<String>,
    seed: AtomicU64,
    data_dir: PathBuf,
    /// Where the bootstrap admin token was written, when this start created it.
    bootstrap_token: OnceLock<PathBuf>,
    /// Bumped whenever assignments may have changed; assignment streams watch it.
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
    /// This control plane, for the tasks that serve its streams.
    pub(crate) me: Weak<ControlPlane>,
}

impl ControlPlane {
    /// Opens the single-node catalog under `config.data_dir` (creating it) and restores the
    /// registry and the tracker's allow-list from it. When the store holds no credential,
    /// creates the admin credential `bootstrap` and writes its token to
    /// `<data_dir>/admin.token` (mode 0600).
    ///
    /// # Errors
    /// When the directory or the database cannot be opened, or the bootstrap token cannot be
    /// written.
    pub fn open(config: ServerConfig) -> Result<Arc<Self>, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ServerError::store(&config.data_dir, e))?;
        let catalog = Catalog::open(&config.data_dir.join("catalog.redb"))?;
        let control = Self::assemble(catalog, config);
        let init = |command: &Command| {
            control
                .catalog
                .execute_local(command)
                .unwrap_or(Err(ServerError::Internal("a local catalog runs locally")))
        };
        if control.secret.get().is_none() {
            init(&Command::InitSetting {
                key: PAGE_TOKEN_SECRET.to_owned(),
                value: random_secret(),
            })?;
        }
        let none = control.catalog.read_local(|s| s.credentials().len() == 0);
        if none {
            let (record, path) = crate::credentials::bootstrap_record(&control.data_dir)?;
            let issued = crate::catalog::issued(init(&Command::IssueCredential {
                record,
                only_if_none: true,
            })?)?;
            control.bootstrapped(issued, path);
        }
        Ok(control)
    }

    /// Starts this server node as a member of a replicated control plane: its Raft member
    /// (mount [`ControlPlane::raft_routes`] next to the API), the tables the replicated state
    /// holds, and, in the background, the cluster's bootstrap (see
    /// [`ClusterConfig::initial_members`]) and the page-token key.
    ///
    /// # Errors
    /// When the data directory or the Raft files cannot be used.
    pub async fn open_cluster(
        config: ServerConfig,
        cluster: ClusterConfig,
    ) -> Result<Arc<Self>, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ServerError::store(&config.data_dir, e))?;
        let catalog = Catalog::open_replicated(cluster.raft.clone()).await?;
        let control = Self::assemble(catalog, config);
        tokio::spawn(crate::cluster::bootstrap(
            Arc::downgrade(&control),
            cluster.raft.id,
            cluster.initial_members,
        ));
        Ok(control)
    }

    /// The control plane over `catalog`, its tables rebuilt from the state it holds now and
    /// kept in step with every change from here on.
    fn assemble(catalog: Catalog, config: ServerConfig) -> Arc<Self> {
        let trackers = if config.announce_urls.is_empty() {
            vec![config.announce_url.clone()]
        } else {
            config.announce_urls
        };
        let mut tracker = Tracker::new(config.tracker);
        tracker.set_allowed(Some(BTreeSet::new()));
        let control = Arc::new_cyclic(|me| Self {
            catalog,
            nodes: Mutex::new(NodeRegistry::new(config.nodes)),
            placements: Mutex::new(PlacementTable::new()),
            policies: Mutex::new(PolicyTable::new()),
            tracker: Mutex::new(tracker),
            secret: OnceLock::new(),
            bootstrap_token: OnceLock::new(),
            announce_url: config.announce_url,
            trackers,
            seed: AtomicU64::new(now_ms()),
            data_dir: config.data_dir,
            changes: tokio::sync::watch::Sender::new(0),
            me: me.clone(),
        });
        let observer: Weak<dyn Observer> = Arc::downgrade(&control) as Weak<dyn Observer>;
        control.catalog.set_observer(observer);
        // Changes applied from here on reach the tables through the observer; those applied
        // before are in the state read now. (A change applied in between is seen twice, and
        // rebuilding is idempotent.)
        control.catalog.read_local(|state| control.rebuild(state));
        control
    }

    /// Records that this start created the bootstrap admin credential (`issued`), or removes
    /// the token file written for it when another node's was stored first.
    pub(crate) fn bootstrapped(&self, issued: bool, path: PathBuf) {
        if issued {
            tracing::warn!(path = %path.display(), "no credentials yet: created the admin credential `bootstrap`; its token is in this file (mode 0600)");
            let _ = self.bootstrap_token.set(path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Every table this node keeps beside the replicated state, rebuilt from `state`: the
    /// registry (heartbeats kept), the placements (progress reports kept), the policies, the
    /// tracker's allow-list (swarms of artifacts still bound kept), the page-token key.
    fn rebuild(&self, state: &ControlState) {
        if let Some(secret) = state.setting(PAGE_TOKEN_SECRET) {
            let _ = self.secret.set(secret.to_vec());
        }
        let now = now_ms();
        {
            let mut nodes = lock(&self.nodes);
            let gone: Vec<NodeId> = nodes
                .records()
                .filter(|r| state.node(r.id.as_str()).is_none())
                .map(|r| r.id.clone())
                .collect();
            for id in &gone {
                nodes.forget(id);
            }
            for record in state.nodes() {
                restore_node(&mut nodes, record);
            }
            let mut placements = lock(&self.placements);
            let held: Vec<PlacementName> = placements
                .page(None, usize::MAX)
                .into_iter()
                .map(|(p, _)| p.name.clone())
                .collect();
            for name in held {
                placements.remove(&name);
            }
            for placement in state.placements() {
                let size = size_of(state, &placement.content_id);
                let targets = nodes.records().map(|r| (&r.id, &r.labels));
                placements.restore(placement.clone(), size, targets, now);
            }
        }
        *lock(&self.policies) = state
            .policies()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let allowed: BTreeSet<[u8; 20]> = state
            .artifacts()
            .flat_map(ArtifactRecord::announce_info_hashes)
            .collect();
        lock(&self.tracker).set_allowed(Some(allowed));
        self.assignments_changed();
    }

    /// The Raft member's routes (`shoal.raft.v1.Raft`), to serve on the API port, outside
    /// the API's access layer (members authenticate with the cluster secret); `None` on a
    /// single-node control plane.
    pub fn raft_routes(&self) -> Option<axum::Router> {
        self.catalog.raft().map(|raft| {
            axum::Router::new().route_service("/shoal.raft.v1.Raft/{*method}", raft.service())
        })
    }

    /// Stops the Raft member, if any, and waits until its files are closed.
    pub async fn shutdown(&self) {
        if let Some(raft) = self.catalog.raft()
            && let Err(e) = raft.shutdown().await
        {
            tracing::warn!("stopping the raft member: {e}");
        }
    }

    /// The file holding the bootstrap admin's token, when this start created that credential
    /// (the store held none); `None` otherwise.
    pub fn bootstrap_token_file(&self) -> Option<&std::path::Path> {
        self.bootstrap_token.get().map(PathBuf::as_path)
    }

    /// Every tracker of the control plane, in order (one BEP 12 tier each).
    pub fn trackers(&self) -> &[String] {
        &self.trackers
    }

    /// The tracker's announce URL.
    pub fn announce_url(&self) -> &str {
        &self.announce_url
    }

    /// Answers an HTTP announce (the raw query string) from `source`.
    pub fn announce(&self, query: &str, source: std::net::IpAddr) -> Vec<u8> {
        let seed = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        lock(&self.tracker).announce_query(now_ms(), query, source, seed)
    }

    /// Answers an HTTP scrape (the raw query string).
    pub fn scrape(&self, query: &str) -> Vec<u8> {
        lock(&self.tracker).scrape_query(query)
    }

    /// Drops peers that stopped announcing; returns how many.
    pub fn expire_peers(&self) -> usize {
        lock(&self.tracker).expire(now_ms())
    }

    /// The peers the tracker knows for an info-hash (v1, or v2 truncated).
    pub fn swarm(&self, info_hash: &[u8; 20]) -> Vec<shoal_control::TrackedPeer> {
        lock(&self.tracker).swarm_peers(info_hash)
    }

    /// Finds the catalog record a reference names.
    ///
    /// # Errors
    /// `INVALID_REF` for a reference the catalog cannot answer (magnets, torrents),
    /// `ARTIFACT_NOT_FOUND`, `AMBIGUOUS_CONTENT_ID`.
    pub async fn resolve(&self, reference: &ArtifactRef) -> Result<ArtifactRecord, ApiError> {
        match reference {
            ArtifactRef::NameTag(name_tag) => self.catalog.get(name_tag).await?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ArtifactNotFound,
                    format!("{name_tag} is not in the catalog; `shoal ls` lists what is"),
                )
                .with("name_tag", name_tag.to_string())
            }),
            ArtifactRef::ContentId(prefix) => {
                let found = self.catalog.by_content(prefix, 64).await?;
                let Some(first) = found.first() else {
                    return Err(ApiError::new(
                        ErrorCode::ArtifactNotFound,
                        format!(
                            "no artifact in the catalog has a content id starting with {}",
                            prefix.as_str()
                        ),
                    ));
                };
                if found.iter().any(|r| r.content_id != first.content_id) {
                    return Err(ApiError::new(
                        ErrorCode::AmbiguousContentId,
                        format!(
                            "{} is the start of more than one content id; give more digits",
                            prefix.as_str()
                        ),
                    ));
                }
                Ok(first.clone())
            }
            _ => Err(ApiError::new(
                ErrorCode::InvalidRef,
                "the catalog looks artifacts up by name:tag or content id",
            )),
        }
    }

    /// The key a page token resumes after; `None` for the first page.
    pub(crate) fn open_page_token(&self, token: &str) -> Result<Option<String>, ApiError> {
        if token.is_empty() {
            return Ok(None);
        }
        PageToken::open(token, self.secret()?)
            .map(Some)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidPageToken,
                    format!("{e}; start again without a page token"),
                )
            })
    }

    /// The key page tokens are sealed with.
    ///
    /// # Errors
    /// `CONTROL_PLANE_UNAVAILABLE` before the cluster has chosen it (no leader yet).
    fn secret(&self) -> Result<&[u8], ApiError> {
        self.secret.get().map(Vec::as_slice).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ControlPlaneUnavailable,
                "the control plane's cluster has not started yet (no leader has been elected); \
                 `shoal server status` shows its members",
            )
        })
    }

    /// Cuts `page` (fetched with one entry more than `size`) to `size` entries and returns the
    /// token for the next page: the last entry's `key`, sealed, or "" when nothing follows.
    ///
    /// # Errors
    /// As [`ControlPlane::secret`].
    pub(crate) fn finish_page<T>(
        &self,
        page: &mut Vec<T>,
        size: usize,
        key: impl Fn(&T) -> &str,
    ) -> Result<String, ApiError> {
        let more = page.len() > size;
        page.truncate(size);
        Ok(match page.last() {
            Some(last) if more => PageToken::seal(key(last), self.secret()?),
            _ => String::new(),
        })
    }

    async fn bind(
        &self,
        name_tag: &str,
        torrent: &Torrent,
        by: &str,
    ) -> Result<(ArtifactRecord, bool), ApiError> {
        let name_tag: NameTag = name_tag.parse().map_err(|e: shoal_control::NameTagError| {
            ApiError::new(ErrorCode::InvalidNameTag, e.to_string())
        })?;
        let record = ArtifactRecord::from_torrent(name_tag, torrent, by, now_ms())
            .map_err(|e| ApiError::new(ErrorCode::InvalidTorrent, e.to_string()))?;
        // The observer lets the tracker accept its info-hashes, on every server node.
        let (record, already) = self.catalog.bind(record).await?;
        if !already {
            tracing::info!(name_tag = %record.name_tag, content_id = %record.content_id_hex(), by, "bound");
        }
        Ok((record, already))
    }
}

/// Parses the `ArtifactRef` message into the grammar's type.
///
/// # Errors
/// `INVALID_REF` when it is missing or does not parse.
pub fn parse_ref(reference: Option<&v1::ArtifactRef>) -> Result<ArtifactRef, ApiError> {
    use v1::artifact_ref::Kind;
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidRef, m);
    match reference.and_then(|r| r.kind.as_ref()) {
        None => Err(invalid(
            "the request names no artifact (ref is empty)".into(),
        )),
        Some(Kind::NameTag(s)) => s
            .parse::<NameTag>()
            .map(ArtifactRef::NameTag)
            .map_err(|e| ApiError::new(ErrorCode::InvalidNameTag, e.to_string())),
        Some(Kind::ContentId(s)) => s
            .parse::<ContentIdPrefix>()
            .map(ArtifactRef::ContentId)
            .map_err(|e| invalid(e.to_string())),
        Some(Kind::Magnet(s)) => match s.parse::<ArtifactRef>() {
            Ok(r @ ArtifactRef::Magnet(_)) => Ok(r),
            Ok(_) => Err(invalid(format!("{s:?} is not a magnet link"))),
            Err(e) => Err(invalid(e.to_string())),
        },
        Some(Kind::TorrentUrl(s)) => match s.parse::<ArtifactRef>() {
            Ok(r @ ArtifactRef::TorrentUrl(_)) => Ok(r),
            _ => Err(invalid(format!("{s:?} is not an http(s) URL"))),
        },
        Some(Kind::Torrent(_)) => Err(invalid(
            "a .torrent file's bytes are answered by the agent, not the catalog".into(),
        )),
    }
}

#[tonic::async_trait]
impl CatalogService for ControlPlane {
    async fn bind_artifact(
        &self,
        request: Request<v1::BindArtifactRequest>,
    ) -> Result<Response<v1::BindArtifactResponse>, Status> {
        let by = self.authorize(&request, Action::Publish)?.name;
        let req = request.into_inner();
        let torrent = torrent_from_parts(&req.info, &req.piece_layers)?;
        let (record, already_bound) = self.bind(&req.name_tag, &torrent, &by).await?;
        Ok(Response::new(v1::BindArtifactResponse {
            artifact: Some(convert::artifact(&record, &self.trackers, false)),
            already_bound,
        }))
    }

    async fn list_artifacts(
        &self,
        request: Request<v1::ListArtifactsRequest>,
    ) -> Result<Response<v1::ListArtifactsResponse>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        if req.prefix.len() > MAX_PREFIX {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("prefix is over {MAX_PREFIX} bytes"),
            )
            .into());
        }
        let after = self.open_page_token(&req.page_token)?;
        let (records, more) = self
            .catalog
            .list(&req.prefix, after.as_deref(), page_size(req.page_size))
            .await?;
        let next_page_token = match records.last() {
            Some(last) if more => PageToken::seal(&last.name_tag.to_string(), self.secret()?),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListArtifactsResponse {
            artifacts: records
                .iter()
                .map(|r| convert::artifact(r, &self.trackers, false))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_artifact(
        &self,
        request: Request<v1::GetArtifactRequest>,
    ) -> Result<Response<v1::Artifact>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let reference = parse_ref(req.r#ref.as_ref())?;
        let record = self.resolve(&reference).await?;
        Ok(Response::new(convert::artifact(
            &record,
            &self.trackers,
            req.include_torrent,
        )))
    }
}

#[tonic::async_trait]
impl NodeService for ControlPlane {
    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let after = self.open_page_token(&req.page_token)?;
        let size = page_size(req.page_size);
        let views = lock(&self.nodes).list(now_ms());
        let mut page: Vec<_> = views
            .iter()
            .filter(|v| after.as_deref().is_none_or(|a| v.record.id.as_str() > a))
            .take(size + 1)
            .collect();
        let next_page_token = self.finish_page(&mut page, size, |v| v.record.id.as_str())?;
        Ok(Response::new(v1::ListNodesResponse {
            nodes: page.into_iter().map(convert::node).collect(),
            next_page_token,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        self.authorize(&request, Action::Heartbeat)?;
        let req = request.into_inner();
        let invalid = |m: String| ApiError::new(ErrorCode::InvalidArgument, m);
        let id: NodeId = req
            .node_id
            .parse()
            .map_err(|e: shoal_control::NodeIdError| invalid(format!("node_id: {e}")))?;
        let items: Vec<String> = req.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labels = Labels::parse(items.iter().map(String::as_str))
            .map_err(|e| invalid(format!("labels: {e}")))?;
        let peer_addr: SocketAddr = req.peer_address.parse().map_err(|_| {
            invalid(format!(
                "peer_address {:?} is not HOST:PORT with a numeric address",
                req.peer_address
            ))
        })?;
        let agent_api = (!req.agent_api.is_empty()).then_some(req.agent_api);
        let relabelled;
        let record = {
            let mut nodes = lock(&self.nodes);
            let before = nodes.get(&id).cloned();
            nodes
                .register(now_ms(), id.clone(), labels, peer_addr, agent_api)
                .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
            let after = nodes.get(&id).cloned();
            relabelled = matches!((&before, &after), (Some(b), Some(a)) if b.labels != a.labels);
            // Persist registrations and changes, not every heartbeat.
            match (before, after) {
                (Some(b), Some(a))
                    if b.labels == a.labels
                        && b.peer_addr == a.peer_addr
                        && b.agent_api == a.agent_api =>
                {
                    None
                }
                (_, a) => a,
            }
        };
        if let Some(record) = record {
            tracing::info!(node = %record.id.as_str(), peer = %record.peer_addr, labels = %record.labels, "node registered");
            // Every server node's observer (this one's too) puts it in its registry and makes
            // it a target of the placements it matches now. (A new node's own stream looks
            // each second until it registers.)
            self.catalog.put_node(&record).await?;
            // New labels may also put it under other policies, which its stream must carry;
            // this node's registry had them before the observer saw them.
            if relabelled {
                self.assignments_changed();
            }
        }
        let interval = lock(&self.nodes).config().ttl_ms / 3 / 1000;
        Ok(Response::new(v1::HeartbeatResponse {
            interval_seconds: u32::try_from(interval.max(1)).unwrap_or(10),
            announce_url: self.announce_url.clone(),
            announce_urls: self.trackers.clone(),
        }))
    }
}

impl Observer for ControlPlane {
    fn applied(&self, state: &ControlState, command: &Command, outcome: &Outcome) {
        let now = now_ms();
        match (command, outcome) {
            (
                Command::Bind(_),
                Outcome::Bound {
                    record,
                    already: false,
                },
            ) => {
                let mut tracker = lock(&self.tracker);
                for hash in record.announce_info_hashes() {
                    tracker.allow(hash);
                }
            }
            (Command::PutNode(record), _) => {
                let placed = {
                    let mut nodes = lock(&self.nodes);
                    let relabelled =
                        nodes.get(&record.id).map(|r| &r.labels) != Some(&record.labels);
                    restore_node(&mut nodes, record);
                    let placed =
                        lock(&self.placements).node_changed(&record.id, &record.labels, now);
                    placed || relabelled
                };
                if placed {
                    self.assignments_changed();
                }
            }
            (Command::PutPlacement(placement), _)
            | (Command::CreatePlacement(placement), Outcome::Stored) => {
                {
                    let nodes = lock(&self.nodes);
                    let size = size_of(state, &placement.content_id);
                    let targets = nodes.records().map(|r| (&r.id, &r.labels));
                    lock(&self.placements).restore(placement.clone(), size, targets, now);
                }
                self.assignments_changed();
            }
            (Command::DeletePlacement(name), Outcome::Deleted(true)) => {
                if let Ok(name) = name.parse::<PlacementName>() {
                    lock(&self.placements).remove(&name);
                }
                self.assignments_changed();
            }
            (Command::PutPolicy(policy), _) => {
                lock(&self.policies).insert(policy.name.clone(), policy.clone());
                self.assignments_changed();
            }
            (Command::DeletePolicy(name), Outcome::Deleted(true)) => {
                lock(&self.policies).retain(|held, _| held.as_str() != name);
                self.assignments_changed();
            }
            (Command::InitSetting { key, .. }, Outcome::Setting(value))
                if key == PAGE_TOKEN_SECRET =>
            {
                let _ = self.secret.set(value.clone());
            }
            _ => {}
        }
    }

    fn replaced(&self, state: &ControlState) {
        tracing::info!("the control plane's state was replaced by the leader's snapshot");
        self.rebuild(state);
    }
}

/// Puts `record` in the registry, keeping the later of its stored heartbeat and the one this
/// server node has seen (heartbeats are not replicated).
fn restore_node(nodes: &mut NodeRegistry, record: &NodeRecord) {
    let mut record = record.clone();
    if let Some(held) = nodes.get(&record.id) {
        record.last_heartbeat_ms = record.last_heartbeat_ms.max(held.last_heartbeat_ms);
    }
    nodes.restore(record);
}

/// The size of the artifact with `content_id`, as the state holds it (0 if none is bound).
fn size_of(state: &ControlState, content_id: &[u8; 32]) -> u64 {
    data_encoding::HEXLOWER
        .encode(content_id)
        .parse::<ContentIdPrefix>()
        .ok()
        .and_then(|prefix| state.by_content(&prefix, 1).first().map(|r| r.size))
        .unwrap_or(0)
}

/// Rebuilds a torrent from an info dictionary and its piece layers.
fn torrent_from_parts(info: &[u8], piece_layers: &[u8]) -> Result<Torrent, ApiError> {
    let mut bytes = Vec::with_capacity(info.len() + piece_layers.len() + 32);
    bytes.extend_from_slice(b"d4:info");
    bytes.extend_from_slice(info);
    if !piece_layers.is_empty() {
        bytes.extend_from_slice(b"12:piece layers");
        bytes.extend_from_slice(piece_layers);
    }
    bytes.push(b'e');
    Torrent::from_bytes(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidTorrent,
            format!("the torrent is not valid: {e}"),
        )
    })
}

/// The time now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded tables stay consistent at every await-free step; a panic elsewhere leaves
    // them usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn random_secret() -> Vec<u8> {
    use std::io::Read;
    let mut secret = vec![0u8; 32];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut secret));
    if filled.is_err() {
        // Unforgeable tokens are a nicety, not a security boundary: fall back to the clock.
        let t = now_ms().to_le_bytes();
        secret[..8].copy_from_slice(&t);
    }
    secret
}
