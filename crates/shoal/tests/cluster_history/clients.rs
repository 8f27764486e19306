//! The clients and what they record: each repeatedly picks a random server node and binds a
//! `name:tag` from a small, slowly moving key space to one of a few contents (so clients race
//! for the same keys), or reads one back, over gRPC with the bootstrap admin's token. Every
//! operation goes into the history with its invoke and complete times on one shared clock.
//!
//! Results are mapped conservatively: only an acknowledged bind, a refusal naming the holder
//! (`TAG_BOUND_TO_OTHER_CONTENT`), a record read back and `ARTIFACT_NOT_FOUND` are definite;
//! anything else (a timeout, a refused connection, `CONTROL_PLANE_UNAVAILABLE`, ...) is an
//! unknown outcome, which may or may not have been applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shoal_api::v1::artifact_ref::Kind;
use shoal_api::v1::catalog_service_client::CatalogServiceClient;
use shoal_api::v1::cluster_service_client::ClusterServiceClient;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::ArtifactRecord;
use shoal_control::history::{BindResult, Content, FinalState, Op, OpKind};
use shoal_swarm::Rng;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// How long a client waits for any one call before it counts the outcome unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A new key generation every this long: binds go to the newest generation's keys.
const GENERATION: Duration = Duration::from_secs(2);
/// Keys per generation: few, so that clients collide.
const KEYS_PER_GENERATION: usize = 3;
/// Reads pick a key from the newest generations, this many of them.
const READ_GENERATIONS: u64 = 4;
/// The distinct contents clients bind.
const CONTENTS: usize = 3;
/// Every key starts with it.
pub const KEY_PREFIX: &str = "hist/";

/// One monotonic clock for every client, in microseconds since the run began.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Microseconds since the start.
    pub fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A content a client can bind: its id and the bind request's torrent parts.
#[derive(Clone)]
pub struct Candidate {
    content: Content,
    info: Vec<u8>,
    piece_layers: Vec<u8>,
}

/// [`CONTENTS`] small single-piece torrents, each a different content.
pub fn candidates() -> Vec<Candidate> {
    use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
    use shoal_metainfo::{PathComponent, TorrentPath};
    (0..CONTENTS)
        .map(|i| {
            let data = vec![u8::try_from(i).unwrap(); 1000 + i];
            let name = PathComponent::new("payload.bin").unwrap();
            let input = InputFile {
                path: TorrentPath::new(vec![name.clone()]).unwrap(),
                length: data.len() as u64,
                executable: false,
            };
            let torrent = Plan::new(name, vec![input], true, CreateOptions::default())
                .unwrap()
                .finish_in_memory(|_| &data)
                .unwrap();
            let record =
                ArtifactRecord::from_torrent("x:1".parse().unwrap(), &torrent, "test", 0).unwrap();
            Candidate {
                content: record.content_id,
                info: record.info,
                piece_layers: record.piece_layers,
            }
        })
        .collect()
}

/// How clients reach the server nodes.
#[derive(Clone)]
pub struct Target {
    /// Each node's API URL, by host.
    pub urls: Vec<String>,
    /// `Bearer <admin token>`.
    pub bearer: MetadataValue<Ascii>,
}

impl Target {
    /// Targets `urls` with the admin token `token`.
    pub fn new(urls: Vec<String>, token: &str) -> Self {
        Self {
            urls,
            bearer: format!("Bearer {}", token.trim()).parse().unwrap(),
        }
    }

    /// A lazily connecting channel to the node on `host`.
    fn channel(&self, host: usize) -> Channel {
        Endpoint::from_shared(self.urls[host].clone())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(CALL_TIMEOUT)
            .connect_lazy()
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }
}

/// What the clients share with the test while they run.
pub struct Shared {
    /// Set to make the clients finish.
    pub stop: AtomicBool,
    /// The latest invoke time of an acknowledged bind (clock microseconds; 0: none yet).
    pub acked_invoked: AtomicU64,
    /// Answers that no correct server gives (an acknowledgement naming other content, ...).
    pub anomalies: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    /// Nothing acknowledged, not stopping.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stop: AtomicBool::new(false),
            acked_invoked: AtomicU64::new(0),
            anomalies: std::sync::Mutex::default(),
        })
    }

    fn anomaly(&self, message: String) {
        self.anomalies.lock().unwrap().push(message);
    }
}

/// The key `index` of generation `generation`.
fn key(generation: u64, index: usize) -> String {
    format!("{KEY_PREFIX}g{generation:03}-k{index}:1")
}

/// Client `client`'s loop, until `shared.stop`: its history.
pub async fn run(
    client: u64,
    seed: u64,
    target: Target,
    candidates: Vec<Candidate>,
    clock: Clock,
    shared: Arc<Shared>,
) -> Vec<Op> {
    let mut rng = Rng::new(seed ^ (client + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut channels: BTreeMap<usize, Channel> = BTreeMap::new();
    let mut ops = Vec::new();
    let generation_us = GENERATION.as_micros() as u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let host = rng.below(target.urls.len());
        let channel = channels
            .entry(host)
            .or_insert_with(|| target.channel(host))
            .clone();
        let invoked = clock.now();
        let generation = invoked / generation_us;
        let (key, kind) = if rng.below(2) == 0 {
            let key = key(generation, rng.below(KEYS_PER_GENERATION));
            let candidate = &candidates[rng.below(candidates.len())];
            let result = bind(&target, channel, &key, candidate, &shared).await;
            if result == BindResult::Bound {
                shared.acked_invoked.fetch_max(invoked, Ordering::Relaxed);
            }
            let kind = OpKind::Bind {
                content: candidate.content,
                result,
            };
            (key, kind)
        } else {
            let back = rng.below(READ_GENERATIONS as usize) as u64;
            let key = key(
                generation.saturating_sub(back),
                rng.below(KEYS_PER_GENERATION),
            );
            let result = read(&target, channel, &key, &shared).await;
            (key, OpKind::Read { result })
        };
        let unknown = matches!(
            kind,
            OpKind::Bind {
                result: BindResult::Unknown,
                ..
            } | OpKind::Read { result: None }
        );
        ops.push(Op {
            client,
            invoked,
            completed: clock.now(),
            key,
            kind,
        });
        if unknown {
            // A fresh connection next time (the old one may hang on a partition), and no
            // busy loop against a node that refuses connections.
            channels.remove(&host);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ops
}

/// Binds `key` to `candidate` through `channel`.
async fn bind(
    target: &Target,
    channel: Channel,
    key: &str,
    candidate: &Candidate,
    shared: &Shared,
) -> BindResult {
    let request = target.request(v1::BindArtifactRequest {
        name_tag: key.to_owned(),
        info: candidate.info.clone(),
        piece_layers: candidate.piece_layers.clone(),
    });
    let mut client = CatalogServiceClient::new(channel);
    let call = client.bind_artifact(request);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => BindResult::Unknown,
        Ok(Ok(response)) => {
            let artifact = response.into_inner().artifact.unwrap_or_default();
            match content(&artifact.content_id) {
                Some(c) if c == candidate.content && artifact.name_tag == key => BindResult::Bound,
                _ => {
                    shared.anomaly(format!(
                        "bind {key} -> {} acknowledged as {} -> {}",
                        hex(&candidate.content),
                        artifact.name_tag,
                        artifact.content_id
                    ));
                    BindResult::Unknown
                }
            }
        }
        Ok(Err(status)) => {
            let error = ApiError::from_status(&status);
            if error.code != ErrorCode::TagBoundToOtherContent {
                return BindResult::Unknown;
            }
            let holder = error
                .metadata
                .get("bound_content_id")
                .and_then(|c| content(c));
            match holder {
                Some(holder) if holder != candidate.content => BindResult::Refused { holder },
                _ => {
                    shared.anomaly(format!(
                        "bind {key} -> {} refused naming holder {:?}",
                        hex(&candidate.content),
                        error.metadata.get("bound_content_id")
                    ));
                    BindResult::Unknown
                }
            }
        }
    }
}

/// Reads `key` through `channel`: `Some(None)` unbound, `None` unknown.
async fn read(
    target: &Target,
    channel: Channel,
    key: &str,
    shared: &Shared,
) -> Option<Option<Content>> {
    let request = target.request(v1::GetArtifactRequest {
        r#ref: Some(v1::ArtifactRef {
            kind: Some(Kind::NameTag(key.to_owned())),
        }),
        include_torrent: false,
    });
    let mut client = CatalogServiceClient::new(channel);
    let call = client.get_artifact(request);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => None,
        Ok(Ok(response)) => {
            let artifact = response.into_inner();
            match content(&artifact.content_id) {
                Some(c) if artifact.name_tag == key => Some(Some(c)),
                _ => {
                    shared.anomaly(format!(
                        "read {key} answered {} -> {}",
                        artifact.name_tag, artifact.content_id
                    ));
                    None
                }
            }
        }
        Ok(Err(status)) => {
            (ApiError::from_status(&status).code == ErrorCode::ArtifactNotFound).then_some(None)
        }
    }
}

/// One node's view of the cluster, or `None` when it does not answer within a second.
pub async fn status(target: &Target, host: usize) -> Option<v1::ClusterStatus> {
    let mut client = ClusterServiceClient::new(target.channel(host));
    let call = client.get_cluster_status(target.request(v1::GetClusterStatusRequest {}));
    match tokio::time::timeout(Duration::from_secs(1), call).await {
        Ok(Ok(response)) => Some(response.into_inner()),
        _ => None,
    }
}

/// Every node's view, by host (`None`: no answer), asked all at once.
pub async fn statuses(target: &Target) -> Vec<Option<v1::ClusterStatus>> {
    let asks: Vec<_> = (0..target.urls.len())
        .map(|host| {
            let target = target.clone();
            tokio::spawn(async move { status(&target, host).await })
        })
        .collect();
    let mut answers = Vec::new();
    for ask in asks {
        answers.push(ask.await.unwrap());
    }
    answers
}

/// The host of the leader named by the answering node with the highest term, and that term.
pub fn leader(statuses: &[Option<v1::ClusterStatus>]) -> Option<(usize, u64)> {
    let status = statuses
        .iter()
        .flatten()
        .filter(|s| s.leader_id.is_some())
        .max_by_key(|s| s.term)?;
    let host = usize::try_from(status.leader_id?).ok()?.checked_sub(1)?;
    Some((host, status.term))
}

/// Every binding under [`KEY_PREFIX`] that the node on `host` holds, read through it (a
/// linearizable read there: once the node has applied every committed entry, its own state);
/// `None` if a page does not come back.
pub async fn final_state(target: &Target, host: usize) -> Option<FinalState> {
    let mut client = CatalogServiceClient::new(target.channel(host));
    let mut bindings = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let call = client.list_artifacts(target.request(v1::ListArtifactsRequest {
            prefix: KEY_PREFIX.to_owned(),
            page_size: 1000,
            page_token: page_token.clone(),
        }));
        let page = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .ok()?
            .ok()?
            .into_inner();
        for artifact in page.artifacts {
            bindings.insert(artifact.name_tag, content(&artifact.content_id)?);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Some(FinalState {
        node: format!("server node {} (host {host})", host + 1),
        bindings,
    })
}

/// A content id from its 64 hex digits.
fn content(hex: &str) -> Option<Content> {
    data_encoding::HEXLOWER
        .decode(hex.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

fn hex(content: &Content) -> String {
    data_encoding::HEXLOWER.encode(content)
}
