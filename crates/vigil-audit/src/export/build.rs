//! Turning records into artifact rows: a streaming join over records in seq order.
//!
//! A row starts at its *anchor* record (a session's start, a statement's start, a denial…) and,
//! for sessions and statements, is completed by later records (the end, the outcome, masking).
//! A row is emitted as soon as it is complete, so memory holds only rows still open (sessions
//! and statements in flight), never the export. Rows still open when the scan ends are emitted
//! as they are, in anchor order.
//!
//! Fields are read from each record's JSON by name (absent = null), so that records written
//! before a field was added export with that column empty.

use super::columns::{Artifact, Revision};
use super::{ExportFilter, RecordSource, Row, ScanRange};
use crate::AuditError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use vigil_store::AuditRow;

/// Who a grant was for, when its revocation or expiry record does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSubject {
    pub identity: String,
    pub connection: String,
}

/// A record decoded for export.
pub(crate) struct Decoded<'a> {
    pub row: &'a AuditRow,
    pub body: Value,
}

impl Decoded<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        let mut v = &self.body;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// The first of `paths` that holds a value.
    fn first(&self, paths: &[&str]) -> Value {
        paths
            .iter()
            .find_map(|p| self.get(p))
            .cloned()
            .map(empty_is_null)
            .unwrap_or(Value::Null)
    }

    /// The first of `paths` that holds text.
    fn text(&self, paths: &[&str]) -> Value {
        paths
            .iter()
            .find_map(|p| self.get(p).filter(|v| v.is_string()))
            .cloned()
            .map(empty_is_null)
            .unwrap_or(Value::Null)
    }

    fn hash_hex(&self) -> Value {
        Value::String(hex::encode(self.row.hash))
    }

    fn identity_name(&self) -> Option<&str> {
        self.row.identity.as_deref()
    }

    /// The event's own fields: the body without the envelope.
    fn own_fields(&self) -> Value {
        match &self.body {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "seq"
                                | "prev_hash"
                                | "at"
                                | "session_id"
                                | "identity"
                                | "connection"
                                | "type"
                        )
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }
}

/// Empty text is exported as absent, so that a CSV cell reads back the same as the JSON.
fn empty_is_null(v: Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::Null,
        other => other,
    }
}

struct RowBuf {
    artifact: Artifact,
    values: Row,
}

impl RowBuf {
    fn new(artifact: Artifact) -> Self {
        RowBuf {
            artifact,
            values: vec![Value::Null; artifact.columns().len()],
        }
    }

    fn set(&mut self, column: &str, value: Value) {
        let i = self.artifact.index_of(column);
        self.values[i] = empty_is_null(value);
    }

    /// Copies the same-named fields of `rec`.
    fn copy(&mut self, rec: &Decoded<'_>, columns: &[&str]) {
        for column in columns {
            self.set(column, rec.first(&[column]));
        }
    }

    fn anchor(&mut self, rec: &Decoded<'_>) {
        self.set("seq", Value::from(rec.row.seq));
        self.set("hash", rec.hash_hex());
    }

    fn envelope(&mut self, rec: &Decoded<'_>, with_kind: bool) {
        self.set("session_id", rec.first(&["session_id"]));
        self.set("identity", rec.first(&["identity.name"]));
        if with_kind {
            self.set("identity_kind", rec.first(&["identity.kind"]));
        }
        self.set("connection", rec.first(&["connection"]));
    }
}

fn at(rec: &Decoded<'_>) -> Value {
    rec.first(&["at"])
}

/// The state of one artifact's export: rows still open, and what grants and requests are for.
pub(crate) struct Builder<'f> {
    artifact: Artifact,
    revision: Revision,
    filter: &'f ExportFilter,
    range: ScanRange,
    /// Open rows by anchor seq (emitted in this order when the scan ends).
    open: BTreeMap<u64, OpenRow>,
    /// Open sessions by id, or open statements by (session id, statement seq): anchor seq.
    keys: HashMap<(String, u64), u64>,
    /// Grants seen issued in the scan: who they are for.
    grant_subjects: HashMap<String, GrantSubject>,
    /// Access requests seen raised in the scan and not settled yet: who asked.
    requests: HashMap<String, Requester>,
    source: &'f dyn RecordSource,
}

/// Who raised an access request, as its `AccessRequested` record says: what the decision and
/// expiry records written before they named the requester are completed with.
#[derive(Clone, Debug, Default)]
struct Requester {
    identity: Value,
    identity_kind: Value,
    connection: Value,
}

struct OpenRow {
    row: RowBuf,
    masking_events: u64,
    masked_values: u64,
    masked_columns: BTreeSet<String>,
}

impl<'f> Builder<'f> {
    pub(crate) fn new(
        artifact: Artifact,
        revision: Revision,
        filter: &'f ExportFilter,
        range: ScanRange,
        source: &'f dyn RecordSource,
    ) -> Self {
        Builder {
            artifact,
            revision,
            filter,
            range,
            open: BTreeMap::new(),
            keys: HashMap::new(),
            grant_subjects: HashMap::new(),
            requests: HashMap::new(),
            source,
        }
    }

    /// Whether the scan may stop: past the last possible anchor with no row open.
    pub(crate) fn done_after(&self, seq: u64) -> bool {
        seq.saturating_add(1) >= self.range.anchors_before && self.open.is_empty()
    }

    fn is_anchor(&self, rec: &Decoded<'_>) -> bool {
        rec.row.seq < self.range.anchors_before
            && self
                .artifact
                .anchor_kinds()
                .contains(&rec.row.kind.as_str())
            && self
                .filter
                .since
                .is_none_or(|t| rec.row.at_us >= t.as_micros())
            && self
                .filter
                .until
                .is_none_or(|t| rec.row.at_us < t.as_micros())
    }

    fn wanted(&self, identity: Option<&str>, connection: Option<&str>) -> bool {
        (self.filter.identity.is_none() || self.filter.identity.as_deref() == identity)
            && (self.filter.connection.is_none() || self.filter.connection.as_deref() == connection)
    }

    /// Takes the next record (in seq order); emits the rows it completes.
    pub(crate) fn push(
        &mut self,
        row: &AuditRow,
        emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let body: Value = serde_json::from_slice(&row.body).map_err(|e| AuditError::Decode {
            seq: row.seq,
            reason: e.to_string(),
        })?;
        let rec = Decoded { row, body };
        if self.artifact == Artifact::Grants && row.kind == "GrantIssued" {
            if let (Some(id), Some(identity), Some(connection)) = (
                rec.get("grant_id").and_then(Value::as_str),
                rec.get("identity_name").and_then(Value::as_str),
                rec.get("connection_name").and_then(Value::as_str),
            ) {
                self.grant_subjects.insert(
                    id.to_string(),
                    GrantSubject {
                        identity: identity.to_string(),
                        connection: connection.to_string(),
                    },
                );
            }
        }
        if self.artifact == Artifact::Approvals && self.revision >= Revision::SECOND {
            return self.approval_record(&rec, emit);
        }
        if self.is_anchor(&rec) {
            return self.start(&rec, emit);
        }
        match (self.artifact, row.kind.as_str()) {
            (Artifact::Sessions, "SessionEnded") => {
                if let Some(mut open) = self.take_open(&rec, 0) {
                    session_end(&mut open.row, &rec);
                    emit(finish_session(open))?;
                }
            }
            (Artifact::Sessions, "MaskingApplied") => {
                if let Some(anchor) = self.open_key(&rec, 0) {
                    if let Some(open) = self.open.get_mut(&anchor) {
                        open.masking_events += 1;
                        open.masked_values += masking_count(&rec).as_u64().unwrap_or(0);
                        // A table column's name is already `schema.table.column`.
                        if let Some(column) = masking_column(&rec).as_str() {
                            open.masked_columns.insert(column.to_string());
                        }
                    }
                }
            }
            (Artifact::Statements, "StatementFinished") => {
                let n = rec
                    .get("statement_seq")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if let Some(mut open) = self.take_open(&rec, n) {
                    statement_outcome(&mut open.row, &rec);
                    emit(open.row.values)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An approvals record: remembered (who asked), and a row if it is an anchor.
    fn approval_record(
        &mut self,
        rec: &Decoded<'_>,
        emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let id = rec.text(&["request_id"]);
        let id = id.as_str().unwrap_or_default();
        if rec.row.kind == "AccessRequested" {
            self.requests.insert(id.to_string(), requester_of(rec));
        }
        if self.is_anchor(rec) {
            let mut row = RowBuf::new(self.artifact);
            row.anchor(rec);
            approval(&mut row, rec, self.requests.get(id));
            let value = |row: &RowBuf, column| row.values[self.artifact.index_of(column)].clone();
            let (identity, connection) = (value(&row, "identity"), value(&row, "connection"));
            let keep = if identity.is_null()
                && (self.filter.identity.is_some() || self.filter.connection.is_some())
            {
                // A decision on a request raised before the scan, in a record that does not
                // name the requester: only the filter asks the store who it was.
                self.source
                    .request_subject(id)
                    .is_some_and(|s| self.wanted(Some(&s.identity), Some(&s.connection)))
            } else {
                self.wanted(identity.as_str(), connection.as_str())
            };
            if keep {
                emit(row.values)?;
            }
        }
        // A request that can change no more is forgotten (an approved one may be revoked).
        let settled = match rec.row.kind.as_str() {
            "AccessRequestExpired" => true,
            "AccessDecided" => matches!(
                rec.get("status").and_then(Value::as_str),
                Some("denied" | "revoked" | "expired")
            ),
            _ => false,
        };
        if settled {
            self.requests.remove(id);
        }
        Ok(())
    }

    fn open_key(&self, rec: &Decoded<'_>, n: u64) -> Option<u64> {
        let session = rec.row.session_id.as_ref()?;
        self.keys.get(&(session.clone(), n)).copied()
    }

    fn take_open(&mut self, rec: &Decoded<'_>, n: u64) -> Option<OpenRow> {
        let session = rec.row.session_id.as_ref()?;
        let anchor = self.keys.remove(&(session.clone(), n))?;
        self.open.remove(&anchor)
    }

    fn start(
        &mut self,
        rec: &Decoded<'_>,
        emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let mut row = RowBuf::new(self.artifact);
        row.anchor(rec);
        match self.artifact {
            Artifact::Sessions => {
                if !self.wanted(rec.identity_name(), rec.row.connection.as_deref()) {
                    return Ok(());
                }
                session_start(&mut row, rec);
                self.open_row(rec, 0, row);
            }
            Artifact::Statements => {
                if !self.wanted(rec.identity_name(), rec.row.connection.as_deref()) {
                    return Ok(());
                }
                statement_start(&mut row, rec);
                let n = rec
                    .get("statement_seq")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.open_row(rec, n, row);
            }
            Artifact::Denials => {
                if self.wanted(rec.identity_name(), rec.row.connection.as_deref()) {
                    denial(&mut row, rec);
                    emit(row.values)?;
                }
            }
            Artifact::Masking => {
                if self.wanted(rec.identity_name(), rec.row.connection.as_deref()) {
                    masking(&mut row, rec, self.revision);
                    emit(row.values)?;
                }
            }
            Artifact::AuthFailures => {
                auth_failure(&mut row, rec);
                let value = |column| row.values[self.artifact.index_of(column)].clone();
                // The identity the credential proved, or else the user the client claimed.
                let identity = match value("identity") {
                    Value::Null => value("user"),
                    proved => proved,
                };
                if self.wanted(identity.as_str(), value("connection").as_str()) {
                    emit(row.values)?;
                }
            }
            Artifact::Grants => {
                grant(&mut row, rec, &self.grant_subjects);
                let identity = row.values[self.artifact.index_of("identity")].clone();
                let connection = row.values[self.artifact.index_of("connection")].clone();
                let keep = if identity.is_null()
                    && (self.filter.identity.is_some() || self.filter.connection.is_some())
                {
                    // Only the filter asks the store who an older grant was for; the row
                    // itself carries what the chain says.
                    let id = rec.get("grant_id").and_then(Value::as_str).unwrap_or("");
                    self.source
                        .grant_subject(id)
                        .is_some_and(|s| self.wanted(Some(&s.identity), Some(&s.connection)))
                } else {
                    self.wanted(identity.as_str(), connection.as_str())
                };
                if keep {
                    emit(row.values)?;
                }
            }
            Artifact::Approvals => {
                approval_first_revision(&mut row, rec);
                let identity = row.values[self.artifact.index_of("identity")].clone();
                let connection = row.values[self.artifact.index_of("connection")].clone();
                if self.wanted(identity.as_str(), connection.as_str()) {
                    emit(row.values)?;
                }
            }
        }
        Ok(())
    }

    fn open_row(&mut self, rec: &Decoded<'_>, n: u64, row: RowBuf) {
        let Some(session) = rec.row.session_id.clone() else {
            return;
        };
        let seq = rec.row.seq;
        // A second start with the same key (should not happen) replaces the first's slot but
        // the first row is still emitted at the end.
        self.keys.insert((session, n), seq);
        self.open.insert(
            seq,
            OpenRow {
                row,
                masking_events: 0,
                masked_values: 0,
                masked_columns: BTreeSet::new(),
            },
        );
    }

    /// Emits the rows still open, in anchor order.
    pub(crate) fn finish(
        self,
        emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let artifact = self.artifact;
        for (_, open) in self.open {
            if artifact == Artifact::Sessions {
                emit(finish_session(open))?;
            } else {
                emit(open.row.values)?;
            }
        }
        Ok(())
    }
}

fn finish_session(open: OpenRow) -> Row {
    let mut row = open.row;
    if open.masking_events > 0 {
        row.set("masking_events", Value::from(open.masking_events));
        row.set("masked_values", Value::from(open.masked_values));
        row.set(
            "masked_columns",
            Value::from(open.masked_columns.into_iter().collect::<Vec<_>>()),
        );
    }
    row.values
}

fn session_start(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.envelope(rec, true);
    row.set("started_at", at(rec));
    row.set("auth_method", rec.first(&["identity.auth_method"]));
    row.set("issuer", rec.first(&["identity.issuer"]));
    row.set("subject", rec.first(&["identity.subject"]));
    row.set("credential_id", rec.first(&["identity.credential_id"]));
    row.copy(
        rec,
        &[
            "protocol",
            "client_addr",
            "client_tls",
            "application_name",
            "upstream",
            "upstream_user",
            "upstream_tls",
            "upstream_pid",
        ],
    );
    let grants: Vec<Value> = rec
        .get("grants")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|g| g.get("grant_id").cloned())
                .collect()
        })
        .unwrap_or_default();
    row.set("grant_ids", Value::Array(grants));
}

fn session_end(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.set("ended_seq", Value::from(rec.row.seq));
    row.set("ended_hash", rec.hash_hex());
    row.set("ended_at", at(rec));
    row.set("end_reason", rec.first(&["reason"]));
    row.copy(
        rec,
        &[
            "duration_us",
            "statements",
            "errors",
            "rows",
            "bytes_to_client",
            "bytes_from_client",
        ],
    );
    // Absent in the record means none (the writer omits zeros).
    for column in ["refused", "interrupted"] {
        let v = rec.first(&[column]);
        row.set(column, if v.is_null() { Value::from(0) } else { v });
    }
}

/// The statement shape shared by statements and denials.
fn shape(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.envelope(rec, true);
    row.set("at", at(rec));
    row.copy(
        rec,
        &[
            "statement_seq",
            "protocol",
            "text",
            "fingerprint",
            "commands",
            "command_classes",
            "objects",
        ],
    );
}

fn statement_start(row: &mut RowBuf, rec: &Decoded<'_>) {
    shape(row, rec);
    row.copy(rec, &["parse_error", "prepared_statement"]);
    // What `EXECUTE name` / `FETCH name` ran: the name and the text that defined it.
    let executed: Vec<Value> = rec
        .get("executed")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            Value::from(format!(
                "{}: {}",
                e["name"].as_str().unwrap_or_default(),
                e["text"].as_str().unwrap_or_default()
            ))
        })
        .collect();
    row.set("executed_texts", Value::from(executed));
    row.set("parameter_count", rec.first(&["parameters.count"]));
    row.set("parameter_mode", rec.first(&["parameters.mode"]));
}

fn statement_outcome(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.set("finished_seq", Value::from(rec.row.seq));
    row.set("finished_hash", rec.hash_hex());
    row.set("finished_at", at(rec));
    row.copy(
        rec,
        &[
            "status",
            "sqlstate",
            "command_tags",
            "rows",
            "bytes",
            "duration_us",
            "result_digest",
        ],
    );
    // Absent in the record means none (the writer omits zeros).
    for column in ["rows_withheld", "values_withheld"] {
        let v = rec.first(&[column]);
        row.set(column, if v.is_null() { Value::from(0) } else { v });
    }
    if row.values[row.artifact.index_of("command_tags")].is_null() {
        row.set("command_tags", Value::Array(Vec::new()));
    }
}

fn denial(row: &mut RowBuf, rec: &Decoded<'_>) {
    shape(row, rec);
    row.copy(rec, &["rule", "reason", "grant_id", "sqlstate"]);
}

fn masking_column(rec: &Decoded<'_>) -> Value {
    rec.text(&["column"])
}

fn masking_count(rec: &Decoded<'_>) -> Value {
    rec.first(&["count"])
}

fn masking(row: &mut RowBuf, rec: &Decoded<'_>, revision: Revision) {
    row.envelope(rec, true);
    row.set("at", at(rec));
    row.copy(rec, &["statement_seq"]);
    row.set("table", rec.text(&["table"]));
    row.set("column", masking_column(rec));
    let rule = rec.text(&["rule"]);
    if revision >= Revision::SECOND {
        // A detector's values are recorded under the rule `detector:<name>`.
        let detector = rule.as_str().and_then(|r| r.strip_prefix("detector:"));
        row.set("detector", detector.map_or(Value::Null, Value::from));
        row.set("entity", rec.text(&["entity"]));
    }
    row.set("rule", rule);
    row.set("operator", rec.text(&["operator"]));
    row.set("count", masking_count(rec));
    row.set("fields", rec.own_fields());
}

fn auth_failure(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.set("at", at(rec));
    row.copy(rec, &["reason", "user", "client_addr", "detail"]);
    row.set("connection", rec.text(&["requested_connection"]));
    // The identity and credential, when the credential was good and the login was refused
    // for another reason (a session limit, a connection not allowed).
    row.set("identity", rec.first(&["identity.name"]));
    row.set("identity_kind", rec.first(&["identity.kind"]));
    row.set("auth_method", rec.first(&["identity.auth_method"]));
    row.set("credential_id", rec.first(&["identity.credential_id"]));
    row.set("issuer", rec.text(&["issuer", "identity.issuer"]));
    row.set("subject", rec.text(&["subject", "identity.subject"]));
}

fn grant(row: &mut RowBuf, rec: &Decoded<'_>, subjects: &HashMap<String, GrantSubject>) {
    row.set("at", at(rec));
    let event = match rec.row.kind.as_str() {
        "GrantIssued" => "issued",
        "GrantRevoked" => "revoked",
        _ => "expired",
    };
    row.set("event", Value::from(event));
    row.copy(
        rec,
        &[
            "grant_id",
            "source",
            "policy",
            "scope_digest",
            "scope",
            "not_before",
            "expires_at",
            "revoked_by",
            "reason",
            "expired_at",
        ],
    );
    row.set("request_id", rec.text(&["request_id", "approval_id"]));
    let mut identity = rec.text(&["identity_name", "identity.name"]);
    let mut connection = rec.text(&["connection_name", "connection"]);
    if identity.is_null() {
        let id = rec.get("grant_id").and_then(Value::as_str).unwrap_or("");
        if let Some(s) = subjects.get(id) {
            identity = Value::from(s.identity.clone());
            connection = Value::from(s.connection.clone());
        }
    }
    row.set("identity", identity);
    row.set("connection", connection);
}

/// Who asked, from an `AccessRequested` record.
fn requester_of(rec: &Decoded<'_>) -> Requester {
    Requester {
        identity: rec.text(&["identity_name"]),
        identity_kind: rec.text(&["identity_kind", "identity.kind"]),
        connection: rec.text(&["connection_name"]),
    }
}

/// An approvals row from the record's own fields. The requester is on every row: a decision's
/// envelope names the approver, so it is read from the record's `identity_name` (or, in
/// records written before it, from the request's record when the export read it).
fn approval(row: &mut RowBuf, rec: &Decoded<'_>, requester: Option<&Requester>) {
    row.set("at", at(rec));
    row.set("request_id", rec.text(&["request_id"]));
    let seen = requester.cloned().unwrap_or_default();
    let or_seen = |v: Value, seen: Value| if v.is_null() { seen } else { v };
    let (event, status) = match rec.row.kind.as_str() {
        "AccessRequested" => ("requested", Value::from("pending")),
        "AccessDecided" => ("decided", rec.text(&["status"])),
        _ => ("expired", Value::from("expired")),
    };
    row.set("event", Value::from(event));
    row.set("status", status);
    row.set(
        "identity",
        or_seen(rec.text(&["identity_name"]), seen.identity),
    );
    row.set(
        "identity_kind",
        or_seen(
            rec.text(&["identity_kind"]),
            match rec.row.kind.as_str() {
                // The envelope of a request is the requester's.
                "AccessRequested" => rec.text(&["identity.kind"]),
                _ => seen.identity_kind,
            },
        ),
    );
    // The envelope's connection is the request's in every approvals record.
    row.set(
        "connection",
        or_seen(
            rec.text(&["connection_name"]),
            or_seen(rec.text(&["connection"]), seen.connection),
        ),
    );
    match rec.row.kind.as_str() {
        "AccessRequested" => {
            row.set("justification", rec.text(&["reason"]));
            row.set("requested_duration", rec.first(&["duration_secs"]));
            row.set("expires_at", rec.text(&["expires_at"]));
            row.set("scope_digest", rec.text(&["scope_digest"]));
            row.set("policy", rec.text(&["policy"]));
            row.set("subject", rec.text(&["subject"]));
        }
        "AccessDecided" => {
            row.set("decision", rec.text(&["action"]));
            row.set("decided_by", rec.text(&["approver"]));
            row.set("decision_reason", rec.text(&["rationale"]));
            row.set("approver_auth", rec.text(&["approver_auth"]));
            row.set("grant_id", rec.text(&["grant_id"]));
        }
        _ => row.set("expires_at", rec.text(&["expired_at"])),
    }
    row.set("fields", rec.own_fields());
}

/// Approvals as revision 1 made them (fields read by names the records do not use), kept so
/// that bundles made then verify: see [`Revision`].
fn approval_first_revision(row: &mut RowBuf, rec: &Decoded<'_>) {
    row.set("at", at(rec));
    let event = match rec.row.kind.as_str() {
        "AccessRequested" => "requested",
        "AccessDecided" => "decided",
        _ => "expired",
    };
    row.set("event", Value::from(event));
    row.set("request_id", rec.text(&["request_id", "id"]));
    row.set(
        "identity",
        rec.text(&["identity.name", "identity_name", "requester"]),
    );
    row.set(
        "identity_kind",
        rec.text(&["identity.kind", "identity_kind"]),
    );
    row.set("connection", rec.text(&["connection", "connection_name"]));
    row.set("justification", rec.text(&["justification"]));
    row.set("ticket", rec.text(&["ticket", "ticket_id"]));
    row.set(
        "requested_duration",
        rec.first(&["requested_duration", "duration", "duration_s"]),
    );
    row.set("decision", rec.text(&["decision", "outcome"]));
    row.set(
        "decided_by",
        rec.text(&["decided_by", "approver", "approved_by"]),
    );
    if rec.row.kind == "AccessDecided" {
        row.set("decision_reason", rec.text(&["reason", "comment"]));
    }
    row.set("grant_id", rec.text(&["grant_id"]));
    row.set("expires_at", rec.text(&["expires_at"]));
    row.set("scope_digest", rec.text(&["scope_digest"]));
    row.set("fields", rec.own_fields());
}

/// Drives a [`Builder`] over a source of records.
pub(crate) fn run(
    source: &dyn RecordSource,
    artifact: Artifact,
    revision: Revision,
    filter: &ExportFilter,
    range: ScanRange,
    emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut builder = Builder::new(artifact, revision, filter, range, source);
    let mut rows = 0u64;
    let width = artifact.columns_at(revision).len();
    let mut counting = |mut row: Row| {
        rows += 1;
        row.truncate(width);
        emit(row)
    };
    source.visit(range, artifact.kinds(), &mut |row| {
        builder.push(&row, &mut counting)?;
        Ok(!builder.done_after(row.seq))
    })?;
    builder.finish(&mut counting)?;
    Ok(rows)
}
