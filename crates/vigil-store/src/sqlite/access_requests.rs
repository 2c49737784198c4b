//! Access requests in SQLite.

use super::{db, SqliteStore};
use crate::access_requests::{AccessRequestFilter, AccessRequestRecord, AccessRequestStore};
use crate::error::StoreError;
use rusqlite::{params, Connection, ErrorCode};
use vigil_core::Timestamp;

impl AccessRequestStore for SqliteStore {
    fn insert_access_request(&self, request: &AccessRequestRecord) -> Result<(), StoreError> {
        insert(&self.writer.lock().conn, request)
    }

    fn access_request(&self, id: &str) -> Result<Option<AccessRequestRecord>, StoreError> {
        self.read(|conn| get(conn, id))
    }

    fn list_access_requests(
        &self,
        filter: &AccessRequestFilter,
    ) -> Result<Vec<AccessRequestRecord>, StoreError> {
        self.read(|conn| list(conn, filter))
    }

    fn update_access_request(
        &self,
        request: &AccessRequestRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        update(&self.writer.lock().conn, request, expected_version)
    }
}

const COLUMNS: &str =
    "id, identity, connection, status, created_at_us, expires_at_us, grant_id, version, body";

fn row(r: &rusqlite::Row<'_>) -> Result<AccessRequestRecord, StoreError> {
    Ok(AccessRequestRecord {
        id: r.get(0).map_err(db)?,
        identity: r.get(1).map_err(db)?,
        connection: r.get(2).map_err(db)?,
        status: r.get(3).map_err(db)?,
        created_at: Timestamp::from_micros(r.get(4).map_err(db)?),
        expires_at: Timestamp::from_micros(r.get(5).map_err(db)?),
        grant_id: r.get(6).map_err(db)?,
        version: r.get::<_, i64>(7).map_err(db)? as u64,
        body: r.get(8).map_err(db)?,
    })
}

fn insert(conn: &Connection, a: &AccessRequestRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO access_requests ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .map_err(db)?
    .execute(params![
        a.id,
        a.identity,
        a.connection,
        a.status,
        a.created_at.as_micros(),
        a.expires_at.as_micros(),
        a.grant_id,
        a.version as i64,
        a.body,
    ])
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Backend(format!(
            "an access request with id {:?} already exists",
            a.id
        )),
        _ => db(e),
    })?;
    Ok(())
}

fn get(conn: &Connection, id: &str) -> Result<Option<AccessRequestRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE id = ?1"
        ))
        .map_err(db)?;
    let mut rows = stmt.query([id]).map_err(db)?;
    match rows.next().map_err(db)? {
        Some(r) => Ok(Some(row(r)?)),
        None => Ok(None),
    }
}

fn list(
    conn: &Connection,
    f: &AccessRequestFilter,
) -> Result<Vec<AccessRequestRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM access_requests \
             WHERE (?1 IS NULL OR identity = ?1) AND (?2 IS NULL OR connection = ?2) \
               AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR grant_id = ?4) \
             ORDER BY created_at_us DESC, rowid DESC LIMIT ?5"
        ))
        .map_err(db)?;
    let limit = f.limit.map(|l| l as i64).unwrap_or(-1);
    let mut rows = stmt
        .query(params![
            f.identity,
            f.connection,
            f.status,
            f.grant_id,
            limit
        ])
        .map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(row(r)?);
    }
    Ok(out)
}

fn update(
    conn: &Connection,
    a: &AccessRequestRecord,
    expected_version: u64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE access_requests SET status = ?2, grant_id = ?3, version = ?4, body = ?5 \
             WHERE id = ?1 AND version = ?6",
        )
        .map_err(db)?
        .execute(params![
            a.id,
            a.status,
            a.grant_id,
            a.version as i64,
            a.body,
            expected_version as i64
        ])
        .map_err(db)?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::{AccessRequestFilter, AccessRequestRecord, AccessRequestStore, SqliteOptions};
    use vigil_core::Timestamp;

    #[test]
    fn requests_round_trip_and_updates_are_optimistic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("v.db"), SqliteOptions::default()).unwrap();
        let mut r = AccessRequestRecord {
            id: "r1".into(),
            identity: "etl".into(),
            connection: "ehr".into(),
            status: "pending".into(),
            created_at: Timestamp::from_micros(1),
            expires_at: Timestamp::from_micros(2),
            grant_id: None,
            version: 1,
            body: "{}".into(),
        };
        store.insert_access_request(&r).unwrap();
        assert!(store.insert_access_request(&r).is_err(), "ids are unique");
        r.status = "approved".into();
        r.grant_id = Some("g1".into());
        r.version = 2;
        assert!(store.update_access_request(&r, 1).unwrap());
        assert!(
            !store.update_access_request(&r, 1).unwrap(),
            "stale version"
        );
        assert_eq!(store.access_request("r1").unwrap(), Some(r.clone()));
        let by_grant = AccessRequestFilter {
            grant_id: Some("g1".into()),
            ..Default::default()
        };
        assert_eq!(store.list_access_requests(&by_grant).unwrap(), vec![r]);
        let pending = AccessRequestFilter {
            status: Some("pending".into()),
            ..Default::default()
        };
        assert!(store.list_access_requests(&pending).unwrap().is_empty());
    }
}
