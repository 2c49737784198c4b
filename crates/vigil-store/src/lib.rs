//! # vigil-store
//!
//! Everything Vigil persists sits behind one trait, [`Store`]: the audit trail (an append-only
//! list of chained records) and the control plane (service tokens today; policies, grants and
//! access requests later). The default is [`SqliteStore`], an embedded SQLite file in the data
//! directory that needs no setup; a PostgreSQL store for scale-out implements the same trait.
//!
//! The store knows nothing of hashing or signatures: it keeps rows exactly as given and hands them
//! back exactly as kept, so that `vigil-audit` can verify them. It refuses an append whose first
//! sequence number does not follow its head ([`StoreError::ChainConflict`]), which is what lets
//! several writers (a gateway and a CLI command) share one chain safely. Records leave the
//! chain only through [`Store::delete_audit_ranges`], which retention calls after recording the
//! purge in the chain itself.
//!
//! Calls are blocking; async callers use `spawn_blocking` or a dedicated thread.
//!
//! ```
//! use vigil_store::{AuditRow, SqliteOptions, Store, StoreError};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = vigil_store::open(
//!     &format!("sqlite://{}", dir.path().join("vigil.db").display()),
//!     SqliteOptions::default(),
//! )
//! .unwrap();
//! let row = AuditRow {
//!     seq: 1,
//!     at_us: 0,
//!     kind: "Checkpoint".into(),
//!     session_id: None,
//!     identity: None,
//!     connection: None,
//!     body: b"{}".to_vec(),
//!     hash: [0; 32],
//! };
//! store.append_audit(std::slice::from_ref(&row)).unwrap();
//! assert_eq!(store.audit_head().unwrap().map(|h| h.seq), Some(1));
//! // A second append of seq 1 lost the race: reload the head and renumber.
//! assert!(matches!(
//!     store.append_audit(&[row]),
//!     Err(StoreError::ChainConflict { expected: 1, found: 1 })
//! ));
//! ```

mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore, Synchronous, WalStats};

use vigil_core::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first: reload the head and retry.
    #[error("the audit chain moved: expected to append seq {expected}, found head at {found}")]
    ChainConflict { expected: u64, found: u64 },
    /// The store is locked by someone else for longer than the busy timeout.
    #[error("the store is busy (locked by another process) and did not free up in time")]
    Busy,
    #[error("store error: {0}")]
    Backend(String),
    #[error("cannot open store {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("unsupported store URL {0:?}: expected sqlite://PATH or a file path")]
    BadUrl(String),
    /// A stored row cannot be read back as a row of its table (a column of the wrong type or
    /// size, an impossible sequence number). Only a damaged or hand-edited store has such rows:
    /// verifiers report it as tampering at `seq` (0 when the row has no usable seq).
    #[error("record {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
}

/// One record of the audit trail as stored. `body` is the record's JSON, byte for byte as hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: u64,
    pub at_us: i64,
    /// The event's `type` (`StatementStarted`…).
    pub kind: String,
    pub session_id: Option<String>,
    /// The identity's name, for filtering.
    pub identity: Option<String>,
    /// The connection's name, for filtering.
    pub connection: Option<String>,
    pub body: Vec<u8>,
    /// SHA-256 of `body`.
    pub hash: [u8; 32],
}

/// The last record of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

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

/// A Vigil service token as stored: never the token, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub identity: String,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Free text given at creation (`--label`), for humans listing tokens.
    pub label: Option<String>,
}

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

/// Vigil's persistence. See the crate docs for the contract.
pub trait Store: Send + Sync + 'static {
    // --- audit trail -------------------------------------------------------------------------

    /// Appends rows atomically: all or none. `rows` are consecutive and `rows[0].seq` must be
    /// the head's seq + 1 (1 on an empty chain), else [`StoreError::ChainConflict`]. A
    /// `SessionStarted`/`SessionEnded` row also updates the session index in the same
    /// transaction. Returns once the rows are durable to the configured level.
    fn append_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError>;

    /// The last record, or `None` on an empty chain.
    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;

    /// Visits rows with `seq >= from_seq` in the order the store returns them when asked for
    /// ascending seq (a tampered store may return anything: verifiers check). The visitor
    /// returns `false` to stop. `from_seq = 0` visits every row, even one whose seq is not a
    /// valid position (which surfaces as [`StoreError::Corrupt`]). Rows are streamed: memory
    /// does not grow with the length of the chain.
    fn scan_audit(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(AuditRow) -> bool,
    ) -> Result<(), StoreError>;

    /// Up to `limit` rows with `after_seq < seq <= through_seq` whose kind is one of `kinds`,
    /// ascending by seq. Exports page through the chain with this: each page is a short read,
    /// so a long export neither holds memory nor keeps one read transaction open (which would
    /// stop the WAL from starting over). The default filters [`Store::scan_audit`].
    fn audit_page(
        &self,
        after_seq: u64,
        through_seq: u64,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut out = Vec::new();
        self.scan_audit(after_seq.saturating_add(1), &mut |row| {
            if row.seq > through_seq || out.len() >= limit {
                return false;
            }
            if kinds.contains(&row.kind.as_str()) {
                out.push(row);
            }
            true
        })?;
        Ok(out)
    }

    /// Up to `limit` rows of any kind with `after_seq < seq <= through_seq`, ascending: the
    /// paged form of [`Store::scan_audit`] for long reads beside a running gateway (bundles,
    /// purges), so that no read transaction stays open for long.
    fn audit_rows(
        &self,
        after_seq: u64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut out = Vec::new();
        self.scan_audit(after_seq.saturating_add(1), &mut |row| {
            if row.seq > through_seq || out.len() >= limit {
                return false;
            }
            out.push(row);
            true
        })?;
        Ok(out)
    }

    /// Deletes the records `from..=to` of each range (retention), and the session index entries
    /// of sessions whose start record goes, in one transaction. The caller has recorded the
    /// purge in the chain first; the store does not judge what it deletes.
    fn delete_audit_ranges(&self, _ranges: &[(u64, u64)]) -> Result<u64, StoreError> {
        Err(StoreError::Backend(
            "this store cannot purge records".into(),
        ))
    }

    /// Rows of one session, ascending by seq: those between its start record and its (first)
    /// end record. Empty for a session with no start record.
    fn session_rows(&self, session_id: &str) -> Result<Vec<AuditRow>, StoreError>;

    /// Where one session's start and end records are, or `None` for an unknown session. The
    /// default reads the session's rows; stores with a session index answer from it.
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

    /// One row by seq.
    fn audit_row(&self, seq: u64) -> Result<Option<AuditRow>, StoreError>;

    /// Sessions matching the filter, newest first.
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionIndex>, StoreError>;

    // --- service tokens ----------------------------------------------------------------------

    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn find_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    /// Tokens, oldest first, optionally of one identity.
    fn list_tokens(&self, identity: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;
    /// Marks a token revoked; returns it, or `None` if there is no token with that id.
    /// Revoking an already revoked token keeps the first revocation time.
    fn revoke_token(&self, id: &str, at: Timestamp) -> Result<Option<TokenRecord>, StoreError>;

    // --- grants ------------------------------------------------------------------------------
    // Defaults refuse, so that stores (and test doubles) without grants say so plainly.

    fn insert_grant(&self, _grant: &GrantRecord) -> Result<(), StoreError> {
        Err(StoreError::Backend("this store keeps no grants".into()))
    }
    fn grant(&self, _id: &str) -> Result<Option<GrantRecord>, StoreError> {
        Err(StoreError::Backend("this store keeps no grants".into()))
    }
    /// Grants matching the filter, oldest first.
    fn list_grants(&self, _filter: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError> {
        Err(StoreError::Backend("this store keeps no grants".into()))
    }
    /// Marks a grant revoked (the first revocation stands); returns it, or `None` if unknown.
    fn revoke_grant(
        &self,
        _id: &str,
        _at: Timestamp,
        _by: &str,
        _reason: Option<&str>,
    ) -> Result<Option<GrantRecord>, StoreError> {
        Err(StoreError::Backend("this store keeps no grants".into()))
    }
    /// Marks a grant's end as recorded; `false` if it already was (so only one writer records it).
    fn mark_grant_expired(&self, _id: &str, _at: Timestamp) -> Result<bool, StoreError> {
        Err(StoreError::Backend("this store keeps no grants".into()))
    }

    // --- access requests ---------------------------------------------------------------------

    fn insert_access_request(&self, _request: &AccessRequestRecord) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "this store keeps no access requests".into(),
        ))
    }
    fn access_request(&self, _id: &str) -> Result<Option<AccessRequestRecord>, StoreError> {
        Err(StoreError::Backend(
            "this store keeps no access requests".into(),
        ))
    }
    /// Requests matching the filter, newest first.
    fn list_access_requests(
        &self,
        _filter: &AccessRequestFilter,
    ) -> Result<Vec<AccessRequestRecord>, StoreError> {
        Err(StoreError::Backend(
            "this store keeps no access requests".into(),
        ))
    }
    /// Replaces a request if its stored version is still `expected_version` (then stores
    /// `request.version`); `false` if someone else updated it first (read again and retry).
    fn update_access_request(
        &self,
        _request: &AccessRequestRecord,
        _expected_version: u64,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Backend(
            "this store keeps no access requests".into(),
        ))
    }

    // --- approvals of held statements --------------------------------------------------------

    /// Keeps an approval of a held statement until it is used or lapses.
    fn insert_statement_approval(
        &self,
        _approval: &StatementApprovalRecord,
    ) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "this store keeps no statement approvals".into(),
        ))
    }
    /// One approval by its request id.
    fn statement_approval(
        &self,
        _request_id: &str,
    ) -> Result<Option<StatementApprovalRecord>, StoreError> {
        Err(StoreError::Backend(
            "this store keeps no statement approvals".into(),
        ))
    }
    /// Uses one approval of the statement with `statement_digest` of `identity` on
    /// `connection` (that of `request_id`, if given) that is neither used nor lapsed at `at`:
    /// marks it used by `session`, atomically and durably, and returns its request id. `None`:
    /// no such approval (never used twice, whoever asks at the same time).
    fn use_statement_approval(
        &self,
        _identity: &str,
        _connection: &str,
        _statement_digest: &str,
        _request_id: Option<&str>,
        _at: Timestamp,
        _session: &str,
    ) -> Result<Option<String>, StoreError> {
        Err(StoreError::Backend(
            "this store keeps no statement approvals".into(),
        ))
    }
}

/// Opens the store a URL names: `sqlite://PATH`, `sqlite:PATH` or a plain file path.
pub fn open(url: &str, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(url.to_string()));
    }
    SqliteStore::open(std::path::Path::new(path), options)
}
