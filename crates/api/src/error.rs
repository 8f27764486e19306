//! The error model: a stable machine-readable [`ErrorCode`], a one-sentence message that says
//! what failed and what to do, and facts for programs ([`ApiError::metadata`]).
//!
//! Over gRPC an [`ApiError`] is a status with the code's canonical gRPC code and exactly one
//! `google.rpc.ErrorInfo` detail (`reason` = the code, `domain` = `shoal`). Over REST it is the
//! Google JSON error shape with the HTTP status from [`ErrorCode::http_status`]:
//!
//! ```json
//! {"error": {"code": 409, "status": "ALREADY_EXISTS", "message": "...",
//!   "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
//!                "reason": "TAG_BOUND_TO_OTHER_CONTENT", "domain": "shoal", "metadata": {...}}]}}
//! ```
//!
//! Clients branch on the reason, never on the message.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Shoal error.
pub const DOMAIN: &str = "shoal";

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $reason:literal => $grpc:ident, $http:literal; )*) => {
        /// Why a call failed, stable across releases: the `reason` of the error's `ErrorInfo`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The reason string, e.g. `TAG_BOUND_TO_OTHER_CONTENT`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$name => $reason,)* }
            }

            /// The canonical gRPC code.
            pub fn grpc_code(self) -> Code {
                match self { $(ErrorCode::$name => Code::$grpc,)* }
            }

            /// The HTTP status of the REST form (taken from this table, not derived from the
            /// gRPC code: 413 and 507 have no gRPC twin).
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$name => $http,)* }
            }
        }
    };
}

codes! {
    /// A reference (`name:tag`, content id, magnet, URL, path) does not parse.
    InvalidRef = "INVALID_REF" => InvalidArgument, 400;
    /// A `name:tag` breaks the grammar.
    InvalidNameTag = "INVALID_NAME_TAG" => InvalidArgument, 400;
    /// A page token is malformed, forged, or from another cluster.
    InvalidPageToken = "INVALID_PAGE_TOKEN" => InvalidArgument, 400;
    /// A torrent does not parse or validate.
    InvalidTorrent = "INVALID_TORRENT" => InvalidArgument, 400;
    /// Some other field of the request is invalid.
    InvalidArgument = "INVALID_ARGUMENT" => InvalidArgument, 400;
    /// A content id prefix matches more than one artifact.
    AmbiguousContentId = "AMBIGUOUS_CONTENT_ID" => InvalidArgument, 400;
    /// The request is over the size limit.
    RequestTooLarge = "REQUEST_TOO_LARGE" => ResourceExhausted, 413;
    /// No such artifact.
    ArtifactNotFound = "ARTIFACT_NOT_FOUND" => NotFound, 404;
    /// No such node.
    NodeNotFound = "NODE_NOT_FOUND" => NotFound, 404;
    /// A label selector breaks the grammar.
    InvalidSelector = "INVALID_SELECTOR" => InvalidArgument, 400;
    /// No such placement.
    PlacementNotFound = "PLACEMENT_NOT_FOUND" => NotFound, 404;
    /// The placement name is taken by a different placement.
    PlacementExists = "PLACEMENT_EXISTS" => AlreadyExists, 409;
    /// No such policy.
    PolicyNotFound = "POLICY_NOT_FOUND" => NotFound, 404;
    /// No such route (REST only).
    NotFound = "NOT_FOUND" => NotFound, 404;
    /// The tag is bound to other content; tags are immutable.
    TagBoundToOtherContent = "TAG_BOUND_TO_OTHER_CONTENT" => AlreadyExists, 409;
    /// A retrieve's destination exists and `overwrite` is off.
    DestinationExists = "DESTINATION_EXISTS" => AlreadyExists, 409;
    /// No or invalid credential.
    Unauthenticated = "UNAUTHENTICATED" => Unauthenticated, 401;
    /// The caller may not call this method.
    PermissionDenied = "PERMISSION_DENIED" => PermissionDenied, 403;
    /// No valid credential has this name.
    CredentialNotFound = "CREDENTIAL_NOT_FOUND" => NotFound, 404;
    /// A valid credential has this name already.
    CredentialExists = "CREDENTIAL_EXISTS" => AlreadyExists, 409;
    /// A path outside the agent's allowed roots.
    PathNotAllowed = "PATH_NOT_ALLOWED" => PermissionDenied, 403;
    /// A path that does not exist or cannot be read.
    PathNotFound = "PATH_NOT_FOUND" => NotFound, 404;
    /// The disk is full; what was verified is kept and the download resumes.
    DiskFull = "DISK_FULL" => ResourceExhausted, 507;
    /// The control plane cannot be reached or has no quorum; retry with backoff.
    ControlPlaneUnavailable = "CONTROL_PLANE_UNAVAILABLE" => Unavailable, 503;
    /// A change to the control plane's cluster was refused (an id used before, a server
    /// that is not who it should be, a member that is not one); the message says why.
    ClusterChangeRefused = "CLUSTER_CHANGE_REFUSED" => FailedPrecondition, 409;
    /// The download cannot proceed: no peer has the data, or the data is corrupt everywhere.
    TransferFailed = "TRANSFER_FAILED" => Aborted, 502;
    /// A bug: the message carries a request id, never internals.
    Internal = "INTERNAL" => Internal, 500;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The code whose reason string is `reason`.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == reason)
    }
}

/// A failed call: code, message, and the facts a program needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Why.
    pub code: ErrorCode,
    /// One sentence: what failed and what to do.
    pub message: String,
    /// Facts for programs, e.g. `bound_content_id`.
    pub metadata: HashMap<String, String>,
}

impl ApiError {
    /// An error with no metadata.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            metadata: HashMap::new(),
        }
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// Reads an error back from a gRPC status (a client's view). A status without a Shoal
    /// `ErrorInfo` (a proxy's, a transport failure) keeps its message under a code derived
    /// from its gRPC code.
    pub fn from_status(status: &Status) -> Self {
        if let Some(info) = status.get_details_error_info()
            && info.domain == DOMAIN
            && let Some(code) = ErrorCode::from_reason(&info.reason)
        {
            return Self {
                code,
                message: status.message().to_owned(),
                metadata: info.metadata,
            };
        }
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
            Code::NotFound => ErrorCode::NotFound,
            Code::Unauthenticated => ErrorCode::Unauthenticated,
            Code::PermissionDenied => ErrorCode::PermissionDenied,
            Code::ResourceExhausted => ErrorCode::RequestTooLarge,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                ErrorCode::ControlPlaneUnavailable
            }
            _ => ErrorCode::Internal,
        };
        Self::new(code, status.message())
    }

    /// The REST body: the Google JSON error shape.
    pub fn to_json(&self) -> serde_json::Value {
        let status = self.code.grpc_code();
        serde_json::json!({
            "error": {
                "code": self.code.http_status(),
                "status": grpc_status_name(status),
                "message": self.message,
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.code.as_str(),
                    "domain": DOMAIN,
                    "metadata": self.metadata,
                }],
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let details = ErrorDetails::with_error_info(e.code.as_str(), DOMAIN, e.metadata);
        Status::with_error_details(e.code.grpc_code(), e.message, details)
    }
}

/// The canonical upper-case name of a gRPC code, as Google's JSON errors spell it.
pub fn grpc_status_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_survives_the_trip_through_a_grpc_status() {
        let e = ApiError::new(ErrorCode::TagBoundToOtherContent, "app:1 is bound")
            .with("bound_content_id", "ab".repeat(32));
        let status = Status::from(e.clone());
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(ApiError::from_status(&status), e);
    }

    #[test]
    fn the_json_form_has_the_http_status_and_the_reason() {
        let e = ApiError::new(ErrorCode::DiskFull, "disk full");
        let json = e.to_json();
        assert_eq!(json["error"]["code"], 507);
        assert_eq!(json["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(json["error"]["details"][0]["reason"], "DISK_FULL");
    }

    #[test]
    fn reason_strings_are_unique_and_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_reason(code.as_str()), Some(*code));
        }
    }
}
