//! What can go wrong in the control plane, and how each failure reaches a caller
//! ([`ApiError`] with a stable code).

use std::path::{Path, PathBuf};

use shoal_api::{ApiError, ErrorCode};
use shoal_control::{ArtifactError, BindError, RecordError};

/// A control-plane failure.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The catalog database cannot be opened.
    #[error(
        "cannot open the catalog at {path}: {message}; check that no other Shoal server uses this data directory"
    )]
    Store {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// A catalog read or write failed.
    #[error("catalog storage failed: {0}")]
    Db(String),
    /// A stored record does not decode.
    #[error("a stored catalog record is corrupt: {0}")]
    Corrupt(String),
    /// The bind rule refused.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A valid credential has this name already.
    #[error("a valid credential named {0} exists; revoke it first or choose another name")]
    CredentialExists(String),
    /// No valid credential has this name.
    #[error("no valid credential is named {0}; `shoal tokens` lists them")]
    CredentialNotFound(String),
    /// A bootstrap token file cannot be written.
    #[error("cannot write the bootstrap admin token to {path}: {message}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The system's random source cannot be read.
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(String),
    /// The replicated control plane could not do it: no leader, no quorum, a member that
    /// cannot be reached, a membership change refused.
    #[error(transparent)]
    Cluster(#[from] shoal_raft::Error),
    /// A broken internal invariant.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ServerError {
    pub(crate) fn store(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Store {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

macro_rules! db_errors {
    ($($t:ty),*) => {
        $(impl From<$t> for ServerError {
            fn from(e: $t) -> Self {
                Self::Db(e.to_string())
            }
        })*
    };
}
db_errors!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<ArtifactError> for ServerError {
    fn from(e: ArtifactError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

impl From<RecordError> for ServerError {
    fn from(e: RecordError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Bind(BindError::TagBoundToOtherContent {
                ref name_tag,
                ref bound_content_id,
            }) => ApiError::new(ErrorCode::TagBoundToOtherContent, e.to_string())
                .with("name_tag", name_tag.to_string())
                .with(
                    "bound_content_id",
                    data_encoding::HEXLOWER.encode(bound_content_id),
                ),
            ServerError::CredentialExists(ref name) => {
                ApiError::new(ErrorCode::CredentialExists, e.to_string()).with("name", name.clone())
            }
            ServerError::CredentialNotFound(ref name) => {
                ApiError::new(ErrorCode::CredentialNotFound, e.to_string())
                    .with("name", name.clone())
            }
            ServerError::Cluster(ref raft) => {
                use shoal_raft::Error as R;
                let code = match raft {
                    R::NoLeader { .. }
                    | R::NotLeader { .. }
                    | R::Unreachable { .. }
                    | R::OutcomeUnknown { .. }
                    | R::Lagging { .. }
                    | R::Stopped { .. }
                    | R::Raft(_) => ErrorCode::ControlPlaneUnavailable,
                    R::IdUsedBefore { .. }
                    | R::NotMember { .. }
                    | R::WrongNode { .. }
                    | R::AlreadyInitialized { .. }
                    | R::Config(_) => ErrorCode::ClusterChangeRefused,
                    R::CommandTooLarge { .. } => ErrorCode::RequestTooLarge,
                    _ => ErrorCode::Internal,
                };
                if code == ErrorCode::Internal {
                    tracing::error!(error = %raft, "control plane replication failure");
                } else {
                    tracing::warn!(error = %raft, "control plane replication");
                }
                ApiError::new(code, format!("the control plane's cluster: {raft}"))
            }
            other => {
                tracing::error!(error = %other, "control plane failure");
                ApiError::new(
                    ErrorCode::Internal,
                    format!("the control plane failed: {other}"),
                )
            }
        }
    }
}

impl From<ServerError> for tonic::Status {
    fn from(e: ServerError) -> Self {
        ApiError::from(e).into()
    }
}
