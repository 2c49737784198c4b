//! Retention: a purge deletes what is past its retention, keeps what a hold covers and every
//! checkpoint, records itself, and the chain still verifies; deletion without it does not.

mod common;

use common::*;
use vigil_audit::export::{self, Artifact, ExportFilter, Format};
use vigil_audit::retention::{self, LegalHold, RetentionPolicy};
use vigil_core::Timestamp;

fn statements_only(holds: Vec<LegalHold>) -> RetentionPolicy {
    let mut policy = RetentionPolicy {
        holds,
        ..RetentionPolicy::default()
    };
    policy.by_family.insert("statements".into(), 0);
    policy
}

fn later() -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() + 1_000_000)
}

fn rows(env: &Env, artifact: Artifact) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    export::export_to(
        &env.source(),
        artifact,
        &ExportFilter::default(),
        Format::Jsonl,
        &mut out,
    )
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_purge_keeps_holds_and_checkpoints_and_the_chain_still_verifies() {
    let env = Env::new();
    populate(&env);
    let sessions = rows(&env, Artifact::Sessions);
    let held = sessions[0]["session_id"].as_str().unwrap().to_string();
    let hold = LegalHold {
        session: Some(held.clone()),
        reason: "litigation 2026-17".into(),
        ..Default::default()
    };
    let before = env.kinds();
    let checkpoints_before = before.iter().filter(|(_, k)| k == "Checkpoint").count();

    let plan =
        retention::plan_purge(&*env.dyn_store(), &statements_only(vec![hold]), later()).unwrap();
    assert_eq!(
        plan.deleted, 7,
        "11 statement records, the held session's 4 kept: {plan:?}"
    );
    assert_eq!(plan.held, 4);
    assert_eq!(plan.by_family["statements"], 7);
    let deleted = retention::purge(&*env.dyn_store(), env.start(), &plan, "cli:test").unwrap();
    assert_eq!(deleted, 7);

    let report = env.verify().unwrap();
    assert_eq!(report.purged, 7);
    // Deleting a record right after a purged run is named as the record deleted.
    let after_run = plan.ranges[0].to_seq + 1;
    let copy = env.dir.path().join("copy.db");
    env.raw()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute("DELETE FROM audit_log WHERE seq = ?1", [after_run as i64])
        .unwrap();
    drop(conn);
    let copied = vigil_store::SqliteStore::open(&copy, Default::default()).unwrap();
    let err = vigil_audit::verify(&copied, &env.key.verifying_key(), None).unwrap_err();
    assert_eq!(err.tampered_seq(), Some(after_run), "{err}");
    assert!(report.to_string().contains("7 records purged"), "{report}");
    let after = env.kinds();
    assert_eq!(
        after
            .iter()
            .filter(|(_, k)| k == "StatementStarted" || k == "StatementFinished")
            .count(),
        4
    );
    assert!(
        after.iter().filter(|(_, k)| k == "Checkpoint").count() > checkpoints_before,
        "all kept, one more"
    );
    assert_eq!(after.iter().filter(|(_, k)| k == "AuditPurged").count(), 1);
    let statements = rows(&env, Artifact::Statements);
    assert!(statements.iter().all(|s| s["session_id"] == held.as_str()));
    assert_eq!(
        rows(&env, Artifact::Sessions).len(),
        3,
        "sessions have their own retention"
    );

    // A second purge (everything now), next to the first one's gaps, still verifies.
    let mut all = RetentionPolicy {
        default_us: 0,
        ..RetentionPolicy::default()
    };
    all.holds.clear();
    let plan = retention::plan_purge(&*env.dyn_store(), &all, later()).unwrap();
    assert!(plan.deleted > 0);
    retention::purge(&*env.dyn_store(), env.start(), &plan, "cli:test").unwrap();
    let report = env.verify().unwrap();
    assert!(report.purged > 7, "{report}");
    let kinds = env.kinds();
    assert!(
        kinds
            .iter()
            .all(|(_, k)| k == "Checkpoint" || k == "AuditPurged" || *k == kinds.last().unwrap().1),
        "{kinds:?}"
    );

    // A bundle after purges covers the unbroken part of the chain, and verifies.
    let out = env.dir.path().join("after-purge.tar.gz");
    vigil_audit::bundle::create_bundle(&env.source(), &env.key, None, None, None, &out).unwrap();
    vigil_audit::bundle::verify_bundle(&out, Some(&env.key.verifying_key()))
        .unwrap()
        .unwrap();
}

#[test]
fn deleting_without_a_sealed_purge_record_is_tampering() {
    let env = Env::new();
    populate(&env);
    let plan =
        retention::plan_purge(&*env.dyn_store(), &statements_only(Vec::new()), later()).unwrap();
    let first = plan.ranges[0].clone();

    // Deleted outright: the gap is named.
    let conn = env.raw();
    conn.execute(
        "DELETE FROM audit_log WHERE seq BETWEEN ?1 AND ?2",
        [first.from_seq as i64, first.to_seq as i64],
    )
    .unwrap();
    let err = env.verify().unwrap_err();
    assert_eq!(err.tampered_seq(), Some(first.from_seq), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    // Deleted with a purge record appended by hand (no key, so no checkpoint seals it).
    append_raw(
        &*env.dyn_store(),
        "AuditPurged",
        None,
        serde_json::json!({
        "ranges": [first], "deleted": 1, "held": 0, "purged_by": "mallory"}),
    );
    let err = env.verify().unwrap_err();
    assert!(
        err.to_string().contains("only the unsealed record"),
        "{err}"
    );
}

#[test]
fn a_purge_after_retention_keeps_what_is_younger() {
    let env = Env::new();
    populate(&env);
    let policy = RetentionPolicy::default(); // six years
    let plan = retention::plan_purge(&*env.dyn_store(), &policy, Timestamp::now()).unwrap();
    assert_eq!(plan.deleted, 0);
    assert!(plan.ranges.is_empty());
}

#[test]
fn legal_holds_placed_and_released_are_each_recorded_once_and_never_purged() {
    let env = Env::new();
    populate(&env);
    let matter = LegalHold {
        identity: Some("etl".into()),
        since: Some(Timestamp::from_micros(0)),
        reason: "matter 17".into(),
        ..Default::default()
    };
    let audit = LegalHold {
        session: Some("0193-held".into()),
        reason: "OCR audit".into(),
        ..Default::default()
    };
    let store = env.dyn_store();
    let apply = |holds: &[LegalHold]| {
        let writer = env.start();
        let changes = retention::record_hold_changes(&*store, &writer, holds, "cli:alice").unwrap();
        writer.shutdown().unwrap();
        changes
    };
    let placed = apply(&[matter.clone(), audit.clone()]);
    assert_eq!(placed.placed, vec![matter.id(), audit.id()]);
    assert!(placed.released.is_empty());
    // The same configuration again records nothing.
    assert_eq!(apply(&[audit.clone(), matter.clone()]), Default::default());
    // Dropping one releases it, with the reason it was placed for.
    let released = apply(std::slice::from_ref(&matter));
    assert_eq!(released.released, vec![audit.id()]);
    assert!(released.placed.is_empty());

    let records: Vec<serde_json::Value> = env
        .kinds()
        .iter()
        .filter(|(_, k)| k.starts_with("LegalHold"))
        .map(|(seq, _)| serde_json::from_slice(&body(&env.raw(), *seq)).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["type"], "LegalHoldPlaced");
    assert_eq!(records[0]["identity_name"], "etl");
    assert_eq!(records[0]["reason"], "matter 17");
    assert_eq!(records[0]["placed_by"], "cli:alice");
    assert_eq!(records[2]["type"], "LegalHoldReleased");
    assert_eq!(records[2]["hold_id"], audit.id());
    assert_eq!(records[2]["reason"], "OCR audit");

    // A purge of everything past a zero retention keeps them; the chain verifies.
    let mut policy = RetentionPolicy {
        default_us: 0,
        ..RetentionPolicy::default()
    };
    policy.by_family.insert("statements".into(), 0);
    let plan = retention::plan_purge(&*store, &policy, later()).unwrap();
    retention::purge(&*store, env.start(), &plan, "cli:alice").unwrap();
    let kept = env
        .kinds()
        .iter()
        .filter(|(_, k)| k.starts_with("LegalHold"))
        .count();
    assert_eq!(kept, 3);
    let report = env.verify().unwrap();
    assert!(report.purged > 0, "{report:?}");
}
