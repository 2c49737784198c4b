//! Verifying a stored chain: streaming, needing only the store, the public key and (for
//! truncation) the anchor file.
//!
//! Each record is checked against the one before it; the first failure ends the walk and is
//! reported as [`AuditError::Tamper`] with the first bad sequence number and a reason meant
//! for the operator. Where a broken link could be either side's fault (an edited-and-rehashed
//! record, or a replaced successor), the earlier record is named: nothing before it is in
//! doubt.

use crate::anchor::{read_anchor, Anchor};
use crate::keys::{key_id, verify_checkpoint};
use crate::AuditError;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use vigil_core::{EventKind, Timestamp};
use vigil_store::{AuditLog, AuditRow, StoreError};

/// What a successful verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct VerifyReport {
    /// Records checked: the chain's length.
    pub records: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Seq of the chain's last record (0: empty chain).
    pub last_seq: u64,
    /// Seq of the last checkpoint record, if any.
    pub last_checkpoint_seq: Option<u64>,
    /// The last sealed seq: what the last checkpoint covers (0 if none). Every record up to it
    /// is vouched for by a signature.
    pub sealed_through: u64,
    /// Records after the last checkpoint, not yet sealed (normal for a running gateway: the
    /// next checkpoint seals them). Reported, not a failure.
    pub unsealed: u64,
    /// The checkpoint the anchor file names, when an anchor was given (it matched).
    pub anchor_seq: Option<u64>,
    /// Records deleted by retention purges, each gap vouched for by a sealed `AuditPurged`.
    pub purged: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records and {} signed checkpoints verified; sealed through record {}",
            self.records, self.checkpoints, self.sealed_through
        )?;
        match self.unsealed {
            0 => {}
            1 => write!(f, "; 1 record after the last checkpoint (not yet sealed)")?,
            n => write!(
                f,
                "; {n} records after the last checkpoint (not yet sealed)"
            )?,
        }
        if let Some(seq) = self.anchor_seq {
            write!(f, "; anchor at record {seq} matches")?;
        }
        if self.purged > 0 {
            write!(
                f,
                "; {} records purged by retention (each gap vouched for by a signed purge record)",
                self.purged
            )?;
        }
        Ok(())
    }
}

/// The fields of a stored record that verification reads. Borrowed where possible; unknown
/// fields are ignored (newer event types verify with an older Vigil).
#[derive(Deserialize)]
struct RecordView<'a> {
    seq: u64,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    at: Timestamp,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    identity: Option<IdentityView<'a>>,
    #[serde(default, borrow)]
    connection: Option<Cow<'a, str>>,
    // Checkpoint fields.
    #[serde(default)]
    covers_seq: Option<u64>,
    #[serde(default, borrow)]
    head_hash: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    key_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IdentityView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Verifies the whole chain in `store` against `public_key` and, if given, the anchor file.
///
/// Checks, record by record in seq order: seqs start at 1 with no gap; the stored hash is the
/// SHA-256 of the stored body; the body's own `seq` and `prev_hash` match its place; its
/// index columns (kind, time, session, identity, connection) match its body; every checkpoint
/// covers the record before it and is signed by `public_key`. With an anchor: the anchor is
/// validly signed, and the chain holds its checkpoint with the same hash (a shorter chain was
/// truncated). Memory does not grow with the chain's length, and the chain is read in pages
/// ([`AuditLog::audit_rows`]), so no read transaction stays open for long beside a running gateway
/// (which would keep the WAL from starting over).
///
/// Tampering is [`AuditError::Tamper`]; an unreadable or invalid anchor file is
/// [`AuditError::Anchor`]; a store that cannot be read is [`AuditError::Store`].
pub fn verify(
    store: &dyn AuditLog,
    public_key: &VerifyingKey,
    anchor: Option<&Path>,
) -> Result<VerifyReport, AuditError> {
    let purges = PurgeIndex::read(store)?;
    let known_purges = purges.ranges.len();
    match verify_with(store, public_key, anchor, purges) {
        // Pages are separate reads: a purge that deleted records after the purge records were
        // read leaves a gap they did not name. Read them again and start over, once.
        Err(AuditError::Tamper { .. }) if PurgeIndex::read(store)?.ranges.len() != known_purges => {
            verify_with(store, public_key, anchor, PurgeIndex::read(store)?)
        }
        other => other,
    }
}

/// Records read per page by [`verify`].
const VERIFY_PAGE_ROWS: usize = 1_000;

fn verify_with(
    store: &dyn AuditLog,
    public_key: &VerifyingKey,
    anchor: Option<&Path>,
    purges: PurgeIndex,
) -> Result<VerifyReport, AuditError> {
    let anchor = match anchor {
        Some(path) => {
            let bad = |reason: String| AuditError::Anchor {
                path: path.display().to_string(),
                reason,
            };
            let anchor = read_anchor(path)?.ok_or_else(|| bad("no such file".into()))?;
            anchor.check(public_key).map_err(bad)?;
            Some(anchor)
        }
        None => None,
    };
    let mut walk = Walk {
        key: public_key,
        key_id: key_id(public_key),
        anchor: anchor.as_ref(),
        expected: 1,
        prev: [0; 32],
        prev_hex: String::with_capacity(64),
        report: VerifyReport::default(),
        failure: None,
        purges,
        vouching_purge: None,
    };
    // A row whose seq is no valid position sorts first: one short read finds it.
    let scanned = store.scan_audit(0, &mut |_| false).and_then(|()| {
        let mut after = 0;
        loop {
            let page = store.audit_rows(after, i64::MAX as u64, VERIFY_PAGE_ROWS)?;
            let full = page.len() == VERIFY_PAGE_ROWS;
            for row in page {
                after = row.seq;
                if let Err(tamper) = walk.check(&row) {
                    walk.failure = Some(tamper);
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    });
    if let Some(tamper) = walk.failure {
        return Err(tamper);
    }
    match scanned {
        Ok(()) => {}
        Err(StoreError::Corrupt { seq, reason }) => {
            return Err(tamper(seq, format!("record {seq}: {reason} (edited?)")));
        }
        Err(e) => return Err(e.into()),
    }
    if let Some((purge_seq, from, to)) = walk.vouching_purge {
        if purge_seq > walk.report.sealed_through {
            return Err(tamper(
                from,
                format!(
                    "records {from}..={to} are gone and only the unsealed record {purge_seq} \
                     says they were purged (deleted, with a forged purge record?)"
                ),
            ));
        }
    }
    let mut report = walk.report;
    if let Some(anchor) = &anchor {
        if anchor.seq > report.last_seq {
            let reason = if report.last_seq == 0 {
                format!(
                    "the chain is empty but the signed anchor covers {} (truncated?)",
                    anchor.seq
                )
            } else {
                format!(
                    "chain ends at {} but the signed anchor covers {} (truncated?)",
                    report.last_seq, anchor.seq
                )
            };
            return Err(tamper(report.last_seq + 1, reason));
        }
    }
    report.unsealed = report.last_seq - report.last_checkpoint_seq.unwrap_or(0);
    Ok(report)
}

fn tamper(seq: u64, reason: String) -> AuditError {
    AuditError::Tamper { seq, reason }
}

struct Walk<'k> {
    key: &'k VerifyingKey,
    key_id: String,
    anchor: Option<&'k Anchor>,
    /// The seq the next row must have.
    expected: u64,
    /// Hash of the previous record (zeros before the first), raw and hex.
    prev: [u8; 32],
    prev_hex: String,
    report: VerifyReport,
    failure: Option<AuditError>,
    /// Gaps that purge records vouch for.
    purges: PurgeIndex,
    /// The latest purge record relied on, and the gap: it must be sealed.
    vouching_purge: Option<(u64, u64, u64)>,
}

/// The ranges that `AuditPurged` records say were deleted, by first seq.
#[derive(Default)]
struct PurgeIndex {
    /// from_seq -> (to_seq, hash of record to_seq, seq of the purge record)
    ranges: std::collections::BTreeMap<u64, (u64, [u8; 32], u64)>,
}

impl PurgeIndex {
    /// Reads every purge record's ranges (records that do not decode are ignored here: the
    /// walk judges them, and a gap they would vouch for is then reported missing).
    fn read(store: &dyn AuditLog) -> Result<PurgeIndex, AuditError> {
        #[derive(Deserialize)]
        struct Purge {
            seq: u64,
            ranges: Vec<vigil_core::event::PurgedRange>,
        }
        let mut index = PurgeIndex::default();
        let mut after = 0;
        loop {
            let page = store.audit_page(
                after,
                u64::MAX >> 1,
                &[EventKind::AuditPurged.as_str()],
                1_000,
            )?;
            let Some(last) = page.last() else {
                return Ok(index);
            };
            after = last.seq;
            for row in &page {
                let Ok(purge) = serde_json::from_slice::<Purge>(&row.body) else {
                    continue;
                };
                for r in purge.ranges {
                    let Some(hash) = hex::decode(&r.last_hash)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    else {
                        continue;
                    };
                    index.ranges.insert(r.from_seq, (r.to_seq, hash, purge.seq));
                }
            }
        }
    }

    /// The first seq from `from` on that no purged range covers (at most `next`).
    fn first_unaccounted(&self, from: u64, next: u64) -> u64 {
        let mut at = from;
        while let Some(&(to, _, _)) = self.ranges.get(&at) {
            if to < at || to >= next {
                break;
            }
            at = to + 1;
        }
        at
    }

    /// If purged ranges cover exactly `from..next`, the hash the record `next` must link to and
    /// the latest purge record relied on.
    fn vouch(&self, from: u64, next: u64) -> Option<([u8; 32], u64)> {
        let mut at = from;
        let mut found = None;
        while at < next {
            let &(to, hash, purge_seq) = self.ranges.get(&at)?;
            if to < at || to >= next {
                return None;
            }
            let latest = found.map_or(purge_seq, |(_, p): ([u8; 32], u64)| p.max(purge_seq));
            found = Some((hash, latest));
            at = to + 1;
        }
        found
    }
}

impl Walk<'_> {
    fn check(&mut self, row: &AuditRow) -> Result<(), AuditError> {
        if row.seq > self.expected {
            if let Some((hash, purge_seq)) = self.purges.vouch(self.expected, row.seq) {
                // A purged gap: continue from the hash the purge record names.
                let (from, to) = (self.expected, row.seq - 1);
                self.report.purged += row.seq - self.expected;
                self.expected = row.seq;
                self.prev = hash;
                if self.vouching_purge.is_none_or(|(p, _, _)| purge_seq >= p) {
                    self.vouching_purge = Some((purge_seq, from, to));
                }
            } else {
                // Name the first record that no purge accounts for, not a purged one.
                let missing = self.purges.first_unaccounted(self.expected, row.seq);
                if missing > self.expected {
                    return Err(tamper(
                        missing,
                        format!("record {missing} missing (deleted?)"),
                    ));
                }
            }
        }
        let s = self.expected;
        if row.seq != s {
            return Err(if row.seq == 0 {
                tamper(
                    0,
                    "record 0 was inserted before the start of the chain (forged?)".into(),
                )
            } else if row.seq > s {
                tamper(s, format!("record {s} missing (deleted?)"))
            } else {
                tamper(
                    row.seq,
                    format!(
                        "record {} appears again after record {} (duplicated?)",
                        row.seq,
                        s - 1
                    ),
                )
            });
        }
        let hash: [u8; 32] = Sha256::digest(&row.body).into();
        if hash != row.hash {
            return Err(tamper(
                s,
                format!("record {s}: stored hash does not match its contents (edited?)"),
            ));
        }
        let body: RecordView<'_> = serde_json::from_slice(&row.body).map_err(|_| {
            tamper(
                s,
                format!("record {s}: its contents are not a valid audit record (edited?)"),
            )
        })?;
        if body.seq < s {
            let b = body.seq;
            return Err(tamper(
                b,
                format!(
                    "record {b} is not the original: the original record {b} was found at \
                     position {s}, so records were inserted before it (forged?)"
                ),
            ));
        }
        if body.seq > s {
            return Err(tamper(
                s,
                format!(
                    "record {s} holds the contents of record {} (records reordered?)",
                    body.seq
                ),
            ));
        }
        crate::writer::set_hex(&mut self.prev_hex, &self.prev);
        if body.prev_hash != self.prev_hex {
            return Err(if s == 1 {
                tamper(
                    1,
                    "record 1 does not start a chain: its prev_hash is not zeros (earlier \
                     records deleted?)"
                        .into(),
                )
            } else {
                let p = s - 1;
                tamper(
                    p,
                    format!(
                        "record {p} does not match the hash that record {s} holds for it \
                         (record {p} edited and rehashed, or record {s} replaced?)"
                    ),
                )
            });
        }
        self.check_columns(row, &body)?;
        if body.kind == EventKind::Checkpoint.as_str() {
            self.check_checkpoint(s, &body)?;
        }
        if let Some(anchor) = self.anchor.filter(|a| a.seq == s) {
            if hex::encode(row.hash) != anchor.hash
                || body.covers_seq != Some(anchor.covers_seq)
                || body.head_hash.as_deref() != Some(anchor.head_hash.as_str())
            {
                return Err(tamper(
                    s,
                    format!(
                        "record {s} is not the checkpoint that the signed anchor records \
                         (chain rewritten?)"
                    ),
                ));
            }
            self.report.anchor_seq = Some(s);
        }
        self.prev = row.hash;
        self.expected += 1;
        self.report.records += 1;
        self.report.last_seq = s;
        Ok(())
    }

    /// The store's filter columns must say what the body says: an edited `session_id` column
    /// would hide a record from its session's listing.
    fn check_columns(&self, row: &AuditRow, body: &RecordView<'_>) -> Result<(), AuditError> {
        let s = row.seq;
        let column = if row.kind != body.kind {
            "kind"
        } else if row.at_us != body.at.as_micros() {
            "at_us"
        } else if row.session_id.as_deref() != body.session_id.as_deref() {
            "session_id"
        } else if row.identity.as_deref() != body.identity.as_ref().map(|i| &*i.name) {
            "identity"
        } else if row.connection.as_deref() != body.connection.as_deref() {
            "connection"
        } else {
            return Ok(());
        };
        Err(tamper(
            s,
            format!("record {s}: its {column} column does not match its contents (edited?)"),
        ))
    }

    fn check_checkpoint(&mut self, s: u64, body: &RecordView<'_>) -> Result<(), AuditError> {
        let (Some(covers), Some(head), Some(kid), Some(signature)) = (
            body.covers_seq,
            body.head_hash.as_deref(),
            body.key_id.as_deref(),
            body.signature.as_deref(),
        ) else {
            return Err(tamper(
                s,
                format!("record {s}: checkpoint is missing its signed fields (forged?)"),
            ));
        };
        if kid != self.key_id {
            return Err(tamper(
                s,
                format!(
                    "record {s}: checkpoint signed by key {kid}, not by the given key {} \
                     (forged, or verifying with the wrong public key?)",
                    self.key_id
                ),
            ));
        }
        if covers != s - 1 || head != self.prev_hex {
            return Err(tamper(
                s,
                format!(
                    "record {s}: checkpoint claims to seal record {covers} but does not match \
                     the record before it (forged?)"
                ),
            ));
        }
        if !verify_checkpoint(self.key, covers, head, signature) {
            return Err(tamper(
                s,
                format!(
                    "record {s}: checkpoint signature does not verify with the given key \
                     (forged or altered?)"
                ),
            ));
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint_seq = Some(s);
        self.report.sealed_through = covers;
        Ok(())
    }
}

/// What a verified chain segment holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentReport {
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub checkpoints: u64,
    /// Hex hash of the last record.
    pub last_hash: String,
}

/// Verifies a piece of the chain taken out of the store (an evidence bundle's), record by
/// record as [`verify`] does, starting at `first_seq` and trusting only the first record's
/// `prev_hash` (what came before is not in the segment). The segment must end with a checkpoint
/// signed by `public_key`: that signature, through the hash links, vouches for every record.
/// `rows` yields each stored body in order.
pub fn verify_segment(
    rows: &mut dyn Iterator<Item = Result<Vec<u8>, AuditError>>,
    public_key: &VerifyingKey,
    first_seq: u64,
) -> Result<SegmentReport, AuditError> {
    let mut walk = Walk {
        key: public_key,
        key_id: key_id(public_key),
        anchor: None,
        expected: first_seq,
        prev: [0; 32],
        prev_hex: String::with_capacity(64),
        report: VerifyReport::default(),
        failure: None,
        purges: PurgeIndex::default(),
        vouching_purge: None,
    };
    let mut out = SegmentReport {
        first_seq,
        ..SegmentReport::default()
    };
    let mut last_kind = String::new();
    for body in rows {
        let body = body?;
        let hash: [u8; 32] = Sha256::digest(&body).into();
        let view: RecordView<'_> = serde_json::from_slice(&body).map_err(|_| {
            tamper(
                walk.expected,
                format!(
                    "record {}: its contents are not a valid audit record (edited?)",
                    walk.expected
                ),
            )
        })?;
        if out.records == 0 {
            // The link into the segment is taken as given; everything after it is checked.
            walk.prev = hex::decode(view.prev_hash.as_ref())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    tamper(
                        first_seq,
                        format!("record {first_seq}: prev_hash is not a hash"),
                    )
                })?;
        }
        // A file has no positions but its order: say what is out of place in those terms.
        let s = walk.expected;
        if view.seq > s {
            return Err(tamper(
                s,
                format!(
                    "record {s} is missing: record {} comes right after record {} (deleted, or \
                     records reordered?)",
                    view.seq,
                    s - 1
                ),
            ));
        }
        if view.seq < s {
            return Err(tamper(
                s,
                format!(
                    "record {} comes again after record {} (duplicated, or records reordered?)",
                    view.seq,
                    s - 1
                ),
            ));
        }
        let row = AuditRow {
            seq: view.seq,
            at_us: view.at.as_micros(),
            kind: view.kind.to_string(),
            session_id: view.session_id.as_deref().map(str::to_string),
            identity: view.identity.as_ref().map(|i| i.name.to_string()),
            connection: view.connection.as_deref().map(str::to_string),
            body: body.clone(),
            hash,
        };
        walk.check(&row)?;
        out.records += 1;
        out.last_seq = row.seq;
        out.last_hash = hex::encode(hash);
        last_kind = row.kind;
    }
    if out.records == 0 {
        return Err(tamper(first_seq, "the chain segment is empty".into()));
    }
    if last_kind != EventKind::Checkpoint.as_str() {
        return Err(tamper(
            out.last_seq,
            format!(
                "the segment ends at record {} which is not a checkpoint: its records are not \
                 sealed by a signature (truncated?)",
                out.last_seq
            ),
        ));
    }
    out.checkpoints = walk.report.checkpoints;
    Ok(out)
}
