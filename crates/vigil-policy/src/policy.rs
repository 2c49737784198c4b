//! Policies as configured: who (identities, groups) may use which connections under which
//! scope.

use crate::scope::Scope;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `[[policies]]` in the config file.
///
/// ```toml
/// [[policies]]
/// name = "claims-agent-reads"
/// identities = ["claims-agent"]
/// groups = ["analytics"]
/// connections = ["ehr"]
/// [policies.scope]
/// commands = ["read", "transaction", "session"]
/// relations = ["public.encounters", "public.diagnoses", "public.patients"]
/// deny_columns = { "public.patients" = ["ssn", "phone", "email"] }
/// row_cap = 1000
/// read_only = true
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Identities bound by name.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Identities bound through their groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Connections the scope applies to.
    pub connections: Vec<String>,
    pub scope: Scope,
    /// Access under this policy needs a human's approval first (docs/APPROVALS.md): no standing
    /// grant is issued; an approved access request issues a time-bound one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::approval::ApprovalRule>,
    /// Statements (DDL, DELETE/UPDATE without WHERE) a grant of this policy runs only once a
    /// human approved each one (docs/APPROVALS.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_review: Option<crate::approval::StatementReviewRule>,
}

impl PolicyConfig {
    /// Whether the policy binds `identity` (with `groups`) on `connection`.
    pub fn binds(&self, identity: &str, groups: &[String], connection: &str) -> bool {
        self.connections.iter().any(|c| c == connection)
            && (self.identities.iter().any(|i| i == identity)
                || self.groups.iter().any(|g| groups.contains(g)))
    }
}

/// A mistake in the policies, found at startup (or by `vigil policy check`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy {policy:?}: {problem}")]
pub struct PolicyError {
    pub policy: String,
    pub problem: String,
}

/// Checks a set of policies against the declared identities, groups and connections.
pub fn validate(
    policies: &[PolicyConfig],
    identities: &[(&str, &[String])],
    connections: &[&str],
) -> Result<(), PolicyError> {
    let mut names = HashSet::new();
    let groups: HashSet<&str> = identities
        .iter()
        .flat_map(|(_, g)| g.iter().map(String::as_str))
        .collect();
    for p in policies {
        let err = |problem: String| PolicyError {
            policy: p.name.clone(),
            problem,
        };
        if p.name.is_empty() {
            return Err(err("a policy needs a name".into()));
        }
        if !names.insert(p.name.as_str()) {
            return Err(err("declared twice".into()));
        }
        if p.identities.is_empty() && p.groups.is_empty() {
            return Err(err("binds nobody: give identities or groups".into()));
        }
        for i in &p.identities {
            if !identities.iter().any(|(n, _)| n == i) {
                return Err(err(format!(
                    "identity {i:?} is not declared under [[identities]]"
                )));
            }
        }
        for g in &p.groups {
            if !groups.contains(g.as_str()) {
                return Err(err(format!("no identity belongs to group {g:?}")));
            }
        }
        if p.connections.is_empty() {
            return Err(err("names no connection".into()));
        }
        for c in &p.connections {
            if !connections.contains(&c.as_str()) {
                return Err(err(format!(
                    "connection {c:?} is not declared under [[connections]]"
                )));
            }
        }
        p.scope.validate().map_err(|e| err(format!("scope: {e}")))?;
        if let Some(review) = &p.statement_review {
            review.validate().map_err(err)?;
        }
        let approver_groups = p
            .approval
            .iter()
            .flat_map(|r| r.approver_groups.iter())
            .chain(
                p.statement_review
                    .iter()
                    .flat_map(|r| r.approver_groups.iter()),
            );
        if let Some(rule) = &p.approval {
            rule.validate().map_err(err)?;
        }
        {
            for g in approver_groups {
                if !groups.contains(g.as_str()) {
                    return Err(err(format!(
                        "approval: no identity belongs to approver group {g:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}
