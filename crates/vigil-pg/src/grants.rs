//! The grants a session runs under: where they come from (the binary's [`GrantProvider`]),
//! and how revocations reach live sessions ([`Revocations`]).

use crate::BoxFuture;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;
use vigil_core::Principal;
use vigil_policy::Grant;

/// Finds or issues the grants under which an identity may open a session on a connection
/// now. Standing grants from policies are issued here (and recorded before they are used).
pub trait GrantProvider: Send + Sync + 'static {
    /// `Ok(empty)`: no grant; the session is refused. `Err`: the grants could not be
    /// established (store down): refused too.
    fn session_grants<'a>(
        &'a self,
        principal: &'a Principal,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Arc<Grant>>, String>>;
}

/// A session asked for without a live grant, as an [`ApprovalGate`] sees it.
pub struct AccessAsk<'a> {
    pub principal: &'a Principal,
    pub connection: &'a str,
    pub client_addr: &'a str,
    /// What the client said it needs the access for (`options=-c vigil.reason=…`, else its
    /// application_name).
    pub reason: Option<&'a str>,
}

/// What becomes of a session that has no live grant.
pub enum PendingAccess {
    /// No approval rule covers it: refused as any session without a grant.
    NotApplicable,
    /// Refused now (SQLSTATE 28000) naming the access request; the client retries once it is
    /// approved.
    Fail { message: String, hint: String },
    /// The client is told (a NoticeResponse) and waits; `decided` resolves `Ok` once the
    /// request is approved, `Err(why)` on denial, expiry or the wait timing out.
    Wait {
        notice: String,
        decided: BoxFuture<'static, Result<(), String>>,
    },
}

/// Just-in-time approval at connect time: the binary raises (or reuses) an access request when
/// an approval rule would grant the identity access once a human approves.
pub trait ApprovalGate: Send + Sync + 'static {
    /// `Err`: the request could not be raised or recorded (the session is refused).
    fn on_missing_grant<'a>(
        &'a self,
        ask: AccessAsk<'a>,
    ) -> BoxFuture<'a, Result<PendingAccess, String>>;
}

/// What per-statement review says of a statement its grant allows.
pub enum Reviewed {
    Proceed,
    /// Not run: the statement needs a human's approval first. `message` names the request.
    Held {
        message: String,
    },
}

/// Per-statement review (simple protocol): a grant may allow a statement only once a human
/// approved that exact statement. Called on the data path, so it must not block: the binary
/// answers from memory and records in the background.
pub trait StatementReview: Send + Sync + 'static {
    fn review(
        &self,
        principal: &Principal,
        connection: &str,
        grant: &Grant,
        access: &vigil_sql::Access,
        exact_text: &[u8],
    ) -> Reviewed;
}

/// Revoked grant ids, shared by every session of a gateway. Whoever learns of a revocation
/// (the store poller, the API) calls [`Revocations::revoke`]; sessions under the grant end.
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashSet<String>>,
    changed: watch::Sender<u64>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a grant revoked; sessions under it are told at once.
    pub fn revoke(&self, grant_id: &str) {
        if self.revoked.write().insert(grant_id.to_string()) {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.revoked.read().contains(grant_id)
    }

    /// A receiver that changes whenever a grant is revoked.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_of_revocations() {
        let r = Revocations::new();
        let mut rx = r.subscribe();
        assert!(!r.is_revoked("g1"));
        r.revoke("g1");
        rx.changed().await.unwrap();
        assert!(r.is_revoked("g1"));
    }
}
