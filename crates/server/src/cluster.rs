//! The control plane's own cluster, as operators see it: the bootstrap a server node runs in
//! the background when it starts (initialize the cluster, create the first admin credential,
//! choose the page-token key), and `shoal.v1.ClusterService` (status, adding and removing
//! server nodes, exporting and importing the replicated state for backups).
//!
//! Membership changes run on the Raft leader; a member that is not the leader passes the call
//! on to the leader's API (the same port serves replication and the API), with the caller's
//! credential.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use shoal_api::v1::cluster_service_client::ClusterServiceClient;
use shoal_api::v1::cluster_service_server::ClusterService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{Action, Command, ControlState, Outcome};
use shoal_raft::{Error as RaftError, Role};
use tonic::{Request, Response, Status};

use crate::control_plane::{ControlPlane, PAGE_TOKEN_SECRET, random_secret};
use crate::error::ServerError;

/// How long the bootstrap waits between attempts while members are not up yet.
const RETRY: Duration = Duration::from_secs(1);

/// Brings a new cluster up, once: the member with the smallest id among `initial_members`
/// initializes it as soon as every member answers, then creates the bootstrap admin
/// credential (its token in this node's data directory). Every member then makes sure the
/// page-token key is chosen. Ends when done, or when the control plane is dropped.
pub(crate) async fn bootstrap(
    control: Weak<ControlPlane>,
    id: u64,
    initial_members: BTreeMap<u64, String>,
) {
    let initializer = initial_members.keys().next() == Some(&id);
    if initializer {
        let mut waited = 0u32;
        loop {
            let Some(cp) = control.upgrade() else { return };
            let Some(raft) = cp.catalog.raft() else {
                return;
            };
            match raft.initialize(initial_members.clone()).await {
                Ok(()) => {
                    tracing::info!(members = ?initial_members, "initialized the control plane's cluster");
                    break;
                }
                Err(RaftError::AlreadyInitialized { .. }) => break,
                Err(e) => {
                    // Every few attempts, so the log says what it waits for without flooding.
                    if waited.is_multiple_of(10) {
                        tracing::info!("waiting for every initial member to answer: {e}");
                    }
                    waited += 1;
                }
            }
            drop(cp);
            tokio::time::sleep(RETRY).await;
        }
    }
    // The key page tokens are sealed with: chosen once, by whichever member gets there first.
    loop {
        let Some(cp) = control.upgrade() else { return };
        let done = match cp
            .catalog
            .execute(&Command::InitSetting {
                key: PAGE_TOKEN_SECRET.to_owned(),
                value: random_secret(),
            })
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("choosing the page-token key: {e}");
                false
            }
        };
        if done {
            break;
        }
        drop(cp);
        tokio::time::sleep(RETRY).await;
    }
    if !initializer {
        return;
    }
    loop {
        let Some(cp) = control.upgrade() else { return };
        match bootstrap_admin(&cp).await {
            Ok(()) => return,
            Err(e) => tracing::warn!("creating the bootstrap admin credential: {e}; retrying"),
        }
        drop(cp);
        tokio::time::sleep(RETRY).await;
    }
}

/// Creates the `bootstrap` admin credential if the cluster holds no credential.
async fn bootstrap_admin(control: &ControlPlane) -> Result<(), ServerError> {
    if !control.catalog.credentials().await?.is_empty() {
        return Ok(());
    }
    let (record, path) = crate::credentials::bootstrap_record(control.data_dir())?;
    let outcome = control
        .catalog
        .execute(&Command::IssueCredential {
            record,
            only_if_none: true,
        })
        .await;
    let issued = match outcome.and_then(crate::catalog::issued) {
        Ok(issued) => issued,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    control.bootstrapped(issued, path);
    Ok(())
}

impl ControlPlane {
    /// This node's view of its cluster, in the API's form.
    async fn cluster_status(&self) -> Result<v1::ClusterStatus, ApiError> {
        let Some(raft) = self.catalog.raft() else {
            return Ok(v1::ClusterStatus::default());
        };
        let status = raft.status().await.map_err(ServerError::from)?;
        Ok(v1::ClusterStatus {
            replicated: true,
            node_id: status.id,
            leader_id: status.leader,
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_log_index: status.last_log_index,
            snapshot_index: status.snapshot_index,
            members: status
                .members
                .into_iter()
                .map(|m| v1::ClusterMember {
                    id: m.id,
                    address: m.addr,
                    role: match m.role {
                        Role::Voter => "voter",
                        Role::Learner => "learner",
                    }
                    .to_owned(),
                    leader: status.leader == Some(m.id),
                    matched_index: m.matched_index,
                    lag: m.lag,
                })
                .collect(),
        })
    }

    /// The replicated Raft member, or the error a single-node control plane answers.
    fn replicated(&self) -> Result<&shoal_raft::RaftNode<crate::catalog::Replica>, ApiError> {
        self.catalog.raft().ok_or_else(|| {
            ApiError::new(
                ErrorCode::ClusterChangeRefused,
                "this control plane runs on one node, without replication; start every server \
                 node with --node-id and --cluster-secret-file to run a cluster",
            )
        })
    }
}

/// Calls `call` on the leader's API, presenting `request`'s credential: a membership change
/// asked of a follower.
async fn on_leader<T, R, F, Fut>(
    error: &RaftError,
    request: &Request<T>,
    message: T,
    call: F,
) -> Option<Result<Response<R>, Status>>
where
    T: Clone,
    F: FnOnce(ClusterServiceClient<tonic::transport::Channel>, Request<T>) -> Fut,
    Fut: Future<Output = Result<Response<R>, Status>>,
{
    let RaftError::NotLeader {
        leader: Some((_, addr)),
        ..
    } = error
    else {
        return None;
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(Duration::from_secs(3)),
        Err(e) => return Some(Err(Status::internal(format!("leader address {addr}: {e}")))),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Some(Err(ApiError::new(
                ErrorCode::ControlPlaneUnavailable,
                format!("the leader at {addr} cannot be reached: {e}; try again"),
            )
            .into()));
        }
    };
    let mut forwarded = Request::new(message);
    if let Some(auth) = request.metadata().get("authorization") {
        forwarded
            .metadata_mut()
            .insert("authorization", auth.clone());
    }
    Some(call(ClusterServiceClient::new(channel), forwarded).await)
}

#[tonic::async_trait]
impl ClusterService for ControlPlane {
    async fn get_cluster_status(
        &self,
        request: Request<v1::GetClusterStatusRequest>,
    ) -> Result<Response<v1::ClusterStatus>, Status> {
        self.authorize(&request, Action::ManageCluster)?;
        Ok(Response::new(self.cluster_status().await?))
    }

    async fn add_server(
        &self,
        request: Request<v1::AddServerRequest>,
    ) -> Result<Response<v1::ClusterStatus>, Status> {
        let by = self.authorize(&request, Action::ManageCluster)?.name;
        let raft = self.replicated()?;
        let req = request.get_ref().clone();
        if req.address.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "address: give the new server node's host:port (its API port)",
            )
            .into());
        }
        match raft.add_member(req.id, req.address.clone()).await {
            Ok(()) => {
                tracing::info!(id = req.id, addr = %req.address, by, "server node added to the cluster");
                Ok(Response::new(self.cluster_status().await?))
            }
            Err(e) => {
                let forwarded = on_leader(&e, &request, req, |mut client, r| async move {
                    client.add_server(r).await
                })
                .await;
                forwarded.unwrap_or_else(|| Err(ApiError::from(ServerError::from(e)).into()))
            }
        }
    }

    async fn remove_server(
        &self,
        request: Request<v1::RemoveServerRequest>,
    ) -> Result<Response<v1::ClusterStatus>, Status> {
        let by = self.authorize(&request, Action::ManageCluster)?.name;
        let raft = self.replicated()?;
        let req = *request.get_ref();
        match raft.remove_member(req.id).await {
            Ok(()) => {
                tracing::info!(id = req.id, by, "server node removed from the cluster");
                Ok(Response::new(self.cluster_status().await?))
            }
            Err(e) => {
                let forwarded = on_leader(&e, &request, req, |mut client, r| async move {
                    client.remove_server(r).await
                })
                .await;
                forwarded.unwrap_or_else(|| Err(ApiError::from(ServerError::from(e)).into()))
            }
        }
    }

    async fn export_snapshot(
        &self,
        request: Request<v1::ExportSnapshotRequest>,
    ) -> Result<Response<v1::ExportSnapshotResponse>, Status> {
        self.authorize(&request, Action::ManageCluster)?;
        let response = self
            .catalog
            .read(|s| v1::ExportSnapshotResponse {
                snapshot: s.encode(),
                artifacts: s.artifacts().len() as u64,
                nodes: s.nodes().len() as u64,
                placements: s.placements().len() as u64,
                policies: s.policies().len() as u64,
                credentials: s.credentials().len() as u64,
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn import_snapshot(
        &self,
        request: Request<v1::ImportSnapshotRequest>,
    ) -> Result<Response<v1::ImportSnapshotResponse>, Status> {
        let by = self.authorize(&request, Action::ManageCluster)?.name;
        let snapshot = ControlState::decode(&request.into_inner().snapshot).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("the snapshot does not read: {e}; give a file `shoal server backup` wrote"),
            )
        })?;
        let mut response = v1::ImportSnapshotResponse::default();
        for command in replay(&snapshot) {
            if self.catalog.read(|state| held(state, &command)).await? {
                response.unchanged += 1;
                continue;
            }
            let outcome = self.catalog.execute(&command).await?;
            match outcome {
                Outcome::Bound { already: true, .. }
                | Outcome::Issued(false)
                | Outcome::CredentialNameTaken(_)
                | Outcome::CredentialIdTaken => response.unchanged += 1,
                Outcome::BindRefused(e) => response.conflicts.push(e.to_string()),
                _ => response.written += 1,
            }
        }
        tracing::info!(
            by,
            written = response.written,
            unchanged = response.unchanged,
            conflicts = response.conflicts.len(),
            "snapshot imported"
        );
        Ok(Response::new(response))
    }
}

/// Whether `state` holds exactly the node, placement or policy `command` would store.
fn held(state: &ControlState, command: &Command) -> bool {
    match command {
        Command::PutNode(node) => state.node(node.id.as_str()) == Some(node),
        Command::PutPlacement(placement) => {
            state.placement(placement.name.as_str()) == Some(placement)
        }
        Command::PutPolicy(policy) => state.policy(policy.name.as_str()) == Some(policy),
        _ => false,
    }
}

/// The commands that write `snapshot`'s records into a control plane: artifacts, nodes,
/// placements, policies, then credentials (the valid ones; each refused if its name is taken).
fn replay(snapshot: &ControlState) -> Vec<Command> {
    let mut commands: Vec<Command> = Vec::new();
    commands.extend(snapshot.artifacts().cloned().map(Command::Bind));
    commands.extend(snapshot.nodes().cloned().map(Command::PutNode));
    commands.extend(snapshot.placements().cloned().map(Command::PutPlacement));
    commands.extend(snapshot.policies().cloned().map(Command::PutPolicy));
    commands.extend(
        snapshot
            .credentials()
            .filter(|c| c.revoked_ms.is_none())
            .cloned()
            .map(|record| Command::IssueCredential {
                record,
                only_if_none: false,
            }),
    );
    commands
}
