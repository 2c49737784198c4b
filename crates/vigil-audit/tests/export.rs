//! Exports: every artifact in every format reads back equal to what the store holds.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use vigil_audit::export::{self, Artifact, ExportFilter, Format, Row};
use vigil_core::Timestamp;
use vigil_store::Store;

fn export_bytes(
    store: &dyn Store,
    artifact: Artifact,
    filter: &ExportFilter,
    format: Format,
) -> Vec<u8> {
    let mut out = Vec::new();
    export::export_to(store, artifact, filter, format, &mut out).unwrap();
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

fn record(store: &dyn Store, seq: u64) -> (Value, String) {
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
            &export_bytes(&*store, artifact, &all, Format::Json),
        );
        let jsonl = read_back(
            artifact,
            Format::Jsonl,
            &export_bytes(&*store, artifact, &all, Format::Jsonl),
        );
        let csv_bytes = export_bytes(&*store, artifact, &all, Format::Csv);
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

    // Joined and tolerant fields.
    let rows = |a: Artifact| -> Vec<HashMap<&'static str, Value>> {
        read_back(
            a,
            Format::Jsonl,
            &export_bytes(&*store, a, &all, Format::Jsonl),
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
        serde_json::json!(["patients.ssn"])
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
            &Value::from("patients"),
            &Value::from("ssn"),
            &Value::from(3)
        )
    );
    let approvals = rows(Artifact::Approvals);
    assert_eq!(approvals[0]["identity"], "etl");
    assert_eq!(
        approvals[0]["justification"],
        "incident 42, needs \"patients\", now"
    );
    assert_eq!(approvals[1]["decision"], "approved");
    assert_eq!(approvals[1]["decided_by"], "alice");

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
                    &export_bytes(&*store, a, f, Format::Jsonl)
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
            &export_bytes(&*store, Artifact::Grants, &mine, Format::Csv)
        )
        .len(),
        2
    );
    assert_eq!(
        read_back(
            Artifact::Statements,
            Format::Csv,
            &export_bytes(&*store, Artifact::Statements, &mine, Format::Csv)
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
    let store = env.dyn_store();
    let json = export_bytes(
        &*store,
        Artifact::Sessions,
        &ExportFilter::default(),
        Format::Json,
    );
    assert_eq!(json, b"[]\n");
    let csv = export_bytes(
        &*store,
        Artifact::Sessions,
        &ExportFilter::default(),
        Format::Csv,
    );
    assert!(String::from_utf8(csv)
        .unwrap()
        .starts_with("seq,hash,session_id,started_at,"));
}
