//! `cargo bench -p vigil-sql`: the per-statement cost of the analysis on the proxy's hot path.
//!
//! - `normalize/*`: the literal → placeholder pass alone.
//! - `analyze/exact_hit`: a text without literals seen before (prepared statements): one lookup.
//! - `analyze/shape_hit`: a new text of a known shape (pgbench -S with a new `aid`): normalize +
//!   one lookup.
//! - `analyze/miss`: a new shape: normalize + PostgreSQL's parser + tree walk + cache insert.
//! - `access/*`: the same for [`Analyzer::access`] against a catalog holding pgbench's tables
//!   (hits add the catalog's version to the key; a miss also resolves names and columns).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::atomic::{AtomicU64, Ordering};
use vigil_sql::{normalize, Analyzer, CatalogRow, LexOptions, StaticCatalog};

const PGBENCH: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;";

/// A 20-line analytics query: CTEs, joins, a window, CASE, IN list, typed literals, comments.
const ANALYTICS: &str = "\
-- monthly revenue by region, with a running total
WITH recent AS (
    SELECT o.id, o.customer_id, o.total, o.created_at
    FROM sales.orders o
    WHERE o.created_at >= DATE '2024-01-01' AND o.status IN ('paid', 'shipped', 'refunded')
), regions AS (
    SELECT c.id, r.name AS region FROM crm.customers c JOIN crm.regions r ON r.id = c.region_id
)
SELECT regions.region,
       date_trunc('month', recent.created_at) AS month,
       sum(recent.total) AS revenue,
       count(DISTINCT recent.customer_id) AS buyers,
       sum(sum(recent.total)) OVER (PARTITION BY regions.region ORDER BY 2) AS running,
       CASE WHEN sum(recent.total) > 100000.00 THEN 'big' ELSE 'small' END AS size
FROM recent
JOIN regions ON regions.id = recent.customer_id
WHERE recent.total BETWEEN 0.5 AND 1e6 /* exclude test orders */
GROUP BY 1, 2
HAVING count(*) > 10
ORDER BY regions.region, month
LIMIT 500";

fn benches(c: &mut Criterion) {
    let opts = LexOptions::default();
    let mut g = c.benchmark_group("normalize");
    g.bench_function("pgbench", |b| {
        b.iter(|| normalize(black_box(PGBENCH), opts))
    });
    g.bench_function("analytics_20_lines", |b| {
        b.iter(|| normalize(black_box(ANALYTICS), opts))
    });
    g.finish();

    let mut g = c.benchmark_group("analyze");
    let analyzer = Analyzer::new(10_000);
    let prepared = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    analyzer.analyze(prepared, opts);
    g.bench_function("exact_hit/pgbench_prepared", |b| {
        b.iter(|| analyzer.analyze(black_box(prepared), opts))
    });
    analyzer.analyze(PGBENCH, opts);
    g.bench_function("shape_hit/pgbench", |b| {
        b.iter(|| analyzer.analyze(black_box(PGBENCH), opts))
    });
    analyzer.analyze(ANALYTICS, opts);
    g.bench_function("shape_hit/analytics_20_lines", |b| {
        b.iter(|| analyzer.analyze(black_box(ANALYTICS), opts))
    });
    // A new shape each time (a fresh column alias), so every call parses.
    let n = AtomicU64::new(0);
    let fresh = |base: &str| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        base.replacen("SELECT ", &format!("SELECT {i} AS c{i}, "), 1)
    };
    g.bench_function("miss/pgbench", |b| {
        b.iter_batched(
            || fresh(PGBENCH),
            |sql| analyzer.analyze(&sql, opts),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("miss/analytics_20_lines", |b| {
        b.iter_batched(
            || fresh(ANALYTICS),
            |sql| analyzer.analyze(&sql, opts),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("access");
    let analyzer = Analyzer::new(10_000);
    let catalog = pgbench_catalog();
    analyzer.access(prepared, opts, &catalog);
    g.bench_function("exact_hit/pgbench_prepared", |b| {
        b.iter(|| analyzer.access(black_box(prepared), opts, &catalog))
    });
    analyzer.access(PGBENCH, opts, &catalog);
    g.bench_function("shape_hit/pgbench", |b| {
        b.iter(|| analyzer.access(black_box(PGBENCH), opts, &catalog))
    });
    analyzer.access(ANALYTICS, opts, &catalog);
    g.bench_function("shape_hit/analytics_20_lines", |b| {
        b.iter(|| analyzer.access(black_box(ANALYTICS), opts, &catalog))
    });
    g.bench_function("miss/pgbench", |b| {
        b.iter_batched(
            || fresh(PGBENCH),
            |sql| analyzer.access(&sql, opts, &catalog),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("miss/analytics_20_lines", |b| {
        b.iter_batched(
            || fresh(ANALYTICS),
            |sql| analyzer.access(&sql, opts, &catalog),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// pgbench's four tables, and the analytics query's, in `public` (the analytics query's are
/// schema-qualified and unknown: it is analysed all the same, with `unresolved` entries).
fn pgbench_catalog() -> StaticCatalog {
    let tables: &[(u32, &str, &[&str])] = &[
        (
            16001,
            "pgbench_accounts",
            &["aid", "bid", "abalance", "filler"],
        ),
        (16002, "pgbench_branches", &["bid", "bbalance", "filler"]),
        (
            16003,
            "pgbench_tellers",
            &["tid", "bid", "tbalance", "filler"],
        ),
        (
            16004,
            "pgbench_history",
            &["tid", "bid", "aid", "delta", "mtime", "filler"],
        ),
    ];
    let rows = tables.iter().flat_map(|&(oid, name, cols)| {
        cols.iter().zip(1..).map(move |(c, attnum)| {
            CatalogRow::new(oid, "public", name, 'r', Some(((*c).to_owned(), attnum)))
        })
    });
    StaticCatalog::from_rows(rows, vec!["public".to_owned()])
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
