//! The approval service against fakes (`fakes.rs`): requests, decisions and quorum, the grant
//! written once, waiters woken, expiry, who may decide, elevation, held statements, and what a
//! failure to record stops. End to end (a real gateway, psql, the HTTP API) is proven by the
//! binary's `tests/gateway_approval.rs`.

mod deciders;
mod elevation;
mod fail_closed;
mod requests;
mod review;

use crate::fakes::{MemoryStore, RecordingSink, RevokedSet};
use crate::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use vigil_core::event::StatementShape;
use vigil_core::{AuthMethod, Event, IdentityKind, Principal, Timestamp};
use vigil_policy::{Grant, GrantSource, PolicyConfig};

/// (name, kind, groups)
const IDENTITIES: &[(&str, IdentityKind, &[&str])] = &[
    ("etl", IdentityKind::Machine, &["jit"]),
    ("bot", IdentityKind::Machine, &["dba"]),
    ("alice", IdentityKind::Human, &["dba"]),
    ("bob", IdentityKind::Human, &["security"]),
    ("carol", IdentityKind::Human, &["dba"]),
    ("mallory", IdentityKind::Human, &["finance"]),
];

struct World {
    approvals: Arc<Approvals>,
    store: Arc<MemoryStore>,
    sink: Arc<RecordingSink>,
    revoked: Arc<RevokedSet>,
}

fn policies(toml_text: &str) -> Vec<PolicyConfig> {
    #[derive(Deserialize)]
    struct Config {
        policies: Vec<PolicyConfig>,
    }
    toml::from_str::<Config>(toml_text).unwrap().policies
}

fn world(policy_toml: &str) -> World {
    let store = Arc::new(MemoryStore::default());
    let sink = Arc::new(RecordingSink::default());
    let revoked = Arc::new(RevokedSet::default());
    let identities: HashMap<String, KnownIdentity> = IDENTITIES
        .iter()
        .map(|(name, kind, groups)| {
            let groups = groups.iter().map(|g| g.to_string()).collect();
            (
                name.to_string(),
                KnownIdentity {
                    kind: *kind,
                    groups,
                },
            )
        })
        .collect();
    let approvals = Approvals::new(ApprovalParts {
        store: store.clone(),
        sink: sink.clone(),
        revocations: revoked.clone(),
        policies: policies(policy_toml),
        identities,
        public_url: Some("https://vigil.example.org:9480/".into()),
        webhooks: Vec::new(),
    })
    .unwrap();
    World {
        approvals: Arc::new(approvals),
        store,
        sink,
        revoked,
    }
}

fn principal(name: &str) -> Arc<Principal> {
    let (_, kind, _) = IDENTITIES.iter().find(|(n, _, _)| *n == name).unwrap();
    Arc::new(Principal {
        name: name.into(),
        kind: *kind,
        auth_method: match kind {
            IdentityKind::Human => AuthMethod::Oidc,
            _ => AuthMethod::ServiceToken,
        },
        issuer: None,
        subject: None,
        credential_id: None,
    })
}

fn caller(name: &str) -> Caller {
    Caller::Identity(principal(name))
}

/// A session policy of `etl` (group `jit`) on `ehr` needing approval under `rule`.
fn session_policy(rule: &str) -> String {
    format!(
        r#"
[[policies]]
name = "etl-on-approval"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["*"]
[policies.approval]
{rule}
"#
    )
}

/// A standing read policy and an approval-required write policy for elevations.
fn elevation_policies(rule: &str) -> String {
    format!(
        r#"
[[policies]]
name = "etl-reads"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["*"]

[[policies]]
name = "etl-writes"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write"]
relations = ["public.t"]
[policies.approval]
approver_groups = ["dba"]
{rule}
"#
    )
}

fn review_policy(mode: &str) -> String {
    format!(
        r#"
[[policies]]
name = "etl-with-review"
groups = ["jit"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl"]
relations = ["*"]
[policies.statement_review]
statements = ["ddl", "delete_without_where"]
approver_groups = ["dba"]
reveal_literals_groups = ["dba"]
{mode}
"#
    )
}

async fn session_ask(w: &World) -> Result<Option<Pending<()>>, ApprovalError> {
    w.approvals
        .session_access(&principal("etl"), "ehr", "10.0.0.7:50000", Some("backfill"))
        .await
}

fn request_id_of<T>(p: &Pending<T>) -> String {
    match p {
        Pending::Fail { request_id, .. } | Pending::Wait { request_id, .. } => request_id.clone(),
    }
}

fn wait_of<T>(p: Pending<T>) -> BoxFuture<'static, Result<T, NotApproved>> {
    match p {
        Pending::Wait { decided, .. } => decided,
        Pending::Fail { .. } => panic!("expected a wait"),
    }
}

async fn decide(
    w: &World,
    who: &str,
    id: &str,
    action: Action,
) -> Result<AccessRequest, ApprovalError> {
    w.approvals
        .decide(&caller(who), id, action, "ticket OPS-1", None)
        .await
}

fn grant_issued_records(w: &World) -> Vec<vigil_core::event::GrantIssued> {
    w.sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::GrantIssued(g) => Some(g),
            _ => None,
        })
        .collect()
}

fn analyzed(sql: &str) -> Arc<vigil_sql::Access> {
    let catalog = vigil_sql::StaticCatalog::new([], vec!["public".into()]);
    vigil_sql::Analyzer::new(16).access(sql, vigil_sql::LexOptions::default(), &catalog)
}

/// A standing grant of the reviewing policy.
fn policy_grant() -> Grant {
    let policy = &policies(&review_policy(""))[0];
    Grant::from_policy(policy, "etl", "ehr", Timestamp::now(), "g-standing".into()).unwrap()
}

const HELD: &str = "CREATE TABLE held_w (secret text DEFAULT 'x-literal-42')";

async fn hold(w: &World, grant: &Grant, session: &str) -> Result<Outcome<String>, ApprovalError> {
    let access = analyzed(HELD);
    w.approvals
        .hold(StatementAsk {
            principal: &principal("etl"),
            connection: "ehr",
            session_id: session,
            grant,
            access: &access,
            exact_text: HELD.as_bytes(),
            literal_text: Some(HELD.to_string()),
        })
        .await
}

#[test]
fn actions_and_statuses_read_as_the_api_writes_them() {
    for action in [Action::Approve, Action::Deny, Action::Revoke] {
        assert_eq!(action.as_str().parse::<Action>(), Ok(action));
    }
    assert_eq!(
        "grant".parse::<Action>().unwrap_err().to_string(),
        "unknown action \"grant\": use approve, deny or revoke"
    );
    assert_eq!(
        "expired".parse::<RequestStatus>(),
        Ok(RequestStatus::Expired)
    );
    assert!("used".parse::<RequestStatus>().is_err());
}

#[test]
fn a_standing_grant_is_recorded_as_issued_by_its_policy() {
    let policy = &policies(&review_policy(""))[0];
    let grant = Grant::from_policy(policy, "etl", "ehr", Timestamp::now(), "g-1".into()).unwrap();
    let record = grant_issued(&grant);
    assert_eq!(record.source, "policy");
    assert_eq!(record.policy.as_deref(), Some("etl-with-review"));
    assert_eq!(record.request_id, None);
    assert_eq!(record.scope_digest, grant.scope_digest);
    assert_eq!(
        record.scope,
        serde_json::from_str::<serde_json::Value>(&grant.scope.canonical_json()).unwrap()
    );
}
