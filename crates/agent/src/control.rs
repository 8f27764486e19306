//! The agent's link to the control plane: the in-process one (embedded default) or a remote
//! one over gRPC. Both answer with the same `shoal.v1` messages and errors.
//!
//! Calls to a remote control plane carry the agent's credential (`server_token_file` or
//! `server_token`, normally an `agent`-role token) as `Authorization: Bearer ...`. A bind
//! on behalf of a local caller who presented a Shoal token carries the caller's token instead,
//! so that an agent-role host publishes only with a human's publisher credential. Calls to the
//! embedded control plane never leave the process and need none.

use std::sync::Arc;

use shoal_api::v1::assignment_service_client::AssignmentServiceClient;
use shoal_api::v1::assignment_service_server::AssignmentService;
use shoal_api::v1::catalog_service_client::CatalogServiceClient;
use shoal_api::v1::catalog_service_server::CatalogService;
use shoal_api::v1::node_service_client::NodeServiceClient;
use shoal_api::v1::node_service_server::NodeService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_server::ControlPlane;
use tonic::transport::{Channel, Endpoint};

/// Where the catalog, the registry and the tracker are.
#[derive(Clone)]
pub enum Control {
    /// In this process.
    Embedded(Arc<ControlPlane>),
    /// Over gRPC.
    Remote {
        /// The URL, for messages.
        endpoint: String,
        /// The channel (connects lazily, reconnects by itself).
        channel: Channel,
        /// A channel without the per-call time limit, for the long-lived assignment stream
        /// (HTTP/2 keep-alive pings find a dead control plane instead).
        streams: Channel,
        /// The agent's own bearer token, if it has one.
        token: Option<String>,
    },
}

/// An agent's assignment stream, from either kind of control plane.
pub type Assignments = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<v1::AssignmentSet, tonic::Status>> + Send>,
>;

impl Control {
    /// A remote control plane at `url` (`http://host:7421`), called with `token` (the agent's
    /// credential) when given.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` when the URL does not parse or the token cannot be a header.
    pub fn remote(url: &str, token: Option<String>) -> Result<Self, ApiError> {
        if let Some(token) = &token {
            bearer(token)?;
        }
        let base = Endpoint::from_shared(url.to_owned())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("control plane URL {url:?}: {e}"),
                )
            })?
            .connect_timeout(std::time::Duration::from_secs(5));
        let streams = base
            .clone()
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .keep_alive_timeout(std::time::Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self::Remote {
            endpoint: url.to_owned(),
            channel: base
                .timeout(std::time::Duration::from_secs(30))
                .connect_lazy(),
            streams: streams.connect_lazy(),
            token,
        })
    }

    /// A request carrying `forwarded` (a caller's token), else the agent's own token, when the
    /// control plane is remote.
    fn request<T>(
        &self,
        message: T,
        forwarded: Option<&str>,
    ) -> Result<tonic::Request<T>, ApiError> {
        let mut request = tonic::Request::new(message);
        if let Self::Remote { token, .. } = self
            && let Some(token) = forwarded.or(token.as_deref())
        {
            request
                .metadata_mut()
                .insert("authorization", bearer(token)?);
        }
        Ok(request)
    }

    /// Where it is, for status displays.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Embedded(_) => "embedded".to_owned(),
            Self::Remote { endpoint, .. } => endpoint.clone(),
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
        let mut request = self.request(request, forwarded)?;
        request
            .extensions_mut()
            .insert(shoal_api::router::Principal {
                name: principal.to_owned(),
                ..shoal_api::router::Principal::local()
            });
        let result = match self {
            Self::Embedded(cp) => cp.bind_artifact(request).await,
            Self::Remote { channel, .. } => {
                CatalogServiceClient::new(channel.clone())
                    .max_decoding_message_size(shoal_server::MAX_BIND_BYTES)
                    .max_encoding_message_size(shoal_server::MAX_BIND_BYTES)
                    .bind_artifact(request)
                    .await
            }
        };
        self.answer(result)
    }

    /// Looks an artifact up.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn get(&self, request: v1::GetArtifactRequest) -> Result<v1::Artifact, ApiError> {
        let request = self.request(request, None)?;
        let result = match self {
            Self::Embedded(cp) => cp.get_artifact(request).await,
            Self::Remote { channel, .. } => {
                CatalogServiceClient::new(channel.clone())
                    .max_decoding_message_size(shoal_server::MAX_BIND_BYTES)
                    .get_artifact(request)
                    .await
            }
        };
        self.answer(result)
    }

    /// Lists catalog entries.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn list(
        &self,
        request: v1::ListArtifactsRequest,
    ) -> Result<v1::ListArtifactsResponse, ApiError> {
        let request = self.request(request, None)?;
        let result = match self {
            Self::Embedded(cp) => CatalogService::list_artifacts(&**cp, request).await,
            Self::Remote { channel, .. } => {
                CatalogServiceClient::new(channel.clone())
                    .list_artifacts(request)
                    .await
            }
        };
        self.answer(result)
    }

    /// Registers this agent or refreshes its registration.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn heartbeat(
        &self,
        request: v1::HeartbeatRequest,
    ) -> Result<v1::HeartbeatResponse, ApiError> {
        let request = self.request(request, None)?;
        let result = match self {
            Self::Embedded(cp) => cp.heartbeat(request).await,
            Self::Remote { channel, .. } => {
                NodeServiceClient::new(channel.clone())
                    .heartbeat(request)
                    .await
            }
        };
        self.answer(result)
    }

    /// Opens this node's assignment stream.
    ///
    /// # Errors
    /// The control plane's error, or `CONTROL_PLANE_UNAVAILABLE`.
    pub async fn watch_assignments(&self, node_id: &str) -> Result<Assignments, ApiError> {
        let request = self.request(
            v1::WatchAssignmentsRequest {
                node_id: node_id.to_owned(),
            },
            None,
        )?;
        match self {
            Self::Embedded(cp) => {
                let result = AssignmentService::watch_assignments(&**cp, request).await;
                self.answer(result)
            }
            Self::Remote { streams, .. } => {
                let result = AssignmentServiceClient::new(streams.clone())
                    .watch_assignments(request)
                    .await;
                self.answer(result).map(|s| Box::pin(s) as Assignments)
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
        let request = self.request(request, None)?;
        let result = match self {
            Self::Embedded(cp) => AssignmentService::report_progress(&**cp, request).await,
            Self::Remote { channel, .. } => {
                AssignmentServiceClient::new(channel.clone())
                    .report_progress(request)
                    .await
            }
        };
        self.answer(result)
    }

    fn answer<T>(&self, result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
        result.map(tonic::Response::into_inner).map_err(|status| {
            let mut e = ApiError::from_status(&status);
            // A transport failure carries no Shoal reason: say which control plane is down.
            if e.code == ErrorCode::ControlPlaneUnavailable || status.code() == tonic::Code::Unknown {
                e = ApiError::new(
                    ErrorCode::ControlPlaneUnavailable,
                    format!(
                        "the control plane at {} cannot be reached ({}); check that it runs and that this host can reach it",
                        self.endpoint(),
                        status.message()
                    ),
                );
            }
            // The control plane's hint speaks to people at a shell; say which credential this
            // agent presented, too.
            if e.code == ErrorCode::Unauthenticated {
                e.message = format!(
                    "{} (the agent presents its server_token_file / --server-token-file token, or, for a publish, the caller's own)",
                    e.message
                );
            }
            e
        })
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
