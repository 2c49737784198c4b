//! Deciding one text as the gateway would: the grants a session would hold, and the verdict.

use super::catalog::LoadedCatalog;
use crate::config::Config;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::Timestamp;
use vigil_policy::{Decision, Grant};
use vigil_sql::{Access, HazardKind, StatementAccess};

/// What the gateway would do with a text.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub(super) enum Verdict {
    Allowed {
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    Refused {
        rule: String,
        reason: String,
        sqlstate: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// Refused by the grants a session holds without asking, allowed by the scope of an
    /// approval-required policy: the gateway raises an access request for it (at connect time
    /// when no standing grant binds, else as an elevation of the session).
    NeedsApproval(Box<NeedsApproval>),
    /// Without a catalog the names cannot be resolved, and nothing else refuses it.
    Undecided { reason: String },
}

impl Verdict {
    pub(super) fn refused(rule: &str, reason: String) -> Verdict {
        Verdict::Refused {
            rule: rule.into(),
            reason,
            sqlstate: "42501".into(),
            policy: None,
        }
    }
}

/// What an approval would allow, and who approves.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(super) struct NeedsApproval {
    pub policy: String,
    pub approver_groups: Vec<String>,
    pub min_approvals: usize,
    /// `fail` or `wait`.
    pub mode: String,
    /// Why the standing grants refuse it.
    pub rule: String,
    pub reason: String,
}

/// Rules whose refusals do not depend on what names resolve to: trusted even without a
/// catalog.
const CATALOG_FREE_RULES: &[&str] = &[
    "command_class",
    "read_only",
    "construct_denied",
    "function_denied",
    "execute_unknown",
    "unparseable",
    "no_grant",
    "grant_not_live",
];

/// What a session of an identity on a connection would hold at an instant: standing grants,
/// and the grants approval-required policies would give once approved.
pub(super) struct SessionGrants {
    /// From standing policies (ids are `policy:NAME`).
    pub standing: Vec<Arc<Grant>>,
    /// From approval-required policies (ids are `approval:NAME`), with their rules.
    pub on_approval: Vec<(Arc<Grant>, vigil_policy::ApprovalRule)>,
    /// Policies that grant nothing then.
    pub notes: Vec<String>,
}

/// The grants a session of `identity` on `connection` would hold at `at`, from `config`'s
/// policies, with notes on policies that grant nothing then; or the refusal of the login
/// itself.
pub(super) fn grants_at(
    config: &Config,
    identity: &str,
    connection: &str,
    at: Timestamp,
) -> Result<SessionGrants, Verdict> {
    let Some(declared) = config.identities.iter().find(|i| i.name == identity) else {
        return Err(Verdict::refused(
            "connection_not_allowed",
            format!("identity \"{identity}\" is not declared, so it cannot log in"),
        ));
    };
    if !declared.may_use(connection) {
        return Err(Verdict::refused(
            "connection_not_allowed",
            format!("identity \"{identity}\" may not use connection \"{connection}\" (its `connections` lack it)"),
        ));
    }
    let mut out = SessionGrants {
        standing: Vec::new(),
        on_approval: Vec::new(),
        notes: Vec::new(),
    };
    for p in config
        .policies
        .iter()
        .filter(|p| p.binds(identity, &declared.groups, connection))
    {
        let id = match p.approval {
            Some(_) => format!("approval:{}", p.name),
            None => format!("policy:{}", p.name),
        };
        match (
            Grant::from_policy(p, identity, connection, at, id),
            &p.approval,
        ) {
            (Some(g), None) => out.standing.push(Arc::new(g)),
            (Some(g), Some(rule)) => out.on_approval.push((Arc::new(g), rule.clone())),
            (None, _) => out.notes.push(format!(
                "policy {:?} grants nothing at {at}: its time window is closed",
                p.name
            )),
        }
    }
    Ok(out)
}

/// Decides `access` as the gateway would for a session holding `grants`: with its standing
/// grants, and, where they refuse, an approval-required policy whose scope allows it.
pub(super) fn session_verdict(
    grants: &SessionGrants,
    access: &Access,
    catalog: &LoadedCatalog,
    at: Timestamp,
) -> Verdict {
    let standing = verdict(&grants.standing, access, catalog, at);
    let Verdict::Refused { rule, reason, .. } = &standing else {
        return standing;
    };
    for (grant, approval) in &grants.on_approval {
        if let Verdict::Allowed { .. } = verdict(std::slice::from_ref(grant), access, catalog, at) {
            return Verdict::NeedsApproval(Box::new(NeedsApproval {
                policy: grant.policy.clone().unwrap_or_default(),
                approver_groups: approval.approver_groups.clone(),
                min_approvals: approval.min_approvals,
                mode: match approval.mode {
                    vigil_policy::PendingMode::Fail => "fail".into(),
                    vigil_policy::PendingMode::Wait => "wait".into(),
                },
                rule: rule.clone(),
                reason: reason.clone(),
            }));
        }
    }
    standing
}

/// Decides `access` as the gateway's `decide` would, and without a catalog says what cannot
/// be known rather than guessing.
pub(super) fn verdict(
    grants: &[Arc<Grant>],
    access: &Access,
    catalog: &LoadedCatalog,
    at: Timestamp,
) -> Verdict {
    let policy_of = |id: Option<&str>| {
        id.map(|i| {
            i.trim_start_matches("policy:")
                .trim_start_matches("approval:")
                .to_string()
        })
    };
    let decided =
        |access: &Access| match vigil_policy::decide(grants, access, &*catalog.functions(), at) {
            Decision::Allow(g) => Verdict::Allowed {
                policy: g.policy.clone(),
            },
            Decision::Deny { denial, grant_id } => Verdict::Refused {
                rule: denial.rule.into(),
                reason: denial.reason,
                sqlstate: denial.sqlstate.into(),
                policy: policy_of(grant_id.as_deref()),
            },
        };
    if !catalog.offline() || access.parse_error.is_some() || access.is_complete() {
        return decided(access);
    }
    // Without a catalog, a refusal is certain only if every grant refuses for a reason that
    // does not depend on what the names resolve to; anything else is not guessed.
    let mut without_names = access.clone();
    for s in &mut without_names.statements {
        s.unresolved.clear();
    }
    let certain = |v: &Verdict| matches!(v, Verdict::Refused { rule, .. } if CATALOG_FREE_RULES.contains(&rule.as_str()));
    let overall = decided(&without_names);
    let every_grant_refuses = grants.iter().all(|g| {
        let one = std::slice::from_ref(g);
        match vigil_policy::decide(one, &without_names, &*catalog.functions(), at) {
            Decision::Allow(_) => false,
            Decision::Deny { denial, .. } => CATALOG_FREE_RULES.contains(&denial.rule),
        }
    });
    if certain(&overall) && every_grant_refuses {
        return overall;
    }
    let names: Vec<String> = access
        .statements
        .iter()
        .flat_map(|s| s.unresolved.iter().map(|u| u.to_string()))
        .collect();
    Verdict::Undecided {
        reason: format!(
            "without a catalog Vigil cannot resolve {} (which schema a relation is in, which relation a column belongs to, what * stands for); pass --catalog-from upstream or a URL",
            names.join(", ")
        ),
    }
}

/// `EXECUTE name` decided on what `PREPARE name` prepared earlier (as the gateway does).
pub(super) fn with_prepared(
    access: &Arc<Access>,
    prepared: &HashMap<String, StatementAccess>,
) -> Arc<Access> {
    let executes = |s: &StatementAccess| {
        s.hazards.iter().find_map(|h| match &h.kind {
            HazardKind::RunsPrepared { name } => Some(name.clone()),
            _ => None,
        })
    };
    if !access.statements.iter().any(|s| executes(s).is_some()) {
        return access.clone();
    }
    let mut copy = (**access).clone();
    for s in &mut copy.statements {
        if let Some(p) = executes(s).and_then(|n| prepared.get(&n)) {
            *s = p.clone();
        }
    }
    Arc::new(copy)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::super::catalog::LoadedCatalog;
    use super::*;
    use vigil_sql::{Analyzer, LexOptions, StaticCatalog};
    fn grant(scope: &str) -> Arc<Grant> {
        let policy: vigil_policy::PolicyConfig = toml::from_str(&format!(
            "name = \"p\"\nidentities = [\"i\"]\nconnections = [\"c\"]\n[scope]\n{scope}"
        ))
        .unwrap();
        Arc::new(Grant::from_policy(&policy, "i", "c", Timestamp::now(), "g".into()).unwrap())
    }
    #[test]
    fn without_a_catalog_only_certain_refusals_are_reported() {
        let offline = LoadedCatalog {
            database: None,
            empty: StaticCatalog::new([], vec!["public".into()]),
            source: String::new(),
        };
        let reader = grant(
            "commands = [\"read\"]\nrelations = [\"*\"]\ndeny_columns = { \"t\" = [\"secret\"] }",
        );
        let writer = grant("commands = [\"write\"]\nrelations = [\"public.t\"]");
        let analyzer = Analyzer::new(16);
        let decide = |grants: &[Arc<Grant>], sql: &str| {
            let access = analyzer.access(sql, LexOptions::default(), offline.relations());
            verdict(grants, &access, &offline, Timestamp::now())
        };
        let both = [reader.clone(), writer];
        assert!(
            matches!(decide(&both, "DROP TABLE t"), Verdict::Refused { rule, .. } if rule == "command_class")
        );
        assert!(matches!(
            decide(&both, "SET ROLE admin"),
            Verdict::Refused { .. }
        ));
        // The reader refuses a DELETE for certain, but the writer might allow it: undecided.
        assert!(matches!(
            decide(&both, "DELETE FROM t"),
            Verdict::Undecided { .. }
        ));
        // `*` over a relation with denied columns cannot be judged without the catalog.
        let star = decide(&[reader], "SELECT * FROM t");
        assert!(
            matches!(&star, Verdict::Undecided { reason } if reason.contains("relation t")),
            "{star:?}"
        );
        assert!(
            matches!(decide(&[], "SELECT 1"), Verdict::Refused { rule, .. } if rule == "no_grant")
        );
    }
}
