//! Retention: deleting records past their retention while the chain still verifies.
//!
//! A purge is planned by one streaming pass over the chain ([`plan_purge`]): a record goes if its
//! family's retention has passed and no legal hold covers it. Checkpoints and purge records are
//! never deleted. The purge is then recorded — an `AuditPurged` record listing each run of
//! deleted seqs and the hash of its last record — and sealed by a checkpoint *before* anything is
//! deleted ([`purge`]). `verify` accepts a gap exactly where a sealed purge record names it, and
//! checks that the record after the gap links to the hash the purge record gives; the kept
//! checkpoints over the purged range still verify with their signatures.
//!
//! Legal holds live in the configuration; [`record_hold_changes`] makes the chain say when each
//! took effect and when it was lifted (`LegalHoldPlaced`, `LegalHoldReleased`, never purged), so
//! that records kept past their time, and records purged after a hold ended, are explained by
//! the trail itself.

use crate::export::RecordSource;
use crate::{wait_durable, AuditError, AuditWriter};
use serde::Deserialize;
use sha2::Digest;
use std::collections::BTreeMap;
use vigil_core::event::{AuditPurged, LegalHoldPlaced, LegalHoldReleased, PurgedRange};
use vigil_core::{Event, EventDraft, Timestamp};
use vigil_store::AuditLog;

/// Six years, as 164.316(b)(2) asks of documentation.
pub const DEFAULT_RETENTION_US: i64 = 6 * 36_525 * 86_400 * 10_000; // 6 × 365.25 days in µs

/// How long each family of records is kept, and what is held regardless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Retention of families without their own, in microseconds.
    pub default_us: i64,
    /// By family: `sessions`, `statements`, `denials`, `grants`, `approvals`, `masking`,
    /// `auth_failures`, `tokens`.
    pub by_family: BTreeMap<String, i64>,
    pub holds: Vec<LegalHold>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            default_us: DEFAULT_RETENTION_US,
            by_family: BTreeMap::new(),
            holds: Vec::new(),
        }
    }
}

/// Records a legal hold keeps whatever their age: every given condition must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegalHold {
    pub session: Option<String>,
    pub identity: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub reason: String,
}

/// The retention family of a record kind (`None`: never purged).
pub fn family(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Checkpoint"
        | "AuditPurged"
        | "LegalHoldPlaced"
        | "LegalHoldReleased"
        | "ReplayCapturesRotated" => return None,
        "SessionStarted" | "SessionEnded" | "SessionGrantAdded" => "sessions",
        "StatementStarted" | "StatementFinished" => "statements",
        "PolicyDenied" => "denials",
        "GrantIssued" | "GrantRevoked" | "GrantExpired" => "grants",
        "AccessRequested" | "AccessDecided" | "AccessRequestExpired" | "StatementLiteralsShown" => {
            "approvals"
        }
        "MaskingApplied" => "masking",
        "AuthFailed" => "auth_failures",
        "TokenIssued" | "TokenRevoked" => "tokens",
        _ => "other",
    })
}

/// The families a policy may name. `replay` is the sessions' replay capture files (by their
/// session's end record; default: the `sessions` retention).
pub const FAMILIES: [&str; 10] = [
    "replay",
    "sessions",
    "statements",
    "denials",
    "grants",
    "approvals",
    "masking",
    "auth_failures",
    "tokens",
    "other",
];

/// What a purge would delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgePlan {
    pub ranges: Vec<PurgedRange>,
    pub deleted: u64,
    /// Past retention but kept by a legal hold.
    pub held: u64,
    /// Deleted records by family.
    pub by_family: BTreeMap<String, u64>,
    /// Sessions whose replay capture is past its retention (and under no hold): their capture
    /// files go with the purge.
    pub expired_captures: Vec<String>,
}

impl LegalHold {
    /// Whether the hold covers a record (or capture) of `session` and `identity` made at `at_us`.
    pub fn covers(&self, session: Option<&str>, identity: Option<&str>, at_us: i64) -> bool {
        self.session.as_deref().is_none_or(|s| Some(s) == session)
            && self.identity.as_deref().is_none_or(|i| Some(i) == identity)
            && self.since.is_none_or(|t| at_us >= t.as_micros())
            && self.until.is_none_or(|t| at_us < t.as_micros())
    }
}

/// Plans a purge as of `now`: one pass over the chain, memory bounded by the number of runs.
pub fn plan_purge(
    store: &dyn AuditLog,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<PurgePlan, AuditError> {
    #[derive(Deserialize)]
    struct Subject {
        #[serde(default)]
        identity_name: Option<String>,
    }
    let head = store.audit_head()?.map(|h| h.seq).unwrap_or(0);
    let mut plan = PurgePlan::default();
    let mut open: Option<PurgedRange> = None;
    crate::export::visit_rows(store, 0, u64::MAX >> 1, &mut |row| {
        // The head stays: appends build on it.
        let family = family(&row.kind).filter(|_| row.seq < head);
        let expired = family.is_some_and(|f| {
            let keep = policy
                .by_family
                .get(f)
                .copied()
                .unwrap_or(policy.default_us);
            row.at_us < now.as_micros().saturating_sub(keep)
        });
        if row.kind == "SessionEnded" && row.seq < head {
            // The capture file's retention runs from its session's end.
            let keep = policy
                .by_family
                .get("replay")
                .or_else(|| policy.by_family.get("sessions"))
                .copied()
                .unwrap_or(policy.default_us);
            let held = policy.holds.iter().any(|h| {
                h.covers(
                    row.session_id.as_deref(),
                    row.identity.as_deref(),
                    row.at_us,
                )
            });
            if row.at_us < now.as_micros().saturating_sub(keep) && !held {
                plan.expired_captures.extend(row.session_id.clone());
            }
        }
        let mut delete = expired;
        if expired && !policy.holds.is_empty() {
            // Grant records name their identity in the body, not the envelope.
            let body_identity = (row.identity.is_none() && row.kind.starts_with("Grant"))
                .then(|| serde_json::from_slice::<Subject>(&row.body).ok())
                .flatten()
                .and_then(|s| s.identity_name);
            let identity = row.identity.as_deref().or(body_identity.as_deref());
            if policy
                .holds
                .iter()
                .any(|h| h.covers(row.session_id.as_deref(), identity, row.at_us))
            {
                delete = false;
                plan.held += 1;
            }
        }
        if delete {
            if sha2::Sha256::digest(&row.body).as_slice() != row.hash {
                // Never purge what does not verify: that would erase the evidence of tampering.
                return Err(AuditError::Tamper {
                    seq: row.seq,
                    reason: format!(
                        "record {}: stored hash does not match its contents; run `vigil audit \
                         verify` before purging",
                        row.seq
                    ),
                });
            }
            plan.deleted += 1;
            *plan
                .by_family
                .entry(family.unwrap_or("other").to_string())
                .or_default() += 1;
            match &mut open {
                Some(r) if r.to_seq + 1 == row.seq => {
                    r.to_seq = row.seq;
                    r.last_hash = hex::encode(row.hash);
                }
                _ => {
                    plan.ranges.extend(open.take());
                    open = Some(PurgedRange {
                        from_seq: row.seq,
                        to_seq: row.seq,
                        last_hash: hex::encode(row.hash),
                    });
                }
            }
        } else {
            plan.ranges.extend(open.take());
        }
        Ok(true)
    })?;
    plan.ranges.extend(open.take());
    Ok(plan)
}

impl LegalHold {
    /// 16 hex chars identifying the hold's conditions and reason: the same hold configured
    /// again is the same hold.
    pub fn id(&self) -> String {
        let canonical = serde_json::json!([
            self.session,
            self.identity,
            self.since.map(|t| t.as_micros()),
            self.until.map(|t| t.as_micros()),
            self.reason,
        ]);
        hex::encode(&sha2::Sha256::digest(canonical.to_string().as_bytes())[..8])
    }
}

/// What [`record_hold_changes`] recorded: the ids of holds placed and released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldChanges {
    pub placed: Vec<String>,
    pub released: Vec<String>,
}

/// Records, through `writer`, each hold of `holds` the chain does not show in force
/// (`LegalHoldPlaced`) and each hold in force that `holds` no longer has (`LegalHoldReleased`).
/// Returns once the records are durable; applying the same holds again records nothing.
pub fn record_hold_changes(
    store: &dyn AuditLog,
    writer: &AuditWriter,
    holds: &[LegalHold],
    by: &str,
) -> Result<HoldChanges, AuditError> {
    #[derive(Deserialize)]
    struct HoldRecord {
        #[serde(rename = "type")]
        kind: String,
        hold_id: String,
        #[serde(default)]
        reason: String,
    }
    // hold id -> reason, for the holds the chain shows in force.
    let mut in_force: BTreeMap<String, String> = BTreeMap::new();
    crate::export::ChainSource(store).visit(
        crate::export::ScanRange {
            after_seq: 0,
            anchors_before: u64::MAX >> 1,
            through_seq: u64::MAX >> 1,
        },
        &["LegalHoldPlaced", "LegalHoldReleased"],
        &mut |row| {
            if let Ok(h) = serde_json::from_slice::<HoldRecord>(&row.body) {
                if h.kind == "LegalHoldPlaced" {
                    in_force.insert(h.hold_id, h.reason);
                } else {
                    in_force.remove(&h.hold_id);
                }
            }
            Ok(true)
        },
    )?;
    let mut changes = HoldChanges::default();
    let mut drafts = Vec::new();
    let configured: Vec<(String, &LegalHold)> = holds.iter().map(|h| (h.id(), h)).collect();
    for (id, hold) in &configured {
        if in_force.contains_key(id) || changes.placed.contains(id) {
            continue;
        }
        drafts.push(EventDraft::new(Event::LegalHoldPlaced(LegalHoldPlaced {
            hold_id: id.clone(),
            session: hold.session.clone(),
            identity_name: hold.identity.clone(),
            since: hold.since,
            until: hold.until,
            reason: hold.reason.clone(),
            placed_by: by.to_string(),
        })));
        changes.placed.push(id.clone());
    }
    for (id, reason) in &in_force {
        if configured.iter().any(|(c, _)| c == id) {
            continue;
        }
        drafts.push(EventDraft::new(Event::LegalHoldReleased(
            LegalHoldReleased {
                hold_id: id.clone(),
                reason: reason.clone(),
                released_by: by.to_string(),
            },
        )));
        changes.released.push(id.clone());
    }
    if !drafts.is_empty() {
        wait_durable(writer.append_all(drafts)).map_err(|e| {
            AuditError::Unavailable(format!("cannot record the legal hold changes: {e}"))
        })?;
    }
    Ok(changes)
}

/// Carries out a plan: records it (`AuditPurged`), seals it with a checkpoint through
/// `writer` (which is shut down), then deletes. Returns the records deleted.
pub fn purge(
    store: &dyn AuditLog,
    writer: AuditWriter,
    plan: &PurgePlan,
    purged_by: &str,
) -> Result<u64, AuditError> {
    if plan.ranges.is_empty() && plan.expired_captures.is_empty() {
        writer.shutdown()?;
        return Ok(0);
    }
    let record = EventDraft::new(Event::AuditPurged(AuditPurged {
        ranges: plan.ranges.clone(),
        deleted: plan.deleted,
        held: plan.held,
        purged_by: purged_by.to_string(),
        captures: plan.expired_captures.clone(),
    }));
    wait_durable(writer.append(record))
        .map_err(|e| AuditError::Unavailable(format!("cannot record the purge: {e}")))?;
    // The shutdown checkpoint seals the purge record before anything is gone.
    writer.shutdown()?;
    let ranges: Vec<(u64, u64)> = plan.ranges.iter().map(|r| (r.from_seq, r.to_seq)).collect();
    Ok(store.delete_audit_ranges(&ranges)?)
}
