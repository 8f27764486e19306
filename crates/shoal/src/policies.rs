//! The policy commands (`policies`, `policy set|rm|node`): gRPC calls to the control plane's
//! `PolicyService`, printed as text or as the API's proto3 JSON.

use shoal_api::v1;
use shoal_api::v1::policy_service_client::PolicyServiceClient;

use crate::cli::{
    ClientArgs, PoliciesArgs, PolicyArgs, PolicyCommand, PolicyNodeArgs, PolicySetArgs,
};
use crate::client::{PAGE_SIZE, Transport, control_plane, every_page, failed, runtime};
use crate::output::{json_value, line, status};
use crate::units::format_size;

const WHAT: &str = "control plane";

fn client(server: &str, client: &ClientArgs) -> anyhow::Result<PolicyServiceClient<Transport>> {
    Ok(PolicyServiceClient::new(control_plane(server, client)?))
}

/// A rule set in words: `upload 10.0 MiB/s, quota 50.0 GiB`; `no limits` when empty.
pub fn describe(rules: &v1::PolicyRules) -> String {
    let mut parts = Vec::new();
    match rules.upload_rate {
        Some(0) => parts.push("leech-only (no uploads)".to_owned()),
        Some(rate) => parts.push(format!("upload {}/s", format_size(rate))),
        None => {}
    }
    if let Some(rate) = rules.download_rate {
        parts.push(format!("download {}/s", format_size(rate)));
    }
    if let Some(peers) = rules.max_peers {
        parts.push(format!("max {peers} peers"));
    }
    if let Some(secs) = rules.seed_retention_seconds {
        parts.push(format!("retain {} after placements end", duration(secs)));
    }
    if let Some(quota) = rules.quota_bytes {
        parts.push(format!("quota {}", format_size(quota)));
    }
    if parts.is_empty() {
        "no limits (share freely)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Seconds in the largest whole unit: `90s`, `30m`, `8h`, `7d`.
fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `shoal policies`
pub fn list(args: PoliciesArgs) -> anyhow::Result<()> {
    let server = args.server.url;
    let policies = runtime()?.block_on(async {
        let client = client(&server, &args.client)?;
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::ListPoliciesRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.list_policies(request).await?.into_inner();
                Ok((page.policies, page.next_page_token))
            }
        })
        .await
        .map_err(|s| failed(&s, &server, WHAT))
    })?;
    if args.client.json {
        return json_value(&v1::ListPoliciesResponse {
            policies,
            next_page_token: String::new(),
        });
    }
    for p in policies {
        line(&format!(
            "{:<24} {:<28} {}",
            p.name,
            if p.selector.is_empty() {
                "(every node)"
            } else {
                &p.selector
            },
            describe(&p.rules.unwrap_or_default())
        ));
    }
    Ok(())
}

/// `shoal policy ...`
pub fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let server = args.server.url;
    match args.command {
        PolicyCommand::Set(set) => set_policy(&server, set),
        PolicyCommand::Rm(name) => {
            let removed = runtime()?.block_on(async {
                client(&server, &name.client)?
                    .delete_policy(v1::DeletePolicyRequest {
                        name: name.name.clone(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| failed(&s, &server, WHAT))
            })?;
            if name.client.json {
                return json_value(&removed);
            }
            status(&format!(
                "policy {} removed; its nodes follow the other policies now",
                name.name
            ));
            Ok(())
        }
        PolicyCommand::Node(node) => node_policy(&server, node),
    }
}

fn set_policy(server: &str, args: PolicySetArgs) -> anyhow::Result<()> {
    let rules = v1::PolicyRules {
        upload_rate: if args.leech_only {
            Some(0)
        } else {
            args.upload_rate
        },
        download_rate: args.download_rate,
        max_peers: args.max_peers,
        seed_retention_seconds: args.retain_after.map(|d| d.as_secs()),
        quota_bytes: args.quota,
    };
    let request = v1::SetPolicyRequest {
        name: args.name,
        selector: args.to,
        rules: Some(rules),
    };
    let policy = runtime()?.block_on(async {
        client(server, &args.client)?
            .set_policy(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(&s, server, WHAT))
    })?;
    if args.client.json {
        return json_value(&policy);
    }
    status(&format!(
        "policy {} for {}: {}; agents apply it now",
        policy.name,
        if policy.selector.is_empty() {
            "every node".to_owned()
        } else {
            format!("`{}`", policy.selector)
        },
        describe(&policy.rules.unwrap_or_default())
    ));
    Ok(())
}

fn node_policy(server: &str, args: PolicyNodeArgs) -> anyhow::Result<()> {
    let policy = runtime()?.block_on(async {
        client(server, &args.client)?
            .get_node_policy(v1::GetNodePolicyRequest {
                node_id: args.node_id.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(&s, server, WHAT))
    })?;
    if args.client.json {
        return json_value(&policy);
    }
    line(&format!(
        "{}: {}",
        args.node_id,
        describe(&policy.rules.unwrap_or_default())
    ));
    if policy.policies.is_empty() {
        line("  no policy matches it");
    } else {
        line(&format!("  from: {}", policy.policies.join(", ")));
    }
    Ok(())
}
