use super::*;
use crate::{
    AuditHead, AuditLog, AuditRow, SessionFilter, SessionIndex, SessionsIndex, TokenRecord,
    TokenStore,
};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::Timestamp;

fn temp_store(options: SqliteOptions) -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.db");
    let store = SqliteStore::open(&path, options).unwrap();
    (dir, path, store)
}

fn row(seq: u64, kind: &str, session: Option<&str>) -> AuditRow {
    let body = format!("{{\"seq\":{seq},\"type\":\"{kind}\"}}").into_bytes();
    AuditRow {
        seq,
        at_us: 1_000_000 * seq as i64,
        kind: kind.to_string(),
        session_id: session.map(str::to_string),
        identity: session.map(|_| "etl".to_string()),
        connection: session.map(|_| "ehr".to_string()),
        body,
        hash: [seq as u8; 32],
    }
}

fn rows(from: u64, to: u64) -> Vec<AuditRow> {
    (from..=to)
        .map(|s| row(s, "StatementStarted", None))
        .collect()
}

fn token(id: &str, identity: &str, created_us: i64, hash_byte: u8) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        identity: identity.into(),
        hash: [hash_byte; 32],
        created_at: Timestamp::from_micros(created_us),
        expires_at: Some(Timestamp::from_micros(created_us + 1_000)),
        revoked_at: None,
        label: Some(format!("label of {id}")),
    }
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

#[test]
fn open_creates_file_schema_and_wal_and_is_idempotent() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    let conn = raw(&path);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "store file must be owner-only");
    }
    store.append_audit(&rows(1, 3)).unwrap();
    drop(store);
    // Reopening runs no migration twice and keeps the data.
    let again = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(again.audit_head().unwrap().unwrap().seq, 3);
    assert_eq!(again.path(), path.as_path());
}

#[test]
fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/vigil.db");
    SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert!(path.exists());
}

#[test]
fn open_refuses_a_schema_from_a_newer_version() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    drop(store);
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("newer Vigil"), "{err}");
}

#[test]
fn open_refuses_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
}

#[test]
fn options_have_safe_defaults_and_deserialize_from_config() {
    let d = SqliteOptions::default();
    assert_eq!(d.synchronous, Synchronous::Normal);
    assert_eq!(d.busy_timeout, Duration::from_secs(5));
    assert!(d.read_connections > 0);

    let o: SqliteOptions =
        toml::from_str("synchronous = \"full\"\nbusy_timeout = \"250ms\"").unwrap();
    assert_eq!(o.synchronous, Synchronous::Full);
    assert_eq!(o.busy_timeout, Duration::from_millis(250));
    assert_eq!(o.read_connections, d.read_connections);

    let o: SqliteOptions = toml::from_str("busy_timeout = 1500").unwrap();
    assert_eq!(o.busy_timeout, Duration::from_millis(1500));

    assert!(toml::from_str::<SqliteOptions>("synchronous = \"off\"").is_err());
    assert!(toml::from_str::<SqliteOptions>("busy_timeout = \"soon\"").is_err());
    assert!(toml::from_str::<SqliteOptions>("cache = 1").is_err());
}

#[test]
fn synchronous_setting_reaches_sqlite() {
    for (sync, want) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
        let options = SqliteOptions {
            synchronous: sync,
            ..SqliteOptions::default()
        };
        let (_dir, _path, store) = temp_store(options);
        let got: i64 = store
            .writer
            .lock()
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn append_then_read_back_exactly() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    assert_eq!(store.audit_head().unwrap(), None);
    assert_eq!(store.audit_row(1).unwrap(), None);
    store.append_audit(&[]).unwrap();

    let batch = vec![
        row(1, "Checkpoint", None),
        row(2, "SessionStarted", Some("s1")),
        row(3, "StatementStarted", Some("s1")),
    ];
    store.append_audit(&batch).unwrap();
    store.append_audit(&rows(4, 5)).unwrap();

    let head = store.audit_head().unwrap().unwrap();
    assert_eq!(
        head,
        AuditHead {
            seq: 5,
            hash: [5; 32]
        }
    );
    assert_eq!(store.audit_row(2).unwrap().as_ref(), Some(&batch[1]));
    assert_eq!(store.audit_row(6).unwrap(), None);
    assert_eq!(store.audit_row(u64::MAX).unwrap(), None);

    let mut seen = Vec::new();
    store
        .scan_audit(0, &mut |r| {
            seen.push(r);
            true
        })
        .unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(&seen[..3], &batch[..]);
    assert!(seen.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
}

#[test]
fn scan_starts_at_from_seq_and_stops_when_told() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    store.append_audit(&rows(1, 10)).unwrap();
    let mut seqs = Vec::new();
    store
        .scan_audit(4, &mut |r| {
            seqs.push(r.seq);
            r.seq < 6
        })
        .unwrap();
    assert_eq!(seqs, vec![4, 5, 6]);
    let mut n = 0;
    store
        .scan_audit(11, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn append_must_follow_the_head() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    match store.append_audit(&rows(2, 2)) {
        Err(StoreError::ChainConflict {
            expected: 2,
            found: 0,
        }) => {}
        other => panic!("expected a chain conflict, got {other:?}"),
    }
    store.append_audit(&rows(1, 3)).unwrap();
    match store.append_audit(&rows(3, 4)) {
        Err(StoreError::ChainConflict {
            expected: 3,
            found: 3,
        }) => {}
        other => panic!("expected a chain conflict, got {other:?}"),
    }
    let err = store
        .append_audit(&[row(4, "Checkpoint", None), row(6, "Checkpoint", None)])
        .unwrap_err();
    assert!(err.to_string().contains("not consecutive"), "{err}");
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 3);
}

#[test]
fn chain_conflict_between_two_handles_on_one_file() {
    let (_dir, path, a) = temp_store(SqliteOptions::default());
    let b = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    a.append_audit(&rows(1, 2)).unwrap();
    // b believed the chain was empty: its append must be refused, not interleaved.
    match b.append_audit(&rows(1, 1)) {
        Err(StoreError::ChainConflict {
            expected: 1,
            found: 2,
        }) => {}
        other => panic!("expected a chain conflict, got {other:?}"),
    }
    b.append_audit(&rows(3, 3)).unwrap();
    assert_eq!(a.audit_head().unwrap().unwrap().seq, 3);
}

#[test]
fn concurrent_appenders_on_two_handles_never_interleave() {
    let (_dir, path, a) = temp_store(SqliteOptions::default());
    let b = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let stores = [Arc::new(a), Arc::new(b)];
    let threads: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| {
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 50 {
                    let next = store.audit_head().unwrap().map_or(1, |h| h.seq + 1);
                    match store.append_audit(&rows(next, next + 2)) {
                        Ok(()) => done += 1,
                        Err(StoreError::ChainConflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut expected = 1;
    stores[0]
        .scan_audit(0, &mut |r| {
            assert_eq!(r.seq, expected);
            expected += 1;
            true
        })
        .unwrap();
    assert_eq!(expected, 301);
}

#[test]
fn append_is_all_or_nothing() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    store.append_audit(&rows(1, 1)).unwrap();
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON audit_log WHEN NEW.kind = 'Boom'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
    let batch = vec![
        row(2, "SessionStarted", Some("s")),
        row(3, "StatementStarted", Some("s")),
        row(4, "Boom", None),
    ];
    let err = store.append_audit(&batch).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 1);
    assert!(store
        .list_sessions(&SessionFilter::default())
        .unwrap()
        .is_empty());
    // The writer connection is usable again afterwards.
    store.append_audit(&rows(2, 2)).unwrap();
}

#[test]
fn busy_when_another_connection_holds_the_lock() {
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let (_dir, path, store) = temp_store(options);
    store.append_audit(&rows(1, 2)).unwrap();

    let locker = raw(&path);
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    let err = store.append_audit(&rows(3, 3)).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, StoreError::Busy), "{err:?}");
    assert!(
        waited >= Duration::from_millis(150),
        "gave up too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited too long: {waited:?}"
    );

    let err = store.insert_token(&token("t", "etl", 1, 1)).unwrap_err();
    assert!(matches!(err, StoreError::Busy), "{err:?}");

    // WAL: readers are not blocked by the lock holder.
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 2);
    let mut n = 0;
    store
        .scan_audit(0, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 2);

    locker.execute_batch("COMMIT").unwrap();
    store.append_audit(&rows(3, 3)).unwrap();
}

#[test]
fn a_long_read_does_not_block_appends() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    store.append_audit(&rows(1, 20)).unwrap();
    let mut appended_during_scan = false;
    store
        .scan_audit(0, &mut |r| {
            if r.seq == 5 {
                store.append_audit(&rows(21, 21)).unwrap();
                appended_during_scan = true;
            }
            true
        })
        .unwrap();
    assert!(appended_during_scan);
    assert_eq!(store.audit_head().unwrap().unwrap().seq, 21);
}

#[test]
fn session_index_follows_start_and_end_records() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    let mut batch = vec![
        row(1, "SessionStarted", Some("s1")),
        row(2, "StatementStarted", Some("s1")),
        row(3, "SessionStarted", Some("s2")),
        row(4, "StatementFinished", Some("s1")),
        row(5, "SessionEnded", Some("s1")),
        row(6, "Checkpoint", None),
        row(7, "SessionStarted", Some("s3")),
    ];
    batch[2].identity = Some("bi".into());
    batch[6].connection = Some("billing".into());
    store.append_audit(&batch).unwrap();
    // A second end for the same session keeps the first.
    store
        .append_audit(&[row(8, "SessionEnded", Some("s1"))])
        .unwrap();

    let all = store.list_sessions(&SessionFilter::default()).unwrap();
    let ids: Vec<_> = all.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["s3", "s2", "s1"], "newest first");
    let s1 = &all[2];
    assert_eq!(
        s1,
        &SessionIndex {
            session_id: "s1".into(),
            started_seq: 1,
            started_at_us: 1_000_000,
            identity: Some("etl".into()),
            connection: Some("ehr".into()),
            ended_seq: Some(5),
        }
    );
    assert_eq!(all[1].ended_seq, None);
    // One session by id, from the index.
    assert_eq!(store.session_index("s1").unwrap().as_ref(), Some(s1));
    assert_eq!(store.session_index("s2").unwrap().unwrap().ended_seq, None);
    assert_eq!(store.session_index("nope").unwrap(), None);

    let by = |f: SessionFilter| -> Vec<String> {
        store
            .list_sessions(&f)
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect()
    };
    assert_eq!(
        by(SessionFilter {
            identity: Some("bi".into()),
            ..Default::default()
        }),
        ["s2"]
    );
    assert_eq!(
        by(SessionFilter {
            connection: Some("billing".into()),
            ..Default::default()
        }),
        ["s3"]
    );
    assert_eq!(
        by(SessionFilter {
            since: Some(Timestamp::from_micros(3_000_000)),
            until: Some(Timestamp::from_micros(7_000_000)),
            ..Default::default()
        }),
        ["s2"],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        by(SessionFilter {
            limit: Some(2),
            ..Default::default()
        }),
        ["s3", "s2"]
    );
    assert!(by(SessionFilter {
        identity: Some("nobody".into()),
        ..Default::default()
    })
    .is_empty());

    let s1_rows = store.session_rows("s1").unwrap();
    let seqs: Vec<_> = s1_rows.iter().map(|r| r.seq).collect();
    // A session's records lie between its start and (first) end record.
    assert_eq!(seqs, [1, 2, 4, 5]);
    assert_eq!(s1_rows[1], batch[1]);
    assert!(store.session_rows("nope").unwrap().is_empty());
}

#[test]
fn audit_queries_use_the_indexes_they_need() {
    let (_dir, path, _store) = temp_store(SqliteOptions::default());
    let conn = raw(&path);
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("; ")
    };
    let p =
        plan("SELECT * FROM audit_log WHERE seq BETWEEN 5 AND 9 AND session_id = 'x' ORDER BY seq");
    assert!(
        p.contains("INTEGER PRIMARY KEY") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    let p = plan("SELECT * FROM sessions ORDER BY started_at_us DESC LIMIT 5");
    assert!(p.contains("sessions_started"), "{p}");
    let p = plan("SELECT * FROM service_tokens WHERE hash = x'00'");
    assert!(p.contains("INDEX"), "{p}");
    // The hot path (appends) maintains no secondary index on audit_log.
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn rows_that_were_tampered_into_the_wrong_shape_are_corrupt_not_repaired() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    store.append_audit(&rows(1, 3)).unwrap();
    let conn = raw(&path);

    conn.execute("UPDATE audit_log SET hash = x'0102' WHERE seq = 2", [])
        .unwrap();
    let err = store.scan_audit(0, &mut |_| true).unwrap_err();
    match err {
        StoreError::Corrupt { seq: 2, reason } => assert!(reason.contains("2 bytes"), "{reason}"),
        other => panic!("{other:?}"),
    }

    conn.execute(
        "UPDATE audit_log SET hash = zeroblob(32), body = 7 WHERE seq = 2",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.audit_row(2),
        Err(StoreError::Corrupt { seq: 2, .. })
    ));

    // A body stored as text is handed back as its bytes, for the verifier to judge.
    conn.execute("UPDATE audit_log SET body = 'edited' WHERE seq = 2", [])
        .unwrap();
    assert_eq!(store.audit_row(2).unwrap().unwrap().body, b"edited");

    conn.execute(
        "INSERT INTO audit_log (seq, at_us, kind, body, hash) VALUES (-1, 0, 'x', x'00', zeroblob(32))",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.scan_audit(0, &mut |_| true),
        Err(StoreError::Corrupt { seq: 0, .. })
    ));
    // Asked from seq 1, the negative row is outside the range.
    store.scan_audit(1, &mut |_| true).unwrap();
}

#[test]
fn tokens_insert_find_list_and_reject_duplicates() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    let t1 = token("t1", "etl", 30, 1);
    let mut t2 = token("t2", "bi", 10, 2);
    t2.expires_at = None;
    t2.label = None;
    let t3 = token("t3", "etl", 20, 3);
    for t in [&t1, &t2, &t3] {
        store.insert_token(t).unwrap();
    }
    assert_eq!(
        store.find_token_by_hash(&[2; 32]).unwrap(),
        Some(t2.clone())
    );
    assert_eq!(store.find_token_by_hash(&[9; 32]).unwrap(), None);

    let all = store.list_tokens(None).unwrap();
    assert_eq!(
        all,
        vec![t2.clone(), t3.clone(), t1.clone()],
        "oldest first"
    );
    assert_eq!(
        store.list_tokens(Some("etl")).unwrap(),
        vec![t3, t1.clone()]
    );
    assert!(store.list_tokens(Some("nobody")).unwrap().is_empty());

    let dup_id = token("t1", "etl", 40, 4);
    let err = store.insert_token(&dup_id).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let dup_hash = token("t9", "etl", 40, 1);
    assert!(store.insert_token(&dup_hash).is_err());
    assert_eq!(store.list_tokens(None).unwrap().len(), 3);
}

#[test]
fn revoking_keeps_the_first_revocation_time() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    store.insert_token(&token("t1", "etl", 10, 1)).unwrap();
    assert_eq!(
        store
            .revoke_token("nope", Timestamp::from_micros(5))
            .unwrap(),
        None
    );

    let first = store
        .revoke_token("t1", Timestamp::from_micros(100))
        .unwrap()
        .unwrap();
    assert_eq!(first.revoked_at, Some(Timestamp::from_micros(100)));
    assert_eq!(first.id, "t1");

    let again = store
        .revoke_token("t1", Timestamp::from_micros(200))
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(Timestamp::from_micros(100)));

    // Committed, and visible to another process.
    let other = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let found = other.find_token_by_hash(&[1; 32]).unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(Timestamp::from_micros(100)));
}

#[test]
fn store_urls() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.db");
    for url in [
        format!("sqlite://{}", p.display()),
        format!("sqlite:{}", p.display()),
        p.display().to_string(),
    ] {
        let store = crate::open(&url, SqliteOptions::default()).unwrap();
        assert_eq!(store.path(), p.as_path());
    }
    assert!(matches!(
        crate::open("postgres://db/vigil", SqliteOptions::default()),
        Err(StoreError::BadUrl(_))
    ));
    assert!(matches!(
        crate::open("", SqliteOptions::default()),
        Err(StoreError::BadUrl(_))
    ));
}

#[test]
fn store_is_usable_as_a_trait_object_from_many_threads() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    let store: Arc<dyn AuditLog> = Arc::new(store);
    store.append_audit(&rows(1, 100)).unwrap();
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let r = store.audit_row(1 + i * 10).unwrap().unwrap();
                    assert_eq!(r.seq, 1 + i * 10);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn the_wal_is_checkpointed_in_the_background() {
    let (_dir, path, store) = temp_store(SqliteOptions::default());
    let db_size = || std::fs::metadata(&path).unwrap().len();
    let before = db_size();
    for seq in 1..=2_000 {
        let mut r = row(seq, "StatementStarted", Some("s"));
        r.body = vec![b'x'; 500];
        store.append_audit(&[r]).unwrap();
    }
    // The writer never checkpoints itself; the background thread copies the WAL back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while db_size() < before + 500 * 1_000 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint ran: {} bytes",
            db_size()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let autocheckpoint: i64 = store
        .writer
        .lock()
        .conn
        .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
        .unwrap();
    assert_eq!(autocheckpoint, 0);
}

fn wal_size(path: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len())
}

/// The WAL header's checkpoint sequence number: it goes up each time the WAL starts over.
fn wal_generation(path: &Path) -> u32 {
    let header = std::fs::read(format!("{}-wal", path.display())).unwrap_or_default();
    header
        .get(12..16)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()))
}

/// Appends rows of 1,000-byte bodies in batches of `batch`, as fast as it can, for `bytes` of
/// bodies; returns the largest WAL file size seen after a commit and how many times the WAL
/// started over meanwhile.
fn append_flat_out(store: &SqliteStore, path: &Path, bytes: u64, batch: u64) -> (u64, u32) {
    let body_len = 1_000;
    let mut seq = store.audit_head().unwrap().map_or(0, |h| h.seq);
    let mut max_wal = 0;
    let mut generation = wal_generation(path);
    let mut restarts = 0;
    for _ in 0..bytes / (body_len * batch) {
        let rows: Vec<_> = (seq + 1..=seq + batch)
            .map(|s| {
                let mut r = row(s, "StatementStarted", Some(&format!("s{}", s % 16)));
                r.body = vec![b'x'; body_len as usize];
                r
            })
            .collect();
        store.append_audit(&rows).unwrap();
        seq += batch;
        max_wal = max_wal.max(wal_size(path));
        let now = wal_generation(path);
        if now != generation {
            restarts += 1;
            generation = now;
        }
    }
    (max_wal, restarts)
}

#[test]
fn sustained_appends_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.db");
    let tuning = WalTuning {
        kick_after: 16,
        restart_bytes: 1 << 20,
        ..WalTuning::default()
    };
    let store = Arc::new(SqliteStore::open_tuned(&path, SqliteOptions::default(), tuning).unwrap());
    // Readers keep reading meanwhile (short read transactions, as the API makes).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.audit_head().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // 40 MB of records with no pause long enough to count as idle: without catching up, the
    // WAL would hold all of it (several times over).
    let (max_wal, restarts) = append_flat_out(&store, &path, 40 << 20, 8);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    let stats = store.wal_stats();
    assert!(restarts >= 5, "{restarts} restarts ({stats:?})");
    assert!(
        max_wal < 8 << 20,
        "the WAL grew to {max_wal} bytes under sustained appends ({stats:?})"
    );
    assert_eq!(
        store.audit_head().unwrap().unwrap().seq,
        (40 << 20) / 8_000 * 8
    );
}

#[test]
fn an_idle_writer_lets_the_wal_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.db");
    // Never catch up under load: here only going idle lets the WAL start over.
    let tuning = WalTuning {
        restart_bytes: u64::MAX,
        idle_after: Duration::from_millis(20),
        ..WalTuning::default()
    };
    let store = SqliteStore::open_tuned(&path, SqliteOptions::default(), tuning).unwrap();
    let (first, _) = append_flat_out(&store, &path, 4 << 20, 4);
    for burst in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let (wal, restarts) = append_flat_out(&store, &path, 4 << 20, 4);
        assert!(
            restarts >= 1,
            "burst {burst}: the WAL did not start over ({restarts})"
        );
        assert!(wal < first * 2, "burst {burst}: {wal} bytes after {first}");
    }
}

#[test]
fn audit_pages_filter_kinds_and_bounds_and_match_the_default_scan() {
    let (_dir, _path, store) = temp_store(SqliteOptions::default());
    let mut all = Vec::new();
    for seq in 1..=50u64 {
        let kind = if seq % 3 == 0 {
            "PolicyDenied"
        } else {
            "Checkpoint"
        };
        all.push(row(seq, kind, None));
    }
    store.append_audit(&all).unwrap();
    let page = store.audit_page(3, 40, &["PolicyDenied"], 5).unwrap();
    let seqs: Vec<u64> = page.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [6, 9, 12, 15, 18]);
    let last = store.audit_page(30, 40, &["PolicyDenied"], 100).unwrap();
    assert_eq!(last.iter().map(|r| r.seq).collect::<Vec<_>>(), [33, 36, 39]);
    assert!(store.audit_page(0, 50, &[], 10).unwrap().is_empty());
    let any: Vec<u64> = store
        .audit_rows(47, 49, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(any, [48, 49]);
    assert_eq!(store.audit_rows(0, 50, 3).unwrap().len(), 3);

    // The trait's defaults (for other stores) give the same pages: a store that keeps only
    // the chain implements `AuditLog` alone.
    struct Plain(SqliteStore);
    impl AuditLog for Plain {
        fn append_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
            self.0.append_audit(rows)
        }
        fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
            self.0.audit_head()
        }
        fn scan_audit(
            &self,
            from_seq: u64,
            visit: &mut dyn FnMut(AuditRow) -> bool,
        ) -> Result<(), StoreError> {
            self.0.scan_audit(from_seq, visit)
        }
        fn audit_row(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
            self.0.audit_row(seq)
        }
        fn delete_audit_ranges(&self, ranges: &[(u64, u64)]) -> Result<u64, StoreError> {
            self.0.delete_audit_ranges(ranges)
        }
    }
    let plain = Plain(SqliteStore::open(store.path(), SqliteOptions::default()).unwrap());
    assert_eq!(
        AuditLog::audit_page(&plain, 3, 40, &["PolicyDenied"], 5).unwrap(),
        page
    );
    assert_eq!(
        AuditLog::audit_rows(&plain, 47, 49, 10).unwrap(),
        store.audit_rows(47, 49, 10).unwrap()
    );
}
