//! Grants: the live instances of policy scopes, standing or issued by an approval.

use crate::error::StoreError;
use vigil_core::Timestamp;

/// A grant as stored: the live instance of a scope for one identity on one connection. The
/// scope is kept as its canonical JSON (the store does not interpret it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub identity: String,
    pub connection: String,
    /// `policy` or `approval`.
    pub source: String,
    pub policy: Option<String>,
    pub scope_json: String,
    pub scope_digest: String,
    pub not_before: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    /// When the gateway recorded the grant's end (expiry or window close) as an event.
    pub expired_at: Option<Timestamp>,
}

/// Which grants to list.
#[derive(Clone, Debug, Default)]
pub struct GrantFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    /// Only grants neither revoked nor expired at this time.
    pub live_at: Option<Timestamp>,
}

/// Grants. Used by the binary's standing grants and their watcher, `vigil grant`, the approval
/// service (through the binary's `ApprovalStore` adapter) and exports (who a grant was for).
pub trait GrantStore: Send + Sync + 'static {
    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError>;
    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// Grants matching the filter, oldest first.
    fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError>;
    /// Marks a grant revoked (the first revocation stands); returns it, or `None` if unknown.
    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Option<GrantRecord>, StoreError>;
    /// Marks a grant's end as recorded; `false` if it already was (so only one writer records it).
    fn mark_grant_expired(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
}
