//! The sessions index in SQLite: the `sessions` table, which the appends of `audit.rs` fill.

use super::audit::{collect_audit_rows, AUDIT_COLUMNS};
use super::{db, SqliteStore};
use crate::audit::AuditRow;
use crate::error::StoreError;
use crate::sessions::{SessionFilter, SessionIndex, SessionsIndex};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension};

impl SessionsIndex for SqliteStore {
    fn session_rows(&self, session_id: &str) -> Result<Vec<AuditRow>, StoreError> {
        self.read(|conn| {
            let bounds = conn
                .prepare_cached(
                    "SELECT started_seq, coalesce(ended_seq, 9223372036854775807) \
                     FROM sessions WHERE session_id = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([session_id], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(db)?;
            // Every record of a session lies between its start and end records.
            let Some((first, last)) = bounds else {
                return Ok(Vec::new());
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log \
                     WHERE seq BETWEEN ?2 AND ?3 AND session_id = ?1 ORDER BY seq"
                ))
                .map_err(db)?;
            collect_audit_rows(&mut stmt, params![session_id, first, last])
        })
    }

    fn session_index(&self, session_id: &str) -> Result<Option<SessionIndex>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT session_id, started_seq, started_at_us, identity, connection, \
                     ended_seq FROM sessions WHERE session_id = ?1",
                )
                .map_err(db)?;
            let mut rows = stmt.query([session_id]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(r) => Ok(Some(session_index_row(r)?)),
                None => Ok(None),
            }
        })
    }

    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionIndex>, StoreError> {
        let mut sql = String::from(
            "SELECT session_id, started_seq, started_at_us, identity, connection, ended_seq \
             FROM sessions WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(identity) = &filter.identity {
            args.push(Value::Text(identity.clone()));
            sql.push_str(&format!(" AND identity = ?{}", args.len()));
        }
        if let Some(connection) = &filter.connection {
            args.push(Value::Text(connection.clone()));
            sql.push_str(&format!(" AND connection = ?{}", args.len()));
        }
        if let Some(since) = filter.since {
            args.push(Value::Integer(since.as_micros()));
            sql.push_str(&format!(" AND started_at_us >= ?{}", args.len()));
        }
        if let Some(until) = filter.until {
            args.push(Value::Integer(until.as_micros()));
            sql.push_str(&format!(" AND started_at_us < ?{}", args.len()));
        }
        sql.push_str(" ORDER BY started_at_us DESC, started_seq DESC");
        if let Some(limit) = filter.limit {
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" LIMIT ?{}", args.len()));
        }
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(session_index_row(r)?);
            }
            Ok(out)
        })
    }
}

/// A row of `SELECT session_id, started_seq, started_at_us, identity, connection, ended_seq`.
fn session_index_row(r: &rusqlite::Row<'_>) -> Result<SessionIndex, StoreError> {
    Ok(SessionIndex {
        session_id: r.get(0).map_err(db)?,
        started_seq: r.get::<_, i64>(1).map_err(db)?.max(0) as u64,
        started_at_us: r.get(2).map_err(db)?,
        identity: r.get(3).map_err(db)?,
        connection: r.get(4).map_err(db)?,
        ended_seq: r
            .get::<_, Option<i64>>(5)
            .map_err(db)?
            .map(|s| s.max(0) as u64),
    })
}
