//! The gateway's side of approvals for sessions: a session without a grant raises (or reuses) a
//! request for its access; a live session's statement that needs an approval-required scope
//! raises one for the elevation, or takes on a grant approved meanwhile.

use crate::error::{ApprovalError, NotApproved};
use crate::ports::{RequestFilter, StoreFailure};
use crate::requests::{NewRequest, Requester};
use crate::rules::{AccessRequest, Subject};
use crate::service::{human, Approvals, Outcome, Pending};
use std::sync::Arc;
use vigil_core::event::StatementShape;
use vigil_core::{Principal, Timestamp};
use vigil_policy::{Grant, GrantSource, Scope};

/// A session's statement that needs the scope of an approval-required policy.
pub struct ScopeAsk<'a> {
    pub principal: &'a Principal,
    pub connection: &'a str,
    pub session_id: &'a str,
    pub client_addr: &'a str,
    /// What the client said it needs the access for.
    pub reason: Option<&'a str>,
    /// The approval-required policy whose scope allows the statement.
    pub policy: &'a str,
    /// The statement's literal-free text and fingerprint (what approvers see).
    pub shape: &'a StatementShape,
}

impl Approvals {
    /// A session of `principal` on `connection` has no live grant: if an approval rule would
    /// grant it, the request raised (or reused) for it. `None`: no rule applies.
    pub async fn session_access(
        self: &Arc<Self>,
        principal: &Principal,
        connection: &str,
        client_addr: &str,
        reason: Option<&str>,
    ) -> Result<Option<Pending<()>>, ApprovalError> {
        let identity = principal.name.as_str();
        let Some((policy, rule)) = self.policy_for(identity, connection, None) else {
            return Ok(None);
        };
        let (policy, rule) = (policy.name.clone(), rule.clone());
        let request = match self.pending_scope(identity, connection, &policy).await? {
            Some(r) => r,
            None => {
                let requester = Requester {
                    identity: identity.to_string(),
                    principal: Some(Arc::new(principal.clone())),
                };
                let ask = NewRequest {
                    connection: connection.to_string(),
                    policy: Some(policy),
                    reason: reason.map(str::to_string),
                    duration: None,
                    client_addr: Some(client_addr.to_string()),
                };
                self.create(requester, ask).await?
            }
        };
        let how = self.notifier.how_to_approve(&request.id);
        let message = format!(
            "access to connection \"{connection}\" needs approval: access request {} is pending",
            request.id
        );
        let notice = format!(
            "{message}; waiting up to {} for a decision ({how})",
            human(rule.wait_timeout)
        );
        let hint = format!("{how}; then connect again");
        Ok(Some(self.pending(
            request.id,
            rule.mode,
            rule.wait_timeout,
            (message, hint),
            notice,
            |_, _| async { Ok(()) },
        )))
    }

    /// The approval-required policies (and their scopes) a session of `principal` on
    /// `connection` may be elevated to.
    pub fn elevations(&self, principal: &Principal, connection: &str) -> Vec<(String, Arc<Scope>)> {
        self.approval_policies(&principal.name, connection)
            .into_iter()
            .map(|(p, _)| (p.name.clone(), Arc::new(p.scope.clone())))
            .collect()
    }

    /// A statement the session's grants refuse and `ask.policy`'s scope allows: a live grant
    /// approved under that policy, or the request raised (or reused) for it.
    pub async fn elevate(
        self: &Arc<Self>,
        ask: ScopeAsk<'_>,
    ) -> Result<Outcome<Arc<Grant>>, ApprovalError> {
        let identity = ask.principal.name.as_str();
        let Some((policy, rule)) = self.policy_for(identity, ask.connection, Some(ask.policy))
        else {
            return Err(ApprovalError::PolicyNoLongerApplies {
                policy: ask.policy.to_string(),
                identity: identity.to_string(),
            });
        };
        let (policy, rule) = (policy.name.clone(), rule.clone());
        // Approved since the session started (this session's request, another's, or one
        // raised ahead of time): the session takes the grant on.
        if let Some(grant) = self
            .live_approved_grant(identity, ask.connection, &policy)
            .await?
        {
            return Ok(Outcome::Ready(Arc::new(grant)));
        }
        let request = self
            .pending_or_raise(
                self.pending_scope(identity, ask.connection, &policy),
                || AccessRequest {
                    duration: rule.max_duration,
                    // Reasons come from clients: bounded, and never echoed into logs.
                    reason: ask.reason.map(|r| r.chars().take(500).collect()),
                    client_addr: Some(ask.client_addr.to_string()),
                    ..Self::draft(
                        identity,
                        ask.connection,
                        Subject::Scope {
                            policy: policy.clone(),
                            session_id: ask.session_id.to_string(),
                            fingerprint: ask.shape.fingerprint.clone(),
                            text: ask.shape.text.clone(),
                        },
                        rule.pending_expiry,
                    )
                },
                ask.principal,
            )
            .await?;
        let id = request.id.clone();
        let how = self.notifier.how_to_approve(&id);
        let message = format!(
            "this statement needs the scope of policy \"{policy}\", which requires approval: access request {id} is pending"
        );
        let hint = format!(
            "nothing was run; {how}; then send the statement again (it runs under the approved grant until that grant expires; the session keeps its other grants)"
        );
        let notice = format!(
            "{message}; the statement waits up to {} for a decision ({how})",
            human(rule.wait_timeout)
        );
        Ok(Outcome::Pending(self.pending(
            id,
            rule.mode,
            rule.wait_timeout,
            (message, hint),
            notice,
            |approvals, approved| async move { approvals.granted(&approved).await },
        )))
    }

    /// A pending request for `policy`'s scope of `identity` on `connection` (connecting
    /// again, or another statement that needs the same scope, reuses it).
    async fn pending_scope(
        &self,
        identity: &str,
        connection: &str,
        policy: &str,
    ) -> Result<Option<AccessRequest>, ApprovalError> {
        self.pending_where(identity, connection, |r| {
            matches!(&r.subject, Subject::Access { policy: p } | Subject::Scope { policy: p, .. } if p == policy)
        })
        .await
    }

    /// A live grant approved under `policy` for `identity` on `connection`, citing its request.
    async fn live_approved_grant(
        &self,
        identity: &str,
        connection: &str,
        policy: &str,
    ) -> Result<Option<Grant>, ApprovalError> {
        let now = Timestamp::now();
        let (who, on) = (identity.to_string(), connection.to_string());
        let found = self
            .blocking(move |s| s.live_grants(&who, &on, now))
            .await?;
        for mut grant in found.into_iter().rev() {
            if grant.source != GrantSource::Approval
                || grant.policy.as_deref() != Some(policy)
                || self.revocations.is_revoked(&grant.id)
                || grant.live(now).is_err()
            {
                continue;
            }
            grant.request_id = self.request_of_grant(&grant.id).await?;
            return Ok(Some(grant));
        }
        Ok(None)
    }

    /// The request whose approval issued grant `grant_id`.
    async fn request_of_grant(&self, grant_id: &str) -> Result<Option<String>, ApprovalError> {
        let filter = RequestFilter {
            grant_id: Some(grant_id.to_string()),
            limit: Some(1),
            ..Default::default()
        };
        let found = self.blocking(move |s| s.access_requests(&filter)).await?;
        match found.into_iter().next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v.request.id)),
            // Only its id is needed, which a damaged row still gives.
            Some(Err(StoreFailure::UnreadableRequest { id })) => Ok(Some(id)),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// The grant approved `request` issued, as a session holds it.
    async fn granted(&self, request: &AccessRequest) -> Result<Arc<Grant>, NotApproved> {
        let id = request.id.clone();
        let grant_id = request
            .grant_id
            .clone()
            .ok_or_else(|| NotApproved::NoGrant(id.clone()))?;
        let gid = grant_id.clone();
        let mut grant = self
            .blocking(move |s| s.grant(&gid))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read an approved grant");
                NotApproved::GrantUnreadable(id.clone())
            })?
            .ok_or_else(|| NotApproved::GrantGone {
                id: id.clone(),
                grant_id,
            })?;
        grant.request_id = Some(id);
        Ok(Arc::new(grant))
    }
}
