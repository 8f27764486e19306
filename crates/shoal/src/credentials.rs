//! The credential commands (`token issue`, `token revoke`, `tokens`): gRPC calls to the control
//! plane's `CredentialService`, printed as text or as the API's proto3 JSON. A token is printed
//! once, on stdout alone, so `shoal token issue ... > file` stores exactly the token.

use shoal_api::v1;
use shoal_api::v1::credential_service_client::CredentialServiceClient;

use crate::cli::{ClientArgs, TokenArgs, TokenCommand, TokensArgs};
use crate::client::{PAGE_SIZE, Transport, control_plane, every_page, failed, runtime};
use crate::output::{json_value, line, status};

const WHAT: &str = "control plane";

fn client(server: &str, client: &ClientArgs) -> anyhow::Result<CredentialServiceClient<Transport>> {
    Ok(CredentialServiceClient::new(control_plane(server, client)?))
}

/// `shoal token ...`
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let server = args.server.url;
    match args.command {
        TokenCommand::Issue(issue) => {
            let request = v1::IssueCredentialRequest {
                name: issue.name,
                role: issue.role,
            };
            let issued = runtime()?.block_on(async {
                client(&server, &issue.client)?
                    .issue_credential(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| failed(&s, &server, WHAT))
            })?;
            if issue.client.json {
                return json_value(&issued);
            }
            let credential = issued.credential.unwrap_or_default();
            status(&format!(
                "issued credential {} (role {}, id {}); the token below is shown only now: store it",
                credential.name, credential.role, credential.id
            ));
            line(&issued.token);
            Ok(())
        }
        TokenCommand::Revoke(revoke) => {
            let request = v1::RevokeCredentialRequest { name: revoke.name };
            let revoked = runtime()?.block_on(async {
                client(&server, &revoke.client)?
                    .revoke_credential(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| failed(&s, &server, WHAT))
            })?;
            if revoke.client.json {
                return json_value(&revoked);
            }
            let credential = revoked.credential.unwrap_or_default();
            line(&format!(
                "revoked credential {} (role {}, id {})",
                credential.name, credential.role, credential.id
            ));
            Ok(())
        }
    }
}

/// `shoal tokens`
pub fn list(args: TokensArgs) -> anyhow::Result<()> {
    let server = args.server.url;
    let credentials = runtime()?.block_on(async {
        let client = client(&server, &args.client)?;
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::ListCredentialsRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.list_credentials(request).await?.into_inner();
                Ok((page.credentials, page.next_page_token))
            }
        })
        .await
        .map_err(|s| failed(&s, &server, WHAT))
    })?;
    if args.client.json {
        return json_value(&v1::ListCredentialsResponse {
            credentials,
            next_page_token: String::new(),
        });
    }
    for c in credentials {
        let when = |t: Option<&shoal_api::wkt::Timestamp>| {
            t.and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        line(&format!(
            "{:<32} {:<10} {}  issued {} by {}{}",
            c.name,
            c.role,
            c.id,
            when(c.created_at.as_ref()),
            c.created_by,
            match c.revoked_at.as_ref() {
                Some(t) => format!("  REVOKED {}", when(Some(t))),
                None => String::new(),
            }
        ));
    }
    Ok(())
}
