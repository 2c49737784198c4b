//! The audit chain: an append-only list of records, each kept exactly as given.

use crate::error::StoreError;

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

/// The audit chain: appends, the head, reads by seq (whole, paged or one row) and retention's
/// deletes. Used by vigil-audit's writer, verification, exports, bundles and retention.
///
/// The store keeps rows as given and does not judge them; it only refuses an append that does
/// not follow its head ([`StoreError::ChainConflict`]), so that several writers (a gateway and
/// a CLI command) can share one chain.
pub trait AuditLog: Send + Sync + 'static {
    /// Appends rows atomically: all or none. `rows` are consecutive and `rows[0].seq` must be
    /// the head's seq + 1 (1 on an empty chain), else [`StoreError::ChainConflict`]. A store
    /// that is also the [`SessionsIndex`](crate::SessionsIndex) updates it from
    /// `SessionStarted`/`SessionEnded` rows in the same transaction. Returns once the rows are
    /// durable to the configured level.
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
    /// stop the WAL from starting over). The default filters [`AuditLog::scan_audit`].
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
    /// paged form of [`AuditLog::scan_audit`] for long reads beside a running gateway (bundles,
    /// purges), so that no read transaction stays open for long. The default reads
    /// [`AuditLog::scan_audit`].
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

    /// One row by seq.
    fn audit_row(&self, seq: u64) -> Result<Option<AuditRow>, StoreError>;

    /// Deletes the records `from..=to` of each range (retention), and the session index entries
    /// of sessions whose start record goes, in one transaction; returns how many records went.
    /// The caller has recorded the purge in the chain first; the store does not judge what it
    /// deletes.
    fn delete_audit_ranges(&self, ranges: &[(u64, u64)]) -> Result<u64, StoreError>;
}
