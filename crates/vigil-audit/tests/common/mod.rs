//! Shared fixtures for the integration tests: a store in a temp dir, a signing key, realistic
//! drafts, and the attacker's tools (plain SQL on the SQLite file).
#![allow(dead_code)]

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_audit::export::StoreSource;
use vigil_audit::{verify, AuditError, AuditOptions, AuditWriter, SigningKey, VerifyReport};
use vigil_core::event::{
    ProtocolPath, SessionEndReason, SessionEnded, SessionStarted, StatementFinished,
    StatementShape, StatementStarted, StatementStatus,
};
use vigil_core::{AuthMethod, Event, EventDraft, IdentityKind, Principal, SessionId, Timestamp};
use vigil_store::{AuditLog, SqliteOptions, SqliteStore};

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

    pub fn dyn_store(&self) -> Arc<dyn AuditLog> {
        self.store.clone()
    }

    /// What exports and bundles read: the chain, grants and access requests, all this store.
    pub fn source(&self) -> StoreSource<'_> {
        StoreSource {
            log: &*self.store,
            grants: &*self.store,
            requests: &*self.store,
        }
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
            protocol: ProtocolPath::from_static("extended"),
            shape: shape(),
            prepared_statement: None,
            parameters: None,
            grant_id: None,
            request_id: None,
            executed: Vec::new(),
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
            refused: 0,
            interrupted: 0,
            masked: Default::default(),
            replay_sha256: None,
            replay_file_sha256: None,
            replay_truncated: None,
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

/// Every stored record of `session`, by a full scan: unlike `SessionsIndex::session_rows`, this does
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

// --- a chain with every artifact in it (exports, bundles) -------------------------------------

/// Appends a record of any kind (also kinds this build has no type for) at the chain's head,
/// chained and hashed as the writer would. Only while no writer runs.
pub fn append_raw(
    store: &dyn AuditLog,
    kind: &str,
    session: Option<SessionId>,
    fields: serde_json::Value,
) -> u64 {
    let head = store.audit_head().unwrap();
    let seq = head.map_or(1, |h| h.seq + 1);
    let prev = head.map_or_else(|| "0".repeat(64), |h| hex::encode(h.hash));
    let at = Timestamp::now();
    let mut body = serde_json::json!({"seq": seq, "prev_hash": prev, "at": at});
    if let Some(s) = session {
        body["session_id"] = serde_json::json!(s.to_string());
        body["identity"] = serde_json::to_value(&*principal()).unwrap();
        body["connection"] = serde_json::json!("ehr");
    }
    body["type"] = serde_json::json!(kind);
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let bytes = serde_json::to_vec(&body).unwrap();
    let row = vigil_store::AuditRow {
        seq,
        at_us: at.as_micros(),
        kind: kind.into(),
        session_id: session.map(|s| s.to_string()),
        identity: session.map(|_| "etl".into()),
        connection: session.map(|_| "ehr".into()),
        hash: Sha256::digest(&bytes).into(),
        body: bytes,
    };
    store.append_audit(&[row]).unwrap();
    seq
}

fn grant_issued(id: &str) -> EventDraft {
    EventDraft::new(Event::GrantIssued(vigil_core::event::GrantIssued {
        grant_id: id.into(),
        identity_name: "etl".into(),
        connection_name: "ehr".into(),
        source: "policy".into(),
        policy: Some("etl-read".into()),
        scope: serde_json::json!({"commands": ["read"], "relations": ["patients"]}),
        scope_digest: "cd".repeat(32),
        not_before: Timestamp::now(),
        expires_at: None,
        request_id: None,
    }))
}

fn denied(session: SessionId, n: u64) -> EventDraft {
    let mut d = session_started(session);
    d.event = Event::PolicyDenied(vigil_core::event::PolicyDenied {
        statement_seq: n,
        protocol: ProtocolPath::from_static("simple"),
        shape: Arc::new(StatementShape {
            text: "DELETE FROM patients WHERE mrn = $1".into(),
            fingerprint: "0011223344556677".into(),
            commands: vec!["DELETE".into()],
            command_classes: vec!["write".into()],
            objects: vec!["patients".into()],
            parse_error: None,
        }),
        rule: "command_not_allowed".into(),
        reason: "write on patients is not in the grant".into(),
        grant_id: Some("g-1".into()),
        sqlstate: "42501".into(),
        request_id: None,
    });
    d
}

/// Sessions (two ended, one open, with pipelined statements), a denial, grants issued and
/// expired, masking and approval records; sealed by a final checkpoint.
pub fn populate(env: &Env) {
    use vigil_audit::wait_durable;
    let writer = env.start();
    wait_durable(writer.append(grant_issued("g-1"))).unwrap();
    let sessions = [SessionId::new(), SessionId::new(), SessionId::new()];
    for (i, s) in sessions.iter().enumerate() {
        wait_durable(writer.append(session_started(*s))).unwrap();
        // Pipelined: 2 starts before 1 finishes.
        wait_durable(writer.append_all(vec![statement_started(*s, 1), statement_started(*s, 2)]))
            .unwrap();
        wait_durable(writer.append(statement_finished(*s, 1))).unwrap();
        wait_durable(writer.append(denied(*s, 3))).unwrap();
        if i < 2 {
            wait_durable(writer.append(statement_finished(*s, 2))).unwrap();
        }
    }
    writer.shutdown().unwrap();
    let store = env.dyn_store();
    append_raw(
        &*store,
        "MaskingApplied",
        Some(sessions[0]),
        serde_json::json!({
        "statement_seq": 1, "column": "public.patients.ssn", "table": "public.patients",
        "rule": "ssn-last4", "entity": "ssn", "operator": "partial", "count": 3}),
    );
    append_raw(
        &*store,
        "AccessRequested",
        Some(sessions[1]),
        serde_json::json!({
        "request_id": "req-1", "identity_name": "etl", "connection_name": "ehr",
        "policy": "etl-on-approval", "subject": "access", "duration_secs": 7200,
        "reason": "incident 42, needs \"patients\", now",
        "expires_at": "2026-11-28T12:00:00.000000Z"}),
    );
    // A decision in a record that does not name the requester (as written before it did).
    append_raw(
        &*store,
        "AccessDecided",
        None,
        serde_json::json!({
        "request_id": "req-1", "action": "approve", "approver": "alice",
        "approver_kind": "human", "approver_auth": "oidc", "rationale": "ok",
        "status": "approved", "grant_id": "g-2"}),
    );
    append_raw(
        &*store,
        "AuthFailed",
        None,
        serde_json::json!({
        "reason": "unknown_token", "user": "etl", "requested_connection": "ehr",
        "client_addr": "127.0.0.1:50000", "detail": "no such token"}),
    );
    let writer = env.start();
    for s in &sessions[..2] {
        wait_durable(writer.append(session_ended(*s))).unwrap();
    }
    wait_durable(writer.append(EventDraft::new(Event::GrantExpired(
        vigil_core::event::GrantExpired {
            grant_id: "g-1".into(),
            expired_at: Timestamp::now(),
        },
    ))))
    .unwrap();
    writer.shutdown().unwrap();
}
