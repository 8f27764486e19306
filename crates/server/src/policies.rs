//! Policies over the API: `shoal.v1.PolicyService` (admins set, list and remove policies;
//! anyone may ask which rules a node is under).
//!
//! The rules and how several combine are [`shoal_control::policy`]'s; this module stores
//! policies in the catalog database and wakes every assignment stream when one changes, since
//! each node's rules travel with its assignments and agents apply them to running transfers.

use shoal_api::v1::policy_service_server::PolicyService;
use shoal_api::{ApiError, ErrorCode, v1};
use shoal_control::{Action, Labels, MAX_POLICIES, Policy, PolicyName, Rules, Selector, page_size};
use tonic::{Request, Response, Status};

use crate::control_plane::{ControlPlane, lock, now_ms};
use crate::convert::timestamp;
use crate::placements::{name_arg, node_id};

impl ControlPlane {
    /// The rules a node with `labels` is under, and the policies they come from.
    pub(crate) fn node_policy(&self, labels: &Labels) -> v1::NodePolicy {
        let (rules, names) = shoal_control::effective(lock(&self.policies).values(), labels);
        v1::NodePolicy {
            rules: Some(rules_message(&rules)),
            policies: names.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The API form of a rule set.
pub(crate) fn rules_message(rules: &Rules) -> v1::PolicyRules {
    v1::PolicyRules {
        upload_rate: rules.upload_rate,
        download_rate: rules.download_rate,
        max_peers: rules.max_peers,
        seed_retention_seconds: rules.seed_retention_secs,
        quota_bytes: rules.quota_bytes,
    }
}

/// A rule set from the API form.
pub fn rules_from(message: &v1::PolicyRules) -> Rules {
    Rules {
        upload_rate: message.upload_rate,
        download_rate: message.download_rate,
        max_peers: message.max_peers,
        seed_retention_secs: message.seed_retention_seconds,
        quota_bytes: message.quota_bytes,
    }
}

fn policy_message(policy: &Policy) -> v1::Policy {
    v1::Policy {
        name: policy.name.to_string(),
        selector: policy.selector.to_string(),
        rules: Some(rules_message(&policy.rules)),
        updated_at: Some(timestamp(policy.updated_ms)),
        updated_by: policy.updated_by.clone(),
    }
}

fn not_found(name: &PolicyName) -> ApiError {
    ApiError::new(
        ErrorCode::PolicyNotFound,
        format!("there is no policy {name}; `shoal policies` lists them"),
    )
    .with("name", name.to_string())
}

#[tonic::async_trait]
impl PolicyService for ControlPlane {
    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<Response<v1::Policy>, Status> {
        let by = self.authorize(&request, Action::ChangePolicy)?.name;
        let req = request.into_inner();
        let name = name_arg(&req.name)?;
        let selector: Selector =
            req.selector
                .parse()
                .map_err(|e: shoal_control::SelectorError| {
                    ApiError::new(ErrorCode::InvalidSelector, e.to_string())
                        .with("selector", req.selector.clone())
                })?;
        let rules = rules_from(&req.rules.unwrap_or_default());
        rules
            .validate()
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let policy = Policy {
            name: name.clone(),
            selector,
            rules,
            updated_ms: now_ms(),
            updated_by: by.clone(),
        };
        {
            let table = lock(&self.policies);
            if !table.contains_key(&name) && table.len() >= MAX_POLICIES {
                return Err(ApiError::new(
                    ErrorCode::RequestTooLarge,
                    format!(
                        "there are {MAX_POLICIES} policies already, the most a control plane \
                         holds; remove one, or widen an existing policy's selector"
                    ),
                )
                .into());
            }
        }
        // The observer, on every server node, puts it in the table and wakes the streams.
        self.catalog.put_policy(&policy).await?;
        tracing::info!(policy = %name, selector = %policy.selector, rules = ?policy.rules, by, "policy set");
        Ok(Response::new(policy_message(&policy)))
    }

    async fn list_policies(
        &self,
        request: Request<v1::ListPoliciesRequest>,
    ) -> Result<Response<v1::ListPoliciesResponse>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let after = self
            .open_page_token(&req.page_token)?
            .map(|a| name_arg(&a))
            .transpose()?;
        let size = page_size(req.page_size);
        let table = lock(&self.policies);
        let mut page: Vec<&Policy> = match &after {
            Some(after) => table
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(_, p)| p)
                .take(size + 1)
                .collect(),
            None => table.values().take(size + 1).collect(),
        };
        let next_page_token = self.finish_page(&mut page, size, |p| p.name.as_str())?;
        Ok(Response::new(v1::ListPoliciesResponse {
            policies: page.into_iter().map(policy_message).collect(),
            next_page_token,
        }))
    }

    async fn delete_policy(
        &self,
        request: Request<v1::DeletePolicyRequest>,
    ) -> Result<Response<v1::DeletePolicyResponse>, Status> {
        let by = self.authorize(&request, Action::ChangePolicy)?.name;
        let name = name_arg(&request.into_inner().name)?;
        let removed = {
            let table = lock(&self.policies);
            let Some(policy) = table.get(&name) else {
                return Err(not_found(&name).into());
            };
            policy_message(policy)
        };
        // The observer, on every server node, removes it and wakes the streams.
        if !self.catalog.delete_policy(name.as_str()).await? {
            return Err(not_found(&name).into());
        }
        tracing::info!(policy = %name, by, "policy removed");
        Ok(Response::new(v1::DeletePolicyResponse {
            policy: Some(removed),
        }))
    }

    async fn get_node_policy(
        &self,
        request: Request<v1::GetNodePolicyRequest>,
    ) -> Result<Response<v1::NodePolicy>, Status> {
        self.authorize(&request, Action::Read)?;
        let req = request.into_inner();
        let id = node_id(&req.node_id)?;
        let labels = lock(&self.nodes).get(&id).map(|r| r.labels.clone());
        let Some(labels) = labels else {
            return Err(ApiError::new(
                ErrorCode::NodeNotFound,
                format!("no node {id} has registered; `shoal nodes` lists them"),
            )
            .with("node_id", id.to_string())
            .into());
        };
        Ok(Response::new(self.node_policy(&labels)))
    }
}
