//! The rules of just-in-time approval, pure: requests and their subjects, decisions, where a
//! request stands (quorum, denial, expiry), who may decide, the grant window.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;
use vigil_core::{IdentityKind, Timestamp};
use vigil_policy::ApprovalRule;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    /// Nobody decided before `expires_at`.
    Expired,
    /// Approved, then its grant was revoked.
    Revoked,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
            RequestStatus::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for RequestStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::Expired,
            RequestStatus::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// Not one of the statuses a request can have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown request status {0:?}")]
pub struct UnknownStatus(pub String);

/// One approver's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approver: String,
    pub approver_kind: IdentityKind,
    /// The approver's groups when deciding (which groups the approval counts for).
    pub approver_groups: Vec<String>,
    pub approve: bool,
    pub rationale: String,
    pub at: Timestamp,
}

/// What an access request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A session's access under a policy's scope (asked for at connect time, or ahead of time
    /// through the API).
    Access { policy: String },
    /// A live session's elevation to a policy's scope: a statement its grants refused, and this
    /// scope allows, asked for it. Approved, it issues the same grant as `Access` (new sessions
    /// hold it too).
    Scope {
        policy: String,
        /// The session that asked.
        session_id: String,
        /// Fingerprint and literal-free text of the statement that asked.
        fingerprint: String,
        text: String,
    },
    /// One held statement (per-statement review): runs once if approved.
    Statement {
        policy: String,
        /// Fingerprint of the literal-free text.
        fingerprint: String,
        /// The literal-free text (what reviewers see unless their role may see literals).
        text: String,
        /// SHA-256 of the exact statement bytes: an approval is for this statement only.
        statement_digest: String,
        /// The session that sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
}

impl Subject {
    /// The policy whose rule decides the request.
    pub fn policy(&self) -> &str {
        match self {
            Subject::Access { policy }
            | Subject::Scope { policy, .. }
            | Subject::Statement { policy, .. } => policy,
        }
    }
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub identity: String,
    pub connection: String,
    pub subject: Subject,
    /// How long the requester wants the grant for (capped by the rule's `max_duration`).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub reason: Option<String>,
    pub client_addr: Option<String>,
    pub created_at: Timestamp,
    /// When a pending request expires.
    pub expires_at: Timestamp,
    pub decisions: Vec<Decision>,
    /// Set once decided.
    pub status: RequestStatus,
    pub grant_id: Option<String>,
}

/// Why an approver's decision is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApproverRefused {
    #[error("the requester cannot approve or deny its own request")]
    SelfApproval,
    #[error("{0} is not in any of the approver groups of this request")]
    NotAnApprover(String),
    #[error("only human identities may decide requests")]
    NotHuman,
    #[error("a rationale is required")]
    NoRationale,
    #[error("the request is {0}, not pending")]
    NotPending(&'static str),
    #[error("{0} has already decided this request")]
    AlreadyDecided(String),
    #[error("approvals are not accepted at this time (outside the rule's allowed hours)")]
    OutsideHours,
}

/// Checks that `approver` may decide `request` under `rule` now.
pub fn check_approver(
    rule: &ApprovalRule,
    request: &AccessRequest,
    approver: &str,
    kind: IdentityKind,
    groups: &[String],
    rationale: &str,
    now: Timestamp,
) -> Result<(), ApproverRefused> {
    let status = status(rule, request, now);
    if status != RequestStatus::Pending {
        return Err(ApproverRefused::NotPending(status.as_str()));
    }
    if approver == request.identity {
        return Err(ApproverRefused::SelfApproval);
    }
    if kind != IdentityKind::Human {
        return Err(ApproverRefused::NotHuman);
    }
    if !groups.iter().any(|g| rule.approver_groups.contains(g)) {
        return Err(ApproverRefused::NotAnApprover(approver.to_string()));
    }
    if rationale.trim().is_empty() {
        return Err(ApproverRefused::NoRationale);
    }
    if request.decisions.iter().any(|d| d.approver == approver) {
        return Err(ApproverRefused::AlreadyDecided(approver.to_string()));
    }
    if rule.allowed_hours.as_ref().is_some_and(|w| !w.is_open(now)) {
        return Err(ApproverRefused::OutsideHours);
    }
    Ok(())
}

/// Where `request` stands under `rule` at `now`: one denial denies; approvals reaching the
/// quorum (and covering every group, if required) approve; past `expires_at` a pending request
/// is expired.
pub fn status(rule: &ApprovalRule, request: &AccessRequest, now: Timestamp) -> RequestStatus {
    if matches!(
        request.status,
        RequestStatus::Denied | RequestStatus::Revoked | RequestStatus::Expired
    ) {
        return request.status;
    }
    if request.decisions.iter().any(|d| !d.approve) {
        return RequestStatus::Denied;
    }
    let approvals: Vec<&Decision> = request.decisions.iter().filter(|d| d.approve).collect();
    let groups_covered: BTreeSet<&String> = approvals
        .iter()
        .flat_map(|d| d.approver_groups.iter())
        .filter(|g| rule.approver_groups.contains(g))
        .collect();
    let quorum = approvals.len() >= rule.min_approvals
        && (!rule.require_all_groups || groups_covered.len() == rule.approver_groups.len());
    if quorum {
        return RequestStatus::Approved;
    }
    if now >= request.expires_at {
        return RequestStatus::Expired;
    }
    RequestStatus::Pending
}

/// The grant window an approved request gives: from `now` for the requested duration, capped
/// by the rule.
pub fn grant_window(
    rule: &ApprovalRule,
    request: &AccessRequest,
    now: Timestamp,
) -> (Timestamp, Timestamp) {
    let d = request.duration.min(rule.max_duration);
    (
        now,
        Timestamp::from_micros(now.as_micros() + d.as_micros() as i64),
    )
}

/// `t` plus `d`.
pub(crate) fn later(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(t.as_micros() + d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ApprovalRule {
        toml::from_str(
            r#"
approver_groups = ["dba-oncall", "security"]
min_approvals = 2
require_all_groups = true
max_duration = "2h"
pending_expiry = "30m"
"#,
        )
        .unwrap()
    }

    fn request(now: Timestamp) -> AccessRequest {
        AccessRequest {
            id: "r1".into(),
            identity: "etl".into(),
            connection: "ehr".into(),
            subject: Subject::Access { policy: "p".into() },
            duration: Duration::from_secs(8 * 3600),
            reason: Some("backfill".into()),
            client_addr: None,
            created_at: now,
            expires_at: Timestamp::from_micros(now.as_micros() + 1_800_000_000),
            decisions: Vec::new(),
            status: RequestStatus::Pending,
            grant_id: None,
        }
    }

    fn decision(who: &str, group: &str, approve: bool, now: Timestamp) -> Decision {
        Decision {
            approver: who.into(),
            approver_kind: IdentityKind::Human,
            approver_groups: vec![group.into()],
            approve,
            rationale: "ticket OPS-1".into(),
            at: now,
        }
    }

    #[test]
    fn quorum_needs_every_group_when_asked() {
        let now = Timestamp::now();
        let r = rule();
        r.validate().unwrap();
        let mut req = request(now);
        assert_eq!(status(&r, &req, now), RequestStatus::Pending);
        req.decisions
            .push(decision("alice", "dba-oncall", true, now));
        req.decisions.push(decision("bob", "dba-oncall", true, now));
        assert_eq!(
            status(&r, &req, now),
            RequestStatus::Pending,
            "two approvals, one group"
        );
        req.decisions.push(decision("carol", "security", true, now));
        assert_eq!(status(&r, &req, now), RequestStatus::Approved);
        let (from, to) = grant_window(&r, &req, now);
        assert_eq!(
            to.micros_since(from),
            2 * 3600 * 1_000_000,
            "capped by max_duration"
        );
    }

    #[test]
    fn one_denial_denies_and_pending_expires() {
        let now = Timestamp::now();
        let r = rule();
        let mut req = request(now);
        let later = Timestamp::from_micros(req.expires_at.as_micros() + 1);
        assert_eq!(status(&r, &req, later), RequestStatus::Expired);
        req.decisions
            .push(decision("alice", "dba-oncall", false, now));
        assert_eq!(status(&r, &req, now), RequestStatus::Denied);
    }

    #[test]
    fn approvers_are_checked() {
        let now = Timestamp::now();
        let r = rule();
        let req = request(now);
        let dba = vec!["dba-oncall".to_string()];
        assert_eq!(
            check_approver(&r, &req, "etl", IdentityKind::Human, &dba, "ok", now),
            Err(ApproverRefused::SelfApproval)
        );
        assert_eq!(
            check_approver(
                &r,
                &req,
                "mallory",
                IdentityKind::Human,
                &["finance".into()],
                "ok",
                now
            ),
            Err(ApproverRefused::NotAnApprover("mallory".into()))
        );
        assert_eq!(
            check_approver(&r, &req, "bot", IdentityKind::Machine, &dba, "ok", now),
            Err(ApproverRefused::NotHuman)
        );
        assert_eq!(
            check_approver(&r, &req, "alice", IdentityKind::Human, &dba, "  ", now),
            Err(ApproverRefused::NoRationale)
        );
        assert!(check_approver(&r, &req, "alice", IdentityKind::Human, &dba, "OPS-1", now).is_ok());
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut r = rule();
        r.min_approvals = 1;
        assert!(
            r.validate().is_err(),
            "require_all_groups with too few approvals"
        );
        let r: Result<ApprovalRule, _> = toml::from_str("approver_groups = []\nbogus = 1\n");
        assert!(r.is_err());
    }
}
