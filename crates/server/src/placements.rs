//! Placements and assignments over the API: `shoal.v1.PlacementService` (admins create, list,
//! read and end placements) and `shoal.v1.AssignmentService` (each agent keeps one stream of
//! what it must hold, and reports its progress back).
//!
//! The decisions are [`shoal_control::PlacementTable`]'s; this module stores placements in the
//! catalog database, wakes assignment streams when anything that decides assignments changes
//! (a placement, a node's labels, a placement's end), and converts to the API's messages.
//!
//! Progress reports are soft state, kept in memory: after a control-plane restart every agent
//! reconnects and reports again, so nothing durable is needed for them.

use std::pin::Pin;
use std::time::Duration;

use shoal_api::v1::assignment_service_server::AssignmentService;
use shoal_api::v1::placement_service_server::PlacementService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{
    Action, ArtifactRef, NodeId, NodeState, Placement, PlacementName, PlacementProgress, Selector,
    page_size,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::control_plane::{ControlPlane, lock, now_ms};
use crate::convert::timestamp;

/// The most artifacts one progress report may carry.
pub const MAX_REPORT_ENTRIES: usize = 1000;

/// How often an agent may report, at least: the control plane aggregates, so finer reports
/// buy nothing and cost CPU at scale.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The stream of one node's assignment sets.
pub type AssignmentStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::AssignmentSet, Status>> + Send>>;

impl ControlPlane {
    /// The assignment set of `node` now, with the rules it is under (empty, with no policy,
    /// for a node that has not registered).
    fn assignment_set(&self, node: &NodeId) -> v1::AssignmentSet {
        let labels = lock(&self.nodes).get(node).map(|r| r.labels.clone());
        let Some(labels) = labels else {
            return v1::AssignmentSet::default();
        };
        let assignments = lock(&self.placements).assignments(&labels, now_ms());
        v1::AssignmentSet {
            policy: Some(self.node_policy(&labels)),
            assignments: assignments
                .into_iter()
                .map(|a| v1::Assignment {
                    content_id: data_encoding::HEXLOWER.encode(&a.content_id),
                    name_tag: a.name_tag.map(|n| n.to_string()).unwrap_or_default(),
                    placements: a.placements.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }

    /// Tells every assignment stream to look again.
    pub(crate) fn assignments_changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }
}

/// The API form of a placement with its totals.
fn placement_message(placement: &Placement, progress: &PlacementProgress) -> v1::Placement {
    let totals = progress.totals();
    v1::Placement {
        name: placement.name.to_string(),
        content_id: placement.content_id_hex(),
        name_tag: placement
            .name_tag
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        selector: placement.selector.to_string(),
        created_at: Some(timestamp(placement.created_ms)),
        created_by: placement.created_by.clone(),
        until: placement.until_ms.map(timestamp),
        size: progress.size(),
        totals: Some(v1::PlacementTotals {
            nodes: totals.nodes(),
            pending: totals.pending,
            downloading: totals.downloading,
            done: totals.done,
            failed: totals.failed,
            bytes_done: totals.bytes_done,
            bytes_total: totals.nodes().saturating_mul(progress.size()),
        }),
    }
}

/// A placement's or a policy's name from a request (both are DNS labels).
pub(crate) fn name_arg(name: &str) -> Result<PlacementName, ApiError> {
    name.parse()
        .map_err(|e: shoal_control::PlacementNameError| {
            ApiError::new(ErrorCode::InvalidArgument, format!("name: {e}"))
        })
}

fn not_found(name: &PlacementName) -> ApiError {
    ApiError::new(
        ErrorCode::PlacementNotFound,
        format!("there is no placement {name}; `shoal placements` lists them"),
    )
    .with("name", name.to_string())
}

/// A node id from a request.
pub(crate) fn node_id(id: &str) -> Result<NodeId, ApiError> {
    id.parse().map_err(|e: shoal_control::NodeIdError| {
        ApiError::new(ErrorCode::InvalidArgument, format!("node_id: {e}"))
    })
}

fn until_ms(until: Option<&shoal_api::wkt::Timestamp>) -> Result<Option<u64>, ApiError> {
    let Some(t) = until else {
        return Ok(None);
    };
    let seconds = u64::try_from(t.seconds)
        .map_err(|_| ApiError::new(ErrorCode::InvalidArgument, "until is before 1970"))?;
    let nanos = u64::try_from(t.nanos).unwrap_or(0);
    Ok(Some(seconds.saturating_mul(1000) + nanos / 1_000_000))
}

#[tonic::async_trait]
impl PlacementService for ControlPlane {
    async fn create_placement(
        &self,
        request: Request<v1::CreatePlacementRequest>,
    ) -> Result<Response<v1::Placement>, Status> {
        let by = self.authorize(&request, Action::ChangePlacement)?.name;
        let req = request.into_inner();
        let reference: ArtifactRef =
            req.r#ref
                .parse()
                .map_err(|e: shoal_control::ArtifactRefError| {
                    ApiError::new(ErrorCode::InvalidRef, e.to_string())
                })?;
        let record = self.resolve(&reference).await?;
        let selector: Selector =
            req.selector
                .parse()
                .map_err(|e: shoal_control::SelectorError| {
                    ApiError::new(ErrorCode::InvalidSelector, e.to_string())
                        .with("selector", req.selector.clone())
                })?;
        let now = now_ms();
        let until = until_ms(req.until.as_ref())?;
        if until.is_some_and(|u| u <= now) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "until is in the past; give a time to come",
            )
            .into());
        }
        let name = if req.name.is_empty() {
            PlacementName::derive(&record.name_tag.to_string(), &selector.to_string())
        } else {
            name_arg(&req.name)?
        };
        let placement = Placement {
            name: name.clone(),
            content_id: record.content_id,
            name_tag: matches!(reference, ArtifactRef::NameTag(_)).then(|| record.name_tag.clone()),
            selector,
            created_ms: now,
            created_by: by.clone(),
            until_ms: until,
        };
        // Refused when the name holds a different placement; asking again for the same one
        // changes nothing. (The table is this node's copy of the replicated placements.)
        let exists = |e: shoal_control::PlacementError| {
            ApiError::new(ErrorCode::PlacementExists, e.to_string()).with("name", name.to_string())
        };
        // This node's table answers a repeated or conflicting request at once; the replicated
        // create decides a race between server nodes (the first wins).
        let mut created = lock(&self.placements).is_new(&placement).map_err(exists)?;
        if created {
            // The observer, on every server node, adds it to the table and wakes the streams.
            if let Some(holder) = self.catalog.create_placement(&placement).await? {
                placement.check_against(&holder).map_err(exists)?;
                created = false;
            }
        }
        let message = {
            let table = lock(&self.placements);
            let Some((stored, progress)) = table.get(&name) else {
                return Err(ApiError::new(ErrorCode::Internal, "the placement vanished").into());
            };
            if created {
                tracing::info!(placement = %name, content_id = %placement.content_id_hex(), selector = %placement.selector, by, nodes = progress.totals().nodes(), "placement created");
            }
            placement_message(stored, progress)
        };
        Ok(Response::new(message))
    }

    async fn list_placements(
        &self,
        request: Request<v1::ListPlacementsRequest>,
    ) -> Result<Response<v1::ListPlacementsResponse>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let after = self
            .open_page_token(&req.page_token)?
            .map(|a| name_arg(&a))
            .transpose()?;
        let size = page_size(req.page_size);
        let table = lock(&self.placements);
        let mut page = table.page(after.as_ref(), size + 1);
        let next_page_token = self.finish_page(&mut page, size, |(p, _)| p.name.as_str())?;
        Ok(Response::new(v1::ListPlacementsResponse {
            placements: page
                .into_iter()
                .map(|(p, progress)| placement_message(p, progress))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_placement(
        &self,
        request: Request<v1::GetPlacementRequest>,
    ) -> Result<Response<v1::PlacementStatus>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let name = name_arg(&req.name)?;
        let after = self
            .open_page_token(&req.page_token)?
            .map(|a| node_id(&a))
            .transpose()?;
        let size = page_size(req.page_size);
        let table = lock(&self.placements);
        let Some((placement, progress)) = table.get(&name) else {
            return Err(not_found(&name).into());
        };
        let mut page = progress.page(after.as_ref(), size + 1);
        let next_page_token = self.finish_page(&mut page, size, |(id, _)| id.as_str())?;
        let nodes = page
            .into_iter()
            .map(|(id, state)| {
                let state_code = match state {
                    NodeState::Pending => v1::AssignmentState::Pending,
                    NodeState::Downloading { .. } => v1::AssignmentState::Downloading,
                    NodeState::Done => v1::AssignmentState::Done,
                    NodeState::Failed { .. } => v1::AssignmentState::Failed,
                };
                v1::PlacementNode {
                    node_id: id.to_string(),
                    state: state_code.into(),
                    bytes_done: state.done_bytes(progress.size()),
                    reason: state.reason().unwrap_or_default().to_owned(),
                }
            })
            .collect();
        Ok(Response::new(v1::PlacementStatus {
            placement: Some(placement_message(placement, progress)),
            nodes,
            next_page_token,
        }))
    }

    async fn delete_placement(
        &self,
        request: Request<v1::DeletePlacementRequest>,
    ) -> Result<Response<v1::DeletePlacementResponse>, Status> {
        let by = self.authorize(&request, Action::ChangePlacement)?.name;
        let name = name_arg(&request.into_inner().name)?;
        let message = {
            let table = lock(&self.placements);
            let Some((placement, progress)) = table.get(&name) else {
                return Err(not_found(&name).into());
            };
            placement_message(placement, progress)
        };
        // The observer, on every server node, removes it and wakes the streams.
        if !self.catalog.delete_placement(name.as_str()).await? {
            return Err(not_found(&name).into());
        }
        tracing::info!(placement = %name, by, "placement removed");
        Ok(Response::new(v1::DeletePlacementResponse {
            placement: Some(message),
        }))
    }
}

#[tonic::async_trait]
impl AssignmentService for ControlPlane {
    type WatchAssignmentsStream = AssignmentStream;

    async fn watch_assignments(
        &self,
        request: Request<v1::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        self.authorize(&request, Action::WatchAssignments)?;
        let node = node_id(&request.into_inner().node_id)?;
        let Some(this) = self.me.upgrade() else {
            return Err(ApiError::new(ErrorCode::ControlPlaneUnavailable, "shutting down").into());
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut changes = self.changes.subscribe();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                changes.mark_unchanged();
                let set = this.assignment_set(&node);
                // Until the node registers (its first heartbeat may come after this stream
                // opens), look again each second: nothing else wakes this stream for it.
                let registered = set.policy.is_some();
                if last.as_ref() != Some(&set) {
                    if tx.send(Ok(set.clone())).await.is_err() {
                        break;
                    }
                    last = Some(set);
                }
                // A placement's end changes assignments with nobody acting: wake for it too.
                let now = now_ms();
                let end = lock(&this.placements).next_end(now);
                let mut wait = end.map_or(Duration::from_secs(3600), |e| {
                    Duration::from_millis(e.saturating_sub(now) + 1)
                });
                if !registered {
                    wait = wait.min(Duration::from_secs(1));
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    () = tokio::time::sleep(wait) => {}
                    () = tx.closed() => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_progress(
        &self,
        request: Request<v1::ReportProgressRequest>,
    ) -> Result<Response<v1::ReportProgressResponse>, Status> {
        self.authorize(&request, Action::ReportProgress)?;
        let req = request.into_inner();
        let node = node_id(&req.node_id)?;
        if req.artifacts.len() > MAX_REPORT_ENTRIES {
            return Err(ApiError::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "a report carries at most {MAX_REPORT_ENTRIES} artifacts, this one {}",
                    req.artifacts.len()
                ),
            )
            .into());
        }
        let mut updates = Vec::with_capacity(req.artifacts.len());
        for (i, a) in req.artifacts.iter().enumerate() {
            let invalid = |m: String| {
                ApiError::new(ErrorCode::InvalidArgument, format!("artifacts[{i}]: {m}"))
            };
            let content_id: [u8; 32] = data_encoding::HEXLOWER
                .decode(a.content_id.as_bytes())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "content_id {:?} is not 64 lowercase hex digits",
                        a.content_id
                    ))
                })?;
            let state = match v1::AssignmentState::try_from(a.state) {
                Ok(v1::AssignmentState::Pending) => NodeState::Pending,
                Ok(v1::AssignmentState::Downloading) => {
                    NodeState::downloading(a.bytes_done, &a.reason)
                }
                Ok(v1::AssignmentState::Done) => NodeState::Done,
                Ok(v1::AssignmentState::Failed) => NodeState::failed(&a.reason),
                _ => return Err(invalid(format!("state {} is not a state", a.state)).into()),
            };
            updates.push((content_id, state));
        }
        if lock(&self.nodes).get(&node).is_none() {
            return Err(ApiError::new(
                ErrorCode::NodeNotFound,
                format!("node {node} has not registered; it must heartbeat before it reports"),
            )
            .into());
        }
        let mut table = lock(&self.placements);
        for (content_id, state) in updates {
            if let NodeState::Failed { reason } = &state {
                tracing::warn!(node = %node, content_id = %data_encoding::HEXLOWER.encode(&content_id), reason, "node reports a failure");
            }
            table.report(&node, content_id, state);
        }
        Ok(Response::new(v1::ReportProgressResponse {
            min_interval_ms: u32::try_from(REPORT_INTERVAL.as_millis()).unwrap_or(1000),
        }))
    }
}
