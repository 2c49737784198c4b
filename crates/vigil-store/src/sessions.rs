//! The sessions index: where each session's start and end records are in the audit chain.

use crate::audit::AuditRow;
use crate::error::StoreError;
use vigil_core::Timestamp;

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    /// Sessions that started at or after this time.
    pub since: Option<Timestamp>,
    /// Sessions that started before this time.
    pub until: Option<Timestamp>,
    /// At most this many, newest first. `None` = no limit.
    pub limit: Option<usize>,
}

/// Where a session's start and end records are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIndex {
    pub session_id: String,
    pub started_seq: u64,
    pub started_at_us: i64,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub ended_seq: Option<u64>,
}

/// The sessions index: a read model of the audit chain, kept by the chain's own appends (the
/// store that implements it must be the [`AuditLog`](crate::AuditLog) it indexes, which updates
/// it in the same transaction as the records, and drops entries with the records it deletes).
/// Used by vigil-audit's session reads (`vigil sessions`, the API's sessions and replay routes)
/// and by replay rotation, which asks whose a capture is.
pub trait SessionsIndex: Send + Sync + 'static {
    /// Rows of one session, ascending by seq: those between its start record and its (first)
    /// end record. Empty for a session with no start record.
    fn session_rows(&self, session_id: &str) -> Result<Vec<AuditRow>, StoreError>;

    /// Where one session's start and end records are, or `None` for an unknown session. The
    /// default reads the session's rows; a store that indexes sessions answers from its index.
    fn session_index(&self, session_id: &str) -> Result<Option<SessionIndex>, StoreError> {
        let rows = self.session_rows(session_id)?;
        let Some(start) = rows.first().filter(|r| r.kind == "SessionStarted") else {
            return Ok(None);
        };
        Ok(Some(SessionIndex {
            session_id: session_id.to_string(),
            started_seq: start.seq,
            started_at_us: start.at_us,
            identity: start.identity.clone(),
            connection: start.connection.clone(),
            ended_seq: rows
                .iter()
                .find(|r| r.kind == "SessionEnded")
                .map(|r| r.seq),
        }))
    }

    /// Sessions matching the filter, newest first.
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionIndex>, StoreError>;
}
