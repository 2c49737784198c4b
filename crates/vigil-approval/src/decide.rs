//! Deciding a request: approve, deny or revoke, by a human (proven by their own token, or vouched
//! for by the admin token). The decision, and the grant or statement approval it gives, are
//! recorded before they take effect; the grant is built here and nowhere else.

use crate::error::ApprovalError;
use crate::notify::Notice;
use crate::ports::{ApprovalUse, StatementApproval};
use crate::records::grant_issued;
use crate::requests::Caller;
use crate::rules::{
    check_approver, grant_window, later, status, AccessRequest, Decision, RequestStatus, Subject,
};
use crate::service::Approvals;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::{AccessDecided, GrantRevoked};
use vigil_core::{AuthMethod, Event, EventDraft, IdentityKind, Principal, Timestamp};
use vigil_policy::{ApprovalRule, Grant, GrantSource, PolicyConfig};

/// What an approver does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Approve,
    Deny,
    /// Ends the grant an approved request issued (its sessions end), or voids the approval of a
    /// held statement not run yet.
    Revoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Revoke => "revoke",
        }
    }
}

/// Not `approve`, `deny` or `revoke`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown action {0:?}: use approve, deny or revoke")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        match s {
            "approve" => Ok(Action::Approve),
            "deny" => Ok(Action::Deny),
            "revoke" => Ok(Action::Revoke),
            other => Err(UnknownAction(other.to_string())),
        }
    }
}

/// Who decides: a human identity, and how they proved it.
struct Approver {
    name: String,
    kind: IdentityKind,
    groups: Vec<String>,
    auth: AuthMethod,
}

impl Approver {
    /// The approver as the records name them.
    fn principal(&self) -> Arc<Principal> {
        Arc::new(Principal {
            name: self.name.clone(),
            kind: self.kind,
            auth_method: self.auth,
            issuer: None,
            subject: None,
            credential_id: None,
        })
    }
}

/// What a decision changes besides the request.
#[derive(Default)]
struct Effects {
    grant: Option<Grant>,
    statement_approval: Option<StatementApproval>,
}

impl Approvals {
    /// `action` on request `id` by `caller` (with the admin token: acting as the human
    /// `acting_as`), with `rationale`. Returns the request as it now stands.
    pub async fn decide(
        &self,
        caller: &Caller,
        id: &str,
        action: Action,
        rationale: &str,
        acting_as: Option<&str>,
    ) -> Result<AccessRequest, ApprovalError> {
        let approver = self.approver(caller, acting_as)?;
        let decided = self.decide_as(approver, id, action, rationale).await;
        if let Err(e) = &decided {
            if e.kind() == crate::error::ErrorKind::Failed {
                tracing::error!(error = %e, "access request decision failed");
            }
        }
        decided
    }

    fn approver(
        &self,
        caller: &Caller,
        acting_as: Option<&str>,
    ) -> Result<Approver, ApprovalError> {
        let (name, auth) = match (caller, acting_as) {
            (Caller::Admin, Some(name)) => (name.to_string(), AuthMethod::AdminToken),
            (Caller::Admin, None) => return Err(ApprovalError::AdminMustNameApprover),
            (Caller::Identity(p), None) => (p.name.clone(), p.auth_method),
            (Caller::Identity(_), Some(_)) => return Err(ApprovalError::OnlyAdminActsForOthers),
        };
        let identity = self
            .identities
            .get(&name)
            .ok_or_else(|| ApprovalError::UndeclaredApprover(name.clone()))?;
        Ok(Approver {
            name,
            kind: identity.kind,
            groups: identity.groups.clone(),
            auth,
        })
    }

    async fn decide_as(
        &self,
        approver: Approver,
        id: &str,
        action: Action,
        rationale: &str,
    ) -> Result<AccessRequest, ApprovalError> {
        let _one_at_a_time = self.deciding.lock().await;
        let stored = self
            .load(id)
            .await?
            .ok_or_else(|| ApprovalError::NoSuchRequest(id.to_string()))?;
        let (mut request, version) = (stored.request, stored.version);
        let rule = self
            .rule(&request)
            .ok_or(ApprovalError::NoLongerNeedsApproval)?;
        let now = Timestamp::now();
        let check = |rule: &ApprovalRule, request: &AccessRequest| {
            check_approver(
                rule,
                request,
                &approver.name,
                approver.kind,
                &approver.groups,
                rationale,
                now,
            )
        };
        let mut effects = Effects::default();
        if action == Action::Revoke {
            if request.status != RequestStatus::Approved {
                return Err(ApprovalError::NothingToRevoke(request.status.as_str()));
            }
            // Revoking needs the same standing as approving (at any hour), on an approved
            // request: checked as if it were pending.
            let mut as_pending = request.clone();
            as_pending.status = RequestStatus::Pending;
            as_pending.decisions.clear();
            as_pending.expires_at = later(now, Duration::from_secs(1));
            let mut any_hour = rule.clone();
            any_hour.allowed_hours = None;
            check(&any_hour, &as_pending)?;
            request.status = RequestStatus::Revoked;
        } else {
            check(&rule, &request)?;
            request.decisions.push(Decision {
                approver: approver.name.clone(),
                approver_kind: approver.kind,
                approver_groups: approver.groups.clone(),
                approve: action == Action::Approve,
                rationale: rationale.to_string(),
                at: now,
            });
            request.status = status(&rule, &request, now);
            effects = self.effects_of(&rule, &mut request, now);
        }
        self.record_decision(&approver, &request, action, rationale, &effects)
            .await?;
        // Recorded: now it takes effect.
        let gave = effects.grant.is_some() || effects.statement_approval.is_some();
        if let Some(grant) = effects.grant {
            self.blocking(move |s| s.insert_grant(&grant)).await?;
        }
        // Kept before the request reads approved, so that a waiting statement finds it.
        if let Some(approval) = effects.statement_approval {
            self.blocking(move |s| s.insert_statement_approval(&approval))
                .await?;
        }
        if action == Action::Revoke {
            self.void(&request, &approver.name, rationale, "(revoked)", now)
                .await?;
        }
        let saved = request.clone();
        if !self
            .blocking(move |s| s.update_access_request(&saved, version))
            .await?
        {
            if gave {
                self.withdraw(&approver, &request, now).await?;
            }
            return Err(ApprovalError::ChangedWhileDeciding);
        }
        tracing::info!(request = %request.id, action = action.as_str(), approver = %approver.name, status = request.status.as_str(), "access request decided");
        self.notifier
            .notify(Notice::RequestDecided, &request, &self.sink);
        self.changed();
        Ok(request)
    }

    /// What a decision that leaves `request` in its new status gives: a grant (an approved
    /// session or elevation), or the approval of one held statement.
    fn effects_of(
        &self,
        rule: &ApprovalRule,
        request: &mut AccessRequest,
        now: Timestamp,
    ) -> Effects {
        let mut effects = Effects::default();
        if let Subject::Statement {
            statement_digest, ..
        } = &request.subject
        {
            // A held statement: approval lets that exact statement run once; no grant.
            match request.status {
                RequestStatus::Approved => {
                    effects.statement_approval = Some(StatementApproval {
                        request_id: request.id.clone(),
                        identity: request.identity.clone(),
                        connection: request.connection.clone(),
                        statement_digest: statement_digest.clone(),
                        approved_at: now,
                        expires_at: later(now, rule.pending_expiry),
                        used_at: None,
                        used_session: None,
                    })
                }
                RequestStatus::Pending => {}
                _ => self.literal_texts.forget(&request.id),
            }
        } else if request.status == RequestStatus::Approved {
            let policy = self
                .policy(request.subject.policy())
                .expect("the rule came from this policy");
            let grant = issue_grant(policy, rule, request, now);
            request.grant_id = Some(grant.id.clone());
            effects.grant = Some(grant);
        }
        effects
    }

    /// Records the decision (and the grant it issues, or the revocation) as `approver`, all or
    /// nothing: nothing takes effect if the audit trail does not take it.
    async fn record_decision(
        &self,
        approver: &Approver,
        request: &AccessRequest,
        action: Action,
        rationale: &str,
        effects: &Effects,
    ) -> Result<(), ApprovalError> {
        let principal = approver.principal();
        let mut events = vec![Event::AccessDecided(AccessDecided {
            request_id: request.id.clone(),
            action: action.as_str().to_string(),
            approver: approver.name.clone(),
            approver_kind: approver.kind,
            approver_auth: approver.auth.as_str().to_string(),
            rationale: rationale.to_string(),
            status: request.status.as_str().to_string(),
            grant_id: effects.grant.as_ref().map(|g| g.id.clone()),
            identity_name: Some(request.identity.clone()),
            connection_name: Some(request.connection.clone()),
        })];
        if let Some(grant) = &effects.grant {
            events.push(Event::GrantIssued(grant_issued(grant)));
        }
        if action == Action::Revoke {
            if let Some(grant_id) = &request.grant_id {
                events.push(Event::GrantRevoked(GrantRevoked {
                    grant_id: grant_id.clone(),
                    revoked_by: approver.name.clone(),
                    reason: Some(rationale.to_string()),
                }));
            }
        }
        let drafts = events
            .into_iter()
            .map(|e| {
                let mut d = EventDraft::new(e);
                d.identity = Some(principal.clone());
                d.connection = Some(request.connection.as_str().into());
                d
            })
            .collect();
        self.sink
            .append_all(drafts)
            .await
            .map_err(|source| ApprovalError::NotRecorded {
                what: "the decision",
                source,
            })?;
        Ok(())
    }

    /// Another decider changed the request between our read and our write, so it does not
    /// read approved: the grant or statement approval this decision kept is withdrawn (else it
    /// would give access all the same: sessions take live grants from the store), and the
    /// trail says so.
    async fn withdraw(
        &self,
        approver: &Approver,
        request: &AccessRequest,
        now: Timestamp,
    ) -> Result<(), ApprovalError> {
        const WHY: &str = "the request changed while deciding";
        tracing::warn!(request = %request.id, "a decision was overtaken: what it gave is withdrawn");
        self.void(request, &approver.name, WHY, "(withdrawn)", now)
            .await?;
        if let Some(grant_id) = &request.grant_id {
            let mut d = EventDraft::new(Event::GrantRevoked(GrantRevoked {
                grant_id: grant_id.clone(),
                revoked_by: approver.name.clone(),
                reason: Some(WHY.to_string()),
            }));
            d.identity = Some(approver.principal());
            d.connection = Some(request.connection.as_str().into());
            // Done already: recorded in the background, kept until the trail takes it.
            self.sink.append_detached(d);
        }
        Ok(())
    }

    /// A revocation takes effect: an approved statement not run yet has its approval voided
    /// (marked used by `void_session`); a grant is revoked in the store and its live sessions
    /// end.
    async fn void(
        &self,
        request: &AccessRequest,
        by: &str,
        rationale: &str,
        void_session: &str,
        now: Timestamp,
    ) -> Result<(), ApprovalError> {
        if let Subject::Statement {
            statement_digest, ..
        } = &request.subject
        {
            self.literal_texts.forget(&request.id);
            self.use_statement_approval(ApprovalUse {
                identity: request.identity.clone(),
                connection: request.connection.clone(),
                statement_digest: statement_digest.clone(),
                request_id: Some(request.id.clone()),
                at: Timestamp::now(),
                session: void_session.into(),
            })
            .await?;
        }
        if let Some(grant_id) = request.grant_id.clone() {
            let (by, why, id) = (by.to_string(), rationale.to_string(), grant_id.clone());
            self.blocking(move |s| s.revoke_grant(&id, now, &by, &why))
                .await?;
            self.revocations.revoke(&grant_id);
        }
        Ok(())
    }
}

/// The grant an approved request issues: its policy's scope, for the window the rule allows.
fn issue_grant(
    policy: &PolicyConfig,
    rule: &ApprovalRule,
    request: &AccessRequest,
    now: Timestamp,
) -> Grant {
    let (not_before, expires_at) = grant_window(rule, request, now);
    Grant {
        id: uuid::Uuid::now_v7().to_string(),
        identity: request.identity.clone(),
        connection: request.connection.clone(),
        source: GrantSource::Approval,
        policy: Some(policy.name.clone()),
        scope_digest: policy.scope.digest(),
        scope: policy.scope.clone(),
        not_before,
        expires_at: Some(expires_at),
        created_at: now,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        request_id: Some(request.id.clone()),
    }
}
