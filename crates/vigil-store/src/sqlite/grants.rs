//! Grants in SQLite.

use super::{db, SqliteStore};
use crate::error::StoreError;
use crate::grants::{GrantFilter, GrantRecord, GrantStore};
use rusqlite::{params, Connection, ErrorCode};
use vigil_core::Timestamp;

impl GrantStore for SqliteStore {
    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        insert(&self.writer.lock().conn, grant)
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        self.read(|conn| get(conn, id))
    }

    fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError> {
        self.read(|conn| list(conn, filter))
    }

    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Option<GrantRecord>, StoreError> {
        revoke(&self.writer.lock().conn, id, at, by, reason)
    }

    fn mark_grant_expired(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        mark_expired(&self.writer.lock().conn, id, at)
    }
}

const COLUMNS: &str = "id, identity, connection, source, policy, scope_json, scope_digest, \
    not_before_us, expires_at_us, created_at_us, revoked_at_us, revoked_by, revoke_reason, expired_at_us";

fn row(r: &rusqlite::Row<'_>) -> Result<GrantRecord, StoreError> {
    let t = |i: usize| -> Result<Option<Timestamp>, StoreError> {
        Ok(r.get::<_, Option<i64>>(i)
            .map_err(db)?
            .map(Timestamp::from_micros))
    };
    Ok(GrantRecord {
        id: r.get(0).map_err(db)?,
        identity: r.get(1).map_err(db)?,
        connection: r.get(2).map_err(db)?,
        source: r.get(3).map_err(db)?,
        policy: r.get(4).map_err(db)?,
        scope_json: r.get(5).map_err(db)?,
        scope_digest: r.get(6).map_err(db)?,
        not_before: Timestamp::from_micros(r.get(7).map_err(db)?),
        expires_at: t(8)?,
        created_at: Timestamp::from_micros(r.get(9).map_err(db)?),
        revoked_at: t(10)?,
        revoked_by: r.get(11).map_err(db)?,
        revoke_reason: r.get(12).map_err(db)?,
        expired_at: t(13)?,
    })
}

fn insert(conn: &Connection, g: &GrantRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO grants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .map_err(db)?
    .execute(params![
        g.id,
        g.identity,
        g.connection,
        g.source,
        g.policy,
        g.scope_json,
        g.scope_digest,
        g.not_before.as_micros(),
        g.expires_at.map(Timestamp::as_micros),
        g.created_at.as_micros(),
        g.revoked_at.map(Timestamp::as_micros),
        g.revoked_by,
        g.revoke_reason,
        g.expired_at.map(Timestamp::as_micros),
    ])
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            StoreError::Backend(format!("a grant with id {:?} already exists", g.id))
        }
        _ => db(e),
    })?;
    Ok(())
}

fn get(conn: &Connection, id: &str) -> Result<Option<GrantRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM grants WHERE id = ?1"))
        .map_err(db)?;
    let mut rows = stmt.query([id]).map_err(db)?;
    match rows.next().map_err(db)? {
        Some(r) => Ok(Some(row(r)?)),
        None => Ok(None),
    }
}

fn list(conn: &Connection, f: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM grants \
             WHERE (?1 IS NULL OR identity = ?1) AND (?2 IS NULL OR connection = ?2) \
               AND (?3 IS NULL OR (revoked_at_us IS NULL AND not_before_us <= ?3 \
                                   AND (expires_at_us IS NULL OR expires_at_us > ?3))) \
             ORDER BY created_at_us, rowid"
        ))
        .map_err(db)?;
    let mut rows = stmt
        .query(params![
            f.identity,
            f.connection,
            f.live_at.map(Timestamp::as_micros)
        ])
        .map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(row(r)?);
    }
    Ok(out)
}

fn revoke(
    conn: &Connection,
    id: &str,
    at: Timestamp,
    by: &str,
    reason: Option<&str>,
) -> Result<Option<GrantRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "UPDATE grants SET revoked_at_us = COALESCE(revoked_at_us, ?2), \
                 revoked_by = COALESCE(revoked_by, ?3), revoke_reason = COALESCE(revoke_reason, ?4) \
             WHERE id = ?1 RETURNING {COLUMNS}"
        ))
        .map_err(db)?;
    let mut rows = stmt
        .query(params![id, at.as_micros(), by, reason])
        .map_err(db)?;
    let out = match rows.next().map_err(db)? {
        Some(r) => Some(row(r)?),
        None => None,
    };
    while rows.next().map_err(db)?.is_some() {}
    Ok(out)
}

fn mark_expired(conn: &Connection, id: &str, at: Timestamp) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE grants SET expired_at_us = ?2 WHERE id = ?1 AND expired_at_us IS NULL",
        )
        .map_err(db)?
        .execute(params![id, at.as_micros()])
        .map_err(db)?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteOptions;

    fn grant(id: &str, expires: Option<i64>) -> GrantRecord {
        GrantRecord {
            id: id.into(),
            identity: "etl".into(),
            connection: "ehr".into(),
            source: "policy".into(),
            policy: Some("p".into()),
            scope_json: "{}".into(),
            scope_digest: "d".into(),
            not_before: Timestamp::from_micros(100),
            expires_at: expires.map(Timestamp::from_micros),
            created_at: Timestamp::from_micros(100),
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            expired_at: None,
        }
    }

    #[test]
    fn grants_round_trip_revoke_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), SqliteOptions::default()).unwrap();
        store.insert_grant(&grant("g1", None)).unwrap();
        store.insert_grant(&grant("g2", Some(500))).unwrap();
        assert!(store.insert_grant(&grant("g1", None)).is_err());
        assert_eq!(store.grant("g1").unwrap().unwrap(), grant("g1", None));
        let live = |at| {
            store
                .list_grants(&GrantFilter {
                    live_at: Some(Timestamp::from_micros(at)),
                    ..Default::default()
                })
                .unwrap()
                .into_iter()
                .map(|g| g.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(live(200), ["g1", "g2"]);
        assert_eq!(live(600), ["g1"]);
        let r = store
            .revoke_grant("g1", Timestamp::from_micros(300), "cli:alice", Some("left"))
            .unwrap()
            .unwrap();
        assert_eq!(r.revoked_by.as_deref(), Some("cli:alice"));
        let again = store
            .revoke_grant("g1", Timestamp::from_micros(400), "cli:bob", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            again.revoked_at,
            Some(Timestamp::from_micros(300)),
            "the first revocation stands"
        );
        assert_eq!(live(350), ["g2"]);
        assert!(store
            .revoke_grant("nope", Timestamp::from_micros(1), "x", None)
            .unwrap()
            .is_none());
        assert!(store
            .mark_grant_expired("g2", Timestamp::from_micros(500))
            .unwrap());
        assert!(!store
            .mark_grant_expired("g2", Timestamp::from_micros(501))
            .unwrap());
    }
}
