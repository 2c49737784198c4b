//! Which store keeps each concern, as a deployment wires them.

use crate::access_requests::AccessRequestStore;
use crate::audit::AuditLog;
use crate::grants::GrantStore;
use crate::sessions::SessionsIndex;
use crate::statement_approvals::StatementApprovalStore;
use crate::tokens::TokenStore;
use std::sync::Arc;

/// One handle per concern: what the binary opens and hands out, each consumer getting the
/// handle (or handles) of the concerns it uses. Today every handle is the same
/// [`SqliteStore`](crate::SqliteStore) ([`Stores::all_in`]); a store that keeps only some
/// concerns (a shared PostgreSQL control plane beside a gateway's own chain) fills only theirs.
///
/// Libraries never take this: each takes the trait of the concern it needs.
#[derive(Clone)]
pub struct Stores {
    pub audit: Arc<dyn AuditLog>,
    /// Must be kept by the same store as `audit`: the index is updated by its appends.
    pub sessions: Arc<dyn SessionsIndex>,
    pub tokens: Arc<dyn TokenStore>,
    pub grants: Arc<dyn GrantStore>,
    pub access_requests: Arc<dyn AccessRequestStore>,
    pub statement_approvals: Arc<dyn StatementApprovalStore>,
}

impl Stores {
    /// Every concern kept by one store.
    pub fn all_in<S>(store: Arc<S>) -> Stores
    where
        S: AuditLog
            + SessionsIndex
            + TokenStore
            + GrantStore
            + AccessRequestStore
            + StatementApprovalStore,
    {
        Stores {
            audit: store.clone(),
            sessions: store.clone(),
            tokens: store.clone(),
            grants: store.clone(),
            access_requests: store.clone(),
            statement_approvals: store,
        }
    }
}
