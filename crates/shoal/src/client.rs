//! The client commands (`publish`, `ls`, `info`, `get`, `rm`, `status`, `nodes`): gRPC calls
//! to the local agent (or, for `nodes`, the control plane), printed as text or as the API's
//! proto3 JSON with `--json`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_api::v1::agent_service_client::AgentServiceClient;
use shoal_api::v1::artifact_service_client::ArtifactServiceClient;
use shoal_api::v1::node_service_client::NodeServiceClient;
use shoal_api::v1::retrieve_progress::Phase;
use shoal_api::{ApiError, ErrorCode, v1};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::cli::{
    ClientArgs, GetArgs, InfoArgs, LsArgs, NodesArgs, PublishArgs, RmArgs, StatusArgs,
};
use crate::output::{json_value, line};
use crate::units::format_size;

/// A failed client call, with the exit code its error code maps to.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallFailed(pub ApiError);

impl CallFailed {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self.0.code.grpc_code() {
            tonic::Code::NotFound => 3,
            tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition => 4,
            tonic::Code::Unavailable => 5,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => 6,
            _ => 1,
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Adds `Authorization: Bearer TOKEN` to every call, when there is a token.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the agent or the control plane that presents the caller's token.
pub(crate) type Transport = InterceptedService<Channel, Bearer>;

/// A channel to the control plane at `server`, presenting the token `client` names; every
/// call gives up after `--timeout` seconds.
pub(crate) fn control_plane(server: &str, client: &ClientArgs) -> anyhow::Result<Transport> {
    let endpoint =
        endpoint(server, "control plane")?.timeout(std::time::Duration::from_secs(client.timeout));
    intercepted(endpoint, client.token()?.as_deref())
}

/// A lazily connecting channel to `url` (the `what`, for messages) that presents `token`. No
/// call deadline: the agent's calls (a publish hashing a large file) may rightly take long.
pub(crate) fn channel(url: &str, what: &str, token: Option<&str>) -> anyhow::Result<Transport> {
    intercepted(endpoint(url, what)?, token)
}

fn endpoint(url: &str, what: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a valid {what} URL"))?
        .connect_timeout(std::time::Duration::from_secs(5)))
}

fn intercepted(endpoint: Endpoint, token: Option<&str>) -> anyhow::Result<Transport> {
    let channel = endpoint.connect_lazy();
    let bearer = token
        .map(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>())
        .transpose()
        .map_err(|_| {
            anyhow::anyhow!(
                "the token holds characters a header cannot carry; check --token / SHOAL_TOKEN"
            )
        })?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}

/// Turns a gRPC status into a typed failure; a transport failure says which service is down.
pub(crate) fn failed(status: &tonic::Status, url: &str, what: &str) -> anyhow::Error {
    let e = ApiError::from_status(status);
    // tonic reports its own call deadline as CANCELLED with TimeoutExpired's text.
    let timed_out = status.code() == tonic::Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string();
    let e = if timed_out {
        ApiError::new(
            ErrorCode::ControlPlaneUnavailable,
            format!(
                "the {what} at {url} did not answer in time (--timeout); the server node may be \
                 stalled, overloaded or cut off from the others. Try another server node, or \
                 check it with `shoal server status`. A change asked for may or may not have been made."
            ),
        )
    } else if matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && !status.metadata().contains_key("grpc-status-details-bin")
    {
        // No ErrorInfo: the call never reached a Shoal service (a refused connection, a
        // timeout), so say where we tried; a Shoal error keeps its own message.
        let hint = if what == "agent" {
            "`shoal agent`, or set --agent / SHOAL_AGENT"
        } else {
            "`shoal server`, or an agent without --control-plane; or set --server / SHOAL_SERVER"
        };
        ApiError::new(
            ErrorCode::ControlPlaneUnavailable,
            format!(
                "cannot reach the {what} at {url} ({}); is it running? ({hint})",
                status.message()
            ),
        )
    } else {
        e
    };
    CallFailed(e).into()
}

/// Entries per page when a command lists everything (the API's maximum).
pub(crate) const PAGE_SIZE: u32 = 1000;

/// Every entry of a paginated list: `fetch(page_token)` returns one page's entries and the
/// next page's token, empty after the last page.
pub(crate) async fn every_page<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (entries, next) = fetch(token).await?;
        out.extend(entries);
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

fn reference(text: &str) -> anyhow::Result<v1::ArtifactRef> {
    use v1::artifact_ref::Kind;
    let parsed: shoal_control::ArtifactRef =
        text.parse().map_err(|e: shoal_control::ArtifactRefError| {
            CallFailed(ApiError::new(ErrorCode::InvalidRef, e.to_string()))
        })?;
    let kind = match parsed {
        shoal_control::ArtifactRef::NameTag(n) => Kind::NameTag(n.to_string()),
        shoal_control::ArtifactRef::ContentId(c) => Kind::ContentId(c.as_str().to_owned()),
        shoal_control::ArtifactRef::Magnet(m) => Kind::Magnet(m),
        shoal_control::ArtifactRef::TorrentUrl(u) => Kind::TorrentUrl(u),
        shoal_control::ArtifactRef::TorrentPath(p) => {
            Kind::Torrent(std::fs::read(&p).with_context(|| format!("cannot read {p}"))?)
        }
    };
    Ok(v1::ArtifactRef { kind: Some(kind) })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// `shoal publish`
pub fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let path = absolute(&args.path)?;
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let request = v1::PublishRequest {
        path: path.display().to_string(),
        name_tag: args.name,
        options: Some(v1::TorrentOptions {
            piece_length: args
                .piece_length
                .map_or(0, |p| u32::try_from(p).unwrap_or(u32::MAX)),
            web_seeds: Vec::new(),
        }),
    };
    let response = runtime()?.block_on(async {
        ArtifactServiceClient::new(channel(&agent, "agent", token.as_deref())?)
            .publish(request)
            .await
            .map_err(|s| failed(&s, &agent, "agent"))
    })?;
    let response = response.into_inner();
    if json {
        return json_value(&response);
    }
    let artifact = response.artifact.unwrap_or_default();
    line(&format!(
        "{} {} -> {} ({}); seeding from this agent",
        if response.already_bound {
            "already published:"
        } else {
            "published"
        },
        artifact.name_tag,
        &artifact.content_id,
        format_size(artifact.size)
    ));
    Ok(())
}

/// `shoal ls`
pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let artifacts = runtime()?.block_on(async {
        let client = ArtifactServiceClient::new(channel(&agent, "agent", token.as_deref())?);
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::ListArtifactsRequest {
                prefix: args.prefix.clone(),
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.list_artifacts(request).await?.into_inner();
                Ok((page.artifacts, page.next_page_token))
            }
        })
        .await
        .map_err(|s| failed(&s, &agent, "agent"))
    })?;
    if json {
        return json_value(&v1::ListArtifactsResponse {
            artifacts,
            next_page_token: String::new(),
        });
    }
    if artifacts.is_empty() {
        line("no artifacts (publish one with `shoal publish PATH --name NAME:TAG`)");
    }
    for a in artifacts {
        line(&format!(
            "{:<40} {}  {:>10}  {}",
            a.name_tag,
            a.content_id.get(..12).unwrap_or(&a.content_id),
            format_size(a.size),
            a.created_by
        ));
    }
    Ok(())
}

/// `shoal info`
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let request = v1::GetArtifactRequest {
        r#ref: Some(reference(&args.reference)?),
        include_torrent: args.torrent.is_some(),
    };
    let artifact = runtime()?.block_on(async {
        ArtifactServiceClient::new(channel(&agent, "agent", token.as_deref())?)
            .get_artifact(request)
            .await
            .map_err(|s| failed(&s, &agent, "agent"))
    })?;
    let mut artifact = artifact.into_inner();
    if let Some(path) = &args.torrent {
        std::fs::write(path, &artifact.torrent)
            .with_context(|| format!("cannot write {}", path.display()))?;
        artifact.torrent.clear();
    }
    if json {
        return json_value(&artifact);
    }
    line(&format!(
        "name:        {}",
        if artifact.name_tag.is_empty() {
            "(not in the catalog)"
        } else {
            &artifact.name_tag
        }
    ));
    line(&format!("content id:  {}", artifact.content_id));
    if !artifact.info_hash_v1.is_empty() {
        line(&format!("v1 hash:     {}", artifact.info_hash_v1));
    }
    line(&format!(
        "size:        {} ({} bytes), pieces of {}",
        format_size(artifact.size),
        artifact.size,
        format_size(u64::from(artifact.piece_length))
    ));
    if !artifact.created_by.is_empty() {
        line(&format!("published by {}", artifact.created_by));
    }
    line(&format!("magnet:      {}", artifact.magnet));
    for f in &artifact.files {
        line(&format!("  {:>10}  {}", format_size(f.size), f.path));
    }
    if let Some(path) = &args.torrent {
        line(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// `shoal get`
pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let destination = absolute(&args.output)?;
    let request = v1::RetrieveRequest {
        r#ref: Some(reference(&args.reference)?),
        destination: destination.display().to_string(),
        overwrite: args.overwrite,
    };
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let last = runtime()?.block_on(async {
        let mut stream = ArtifactServiceClient::new(channel(&agent, "agent", token.as_deref())?)
            .retrieve(request)
            .await
            .map_err(|s| failed(&s, &agent, "agent"))?
            .into_inner();
        let mut last = v1::RetrieveProgress::default();
        let mut reported = std::time::Instant::now();
        while let Some(item) = stream.next().await {
            let p = item.map_err(|s| failed(&s, &agent, "agent"))?;
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_verified);
            bar.set_message(peers(p.peers));
            // A large copy after 100 % would otherwise look like a hang.
            if p.phase == Phase::Materializing as i32 && last.phase != p.phase && !json {
                bar.set_message("every byte verified; copying into place");
                if bar.is_hidden() {
                    crate::output::status(&format!(
                        "every byte verified; copying {} into {}",
                        format_size(p.bytes_total),
                        destination.display()
                    ));
                }
            }
            if bar.is_hidden() && !json && reported.elapsed().as_secs() >= 5 {
                crate::output::status(&format!(
                    "{} of {} verified, {}",
                    format_size(p.bytes_verified),
                    format_size(p.bytes_total),
                    peers(p.peers)
                ));
                reported = std::time::Instant::now();
            }
            last = p;
        }
        Ok::<_, anyhow::Error>(last)
    })?;
    bar.finish_and_clear();
    if last.phase != Phase::Done as i32 {
        anyhow::bail!(
            "the agent ended the retrieve before it was done; `shoal status` shows the download, run the same command again to continue"
        );
    }
    if json {
        return json_value(&last);
    }
    let secs = started.elapsed().as_secs_f64();
    line(&format!(
        "retrieved {} ({}) in {secs:.1}s, every byte verified: {}",
        last.content_id.get(..12).unwrap_or(&last.content_id),
        format_size(last.bytes_total),
        last.path
    ));
    Ok(())
}

/// `shoal rm`
pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let request = v1::RemoveLocalRequest {
        r#ref: Some(reference(&args.reference)?),
    };
    let response = runtime()?.block_on(async {
        ArtifactServiceClient::new(channel(&agent, "agent", token.as_deref())?)
            .remove_local(request)
            .await
            .map_err(|s| failed(&s, &agent, "agent"))
    })?;
    let response = response.into_inner();
    if json {
        return json_value(&response);
    }
    line(&format!(
        "removed the local copy; freed {}",
        format_size(response.bytes_freed)
    ));
    Ok(())
}

/// `shoal status`
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    let ClientArgs { agent, json, .. } = args.client;
    let status = runtime()?.block_on(async {
        AgentServiceClient::new(channel(&agent, "agent", token.as_deref())?)
            .get_status(v1::GetStatusRequest {})
            .await
            .map_err(|s| failed(&s, &agent, "agent"))
    })?;
    let status = status.into_inner();
    if json {
        return json_value(&status);
    }
    let cp = status.control_plane.clone().unwrap_or_default();
    line(&format!(
        "node {} at {}; control plane {} ({})",
        status.node_id,
        status.peer_address,
        cp.endpoint,
        if cp.connected {
            "connected"
        } else {
            "NOT connected: check that it runs and is reachable"
        }
    ));
    if let Some(policy) = &status.policy {
        line(&format!(
            "policy: {}{}",
            crate::policies::describe(&policy.rules.unwrap_or_default()),
            if policy.policies.is_empty() {
                String::new()
            } else {
                format!(" (from {})", policy.policies.join(", "))
            }
        ));
    }
    let disk = status.disk.unwrap_or_default();
    line(&format!(
        "store {} used, {} free; up {}/s, down {}/s",
        format_size(disk.used),
        format_size(disk.free),
        format_size(status.upload_rate),
        format_size(status.download_rate)
    ));
    for t in &status.torrents {
        let state = v1::TorrentState::try_from(t.state).map_or("unknown", |s| match s {
            v1::TorrentState::Checking => "checking",
            v1::TorrentState::Downloading => "downloading",
            v1::TorrentState::Seeding => "seeding",
            v1::TorrentState::Failed => "FAILED",
            v1::TorrentState::Unspecified => "unknown",
        });
        line(&format!(
            "  {:<11} {} {:<32} {:>10}/{:<10} {}{}{}",
            state,
            t.content_id.get(..12).unwrap_or(&t.content_id),
            t.name_tag,
            format_size(t.bytes_verified),
            format_size(t.bytes_total),
            peers(t.peers),
            if t.banned_peers > 0 {
                format!(", {} banned", t.banned_peers)
            } else {
                String::new()
            },
            if t.error.is_empty() {
                String::new()
            } else {
                format!(": {}", t.error)
            }
        ));
    }
    Ok(())
}

/// `shoal nodes`
pub fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let json = args.client.json;
    let server = args.server.url;
    let nodes = runtime()?.block_on(async {
        let client = NodeServiceClient::new(control_plane(&server, &args.client)?);
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::ListNodesRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.list_nodes(request).await?.into_inner();
                Ok((page.nodes, page.next_page_token))
            }
        })
        .await
        .map_err(|s| failed(&s, &server, "control plane"))
    })?;
    if json {
        return json_value(&v1::ListNodesResponse {
            nodes,
            next_page_token: String::new(),
        });
    }
    for n in nodes {
        let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        line(&format!(
            "{:<24} {:<22} {:<5} {}",
            n.node_id,
            n.peer_address,
            if n.alive { "up" } else { "DOWN" },
            labels.join(",")
        ));
    }
    Ok(())
}

/// "1 peer", "3 peers".
fn peers(n: u32) -> String {
    if n == 1 {
        "1 peer".to_owned()
    } else {
        format!("{n} peers")
    }
}
