//! Access requests (just-in-time approval), kept as the approval service's JSON.

use crate::error::StoreError;
use vigil_core::Timestamp;

/// An access request as stored (just-in-time approval). `body` is the request's JSON, which
/// the store keeps as given; the other fields are copies for lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequestRecord {
    pub id: String,
    pub identity: String,
    pub connection: String,
    /// `pending`, `approved`, `denied`, `expired`, `revoked` (or `used`, for a held statement).
    pub status: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub grant_id: Option<String>,
    /// Bumped by every update; an update names the version it read (optimistic concurrency).
    pub version: u64,
    pub body: String,
}

/// Which access requests to list.
#[derive(Clone, Debug, Default)]
pub struct AccessRequestFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub status: Option<String>,
    pub grant_id: Option<String>,
    /// At most this many, newest first. `None` = no limit.
    pub limit: Option<usize>,
}

/// Access requests. Used by the approval service (through the binary's `ApprovalStore`
/// adapter), the binary's standing grants (the request an approved grant came from) and
/// exports (who a request was from).
pub trait AccessRequestStore: Send + Sync + 'static {
    fn insert_access_request(&self, request: &AccessRequestRecord) -> Result<(), StoreError>;
    fn access_request(&self, id: &str) -> Result<Option<AccessRequestRecord>, StoreError>;
    /// Requests matching the filter, newest first.
    fn list_access_requests(
        &self,
        filter: &AccessRequestFilter,
    ) -> Result<Vec<AccessRequestRecord>, StoreError>;
    /// Replaces a request if its stored version is still `expected_version` (then stores
    /// `request.version`); `false` if someone else updated it first (read again and retry).
    fn update_access_request(
        &self,
        request: &AccessRequestRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError>;
}
