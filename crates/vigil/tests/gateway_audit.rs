//! The audit trail as an operator and an auditor meet it: fail closed when the store cannot
//! take records, nothing acknowledged lost in a crash, tampering caught by `vigil audit verify`,
//! sessions readable with `vigil sessions`, and the HTTP API.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

#[test]
fn store_failure_refuses_statements_and_they_never_run() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE marks (v text)");
    let mut cfg = VigilConfig::new(&pg);
    cfg.extra = "[store.sqlite]\nbusy_timeout = \"300ms\"\n".into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&vigil.conn_string("etl", &token), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
            .simple_query("INSERT INTO marks VALUES ('before')")
            .await
            .unwrap();

        // Another process takes the store's write lock and holds it.
        let locker = rusqlite::Connection::open(cfg.store_path()).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

        let err = client
            .simple_query("INSERT INTO marks VALUES ('during-simple')")
            .await
            .unwrap_err();
        assert_eq!(err.code().unwrap().code(), "58000", "{err}");
        let message = err.as_db_error().unwrap().message().to_string();
        assert!(message.contains("audit trail"), "{message}");
        let err = client
            .execute("INSERT INTO marks VALUES ($1)", &[&"during-extended"])
            .await
            .unwrap_err();
        assert_eq!(err.code().unwrap().code(), "58000", "{err}");

        locker.execute_batch("ROLLBACK").unwrap();
        drop(locker);
        // The session survives and works again once the store does.
        client
            .simple_query("INSERT INTO marks VALUES ('after')")
            .await
            .unwrap();
    });
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT string_agg(v, ',' ORDER BY v) FROM marks"
        ),
        "after,before",
        "statements refused for want of an audit record must not have run"
    );
    // Refused statements left no start record; the ones that ran have both.
    let store = cfg.store_path();
    eventually("records after the lock", || {
        (records_of(&store, "StatementStarted").len() == 2
            && records_of(&store, "StatementFinished").len() >= 2)
            .then_some(())
    });
}

#[test]
fn a_crash_loses_no_acknowledged_statement_and_the_chain_still_verifies() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE marks (n int)");
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let mut vigil = Vigil::start(&cfg);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let acknowledged = rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&vigil.conn_string("etl", &token), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut n = 0;
        let deadline = std::time::Instant::now() + Duration::from_millis(700);
        while std::time::Instant::now() < deadline {
            client
                .simple_query(&format!("INSERT INTO marks VALUES ({n})"))
                .await
                .unwrap();
            n += 1;
        }
        n
    });
    vigil.crash();
    let ran: i64 = pg
        .sql("postgres", "SELECT count(*) FROM marks")
        .parse()
        .unwrap();
    assert_eq!(ran, acknowledged as i64);
    let started = records_of(&cfg.store_path(), "StatementStarted")
        .into_iter()
        .filter(|s| s["text"] == "INSERT INTO marks VALUES ($1)")
        .count();
    assert!(
        started as i64 >= ran,
        "{ran} statements ran but only {started} start records survived the crash"
    );
    // The chain is intact after the crash; restarting seals it.
    let out = cfg.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _vigil = Vigil::start(&cfg);
}

fn tamper(store: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn verify(cfg: &VigilConfig, public_key: &std::path::Path) -> (i32, String) {
    let out = Command::new(vigil_bin())
        .args(["audit", "verify", "--store"])
        .arg(format!("sqlite://{}", cfg.store_path().display()))
        .arg("--public-key")
        .arg(public_key)
        .arg("--anchor")
        .arg(cfg.data_dir().join("audit-anchor.json"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_kind_of_tampering_is_caught_by_the_cli() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let mut vigil = Vigil::start(&cfg);
    for i in 0..5 {
        assert!(vigil.psql("etl", &token, &format!("SELECT {i}")).0);
    }
    vigil.stop();
    let key = cfg.dir.path().join("public.pem");
    let out = cfg.cli(&["audit", "public-key"]);
    assert!(out.status.success());
    std::fs::write(&key, &out.stdout).unwrap();

    let (code, text) = verify(&cfg, &key);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("intact"));
    let pristine = std::fs::read(cfg.store_path()).unwrap();
    let total: u64 = {
        let conn = rusqlite::Connection::open(cfg.store_path()).unwrap();
        conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0))
            .unwrap()
    };
    assert!(total > 20);
    let restore = || {
        let _ = std::fs::remove_file(cfg.store_path().with_extension("db-wal"));
        let _ = std::fs::remove_file(cfg.store_path().with_extension("db-shm"));
        std::fs::write(cfg.store_path(), &pristine).unwrap();
    };
    // Make sure the WAL is folded in before copying.
    restore();

    let cases: Vec<(&str, String, u64)> = vec![
        (
            "edit",
            "UPDATE audit_log SET body = CAST(replace(CAST(body AS TEXT), '\"seq\":10,', '\"seq\":10 ,') AS BLOB) WHERE seq = 10".into(),
            10,
        ),
        ("deletion", "DELETE FROM audit_log WHERE seq = 12".into(), 12),
        (
            "insertion",
            "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 8; UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1008; INSERT INTO audit_log (seq, at_us, kind, body, hash) SELECT 8, at_us, kind, CAST(replace(CAST(body AS TEXT), '\"seq\":7,', '\"seq\":8,') AS BLOB), hash FROM audit_log WHERE seq = 7".into(),
            8,
        ),
        (
            "reordering",
            "UPDATE audit_log SET seq = -1 WHERE seq = 14; UPDATE audit_log SET seq = 14 WHERE seq = 15; UPDATE audit_log SET seq = 15 WHERE seq = -1".into(),
            14,
        ),
        ("truncation", format!("DELETE FROM audit_log WHERE seq > {}", total - 3), total - 2),
    ];
    for (name, sql, bad) in cases {
        restore();
        tamper(&cfg.store_path(), &sql);
        let (code, text) = verify(&cfg, &key);
        assert_eq!(code, 1, "{name} not caught: {text}");
        assert!(
            text.contains(&format!("at record {bad}:")),
            "{name}: expected the first bad record to be {bad}: {text:?}"
        );
    }
}

#[test]
fn sessions_cli_and_http_api_show_what_happened() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    assert!(vigil.psql("etl", &token, "SELECT 42").0);
    let store = cfg.store_path();
    eventually("session end", || {
        (!records_of(&store, "SessionEnded").is_empty()).then_some(())
    });

    let out = cfg.cli(&["sessions", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let s: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(s["identity"]["name"], "etl");
    assert_eq!(s["statements"], 1);
    let id = s["session_id"].as_str().unwrap().to_string();

    let out = cfg.cli(&["sessions", "show", &id]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("SELECT $1") && text.contains("etl") && text.contains("ok"),
        "{text}"
    );

    let api = format!("http://127.0.0.1:{}", vigil.api_port);
    let get = |path: &str, auth: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-w", "\n%{http_code}"])
            .arg(format!("{api}{path}"));
        if auth {
            cmd.args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")]);
        }
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    assert_eq!(get("/healthz", false).0, "200");
    assert_eq!(get("/api/v1/sessions", false).0, "401");
    let (code, body) = get("/api/v1/sessions", true);
    assert_eq!(code, "200");
    assert!(body.contains(&id));
    let (code, body) = get(&format!("/api/v1/sessions/{id}"), true);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("SELECT $1"));
    let (code, body) = get("/api/v1/audit/verify", true);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"intact\":true"));
    let (code, body) = get("/api/v1/audit/public-key", true);
    assert_eq!(code, "200");
    assert!(body.contains("BEGIN PUBLIC KEY"));
}
