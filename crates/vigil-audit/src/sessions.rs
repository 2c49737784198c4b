//! Reading sessions back from the trail: what `vigil sessions list|show` and the HTTP API
//! print. A read model only: it decodes stored records and never writes.

use crate::AuditError;
use serde::Serialize;
use std::sync::Arc;
use vigil_core::event::{PolicyDenied, SessionEndReason, StatementFinished, StatementStarted};
use vigil_core::{Event, Principal, Record, Timestamp};
use vigil_store::{AuditLog, SessionFilter, SessionsIndex};

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: Option<usize>,
}

/// One session, from its start and end records.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub identity: Option<Arc<Principal>>,
    pub connection: Option<String>,
    pub client_addr: String,
    pub client_tls: bool,
    pub application_name: Option<String>,
    pub upstream: String,
    pub upstream_user: String,
    pub upstream_pid: Option<i32>,
    pub started_at: Timestamp,
    pub started_seq: u64,
    pub ended_at: Option<Timestamp>,
    pub ended_seq: Option<u64>,
    pub end_reason: Option<SessionEndReason>,
    pub duration_us: Option<u64>,
    /// Statements decided: forwarded (interrupted ones included) or refused.
    pub statements: u64,
    /// Of those, the ones that failed: an error, or refused.
    pub errors: u64,
    pub rows: u64,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    /// Of `statements`, those Vigil refused.
    pub refused: u64,
    /// Of `statements`, those cut off by the session's end.
    pub interrupted: u64,
}

/// A statement: its start record and (once finished) its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct StatementView {
    /// Chain position of the start record.
    pub seq: u64,
    pub at: Timestamp,
    pub started: StatementStarted,
    pub finished_seq: Option<u64>,
    pub finished_at: Option<Timestamp>,
    pub finished: Option<StatementFinished>,
}

/// A statement Vigil refused (never forwarded), with the rule that refused it.
#[derive(Clone, Debug, Serialize)]
pub struct DenialView {
    /// Chain position of the `PolicyDenied` record.
    pub seq: u64,
    pub at: Timestamp,
    pub denied: PolicyDenied,
}

/// A session with every statement, in order.
#[derive(Clone, Debug, Serialize)]
pub struct SessionDetail {
    pub summary: SessionSummary,
    /// The statements Vigil forwarded.
    pub statements: Vec<StatementView>,
    /// The statements Vigil refused. Both lists share the session's `statement_seq` numbering.
    pub denials: Vec<DenialView>,
}

fn decode(body: &[u8], seq: u64) -> Result<Record, AuditError> {
    serde_json::from_slice(body).map_err(|e| AuditError::Decode {
        seq,
        reason: e.to_string(),
    })
}

fn summary(started: Record, ended: Option<Record>) -> Option<SessionSummary> {
    let Event::SessionStarted(s) = started.event else {
        return None;
    };
    let mut out = SessionSummary {
        session_id: started
            .session_id
            .map(|s| s.to_string())
            .unwrap_or_default(),
        identity: started.identity,
        connection: started.connection.map(|c| c.to_string()),
        client_addr: s.client_addr,
        client_tls: s.client_tls,
        application_name: s.application_name,
        upstream: s.upstream,
        upstream_user: s.upstream_user,
        upstream_pid: s.upstream_pid,
        started_at: started.at,
        started_seq: started.seq,
        ended_at: None,
        ended_seq: None,
        end_reason: None,
        duration_us: None,
        statements: 0,
        errors: 0,
        rows: 0,
        bytes_to_client: 0,
        bytes_from_client: 0,
        refused: 0,
        interrupted: 0,
    };
    if let Some(Record {
        seq,
        at,
        event: Event::SessionEnded(e),
        ..
    }) = ended
    {
        out.ended_at = Some(at);
        out.ended_seq = Some(seq);
        out.end_reason = Some(e.reason);
        out.duration_us = Some(e.duration_us);
        out.statements = e.statements;
        out.errors = e.errors;
        out.rows = e.rows;
        out.bytes_to_client = e.bytes_to_client;
        out.bytes_from_client = e.bytes_from_client;
        out.refused = e.refused;
        out.interrupted = e.interrupted;
    }
    Some(out)
}

/// Sessions matching `query`, newest first: found in `index`, their start and end records read
/// from `log`.
pub fn list(
    log: &dyn AuditLog,
    index: &dyn SessionsIndex,
    query: &SessionQuery,
) -> Result<Vec<SessionSummary>, AuditError> {
    let filter = SessionFilter {
        identity: query.identity.clone(),
        connection: query.connection.clone(),
        since: query.since,
        until: query.until,
        limit: query.limit,
    };
    let mut out = Vec::new();
    for entry in index.list_sessions(&filter)? {
        let Some(start) = log.audit_row(entry.started_seq)? else {
            continue;
        };
        let started = decode(&start.body, start.seq)?;
        let ended = match entry.ended_seq {
            Some(seq) => match log.audit_row(seq)? {
                Some(row) => Some(decode(&row.body, row.seq)?),
                None => None,
            },
            None => None,
        };
        if let Some(s) = summary(started, ended) {
            out.push(s);
        }
    }
    Ok(out)
}

/// One session with its statements, or `None` if no session has this id.
pub fn detail(
    index: &dyn SessionsIndex,
    session_id: &str,
) -> Result<Option<SessionDetail>, AuditError> {
    let rows = index.session_rows(session_id)?;
    let mut started = None;
    let mut ended = None;
    let mut statements: Vec<StatementView> = Vec::new();
    let mut denials = Vec::new();
    for row in rows {
        let record = decode(&row.body, row.seq)?;
        match &record.event {
            Event::SessionStarted(_) => started = Some(record),
            Event::SessionEnded(_) => ended = Some(record),
            Event::StatementStarted(s) => statements.push(StatementView {
                seq: record.seq,
                at: record.at,
                started: s.clone(),
                finished_seq: None,
                finished_at: None,
                finished: None,
            }),
            Event::PolicyDenied(d) => denials.push(DenialView {
                seq: record.seq,
                at: record.at,
                denied: d.clone(),
            }),
            Event::StatementFinished(f) => {
                if let Some(view) = statements
                    .iter_mut()
                    .rev()
                    .find(|v| v.started.statement_seq == f.statement_seq)
                {
                    view.finished_seq = Some(record.seq);
                    view.finished_at = Some(record.at);
                    view.finished = Some(f.clone());
                }
            }
            _ => {}
        }
    }
    let Some(started) = started else {
        return Ok(None);
    };
    Ok(summary(started, ended).map(|summary| SessionDetail {
        summary,
        statements,
        denials,
    }))
}

/// What the chain says of a session's replay capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureRecord {
    /// The session has no end record yet: its capture is still being written.
    Open,
    /// The session ended; `replay_sha256` is the capture digest its `SessionEnded` record holds
    /// (`None` when it ended without one: captures off, or the capture failed).
    Ended {
        ended_seq: u64,
        replay_sha256: Option<String>,
    },
}

/// The capture digest of a session, from its end record; `None` for an unknown session. Reads
/// two records through the session index, whatever the session's length.
pub fn recorded_capture(
    log: &dyn AuditLog,
    index: &dyn SessionsIndex,
    session_id: &str,
) -> Result<Option<CaptureRecord>, AuditError> {
    let Some(entry) = index.session_index(session_id)? else {
        return Ok(None);
    };
    let Some(ended_seq) = entry.ended_seq else {
        return Ok(Some(CaptureRecord::Open));
    };
    let replay_sha256 = match log.audit_row(ended_seq)? {
        Some(row) => match decode(&row.body, row.seq)?.event {
            Event::SessionEnded(e) => e.replay_sha256,
            _ => None,
        },
        None => None,
    };
    Ok(Some(CaptureRecord::Ended {
        ended_seq,
        replay_sha256,
    }))
}
