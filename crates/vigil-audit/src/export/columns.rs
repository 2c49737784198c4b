//! The artifacts and their columns: product surface. Names and order are stable (docs/EVIDENCE.md
//! documents every one); new columns may be added at the end, none renamed or removed.
//!
//! Each change to what an export contains (a column or an artifact added, a column filled that
//! was empty) is a new [`Revision`]. Evidence bundles record the revision their artifacts were
//! made with, and `vigil evidence verify` derives them again with that revision's definition, so
//! a bundle made by an earlier Vigil still verifies.

/// What an auditor asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// Just-in-time access requests and their decisions.
    Approvals,
    /// One row per session: who, from where, how, under which grants, how it ended.
    Sessions,
    /// One row per statement: its start record joined with its outcome.
    Statements,
    /// Masking applied to values leaving the database (column, rule, count; never a value).
    Masking,
    /// Grants issued, revoked and expired.
    Grants,
    /// Statements refused by policy.
    Denials,
    /// Refused logins (`AuthFailed`): who tried, from where, and why it failed. Never a token.
    AuthFailures,
}

/// A definition of the artifacts (see the module's documentation).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u32);

impl Revision {
    /// Six artifacts; approvals read fields no record has, masking has no table.
    pub const FIRST: Revision = Revision(1);
    /// Approvals from the records' own fields (the requester on every row) with `policy`,
    /// `subject`, `status`, `approver_auth`; masking's `table`, `detector` and `entity`;
    /// sessions' `refused` and `interrupted`; the `auth_failures` artifact.
    pub const SECOND: Revision = Revision(2);
    /// What this build writes.
    pub const CURRENT: Revision = Revision::SECOND;
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a column's values are typed (in JSON, and when a CSV cell is read back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Bool,
    /// RFC 3339 / ISO-8601 UTC text with microseconds.
    Time,
    /// A list of texts (in CSV: a JSON array).
    List,
    /// Any JSON value (in CSV: its compact JSON text).
    Json,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

const fn c(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

use ColumnType::{Bool, Integer, Json, List, Text, Time};

const SESSIONS: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("session_id", Text),
    c("started_at", Time),
    c("identity", Text),
    c("identity_kind", Text),
    c("auth_method", Text),
    c("issuer", Text),
    c("subject", Text),
    c("credential_id", Text),
    c("connection", Text),
    c("protocol", Text),
    c("client_addr", Text),
    c("client_tls", Bool),
    c("application_name", Text),
    c("upstream", Text),
    c("upstream_user", Text),
    c("upstream_tls", Bool),
    c("upstream_pid", Integer),
    c("grant_ids", List),
    c("ended_seq", Integer),
    c("ended_hash", Text),
    c("ended_at", Time),
    c("end_reason", Text),
    c("duration_us", Integer),
    c("statements", Integer),
    c("errors", Integer),
    c("rows", Integer),
    c("bytes_to_client", Integer),
    c("bytes_from_client", Integer),
    c("masking_events", Integer),
    c("masked_values", Integer),
    c("masked_columns", List),
    // Revision 2.
    c("refused", Integer),
    c("interrupted", Integer),
];

const STATEMENTS: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("session_id", Text),
    c("statement_seq", Integer),
    c("identity", Text),
    c("identity_kind", Text),
    c("connection", Text),
    c("protocol", Text),
    c("text", Text),
    c("fingerprint", Text),
    c("commands", List),
    c("command_classes", List),
    c("objects", List),
    c("parse_error", Text),
    c("prepared_statement", Text),
    c("executed_texts", List),
    c("parameter_count", Integer),
    c("parameter_mode", Text),
    c("finished_seq", Integer),
    c("finished_hash", Text),
    c("finished_at", Time),
    c("status", Text),
    c("sqlstate", Text),
    c("command_tags", List),
    c("rows", Integer),
    c("bytes", Integer),
    c("duration_us", Integer),
    c("result_digest", Text),
    c("rows_withheld", Integer),
    c("values_withheld", Integer),
];

const DENIALS: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("session_id", Text),
    c("statement_seq", Integer),
    c("identity", Text),
    c("identity_kind", Text),
    c("connection", Text),
    c("protocol", Text),
    c("text", Text),
    c("fingerprint", Text),
    c("commands", List),
    c("command_classes", List),
    c("objects", List),
    c("rule", Text),
    c("reason", Text),
    c("grant_id", Text),
    c("sqlstate", Text),
];

const GRANTS: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("event", Text),
    c("grant_id", Text),
    c("identity", Text),
    c("connection", Text),
    c("source", Text),
    c("policy", Text),
    c("request_id", Text),
    c("scope_digest", Text),
    c("scope", Json),
    c("not_before", Time),
    c("expires_at", Time),
    c("revoked_by", Text),
    c("reason", Text),
    c("expired_at", Time),
];

const APPROVALS: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("event", Text),
    c("request_id", Text),
    c("identity", Text),
    c("identity_kind", Text),
    c("connection", Text),
    c("justification", Text),
    c("ticket", Text),
    c("requested_duration", Json),
    c("decision", Text),
    c("decided_by", Text),
    c("decision_reason", Text),
    c("grant_id", Text),
    c("expires_at", Time),
    c("scope_digest", Text),
    c("fields", Json),
    // Revision 2.
    c("policy", Text),
    c("subject", Text),
    c("status", Text),
    c("approver_auth", Text),
];

const MASKING: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("session_id", Text),
    c("statement_seq", Integer),
    c("identity", Text),
    c("identity_kind", Text),
    c("connection", Text),
    c("table", Text),
    c("column", Text),
    c("rule", Text),
    c("detector", Text),
    c("operator", Text),
    c("count", Integer),
    c("fields", Json),
    // Revision 2.
    c("entity", Text),
];

const AUTH_FAILURES: &[Column] = &[
    c("seq", Integer),
    c("hash", Text),
    c("at", Time),
    c("reason", Text),
    c("user", Text),
    c("connection", Text),
    c("client_addr", Text),
    c("identity", Text),
    c("identity_kind", Text),
    c("auth_method", Text),
    c("credential_id", Text),
    c("issuer", Text),
    c("subject", Text),
    c("detail", Text),
];

impl Artifact {
    pub const ALL: [Artifact; 7] = [
        Artifact::Approvals,
        Artifact::Sessions,
        Artifact::Statements,
        Artifact::Masking,
        Artifact::Grants,
        Artifact::Denials,
        Artifact::AuthFailures,
    ];

    /// The revision that introduced the artifact.
    pub fn since(self) -> Revision {
        match self {
            Artifact::AuthFailures => Revision::SECOND,
            _ => Revision::FIRST,
        }
    }

    /// The artifacts of `revision`, in [`Artifact::ALL`] order.
    pub fn all_at(revision: Revision) -> impl Iterator<Item = Artifact> {
        Artifact::ALL
            .into_iter()
            .filter(move |a| a.since() <= revision)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Artifact::Approvals => "approvals",
            Artifact::Sessions => "sessions",
            Artifact::Statements => "statements",
            Artifact::Masking => "masking",
            Artifact::Grants => "grants",
            Artifact::Denials => "denials",
            Artifact::AuthFailures => "auth_failures",
        }
    }

    pub fn parse(text: &str) -> Option<Artifact> {
        Artifact::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The columns, in their stable order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Artifact::Approvals => APPROVALS,
            Artifact::Sessions => SESSIONS,
            Artifact::Statements => STATEMENTS,
            Artifact::Masking => MASKING,
            Artifact::Grants => GRANTS,
            Artifact::Denials => DENIALS,
            Artifact::AuthFailures => AUTH_FAILURES,
        }
    }

    /// The columns as `revision` defined them: the first ones of [`Artifact::columns`].
    pub fn columns_at(self, revision: Revision) -> &'static [Column] {
        let all = self.columns();
        if revision >= Revision::SECOND {
            return all;
        }
        let first = match self {
            Artifact::Sessions => 33,
            Artifact::Approvals => 18,
            Artifact::Masking => 15,
            _ => all.len(),
        };
        &all[..first]
    }

    /// Kinds of record that start a row (the time and identity filters apply to these).
    pub fn anchor_kinds(self) -> &'static [&'static str] {
        match self {
            Artifact::Approvals => &["AccessRequested", "AccessDecided", "AccessRequestExpired"],
            Artifact::Sessions => &["SessionStarted"],
            Artifact::Statements => &["StatementStarted"],
            Artifact::Masking => &["MaskingApplied"],
            Artifact::Grants => &["GrantIssued", "GrantRevoked", "GrantExpired"],
            Artifact::Denials => &["PolicyDenied"],
            Artifact::AuthFailures => &["AuthFailed"],
        }
    }

    /// Every kind the export reads: anchors and the records joined to them.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Artifact::Sessions => &["SessionStarted", "SessionEnded", "MaskingApplied"],
            Artifact::Statements => &["StatementStarted", "StatementFinished"],
            other => other.anchor_kinds(),
        }
    }

    pub(crate) fn index_of(self, name: &str) -> usize {
        self.columns()
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("artifact {} has no column {name}", self.as_str()))
    }
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
