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

/// How bad a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The gateway refuses to start with it.
    Error,
    /// Valid, but almost certainly not what was meant.
    Warning,
}

/// One finding of [`check`]: which policy, which field (dotted path from the policy, e.g.
/// `scope.window.timezone`), and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// An identity as [`check`] needs it: name, groups, connections it may use.
pub struct DeclaredIdentity<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
    pub connections: &'a [String],
}

/// Checks a set of policies against the declared identities, groups and connections; returns
/// the first error.
pub fn validate(
    policies: &[PolicyConfig],
    identities: &[(&str, &[String])],
    connections: &[&str],
) -> Result<(), PolicyError> {
    let declared: Vec<DeclaredIdentity<'_>> = identities
        .iter()
        .map(|(name, groups)| DeclaredIdentity {
            name,
            groups,
            connections: &[],
        })
        .collect();
    match check(policies, &declared, connections)
        .into_iter()
        .find(|p| p.severity == Severity::Error)
    {
        Some(p) => Err(PolicyError {
            policy: p.policy,
            problem: match p.field {
                Some(f) => format!("{f}: {}", p.message),
                None => p.message,
            },
        }),
        None => Ok(()),
    }
}

/// Every error and warning in a set of policies, in file order.
pub fn check(
    policies: &[PolicyConfig],
    identities: &[DeclaredIdentity<'_>],
    connections: &[&str],
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let groups: HashSet<&str> = identities
        .iter()
        .flat_map(|i| i.groups.iter().map(String::as_str))
        .collect();
    for p in policies {
        let mut push = |severity, field: &str, message: String| {
            out.push(Problem {
                severity,
                policy: p.name.clone(),
                field: (!field.is_empty()).then(|| field.to_string()),
                message,
            })
        };
        use Severity::{Error, Warning};
        if p.name.is_empty() {
            push(Error, "name", "a policy needs a name".into());
        } else if !names.insert(p.name.as_str()) {
            push(Error, "name", "declared twice".into());
        }
        if p.identities.is_empty() && p.groups.is_empty() {
            push(
                Error,
                "identities",
                "binds nobody: give identities or groups".into(),
            );
        }
        for i in &p.identities {
            match identities.iter().find(|d| d.name == i) {
                None => push(
                    Error,
                    "identities",
                    format!("identity {i:?} is not declared under [[identities]]"),
                ),
                Some(d) if !d.connections.is_empty() => {
                    for c in &p.connections {
                        if !d.connections.contains(c) {
                            push(Warning, "identities", format!("identity {i:?} may not use connection {c:?} (its `connections` lack it), so this policy never applies to it there"));
                        }
                    }
                }
                Some(_) => {}
            }
        }
        for g in &p.groups {
            if !groups.contains(g.as_str()) {
                push(
                    Error,
                    "groups",
                    format!("no identity belongs to group {g:?}"),
                );
            }
        }
        if p.connections.is_empty() {
            push(Error, "connections", "names no connection".into());
        }
        for c in &p.connections {
            if !connections.contains(&c.as_str()) {
                push(
                    Error,
                    "connections",
                    format!("connection {c:?} is not declared under [[connections]]"),
                );
            }
        }
        for (field, message) in p.scope.problems(Error) {
            push(Error, &format!("scope.{field}"), message);
        }
        for (field, message) in p.scope.problems(Warning) {
            push(Warning, &format!("scope.{field}"), message);
        }
        if let Some(review) = &p.statement_review {
            if let Err(e) = review.validate() {
                push(Error, "statement_review", e);
            }
        }
        if let Some(rule) = &p.approval {
            if let Err(e) = rule.validate() {
                push(Error, "approval", e);
            }
        }
        let approver_groups: Vec<&String> = p
            .approval
            .iter()
            .flat_map(|r| r.approver_groups.iter())
            .chain(
                p.statement_review
                    .iter()
                    .flat_map(|r| r.approver_groups.iter()),
            )
            .collect();
        for g in approver_groups {
            if !groups.contains(g.as_str()) {
                push(
                    Error,
                    "approval",
                    format!("no identity belongs to approver group {g:?}"),
                );
            }
        }
        for g in p
            .statement_review
            .iter()
            .flat_map(|r| r.reveal_literals_groups.iter())
        {
            if !groups.contains(g.as_str()) {
                push(
                    Error,
                    "statement_review.reveal_literals_groups",
                    format!("no identity belongs to group {g:?}"),
                );
            }
        }
    }
    out
}
