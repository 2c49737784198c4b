//! The embedded default: one SQLite file in WAL mode.
//!
//! - **One writer, many readers.** Every write goes through one dedicated connection behind a
//!   mutex, in `BEGIN IMMEDIATE` transactions (so a transaction that will write takes the write
//!   lock up front instead of failing half-way on upgrade). Reads use a small pool of separate
//!   connections: in WAL mode they see the last committed state and never wait for the writer.
//! - **Durability** is SQLite's `synchronous` setting: [`Synchronous::Normal`] (the default)
//!   survives a crash of the process, [`Synchronous::Full`] also a loss of power.
//! - **Schema** versioned with `PRAGMA user_version`; [`SqliteStore::open`] applies missing
//!   migrations in one transaction, so opening is idempotent and safe from several processes.
//! - **Indexes** are kept to what queries need, since every statement through the gateway
//!   appends a row: `audit_log` has only its rowid (`seq`) and a partial index on `session_id`;
//!   the session listing reads the small `sessions` table, indexed by start time.
//! - **WAL checkpoints** (copying the WAL back into the database file, with an `fsync`) run on
//!   a background thread with its own connection, not inside an append's commit: SQLite's
//!   automatic checkpoint would stall one append in a few hundred by milliseconds. The thread
//!   also keeps the WAL bounded under sustained load (see [`wal`]).
//! - A lock held by someone else for longer than `busy_timeout` gives [`StoreError::Busy`].

use crate::{
    AccessRequestFilter, AccessRequestRecord, AuditHead, AuditRow, GrantFilter, GrantRecord,
    SessionFilter, SessionIndex, StatementApprovalRecord, Store, StoreError, TokenRecord,
};
use parking_lot::Mutex;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::Timestamp;
use wal::{Checkpointer, WalTuning};

pub use wal::WalStats;

/// How hard SQLite works to make a commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// A committed transaction survives a crash of the process (not necessarily a power loss).
    /// In WAL mode this costs no `fsync` per commit.
    #[default]
    Normal,
    /// A committed transaction also survives a power loss: one `fsync` of the WAL per commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of a [`SqliteStore`]. Deserialises from the binary's configuration, e.g. in TOML:
///
/// ```toml
/// synchronous = "full"
/// busy_timeout = "2s"      # or a number of milliseconds
/// read_connections = 4
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// How long a write waits for a lock held by another connection or process before failing
    /// with [`StoreError::Busy`]. Default 5 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub busy_timeout: Duration,
    /// How many idle read connections to keep (more are opened under load and closed after).
    /// Default 4.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
        }
    }
}

/// A duration as humans write it (`"250ms"`, `"5s"`) or as a number of milliseconds.
fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(s) => humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}): write e.g. \"500ms\" or \"5s\""
            ))
        }),
    }
}

/// Schema migrations, in order: migration `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: audit trail, session index, service tokens.
    "
    CREATE TABLE IF NOT EXISTS audit_log (
        seq        INTEGER PRIMARY KEY,
        at_us      INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        session_id TEXT,
        identity   TEXT,
        connection TEXT,
        body       BLOB NOT NULL,
        hash       BLOB NOT NULL
    );
    -- Partial: checkpoints and token events have no session and cost the index nothing.
    -- Entries sort by (session_id, rowid), so a session's rows come out in seq order.
    CREATE INDEX IF NOT EXISTS audit_log_session ON audit_log(session_id)
        WHERE session_id IS NOT NULL;

    CREATE TABLE IF NOT EXISTS sessions (
        session_id    TEXT PRIMARY KEY,
        started_seq   INTEGER NOT NULL,
        started_at_us INTEGER NOT NULL,
        identity      TEXT,
        connection    TEXT,
        ended_seq     INTEGER
    );
    CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_at_us);

    CREATE TABLE IF NOT EXISTS service_tokens (
        id            TEXT PRIMARY KEY,
        identity      TEXT NOT NULL,
        hash          BLOB NOT NULL UNIQUE,
        created_at_us INTEGER NOT NULL,
        expires_at_us INTEGER,
        revoked_at_us INTEGER,
        label         TEXT
    );
    ",
    // 2: grants.
    "
    CREATE TABLE IF NOT EXISTS grants (
        id             TEXT PRIMARY KEY,
        identity       TEXT NOT NULL,
        connection     TEXT NOT NULL,
        source         TEXT NOT NULL,
        policy         TEXT,
        scope_json     TEXT NOT NULL,
        scope_digest   TEXT NOT NULL,
        not_before_us  INTEGER NOT NULL,
        expires_at_us  INTEGER,
        created_at_us  INTEGER NOT NULL,
        revoked_at_us  INTEGER,
        revoked_by     TEXT,
        revoke_reason  TEXT,
        expired_at_us  INTEGER
    );
    CREATE INDEX IF NOT EXISTS grants_subject ON grants(identity, connection);
    ",
    // 3: no secondary index on audit_log. Maintaining one cost a quarter to a half of the
    // gateway's throughput; a session's records lie between its start and end records, so
    // the sessions table bounds a primary-key range scan instead.
    "
    DROP INDEX IF EXISTS audit_log_session;
    ",
    // 4: access requests (just-in-time approval). The request itself is kept as JSON the
    // store does not interpret; the columns are what lookups filter on.
    "
    CREATE TABLE IF NOT EXISTS access_requests (
        id             TEXT PRIMARY KEY,
        identity       TEXT NOT NULL,
        connection     TEXT NOT NULL,
        status         TEXT NOT NULL,
        created_at_us  INTEGER NOT NULL,
        expires_at_us  INTEGER NOT NULL,
        grant_id       TEXT,
        version        INTEGER NOT NULL,
        body           TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS access_requests_subject ON access_requests(identity, connection, status);
    CREATE INDEX IF NOT EXISTS access_requests_grant ON access_requests(grant_id);
    ",
    // 5 (statement_approvals): approvals of held statements (per-statement review) and their
    // use, so that an approved statement not yet run survives a restart and still runs at most
    // once. Keyed by the SHA-256 of the statement's text; the text itself is never stored.
    "
    CREATE TABLE IF NOT EXISTS statement_approvals (
        request_id       TEXT PRIMARY KEY,
        identity         TEXT NOT NULL,
        connection       TEXT NOT NULL,
        statement_digest TEXT NOT NULL,
        approved_at_us   INTEGER NOT NULL,
        expires_at_us    INTEGER NOT NULL,
        used_at_us       INTEGER,
        used_session     TEXT
    );
    CREATE INDEX IF NOT EXISTS statement_approvals_statement
        ON statement_approvals(identity, connection, statement_digest);
    ",
];

const AUDIT_COLUMNS: &str = "seq, at_us, kind, session_id, identity, connection, body, hash";
const TOKEN_COLUMNS: &str =
    "id, identity, hash, created_at_us, expires_at_us, revoked_at_us, label";

/// Cap on the WAL file's size when it starts over (it is reused, not shrunk, otherwise). Above
/// [`WalTuning::restart_bytes`], so that a WAL kept bounded by the checkpointer is never
/// truncated (truncating costs a pause; reusing costs nothing).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The SQLite store. Cheap to share (`Arc<SqliteStore>`); every method is blocking.
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    checkpointer: Checkpointer,
    kick_after: u64,
    /// Idle read connections. A reader takes one (or opens one when none is idle) and puts it
    /// back if fewer than `read_connections` are idle, so readers never wait for each other.
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    /// Appended work since the checkpointer was last kicked (see [`WalTuning::kick_after`]).
    unkicked: u64,
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path`: the file (mode 0600 on Unix), its
    /// parent directories, WAL mode and the schema.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        Self::open_tuned(path, options, WalTuning::default())
    }

    pub(crate) fn open_tuned(
        path: &Path,
        options: SqliteOptions,
        tuning: WalTuning,
    ) -> Result<SqliteStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            location: path.display().to_string(),
            reason,
        };
        create_private_file(path).map_err(|e| open_err(e.to_string()))?;
        let mut writer =
            open_connection(path, &options, true).map_err(|e| open_err(describe_open_error(&e)))?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(|e| open_err(describe_open_error(&e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!(
                "the file system does not support WAL mode (journal_mode stayed {mode:?})"
            )));
        }
        migrate(&mut writer).map_err(|e| match e {
            StoreError::Open { .. } => e,
            other => open_err(other.to_string()),
        })?;
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|()| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .map_err(|e| open_err(e.to_string()))?;
        let writer = Arc::new(Mutex::new(Writer {
            conn: writer,
            unkicked: 0,
        }));
        let checkpointer_conn =
            open_connection(path, &options, true).map_err(|e| open_err(e.to_string()))?;
        let checkpointer =
            Checkpointer::start(checkpointer_conn, writer.clone(), tuning).map_err(open_err)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            options,
            writer,
            checkpointer,
            kick_after: tuning.kick_after,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// What the background checkpointer did so far (for monitoring and tests).
    pub fn wal_stats(&self) -> WalStats {
        self.checkpointer.shared.stats()
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection from the pool.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, &self.options, false).map_err(db)?,
        };
        let result = f(&conn);
        let mut idle = self.readers.lock();
        if idle.len() < self.options.read_connections {
            idle.push(conn);
        }
        result
    }
}

/// Creates the database file with owner-only permissions before SQLite does (SQLite gives its
/// `-wal` and `-shm` files the same permissions as the database).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_connection(
    path: &Path,
    options: &SqliteOptions,
    writer: bool,
) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
    if !writer {
        // Belt and braces: a read connection that tried to write would take the write lock.
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

fn describe_open_error(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not an SQLite database".into(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            "the database is locked by another process".into()
        }
        _ => e.to_string(),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError::Open {
            location: tx.path().unwrap_or("?").to_string(),
            reason: format!(
                "schema version {version} was written by a newer Vigil (this one knows up to \
                 {latest}): upgrade Vigil"
            ),
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(db)?;
    }
    if version < latest {
        tx.pragma_update(None, "user_version", latest).map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// Maps an SQLite error: lock contention past the busy timeout is [`StoreError::Busy`].
fn db(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
        _ => StoreError::Backend(e.to_string()),
    }
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Backend(format!("sequence number {seq} too large")))
}

// --- reading rows back exactly as kept -------------------------------------------------------

fn corrupt(seq: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        seq,
        reason: reason.into(),
    }
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn opt_text(
    r: &rusqlite::Row<'_>,
    idx: usize,
    seq: u64,
    name: &str,
) -> Result<Option<String>, StoreError> {
    match r.get_ref(idx).map_err(db)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
        other => Err(corrupt(
            seq,
            format!("column {name} holds {}", type_name(other)),
        )),
    }
}

fn hash32(v: ValueRef<'_>) -> Option<[u8; 32]> {
    match v {
        ValueRef::Blob(b) => b.try_into().ok(),
        _ => None,
    }
}

/// Reads an `audit_log` row selected as [`AUDIT_COLUMNS`]. Anything that is not what
/// `append_audit` writes is [`StoreError::Corrupt`], never silently repaired.
fn audit_row(r: &rusqlite::Row<'_>) -> Result<AuditRow, StoreError> {
    let seq = match r.get_ref(0).map_err(db)? {
        ValueRef::Integer(n) if n >= 0 => n as u64,
        ValueRef::Integer(n) => {
            return Err(corrupt(
                0,
                format!("a row has the impossible sequence number {n}"),
            ))
        }
        other => return Err(corrupt(0, format!("a row's seq is {}", type_name(other)))),
    };
    let at_us = match r.get_ref(1).map_err(db)? {
        ValueRef::Integer(n) => n,
        other => {
            return Err(corrupt(
                seq,
                format!("column at_us holds {}", type_name(other)),
            ))
        }
    };
    let kind = opt_text(r, 2, seq, "kind")?.ok_or_else(|| corrupt(seq, "column kind is NULL"))?;
    // The body is kept as bytes; text is accepted as its bytes so that a verifier, not this
    // reader, judges an edited row.
    let body = match r.get_ref(6).map_err(db)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        other => {
            return Err(corrupt(
                seq,
                format!("column body holds {}", type_name(other)),
            ))
        }
    };
    let hash_ref = r.get_ref(7).map_err(db)?;
    let hash = hash32(hash_ref).ok_or_else(|| {
        corrupt(
            seq,
            match hash_ref {
                ValueRef::Blob(b) => format!("stored hash is {} bytes, not 32", b.len()),
                other => format!("stored hash is {}, not 32 bytes", type_name(other)),
            },
        )
    })?;
    Ok(AuditRow {
        seq,
        at_us,
        kind,
        session_id: opt_text(r, 3, seq, "session_id")?,
        identity: opt_text(r, 4, seq, "identity")?,
        connection: opt_text(r, 5, seq, "connection")?,
        body,
        hash,
    })
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

fn collect_audit_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut rows = stmt.query(params).map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(audit_row(r)?);
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn append_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        if let Some(w) = rows.windows(2).find(|w| w[1].seq != w[0].seq + 1) {
            return Err(StoreError::Backend(format!(
                "rows to append are not consecutive ({} then {})",
                w[0].seq, w[1].seq
            )));
        }
        seq_param(rows[rows.len() - 1].seq)?;

        let mut writer = self.writer.lock();
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        // Read inside the write transaction: no other writer can move the head until commit.
        let head: i64 = tx
            .prepare_cached("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1")
            .map_err(db)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(db)?
            .unwrap_or(0);
        let head = head.max(0) as u64;
        if first.seq != head + 1 {
            return Err(StoreError::ChainConflict {
                expected: first.seq,
                found: head,
            });
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_log (seq, at_us, kind, session_id, identity, connection, \
                     body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db)?;
            for row in rows {
                insert
                    .execute(params![
                        row.seq as i64,
                        row.at_us,
                        row.kind,
                        row.session_id,
                        row.identity,
                        row.connection,
                        row.body,
                        &row.hash[..],
                    ])
                    .map_err(db)?;
                let Some(session_id) = &row.session_id else {
                    continue;
                };
                match row.kind.as_str() {
                    "SessionStarted" => {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO sessions (session_id, started_seq, \
                             started_at_us, identity, connection) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(db)?
                        .execute(params![
                            session_id,
                            row.seq as i64,
                            row.at_us,
                            row.identity,
                            row.connection
                        ])
                        .map_err(db)?;
                    }
                    "SessionEnded" => {
                        tx.prepare_cached(
                            "UPDATE sessions SET ended_seq = ?2 \
                             WHERE session_id = ?1 AND ended_seq IS NULL",
                        )
                        .map_err(db)?
                        .execute(params![session_id, row.seq as i64])
                        .map_err(db)?;
                    }
                    _ => {}
                }
            }
        }
        tx.commit().map_err(db)?;
        self.checkpointer.shared.committed();
        writer.unkicked += 1 + rows.len() as u64 / 16;
        if writer.unkicked >= self.kick_after {
            writer.unkicked = 0;
            self.checkpointer.kick();
        }
        Ok(())
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
                ))
                .map_err(db)?;
            let mut rows = stmt.query([]).map_err(db)?;
            match rows.next().map_err(db)? {
                Some(r) => {
                    let row = audit_row(r)?;
                    Ok(Some(AuditHead {
                        seq: row.seq,
                        hash: row.hash,
                    }))
                }
                None => Ok(None),
            }
        })
    }

    fn scan_audit(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(AuditRow) -> bool,
    ) -> Result<(), StoreError> {
        let lower = if from_seq == 0 {
            i64::MIN
        } else {
            i64::try_from(from_seq).unwrap_or(i64::MAX)
        };
        self.read(|conn| {
            // One statement, stepped row by row: memory stays flat for any chain length.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq >= ?1 ORDER BY seq"
                ))
                .map_err(db)?;
            let mut rows = stmt.query([lower]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                if !visit(audit_row(r)?) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn audit_page(
        &self,
        after_seq: u64,
        through_seq: u64,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        if kinds.is_empty() || limit == 0 || after_seq >= through_seq {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("?{}", i + 4)).collect();
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 AND seq <= ?2 \
             AND kind IN ({}) ORDER BY seq LIMIT ?3",
            placeholders.join(", ")
        );
        let mut args: Vec<Value> = vec![
            Value::Integer(i64::try_from(after_seq).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(through_seq).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        args.extend(kinds.iter().map(|k| Value::Text(k.to_string())));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            collect_audit_rows(&mut stmt, rusqlite::params_from_iter(args))
        })
    }

    fn audit_rows(
        &self,
        after_seq: u64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        if limit == 0 || after_seq >= through_seq {
            return Ok(Vec::new());
        }
        let args = [
            i64::try_from(after_seq).unwrap_or(i64::MAX),
            i64::try_from(through_seq).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        ];
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 AND seq <= ?2 \
                     ORDER BY seq LIMIT ?3"
                ))
                .map_err(db)?;
            collect_audit_rows(&mut stmt, args)
        })
    }

    fn delete_audit_ranges(&self, ranges: &[(u64, u64)]) -> Result<u64, StoreError> {
        let mut writer = self.writer.lock();
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut deleted = 0u64;
        for &(from, to) in ranges {
            let (from, to) = (seq_param(from)?, seq_param(to)?);
            tx.prepare_cached("DELETE FROM sessions WHERE started_seq BETWEEN ?1 AND ?2")
                .map_err(db)?
                .execute(params![from, to])
                .map_err(db)?;
            deleted += tx
                .prepare_cached("DELETE FROM audit_log WHERE seq BETWEEN ?1 AND ?2")
                .map_err(db)?
                .execute(params![from, to])
                .map_err(db)? as u64;
        }
        tx.commit().map_err(db)?;
        Ok(deleted)
    }

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

    fn audit_row(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = ?1"
                ))
                .map_err(db)?;
            Ok(collect_audit_rows(&mut stmt, [seq])?.pop())
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

    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        grants::insert(&self.writer.lock().conn, grant)
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        self.read(|conn| grants::get(conn, id))
    }

    fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<GrantRecord>, StoreError> {
        self.read(|conn| grants::list(conn, filter))
    }

    fn revoke_grant(
        &self,
        id: &str,
        at: Timestamp,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Option<GrantRecord>, StoreError> {
        grants::revoke(&self.writer.lock().conn, id, at, by, reason)
    }

    fn mark_grant_expired(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        grants::mark_expired(&self.writer.lock().conn, id, at)
    }

    fn insert_access_request(&self, request: &AccessRequestRecord) -> Result<(), StoreError> {
        access_requests::insert(&self.writer.lock().conn, request)
    }

    fn access_request(&self, id: &str) -> Result<Option<AccessRequestRecord>, StoreError> {
        self.read(|conn| access_requests::get(conn, id))
    }

    fn list_access_requests(
        &self,
        filter: &AccessRequestFilter,
    ) -> Result<Vec<AccessRequestRecord>, StoreError> {
        self.read(|conn| access_requests::list(conn, filter))
    }

    fn update_access_request(
        &self,
        request: &AccessRequestRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        access_requests::update(&self.writer.lock().conn, request, expected_version)
    }

    fn insert_statement_approval(
        &self,
        approval: &StatementApprovalRecord,
    ) -> Result<(), StoreError> {
        statement_approvals::insert(&self.writer.lock().conn, approval)
    }

    fn statement_approval(
        &self,
        request_id: &str,
    ) -> Result<Option<StatementApprovalRecord>, StoreError> {
        self.read(|conn| statement_approvals::get(conn, request_id))
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
        statement_approvals::use_one(
            &self.writer.lock().conn,
            (identity, connection, statement_digest),
            request_id,
            at,
            session,
        )
    }
}

mod access_requests;
mod grants;
mod statement_approvals;
mod wal;

#[cfg(test)]
mod tests;

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
