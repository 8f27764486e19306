//! The agent's public services, `shoal.v1.ArtifactService` and `shoal.v1.AgentService`,
//! implemented once for gRPC and REST alike.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use shoal_api::router::{PresentedToken, Principal};
use shoal_api::v1::agent_service_server::AgentService;
use shoal_api::v1::artifact_service_server::ArtifactService;
use shoal_api::v1::retrieve_progress::Phase;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{ArtifactRecord, ArtifactRef, NameTag, Token};
use shoal_metainfo::create::CreateOptions;
use shoal_metainfo::{MetaVersion, Torrent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Agent;
use crate::store::copy_tree;
use crate::torrents::{RunState, content_id};

/// Numbers the working directories of publishes under way.
static NEXT_PUBLISH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The largest `.torrent` fetched from a URL: 64 MiB.
const MAX_TORRENT_BYTES: usize = 64 << 20;

type ProgressStream = Pin<Box<dyn Stream<Item = Result<v1::RetrieveProgress, Status>> + Send>>;

#[tonic::async_trait]
impl ArtifactService for Agent {
    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let principal = Principal::of(&request);
        // A caller's own control-plane credential is passed on with the bind; any other bearer
        // token (one of this agent's `api_tokens`) means nothing to the control plane.
        let forwarded = PresentedToken::of(&request).filter(|t| Token::parse(t).is_ok());
        let req = request.into_inner();
        let name_tag: NameTag =
            req.name_tag
                .parse()
                .map_err(|e: shoal_control::NameTagError| {
                    ApiError::new(ErrorCode::InvalidNameTag, e.to_string())
                })?;
        let source = self.allowed_path(&req.path, "publish")?;
        if !source.exists() {
            return Err(ApiError::new(
                ErrorCode::PathNotFound,
                format!("{} does not exist on the agent's host", source.display()),
            )
            .into());
        }
        let options = req.options.unwrap_or_default();
        let announce = self.announce_url();
        let data = self.torrents.data().clone();
        // Copy first, then hash the copy: what is seeded is exactly what was hashed, whatever
        // happens to the source afterwards.
        let made = tokio::task::spawn_blocking(move || -> Result<(Torrent, PathBuf), ApiError> {
            let name = source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidArgument,
                        "publish needs a file or directory, not /",
                    )
                })?;
            let work = data.staging().join(format!(
                "publish-{}-{}",
                std::process::id(),
                NEXT_PUBLISH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let copy = work.join(&name);
            copy_tree(&source, &copy)
                .map_err(|e| io_error("copying the artifact into the store", &source, &e))?;
            let scanned = shoal_create::scan(&copy).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("cannot publish {}: {e}", source.display()),
                )
            })?;
            let create = CreateOptions {
                version: MetaVersion::Hybrid,
                piece_length: (options.piece_length != 0)
                    .then_some(u64::from(options.piece_length)),
                private: true,
                trackers: vec![vec![announce]],
                web_seeds: options.web_seeds,
                comment: None,
                created_by: Some(concat!("shoal/", env!("CARGO_PKG_VERSION")).to_owned()),
                creation_date: None,
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let torrent =
                shoal_create::create(&scanned, create, None, threads, &|_| {}).map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("cannot publish {}: {e}", source.display()),
                    )
                })?;
            Ok((torrent, work))
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the publishing task failed"))??;
        let (torrent, work) = made;
        let record = ArtifactRecord::from_torrent(
            name_tag.clone(),
            &torrent,
            &principal,
            shoal_server::now_ms(),
        )
        .map_err(|e| ApiError::new(ErrorCode::InvalidTorrent, e.to_string()));
        let bound = match record {
            Ok(record) => {
                self.control
                    .bind(
                        v1::BindArtifactRequest {
                            name_tag: name_tag.to_string(),
                            info: record.info,
                            piece_layers: record.piece_layers,
                        },
                        &principal,
                        forwarded.as_deref(),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let bound = match bound {
            Ok(bound) => bound,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e.into());
            }
        };
        // Move the hashed copy into the store, unless the store has this content already.
        let id = content_id(&torrent);
        let data = self.torrents.data().clone();
        let info_torrent = torrent.clone();
        let id_move = id.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            let info = info_torrent.info();
            if !data.is_complete(&id_move, info) {
                let target = data.data_path(&id_move, info);
                let _ = std::fs::remove_dir_all(data.store_dir(&id_move));
                std::fs::create_dir_all(data.store_dir(&id_move))
                    .map_err(|e| io_error("creating the store", &target, &e))?;
                std::fs::rename(work.join(info.name.as_str()), &target)
                    .map_err(|e| io_error("moving the artifact into the store", &target, &e))?;
                data.mark_complete(&id_move, info)
                    .map_err(|e| io_error("recording the artifact", &target, &e))?;
            }
            let _ = std::fs::remove_dir_all(&work);
            Ok(())
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the publishing task failed"))??;
        self.torrents
            .start(Arc::new(torrent), Some(name_tag.to_string()))
            .map_err(|e| storage_error(&e))?;
        tracing::info!(name_tag = %name_tag, content_id = %id, already_bound = bound.already_bound, "published");
        Ok(Response::new(v1::PublishResponse {
            artifact: bound.artifact,
            already_bound: bound.already_bound,
        }))
    }

    async fn list_artifacts(
        &self,
        request: Request<v1::ListArtifactsRequest>,
    ) -> Result<Response<v1::ListArtifactsResponse>, Status> {
        Ok(Response::new(
            self.control.list(request.into_inner()).await?,
        ))
    }

    async fn get_artifact(
        &self,
        request: Request<v1::GetArtifactRequest>,
    ) -> Result<Response<v1::Artifact>, Status> {
        let req = request.into_inner();
        let (torrent, name_tag) = self.resolve(req.r#ref.as_ref()).await?;
        let id = content_id(&torrent);
        // The catalog's answer when it knows the content; the torrent's own description
        // otherwise.
        if torrent.info_hashes().v2().is_some() {
            let lookup = v1::GetArtifactRequest {
                r#ref: Some(v1::ArtifactRef {
                    kind: Some(match &name_tag {
                        Some(n) => v1::artifact_ref::Kind::NameTag(n.clone()),
                        None => v1::artifact_ref::Kind::ContentId(id.clone()),
                    }),
                }),
                include_torrent: req.include_torrent,
            };
            match self.control.get(lookup).await {
                Ok(artifact) => return Ok(Response::new(artifact)),
                Err(e) if e.code == ErrorCode::ArtifactNotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Response::new(describe(&torrent, req.include_torrent)))
    }

    type RetrieveStream = ProgressStream;

    async fn retrieve(
        &self,
        request: Request<v1::RetrieveRequest>,
    ) -> Result<Response<Self::RetrieveStream>, Status> {
        let req = request.into_inner();
        let destination = self.allowed_path(&req.destination, "retrieve")?;
        if destination.exists() && !req.overwrite {
            return Err(ApiError::new(
                ErrorCode::DestinationExists,
                format!(
                    "{} exists; choose another destination or ask to overwrite it",
                    destination.display()
                ),
            )
            .with("destination", destination.display().to_string())
            .into());
        }
        let (torrent, name_tag) = self.resolve(req.r#ref.as_ref()).await?;
        let id = self
            .torrents
            .start(Arc::new(torrent), name_tag)
            .map_err(|e| storage_error(&e))?;
        let Some(view) = self.torrents.get(&id) else {
            return Err(
                ApiError::new(ErrorCode::Internal, "the torrent vanished as it started").into(),
            );
        };
        let (tx, rx) = mpsc::channel(16);
        let torrents = self.torrents.clone();
        // Held until the copy is in place: the quota does not evict what is being copied.
        let in_use = torrents.uses().hold(&id);
        tokio::spawn(async move {
            let _in_use = in_use;
            let result = follow(view, &tx, &torrents).await;
            let result = match result {
                Ok((total, source)) => {
                    let _ = tx
                        .send(Ok(progress(
                            Phase::Materializing,
                            &id,
                            total,
                            total,
                            0,
                            0,
                            "",
                        )))
                        .await;
                    let dest = destination.clone();
                    let copied = tokio::task::spawn_blocking(move || {
                        if dest.exists() {
                            let removed = if dest.is_dir() {
                                std::fs::remove_dir_all(&dest)
                            } else {
                                std::fs::remove_file(&dest)
                            };
                            removed
                                .map_err(|e| io_error("replacing the destination", &dest, &e))?;
                        }
                        copy_tree(&source, &dest)
                            .map_err(|e| io_error("copying to the destination", &dest, &e))
                    })
                    .await;
                    match copied {
                        Ok(Ok(())) => Ok(progress(
                            Phase::Done,
                            &id,
                            total,
                            total,
                            0,
                            0,
                            &destination.display().to_string(),
                        )),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(ApiError::new(ErrorCode::Internal, "the copy task failed")),
                    }
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result.map_err(Status::from)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remove_local(
        &self,
        request: Request<v1::RemoveLocalRequest>,
    ) -> Result<Response<v1::RemoveLocalResponse>, Status> {
        let req = request.into_inner();
        // A .torrent's bytes are no catalog reference: `resolve` reads them below.
        let reference = match req.r#ref.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(v1::artifact_ref::Kind::Torrent(_)) => None,
            _ => Some(shoal_server::parse_ref(req.r#ref.as_ref())?),
        };
        let id = match &reference {
            Some(ArtifactRef::ContentId(prefix)) => {
                let held: Vec<String> = self
                    .torrents
                    .list()
                    .into_iter()
                    .map(|v| v.id)
                    .filter(|id| id.starts_with(prefix.as_str()))
                    .collect();
                match held.as_slice() {
                    [one] => one.clone(),
                    [] => String::new(),
                    _ => {
                        return Err(ApiError::new(
                            ErrorCode::AmbiguousContentId,
                            format!(
                                "{} starts more than one content id held here; give more digits",
                                prefix.as_str()
                            ),
                        )
                        .into());
                    }
                }
            }
            _ => {
                let (torrent, _) = self.resolve(req.r#ref.as_ref()).await?;
                content_id(&torrent)
            }
        };
        match self.torrents.remove(&id).await {
            Some(bytes_freed) => {
                tracing::info!(content_id = %id, bytes_freed, "local copy removed");
                Ok(Response::new(v1::RemoveLocalResponse { bytes_freed }))
            }
            None => Err(ApiError::new(
                ErrorCode::ArtifactNotFound,
                "this agent holds no copy of that artifact; `shoal status` lists what it holds",
            )
            .into()),
        }
    }
}

#[tonic::async_trait]
impl AgentService for Agent {
    async fn get_status(
        &self,
        _request: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::AgentStatus>, Status> {
        Ok(Response::new(self.status().await))
    }
}

impl Agent {
    /// Checks that `path` is absolute and inside an allowed root.
    fn allowed_path(&self, path: &str, what: &str) -> Result<PathBuf, ApiError> {
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{what} needs an absolute path on the agent's host, not {}",
                    path.display()
                ),
            ));
        }
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(ApiError::new(
                ErrorCode::PathNotAllowed,
                format!("{} contains '..'; give the path without it", path.display()),
            ));
        }
        let roots = &self.config.allowed_roots;
        if !roots.is_empty() && !roots.iter().any(|r| path.starts_with(r)) {
            return Err(ApiError::new(
                ErrorCode::PathNotAllowed,
                format!(
                    "{} is outside the agent's allowed roots ({}); use a path under one of them or add a root to allowed_roots",
                    path.display(),
                    roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            )
            .with("path", path.display().to_string()));
        }
        // A symbolic link under a root may point anywhere: check where the path really leads.
        if !roots.is_empty() {
            let real = real_path(path);
            let inside = roots
                .iter()
                .any(|r| real.starts_with(std::fs::canonicalize(r).unwrap_or_else(|_| r.clone())));
            if !inside {
                return Err(ApiError::new(
                    ErrorCode::PathNotAllowed,
                    format!(
                        "{} leads through a symbolic link to {}, outside the agent's allowed roots; give a path that stays under one of them",
                        path.display(),
                        real.display()
                    ),
                )
                .with("path", path.display().to_string()));
            }
        }
        Ok(path.to_owned())
    }

    /// Finds the torrent a reference names, and its catalog name when it has one.
    pub(crate) async fn resolve(
        &self,
        reference: Option<&v1::ArtifactRef>,
    ) -> Result<(Torrent, Option<String>), ApiError> {
        let invalid = |m: String| ApiError::new(ErrorCode::InvalidTorrent, m);
        if let Some(v1::artifact_ref::Kind::Torrent(bytes)) =
            reference.and_then(|r| r.kind.as_ref())
        {
            let torrent = Torrent::from_bytes(bytes)
                .map_err(|e| invalid(format!("the .torrent is not valid: {e}")))?;
            return Ok((torrent, None));
        }
        let parsed = shoal_server::parse_ref(reference)?;
        let by_catalog = |kind: v1::artifact_ref::Kind| v1::GetArtifactRequest {
            r#ref: Some(v1::ArtifactRef { kind: Some(kind) }),
            include_torrent: true,
        };
        let request = match &parsed {
            ArtifactRef::NameTag(n) => by_catalog(v1::artifact_ref::Kind::NameTag(n.to_string())),
            ArtifactRef::ContentId(p) => {
                by_catalog(v1::artifact_ref::Kind::ContentId(p.as_str().to_owned()))
            }
            ArtifactRef::Magnet(link) => {
                let magnet = shoal_metainfo::Magnet::parse(link).map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidRef,
                        format!("the magnet link is not valid: {e}"),
                    )
                })?;
                let Some(v2) = magnet.info_hashes.v2() else {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRef,
                        "the agent fetches magnet links with a v2 (btmh) hash of a cataloged artifact; this one has only a v1 hash — use its .torrent file instead",
                    ));
                };
                by_catalog(v1::artifact_ref::Kind::ContentId(v2.to_hex()))
            }
            ArtifactRef::TorrentUrl(url) => {
                let bytes = fetch(url).await?;
                let torrent = Torrent::from_bytes(&bytes)
                    .map_err(|e| invalid(format!("{url} is not a valid .torrent: {e}")))?;
                return Ok((torrent, None));
            }
            ArtifactRef::TorrentPath(path) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRef,
                    format!(
                        "{path} is a path: send the .torrent file's bytes (the CLI does this for you)"
                    ),
                ));
            }
        };
        let artifact = self.control.get(request).await?;
        let torrent = Torrent::from_bytes(&artifact.torrent).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("the catalog's torrent is not valid: {e}"),
            )
        })?;
        Ok((
            torrent,
            (!artifact.name_tag.is_empty()).then_some(artifact.name_tag),
        ))
    }
}

/// `path` with every symbolic link in its longest existing prefix resolved: where the file
/// system will read or create it. The part that does not exist yet is appended as given.
fn real_path(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut missing = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Follows a download until it is complete (returns its size and data path) or fails.
async fn follow(
    view: crate::torrents::TorrentView,
    tx: &mpsc::Sender<Result<v1::RetrieveProgress, Status>>,
    torrents: &crate::torrents::Torrents,
) -> Result<(u64, PathBuf), ApiError> {
    let info = view.torrent.info();
    let total = info.total_size();
    let piece = info.piece_length.bytes();
    let updates = view.progress.clone();
    let mut state = view.state.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let p = updates.borrow().clone();
        let s = state.borrow_and_update().clone();
        if let RunState::Failed(why) = s {
            return Err(ApiError::new(
                ErrorCode::TransferFailed,
                format!("the download stopped: {why}"),
            ));
        }
        if p.complete {
            return Ok((total, torrents.data().data_path(&view.id, info)));
        }
        let verified = (u64::from(p.have) * piece).min(total);
        let rates = torrents.get(&view.id).map(|v| v.rates).unwrap_or_default();
        let peers = u32::try_from(p.peers).unwrap_or(u32::MAX);
        if tx
            .send(Ok(progress(
                Phase::Downloading,
                &view.id,
                verified,
                total,
                rates.download,
                peers,
                "",
            )))
            .await
            .is_err()
        {
            // The caller went away; the download goes on.
            return Err(ApiError::new(ErrorCode::Internal, "the caller went away"));
        }
        // Reports twice a second, and at once when the state changes.
        tokio::select! {
            _ = state.changed() => {}
            _ = tick.tick() => {}
        }
    }
}

fn progress(
    phase: Phase,
    id: &str,
    verified: u64,
    total: u64,
    rate: u64,
    peers: u32,
    path: &str,
) -> v1::RetrieveProgress {
    v1::RetrieveProgress {
        phase: phase as i32,
        content_id: id.to_owned(),
        bytes_verified: verified,
        bytes_total: total,
        download_rate: rate,
        peers,
        path: path.to_owned(),
    }
}

/// An artifact described from its torrent alone (content outside the catalog).
fn describe(torrent: &Torrent, include_torrent: bool) -> v1::Artifact {
    let info = torrent.info();
    let hashes = torrent.info_hashes();
    v1::Artifact {
        name_tag: String::new(),
        content_id: content_id(torrent),
        info_hash_v1: hashes.v1().map(|h| h.to_hex()).unwrap_or_default(),
        size: info.total_size(),
        piece_length: u32::try_from(info.piece_length.bytes()).unwrap_or(u32::MAX),
        files: info
            .data_files()
            .map(|f| v1::FileEntry {
                path: f.path.to_string(),
                size: f.length,
                pieces_root: f.pieces_root.map(|r| r.to_hex()).unwrap_or_default(),
            })
            .collect(),
        created_at: None,
        created_by: String::new(),
        magnet: torrent.magnet().to_string(),
        torrent: if include_torrent {
            torrent.to_bytes()
        } else {
            Vec::new()
        },
    }
}

/// Fetches a `.torrent` over HTTP or HTTPS (certificates checked against the system's CA
/// store; `SSL_CERT_FILE` names another bundle), following up to five redirects.
async fn fetch(url: &str) -> Result<Vec<u8>, ApiError> {
    use http_body_util::{BodyExt, Limited};
    const MAX_REDIRECTS: usize = 5;
    let bad = |m: String| ApiError::new(ErrorCode::InvalidRef, m);
    let client = http_client().map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot load the system's CA certificates for {url}: {e}"),
        )
    })?;
    let mut current = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let uri: http::Uri = current
            .parse()
            .map_err(|e| bad(format!("{current} is not a valid URL: {e}")))?;
        let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri.clone()))
            .await
            .map_err(|_| bad(format!("{current} did not answer within 30 s")))?
            .map_err(|e| bad(format!("cannot fetch {current}: {}", error_chain(&e))))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| bad(format!("{current} answered {status} without a Location")))?;
            current = resolve_location(&uri, location);
            continue;
        }
        if !status.is_success() {
            return Err(bad(format!("{current} answered {status}")));
        }
        let body = Limited::new(response.into_body(), MAX_TORRENT_BYTES)
            .collect()
            .await
            .map_err(|e| bad(format!("cannot read {current}: {e}")))?;
        return Ok(body.to_bytes().to_vec());
    }
    Err(bad(format!(
        "{url} redirected more than {MAX_REDIRECTS} times"
    )))
}

/// The HTTP(S) client for `.torrent` URLs, built once: building it reads the CA store.
type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<axum::body::Bytes>,
>;

fn http_client() -> Result<&'static HttpClient, &'static str> {
    static CLIENT: std::sync::OnceLock<Result<HttpClient, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| e.to_string())?
                .https_or_http()
                .enable_http1()
                .build();
            // No idle connections kept: fetches are rare, and a pooled connection would
            // belong to the runtime that opened it.
            Ok(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(https),
            )
        })
        .as_ref()
        .map_err(String::as_str)
}

/// A redirect target: absolute as given, or a path on the same origin.
fn resolve_location(base: &http::Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", http::uri::Authority::as_str);
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// An error and its causes, joined: hyper's client errors say little at the top level
/// ("client error (Connect)") and the reason (a refused connection, a certificate the
/// system does not trust) sits below.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn io_error(action: &str, path: &Path, e: &std::io::Error) -> ApiError {
    let code = match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => ErrorCode::DiskFull,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, format!("{action} ({}) failed: {e}", path.display()))
}

pub(crate) fn storage_error(e: &shoal_storage::StorageError) -> ApiError {
    let code = match e {
        shoal_storage::StorageError::DiskFull { .. } => ErrorCode::DiskFull,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, format!("the agent's store failed: {e}"))
}
