//! A store written by an earlier gateway still verifies and reads: the audit trail's records are
//! an export format, so a change to the event types must read what is already on disk and write
//! the same bytes for the same facts.
//!
//! `tests/fixtures/store-before-neutral-events/` was written by the gateway of main at ac0e8ac
//! (before `StatementStarted.protocol` became the adapter's own name for its protocol path), by
//! `write_the_fixture_store` below: sessions with statements over the simple protocol (psql), the
//! extended protocol (tokio-postgres), a FunctionCall (psql `\lo_import`, libpq's fast path) and
//! refusals over both protocols. Its tokens and signing key were throwaway; only the public key
//! is kept.

mod support;

use std::path::{Path, PathBuf};
use support::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-before-neutral-events")
}

/// A config whose data directory holds a copy of the fixture store (commands may open it for
/// writing; the checked-in file stays as it was).
fn config_over_fixture() -> VigilConfig {
    let cfg = VigilConfig::for_port(free_port());
    std::fs::create_dir_all(cfg.data_dir()).unwrap();
    for file in ["vigil.db", "audit-anchor.json"] {
        std::fs::copy(fixture_dir().join(file), cfg.data_dir().join(file)).unwrap();
    }
    cfg
}

fn cli_ok(cfg: &VigilConfig, args: &[&str]) -> Vec<u8> {
    let out = cfg.cli(args);
    assert!(
        out.status.success(),
        "vigil {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn export_json(cfg: &VigilConfig, artifact: &str) -> Vec<serde_json::Value> {
    serde_json::from_slice(&cli_ok(cfg, &["export", artifact, "--format", "json"])).unwrap()
}

fn protocols(rows: &[serde_json::Value]) -> Vec<String> {
    let mut seen: Vec<String> = rows
        .iter()
        .map(|r| r["protocol"].as_str().unwrap_or("<none>").to_string())
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

#[test]
fn a_store_written_before_neutral_events_verifies_and_reads() {
    let cfg = config_over_fixture();
    let public_key = fixture_dir().join("audit.pub");
    let anchor = cfg.data_dir().join("audit-anchor.json");

    // The chain, its checkpoints' signatures and the anchor.
    let verdict = cli_ok(
        &cfg,
        &[
            "audit",
            "verify",
            "--json",
            "--public-key",
            public_key.to_str().unwrap(),
            "--anchor",
            anchor.to_str().unwrap(),
        ],
    );
    let verdict: serde_json::Value = serde_json::from_slice(&verdict).unwrap();
    assert_eq!(verdict["intact"], true, "{verdict}");

    // The export reads every protocol path back as it was written.
    let statements = export_json(&cfg, "statements");
    assert_eq!(
        protocols(&statements),
        ["extended", "function_call", "simple"],
        "{statements:#?}"
    );
    let denials = export_json(&cfg, "denials");
    assert_eq!(protocols(&denials), ["extended", "simple"], "{denials:#?}");

    // The typed reading (sessions show) takes every session's records.
    let sessions = export_json(&cfg, "sessions");
    assert!(sessions.len() >= 3, "{sessions:#?}");
    let mut typed_protocols = Vec::new();
    for s in &sessions {
        let id = s["session_id"].as_str().unwrap();
        let shown: serde_json::Value =
            serde_json::from_slice(&cli_ok(&cfg, &["sessions", "show", id, "--json"])).unwrap();
        for st in shown["statements"].as_array().unwrap() {
            typed_protocols.push(st["started"]["protocol"].clone());
        }
        for d in shown["denials"].as_array().unwrap() {
            typed_protocols.push(d["denied"]["protocol"].clone());
        }
    }
    for p in ["simple", "extended", "function_call"] {
        assert!(
            typed_protocols.iter().any(|t| t == p),
            "no {p} in {typed_protocols:?}"
        );
    }
}

/// Each stored record reads into today's types and writes back to the very bytes it was stored
/// as: new records of these kinds are written as before, so readers of the export see no change.
#[test]
fn records_written_before_neutral_events_round_trip_byte_for_byte() {
    let store = fixture_dir().join("vigil.db");
    let conn =
        rusqlite::Connection::open_with_flags(&store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, body FROM audit_log ORDER BY seq")
        .unwrap();
    let rows: Vec<(u64, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty());
    let mut kinds = std::collections::BTreeSet::new();
    for (seq, body) in rows {
        let record: vigil_core::event::Record = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("record {seq} does not read: {e}"));
        kinds.insert(record.event.kind().as_str());
        let again = serde_json::to_vec(&record).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&body),
            "record {seq} writes back differently"
        );
    }
    for kind in [
        "SessionStarted",
        "StatementStarted",
        "StatementFinished",
        "PolicyDenied",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the fixture: {kinds:?}");
    }
}

/// Writes the fixture store with the gateway under test. Run by hand, with the gateway whose
/// format is to be pinned: `cargo test -p vigil --test store_compat -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/store-before-neutral-events; run by hand"]
async fn write_the_fixture_store() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE patients (id int primary key, name text, ssn text)",
    );
    pg.sql(
        "postgres",
        "INSERT INTO patients VALUES (1, 'Test Patient', '000-00-0000')",
    );
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let mut vigil = Vigil::start(&cfg);

    // Simple protocol: a read, a write, and a refusal.
    let (ok, _, err) = vigil.psql(
        "etl",
        &token,
        "SELECT name FROM patients WHERE id = 1; UPDATE patients SET name = 'Renamed' WHERE id = 1",
    );
    assert!(ok, "{err}");
    let (ok, _, _) = vigil.psql("etl", &token, "SELECT rolpassword FROM pg_authid");
    assert!(!ok, "pg_authid should be refused");

    // Extended protocol: a prepared statement with a parameter, and a refusal.
    let (client, conn) =
        tokio_postgres::connect(&vigil.conn_string("etl", &token), tokio_postgres::NoTls)
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .query("SELECT name FROM patients WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(client
        .query("SELECT rolname FROM pg_authid", &[])
        .await
        .is_err());
    drop(client);
    let _ = task.await;

    // FunctionCall: psql's \lo_import goes through libpq's fast path.
    let scratch = scratch_dir("vigil-fixture-");
    let file = scratch.path().join("note.txt");
    std::fs::write(&file, "not a secret\n").unwrap();
    let (ok, _, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &[],
        &format!("BEGIN;\n\\lo_import {}\nCOMMIT;\n", file.display()),
    );
    assert!(ok, "{err}");

    let store = cfg.store_path();
    eventually("the last statement's outcome", || {
        let started = records_of(&store, "StatementStarted").len();
        let finished = records_of(&store, "StatementFinished").len();
        (started > 0 && started == finished).then_some(())
    });
    vigil.stop();
    let statements = records_of(&store, "StatementStarted");
    let denials = records_of(&store, "PolicyDenied");
    assert_eq!(
        protocols(&statements),
        ["extended", "function_call", "simple"]
    );
    assert_eq!(protocols(&denials), ["extended", "simple"]);

    // One compact file, the anchor, and the public key (never the signing key).
    let out = fixture_dir();
    std::fs::create_dir_all(&out).unwrap();
    let db = out.join("vigil.db");
    let _ = std::fs::remove_file(&db);
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute("VACUUM INTO ?1", [db.to_str().unwrap()])
        .unwrap();
    std::fs::copy(
        cfg.data_dir().join("audit-anchor.json"),
        out.join("audit-anchor.json"),
    )
    .unwrap();
    let key = cfg.cli(&["audit", "public-key"]);
    assert!(key.status.success());
    std::fs::write(out.join("audit.pub"), key.stdout).unwrap();
}
