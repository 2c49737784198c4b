//! A client that pipelines large writes sees the server's error while it is still writing
//! (issue 12: asyncpg's `executemany` stops sending rows once the server has failed one), and
//! Vigil's accounting of what the server answered holds for such a pipeline: one row inserted,
//! one failed, the rest skipped by the server up to the Sync.
//!
//! The pipeline is several times what the sockets between the client and the server can hold,
//! so the client cannot finish writing before Vigil has forwarded most of it: an error that
//! reaches it only after its last byte means Vigil held the error back (or held the pipeline
//! until its Sync), not that the client was fast.

mod support;

use std::time::Instant;
use support::raw::*;
use support::*;

/// Rows of the pipeline; all but the first two carry a 32 KiB value (24 MiB in all).
const ROWS: usize = 768;
const VALUE_BYTES: usize = 32 * 1024;

#[test]
fn the_servers_error_reaches_a_pipelining_client_while_it_is_still_writing() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE pipelined (a text, b int PRIMARY KEY)",
    );
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let mut c = RawClient::connect(vigil.port, "etl", &token, "pipelining");
    let prepared = c.round(
        &[
            parse(b"ins", "INSERT INTO pipelined VALUES ($1, $2)"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert!(
        prepared[0].errors().is_empty(),
        "{:?}",
        prepared[0].errors()
    );

    // Rows 1 and 2 share a key: the server fails the second Execute and skips the rest.
    let large = "a".repeat(VALUE_BYTES);
    let mut pipeline = Vec::with_capacity(ROWS * (VALUE_BYTES + 64));
    for row in 1..=ROWS {
        let (value, key) = match row {
            1 | 2 => ("a", "0".to_string()),
            _ => (large.as_str(), row.to_string()),
        };
        pipeline.extend(bind(b"", b"ins", &[Some(value), Some(&key)], &[]));
        pipeline.extend(execute(b"", 0));
    }
    pipeline.extend(sync());

    let started = Instant::now();
    let answered_at = c.write_watching(&pipeline);
    let writing = started.elapsed();
    let reply = c.ready();
    eprintln!(
        "answer readable after {answered_at:?} of {} bytes; all written in {writing:?}",
        pipeline.len()
    );
    let answered_at =
        answered_at.expect("the server's error reached the client only after its last byte");
    assert!(
        answered_at < pipeline.len() / 2,
        "the server's error reached the client only after {answered_at} of {} bytes",
        pipeline.len()
    );

    // What the server answered: row 1, then the violation, then ReadyForQuery at the Sync.
    assert_eq!(reply.error_code().as_deref(), Some("23505"));
    assert_eq!(reply.errors().len(), 1);
    assert_eq!(reply.tags(), ["INSERT 0 1"]);
    // The implicit transaction rolled back.
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM pipelined"), "0");
    assert!(c.simple("SELECT 1").errors().is_empty());

    // Vigil's accounting: every Execute recorded, with what became of it.
    let store = cfg.store_path();
    let finished = eventually("every statement's end record", || {
        let finished: Vec<_> = records_of(&store, "StatementFinished")
            .into_iter()
            .filter(|f| f["status"] != "ok" || f["command_tags"][0] == "INSERT 0 1")
            .collect();
        (finished.len() == ROWS).then_some(finished)
    });
    let count = |status: &str| finished.iter().filter(|f| f["status"] == status).count();
    assert_eq!(count("ok"), 1);
    assert_eq!(count("error"), 1);
    assert_eq!(count("skipped"), ROWS - 2);
    let failed = finished.iter().find(|f| f["status"] == "error").unwrap();
    assert_eq!(failed["sqlstate"], "23505");
    let started = records_of(&store, "StatementStarted")
        .into_iter()
        .filter(|s| s["text"] == "INSERT INTO pipelined VALUES ($1, $2)")
        .count();
    assert_eq!(started, ROWS);
}
