//! What the approval service needs from outside, as traits it takes: where requests, grants and
//! statement approvals are kept ([`ApprovalStore`]), and how a revocation reaches live sessions
//! ([`GrantRevocations`]). The audit trail is `vigil_core::EventSink`.
//!
//! The store's calls block (a database): the service runs them on tokio's blocking pool.

use crate::rules::{AccessRequest, RequestStatus};
use vigil_core::Timestamp;
use vigil_policy::Grant;

/// A store call failed. Its message names no secret and no statement literal (stores keep
/// neither).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store could not be read or written.
    #[error("{0}")]
    Unavailable(String),
    /// A stored request's body cannot be read back as a request (a damaged store). The reason
    /// is not in the message: it could quote the body.
    #[error("access request {id}: unreadable")]
    UnreadableRequest { id: String },
    /// A stored grant cannot be read back as a grant (a damaged store).
    #[error("grant {id}: unreadable scope")]
    UnreadableGrant { id: String },
}

/// A stored request and its version: every update names the version it read, so that two
/// deciders cannot both win (optimistic concurrency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub request: AccessRequest,
    pub version: u64,
}

/// Which requests to list (every field narrows; `None` matches all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub status: Option<RequestStatus>,
    /// The request whose approval issued this grant.
    pub grant_id: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// The approval of one held statement and its use: an approved statement runs at most once.
/// Never holds the statement's text, only the digest of its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementApproval {
    pub request_id: String,
    pub identity: String,
    pub connection: String,
    /// Hex SHA-256 of the statement's exact bytes.
    pub statement_digest: String,
    pub approved_at: Timestamp,
    /// Not used by then, the approval lapses.
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    /// The session the statement ran in (`(revoked)` when a revocation voided it).
    pub used_session: Option<String>,
}

/// One held statement's approval to use, as [`ApprovalStore::use_statement_approval`] asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalUse {
    pub identity: String,
    pub connection: String,
    pub statement_digest: String,
    /// That of this request only, if given.
    pub request_id: Option<String>,
    pub at: Timestamp,
    /// The session that runs the statement.
    pub session: String,
}

/// Where requests, grants issued by approvals and approvals of held statements are kept. The
/// methods block.
pub trait ApprovalStore: Send + Sync + 'static {
    fn access_request(&self, id: &str) -> Result<Option<Versioned>, StoreFailure>;

    /// Requests matching `filter`, newest first. Each row is read on its own: one unreadable
    /// row does not hide the others.
    fn access_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<Result<Versioned, StoreFailure>>, StoreFailure>;

    /// Keeps a new request (version 1).
    fn insert_access_request(&self, request: &AccessRequest) -> Result<(), StoreFailure>;

    /// Replaces a request if its stored version is still `version` (it becomes `version + 1`);
    /// `false` if someone else updated it first.
    fn update_access_request(
        &self,
        request: &AccessRequest,
        version: u64,
    ) -> Result<bool, StoreFailure>;

    /// Grants of `identity` on `connection` neither revoked nor expired at `at`, oldest first
    /// (`request_id` unset: the store does not keep it on the grant).
    fn live_grants(
        &self,
        identity: &str,
        connection: &str,
        at: Timestamp,
    ) -> Result<Vec<Grant>, StoreFailure>;

    fn grant(&self, id: &str) -> Result<Option<Grant>, StoreFailure>;

    fn insert_grant(&self, grant: &Grant) -> Result<(), StoreFailure>;

    /// Marks a grant revoked (the first revocation stands).
    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: &str,
    ) -> Result<(), StoreFailure>;

    /// Keeps an approval of a held statement until it is used or lapses.
    fn insert_statement_approval(&self, approval: &StatementApproval) -> Result<(), StoreFailure>;

    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApproval>, StoreFailure>;

    /// Uses one approval that matches `ask` and is neither used nor lapsed at `ask.at`: marks it
    /// used, atomically and durably, and returns its request id. `None`: there is none (an
    /// approval is never used twice, whoever asks at the same time).
    fn use_statement_approval(&self, ask: &ApprovalUse) -> Result<Option<String>, StoreFailure>;
}

/// Revoked grants, shared by the live sessions of a gateway.
pub trait GrantRevocations: Send + Sync + 'static {
    fn is_revoked(&self, grant_id: &str) -> bool;
    /// Sessions under `grant_id` end (or stop using it) now.
    fn revoke(&self, grant_id: &str);
}
