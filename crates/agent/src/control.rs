//! The agent's link to the control plane: the in-process one (embedded default) or a remote
//! one over gRPC. Both answer with the same `shoal.v1` messages and errors.
//!
//! Calls to a remote control plane carry the agent's credential (`server_token_file` or
//! `server_token`, normally an `agent`-role token) as `Authorization: Bearer ...`. A bind
//! on behalf of a local caller who presented a Shoal token carries the caller's token instead,
//! so that an agent-role host publishes only with a human's publisher credential. Calls to the
//! embedded control plane never leave the process and need none.
//!
//! A remote control plane may be several server nodes (a Raft cluster: every node serves the
//! same API and forwards writes to its leader). The client talks to one at a time, the last
//! one that answered, and fails over: a call whose node cannot be reached, refuses the
//! connection, does not answer within its time limit (a stopped process accepts TCP and never
//! answers) or answers `UNAVAILABLE` (no quorum, stopping) is sent again to the next node,
//! round-robin, each node at most once per call. Every call the agent makes is safe to
//! repeat (a bind of the same content is idempotent; the rest are reads, heartbeats and
//! progress reports), which is what makes this retry sound. An answer from the control
//! plane itself (`NOT_FOUND`, `PERMISSION_DENIED`, `ALREADY_EXISTS`, ...) is never retried.
//! The assignment stream has no time limit; when it breaks, ends, or its node stops
//! answering HTTP/2 keep-alive pings (the server sends nothing on an idle stream, so the
//! pings are what notice a stalled node), the next node becomes the preferred one and the
//! stream is reopened there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use shoal_api::v1::assignment_service_client::AssignmentServiceClient;
use shoal_api::v1::assignment_service_server::AssignmentService;
use shoal_api::v1::catalog_service_client::CatalogServiceClient;
use shoal_api::v1::catalog_service_server::CatalogService;
use shoal_api::v1::node_service_client::NodeServiceClient;
use shoal_api::v1::node_service_server::NodeService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_server::ControlPlane;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};

use crate::config::ControlPlanes;

/// Where the catalog, the registry and the tracker are.
#[derive(Clone)]
pub enum Control {
    /// In this process.
    Embedded(Arc<ControlPlane>),
    /// Over gRPC, one or more server nodes.
    Remote(Arc<Remote>),
}

/// The time limits of a remote control plane's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a TCP connection to one node (default 2 s; loopback and LAN connections take
    /// milliseconds, and a node that is down usually refuses at once).
    pub connect: Duration,
    /// For one node to answer one call, connection included (default 10 s; a heartbeat or a
    /// read answers in milliseconds, a write after a quorum's fsync).
    pub request: Duration,
    /// For one node to answer a bind (default 30 s: the request carries a whole torrent,
    /// up to `MAX_BIND_BYTES`, over whatever link the publisher has).
    pub bind: Duration,
    /// How often an HTTP/2 ping is sent on a node's connection while a call or the assignment
    /// stream is open on it (default 10 s). The stream has no time limit: the pings are what
    /// find a node that stopped answering.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection and its calls fail (default
    /// 10 s), so a stalled assignment stream is noticed within about 20 s.
    pub keepalive_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(10),
            bind: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// A remote control plane: its nodes, the one in use, the agent's credential.
pub struct Remote {
    /// Never empty ([`ControlPlanes`] holds at least one URL), so `% nodes.len()` is safe.
    nodes: Vec<Node>,
    /// The index of the node tried first: the last one that answered.
    preferred: AtomicUsize,
    token: Option<String>,
    timeouts: Timeouts,
}

/// One server node.
struct Node {
    /// The URL, for messages.
    url: String,
    /// The channel (connects lazily, reconnects by itself, pings while a call is open).
    channel: Channel,
    /// Whether its last call failed, so that a node known to be down is not reported at
    /// warn on every call that tries it.
    failing: AtomicBool,
}

/// An agent's assignment stream, from either kind of control plane.
pub type Assignments = Pin<Box<dyn Stream<Item = Result<v1::AssignmentSet, tonic::Status>> + Send>>;

impl Control {
    /// A remote control plane at `urls` (one per server node, tried in this order at first),
    /// called with `token` (the agent's credential) when given, with the default
    /// [`Timeouts`].
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` when the token cannot be a header.
    pub fn remote(urls: &ControlPlanes, token: Option<String>) -> Result<Self, ApiError> {
        Self::remote_with(urls, token, Timeouts::default())
    }

    /// [`Control::remote`] with other time limits.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` when the token cannot be a header or a URL cannot be a gRPC
    /// endpoint.
    pub fn remote_with(
        urls: &ControlPlanes,
        token: Option<String>,
        timeouts: Timeouts,
    ) -> Result<Self, ApiError> {
        if let Some(token) = &token {
            bearer(token)?;
        }
        let mut nodes = Vec::with_capacity(urls.urls().len());
        for url in urls.urls() {
            let channel = Endpoint::from_shared(url.clone())
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("control plane URL {url:?}: {e}"),
                    )
                })?
                .connect_timeout(timeouts.connect)
                .http2_keep_alive_interval(timeouts.keepalive_interval)
                .keep_alive_timeout(timeouts.keepalive_timeout)
                // Only connections with a call or the stream open: the preferred node's
                // carries the stream, and an idle connection to another node need not cost
                // every server node a ping from every agent that once used it.
                .keep_alive_while_idle(false)
                .connect_lazy();
            nodes.push(Node {
                url: url.clone(),
                channel,
                failing: AtomicBool::new(false),
            });
        }
        Ok(Self::Remote(Arc::new(Remote {
            nodes,
            preferred: AtomicUsize::new(0),
            token,
            timeouts,
        })))
    }

    /// Where it is, for status displays: `embedded`, or the URL of the node in use.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Embedded(_) => "embedded".to_owned(),
            Self::Remote(remote) => remote.preferred().url.clone(),
        }
    }

    /// Binds a name to content, for `principal` (the local caller, named in the record when
    /// the control plane is embedded), with `forwarded` (the caller's own token) when given.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn bind(
        &self,
        request: v1::BindArtifactRequest,
        principal: &str,
        forwarded: Option<&str>,
    ) -> Result<v1::BindArtifactResponse, ApiError> {
        match self {
            Self::Embedded(cp) => {
                let mut request = tonic::Request::new(request);
                request
                    .extensions_mut()
                    .insert(shoal_api::router::Principal {
                        name: principal.to_owned(),
                        ..shoal_api::router::Principal::local()
                    });
                embedded(cp.bind_artifact(request).await)
            }
            Self::Remote(remote) => remote
                .call(
                    "BindArtifact",
                    remote.timeouts.bind,
                    &request,
                    forwarded,
                    |channel, request| async move {
                        CatalogServiceClient::new(channel)
                            .max_decoding_message_size(shoal_server::MAX_BIND_BYTES)
                            .max_encoding_message_size(shoal_server::MAX_BIND_BYTES)
                            .bind_artifact(request)
                            .await
                    },
                )
                .await
                .map(|(_, answer)| answer),
        }
    }

    /// Looks an artifact up.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn get(&self, request: v1::GetArtifactRequest) -> Result<v1::Artifact, ApiError> {
        match self {
            Self::Embedded(cp) => embedded(cp.get_artifact(tonic::Request::new(request)).await),
            Self::Remote(remote) => remote
                .call(
                    "GetArtifact",
                    remote.timeouts.request,
                    &request,
                    None,
                    |channel, request| async move {
                        CatalogServiceClient::new(channel)
                            .max_decoding_message_size(shoal_server::MAX_BIND_BYTES)
                            .get_artifact(request)
                            .await
                    },
                )
                .await
                .map(|(_, answer)| answer),
        }
    }

    /// Lists catalog entries.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn list(
        &self,
        request: v1::ListArtifactsRequest,
    ) -> Result<v1::ListArtifactsResponse, ApiError> {
        match self {
            Self::Embedded(cp) => {
                embedded(CatalogService::list_artifacts(&**cp, tonic::Request::new(request)).await)
            }
            Self::Remote(remote) => remote
                .call(
                    "ListArtifacts",
                    remote.timeouts.request,
                    &request,
                    None,
                    |channel, request| async move {
                        CatalogServiceClient::new(channel)
                            .list_artifacts(request)
                            .await
                    },
                )
                .await
                .map(|(_, answer)| answer),
        }
    }

    /// Registers this agent or refreshes its registration.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn heartbeat(
        &self,
        request: v1::HeartbeatRequest,
    ) -> Result<v1::HeartbeatResponse, ApiError> {
        match self {
            Self::Embedded(cp) => embedded(cp.heartbeat(tonic::Request::new(request)).await),
            Self::Remote(remote) => remote
                .call(
                    "Heartbeat",
                    remote.timeouts.request,
                    &request,
                    None,
                    |channel, request| async move {
                        NodeServiceClient::new(channel).heartbeat(request).await
                    },
                )
                .await
                .map(|(_, answer)| answer),
        }
    }

    /// Opens this node's assignment stream, on the first node that opens it. When the stream
    /// breaks, ends, or its node stops answering keep-alive pings, the next node becomes the
    /// preferred one, so opening it again goes there.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn watch_assignments(&self, node_id: &str) -> Result<Assignments, ApiError> {
        let request = v1::WatchAssignmentsRequest {
            node_id: node_id.to_owned(),
        };
        match self {
            Self::Embedded(cp) => {
                AssignmentService::watch_assignments(&**cp, tonic::Request::new(request))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| ApiError::from_status(&status))
            }
            Self::Remote(remote) => {
                let (index, stream) = remote
                    .call(
                        "WatchAssignments",
                        remote.timeouts.request,
                        &request,
                        None,
                        |channel, request| async move {
                            AssignmentServiceClient::new(channel)
                                .watch_assignments(request)
                                .await
                        },
                    )
                    .await?;
                Ok(Box::pin(Watched {
                    stream: Box::pin(stream),
                    remote: remote.clone(),
                    index,
                    over: false,
                }))
            }
        }
    }

    /// Reports progress on assignments.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn report_progress(
        &self,
        request: v1::ReportProgressRequest,
    ) -> Result<v1::ReportProgressResponse, ApiError> {
        match self {
            Self::Embedded(cp) => embedded(
                AssignmentService::report_progress(&**cp, tonic::Request::new(request)).await,
            ),
            Self::Remote(remote) => remote
                .call(
                    "ReportProgress",
                    remote.timeouts.request,
                    &request,
                    None,
                    |channel, request| async move {
                        AssignmentServiceClient::new(channel)
                            .report_progress(request)
                            .await
                    },
                )
                .await
                .map(|(_, answer)| answer),
        }
    }
}

/// The embedded control plane's answer.
fn embedded<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

/// True when `status` says the node, not the request, is the problem, so the same call may go
/// to another node: it could not be reached or reset the connection (tonic reports both as
/// `UNAVAILABLE`, or as `UNKNOWN` when HTTP/2 failed mid-call; no Shoal service answers
/// `UNKNOWN`), it answered `UNAVAILABLE` itself (no quorum, stopping, a proxy's 502/503/504),
/// or it dropped the call (`CANCELLED`, as a node shutting down does) or timed it out
/// (`DEADLINE_EXCEEDED`: the agent sets no deadline, so it is the node's own or a proxy's).
fn fails_over(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

/// What went wrong with a status, for logs and messages.
fn describe(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        shoal_api::error::grpc_status_name(status.code()).to_owned()
    } else {
        format!(
            "{}: {}",
            shoal_api::error::grpc_status_name(status.code()),
            status.message()
        )
    }
}

impl Remote {
    /// The node tried first.
    fn preferred(&self) -> &Node {
        let index = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        &self.nodes[index]
    }

    /// A request carrying `forwarded` (a caller's token), else the agent's own token.
    fn request<T>(
        &self,
        message: T,
        forwarded: Option<&str>,
    ) -> Result<tonic::Request<T>, ApiError> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = forwarded.or(self.token.as_deref()) {
            request
                .metadata_mut()
                .insert("authorization", bearer(token)?);
        }
        Ok(request)
    }

    /// Sends `message` with `send` to the preferred node, then to each other node in turn
    /// while the node is the problem (see [`fails_over`]), each within `limit`. Returns the
    /// index of the node that answered and its answer; remembers that node.
    async fn call<M, T, F, Fut>(
        &self,
        method: &'static str,
        limit: Duration,
        message: &M,
        forwarded: Option<&str>,
        send: F,
    ) -> Result<(usize, T), ApiError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let mut failures = Vec::with_capacity(count);
        for attempt in 0..count {
            let index = (first + attempt) % count;
            let node = &self.nodes[index];
            let request = self.request(message.clone(), forwarded)?;
            let reason =
                match tokio::time::timeout(limit, send(node.channel.clone(), request)).await {
                    Ok(Ok(response)) => {
                        self.answered(index);
                        return Ok((index, response.into_inner()));
                    }
                    Ok(Err(status)) if !fails_over(&status) => {
                        // The node is up and judged the request: another would judge it the same.
                        self.answered(index);
                        return Err(self.refused(&status));
                    }
                    Ok(Err(status)) => describe(&status),
                    Err(_) => format!("no answer within {} s", limit.as_secs_f64()),
                };
            let next = (attempt + 1 < count).then(|| self.nodes[(index + 1) % count].url.as_str());
            self.failed(index, method, &reason, next);
            failures.push((node.url.as_str(), reason));
        }
        Err(self.unreachable(method, &failures))
    }

    /// Remembers that node `index` answered.
    fn answered(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
        let node = &self.nodes[index];
        if node.failing.swap(false, Ordering::Relaxed) && self.nodes.len() > 1 {
            tracing::info!(control_plane = %node.url, "control plane node answering again");
        }
    }

    /// Records that a call to node `index` failed for `reason`, and that `next` is tried now.
    fn failed(&self, index: usize, method: &str, reason: &str, next: Option<&str>) {
        let node = &self.nodes[index];
        let known = node.failing.swap(true, Ordering::Relaxed);
        if self.nodes.len() == 1 {
            // Nothing to fail over to: the caller reports the error.
            return;
        }
        match next {
            Some(next) if !known => tracing::warn!(
                control_plane = %node.url, method, %reason, next = %next,
                "control plane node failed; trying the next one"
            ),
            None if !known => tracing::warn!(
                control_plane = %node.url, method, %reason,
                "control plane node failed, and it was the last one to try"
            ),
            _ => tracing::debug!(
                control_plane = %node.url, method, %reason, next = ?next,
                "control plane node still failing"
            ),
        }
    }

    /// Moves the preference past node `index`, whose assignment stream broke for `reason`,
    /// unless another call already moved it.
    fn stream_broke(&self, index: usize, reason: &str) {
        let count = self.nodes.len();
        if count == 1 {
            // The assignment loop reports it and reopens.
            return;
        }
        let next = (index + 1) % count;
        if self
            .preferred
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                control_plane = %self.nodes[index].url, %reason, next = %self.nodes[next].url,
                "assignment stream from this control plane node broke; reopening it on the next one"
            );
        }
    }

    /// The error for a call no node answered.
    fn unreachable(&self, method: &str, failures: &[(&str, String)]) -> ApiError {
        let message = match failures {
            [(url, reason)] => format!(
                "the control plane at {url} cannot be reached ({reason}); check that it runs and that this host can reach it"
            ),
            _ => format!(
                "no control plane node answered {method}: {}; check that the server nodes run, that a majority of them is up (a node without a quorum answers UNAVAILABLE), and that this host can reach them",
                failures
                    .iter()
                    .map(|(url, reason)| format!("{url} ({reason})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ApiError::new(ErrorCode::ControlPlaneUnavailable, message)
    }

    /// The control plane's own refusal, as an error.
    fn refused(&self, status: &tonic::Status) -> ApiError {
        let mut e = ApiError::from_status(status);
        // The control plane's hint speaks to people at a shell; say which credential this
        // agent presented, too.
        if e.code == ErrorCode::Unauthenticated {
            e.message = format!(
                "{} (the agent presents its server_token_file / --server-token-file token, or, for a publish, the caller's own)",
                e.message
            );
        }
        e
    }
}

/// A remote assignment stream that, when it breaks or ends, moves the remote's preference to
/// the next node.
struct Watched {
    stream: Pin<Box<tonic::Streaming<v1::AssignmentSet>>>,
    remote: Arc<Remote>,
    /// The node it comes from.
    index: usize,
    /// Whether it broke or ended already.
    over: bool,
}

impl Stream for Watched {
    type Item = Result<v1::AssignmentSet, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.stream.as_mut().poll_next(cx);
        if !self.over {
            let reason = match &item {
                Poll::Ready(Some(Err(status))) if fails_over(status) => Some(describe(status)),
                Poll::Ready(None) => Some("the node ended it".to_owned()),
                _ => None,
            };
            if let Some(reason) = reason {
                self.over = true;
                self.remote.stream_broke(self.index, &reason);
            }
        }
        item
    }
}

/// `Bearer TOKEN` as a header value.
fn bearer(token: &str) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, ApiError> {
    format!("Bearer {}", token.trim()).parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "the control plane token holds characters a header cannot carry",
        )
    })
}
