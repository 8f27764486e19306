//! `shoal server status|join|leave|backup|restore`: gRPC calls to the control plane's
//! `ClusterService`, printed as text or as the API's proto3 JSON.
//!
//! A backup file is the replicated state as one snapshot (canonical bencode, the form the
//! server nodes' own Raft snapshots carry), written atomically: to a temporary file beside
//! it, fsynced, then renamed.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use shoal_api::v1;
use shoal_api::v1::cluster_service_client::ClusterServiceClient;

use crate::cli::{ServerClient, ServerCommand};
use crate::client::{Transport, control_plane, failed, runtime};
use crate::output::{json_value, line, status};

const WHAT: &str = "control plane";

/// The largest backup read or sent (the API's message limit).
const MAX_BACKUP: usize = 64 << 20;

fn client(to: &ServerClient) -> anyhow::Result<ClusterServiceClient<Transport>> {
    Ok(
        ClusterServiceClient::new(control_plane(&to.server.url, &to.client)?)
            .max_decoding_message_size(MAX_BACKUP)
            .max_encoding_message_size(MAX_BACKUP),
    )
}

/// Runs one `shoal server` subcommand.
pub fn run(command: ServerCommand) -> anyhow::Result<()> {
    match command {
        ServerCommand::Status(to) => {
            let answer = call(&to, |mut c| async move {
                c.get_cluster_status(v1::GetClusterStatusRequest {}).await
            })?;
            print_status(&to, &answer)
        }
        ServerCommand::Join(args) => {
            let request = v1::AddServerRequest {
                id: args.id,
                address: args.address.clone(),
            };
            let answer = call(&args.to, |mut c| async move { c.add_server(request).await })?;
            if !args.to.client.json {
                status(&format!(
                    "server node {} at {} joined the cluster",
                    args.id, args.address
                ));
            }
            print_status(&args.to, &answer)
        }
        ServerCommand::Leave(args) => {
            let request = v1::RemoveServerRequest { id: args.id };
            let answer = call(
                &args.to,
                |mut c| async move { c.remove_server(request).await },
            )?;
            if !args.to.client.json {
                status(&format!(
                    "server node {} left the cluster; its id is not used again",
                    args.id
                ));
            }
            print_status(&args.to, &answer)
        }
        ServerCommand::Backup(args) => {
            let answer = call(&args.to, |mut c| async move {
                c.export_snapshot(v1::ExportSnapshotRequest {}).await
            })?;
            write_atomically(&args.file, &answer.snapshot)?;
            if args.to.client.json {
                let mut summary = answer;
                summary.snapshot.clear();
                return json_value(&summary);
            }
            line(&format!(
                "wrote {} ({} bytes): {} artifacts, {} nodes, {} placements, {} policies, {} credentials",
                args.file.display(),
                answer.snapshot.len(),
                answer.artifacts,
                answer.nodes,
                answer.placements,
                answer.policies,
                answer.credentials
            ));
            Ok(())
        }
        ServerCommand::Restore(args) => {
            let snapshot = std::fs::read(&args.file)
                .with_context(|| format!("cannot read the backup {}", args.file.display()))?;
            if snapshot.len() > MAX_BACKUP {
                anyhow::bail!(
                    "the backup {} is {} bytes, over the {MAX_BACKUP}-byte limit",
                    args.file.display(),
                    snapshot.len()
                );
            }
            let request = v1::ImportSnapshotRequest { snapshot };
            let answer = call(
                &args.to,
                |mut c| async move { c.import_snapshot(request).await },
            )?;
            if args.to.client.json {
                return json_value(&answer);
            }
            line(&format!(
                "restored {}: {} records written, {} already present",
                args.file.display(),
                answer.written,
                answer.unchanged
            ));
            for conflict in &answer.conflicts {
                line(&format!("  kept as it is: {conflict}"));
            }
            Ok(())
        }
    }
}

/// Calls the cluster service at `to` and returns the answer, or the error explained.
fn call<R, F, Fut>(to: &ServerClient, call: F) -> anyhow::Result<R>
where
    F: FnOnce(ClusterServiceClient<Transport>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let url = &to.server.url;
    runtime()?.block_on(async {
        call(client(to)?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(&s, url, WHAT))
    })
}

fn print_status(to: &ServerClient, answer: &v1::ClusterStatus) -> anyhow::Result<()> {
    if to.client.json {
        return json_value(answer);
    }
    if !answer.replicated {
        line("this control plane runs on one node, without replication");
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    line(&format!(
        "node {}: leader {}, term {}, commit index {}, applied {}, last log {}, snapshot {}",
        answer.node_id,
        answer
            .leader_id
            .map_or_else(|| "unknown (no quorum?)".to_owned(), |l| l.to_string()),
        answer.term,
        opt(answer.commit_index),
        opt(answer.applied_index),
        opt(answer.last_log_index),
        opt(answer.snapshot_index),
    ));
    line(&format!(
        "{:<6} {:<24} {:<8} {:<7} {:>9} {:>6}",
        "ID", "ADDRESS", "ROLE", "LEADER", "MATCHED", "LAG"
    ));
    for m in &answer.members {
        line(&format!(
            "{:<6} {:<24} {:<8} {:<7} {:>9} {:>6}",
            m.id,
            m.address,
            m.role,
            if m.leader { "yes" } else { "" },
            opt(m.matched_index),
            opt(m.lag)
        ));
    }
    if answer.leader_id != Some(answer.node_id) {
        line("(matched index and lag are known to the leader only: ask it for them)");
    }
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir
        .unwrap_or_else(|| Path::new("."))
        .join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
