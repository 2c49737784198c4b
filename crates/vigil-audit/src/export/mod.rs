//! Exports: the audit trail as the artifacts auditors ask for (sessions, statements, denials,
//! grants, approvals, masking, failed logins), in JSON, JSON lines or CSV, streamed.
//!
//! An export reads the chain in seq order, a page at a time ([`vigil_store::AuditLog::audit_page`]),
//! turns records into rows as they complete (a session's row when its end record arrives, a
//! statement's when its outcome does) and hands each row to a writer at once: memory holds one
//! page and the rows still open, whatever the size of the export. Every row carries the seq and
//! hash of the record(s) it comes from, so that it can be tied to the chain.
//!
//! The same code turns a chain *segment* (the records of an evidence bundle) into rows, which is
//! how `vigil evidence verify` checks that a bundle's artifacts say what its chain says.
//!
//! ```no_run
//! use vigil_audit::export::{self, Artifact, ExportFilter, Format};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = vigil_store::open("/var/lib/vigil/vigil.db", Default::default())?;
//! let source = export::StoreSource { log: &store, grants: &store, requests: &store };
//! let filter = ExportFilter { since: Some(export::parse_time_bound("24h", vigil_core::Timestamp::now())?), ..Default::default() };
//! let stats = export::export_to(&source, Artifact::Statements, &filter, Format::Csv, std::io::stdout().lock())?;
//! eprintln!("{} rows", stats.rows);
//! # Ok(()) }
//! ```

mod build;
mod columns;
mod format;

pub use build::GrantSubject;
pub use columns::{Artifact, Column, ColumnType, Revision};
pub use format::{parse_csv_row, read_rows, read_rows_at, Format, RowWriter};

use crate::AuditError;
use vigil_core::Timestamp;
use vigil_store::{AccessRequestStore, AuditLog, AuditRow, GrantStore};

/// One row: values in the artifact's column order ([`Artifact::columns`]).
pub type Row = Vec<serde_json::Value>;

/// Which rows: anchors (a session's start, a statement's start, a denial…) whose time is in
/// `[since, until)` and whose identity and connection match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub identity: Option<String>,
    pub connection: Option<String>,
}

/// Which part of the chain an export reads: records with `after_seq < seq <= through_seq`,
/// taking anchors only below `anchors_before` (records after it can only complete open rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanRange {
    pub after_seq: u64,
    pub anchors_before: u64,
    pub through_seq: u64,
}

/// How far a record's time may be from its place in the chain. Records are stamped when they
/// happen and stored in order moments later; a record the writer had to retry through a store
/// outage lands later still. The scan starts this much before `since` and stops taking anchors
/// this much after `until`, so that such records are not missed; the time filter itself is exact.
pub const CLOCK_MARGIN_US: i64 = 3_600_000_000;

/// Rows read from the store per page.
const PAGE_ROWS: usize = 1_000;

/// Where records come from: the store (paged), or a bundle's chain segment.
pub trait RecordSource {
    /// Visits the records of `kinds` in `range`, in seq order, until `visit` returns `false`.
    fn visit(
        &self,
        range: ScanRange,
        kinds: &[&str],
        visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError>;

    /// Who a grant is for, when the chain in range does not say (only used to filter grant
    /// revocations and expiries by identity or connection).
    fn grant_subject(&self, _grant_id: &str) -> Option<GrantSubject> {
        None
    }

    /// Who an access request is from, when the chain in range does not say (only used to
    /// filter decisions on older requests by identity or connection).
    fn request_subject(&self, _request_id: &str) -> Option<GrantSubject> {
        None
    }
}

/// A [`RecordSource`] over the audit chain alone, read page by page (for reads that need no
/// subjects: holds, replay captures).
#[derive(Clone, Copy)]
pub struct ChainSource<'s>(pub &'s dyn AuditLog);

impl RecordSource for ChainSource<'_> {
    fn visit(
        &self,
        range: ScanRange,
        kinds: &[&str],
        visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let mut after = range.after_seq;
        loop {
            let page = self
                .0
                .audit_page(after, range.through_seq, kinds, PAGE_ROWS)?;
            let full = page.len() == PAGE_ROWS;
            for row in page {
                after = row.seq;
                if !visit(row)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// What an export reads from the stores: the chain, page by page, and the control plane's
/// grants and access requests, asked who an older grant or request was for (a lookup that
/// fails counts as unknown: it only narrows filters by identity or connection).
#[derive(Clone, Copy)]
pub struct StoreSource<'s> {
    pub log: &'s dyn AuditLog,
    pub grants: &'s dyn GrantStore,
    pub requests: &'s dyn AccessRequestStore,
}

impl RecordSource for StoreSource<'_> {
    fn visit(
        &self,
        range: ScanRange,
        kinds: &[&str],
        visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        ChainSource(self.log).visit(range, kinds, visit)
    }

    fn grant_subject(&self, grant_id: &str) -> Option<GrantSubject> {
        self.grants
            .grant(grant_id)
            .ok()
            .flatten()
            .map(|g| GrantSubject {
                identity: g.identity,
                connection: g.connection,
            })
    }

    fn request_subject(&self, request_id: &str) -> Option<GrantSubject> {
        self.requests
            .access_request(request_id)
            .ok()
            .flatten()
            .map(|r| GrantSubject {
                identity: r.identity,
                connection: r.connection,
            })
    }
}

/// A [`RecordSource`] over records in memory (in seq order).
pub struct SliceSource<'r>(pub &'r [AuditRow]);

impl RecordSource for SliceSource<'_> {
    fn visit(
        &self,
        range: ScanRange,
        kinds: &[&str],
        visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        for row in self.0 {
            if row.seq <= range.after_seq || !kinds.contains(&row.kind.as_str()) {
                continue;
            }
            if row.seq > range.through_seq || !visit(row.clone())? {
                break;
            }
        }
        Ok(())
    }
}

/// Visits every record with `after_seq < seq <= through_seq`, in seq order, a page at a time,
/// until `visit` returns `false`.
pub(crate) fn visit_rows(
    store: &dyn AuditLog,
    after_seq: u64,
    through_seq: u64,
    visit: &mut dyn FnMut(AuditRow) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    let mut after = after_seq;
    loop {
        let page = store.audit_rows(after, through_seq, PAGE_ROWS)?;
        let full = page.len() == PAGE_ROWS;
        for row in page {
            after = row.seq;
            if !visit(row)? {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// What an export produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub rows: u64,
}

/// The part of the store's chain an export of `filter` reads, up to `through_seq` (default:
/// the head). Finds the bounds by bisecting on record time, with [`CLOCK_MARGIN_US`] of slack.
pub fn plan(
    store: &dyn AuditLog,
    filter: &ExportFilter,
    through_seq: Option<u64>,
) -> Result<ScanRange, AuditError> {
    let head = store.audit_head()?.map(|h| h.seq).unwrap_or(0);
    let through = through_seq.map_or(head, |t| t.min(head));
    let first_from = match filter.since {
        Some(t) => first_seq_at_or_after(store, t.as_micros() - CLOCK_MARGIN_US, through)?,
        None => 1,
    };
    let anchors_before = match filter.until {
        Some(t) => first_seq_at_or_after(
            store,
            t.as_micros().saturating_add(CLOCK_MARGIN_US),
            through,
        )?,
        None => through + 1,
    };
    Ok(ScanRange {
        after_seq: first_from.saturating_sub(1),
        anchors_before,
        through_seq: through,
    })
}

/// The first seq in `1..=through` whose record is at or after `at_us`, by bisection (record
/// times rise with seq up to the margin the caller allows for); `through + 1` if none.
fn first_seq_at_or_after(
    store: &dyn AuditLog,
    at_us: i64,
    through: u64,
) -> Result<u64, AuditError> {
    let (mut lo, mut hi) = (1u64, through + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // The first stored record at or after `mid` (a purged gap moves on to the next one).
        let mut found: Option<(u64, i64)> = None;
        store.scan_audit(mid, &mut |row| {
            found = Some((row.seq, row.at_us));
            false
        })?;
        match found {
            Some((seq, at)) if seq <= through && at < at_us => lo = seq + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Exports rows of `artifact` from `source` over `range`, handing each to `emit` as it
/// completes.
pub fn export_rows(
    source: &dyn RecordSource,
    artifact: Artifact,
    filter: &ExportFilter,
    range: ScanRange,
    emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
) -> Result<ExportStats, AuditError> {
    export_rows_at(source, artifact, Revision::CURRENT, filter, range, emit)
}

/// [`export_rows`] as `revision` defined the artifact (how `vigil evidence verify` derives
/// again the artifacts of a bundle made by an earlier Vigil).
pub fn export_rows_at(
    source: &dyn RecordSource,
    artifact: Artifact,
    revision: Revision,
    filter: &ExportFilter,
    range: ScanRange,
    emit: &mut dyn FnMut(Row) -> Result<(), AuditError>,
) -> Result<ExportStats, AuditError> {
    if artifact.since() > revision {
        return Err(AuditError::Export(format!(
            "export revision {revision} has no artifact {artifact}"
        )));
    }
    let rows = build::run(source, artifact, revision, filter, range, emit)?;
    Ok(ExportStats { rows })
}

/// Exports `artifact` from the stores to `out` in `format`, streaming.
pub fn export_to<W: std::io::Write>(
    source: &StoreSource<'_>,
    artifact: Artifact,
    filter: &ExportFilter,
    format: Format,
    out: W,
) -> Result<ExportStats, AuditError> {
    let range = plan(source.log, filter, None)?;
    let mut writer = RowWriter::new(format, artifact, out)?;
    let stats = export_rows(source, artifact, filter, range, &mut |row| {
        writer.write(&row)
    })?;
    writer.finish()?;
    Ok(stats)
}

/// Parses a time bound as given on a command line or in a query: RFC 3339
/// (`2026-11-28T00:00:00Z`), or a span before `now` (`24h`, `7d`, `90m`, `2w`, `1d12h`).
pub fn parse_time_bound(text: &str, now: Timestamp) -> Result<Timestamp, AuditError> {
    let text = text.trim();
    if let Ok(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t);
    }
    let bad = || {
        AuditError::Export(format!(
            "invalid time {text:?}: give RFC 3339 (2026-11-28T00:00:00Z) or a span before now \
             (24h, 7d, 90m)"
        ))
    };
    let mut total_us: i64 = 0;
    let mut number = String::new();
    let mut any = false;
    for ch in text.chars().filter(|c| !c.is_whitespace()) {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit: i64 = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total_us = n
            .checked_mul(unit * 1_000_000)
            .and_then(|v| total_us.checked_add(v))
            .ok_or_else(bad)?;
        any = true;
    }
    if !any || !number.is_empty() {
        return Err(bad());
    }
    Ok(Timestamp::from_micros(now.as_micros() - total_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_rfc3339_or_spans_before_now() {
        let now = Timestamp::parse_rfc3339("2026-11-28T12:00:00Z").unwrap();
        let t = |s| parse_time_bound(s, now).unwrap().to_rfc3339();
        assert_eq!(t("24h"), "2026-11-27T12:00:00.000000Z");
        assert_eq!(t("7d"), "2026-11-21T12:00:00.000000Z");
        assert_eq!(t("1d 12h"), "2026-11-27T00:00:00.000000Z");
        assert_eq!(t("2026-11-01T00:00:00Z"), "2026-11-01T00:00:00.000000Z");
        for bad in ["", "h", "12", "3 fortnights", "yesterday"] {
            assert!(parse_time_bound(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn revision_1_is_what_the_first_columns_were() {
        let last = |a: Artifact| a.columns_at(Revision::FIRST).last().unwrap().name;
        assert_eq!(last(Artifact::Sessions), "masked_columns");
        assert_eq!(last(Artifact::Approvals), "fields");
        assert_eq!(last(Artifact::Masking), "fields");
        for a in Artifact::ALL {
            assert!(a.columns_at(Revision::FIRST).len() <= a.columns().len());
            assert_eq!(a.columns_at(Revision::CURRENT).len(), a.columns().len());
        }
        let first: Vec<_> = Artifact::all_at(Revision::FIRST).collect();
        assert_eq!(first.len(), 6);
        assert!(!first.contains(&Artifact::AuthFailures));
    }

    #[test]
    fn artifacts_have_unique_names_and_columns() {
        for a in Artifact::ALL {
            assert_eq!(Artifact::parse(a.as_str()), Some(a));
            let cols = a.columns();
            assert_eq!(cols[0].name, "seq");
            assert_eq!(cols[1].name, "hash");
            let mut names: Vec<_> = cols.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cols.len(), "{a}");
        }
    }
}
