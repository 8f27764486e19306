//! Who may do what, over the API: `shoal.v1.CredentialService` (admins issue, list and revoke
//! bearer credentials), the check every service method makes ([`ControlPlane::authorize`]),
//! the [`Verifier`] the access layer calls with a presented token, and the bootstrap admin
//! credential written to `<data_dir>/admin.token` when there is none.
//!
//! The decisions are [`shoal_control::auth`]'s (the role table, the token form, the hash
//! check); this module draws the randomness, stores records in the catalog and converts to
//! the API's messages. Tokens are checked on every call against the store, so a revocation
//! holds from the next call on. An assignment stream opened before a revocation runs until it
//! is closed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_api::router::{Access, Principal, Verifier, VerifyFuture};
use shoal_api::v1::credential_service_server::CredentialService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{Action, CredentialName, CredentialRecord, Role, Token, page_size};
use tonic::{Request, Response, Status};

use crate::control_plane::{ControlPlane, now_ms};
use crate::convert::timestamp;
use crate::error::ServerError;

/// The file, in the data directory, that receives the bootstrap admin's token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The name of the admin credential created when there is none.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// The access rule for a control plane's API port: bearer credentials checked against
/// `control`'s credential table; a loopback caller without a token is the admin `local`
/// if and only if `trust_loopback`.
pub fn access(control: &Arc<ControlPlane>, trust_loopback: bool) -> Access {
    Access::Credentials {
        verifier: control.clone(),
        trust_loopback,
    }
}

/// A new token from the system's random source (never a weaker fallback: a guessable token
/// is a hole).
fn new_token() -> Result<Token, ServerError> {
    use std::io::Read;
    let mut random = [0u8; 40];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| ServerError::Random(e.to_string()))?;
    Ok(Token::from_random(random))
}

/// Writes `token` to `path`, readable by this user only (mode 0600), replacing what is there.
fn write_token_file(path: &Path, token: &Token) -> Result<(), ServerError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |e: std::io::Error| ServerError::TokenFile {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    // `mode` applies only to a file it creates; an old file keeps its bits otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    writeln!(file, "{}", token.reveal()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

/// A new `bootstrap` admin credential, with its token already written to
/// `<data_dir>/admin.token` (mode 0600): the file first, since a credential nobody can read
/// would lock the admins out. The caller stores the record with `only_if_none` and removes
/// the file if another was stored first ([`ControlPlane::bootstrapped`]).
pub(crate) fn bootstrap_record(
    data_dir: &Path,
) -> Result<(CredentialRecord, PathBuf), ServerError> {
    let token = new_token()?;
    let name: CredentialName = BOOTSTRAP_NAME
        .parse()
        .map_err(|_| ServerError::Internal("the bootstrap name is valid"))?;
    let record = CredentialRecord::issue(&token, name, Role::Admin, "bootstrap", now_ms());
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_token_file(&path, &token)?;
    Ok((record, path))
}

impl ControlPlane {
    /// Checks that the caller of `request` may perform `action`; the caller. A request that
    /// never passed the access layer (a call from inside this process) is the admin `local`.
    /// Every service method calls this first, so gRPC and REST are judged alike.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` naming the caller, the role it holds and the roles that would do.
    pub fn authorize<T>(&self, request: &Request<T>, action: Action) -> Result<Principal, Status> {
        let principal = Principal::from_request(request);
        shoal_control::authorize(principal.role, action).map_err(|denied| {
            tracing::warn!(principal = %principal.name, role = %principal.role, ?action, "refused");
            ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} is refused: {denied}; ask an admin for a credential with that role",
                    principal.name
                ),
            )
            .with("role", principal.role.as_str())
            .with(
                "needed",
                shoal_control::auth::roles_for(action)
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })?;
        Ok(principal)
    }
}

impl Verifier for ControlPlane {
    fn verify<'a>(&'a self, presented: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(presented))
    }
}

impl ControlPlane {
    /// The principal a presented token stands for, read linearizably: a credential revoked
    /// through any server node is refused from the next call on, on every one.
    async fn verify_token(&self, presented: &str) -> Result<Principal, ApiError> {
        let unauthenticated = |m: String| ApiError::new(ErrorCode::Unauthenticated, m);
        let token = Token::parse(presented).map_err(|e| {
            unauthenticated(format!(
                "the bearer token is {e}; check --token / SHOAL_TOKEN or the token file"
            ))
        })?;
        let record = self.catalog.credential(token.id).await?;
        match record {
            Some(record) if record.verify(&token) => Ok(Principal {
                name: record.name.to_string(),
                role: record.role,
            }),
            Some(record) if record.revoked_ms.is_some() => Err(unauthenticated(format!(
                "credential {} was revoked; ask an admin for a new one (`shoal token issue`)",
                record.name
            ))),
            _ => Err(unauthenticated(
                "the bearer token is not known to this control plane; ask an admin for one (`shoal token issue`)"
                    .to_owned(),
            )),
        }
    }
}

/// The API form of a credential (never its secret or hash).
fn credential_message(record: &CredentialRecord) -> v1::Credential {
    v1::Credential {
        id: record.id.to_hex(),
        name: record.name.to_string(),
        role: record.role.to_string(),
        created_at: Some(timestamp(record.created_ms)),
        created_by: record.created_by.clone(),
        revoked_at: record.revoked_ms.map(timestamp),
    }
}

fn credential_name(name: &str) -> Result<CredentialName, ApiError> {
    name.parse()
        .map_err(|e: shoal_control::CredentialNameError| {
            ApiError::new(ErrorCode::InvalidArgument, format!("name: {e}"))
        })
}

/// The order credentials are listed in, and the key a page resumes after: the name, then the
/// id (a space sorts before every character a name may hold).
fn list_key(record: &CredentialRecord) -> String {
    format!("{} {}", record.name, record.id)
}

#[tonic::async_trait]
impl CredentialService for ControlPlane {
    async fn issue_credential(
        &self,
        request: Request<v1::IssueCredentialRequest>,
    ) -> Result<Response<v1::IssueCredentialResponse>, Status> {
        let by = self.authorize(&request, Action::ManageCredentials)?.name;
        let req = request.into_inner();
        let name = credential_name(&req.name)?;
        let role: Role = req.role.parse().map_err(|e: shoal_control::RoleError| {
            ApiError::new(ErrorCode::InvalidArgument, format!("role: {e}"))
        })?;
        let token = new_token()?;
        let record = CredentialRecord::issue(&token, name, role, &by, now_ms());
        self.catalog.issue_credential(&record, false).await?;
        tracing::info!(name = %record.name, role = %role, id = %record.id, by, "credential issued");
        Ok(Response::new(v1::IssueCredentialResponse {
            credential: Some(credential_message(&record)),
            token: token.reveal(),
        }))
    }

    async fn list_credentials(
        &self,
        request: Request<v1::ListCredentialsRequest>,
    ) -> Result<Response<v1::ListCredentialsResponse>, Status> {
        self.authorize(&request, Action::ManageCredentials)?;
        let req = request.into_inner();
        let after = self.open_page_token(&req.page_token)?;
        let size = page_size(req.page_size);
        let mut all = self.catalog.credentials().await?;
        all.sort_by_cached_key(list_key);
        let mut page: Vec<(String, CredentialRecord)> = all
            .into_iter()
            .map(|r| (list_key(&r), r))
            .filter(|(key, _)| after.as_ref().is_none_or(|a| key > a))
            .take(size + 1)
            .collect();
        let next_page_token = self.finish_page(&mut page, size, |(key, _)| key.as_str())?;
        Ok(Response::new(v1::ListCredentialsResponse {
            credentials: page.iter().map(|(_, r)| credential_message(r)).collect(),
            next_page_token,
        }))
    }

    async fn revoke_credential(
        &self,
        request: Request<v1::RevokeCredentialRequest>,
    ) -> Result<Response<v1::RevokeCredentialResponse>, Status> {
        let by = self.authorize(&request, Action::ManageCredentials)?.name;
        let name = credential_name(&request.into_inner().name)?;
        let record = self.catalog.revoke_credential(&name, now_ms()).await?;
        tracing::info!(name = %record.name, id = %record.id, by, "credential revoked");
        Ok(Response::new(v1::RevokeCredentialResponse {
            credential: Some(credential_message(&record)),
        }))
    }
}
