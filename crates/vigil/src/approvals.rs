//! Wiring of vigil-approval's service (docs/APPROVALS.md): built from the config over the
//! store, the audit trail and the gateway's revocations, and put behind the gateway's
//! `ApprovalGate` and `StatementReview` and the API's bearer authentication. The adapters only
//! translate; the rules and the records are the service's.

use crate::approval_store::StoredApprovals;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_approval::{
    ApprovalParts, Approvals, ApprovalsConfig, KnownIdentity, Outcome, Pending as Asked, ScopeAsk,
    StatementAsk,
};
use vigil_core::{EventSink, Principal};
use vigil_identity::{Authenticator, IdentityConfig};
use vigil_pg::{
    AccessAsk, ApprovalGate, BoxFuture, Elevation, ElevationAsk, Pending, PendingAccess, ReviewAsk,
    Revocations, StatementReview,
};
use vigil_policy::{Grant, PolicyConfig};

/// The service, from the config.
pub fn service(
    store: StoredApprovals,
    sink: Arc<dyn EventSink>,
    revocations: Arc<Revocations>,
    policies: &[PolicyConfig],
    identities: &[IdentityConfig],
    config: &ApprovalsConfig,
    api_listen: Option<std::net::SocketAddr>,
) -> Result<Arc<Approvals>> {
    let approvals = Approvals::new(ApprovalParts {
        store: Arc::new(store),
        sink,
        revocations: Arc::new(SessionRevocations(revocations)),
        policies: policies.to_vec(),
        identities: identities
            .iter()
            .map(|i| {
                let known = KnownIdentity {
                    kind: i.kind,
                    groups: i.groups.clone(),
                };
                (i.name.clone(), known)
            })
            .collect::<HashMap<_, _>>(),
        public_url: config
            .public_url
            .clone()
            .or_else(|| api_listen.map(|a| format!("http://{a}"))),
        webhooks: config.webhooks.clone(),
    })?;
    Ok(Arc::new(approvals))
}

/// The gateway's revocations, as the service ends sessions under a revoked grant.
struct SessionRevocations(Arc<Revocations>);

impl vigil_approval::GrantRevocations for SessionRevocations {
    fn is_revoked(&self, grant_id: &str) -> bool {
        self.0.is_revoked(grant_id)
    }
    fn revoke(&self, grant_id: &str) {
        self.0.revoke(grant_id)
    }
}

/// What the client of a pending request hears, in the gateway's terms.
fn pending<T: 'static>(asked: Asked<T>) -> Pending<T> {
    match asked {
        Asked::Fail {
            request_id,
            message,
            hint,
        } => Pending::Fail {
            request_id,
            message,
            hint,
        },
        Asked::Wait {
            request_id,
            notice,
            decided,
        } => Pending::Wait {
            request_id,
            notice,
            decided: Box::pin(async move { decided.await.map_err(|e| e.to_string()) }),
        },
    }
}

fn outcome<T: 'static>(outcome: Outcome<T>) -> Pending<T> {
    match outcome {
        Outcome::Ready(t) => Pending::Ready(t),
        Outcome::Pending(asked) => pending(asked),
    }
}

/// Sessions without a grant, and elevations.
pub struct Gate(pub Arc<Approvals>);

impl ApprovalGate for Gate {
    fn on_missing_grant<'a>(
        &'a self,
        ask: AccessAsk<'a>,
    ) -> BoxFuture<'a, Result<PendingAccess, String>> {
        Box::pin(async move {
            let asked = self
                .0
                .session_access(ask.principal, ask.connection, ask.client_addr, ask.reason)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match asked {
                None => PendingAccess::NotApplicable,
                Some(Asked::Fail { message, hint, .. }) => PendingAccess::Fail { message, hint },
                Some(Asked::Wait {
                    notice, decided, ..
                }) => PendingAccess::Wait {
                    notice,
                    decided: Box::pin(async move { decided.await.map_err(|e| e.to_string()) }),
                },
            })
        })
    }

    fn elevations(&self, principal: &Principal, connection: &str) -> Vec<Elevation> {
        self.0
            .elevations(principal, connection)
            .into_iter()
            .map(|(policy, scope)| Elevation { policy, scope })
            .collect()
    }

    fn elevate<'a>(
        &'a self,
        ask: ElevationAsk<'a>,
    ) -> BoxFuture<'a, Result<Pending<Arc<Grant>>, String>> {
        Box::pin(async move {
            let ask = ScopeAsk {
                principal: ask.principal,
                connection: ask.connection,
                session_id: ask.session_id,
                client_addr: ask.client_addr,
                reason: ask.reason,
                policy: ask.policy,
                shape: ask.shape,
            };
            self.0
                .elevate(ask)
                .await
                .map(outcome)
                .map_err(|e| e.to_string())
        })
    }
}

/// Per-statement review on the data path.
pub struct Reviewer(pub Arc<Approvals>);

impl StatementReview for Reviewer {
    fn needs_review(&self, grant: &Grant, access: &vigil_sql::Access) -> bool {
        self.0.needs_review(grant, access)
    }

    fn hold<'a>(&'a self, ask: ReviewAsk<'a>) -> BoxFuture<'a, Result<Pending<String>, String>> {
        Box::pin(async move {
            let ask = StatementAsk {
                principal: ask.principal,
                connection: ask.connection,
                session_id: ask.session_id,
                grant: ask.grant,
                access: ask.access,
                exact_text: ask.exact_text,
                literal_text: ask.literal_text,
            };
            self.0
                .hold(ask)
                .await
                .map(outcome)
                .map_err(|e| e.to_string())
        })
    }
}

/// The API's callers that are not the admin token, proven by vigil-identity.
pub struct ApiCallers(pub Arc<Authenticator>);

impl vigil_api::access_requests::BearerAuthenticator for ApiCallers {
    fn authenticate<'a>(
        &'a self,
        bearer: &'a str,
    ) -> vigil_api::access_requests::BoxFuture<'a, Result<Arc<Principal>, String>> {
        Box::pin(async move {
            self.0
                .authenticate_bearer(bearer)
                .await
                .map_err(|r| r.client_message())
        })
    }
}
