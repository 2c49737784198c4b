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
//! - **One file per concern** (`sqlite/audit.rs`, `sessions.rs`, `tokens.rs`, `grants.rs`,
//!   `access_requests.rs`, `statement_approvals.rs`) implements that concern's trait; this file
//!   holds what they share: opening, migrations, the writer connection and the reader pool.

use crate::error::StoreError;
use parking_lot::Mutex;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wal::{Checkpointer, WalTuning, Writer};

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

// --- shared by the concerns' readers ---------------------------------------------------------

fn hash32(v: ValueRef<'_>) -> Option<[u8; 32]> {
    match v {
        ValueRef::Blob(b) => b.try_into().ok(),
        _ => None,
    }
}

mod access_requests;
mod audit;
mod grants;
mod sessions;
mod statement_approvals;
mod tokens;
mod wal;

#[cfg(test)]
mod tests;
