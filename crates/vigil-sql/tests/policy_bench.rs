//! What a decision costs on the data path: the access analysis (cached and not) and the check
//! of a realistic scope. Run in release:
//!
//! ```sh
//! cargo test --release -p vigil-sql --test policy_bench -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;
use vigil_core::Timestamp;
use vigil_policy::{decide, AssumeBuiltins, Decision, Grant, PolicyConfig};
use vigil_sql::{Analyzer, CatalogRow, LexOptions, StaticCatalog};

const STATEMENTS: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48213",
    "SELECT e.id, e.started_at, d.icd10 FROM encounters e JOIN diagnoses d ON d.encounter_id = e.id WHERE e.patient_id = 42 ORDER BY e.started_at DESC LIMIT 20",
    "SELECT mrn, zip FROM patients WHERE id IN (SELECT patient_id FROM encounters WHERE kind = 'inpatient')",
    "UPDATE encounters SET kind = 'closed' WHERE id = 7",
];

fn catalog() -> StaticCatalog {
    let mut rows = Vec::new();
    for (oid, name, columns) in [
        (
            16_001,
            "patients",
            &["id", "mrn", "first_name", "last_name", "ssn", "zip"][..],
        ),
        (
            16_002,
            "encounters",
            &["id", "patient_id", "started_at", "kind"][..],
        ),
        (16_003, "diagnoses", &["id", "encounter_id", "icd10"][..]),
        (
            16_004,
            "pgbench_accounts",
            &["aid", "bid", "abalance", "filler"][..],
        ),
    ] {
        for (i, c) in columns.iter().enumerate() {
            rows.push(CatalogRow::new(
                oid,
                "public",
                name,
                'r',
                Some((c.to_string(), i as i16 + 1)),
            ));
        }
    }
    StaticCatalog::from_rows(rows, vec!["pg_catalog".into(), "public".into()])
}

fn grant() -> Arc<Grant> {
    let policy: PolicyConfig = toml::from_str(
        r#"
name = "analytics"
identities = ["a"]
connections = ["ehr"]
[scope]
commands = ["read", "write", "transaction", "session"]
relations = ["public.patients", "public.encounters", "public.diagnoses", "public.pgbench_*"]
deny_relations = ["public.*_audit"]
deny_columns = { "public.patients" = ["ssn", "first_name", "last_name", "*phone*"] }
row_cap = 1000
"#,
    )
    .unwrap();
    Arc::new(Grant::from_policy(&policy, "a", "ehr", Timestamp::now(), "g".into()).unwrap())
}

fn per_op(n: u32, f: impl FnMut(u32)) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn cost_of_a_decision() {
    let catalog = catalog();
    let grants = [grant()];
    let now = Timestamp::now();
    for sql in STATEMENTS {
        // Uncached: a new literal each time defeats neither cache (the shape cache hits), so
        // a fresh analyzer per statement measures the parse and the walk.
        let uncached = per_op(300, |_| {
            let analyzer = Analyzer::new(16);
            std::hint::black_box(analyzer.access(sql, LexOptions::default(), &catalog));
        });
        let analyzer = Analyzer::new(10_000);
        let shape_hit = per_op(20_000, |i| {
            let text = sql.replace("42", &i.to_string());
            std::hint::black_box(analyzer.access(&text, LexOptions::default(), &catalog));
        });
        let exact_hit = per_op(100_000, |_| {
            std::hint::black_box(analyzer.access(sql, LexOptions::default(), &catalog));
        });
        let access = analyzer.access(sql, LexOptions::default(), &catalog);
        let decision = per_op(100_000, |_| {
            let d = decide(&grants, &access, &AssumeBuiltins, now);
            std::hint::black_box(matches!(d, Decision::Allow(_)));
        });
        println!(
            "{:>7.2} µs uncached  {:>6.2} µs same shape  {:>6.2} µs same text  {:>6.2} µs decide   {}",
            uncached,
            shape_hit,
            exact_hit,
            decision,
            &sql[..sql.len().min(60)]
        );
    }
}
