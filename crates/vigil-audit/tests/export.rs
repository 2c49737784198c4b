//! Exports: every artifact in every format reads back equal to what the store holds.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use vigil_audit::export::StoreSource;
use vigil_audit::export::{self, Artifact, ExportFilter, Format, Row};
use vigil_core::Timestamp;
use vigil_store::AuditLog;

fn export_bytes(
    source: &StoreSource<'_>,
    artifact: Artifact,
    filter: &ExportFilter,
    format: Format,
) -> Vec<u8> {
    let mut out = Vec::new();
    export::export_to(source, artifact, filter, format, &mut out).unwrap();
    out
}

fn read_back(artifact: Artifact, format: Format, bytes: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    export::read_rows(format, artifact, bytes, &mut |_, row| {
        rows.push(row);
        Ok(())
    })
    .unwrap();
    rows
}

fn as_map(artifact: Artifact, row: &Row) -> HashMap<&'static str, Value> {
    artifact
        .columns()
        .iter()
        .map(|c| c.name)
        .zip(row.iter().cloned())
        .collect()
}

fn record(store: &dyn AuditLog, seq: u64) -> (Value, String) {
    let row = store.audit_row(seq).unwrap().unwrap();
    (
        serde_json::from_slice(&row.body).unwrap(),
        hex::encode(row.hash),
    )
}

/// Every column named like a field of `body` holds that field's value.
fn same_named_fields_match(row: &HashMap<&str, Value>, body: &Value, skip: &[&str]) {
    for (name, value) in row {
        if skip.contains(name) || matches!(*name, "seq" | "hash" | "identity" | "fields") {
            continue;
        }
        if let Some(field) = body.get(*name) {
            let field = match field {
                Value::String(s) if s.is_empty() => &Value::Null,
                other => other,
            };
            assert_eq!(value, field, "column {name} vs record {}", body["seq"]);
        }
    }
}

#[test]
fn every_artifact_round_trips_in_every_format_and_matches_the_store() {
    let env = Env::new();
    populate(&env);
    let store = env.dyn_store();
    let all = ExportFilter::default();
    let mut counts = HashMap::new();
    for artifact in Artifact::ALL {
        let json = read_back(
            artifact,
            Format::Json,
            &export_bytes(&env.source(), artifact, &all, Format::Json),
        );
        let jsonl = read_back(
            artifact,
            Format::Jsonl,
            &export_bytes(&env.source(), artifact, &all, Format::Jsonl),
        );
        let csv_bytes = export_bytes(&env.source(), artifact, &all, Format::Csv);
        let csv = read_back(artifact, Format::Csv, &csv_bytes);
        assert_eq!(json, jsonl, "{artifact}");
        assert_eq!(json, csv, "{artifact}: CSV reads back as the JSON");
        let header = String::from_utf8_lossy(&csv_bytes)
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert!(header.starts_with("seq,hash,"), "{header}");
        counts.insert(artifact, json.len());

        for row in &json {
            let row = as_map(artifact, row);
            let seq = row["seq"].as_u64().unwrap();
            let (body, hash) = record(&*store, seq);
            assert_eq!(
                row["hash"],
                Value::from(hash),
                "{artifact} row {seq} carries the record's hash"
            );
            assert!(artifact
                .anchor_kinds()
                .contains(&body["type"].as_str().unwrap()));
            same_named_fields_match(&row, &body, &["column", "table", "reason", "rows"]);
            for (seq_col, hash_col) in [
                ("finished_seq", "finished_hash"),
                ("ended_seq", "ended_hash"),
            ] {
                if let Some(partner) = row.get(seq_col).and_then(Value::as_u64) {
                    let (pbody, phash) = record(&*store, partner);
                    assert_eq!(row[hash_col], Value::from(phash));
                    assert_eq!(pbody["session_id"], body["session_id"]);
                    assert_eq!(pbody.get("statement_seq"), body.get("statement_seq"));
                    same_named_fields_match(
                        &row,
                        &pbody,
                        &["at", "protocol", "reason", "statement_seq", "started_at"],
                    );
                    assert_eq!(row.get("rows").cloned(), pbody.get("rows").cloned());
                }
            }
        }
    }
    assert_eq!(counts[&Artifact::Sessions], 3);
    assert_eq!(counts[&Artifact::Statements], 6);
    assert_eq!(counts[&Artifact::Denials], 3);
    assert_eq!(counts[&Artifact::Grants], 2);
    assert_eq!(counts[&Artifact::Masking], 1);
    assert_eq!(counts[&Artifact::Approvals], 2);
    assert_eq!(counts[&Artifact::AuthFailures], 1);

    // Joined and tolerant fields.
    let rows = |a: Artifact| -> Vec<HashMap<&'static str, Value>> {
        read_back(
            a,
            Format::Jsonl,
            &export_bytes(&env.source(), a, &all, Format::Jsonl),
        )
        .iter()
        .map(|r| as_map(a, r))
        .collect()
    };
    let statements = rows(Artifact::Statements);
    assert_eq!(
        statements
            .iter()
            .filter(|s| s["finished_seq"].is_null())
            .count(),
        1,
        "one still open"
    );
    assert!(statements
        .iter()
        .all(|s| s["identity"] == "etl" && s["identity_kind"] == "machine"));
    let sessions = rows(Artifact::Sessions);
    let masked: Vec<_> = sessions
        .iter()
        .filter(|s| s["masking_events"] == 1)
        .collect();
    assert_eq!(masked.len(), 1);
    assert_eq!(
        masked[0]["masked_columns"],
        serde_json::json!(["public.patients.ssn"])
    );
    assert_eq!(masked[0]["masked_values"], 3);
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["end_reason"] == "client_terminated")
            .count(),
        2
    );
    let grants = rows(Artifact::Grants);
    assert_eq!(grants[1]["event"], "expired");
    assert_eq!(
        grants[1]["identity"], "etl",
        "who the grant was for, from its issue record"
    );
    let masking = rows(Artifact::Masking);
    assert_eq!(
        (
            &masking[0]["table"],
            &masking[0]["column"],
            &masking[0]["count"]
        ),
        (
            &Value::from("public.patients"),
            &Value::from("public.patients.ssn"),
            &Value::from(3)
        )
    );
    assert_eq!(masking[0]["entity"], "ssn");
    let approvals = rows(Artifact::Approvals);
    assert_eq!(approvals[0]["identity"], "etl");
    assert_eq!(
        approvals[0]["justification"],
        "incident 42, needs \"patients\", now"
    );
    assert_eq!(approvals[0]["requested_duration"], 7200);
    assert_eq!(approvals[1]["decision"], "approve");
    assert_eq!(approvals[1]["decided_by"], "alice");
    assert_eq!(approvals[1]["decision_reason"], "ok");
    assert_eq!(
        (&approvals[1]["identity"], &approvals[1]["connection"]),
        (&Value::from("etl"), &Value::from("ehr")),
        "the requester, from the request's record"
    );
    let failures = rows(Artifact::AuthFailures);
    assert_eq!(
        (&failures[0]["user"], &failures[0]["connection"]),
        (&Value::from("etl"), &Value::from("ehr"))
    );

    // Filters.
    let nobody = ExportFilter {
        identity: Some("nobody".into()),
        ..Default::default()
    };
    let later = ExportFilter {
        since: Some(Timestamp::from_micros(
            Timestamp::now().as_micros() + 60_000_000,
        )),
        ..Default::default()
    };
    let earlier = ExportFilter {
        until: Some(Timestamp::from_micros(1)),
        ..Default::default()
    };
    for a in Artifact::ALL {
        for f in [&nobody, &later, &earlier] {
            assert!(
                read_back(
                    a,
                    Format::Jsonl,
                    &export_bytes(&env.source(), a, f, Format::Jsonl)
                )
                .is_empty(),
                "{a} {f:?}"
            );
        }
    }
    let mine = ExportFilter {
        identity: Some("etl".into()),
        connection: Some("ehr".into()),
        since: Some(parse("1h")),
        ..Default::default()
    };
    assert_eq!(
        read_back(
            Artifact::Grants,
            Format::Csv,
            &export_bytes(&env.source(), Artifact::Grants, &mine, Format::Csv)
        )
        .len(),
        2
    );
    assert_eq!(
        read_back(
            Artifact::Statements,
            Format::Csv,
            &export_bytes(&env.source(), Artifact::Statements, &mine, Format::Csv)
        )
        .len(),
        6
    );
}

fn parse(s: &str) -> Timestamp {
    export::parse_time_bound(s, Timestamp::now()).unwrap()
}

#[test]
fn an_empty_store_exports_headers_and_empty_arrays() {
    let env = Env::new();
    let json = export_bytes(
        &env.source(),
        Artifact::Sessions,
        &ExportFilter::default(),
        Format::Json,
    );
    assert_eq!(json, b"[]\n");
    let csv = export_bytes(
        &env.source(),
        Artifact::Sessions,
        &ExportFilter::default(),
        Format::Csv,
    );
    assert!(String::from_utf8(csv)
        .unwrap()
        .starts_with("seq,hash,session_id,started_at,"));
}

/// A store that counts the pages it hands out and the largest one, and the rows visited by
/// one long scan.
struct Counting {
    inner: std::sync::Arc<dyn AuditLog>,
    pages: std::sync::atomic::AtomicU64,
    largest: std::sync::atomic::AtomicUsize,
    scanned: std::sync::atomic::AtomicU64,
}

impl AuditLog for Counting {
    fn append_audit(&self, rows: &[vigil_store::AuditRow]) -> Result<(), vigil_store::StoreError> {
        self.inner.append_audit(rows)
    }
    fn audit_head(&self) -> Result<Option<vigil_store::AuditHead>, vigil_store::StoreError> {
        self.inner.audit_head()
    }
    fn scan_audit(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(vigil_store::AuditRow) -> bool,
    ) -> Result<(), vigil_store::StoreError> {
        self.inner.scan_audit(from_seq, &mut |row| {
            self.scanned
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            visit(row)
        })
    }
    fn audit_rows(
        &self,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<vigil_store::AuditRow>, vigil_store::StoreError> {
        let page = self.inner.audit_rows(after, through, limit)?;
        self.pages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.largest
            .fetch_max(page.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(page)
    }
    fn audit_page(
        &self,
        after: u64,
        through: u64,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<vigil_store::AuditRow>, vigil_store::StoreError> {
        let page = self.inner.audit_page(after, through, kinds, limit)?;
        self.pages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.largest
            .fetch_max(page.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(page)
    }
    fn audit_row(
        &self,
        seq: u64,
    ) -> Result<Option<vigil_store::AuditRow>, vigil_store::StoreError> {
        self.inner.audit_row(seq)
    }
    fn delete_audit_ranges(&self, ranges: &[(u64, u64)]) -> Result<u64, vigil_store::StoreError> {
        self.inner.delete_audit_ranges(ranges)
    }
}

/// Counts bytes and keeps none.
struct Sink(u64);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `sessions` sessions of `per_session` statements each with the writer's group commit.
pub fn fill(env: &Env, sessions: usize, per_session: u64) {
    let writer = env.start();
    for _ in 0..sessions {
        let s = vigil_core::SessionId::new();
        let mut batch = vec![session_started(s)];
        for n in 1..=per_session {
            batch.push(statement_started(s, n));
            batch.push(statement_finished(s, n));
        }
        batch.push(session_ended(s));
        vigil_audit::wait_durable(writer.append_all(batch)).unwrap();
    }
    writer.shutdown().unwrap();
}

#[test]
fn a_large_export_is_read_in_bounded_pages_and_streamed() {
    let env = Env::new();
    fill(&env, 40, 500); // 20,000 statements, 40,000+ records
    let counting = Counting {
        inner: env.dyn_store(),
        pages: Default::default(),
        largest: Default::default(),
        scanned: Default::default(),
    };
    let started = std::time::Instant::now();
    let mut sink = Sink(0);
    let source = StoreSource {
        log: &counting,
        grants: &*env.store,
        requests: &*env.store,
    };
    let stats = export::export_to(
        &source,
        Artifact::Statements,
        &ExportFilter::default(),
        Format::Csv,
        &mut sink,
    )
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(stats.rows, 20_000);
    let pages = counting.pages.load(std::sync::atomic::Ordering::Relaxed);
    let largest = counting.largest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest <= 1_000,
        "a page holds at most 1,000 records, not {largest}"
    );
    assert!(pages >= 40, "{pages} pages for 40,000 records");
    eprintln!(
        "{} rows, {} bytes of CSV in {elapsed:?} ({:.0} rows/s, debug build), {pages} pages",
        stats.rows,
        sink.0,
        stats.rows as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn verify_reads_the_chain_in_bounded_pages() {
    let env = Env::new();
    fill(&env, 10, 200); // 2,000 statements, 4,000+ records
    let counting = Counting {
        inner: env.dyn_store(),
        pages: Default::default(),
        largest: Default::default(),
        scanned: Default::default(),
    };
    let report = vigil_audit::verify(&counting, &env.key.verifying_key(), None).unwrap();
    assert!(report.records > 4_000, "{report:?}");
    let pages = counting.pages.load(std::sync::atomic::Ordering::Relaxed);
    let largest = counting.largest.load(std::sync::atomic::Ordering::Relaxed);
    let scanned = counting.scanned.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest <= 1_000,
        "a page holds at most 1,000 records, not {largest}"
    );
    assert!(pages >= 5, "{pages} pages for {} records", report.records);
    assert!(scanned <= 1, "one long scan visited {scanned} rows");
}

#[test]
fn docs_evidence_documents_every_column_of_every_artifact() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/EVIDENCE.md"
    ))
    .unwrap();
    for artifact in Artifact::ALL {
        let start = doc
            .find(&format!("\n### {}\n", artifact.as_str()))
            .unwrap_or_else(|| panic!("no section for {artifact}"));
        let section = &doc[start + 5..];
        let end = ["\n## ", "\n### "]
            .iter()
            .filter_map(|h| section.find(h))
            .min()
            .unwrap_or(section.len());
        let section = &section[..end];
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let columns: Vec<&str> = artifact.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            documented, columns,
            "docs/EVIDENCE.md, section {artifact}: columns in order"
        );
    }
}
