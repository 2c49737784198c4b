//! `limits.analysis_cache_mib` is a bound on memory, not on entries: the heap the analyzer's
//! caches hold, once full of distinct texts, stays within the configured MiB (with some slack
//! for the caches' own tables). Measured with a counting allocator around the real analysis.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use vigil_sql::{Analyzer, ColumnInfo, LexOptions, RelationInfo, RelationKind, StaticCatalog};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ON: LexOptions = LexOptions {
    standard_conforming_strings: true,
};

fn catalog() -> StaticCatalog {
    let relation = |oid, name: &str, columns: &[&str]| RelationInfo {
        oid,
        schema: "clinic".into(),
        name: name.into(),
        kind: RelationKind::Table,
        columns: columns
            .iter()
            .zip(1..)
            .map(|(c, attnum)| ColumnInfo {
                name: (*c).into(),
                attnum,
            })
            .collect(),
        constraints: None,
    };
    StaticCatalog::new(
        [
            relation(
                16384,
                "patients",
                &[
                    "id",
                    "first_name",
                    "last_name",
                    "ssn",
                    "dob",
                    "phone",
                    "notes",
                ],
            ),
            relation(16390, "events", &["id", "patient_id", "kind", "at"]),
        ],
        vec!["clinic".into(), "public".into()],
    )
}

/// Distinct texts, each of its own shape (names differ, no literals), so that every one is
/// analysed and kept: the worst case for the caches.
fn text(i: usize) -> String {
    match i % 4 {
        0 => format!("SELECT ssn AS s{i}, first_name, dob, notes FROM clinic.patients WHERE id > $1"),
        1 => format!("UPDATE clinic.patients AS u{i} SET notes = $1 WHERE u{i}.id = $2"),
        2 => format!(
            "SELECT p.id AS p{i}, e.kind, e.at FROM patients p JOIN events e ON e.patient_id = p.id \
             WHERE p.last_name = $1 AND e.kind = ANY($2) ORDER BY e.at DESC LIMIT $3"
        ),
        _ => format!(
            "WITH recent{i} AS (SELECT patient_id, count(*) AS n FROM events WHERE id > $1 GROUP BY patient_id) \
             SELECT p.first_name, r.n FROM recent{i} r JOIN patients p ON p.id = r.patient_id WHERE r.n > $2"
        ),
    }
}

#[test]
fn full_caches_stay_within_the_configured_memory() {
    let catalog = catalog();
    let mib = 4;
    let analyzer = Arc::new(Analyzer::with_memory(mib));
    // Warm up what is not the caches' (parser state, the catalog's lookups) before counting.
    for i in 0..200 {
        analyzer.access(&text(1_000_000 + i), ON, &catalog);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut peak = 0;
    for i in 0..12_000 {
        // As the gateway does: the shape for the record, the access for the decision.
        analyzer.analyze(&text(i), ON);
        let access = analyzer.access(&text(i), ON, &catalog);
        assert!(
            access.is_complete(),
            "{}: {:?}",
            text(i),
            access.parse_error
        );
        if i % 1000 == 999 {
            peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let bound = (mib * 1024 * 1024) as isize;
    println!(
        "caches hold {:.2} MiB after 12,000 distinct texts (peak {:.2} MiB); configured {mib} MiB",
        held as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    // The bound is the configured figure; 25% slack for the caches' tables and shards.
    assert!(
        peak <= bound + bound / 4,
        "the analysis caches held {peak} bytes, over the {mib} MiB configured"
    );
}
