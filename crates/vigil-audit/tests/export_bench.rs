//! Export figures on a large store (ignored by default; docs/BENCHMARKS.md has the numbers):
//!
//! ```sh
//! VIGIL_BENCH_DB=/tmp/bench.db VIGIL_BENCH_STATEMENTS=1000000 \
//!     cargo test --release -p vigil-audit --test export_bench fill -- --ignored --nocapture
//! VIGIL_BENCH_DB=/tmp/bench.db \
//!     cargo test --release -p vigil-audit --test export_bench export -- --ignored --nocapture
//! ```
//! The two steps run as separate processes so that the export's peak memory is its own.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Instant;
use vigil_audit::export::StoreSource;
use vigil_audit::export::{self, Artifact, ExportFilter, Format};
use vigil_audit::{AuditOptions, AuditWriter};
use vigil_store::{AuditLog, SqliteStore};

fn db() -> std::path::PathBuf {
    std::env::var_os("VIGIL_BENCH_DB")
        .expect("set VIGIL_BENCH_DB")
        .into()
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore]
fn fill() {
    let statements: u64 = std::env::var("VIGIL_BENCH_STATEMENTS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(1_000_000);
    let store: Arc<dyn AuditLog> = Arc::new(SqliteStore::open(&db(), Default::default()).unwrap());
    let writer = AuditWriter::start(
        store,
        AuditOptions::new(vigil_audit::SigningKey::from_bytes(&[42; 32])),
    )
    .unwrap();
    let per_session = 1_000;
    let started = Instant::now();
    for _ in 0..statements / per_session {
        let s = vigil_core::SessionId::new();
        vigil_audit::wait_durable(writer.append(session_started(s))).unwrap();
        for chunk in (1..=per_session).collect::<Vec<_>>().chunks(250) {
            let mut batch = Vec::new();
            for &n in chunk {
                batch.push(statement_started(s, n));
                batch.push(statement_finished(s, n));
            }
            vigil_audit::wait_durable(writer.append_all(batch)).unwrap();
        }
        vigil_audit::wait_durable(writer.append(session_ended(s))).unwrap();
    }
    writer.shutdown().unwrap();
    eprintln!("filled {statements} statements in {:?}", started.elapsed());
}

#[test]
#[ignore]
fn export() {
    let store = SqliteStore::open(&db(), Default::default()).unwrap();
    let source = StoreSource {
        log: &store,
        grants: &store,
        requests: &store,
    };
    let before = peak_rss_kb();
    for (artifact, format) in [
        (Artifact::Statements, Format::Csv),
        (Artifact::Statements, Format::Jsonl),
        (Artifact::Sessions, Format::Csv),
    ] {
        let out = std::io::BufWriter::new(std::io::sink());
        let started = Instant::now();
        let stats =
            export::export_to(&source, artifact, &ExportFilter::default(), format, out).unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{artifact} as {}: {} rows in {secs:.2}s = {:.0} rows/s; peak RSS {} kB (before: {before} kB)",
            format.as_str(),
            stats.rows,
            stats.rows as f64 / secs,
            peak_rss_kb()
        );
    }
    let filter = ExportFilter {
        since: Some(export::parse_time_bound("1m", vigil_core::Timestamp::now()).unwrap()),
        ..Default::default()
    };
    let started = Instant::now();
    let range = export::plan(&store, &filter, None).unwrap();
    eprintln!(
        "planning a recent window: {:?} -> {range:?}",
        started.elapsed()
    );
}

#[test]
#[ignore]
fn bundle() {
    let store = SqliteStore::open(&db(), Default::default()).unwrap();
    let source = StoreSource {
        log: &store,
        grants: &store,
        requests: &store,
    };
    let key = vigil_audit::SigningKey::from_bytes(&[42; 32]);
    let out = db().with_extension("bundle.tar.gz");
    let started = Instant::now();
    let made = vigil_audit::bundle::create_bundle(&source, &key, None, None, None, &out).unwrap();
    let bytes = std::fs::metadata(&out).unwrap().len();
    eprintln!(
        "bundle of {} records ({} statements): {bytes} bytes in {:?}; peak RSS {} kB",
        made.manifest.chain.last_seq - made.manifest.chain.first_seq + 1,
        made.manifest.rows["statements"],
        started.elapsed(),
        peak_rss_kb()
    );
    let started = Instant::now();
    vigil_audit::bundle::verify_bundle(&out, Some(&key.verifying_key()))
        .unwrap()
        .unwrap();
    eprintln!(
        "verified offline in {:?}; peak RSS {} kB",
        started.elapsed(),
        peak_rss_kb()
    );
}
