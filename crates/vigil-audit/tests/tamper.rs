//! Every kind of tampering an attacker with write access to the SQLite file can do is caught,
//! and reported at the first bad record with a reason an operator understands.

mod common;

use common::*;
use vigil_audit::{
    key_id, sign_checkpoint, verify, wait_durable, AuditError, AuditWriter, SigningKey,
    VerifyReport,
};
use vigil_core::event::Checkpoint;
use vigil_core::{Event, Record, SessionId, Timestamp};

/// A sealed, anchored chain of 23 records:
/// 1 checkpoint (genesis) · 2 SessionStarted · 3..14 six StatementStarted/Finished pairs ·
/// 15 checkpoint · 16..21 three more pairs · 22 SessionEnded · 23 checkpoint (shutdown).
fn chain() -> Env {
    let env = Env::new();
    let writer = env.start();
    let s = SessionId::new();
    wait_durable(writer.append(session_started(s))).unwrap();
    for n in 1..=6 {
        wait_durable(writer.append(statement_started(s, n))).unwrap();
        writer.append_detached(statement_finished(s, n));
    }
    assert_eq!(wait_durable(writer.checkpoint_now()), Ok(15));
    for n in 7..=9 {
        wait_durable(writer.append(statement_started(s, n))).unwrap();
        writer.append_detached(statement_finished(s, n));
    }
    writer.append_detached(session_ended(s));
    writer.shutdown().unwrap();

    let kinds = env.kinds();
    assert_eq!(kinds.len(), 23);
    for (seq, kind) in &kinds {
        let want = match seq {
            1 | 15 | 23 => "Checkpoint",
            2 => "SessionStarted",
            22 => "SessionEnded",
            3..=14 if seq % 2 == 1 => "StatementStarted",
            16..=21 if seq % 2 == 0 => "StatementStarted",
            _ => "StatementFinished",
        };
        assert_eq!(kind, want, "record {seq}");
    }
    env
}

#[track_caller]
fn assert_tamper(result: Result<VerifyReport, AuditError>, seq: u64, needle: &str) {
    match result {
        Err(AuditError::Tamper { seq: got, reason }) => {
            assert_eq!(got, seq, "first bad seq; reason: {reason}");
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
        }
        other => panic!("expected tampering at {seq}, got {other:?}"),
    }
}

fn hex_hash(conn: &rusqlite::Connection, seq: u64) -> String {
    hex::encode(stored_hash(conn, seq))
}

#[test]
fn a_clean_chain_verifies() {
    let env = chain();
    let report = env.verify().unwrap();
    assert_eq!(
        report,
        VerifyReport {
            records: 23,
            checkpoints: 3,
            last_seq: 23,
            last_checkpoint_seq: Some(23),
            sealed_through: 22,
            unsealed: 0,
            anchor_seq: Some(23),
            purged: 0,
        }
    );
    let text = report.to_string();
    assert!(
        text.contains("23 records and 3 signed checkpoints"),
        "{text}"
    );
}

#[test]
fn an_edited_body_is_caught() {
    let env = chain();
    let conn = env.raw();
    let edited = edit_json(&conn, 7, |v| v["objects"] = serde_json::json!(["billing"]));
    set_body(&conn, 7, &edited, false);
    assert_tamper(
        env.verify(),
        7,
        "record 7: stored hash does not match its contents (edited?)",
    );
}

#[test]
fn an_edited_and_rehashed_body_is_caught() {
    let env = chain();
    let conn = env.raw();
    let edited = edit_json(&conn, 8, |v| v["rows"] = 0.into());
    set_body(&conn, 8, &edited, true);
    assert_tamper(
        env.verify(),
        8,
        "record 8 does not match the hash that record 9 holds for it",
    );
}

#[test]
fn an_edited_and_rehashed_last_record_is_caught_by_the_checkpoint_after_it() {
    let env = chain();
    let conn = env.raw();
    let edited = edit_json(&conn, 22, |v| v["statements"] = 0.into());
    set_body(&conn, 22, &edited, true);
    assert_tamper(
        env.verify_without_anchor(),
        22,
        "record 22 does not match the hash",
    );
}

#[test]
fn a_deleted_record_is_caught() {
    let env = chain();
    env.raw()
        .execute("DELETE FROM audit_log WHERE seq = 9", [])
        .unwrap();
    assert_tamper(env.verify(), 9, "record 9 missing (deleted?)");
}

#[test]
fn a_deleted_first_record_is_caught() {
    let env = chain();
    env.raw()
        .execute("DELETE FROM audit_log WHERE seq = 1", [])
        .unwrap();
    assert_tamper(env.verify(), 1, "record 1 missing (deleted?)");
}

#[test]
fn an_inserted_record_is_caught() {
    let env = chain();
    let conn = env.raw();
    // A consistent forgery: right seq, linked to its predecessor, its own hash correct.
    let template: Record = serde_json::from_slice(&body(&conn, 7)).unwrap();
    let forged = Record {
        seq: 8,
        prev_hash: hex_hash(&conn, 7),
        ..template
    };
    shift_up(&conn, 8);
    insert_row(&conn, 8, &serde_json::to_vec(&forged).unwrap());
    assert_tamper(env.verify(), 8, "records were inserted before it (forged?)");
}

#[test]
fn reordered_records_are_caught() {
    let env = chain();
    swap(&env.raw(), 5, 9);
    assert_tamper(
        env.verify(),
        5,
        "record 5 holds the contents of record 9 (records reordered?)",
    );
}

#[test]
fn adjacent_records_swapped_are_caught() {
    let env = chain();
    swap(&env.raw(), 10, 11);
    assert_tamper(
        env.verify(),
        10,
        "record 10 holds the contents of record 11",
    );
}

#[test]
fn truncation_of_the_tail_is_caught_by_the_anchor() {
    let env = chain();
    env.raw()
        .execute("DELETE FROM audit_log WHERE seq > 19", [])
        .unwrap();
    // The chain alone still looks fine: that is what the anchor is for.
    let alone = env.verify_without_anchor().unwrap();
    assert_eq!((alone.last_seq, alone.unsealed), (19, 4));
    assert_tamper(
        env.verify(),
        20,
        "chain ends at 19 but the signed anchor covers 23 (truncated?)",
    );
    // And no writer builds on it (which would re-anchor and erase the evidence).
    let err = AuditWriter::start(env.dyn_store(), env.options()).unwrap_err();
    assert_eq!(err.tampered_seq(), Some(20), "{err}");
    assert!(err.to_string().contains("truncated?"), "{err}");
}

#[test]
fn truncation_of_just_the_final_checkpoint_is_caught() {
    let env = chain();
    env.raw()
        .execute("DELETE FROM audit_log WHERE seq = 23", [])
        .unwrap();
    assert_tamper(
        env.verify(),
        23,
        "chain ends at 22 but the signed anchor covers 23 (truncated?)",
    );
}

#[test]
fn an_emptied_chain_is_caught() {
    let env = chain();
    env.raw().execute("DELETE FROM audit_log", []).unwrap();
    assert_tamper(
        env.verify(),
        1,
        "the chain is empty but the signed anchor covers 23",
    );
}

/// The attacker replaces the tail with records of their own, sealed by a checkpoint they sign.
fn forge_tail(env: &Env, signer: &SigningKey, claimed_key_id: &str) {
    let conn = env.raw();
    conn.execute("DELETE FROM audit_log WHERE seq >= 22", [])
        .unwrap();
    let template: Record = serde_json::from_slice(&body(&conn, 21)).unwrap();
    let forged = Record {
        seq: 22,
        prev_hash: hex_hash(&conn, 21),
        ..template
    };
    let forged = serde_json::to_vec(&forged).unwrap();
    insert_row(&conn, 22, &forged);
    let head_hash = hex::encode(sha(&forged));
    let checkpoint = Record {
        seq: 23,
        prev_hash: head_hash.clone(),
        at: Timestamp::now(),
        session_id: None,
        identity: None,
        connection: None,
        event: Event::Checkpoint(Checkpoint {
            covers_seq: 22,
            signature: sign_checkpoint(signer, 22, &head_hash),
            head_hash,
            key_id: claimed_key_id.into(),
        }),
    };
    insert_row(&conn, 23, &serde_json::to_vec(&checkpoint).unwrap());
}

#[test]
fn a_checkpoint_forged_with_another_key_is_caught() {
    let env = chain();
    let attacker = SigningKey::from_bytes(&[66; 32]);
    forge_tail(&env, &attacker, &key_id(&attacker.verifying_key()));
    assert_tamper(
        env.verify_without_anchor(),
        23,
        "record 23: checkpoint signed by key",
    );
    // With the anchor too (the anchored checkpoint 23 was replaced).
    assert_tamper(env.verify(), 23, "record 23");
}

#[test]
fn a_checkpoint_claiming_our_key_id_with_a_forged_signature_is_caught() {
    let env = chain();
    let attacker = SigningKey::from_bytes(&[66; 32]);
    forge_tail(&env, &attacker, &key_id(&env.key.verifying_key()));
    assert_tamper(
        env.verify_without_anchor(),
        23,
        "record 23: checkpoint signature does not verify with the given key",
    );
}

#[test]
fn an_altered_checkpoint_is_caught() {
    let env = chain();
    let conn = env.raw();
    let edited = edit_json(&conn, 15, |v| v["covers_seq"] = 13.into());
    set_body(&conn, 15, &edited, true);
    assert_tamper(
        env.verify(),
        15,
        "record 15: checkpoint claims to seal record 13",
    );
}

#[test]
fn an_edited_index_column_is_caught() {
    let env = chain();
    env.raw()
        .execute(
            "UPDATE audit_log SET session_id = 'hidden' WHERE seq = 5",
            [],
        )
        .unwrap();
    assert_tamper(
        env.verify(),
        5,
        "record 5: its session_id column does not match its contents",
    );
}

#[test]
fn a_garbled_record_is_caught() {
    let env = chain();
    let conn = env.raw();
    set_body(&conn, 6, b"not json at all", true);
    assert_tamper(
        env.verify(),
        6,
        "record 6: its contents are not a valid audit record",
    );

    let env = chain();
    env.raw()
        .execute("UPDATE audit_log SET hash = x'00' WHERE seq = 6", [])
        .unwrap();
    assert_tamper(env.verify(), 6, "record 6: stored hash is 1 bytes, not 32");
}

#[test]
fn verifying_with_another_public_key_fails() {
    let env = chain();
    let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert_tamper(
        verify(&*env.store, &other, None),
        1,
        "record 1: checkpoint signed by key",
    );
    let err = verify(&*env.store, &other, Some(&env.anchor)).unwrap_err();
    assert!(matches!(err, AuditError::Anchor { .. }), "{err:?}");
}

#[test]
fn an_edited_or_missing_anchor_is_refused() {
    let env = chain();
    let original = std::fs::read(&env.anchor).unwrap();
    let mut anchor: serde_json::Value = serde_json::from_slice(&original).unwrap();

    // Claiming an earlier checkpoint to hide a truncation breaks the signed pair.
    anchor["seq"] = 15.into();
    std::fs::write(&env.anchor, serde_json::to_vec(&anchor).unwrap()).unwrap();
    let err = env.verify().unwrap_err();
    assert!(matches!(err, AuditError::Anchor { .. }), "{err:?}");

    // An anchor pointing at a different record hash.
    anchor["seq"] = 23.into();
    anchor["hash"] = "00".repeat(32).into();
    std::fs::write(&env.anchor, serde_json::to_vec(&anchor).unwrap()).unwrap();
    assert_tamper(
        env.verify(),
        23,
        "not the checkpoint that the signed anchor records",
    );

    std::fs::remove_file(&env.anchor).unwrap();
    let err = env.verify().unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    // Without an anchor the chain itself is fine.
    assert_eq!(env.verify_without_anchor().unwrap().records, 23);
}
