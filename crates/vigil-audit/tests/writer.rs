//! The writer's contract: numbering and linking, group commit, checkpoints and anchor,
//! failures (waited appends refused, detached ones kept and retried), other writers on the
//! same chain, restarts.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_audit::{
    read_anchor, verify_checkpoint, wait_durable, AuditError, AuditWriter, GENESIS_HASH,
};
use vigil_core::event::Checkpoint;
use vigil_core::{Event, EventDraft, EventSink, Record, SessionId};
use vigil_store::{AuditLog, SessionFilter, SessionsIndex, SqliteOptions, SqliteStore};

fn checkpoints(env: &Env) -> Vec<u64> {
    env.kinds()
        .into_iter()
        .filter(|(_, kind)| kind == "Checkpoint")
        .map(|(seq, _)| seq)
        .collect()
}

fn busy_env(timeout_ms: u64) -> Env {
    Env::with_store_options(SqliteOptions {
        busy_timeout: Duration::from_millis(timeout_ms),
        ..SqliteOptions::default()
    })
}

#[test]
fn an_empty_chain_starts_with_a_genesis_checkpoint_and_anchor() {
    let env = Env::new();
    let writer = env.start();
    let row = env.store.audit_row(1).unwrap().unwrap();
    let rec: Record = serde_json::from_slice(&row.body).unwrap();
    assert_eq!(rec.seq, 1);
    assert_eq!(rec.prev_hash, GENESIS_HASH);
    let Event::Checkpoint(cp) = rec.event else {
        panic!("record 1 is {:?}", row.kind)
    };
    assert_eq!(cp.covers_seq, 0);
    assert_eq!(cp.head_hash, GENESIS_HASH);
    assert_eq!(cp.key_id, writer.key_id());
    assert!(verify_checkpoint(
        &writer.verifying_key(),
        0,
        GENESIS_HASH,
        &cp.signature
    ));
    let anchor = read_anchor(&env.anchor).unwrap().unwrap();
    assert_eq!(anchor.seq, 1);
    assert_eq!(anchor.hash, hex::encode(row.hash));

    writer.shutdown().unwrap();
    // Nothing new since the genesis checkpoint: shutdown adds none.
    assert_eq!(checkpoints(&env), [1]);
    let report = env.verify().unwrap();
    assert_eq!((report.records, report.unsealed), (1, 0));
}

#[test]
fn records_are_numbered_linked_and_stored_as_hashed() {
    let env = Env::new();
    let writer = env.start();
    let s = SessionId::new();
    let started = session_started(s);
    let t1 = writer.append(started.clone());
    let t2 = writer.append_all(vec![statement_started(s, 1), statement_finished(s, 1)]);
    writer.append_detached(session_ended(s));
    assert_eq!(wait_durable(t1), Ok(2));
    assert_eq!(
        wait_durable(t2),
        Ok(4),
        "append_all resolves to its last seq"
    );
    assert_eq!(wait_durable(writer.append_all(Vec::new())), Ok(0));
    writer.shutdown().unwrap();

    let mut prev = [0u8; 32];
    let mut rows = Vec::new();
    env.store
        .scan_audit(0, &mut |row| {
            rows.push(row);
            true
        })
        .unwrap();
    let kinds: Vec<_> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Checkpoint",
            "SessionStarted",
            "StatementStarted",
            "StatementFinished",
            "SessionEnded",
            "Checkpoint"
        ]
    );
    for row in &rows {
        assert_eq!(
            sha(&row.body),
            row.hash.to_vec(),
            "the stored bytes are what is hashed"
        );
        let rec: Record = serde_json::from_slice(&row.body).unwrap();
        assert_eq!(rec.seq, row.seq);
        assert_eq!(rec.prev_hash, hex::encode(prev));
        prev = row.hash;
    }
    let expected = started.into_record(2, hex::encode(rows[0].hash));
    assert_eq!(
        serde_json::from_slice::<Record>(&rows[1].body).unwrap(),
        expected
    );
    assert_eq!(rows[1].session_id.as_deref(), Some(s.to_string().as_str()));
    assert_eq!(rows[1].identity.as_deref(), Some("etl"));
    assert_eq!(rows[1].connection.as_deref(), Some("ehr"));

    // The store's session index followed.
    let sessions = env.store.list_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].started_seq, sessions[0].ended_seq),
        (2, Some(5))
    );
    let seqs: Vec<_> = env
        .store
        .session_rows(&s.to_string())
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    assert_eq!(env.verify().unwrap().checkpoints, 2);
}

#[test]
fn checkpoint_now_seals_and_anchors() {
    let env = Env::new();
    let writer = env.start();
    let s = SessionId::new();
    for n in 1..=3 {
        wait_durable(writer.append(statement_started(s, n))).unwrap();
    }
    let report = env.verify().unwrap();
    assert_eq!((report.unsealed, report.sealed_through), (3, 0));

    let seq = wait_durable(writer.checkpoint_now()).unwrap();
    assert_eq!(seq, 5);
    assert_eq!(read_anchor(&env.anchor).unwrap().unwrap().seq, 5);
    let report = env.verify().unwrap();
    assert_eq!(report.last_checkpoint_seq, Some(5));
    assert_eq!((report.unsealed, report.sealed_through), (0, 4));
    assert_eq!(report.anchor_seq, Some(5));
    writer.shutdown().unwrap();
    assert_eq!(
        checkpoints(&env),
        [1, 5],
        "nothing new after the last checkpoint"
    );
}

#[test]
fn periodic_checkpoints_only_when_there_is_something_new() {
    let env = Env::new();
    let mut options = env.options();
    options.checkpoint_interval = Duration::from_millis(100);
    let writer = AuditWriter::start(env.dyn_store(), options).unwrap();
    let s = SessionId::new();
    wait_durable(writer.append(statement_started(s, 1))).unwrap();
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(
        checkpoints(&env),
        [1, 3],
        "one periodic checkpoint, none while idle"
    );
    wait_durable(writer.append(statement_started(s, 2))).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(checkpoints(&env), [1, 3, 5]);
    assert_eq!(read_anchor(&env.anchor).unwrap().unwrap().seq, 5);
    writer.shutdown().unwrap();
    assert_eq!(checkpoints(&env), [1, 3, 5]);
}

#[test]
fn shutdown_is_idempotent_and_later_appends_fail() {
    let env = Env::new();
    let writer = env.start();
    let other_handle = writer.clone();
    writer.shutdown().unwrap();
    writer.shutdown().unwrap();
    other_handle.shutdown().unwrap();
    let err = wait_durable(other_handle.append(statement_started(SessionId::new(), 1)));
    assert!(err.unwrap_err().0.contains("shut down"));
    assert!(wait_durable(writer.checkpoint_now()).is_err());
    other_handle.append_detached(statement_finished(SessionId::new(), 1)); // logged, no panic
    assert_eq!(env.verify().unwrap().records, 1);
}

#[test]
fn a_restarted_writer_continues_the_chain() {
    let env = Env::new();
    let s = SessionId::new();
    let writer = env.start();
    wait_durable(writer.append(statement_started(s, 1))).unwrap();
    wait_durable(writer.append(statement_started(s, 2))).unwrap();
    writer.shutdown().unwrap();
    assert_eq!(checkpoints(&env), [1, 4]);

    // The head is a checkpoint: a restart adds no start checkpoint.
    let writer = env.start();
    assert_eq!(env.store.audit_head().unwrap().unwrap().seq, 4);
    assert_eq!(wait_durable(writer.append(statement_started(s, 3))), Ok(5));
    writer.shutdown().unwrap();
    assert_eq!(checkpoints(&env), [1, 4, 6]);
    let report = env.verify().unwrap();
    assert_eq!(
        (report.records, report.checkpoints, report.unsealed),
        (6, 3, 0)
    );
}

#[test]
fn records_left_unsealed_are_sealed_by_the_next_start() {
    let env = Env::new();
    let s = SessionId::new();
    let writer = env.start();
    wait_durable(writer.append(statement_started(s, 1))).unwrap();
    wait_durable(writer.append(statement_started(s, 2))).unwrap();
    // As if the process died: the thread never gets to its final checkpoint.
    std::mem::forget(writer);
    assert_eq!(env.verify().unwrap().unsealed, 2);

    let writer = env.start();
    assert_eq!(checkpoints(&env), [1, 4], "start sealed the unsealed tail");
    writer.shutdown().unwrap();
    let report = env.verify().unwrap();
    assert_eq!((report.unsealed, report.anchor_seq), (0, Some(4)));
}

#[test]
fn a_checkpoint_draft_from_a_caller_is_made_and_signed_by_the_writer() {
    let env = Env::new();
    let writer = env.start();
    let bogus = EventDraft::new(Event::Checkpoint(Checkpoint {
        covers_seq: 999,
        head_hash: "nonsense".into(),
        key_id: "someone".into(),
        signature: "AAAA".into(),
    }));
    assert_eq!(wait_durable(writer.append(bogus)), Ok(2));
    writer.shutdown().unwrap();
    assert_eq!(env.verify().unwrap().checkpoints, 2);
}

#[test]
fn many_threads_appending_concurrently_make_a_clean_chain() {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 150;
    let env = Env::new();
    let writer = env.start();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let s = SessionId::new();
                let mut acked = Vec::new();
                for n in 0..ROUNDS {
                    match n % 3 {
                        0 => {
                            let seq = wait_durable(writer.append_all(vec![
                                statement_started(s, 2 * n),
                                statement_finished(s, 2 * n + 1),
                            ]))
                            .unwrap();
                            acked.push(seq - 1);
                            acked.push(seq);
                        }
                        1 => acked.push(
                            wait_durable(writer.append(statement_started(s, 2 * n))).unwrap(),
                        ),
                        _ => writer.append_detached(statement_finished(s, 2 * n)),
                    }
                }
                (s, acked)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    writer.shutdown().unwrap();

    let per_thread = ROUNDS / 3 * 2 + ROUNDS / 3 + ROUNDS / 3;
    let report = env.verify().unwrap();
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.records - report.checkpoints, THREADS * per_thread);

    for (s, acked) in results {
        // Each caller's records are in the order it made the calls.
        let rows = records_of(&env, s);
        assert_eq!(rows.len() as u64, per_thread);
        let order: Vec<u64> = rows
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                v["statement_seq"].as_u64().unwrap()
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // What a ticket said is where the record is.
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert!(acked.iter().all(|seq| seqs.contains(seq)));
        // append_all batches are consecutive.
        let firsts: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == "StatementStarted")
            .map(|r| r.seq)
            .collect();
        assert!(!firsts.is_empty());
    }
}

#[test]
fn another_writer_on_the_same_chain_is_not_a_failure() {
    let env = Env::new();
    let gateway = env.start();
    // A CLI command opens its own store handle and writer on the same file.
    let cli_store = Arc::new(SqliteStore::open(&env.db, SqliteOptions::default()).unwrap());
    let cli = AuditWriter::start(cli_store, env.options()).unwrap();
    let run = |writer: AuditWriter| {
        std::thread::spawn(move || {
            let s = SessionId::new();
            for n in 0..150 {
                wait_durable(writer.append(statement_started(s, n))).unwrap();
                if n % 5 == 0 {
                    writer.append_detached(statement_finished(s, n));
                }
            }
        })
    };
    let a = run(gateway.clone());
    let b = run(cli.clone());
    a.join().unwrap();
    b.join().unwrap();
    cli.shutdown().unwrap();
    gateway.shutdown().unwrap();
    let report = env.verify().unwrap();
    assert_eq!(report.records - report.checkpoints, 2 * (150 + 30));
    assert_eq!(report.unsealed, 0);
}

#[test]
fn store_failure_refuses_waited_appends_and_retries_detached_ones() {
    let env = busy_env(100);
    let writer = env.start();
    let s = SessionId::new();

    let locker = env.raw();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    writer.append_detached(statement_finished(s, 1));
    let refused = writer.append(statement_started(s, 2));
    writer.append_detached(statement_finished(s, 3));
    let refused_all = writer.append_all(vec![statement_started(s, 4), statement_finished(s, 5)]);

    let err = wait_durable(refused).unwrap_err();
    assert!(err.0.contains("busy"), "{err}");
    assert!(wait_durable(refused_all).is_err());
    // Retries keep failing while the lock is held; nothing is lost meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.store.audit_head().unwrap().unwrap().seq, 1);
    locker.execute_batch("COMMIT").unwrap();

    // The detached records land on their own once the store is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.store.audit_head().unwrap().unwrap().seq < 3 {
        assert!(
            Instant::now() < deadline,
            "detached records were not retried"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(wait_durable(writer.append(statement_started(s, 6))), Ok(4));
    writer.shutdown().unwrap();

    let statement_seqs: Vec<u64> = records_of(&env, s)
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["statement_seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        statement_seqs,
        [1, 3, 6],
        "refused records dropped, detached kept in order"
    );
    assert_eq!(env.verify().unwrap().unsealed, 0);
}

#[test]
fn a_store_down_through_shutdown_reports_what_was_lost() {
    let env = busy_env(50);
    let mut options = env.options();
    options.shutdown_attempts = 2;
    let writer = AuditWriter::start(env.dyn_store(), options).unwrap();
    let locker = env.raw();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for n in 0..3 {
        writer.append_detached(statement_finished(SessionId::new(), n));
    }
    match writer.shutdown() {
        Err(AuditError::Lost { count: 3, reason }) => assert!(reason.contains("busy"), "{reason}"),
        other => panic!("expected lost records, got {other:?}"),
    }
    locker.execute_batch("COMMIT").unwrap();
    assert_eq!(env.verify().unwrap().records, 1);
}

#[test]
fn start_fails_when_the_store_is_unavailable() {
    let env = busy_env(50);
    let locker = env.raw();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = AuditWriter::start(env.dyn_store(), env.options()).unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)), "{err:?}");
    locker.execute_batch("COMMIT").unwrap();
    env.start().shutdown().unwrap();
}

#[test]
fn a_chain_rewritten_under_a_running_writer_stops_it_appending() {
    let env = Env::new();
    let writer = env.start();
    let s = SessionId::new();
    for n in 1..=4 {
        wait_durable(writer.append(statement_started(s, n))).unwrap();
    }
    // Someone cuts the tail while the gateway runs, then another writer appends to it.
    env.raw()
        .execute("DELETE FROM audit_log WHERE seq > 2", [])
        .unwrap();
    let other: Arc<dyn AuditLog> =
        Arc::new(SqliteStore::open(&env.db, SqliteOptions::default()).unwrap());
    let mut rows = Vec::new();
    env.store
        .scan_audit(1, &mut |r| {
            rows.push(r);
            true
        })
        .unwrap();
    let mut forged = rows[1].clone();
    for seq in 3..=8 {
        forged.seq = seq;
        other.append_audit(std::slice::from_ref(&forged)).unwrap();
    }
    // The writer sees a conflict, notices its own records are gone and fails closed.
    let err = wait_durable(writer.append(statement_started(s, 5))).unwrap_err();
    assert!(err.0.contains("changed while the writer ran"), "{err}");
    drop(writer);
}

#[test]
fn batches_respect_max_batch_but_never_split_an_append_all() {
    let env = Env::new();
    let mut options = env.options();
    options.max_batch = 4;
    let writer = AuditWriter::start(env.dyn_store(), options).unwrap();
    let s = SessionId::new();
    for n in 0..100 {
        writer.append_detached(statement_finished(s, n));
    }
    let drafts: Vec<_> = (100..110).map(|n| statement_started(s, n)).collect();
    let last = wait_durable(writer.append_all(drafts)).unwrap();
    assert_eq!(last, 111, "1 genesis checkpoint + 100 detached + 10");
    writer.shutdown().unwrap();
    let report = env.verify().unwrap();
    assert_eq!(report.records, 112);
}

#[test]
fn dropping_every_handle_still_stores_the_queue_and_seals_it() {
    let env = Env::new();
    let writer = env.start();
    let s = SessionId::new();
    let acked = wait_durable(writer.append(statement_started(s, 1))).unwrap();
    for n in 2..=50 {
        writer.append_detached(statement_finished(s, n));
    }
    drop(writer);
    // Nobody waits for the thread; it drains, seals and exits on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head = env.store.audit_head().unwrap().unwrap().seq;
        let last = env.store.audit_row(head).unwrap().unwrap();
        // 1 genesis checkpoint, 1 waited, 49 detached, 1 final checkpoint.
        if head == 52 && last.kind == "Checkpoint" {
            break;
        }
        assert!(Instant::now() < deadline, "head stuck at {head}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(env.store.audit_row(acked).unwrap().is_some());
    assert_eq!(env.verify().unwrap().unsealed, 0);
}

#[test]
fn the_writer_works_as_a_dyn_event_sink() {
    let env = Env::new();
    let writer = env.start();
    let sink: Arc<dyn EventSink> = Arc::new(writer.clone());
    let s = SessionId::new();
    assert_eq!(wait_durable(sink.append(session_started(s))), Ok(2));
    assert_eq!(
        wait_durable(sink.append_all(vec![statement_started(s, 1), statement_finished(s, 1)])),
        Ok(4)
    );
    sink.append_detached(session_ended(s));
    writer.shutdown().unwrap();
    assert_eq!(env.verify().unwrap().records, 6);
}

#[test]
fn detached_records_wait_for_the_next_waited_append_or_their_linger() {
    let env = Env::new();
    let mut options = env.options();
    options.detached_linger = Duration::from_secs(60);
    options.max_batch = 8;
    let writer = AuditWriter::start(env.dyn_store(), options).unwrap();
    let s = SessionId::new();
    assert_eq!(wait_durable(writer.append(session_started(s))), Ok(2));

    // Alone, a detached record waits for company.
    writer.append_detached(statement_finished(s, 1));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(env.store.audit_head().unwrap().unwrap().seq, 2);
    // The next waited append takes it along, in order.
    assert_eq!(wait_durable(writer.append(statement_started(s, 2))), Ok(4));
    assert_eq!(
        env.store.audit_row(3).unwrap().unwrap().kind,
        "StatementFinished"
    );

    // A full batch of detached records does not wait.
    for n in 3..11 {
        writer.append_detached(statement_finished(s, n));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.store.audit_head().unwrap().unwrap().seq < 12 {
        assert!(Instant::now() < deadline, "a full batch kept waiting");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Nor does one whose linger is over.
    let env = Env::new();
    let mut options = env.options();
    options.detached_linger = Duration::from_millis(20);
    let writer = AuditWriter::start(env.dyn_store(), options).unwrap();
    writer.append_detached(statement_finished(s, 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.store.audit_head().unwrap().unwrap().seq < 2 {
        assert!(Instant::now() < deadline, "the linger never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.shutdown().unwrap();
}
