//! Approvals of held statements in SQLite: kept until used (once) or lapsed.

use super::{db, SqliteStore};
use crate::error::StoreError;
use crate::statement_approvals::{StatementApprovalRecord, StatementApprovalStore};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use vigil_core::Timestamp;

impl StatementApprovalStore for SqliteStore {
    fn insert_statement_approval(
        &self,
        approval: &StatementApprovalRecord,
    ) -> Result<(), StoreError> {
        insert(&self.writer.lock().conn, approval)
    }

    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApprovalRecord>, StoreError> {
        self.read(|conn| get(conn, request_id))
    }

    fn use_statement_approval(
        &self,
        identity: &str,
        connection: &str,
        statement_digest: &str,
        request_id: Option<&str>,
        at: Timestamp,
        session: &str,
    ) -> Result<Option<String>, StoreError> {
        use_one(
            &self.writer.lock().conn,
            (identity, connection, statement_digest),
            request_id,
            at,
            session,
        )
    }
}

const COLUMNS: &str = "request_id, identity, connection, statement_digest, approved_at_us, \
                       expires_at_us, used_at_us, used_session";

fn row(r: &rusqlite::Row<'_>) -> Result<StatementApprovalRecord, StoreError> {
    Ok(StatementApprovalRecord {
        request_id: r.get(0).map_err(db)?,
        identity: r.get(1).map_err(db)?,
        connection: r.get(2).map_err(db)?,
        statement_digest: r.get(3).map_err(db)?,
        approved_at: Timestamp::from_micros(r.get(4).map_err(db)?),
        expires_at: Timestamp::from_micros(r.get(5).map_err(db)?),
        used_at: r
            .get::<_, Option<i64>>(6)
            .map_err(db)?
            .map(Timestamp::from_micros),
        used_session: r.get(7).map_err(db)?,
    })
}

fn insert(conn: &Connection, a: &StatementApprovalRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO statement_approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))
    .map_err(db)?
    .execute(params![
        a.request_id,
        a.identity,
        a.connection,
        a.statement_digest,
        a.approved_at.as_micros(),
        a.expires_at.as_micros(),
        a.used_at.map(|t| t.as_micros()),
        a.used_session,
    ])
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Backend(format!(
            "the approval of request {:?} is already kept",
            a.request_id
        )),
        _ => db(e),
    })?;
    Ok(())
}

fn get(conn: &Connection, request_id: &str) -> Result<Option<StatementApprovalRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM statement_approvals WHERE request_id = ?1"
        ))
        .map_err(db)?;
    let mut rows = stmt.query([request_id]).map_err(db)?;
    match rows.next().map_err(db)? {
        Some(r) => Ok(Some(row(r)?)),
        None => Ok(None),
    }
}

/// One statement, atomically: the oldest usable approval is marked used and its request id
/// returned. One UPDATE, so two sessions (or two gateways) asking at once never both get it.
fn use_one(
    conn: &Connection,
    (identity, connection, digest): (&str, &str, &str),
    request_id: Option<&str>,
    at: Timestamp,
    session: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached(
        "UPDATE statement_approvals SET used_at_us = ?5, used_session = ?6 \
         WHERE used_at_us IS NULL AND request_id = ( \
             SELECT request_id FROM statement_approvals \
             WHERE identity = ?1 AND connection = ?2 AND statement_digest = ?3 \
               AND (?4 IS NULL OR request_id = ?4) \
               AND used_at_us IS NULL AND expires_at_us > ?5 \
             ORDER BY approved_at_us LIMIT 1) \
         RETURNING request_id",
    )
    .map_err(db)?
    .query_row(
        params![
            identity,
            connection,
            digest,
            request_id,
            at.as_micros(),
            session
        ],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::{SqliteOptions, StatementApprovalRecord, StatementApprovalStore};
    use vigil_core::Timestamp;

    #[test]
    fn an_approval_is_used_once_and_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let approval = |id: &str, approved: i64, expires: i64| StatementApprovalRecord {
            request_id: id.into(),
            identity: "etl".into(),
            connection: "ehr".into(),
            statement_digest: "d1".into(),
            approved_at: Timestamp::from_micros(approved),
            expires_at: Timestamp::from_micros(expires),
            used_at: None,
            used_session: None,
        };
        store
            .insert_statement_approval(&approval("r1", 10, 1_000))
            .unwrap();
        store
            .insert_statement_approval(&approval("r2", 20, 1_000))
            .unwrap();
        store
            .insert_statement_approval(&approval("r3", 30, 50))
            .unwrap();
        assert!(store
            .insert_statement_approval(&approval("r1", 10, 1_000))
            .is_err());
        let at = Timestamp::from_micros(100);
        let use_one = |id: Option<&str>, digest: &str| {
            store
                .use_statement_approval("etl", "ehr", digest, id, at, "s1")
                .unwrap()
        };
        assert_eq!(use_one(None, "other"), None, "another statement");
        assert_eq!(
            use_one(Some("r2"), "d1"),
            Some("r2".into()),
            "the one asked for"
        );
        assert_eq!(use_one(Some("r2"), "d1"), None, "used once");
        assert_eq!(use_one(None, "d1"), Some("r1".into()), "the oldest");
        assert_eq!(use_one(None, "d1"), None, "r3 lapsed at 50");
        // Kept across a reopen (a restart): what is used stays used.
        drop(store);
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let r1 = store.statement_approval("r1").unwrap().unwrap();
        assert_eq!(r1.used_at, Some(at));
        assert_eq!(r1.used_session.as_deref(), Some("s1"));
        assert_eq!(
            store.statement_approval("r3").unwrap().unwrap().used_at,
            None
        );
        assert_eq!(
            store
                .use_statement_approval("etl", "ehr", "d1", None, at, "s2")
                .unwrap(),
            None
        );
    }
}
