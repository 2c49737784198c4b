//! The audit trail's vocabulary. These names and fields are an export format: once shipped they
//! stay. New fields may be added (readers ignore unknown fields); none are renamed or removed.
//!
//! A stored [`Record`] is the JSON object of its envelope (`seq`, `prev_hash`, `at`, `session_id`,
//! `identity`, `connection`) with the event's own fields beside them and its name in `type`.

use crate::{IdentityKind, Principal, SessionId, Timestamp};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// One record of the audit trail, as chained and stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Position in the chain: 1, 2, 3… with no gaps.
    pub seq: u64,
    /// Hex SHA-256 of the stored bytes of record `seq - 1` (64 zeros for the first record).
    pub prev_hash: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Principal>>,
    /// The connection (target) name as configured in Vigil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Arc<str>>,
    #[serde(flatten)]
    pub event: Event,
}

/// What the data path hands to an [`crate::EventSink`]: a record without its place in the chain.
#[derive(Clone, Debug)]
pub struct EventDraft {
    pub at: Timestamp,
    pub session_id: Option<SessionId>,
    pub identity: Option<Arc<Principal>>,
    pub connection: Option<Arc<str>>,
    pub event: Event,
}

impl EventDraft {
    /// A draft stamped now, with no session context.
    pub fn new(event: Event) -> Self {
        EventDraft {
            at: Timestamp::now(),
            session_id: None,
            identity: None,
            connection: None,
            event,
        }
    }

    pub fn into_record(self, seq: u64, prev_hash: String) -> Record {
        Record {
            seq,
            prev_hash,
            at: self.at,
            session_id: self.session_id,
            identity: self.identity,
            connection: self.connection,
            event: self.event,
        }
    }
}

/// Every kind of event, tagged by `type` in JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum Event {
    SessionStarted(SessionStarted),
    SessionEnded(SessionEnded),
    AuthFailed(AuthFailed),
    StatementStarted(StatementStarted),
    StatementFinished(StatementFinished),
    Checkpoint(Checkpoint),
    TokenIssued(TokenIssued),
    TokenRevoked(TokenRevoked),
    PolicyDenied(PolicyDenied),
    GrantIssued(GrantIssued),
    GrantRevoked(GrantRevoked),
    GrantExpired(GrantExpired),
    MaskingApplied(MaskingApplied),
    AuditPurged(AuditPurged),
    LegalHoldPlaced(LegalHoldPlaced),
    LegalHoldReleased(LegalHoldReleased),
    AccessRequested(AccessRequested),
    AccessDecided(AccessDecided),
    AccessRequestExpired(AccessRequestExpired),
    WebhookDelivery(WebhookDelivery),
    SessionGrantAdded(SessionGrantAdded),
    StatementLiteralsShown(StatementLiteralsShown),
    ReplayCapturesRotated(ReplayCapturesRotated),
}

/// The `type` of an event, as a cheap value (for store columns and filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    SessionStarted,
    SessionEnded,
    AuthFailed,
    StatementStarted,
    StatementFinished,
    Checkpoint,
    TokenIssued,
    TokenRevoked,
    PolicyDenied,
    GrantIssued,
    GrantRevoked,
    GrantExpired,
    MaskingApplied,
    AuditPurged,
    LegalHoldPlaced,
    LegalHoldReleased,
    AccessRequested,
    AccessDecided,
    AccessRequestExpired,
    WebhookDelivery,
    SessionGrantAdded,
    StatementLiteralsShown,
    ReplayCapturesRotated,
}

impl EventKind {
    pub const ALL: [EventKind; 23] = [
        EventKind::SessionStarted,
        EventKind::SessionEnded,
        EventKind::AuthFailed,
        EventKind::StatementStarted,
        EventKind::StatementFinished,
        EventKind::Checkpoint,
        EventKind::TokenIssued,
        EventKind::TokenRevoked,
        EventKind::PolicyDenied,
        EventKind::GrantIssued,
        EventKind::GrantRevoked,
        EventKind::GrantExpired,
        EventKind::MaskingApplied,
        EventKind::AuditPurged,
        EventKind::LegalHoldPlaced,
        EventKind::LegalHoldReleased,
        EventKind::AccessRequested,
        EventKind::AccessDecided,
        EventKind::AccessRequestExpired,
        EventKind::WebhookDelivery,
        EventKind::SessionGrantAdded,
        EventKind::StatementLiteralsShown,
        EventKind::ReplayCapturesRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionStarted => "SessionStarted",
            EventKind::SessionEnded => "SessionEnded",
            EventKind::AuthFailed => "AuthFailed",
            EventKind::StatementStarted => "StatementStarted",
            EventKind::StatementFinished => "StatementFinished",
            EventKind::Checkpoint => "Checkpoint",
            EventKind::TokenIssued => "TokenIssued",
            EventKind::TokenRevoked => "TokenRevoked",
            EventKind::PolicyDenied => "PolicyDenied",
            EventKind::GrantIssued => "GrantIssued",
            EventKind::GrantRevoked => "GrantRevoked",
            EventKind::GrantExpired => "GrantExpired",
            EventKind::MaskingApplied => "MaskingApplied",
            EventKind::AuditPurged => "AuditPurged",
            EventKind::LegalHoldPlaced => "LegalHoldPlaced",
            EventKind::LegalHoldReleased => "LegalHoldReleased",
            EventKind::AccessRequested => "AccessRequested",
            EventKind::AccessDecided => "AccessDecided",
            EventKind::AccessRequestExpired => "AccessRequestExpired",
            EventKind::WebhookDelivery => "WebhookDelivery",
            EventKind::SessionGrantAdded => "SessionGrantAdded",
            EventKind::StatementLiteralsShown => "StatementLiteralsShown",
            EventKind::ReplayCapturesRotated => "ReplayCapturesRotated",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::SessionStarted(_) => EventKind::SessionStarted,
            Event::SessionEnded(_) => EventKind::SessionEnded,
            Event::AuthFailed(_) => EventKind::AuthFailed,
            Event::StatementStarted(_) => EventKind::StatementStarted,
            Event::StatementFinished(_) => EventKind::StatementFinished,
            Event::Checkpoint(_) => EventKind::Checkpoint,
            Event::TokenIssued(_) => EventKind::TokenIssued,
            Event::TokenRevoked(_) => EventKind::TokenRevoked,
            Event::PolicyDenied(_) => EventKind::PolicyDenied,
            Event::GrantIssued(_) => EventKind::GrantIssued,
            Event::GrantRevoked(_) => EventKind::GrantRevoked,
            Event::GrantExpired(_) => EventKind::GrantExpired,
            Event::MaskingApplied(_) => EventKind::MaskingApplied,
            Event::AuditPurged(_) => EventKind::AuditPurged,
            Event::LegalHoldPlaced(_) => EventKind::LegalHoldPlaced,
            Event::LegalHoldReleased(_) => EventKind::LegalHoldReleased,
            Event::AccessRequested(_) => EventKind::AccessRequested,
            Event::AccessDecided(_) => EventKind::AccessDecided,
            Event::AccessRequestExpired(_) => EventKind::AccessRequestExpired,
            Event::WebhookDelivery(_) => EventKind::WebhookDelivery,
            Event::SessionGrantAdded(_) => EventKind::SessionGrantAdded,
            Event::StatementLiteralsShown(_) => EventKind::StatementLiteralsShown,
            Event::ReplayCapturesRotated(_) => EventKind::ReplayCapturesRotated,
        }
    }
}

/// A client authenticated and Vigil opened its upstream connection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionStarted {
    /// Wire protocol of the session (`postgres`).
    pub protocol: String,
    /// Client address as `ip:port`.
    pub client_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// Whether the client connection is TLS.
    pub client_tls: bool,
    /// Upstream target as `host:port/database`.
    pub upstream: String,
    /// Role Vigil logged into upstream as (a name, never a credential).
    pub upstream_user: String,
    /// Whether the upstream connection is TLS.
    pub upstream_tls: bool,
    /// Upstream backend process id (what `pg_backend_pid()` returns), for correlation with server logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_pid: Option<i32>,
    /// The grants the session runs under: what the identity was allowed, exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<EnforcedGrant>,
}

/// A grant as a session record cites it: its id and a canonical snapshot of its scope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnforcedGrant {
    pub grant_id: String,
    /// `policy` or `approval`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The scope, in canonical JSON (sorted keys and lists).
    pub scope: serde_json::Value,
    /// Hex SHA-256 of the canonical JSON of `scope`.
    pub scope_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The access request whose approval issued the grant (source `approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A statement Vigil refused under the session's grants: it was never forwarded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PolicyDenied {
    /// Place in the session's statement sequence (shared with StatementStarted).
    pub statement_seq: u64,
    /// How the statement arrived, in the adapter's words (see [`ProtocolPath`]).
    pub protocol: ProtocolPath,
    /// The refused text's shape: literal-free text, fingerprint, commands, objects.
    #[serde(flatten)]
    pub shape: Arc<StatementShape>,
    /// The rule that refused it (`column_denied`, `relation_not_allowed`…).
    pub rule: String,
    /// Why, naming objects, never values.
    pub reason: String,
    /// The grant whose check came closest (the first one evaluated), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    pub sqlstate: String,
    /// The access request the refusal names (rules `approval_required` and `statement_review`:
    /// the statement needs an approval first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A grant joined a live session (just-in-time elevation: a statement the session's grants
/// refused raised an access request under an approval-required policy, and it was approved).
/// From here on the session runs under this grant too, until it expires or is revoked; the
/// session's other grants are untouched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionGrantAdded {
    #[serde(flatten)]
    pub grant: EnforcedGrant,
}

/// An approver was shown a held statement's text with its literals (kept in the gateway's
/// memory only). Who saw it, never what.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatementLiteralsShown {
    pub request_id: String,
    pub viewer: String,
    /// `oidc` (the viewer's own token).
    pub viewer_auth: String,
}

/// Values masked in what a statement returned (or in a message outside any statement), for one
/// column (or message field) and one rule or detector. Counts only: never a value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MaskingApplied {
    /// The statement whose results were masked; `None` for asynchronous messages
    /// (notifications, notices between statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_seq: Option<u64>,
    /// Where the values came from: `schema.table.column` for a table column, the result's column
    /// name for a computed one, or the channel (`notice`, `error`, `notification`, `copy`).
    pub column: String,
    /// The column rule's name, or `detector:<name>`.
    pub rule: String,
    /// The entity type masked (`ssn`, `person_name`…).
    pub entity: String,
    pub operator: String,
    /// How many values.
    pub count: u64,
    /// The table the values came from (`schema.table`), when `column` is a table column;
    /// absent for computed columns and channels (and in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// A machine identity asked for access that needs a human's approval (docs/APPROVALS.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessRequested {
    pub request_id: String,
    pub identity_name: String,
    pub connection_name: String,
    /// The policy whose approval rule applies.
    pub policy: String,
    /// `access` (a session's scope, asked for at connect time or through the API), `scope` (a
    /// live session's elevation to the policy's scope, asked for by a statement its grants
    /// refused) or `statement` (one held statement).
    pub subject: String,
    /// The literal-free text of the held statement (subject `statement`) or of the statement
    /// that asked for the elevation (subject `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_text: Option<String>,
    /// The session that asked (subject `scope` and `statement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requesting_session: Option<String>,
    /// Grant length asked for, in seconds (capped by the rule's `max_duration`).
    pub duration_secs: u64,
    /// As the client gave it (`vigil.reason`, application_name, or the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// When the request expires if nobody decides.
    pub expires_at: Timestamp,
    /// The requester's kind (`machine`, `human`), as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_kind: Option<IdentityKind>,
    /// Hex SHA-256 of the canonical JSON of the scope asked for (the policy's scope; subjects
    /// `access` and `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_digest: Option<String>,
}

/// A human approved, denied or revoked an access request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessDecided {
    pub request_id: String,
    /// `approve`, `deny` or `revoke`.
    pub action: String,
    pub approver: String,
    /// Always `human`: other kinds are refused before anything is recorded.
    pub approver_kind: IdentityKind,
    /// How the approver proved who they are (`oidc`, or `admin_token` acting for them).
    pub approver_auth: String,
    pub rationale: String,
    /// Where the request stands after this decision (`pending` until the quorum is reached).
    pub status: String,
    /// The grant the approval issued, once the quorum is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Who asked (the record's envelope names the approver): the requesting identity and the
    /// connection asked for. Absent in records written before they were added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_name: Option<String>,
}

/// A pending access request expired: nobody decided in time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessRequestExpired {
    pub request_id: String,
    pub expired_at: Timestamp,
    /// Who asked, and for which connection (absent in records written before they were added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_name: Option<String>,
}

/// One attempt to deliver a webhook notification.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WebhookDelivery {
    pub webhook: String,
    /// `request_created`, `request_decided` or `grant_expired`.
    pub notification: String,
    /// The request (or grant) the notification is about.
    pub subject_id: String,
    pub attempt: u32,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A grant was issued (from a standing policy or an approval).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GrantIssued {
    pub grant_id: String,
    pub identity_name: String,
    pub connection_name: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub scope: serde_json::Value,
    pub scope_digest: String,
    pub not_before: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The access request whose approval issued it (source `approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A grant was revoked: its live sessions end (idle or busy) as soon as the gateway learns of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GrantRevoked {
    pub grant_id: String,
    pub revoked_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A grant reached its end (expiry, or the close of its time window) with sessions under it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GrantExpired {
    pub grant_id: String,
    pub expired_at: Timestamp,
}

/// Records past their retention were deleted from the chain. Written (and sealed by a
/// checkpoint) before the deletion: verification accepts a gap in the chain only where a sealed
/// `AuditPurged` record names it, and checks the link across it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditPurged {
    /// Runs of consecutive records deleted.
    pub ranges: Vec<PurgedRange>,
    /// Records deleted in all.
    pub deleted: u64,
    /// Records kept although past their retention, because a legal hold covers them.
    pub held: u64,
    /// Who ran the purge (`cli:alice`).
    pub purged_by: String,
    /// Sessions whose replay capture files the purge deletes (past the `replay` retention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<String>,
}

/// A legal hold took effect: records matching every given condition are kept whatever their
/// age. Recorded when a configuration that holds it is first applied (`vigil serve`,
/// `vigil audit purge`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LegalHoldPlaced {
    /// 16 hex chars identifying the hold's conditions and reason.
    pub hold_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The identity held (named so as not to clash with the envelope's `identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    pub reason: String,
    /// Who applied the configuration (`serve`, `cli:alice`).
    pub placed_by: String,
}

/// A legal hold was lifted: the configuration applied no longer holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LegalHoldReleased {
    pub hold_id: String,
    /// The reason the hold was placed with, for readers of this record alone.
    pub reason: String,
    pub released_by: String,
}

/// Records `from_seq..=to_seq` deleted; `last_hash` is the hex hash of record `to_seq`, which
/// the record after the run holds as its `prev_hash`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurgedRange {
    pub from_seq: u64,
    pub to_seq: u64,
    pub last_hash: String,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client's connection closed without Terminate.
    ClientDisconnected,
    /// The upstream server closed the connection.
    UpstreamClosed,
    /// A protocol violation by the client (malformed or oversized message).
    ProtocolError,
    /// An I/O or internal error.
    Error,
    /// The audit trail could not be written.
    AuditUnavailable,
    /// The gateway is shutting down.
    Shutdown,
    /// The client stayed idle for longer than allowed.
    IdleTimeout,
    /// The grant the session ran under expired (or its time window closed).
    GrantExpired,
    /// The grant the session ran under was revoked.
    GrantRevoked,
    /// The session reached the longest duration its scope allows.
    MaxSessionReached,
    /// No grant allows the identity on the connection at this time.
    NoGrant,
}

/// A session's end, with its totals.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionEnded {
    pub reason: SessionEndReason,
    pub started_at: Timestamp,
    pub duration_us: u64,
    /// Statements the client sent that Vigil decided on: those it forwarded (whatever their
    /// outcome, interrupted ones included) and those it refused.
    pub statements: u64,
    /// Of those, the ones that failed: an error, or refused.
    pub errors: u64,
    pub rows: u64,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    /// Of `statements`, those Vigil refused (`PolicyDenied`): never forwarded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u64,
    /// Of `statements`, those cut off by the session's end before their result was complete
    /// (a revocation, an expiry, the client going away).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interrupted: u64,
    /// Values masked in flight during the session, by entity type (`ssn`: 12…).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub masked: std::collections::BTreeMap<String, u64>,
    /// SHA-256 (hex) of the session's replay capture content (its JSON lines, uncompressed and
    /// decrypted), when captures are on: ties the capture to the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_sha256: Option<String>,
    /// SHA-256 (hex) of the capture file as stored, when the capture is encrypted at rest
    /// (`[replay] encrypt_to`): lets its integrity be checked without the key that reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_file_sha256: Option<String>,
    /// The capture stopped before the session did, because a configured bound was reached
    /// (`[replay] max_session_bytes` or `max_total_bytes`). The statements after it are in the
    /// audit trail as usual; only their bytes are missing from the capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_truncated: Option<ReplayTruncated>,
}

/// Where and why a session's replay capture stopped early. The capture file holds the same
/// facts in a line of its own (`{"truncated":…}`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayTruncated {
    /// `max_session_bytes` (the session's capture reached its cap) or `max_total_bytes` (the
    /// replay directory reached its bound, and nothing in it could be rotated out).
    pub reason: String,
    /// Microseconds since the session started, when the capture stopped.
    pub at_us: u64,
    /// The bound reached, in bytes.
    pub limit_bytes: u64,
}

/// Closed replay captures were deleted, oldest first, to keep the replay directory within
/// `[replay] max_total_bytes`. Recorded (durably) before the files go; captures under a legal
/// hold are never rotated out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplayCapturesRotated {
    /// The sessions whose capture files are deleted.
    pub captures: Vec<String>,
    /// Bytes the files took on disk.
    pub bytes: u64,
    /// The bound that called for it.
    pub max_total_bytes: u64,
}

/// Why an authentication attempt was refused. Stable names (an export format).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailureReason {
    /// No password message, or an empty one.
    MissingToken,
    /// Not a known service token (or malformed).
    UnknownToken,
    TokenExpired,
    TokenRevoked,
    /// The token is valid but belongs to another identity than the `user` given.
    IdentityMismatch,
    /// The identity is not declared in Vigil's configuration.
    UnknownIdentity,
    /// The identity may not use the requested connection.
    ConnectionNotAllowed,
    /// The requested connection (`dbname`) does not exist.
    UnknownConnection,
    /// JWT with `alg: none` (unsigned).
    JwtAlgNone,
    /// JWT whose algorithm is not allowed for the key (e.g. HS256 signed with a public key).
    JwtAlgorithmNotAllowed,
    JwtBadSignature,
    JwtExpired,
    JwtNotYetValid,
    JwtWrongAudience,
    JwtWrongIssuer,
    /// No key with the token's `kid` at the provider, even after refreshing its key set.
    JwtUnknownKey,
    /// The JWT lacks a required claim or is not well-formed.
    JwtMalformed,
    /// The token's claims map to no identity.
    JwtNoIdentity,
    /// The identity provider could not be reached to fetch its keys.
    ProviderUnavailable,
    /// TLS is required on this listener and the client did not use it.
    TlsRequired,
    /// The client did not finish authenticating in time.
    Timeout,
    /// The identity, or the connection, already had as many sessions open as allowed.
    SessionLimit,
    /// A startup parameter (or `options` switch) that the same `SET` in the session would
    /// not be allowed, or that Vigil does not accept at startup.
    StartupSettingRefused,
}

/// A refused authentication attempt. Never holds the token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthFailed {
    pub reason: AuthFailureReason,
    /// The `user` the client gave (truncated to 128 characters).
    pub user: String,
    /// The connection (`dbname`) the client asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_connection: Option<String>,
    pub client_addr: String,
    /// Issuer of the JWT, when one was presented and its payload could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Subject of the JWT, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Human-readable detail, free of secrets.
    pub detail: String,
}

/// How an operation arrived, in its adapter's own words: a detail of the wire protocol that the
/// core carries without knowing it. The PostgreSQL adapter says `simple` (a Query message, which
/// may hold several statements), `extended` (Parse/Bind/Execute) or `function_call` (a
/// FunctionCall message); another adapter names its own paths (a MySQL `query` or `prepared`,
/// an HTTP method). Serialized as the bare string, so records read and write as they always did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct ProtocolPath(Cow<'static, str>);

impl ProtocolPath {
    /// A path an adapter names with a constant (no allocation per statement).
    pub const fn from_static(name: &'static str) -> Self {
        ProtocolPath(Cow::Borrowed(name))
    }

    pub fn new(name: impl Into<String>) -> Self {
        ProtocolPath(Cow::Owned(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProtocolPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the analyser learned of a statement's text. Shared (by `Arc`) between all executions of
/// statements with the same shape, so it is computed once per shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatementShape {
    /// The statement with every literal replaced by a placeholder (`$1`, `$2`…).
    pub text: String,
    /// Hex fingerprint of `text` (stable across releases).
    pub fingerprint: String,
    /// Command of each statement in the text, as PostgreSQL tags it (`SELECT`, `INSERT`…).
    pub commands: Vec<String>,
    /// Class of each command: `read`, `write`, `ddl`, `copy_in`, `copy_out`, `transaction`,
    /// `session`, `function`, `utility`, `other`.
    pub command_classes: Vec<String>,
    /// Relations the text names, as written (schema-qualified when the text qualifies them).
    pub objects: Vec<String>,
    /// Set when the analyser could not parse the text; the text is then fully redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// How statement parameters are kept in the audit trail.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum ParameterMode {
    /// Values are dropped; only their number is kept.
    #[default]
    #[serde(rename = "redacted")]
    Redacted,
    /// Each value is kept as a keyed HMAC-SHA-256 (hex): equal values can be matched across
    /// records by whoever holds the key, but a value cannot be read back or guessed by
    /// hashing candidates without it.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// Parameters of an extended-protocol statement, as recorded. Values are never stored in clear.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedParameters {
    pub count: usize,
    pub mode: ParameterMode,
    /// With `hmac-sha256`: one entry per parameter, `null` for SQL NULL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Option<String>>,
}

/// A statement is about to be forwarded upstream. Durable before it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatementStarted {
    /// 1, 2, 3… within the session.
    pub statement_seq: u64,
    /// How the statement arrived, in the adapter's words (see [`ProtocolPath`]).
    pub protocol: ProtocolPath,
    #[serde(flatten)]
    pub shape: Arc<StatementShape>,
    /// Prepared statement name (extended protocol; empty for the unnamed statement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_statement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<RecordedParameters>,
    /// The grant that allowed it, when the session holds more than one (with a single grant it
    /// is the session's, in `SessionStarted.grants`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The access request it runs under: its grant's request (a grant from an approval), or
    /// the approval of this one statement (per-statement review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What the text runs that it does not show: the prepared statement behind each `EXECUTE
    /// name`, the cursor behind each `FETCH`/`MOVE name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executed: Vec<ExecutedText>,
}

/// A prepared statement or cursor that a statement ran by name, as Vigil knew it when it
/// decided: the literal-free text that defined the name (a `PREPARE …`, a Parse, a
/// `DECLARE …`), as PostgreSQL reports it in `pg_prepared_statements` and `pg_cursors`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecutedText {
    /// Position of the statement that ran it within the text (0 for the first).
    pub statement: usize,
    pub kind: NamedKind,
    pub name: String,
    pub text: String,
    pub fingerprint: String,
}

/// Which of the session's namespaces a name is in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NamedKind {
    /// `PREPARE` or a Parse message; run by `EXECUTE`.
    PreparedStatement,
    /// A cursor (`DECLARE`) or a portal (Bind); run by `FETCH`, `MOVE` or Execute.
    Portal,
}

/// How a statement ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StatementStatus {
    Ok,
    Error,
    /// Vigil refused to forward it (the statement never ran).
    Refused,
    /// The session ended before the statement's result was complete.
    Interrupted,
    /// Not run: an earlier message of the same extended-protocol pipeline failed, so the server
    /// skipped it (as PostgreSQL does until the next Sync).
    Skipped,
}

/// A statement's outcome, as the client saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatementFinished {
    pub statement_seq: u64,
    pub status: StatementStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Command tags (`SELECT 3`, `INSERT 0 1`…), one per completed statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_tags: Vec<String>,
    /// Rows returned to the client (DataRow or COPY OUT rows) or reported affected.
    pub rows: u64,
    /// Bytes of result messages sent to the client for this statement.
    pub bytes: u64,
    pub duration_us: u64,
    /// Hex SHA-256 over the result rows sent to the client, in order (for PostgreSQL, the
    /// DataRow / CopyData message bodies).
    pub result_digest: String,
    /// Rows the server returned beyond the grant's row cap, withheld from the client.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_withheld: u64,
    /// Values withheld (sent as NULL) because their column is denied to the session: the
    /// second line of defence, behind the statement analysis.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub values_withheld: u64,
    /// Values masked in flight (the detail is in the statement's `MaskingApplied` records).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub values_masked: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A signature over the chain's head: everything up to `covers_seq` is sealed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub covers_seq: u64,
    /// Hex SHA-256 of record `covers_seq`.
    pub head_hash: String,
    /// Identifies the signing key (hex of the first 8 bytes of SHA-256 of the public key).
    pub key_id: String,
    /// Base64 ed25519 signature over `vigil-checkpoint-v1\n{covers_seq}\n{head_hash}`.
    pub signature: String,
}

/// A Vigil service token was issued (the token itself is shown once and never stored).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenIssued {
    pub token_id: String,
    pub identity_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Who issued it (`cli`, or the API caller).
    pub issued_by: String,
}

/// A Vigil service token was revoked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenRevoked {
    pub token_id: String,
    pub identity_name: String,
    pub revoked_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn record_json_is_flat_and_round_trips() {
        let rec = Record {
            seq: 7,
            prev_hash: "ab".repeat(32),
            at: Timestamp::from_micros(1_795_862_461_000_001),
            session_id: Some(SessionId::new()),
            identity: Some(Arc::new(Principal {
                name: "etl".into(),
                kind: IdentityKind::Machine,
                auth_method: AuthMethod::ServiceToken,
                issuer: None,
                subject: None,
                credential_id: Some("tok1".into()),
            })),
            connection: Some("ehr".into()),
            event: Event::StatementFinished(StatementFinished {
                statement_seq: 3,
                status: StatementStatus::Ok,
                sqlstate: None,
                command_tags: vec!["SELECT 1".into()],
                rows: 1,
                bytes: 11,
                duration_us: 250,
                result_digest: "00".into(),
                rows_withheld: 0,
                values_withheld: 0,
                values_masked: 0,
            }),
        };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["type"], "StatementFinished");
        assert_eq!(json["statement_seq"], 3);
        assert_eq!(json["identity"]["kind"], "machine");
        assert_eq!(json["at"], "2026-11-28T10:41:01.000001Z");
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, rec);
    }

    /// The protocol path is written as the bare string PostgreSQL sessions have always written
    /// (`"protocol":"simple"`), in the same place among the fields, and reads back.
    #[test]
    fn protocol_paths_are_written_as_before() {
        let shape = Arc::new(StatementShape {
            text: "SELECT $1".into(),
            fingerprint: "0123456789abcdef".into(),
            commands: vec!["SELECT".into()],
            command_classes: vec!["read".into()],
            objects: vec![],
            parse_error: None,
        });
        for path in ["simple", "extended", "function_call"] {
            let started = Event::StatementStarted(StatementStarted {
                statement_seq: 1,
                protocol: ProtocolPath::from_static(path),
                shape: shape.clone(),
                prepared_statement: None,
                parameters: None,
                grant_id: None,
                request_id: None,
                executed: vec![],
            });
            let json = serde_json::to_string(&started).unwrap();
            assert_eq!(
                json,
                format!(
                    r#"{{"type":"StatementStarted","statement_seq":1,"protocol":"{path}","text":"SELECT $1","fingerprint":"0123456789abcdef","commands":["SELECT"],"command_classes":["read"],"objects":[]}}"#
                )
            );
            let back: Event = serde_json::from_str(&json).unwrap();
            assert_eq!(back, started);
            let denied = Event::PolicyDenied(PolicyDenied {
                statement_seq: 2,
                protocol: ProtocolPath::new(path),
                shape: shape.clone(),
                rule: "relation_not_allowed".into(),
                reason: "r".into(),
                grant_id: None,
                sqlstate: "42501".into(),
                request_id: None,
            });
            let json = serde_json::to_string(&denied).unwrap();
            assert!(
                json.starts_with(&format!(
                    r#"{{"type":"PolicyDenied","statement_seq":2,"protocol":"{path}","text""#
                )),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), denied);
        }
    }

    #[test]
    fn kinds_have_unique_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }
}
