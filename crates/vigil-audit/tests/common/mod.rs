//! Shared fixtures for the integration tests: a store in a temp dir, a signing key, realistic
//! drafts, and the attacker's tools (plain SQL on the SQLite file).
#![allow(dead_code)]

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_audit::{verify, AuditError, AuditOptions, AuditWriter, SigningKey, VerifyReport};
use vigil_core::event::{
    SessionEndReason, SessionEnded, SessionStarted, StatementFinished, StatementProtocol,
    StatementShape, StatementStarted, StatementStatus,
};
use vigil_core::{AuthMethod, Event, EventDraft, IdentityKind, Principal, SessionId, Timestamp};
use vigil_store::{SqliteOptions, SqliteStore, Store};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub anchor: PathBuf,
    pub store: Arc<SqliteStore>,
    pub key: SigningKey,
}

impl Env {
    pub fn new() -> Env {
        Env::with_store_options(SqliteOptions::default())
    }

    pub fn with_store_options(options: SqliteOptions) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vigil.db");
        let anchor = dir.path().join("anchor/audit.anchor");
        let store = Arc::new(SqliteStore::open(&db, options).unwrap());
        Env {
            dir,
            db,
            anchor,
            store,
            key: SigningKey::from_bytes(&[42; 32]),
        }
    }

    pub fn options(&self) -> AuditOptions {
        let mut options = AuditOptions::new(self.key.clone());
        options.anchor_path = Some(self.anchor.clone());
        options.retry_initial = Duration::from_millis(20);
        options.retry_max = Duration::from_millis(200);
        options
    }

    pub fn dyn_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn start(&self) -> AuditWriter {
        AuditWriter::start(self.dyn_store(), self.options()).unwrap()
    }

    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify(&*self.store, &self.key.verifying_key(), Some(&self.anchor))
    }

    pub fn verify_without_anchor(&self) -> Result<VerifyReport, AuditError> {
        verify(&*self.store, &self.key.verifying_key(), None)
    }

    /// A connection of the attacker's own.
    pub fn raw(&self) -> Connection {
        let conn = Connection::open(&self.db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    pub fn kinds(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        self.store
            .scan_audit(0, &mut |r| {
                out.push((r.seq, r.kind));
                true
            })
            .unwrap();
        out
    }
}

pub fn principal() -> Arc<Principal> {
    Arc::new(Principal {
        name: "etl".into(),
        kind: IdentityKind::Machine,
        auth_method: AuthMethod::ServiceToken,
        issuer: None,
        subject: None,
        credential_id: Some("tok_1".into()),
    })
}

fn draft(session: SessionId, event: Event) -> EventDraft {
    EventDraft {
        at: Timestamp::now(),
        session_id: Some(session),
        identity: Some(principal()),
        connection: Some("ehr".into()),
        event,
    }
}

pub fn session_started(session: SessionId) -> EventDraft {
    draft(
        session,
        Event::SessionStarted(SessionStarted {
            protocol: "postgres".into(),
            client_addr: "10.0.0.7:51234".into(),
            application_name: Some("nightly-etl".into()),
            client_tls: true,
            upstream: "db.internal:5432/ehr".into(),
            upstream_user: "vigil_etl".into(),
            upstream_tls: true,
            upstream_pid: Some(4242),
            grants: Vec::new(),
        }),
    )
}

pub fn shape() -> Arc<StatementShape> {
    Arc::new(StatementShape {
        text: "SELECT id, name, dob FROM patients WHERE mrn = $1 AND clinic_id = $2".into(),
        fingerprint: "a1b2c3d4e5f60718".into(),
        commands: vec!["SELECT".into()],
        command_classes: vec!["read".into()],
        objects: vec!["patients".into()],
        parse_error: None,
    })
}

pub fn statement_started(session: SessionId, n: u64) -> EventDraft {
    draft(
        session,
        Event::StatementStarted(StatementStarted {
            statement_seq: n,
            protocol: StatementProtocol::Extended,
            shape: shape(),
            prepared_statement: None,
            parameters: None,
        }),
    )
}

pub fn statement_finished(session: SessionId, n: u64) -> EventDraft {
    draft(
        session,
        Event::StatementFinished(StatementFinished {
            statement_seq: n,
            status: StatementStatus::Ok,
            sqlstate: None,
            command_tags: vec!["SELECT 1".into()],
            rows: 1,
            bytes: 120,
            duration_us: 800,
            result_digest: "ab".repeat(32),
            rows_withheld: 0,
            values_withheld: 0,
            values_masked: 0,
        }),
    )
}

pub fn session_ended(session: SessionId) -> EventDraft {
    draft(
        session,
        Event::SessionEnded(SessionEnded {
            reason: SessionEndReason::ClientTerminated,
            started_at: Timestamp::now(),
            duration_us: 1_000,
            statements: 1,
            errors: 0,
            rows: 1,
            bytes_to_client: 120,
            bytes_from_client: 80,
            masked: Default::default(),
            replay_sha256: None,
        }),
    )
}

// --- the attacker's tools --------------------------------------------------------------------

pub fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

pub fn body(conn: &Connection, seq: u64) -> Vec<u8> {
    conn.query_row(
        "SELECT body FROM audit_log WHERE seq = ?1",
        [seq as i64],
        |r| r.get(0),
    )
    .unwrap()
}

pub fn stored_hash(conn: &Connection, seq: u64) -> Vec<u8> {
    conn.query_row(
        "SELECT hash FROM audit_log WHERE seq = ?1",
        [seq as i64],
        |r| r.get(0),
    )
    .unwrap()
}

/// Replaces a record's body; with `rehash`, also its stored hash (a careful attacker).
pub fn set_body(conn: &Connection, seq: u64, body: &[u8], rehash: bool) {
    if rehash {
        conn.execute(
            "UPDATE audit_log SET body = ?2, hash = ?3 WHERE seq = ?1",
            params![seq as i64, body, sha(body)],
        )
        .unwrap();
    } else {
        conn.execute(
            "UPDATE audit_log SET body = ?2 WHERE seq = ?1",
            params![seq as i64, body],
        )
        .unwrap();
    }
}

/// Edits one JSON field of a record's body (keeping the serialisation style).
pub fn edit_json(
    conn: &Connection,
    seq: u64,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&body(conn, seq)).unwrap();
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

/// Moves records `from..` one place up, making room at `from`.
pub fn shift_up(conn: &Connection, from: u64) {
    conn.execute(
        "UPDATE audit_log SET seq = -seq WHERE seq >= ?1",
        [from as i64],
    )
    .unwrap();
    conn.execute("UPDATE audit_log SET seq = 1 - seq WHERE seq < 0", [])
        .unwrap();
}

/// Inserts a row whose columns agree with its body (a careful attacker).
pub fn insert_row(conn: &Connection, seq: u64, body: &[u8]) {
    let rec: vigil_core::Record = serde_json::from_slice(body).unwrap();
    conn.execute(
        "INSERT INTO audit_log (seq, at_us, kind, session_id, identity, connection, body, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq as i64,
            rec.at.as_micros(),
            rec.event.kind().as_str(),
            rec.session_id.map(|s| s.to_string()),
            rec.identity.as_ref().map(|p| p.name.clone()),
            rec.connection.as_deref(),
            body,
            sha(body)
        ],
    )
    .unwrap();
}

pub fn swap(conn: &Connection, a: u64, b: u64) {
    conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = ?1", [a as i64])
        .unwrap();
    conn.execute(
        "UPDATE audit_log SET seq = ?1 WHERE seq = ?2",
        [a as i64, b as i64],
    )
    .unwrap();
    conn.execute("UPDATE audit_log SET seq = ?1 WHERE seq = -1", [b as i64])
        .unwrap();
}

/// Every stored record of `session`, by a full scan: unlike `Store::session_rows`, this does
/// not need the session's start record.
pub fn records_of(env: &Env, session: SessionId) -> Vec<vigil_store::AuditRow> {
    let id = session.to_string();
    let mut rows = Vec::new();
    env.store
        .scan_audit(0, &mut |row| {
            if row.session_id.as_deref() == Some(id.as_str()) {
                rows.push(row);
            }
            true
        })
        .unwrap();
    rows
}
