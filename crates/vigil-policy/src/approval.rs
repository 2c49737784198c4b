//! Approval rules: a policy whose access needs a human's approval first (`[policies.approval]`).
//! The requests, decisions and quorum logic live in `vigil-approval`; the rule is part of the
//! policy, so it lives here.

use crate::window::Window;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a client does while its request is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PendingMode {
    /// The connection waits for the decision (up to `wait_timeout`), with a notice naming the
    /// request and where to approve it.
    Wait,
    /// The connection fails at once (SQLSTATE 28000) naming the request; the client retries
    /// after approval.
    #[default]
    Fail,
}

/// `[policies.approval]`: a policy whose access needs a human's approval first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Groups whose members may approve.
    pub approver_groups: Vec<String>,
    /// Approvals needed (default 1).
    #[serde(default = "one")]
    pub min_approvals: usize,
    /// Whether each approver group must give at least one of the approvals.
    #[serde(default)]
    pub require_all_groups: bool,
    /// Longest grant an approval may give (default 1h); requests ask for less or get this.
    #[serde(default = "default_max_duration", with = "humantime_serde")]
    pub max_duration: Duration,
    /// When approvals may be given (e.g. office hours); outside it they are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hours: Option<Window>,
    /// How long a request stays pending before it expires (default 30m).
    #[serde(default = "default_pending_expiry", with = "humantime_serde")]
    pub pending_expiry: Duration,
    #[serde(default)]
    pub mode: PendingMode,
    /// With `mode = "wait"`: how long a connection waits (default 5m; the wait also ends when
    /// the request expires).
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait_timeout: Duration,
}

fn one() -> usize {
    1
}
fn default_max_duration() -> Duration {
    Duration::from_secs(3600)
}
fn default_pending_expiry() -> Duration {
    Duration::from_secs(1800)
}
fn default_wait() -> Duration {
    Duration::from_secs(300)
}

impl ApprovalRule {
    pub fn validate(&self) -> Result<(), String> {
        if self.approver_groups.is_empty() {
            return Err("approval: approver_groups must name at least one group".into());
        }
        if self.min_approvals == 0 {
            return Err("approval: min_approvals must be at least 1".into());
        }
        if self.require_all_groups && self.min_approvals < self.approver_groups.len() {
            return Err(format!(
                "approval: require_all_groups needs min_approvals >= {} (one per group)",
                self.approver_groups.len()
            ));
        }
        if self.max_duration.is_zero() || self.pending_expiry.is_zero() {
            return Err("approval: max_duration and pending_expiry must be positive".into());
        }
        if let Some(w) = &self.allowed_hours {
            w.validate()
                .map_err(|e| format!("approval: allowed_hours: {e}"))?;
        }
        Ok(())
    }
}

/// `[policies.statement_review]`: statements a standing grant of this policy allows only once a
/// human approved that exact statement (it then runs once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementReviewRule {
    /// What is held: `ddl`, `delete_without_where`, `update_without_where`.
    pub statements: Vec<String>,
    pub approver_groups: Vec<String>,
    #[serde(default = "one")]
    pub min_approvals: usize,
    /// How long a held statement's request stays pending (default 30m); an approval not used
    /// within as long after the decision lapses.
    #[serde(default = "default_pending_expiry", with = "humantime_serde")]
    pub pending_expiry: Duration,
    /// `fail` (default): the statement is refused naming the request, and runs once when sent
    /// again after approval. `wait`: the statement is held (the client waits, told by a notice)
    /// and runs once as soon as it is approved.
    #[serde(default)]
    pub mode: PendingMode,
    /// With `mode = "wait"`: how long a statement is held (default 5m; the hold also ends when
    /// the request expires).
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// Groups whose human members may see a held statement's text with its literals (kept in
    /// the gateway's memory only, never stored). Everyone else sees the literal-free text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reveal_literals_groups: Vec<String>,
}

impl StatementReviewRule {
    pub const KINDS: [&'static str; 3] = ["ddl", "delete_without_where", "update_without_where"];

    /// The approval rule its requests are decided under (approvers, quorum, expiry, mode).
    pub fn approval_rule(&self) -> ApprovalRule {
        ApprovalRule {
            approver_groups: self.approver_groups.clone(),
            min_approvals: self.min_approvals,
            require_all_groups: false,
            max_duration: self.pending_expiry,
            allowed_hours: None,
            pending_expiry: self.pending_expiry,
            mode: self.mode,
            wait_timeout: self.wait_timeout,
        }
    }

    /// Whether `groups` (a viewer's) may see held statements' literals.
    pub fn reveals_literals_to(&self, groups: &[String]) -> bool {
        groups
            .iter()
            .any(|g| self.reveal_literals_groups.contains(g))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.statements.is_empty() {
            return Err("statement_review: statements must name at least one kind".into());
        }
        for s in &self.statements {
            if !Self::KINDS.contains(&s.as_str()) {
                return Err(format!(
                    "statement_review: unknown kind {s:?} (ddl, delete_without_where, update_without_where)"
                ));
            }
        }
        if self.mode == PendingMode::Wait && self.wait_timeout.is_zero() {
            return Err("statement_review: wait_timeout must be positive".into());
        }
        self.approval_rule()
            .validate()
            .map_err(|e| e.replacen("approval:", "statement_review:", 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_review_modes_and_literal_viewers() {
        let r: StatementReviewRule = toml::from_str(
            "statements = [\"ddl\"]\napprover_groups = [\"dba\"]\nmode = \"wait\"\nwait_timeout = \"2m\"\nreveal_literals_groups = [\"dba-leads\"]\n",
        )
        .unwrap();
        r.validate().unwrap();
        assert_eq!(r.approval_rule().mode, PendingMode::Wait);
        assert_eq!(r.approval_rule().wait_timeout, Duration::from_secs(120));
        assert!(r.reveals_literals_to(&["x".into(), "dba-leads".into()]));
        assert!(!r.reveals_literals_to(&["dba".into()]));
        let default: StatementReviewRule =
            toml::from_str("statements = [\"ddl\"]\napprover_groups = [\"dba\"]\n").unwrap();
        assert_eq!(default.mode, PendingMode::Fail);
        assert!(!default.reveals_literals_to(&["dba".into()]));
        let bad: Result<StatementReviewRule, _> = toml::from_str(
            "statements = [\"ddl\"]\napprover_groups = [\"dba\"]\nmode = \"later\"\n",
        );
        assert!(bad.is_err());
    }
}
