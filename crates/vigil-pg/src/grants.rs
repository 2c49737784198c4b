//! The grants a session runs under: where they come from (the binary's [`GrantProvider`]),
//! and how revocations reach live sessions ([`Revocations`]).

use crate::BoxFuture;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// An approval-required scope a live session may be elevated to: a statement the session's
/// grants refuse but this scope allows asks for it (just-in-time, docs/APPROVALS.md).
#[derive(Clone, Debug)]
pub struct Elevation {
    /// The approval-required policy.
    pub policy: String,
    pub scope: Arc<vigil_policy::Scope>,
}

/// A live session's statement that needs an elevation, as an [`ApprovalGate`] sees it.
pub struct ElevationAsk<'a> {
    pub principal: &'a Principal,
    pub connection: &'a str,
    pub session_id: &'a str,
    pub client_addr: &'a str,
    /// As at connect time (`vigil.reason`, else application_name).
    pub reason: Option<&'a str>,
    /// The approval-required policy whose scope allows the statement.
    pub policy: &'a str,
    /// The statement's literal-free text and fingerprint (what approvers see).
    pub shape: &'a vigil_core::event::StatementShape,
}

/// Where a statement that needs an approval stands.
pub enum Pending<T> {
    /// Approved already: `T` is the grant (elevation) or the used approval's request id (review).
    Ready(T),
    /// Refused now (SQLSTATE 42501) naming the request; the client sends it again once approved.
    Fail {
        request_id: String,
        message: String,
        hint: String,
    },
    /// The statement is held: the client is told (`notice`) and waits; `decided` resolves with
    /// the approval, or `Err(why)` (naming the request) on denial, expiry or timeout.
    Wait {
        request_id: String,
        notice: String,
        decided: BoxFuture<'static, Result<T, String>>,
    },
}

/// Just-in-time approval: at connect time, the binary raises (or reuses) an access request when
/// an approval rule would grant the identity access once a human approves; in a live session,
/// when a statement needs the scope of an approval-required policy (elevation).
pub trait ApprovalGate: Send + Sync + 'static {
    /// `Err`: the request could not be raised or recorded (the session is refused).
    fn on_missing_grant<'a>(
        &'a self,
        ask: AccessAsk<'a>,
    ) -> BoxFuture<'a, Result<PendingAccess, String>>;

    /// The scopes a session of `principal` on `connection` may be elevated to (asked once, at
    /// session start). Default: none.
    fn elevations(&self, _principal: &Principal, _connection: &str) -> Vec<Elevation> {
        Vec::new()
    }

    /// A statement the session's grants refuse and `ask.policy`'s scope allows: a live grant
    /// approved under that policy ([`Pending::Ready`]), or the access request raised (or reused)
    /// for it. `Err`: the request could not be raised or recorded (the statement is refused).
    fn elevate<'a>(
        &'a self,
        _ask: ElevationAsk<'a>,
    ) -> BoxFuture<'a, Result<Pending<Arc<Grant>>, String>> {
        Box::pin(async { Err("elevation is not supported by this gateway".to_string()) })
    }
}

/// A statement held for review, as the binary's [`StatementReview`] sees it.
pub struct ReviewAsk<'a> {
    pub principal: &'a Principal,
    pub connection: &'a str,
    pub session_id: &'a str,
    /// The grant that allows it.
    pub grant: &'a Grant,
    pub access: &'a vigil_sql::Access,
    /// The bytes an approval is for (their SHA-256): the exact text with the simple protocol,
    /// the literal-free text with the extended protocol (parameters travel apart).
    pub exact_text: &'a [u8],
    /// The text with its literals (simple protocol), for reviewers whose role may see them;
    /// the binary keeps it in memory only. `None` with the extended protocol.
    pub literal_text: Option<String>,
}

/// Per-statement review: a grant may allow a statement only once a human approved that exact
/// statement. [`StatementReview::needs_review`] is asked on the data path for every statement a
/// grant allows, so it must be cheap and must not block; only held statements go on to
/// [`StatementReview::hold`].
pub trait StatementReview: Send + Sync + 'static {
    fn needs_review(&self, grant: &Grant, access: &vigil_sql::Access) -> bool;

    /// Uses an approval of this statement (recorded durably before it runs:
    /// [`Pending::Ready`] with the request id), or raises (or reuses) its request. `Err`: the
    /// request could not be raised or recorded (the statement is refused).
    fn hold<'a>(&'a self, ask: ReviewAsk<'a>) -> BoxFuture<'a, Result<Pending<String>, String>>;
}

/// Revoked grant ids, shared by every session of a gateway. Whoever learns of a revocation
/// (the store poller, the API) calls [`Revocations::revoke`]; sessions under the grant end, and
/// sessions that hold other grants stop using it.
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashSet<String>>,
    changed: watch::Sender<u64>,
    /// Bumped by every revocation: sessions look at their grants again when it moves.
    epoch: AtomicU64,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a grant revoked; sessions under it are told at once.
    pub fn revoke(&self, grant_id: &str) {
        if self.revoked.write().insert(grant_id.to_string()) {
            self.epoch.fetch_add(1, Ordering::Release);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Moves with every revocation (cheap to read on the data path).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.revoked.read().contains(grant_id)
    }

    /// A receiver that changes whenever a grant is revoked.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// A grant as session records cite it.
pub(crate) fn enforced(g: &Grant) -> vigil_core::event::EnforcedGrant {
    vigil_core::event::EnforcedGrant {
        grant_id: g.id.clone(),
        source: g.source.as_str().to_string(),
        policy: g.policy.clone(),
        scope: serde_json::from_str(&g.scope.canonical_json()).unwrap_or_default(),
        scope_digest: g.scope_digest.clone(),
        expires_at: g.expires_at,
        request_id: g.request_id.clone(),
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
