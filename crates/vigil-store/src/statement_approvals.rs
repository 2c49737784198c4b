//! Approvals of held statements (per-statement review) and their one use.

use crate::error::StoreError;
use vigil_core::Timestamp;

/// The approval of one held statement (per-statement review), and its use: an approved
/// statement runs at most once. Kept so that an approval survives a restart of the gateway, and
/// so that its use is durable before the statement runs. Never holds the statement's text: the
/// SHA-256 of its exact bytes is the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementApprovalRecord {
    /// The access request that was approved.
    pub request_id: String,
    pub identity: String,
    pub connection: String,
    /// Hex SHA-256 of the statement's exact text.
    pub statement_digest: String,
    pub approved_at: Timestamp,
    /// Not used by then, the approval lapses.
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    /// The session the statement ran in.
    pub used_session: Option<String>,
}

/// Approvals of held statements. Used by the approval service (through the binary's
/// `ApprovalStore` adapter).
pub trait StatementApprovalStore: Send + Sync + 'static {
    /// Keeps an approval of a held statement until it is used or lapses.
    fn insert_statement_approval(
        &self,
        approval: &StatementApprovalRecord,
    ) -> Result<(), StoreError>;
    /// One approval by its request id.
    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApprovalRecord>, StoreError>;
    /// Uses one approval of the statement with `statement_digest` of `identity` on
    /// `connection` (that of `request_id`, if given) that is neither used nor lapsed at `at`:
    /// marks it used by `session`, atomically and durably, and returns its request id. `None`:
    /// no such approval (never used twice, whoever asks at the same time).
    fn use_statement_approval(
        &self,
        identity: &str,
        connection: &str,
        statement_digest: &str,
        request_id: Option<&str>,
        at: Timestamp,
        session: &str,
    ) -> Result<Option<String>, StoreError>;
}
