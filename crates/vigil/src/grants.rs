//! Grants from standing policies: issued (and recorded) when an identity first needs one,
//! reused while live, watched for revocation and expiry.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_approval::grant_issued;
use vigil_core::event::GrantExpired;
use vigil_core::{Event, EventDraft, EventSink, Principal, Timestamp};
use vigil_identity::IdentityConfig;
use vigil_pg::{BoxFuture, GrantProvider, Revocations};
use vigil_policy::{Grant, GrantSource, PolicyConfig, Scope};
use vigil_store::{AccessRequestFilter, AccessRequestStore, GrantFilter, GrantRecord, GrantStore};

/// The store's record of a grant, as the gateway uses it.
pub fn from_record(r: &GrantRecord) -> Result<Grant> {
    let scope: Scope = serde_json::from_str(&r.scope_json)
        .with_context(|| format!("grant {}: unreadable scope", r.id))?;
    Ok(Grant {
        id: r.id.clone(),
        identity: r.identity.clone(),
        connection: r.connection.clone(),
        source: if r.source == "approval" {
            GrantSource::Approval
        } else {
            GrantSource::Policy
        },
        policy: r.policy.clone(),
        scope,
        scope_digest: r.scope_digest.clone(),
        not_before: r.not_before,
        expires_at: r.expires_at,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
        revoked_by: r.revoked_by.clone(),
        revoke_reason: r.revoke_reason.clone(),
        request_id: None,
    })
}

pub fn to_record(g: &Grant) -> GrantRecord {
    GrantRecord {
        id: g.id.clone(),
        identity: g.identity.clone(),
        connection: g.connection.clone(),
        source: g.source.as_str().to_string(),
        policy: g.policy.clone(),
        scope_json: g.scope.canonical_json(),
        scope_digest: g.scope_digest.clone(),
        not_before: g.not_before,
        expires_at: g.expires_at,
        created_at: g.created_at,
        revoked_at: g.revoked_at,
        revoked_by: g.revoked_by.clone(),
        revoke_reason: g.revoke_reason.clone(),
        expired_at: None,
    }
}

/// Issues standing grants from the configured policies.
pub struct PolicyGrants {
    grants: Arc<dyn GrantStore>,
    /// Read for the request an approved grant came from.
    requests: Arc<dyn AccessRequestStore>,
    sink: Arc<dyn EventSink>,
    policies: Vec<PolicyConfig>,
    groups: HashMap<String, Vec<String>>,
    /// One issuance at a time, so that simultaneous first sessions share one grant.
    issuing: tokio::sync::Mutex<()>,
}

impl PolicyGrants {
    pub fn new(
        grants: Arc<dyn GrantStore>,
        requests: Arc<dyn AccessRequestStore>,
        sink: Arc<dyn EventSink>,
        policies: Vec<PolicyConfig>,
        identities: &[IdentityConfig],
    ) -> Self {
        PolicyGrants {
            grants,
            requests,
            sink,
            policies,
            groups: identities
                .iter()
                .map(|i| (i.name.clone(), i.groups.clone()))
                .collect(),
            issuing: tokio::sync::Mutex::new(()),
        }
    }

    async fn grants(&self, identity: &str, connection: &str) -> Result<Vec<Arc<Grant>>> {
        let _one_at_a_time = self.issuing.lock().await;
        let now = Timestamp::now();
        let store = self.grants.clone();
        // Every grant of the pair, revoked ones included: a revoked standing grant is not
        // re-issued under the same scope (see below).
        let filter = GrantFilter {
            identity: Some(identity.to_string()),
            connection: Some(connection.to_string()),
            live_at: None,
        };
        let all = tokio::task::spawn_blocking(move || store.list_grants(&filter)).await??;
        let live_record = |r: &GrantRecord| {
            r.revoked_at.is_none() && r.not_before <= now && r.expires_at.is_none_or(|e| e > now)
        };
        let existing: Vec<&GrantRecord> = all.iter().filter(|r| live_record(r)).collect();
        let groups = self.groups.get(identity).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for policy in self
            .policies
            .iter()
            .filter(|p| p.binds(identity, &groups, connection))
            // Access under an approval rule comes only from approved requests (below).
            .filter(|p| p.approval.is_none())
        {
            let digest = policy.scope.digest();
            let reusable = existing.iter().find(|r| {
                r.source == "policy"
                    && r.policy.as_deref() == Some(&policy.name)
                    && r.scope_digest == digest
            });
            // An operator revoked this policy's grant: the revocation stands until the
            // policy's scope changes (a new digest), rather than being undone at the next
            // login.
            let revoked = all.iter().any(|r| {
                r.revoked_at.is_some()
                    && r.source == "policy"
                    && r.policy.as_deref() == Some(&policy.name)
                    && r.scope_digest == digest
            });
            let grant = match reusable {
                Some(r) => from_record(r)?,
                None if revoked => {
                    tracing::info!(policy = %policy.name, identity, connection, "standing grant revoked: not re-issued");
                    continue;
                }
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    // A window that is closed now grants nothing now.
                    let Some(grant) = Grant::from_policy(policy, identity, connection, now, id)
                    else {
                        continue;
                    };
                    self.sink
                        .append(EventDraft::new(Event::GrantIssued(grant_issued(&grant))))
                        .await
                        .context("cannot record the grant")?;
                    let record = to_record(&grant);
                    let store = self.grants.clone();
                    tokio::task::spawn_blocking(move || store.insert_grant(&record)).await??;
                    grant
                }
            };
            if grant.live(now).is_ok() {
                out.push(Arc::new(grant));
            }
        }
        // Grants from approvals (issued elsewhere) count as well.
        for r in existing.iter().filter(|r| r.source == "approval") {
            let mut g = from_record(r)?;
            if g.live(now).is_ok() {
                // Sessions cite the request their grant was approved under.
                let store = self.requests.clone();
                let filter = AccessRequestFilter {
                    grant_id: Some(g.id.clone()),
                    limit: Some(1),
                    ..Default::default()
                };
                let requests =
                    tokio::task::spawn_blocking(move || store.list_access_requests(&filter))
                        .await??;
                g.request_id = requests.into_iter().next().map(|r| r.id);
                out.push(Arc::new(g));
            }
        }
        Ok(out)
    }
}

impl GrantProvider for PolicyGrants {
    fn session_grants<'a>(
        &'a self,
        principal: &'a Principal,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Arc<Grant>>, String>> {
        Box::pin(async move {
            self.grants(&principal.name, connection)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// Watches the grants: revocations reach live sessions (within `every`), and each grant's
/// end is recorded once (`GrantExpired`).
pub async fn watch(
    store: Arc<dyn GrantStore>,
    sink: Arc<dyn EventSink>,
    revocations: Arc<Revocations>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let s = store.clone();
        let grants =
            match tokio::task::spawn_blocking(move || s.list_grants(&GrantFilter::default())).await
            {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read grants");
                    continue;
                }
                Err(_) => continue,
            };
        let now = Timestamp::now();
        for g in grants {
            if g.revoked_at.is_some() {
                if !revocations.is_revoked(&g.id) {
                    tracing::info!(grant = %g.id, "grant revoked: ending its sessions");
                    revocations.revoke(&g.id);
                }
                continue;
            }
            if g.expired_at.is_none() && g.expires_at.is_some_and(|e| e <= now) {
                let s = store.clone();
                let id = g.id.clone();
                let at = g.expires_at.unwrap_or(now);
                if let Ok(Ok(true)) =
                    tokio::task::spawn_blocking(move || s.mark_grant_expired(&id, at)).await
                {
                    sink.append_detached(EventDraft::new(Event::GrantExpired(GrantExpired {
                        grant_id: g.id.clone(),
                        expired_at: at,
                    })));
                }
            }
        }
    }
}
