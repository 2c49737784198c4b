//! Service tokens in SQLite.

use super::{db, hash32, SqliteStore};
use crate::error::StoreError;
use crate::tokens::{TokenRecord, TokenStore};
use rusqlite::{params, ErrorCode};
use vigil_core::Timestamp;

const TOKEN_COLUMNS: &str =
    "id, identity, hash, created_at_us, expires_at_us, revoked_at_us, label";

impl TokenStore for SqliteStore {
    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        writer
            .conn
            .prepare_cached(&format!(
                "INSERT INTO service_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))
            .map_err(db)?
            .execute(params![
                token.id,
                token.identity,
                &token.hash[..],
                token.created_at.as_micros(),
                token.expires_at.map(Timestamp::as_micros),
                token.revoked_at.map(Timestamp::as_micros),
                token.label,
            ])
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => StoreError::Backend(format!(
                    "a token with id {:?} or with the same hash already exists",
                    token.id
                )),
                _ => db(e),
            })?;
        Ok(())
    }

    fn find_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE hash = ?1"
                ))
                .map_err(db)?;
            let mut rows = stmt.query([&hash[..]]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(r) => Ok(Some(token_row(r)?)),
                None => Ok(None),
            }
        })
    }

    fn list_tokens(&self, identity: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM service_tokens \
                     WHERE ?1 IS NULL OR identity = ?1 ORDER BY created_at_us, rowid"
                ))
                .map_err(db)?;
            let mut rows = stmt.query([identity]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                out.push(token_row(r)?);
            }
            Ok(out)
        })
    }

    fn revoke_token(&self, id: &str, at: Timestamp) -> Result<Option<TokenRecord>, StoreError> {
        let writer = self.writer.lock();
        // COALESCE keeps the first revocation time; RETURNING reads the row in the same step.
        let mut stmt = writer
            .conn
            .prepare_cached(&format!(
                "UPDATE service_tokens SET revoked_at_us = COALESCE(revoked_at_us, ?2) \
                 WHERE id = ?1 RETURNING {TOKEN_COLUMNS}"
            ))
            .map_err(db)?;
        let mut rows = stmt.query(params![id, at.as_micros()]).map_err(db)?;
        let token = match rows.next().map_err(db)? {
            Some(r) => Some(token_row(r)?),
            None => None,
        };
        // Step to the end so the UPDATE statement completes and commits.
        while rows.next().map_err(db)?.is_some() {}
        Ok(token)
    }
}

fn token_row(r: &rusqlite::Row<'_>) -> Result<TokenRecord, StoreError> {
    let id: String = r.get(0).map_err(db)?;
    let hash = hash32(r.get_ref(2).map_err(db)?)
        .ok_or_else(|| StoreError::Backend(format!("token {id}: stored hash is not 32 bytes")))?;
    let ts = |idx: usize| -> Result<Option<Timestamp>, StoreError> {
        Ok(r.get::<_, Option<i64>>(idx)
            .map_err(db)?
            .map(Timestamp::from_micros))
    };
    Ok(TokenRecord {
        identity: r.get(1).map_err(db)?,
        hash,
        created_at: Timestamp::from_micros(r.get(3).map_err(db)?),
        expires_at: ts(4)?,
        revoked_at: ts(5)?,
        label: r.get(6).map_err(db)?,
        id,
    })
}
