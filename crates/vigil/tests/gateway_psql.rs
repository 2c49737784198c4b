//! psql through the real gateway against a real SCRAM-protected cluster: sessions, statements,
//! refusals, and what lands in the audit trail.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

#[test]
fn psql_runs_queries_and_every_statement_is_recorded_without_literals() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE patients (id int primary key, name text, ssn text)",
    );
    pg.sql(
        "postgres",
        "INSERT INTO patients VALUES (1, 'Jane Roe', '912-34-5678')",
    );
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    assert!(token.starts_with("vgt_"), "{token}");
    let vigil = Vigil::start(&cfg);

    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "SELECT name FROM patients WHERE ssn = '912-34-5678'",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Jane Roe");
    // Multi-statement string, DDL and DML.
    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "INSERT INTO patients VALUES (2, 'John Q Public', '923-45-6789'); SELECT count(*) FROM patients",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2");

    let store = cfg.store_path();
    let started = eventually("statement records", || {
        let s = records_of(&store, "StatementFinished");
        (s.len() >= 2).then_some(s)
    });
    assert_eq!(started[0]["status"], "ok");
    assert_eq!(started[0]["rows"], 1);
    assert_eq!(started[0]["command_tags"][0], "SELECT 1");
    assert_eq!(started[0]["result_digest"].as_str().unwrap().len(), 64);

    let stmts = records_of(&store, "StatementStarted");
    assert_eq!(stmts[0]["text"], "SELECT name FROM patients WHERE ssn = $1");
    assert_eq!(stmts[0]["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(stmts[0]["protocol"], "simple");
    assert_eq!(stmts[0]["identity"]["name"], "etl");
    assert_eq!(stmts[0]["identity"]["kind"], "machine");
    assert_eq!(stmts[0]["identity"]["auth_method"], "service_token");
    assert_eq!(stmts[0]["connection"], "ehr");
    assert!(stmts[0]["objects"].to_string().contains("patients"));
    assert_eq!(stmts[0]["command_classes"][0], "read");

    let sessions = eventually("session end records", || {
        let s = records_of(&store, "SessionEnded");
        (s.len() >= 2).then_some(s)
    });
    assert_eq!(sessions[0]["reason"], "client_terminated");
    let starts = records_of(&store, "SessionStarted");
    assert_eq!(starts[0]["application_name"], "psql");
    assert!(starts[0]["client_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(starts[0]["upstream_user"], "postgres");

    // No literal value, and no credential, anywhere in the store file.
    drop(vigil);
    let bytes = std::fs::read(&store).unwrap();
    let wal = std::fs::read(store.with_extension("db-wal")).unwrap_or_default();
    for needle in [
        "912-34-5678",
        "923-45-6789",
        "Jane Roe",
        "John Q Public",
        UPSTREAM_PASSWORD,
        &token,
    ] {
        assert!(
            !contains(&bytes, needle.as_bytes()) && !contains(&wal, needle.as_bytes()),
            "{needle} found in the audit store"
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn refusals_have_fitting_sqlstates_and_are_recorded() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities
        .push(("reporting".into(), "connections = []".into()));
    let token = cfg.create_token("etl");
    let reporting = cfg.create_token("reporting");
    let vigil = Vigil::start(&cfg);

    let (ok, _, err) = vigil.psql("etl", "vgt_not-a-real-token", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    let (ok, _, err) = psql_at(vigil.port, "nosuchdb", "etl", &token, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("no connection named \"nosuchdb\""), "{err}");
    let (ok, _, err) = vigil.psql("reporting", &reporting, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("may not use connection"), "{err}");
    // A valid token presented for another identity.
    let (ok, _, err) = vigil.psql("reporting", &token, "SELECT 1");
    assert!(!ok, "{err}");

    // SQLSTATEs, as a driver sees them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let code = |conn: String| async move {
            match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                Ok(_) => panic!("connected"),
                Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_default(),
            }
        };
        assert_eq!(code(vigil.conn_string("etl", "vgt_wrong")).await, "28P01");
        assert_eq!(
            code(
                vigil
                    .conn_string("etl", &token)
                    .replace("dbname=ehr", "dbname=nope")
            )
            .await,
            "3D000"
        );
        assert_eq!(
            code(vigil.conn_string("reporting", &reporting)).await,
            "28000"
        );
    });

    let store = cfg.store_path();
    let failures = eventually("AuthFailed records", || {
        let f = records_of(&store, "AuthFailed");
        (f.len() >= 7).then_some(f)
    });
    let reasons: Vec<&str> = failures
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    for r in [
        "unknown_token",
        "unknown_connection",
        "connection_not_allowed",
        "identity_mismatch",
    ] {
        assert!(reasons.contains(&r), "{r} missing from {reasons:?}");
    }
    let text = serde_json::to_string(&failures).unwrap();
    assert!(!text.contains("vgt_not-a-real-token") && !text.contains(&token));
}

#[test]
fn revoked_and_expired_tokens_are_refused() {
    let pg = PgCluster::start();
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let out = cfg.cli(&["token", "create", "--identity", "etl", "--expires", "1s"]);
    assert!(out.status.success());
    let short = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let vigil = Vigil::start(&cfg);
    assert!(vigil.psql("etl", &token, "SELECT 1").0);

    let list = cfg.cli(&["token", "list", "--json"]);
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(list.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let id = first["id"].as_str().unwrap();
    let out = cfg.cli(&["token", "revoke", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _, err) = vigil.psql("etl", &token, "SELECT 1");
    assert!(!ok && err.contains("revoked"), "{err}");

    std::thread::sleep(Duration::from_millis(1500));
    let (ok, _, err) = vigil.psql("etl", &short, "SELECT 1");
    assert!(!ok && err.contains("expired"), "{err}");

    let store = cfg.store_path();
    assert_eq!(records_of(&store, "TokenIssued").len(), 2);
    assert_eq!(records_of(&store, "TokenRevoked").len(), 1);
}

/// Sends raw bytes as a client and returns what comes back before the server closes.
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn error_code(reply: &[u8]) -> Option<String> {
    let start = reply.iter().position(|&b| b == b'E')?;
    let body = &reply[start + 5..];
    let c = body.windows(1).position(|w| w[0] == b'C')?;
    let code = &body[c + 1..c + 6];
    Some(String::from_utf8_lossy(code).into_owned())
}

#[test]
fn malformed_and_hostile_input_gets_clear_errors() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.extra = "[limits]\nauth_timeout = \"1s\"\nmax_message_bytes = 4096\n".into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    // A startup packet that lies about its length.
    let reply = raw_exchange(vigil.port, &[0, 0, 0, 4]);
    assert_eq!(error_code(&reply).as_deref(), Some("08P01"), "{reply:?}");
    // A Terminate before the startup packet (node-postgres's connect() then end()) is a
    // goodbye: closed without an answer, as PostgreSQL does, not a FATAL the driver raises.
    let mut early_terminate = vec![b'X', 0, 0, 0, 4];
    early_terminate.extend_from_slice(&startup(&[("user", "etl"), ("database", "ehr")]));
    assert_eq!(raw_exchange(vigil.port, &early_terminate), b"");
    assert_eq!(raw_exchange(pg.port, &early_terminate), b"");
    // One longer than PostgreSQL's own limit.
    let reply = raw_exchange(vigil.port, &1_000_000i32.to_be_bytes());
    assert_eq!(error_code(&reply).as_deref(), Some("08P01"));
    // Protocol 2.
    let mut v2 = 8i32.to_be_bytes().to_vec();
    v2.extend_from_slice(&0x0002_0000i32.to_be_bytes());
    assert_eq!(
        error_code(&raw_exchange(vigil.port, &v2)).as_deref(),
        Some("08P01")
    );
    // GSS encryption is refused with 'N', then the client may go on.
    let mut gss = 8i32.to_be_bytes().to_vec();
    gss.extend_from_slice(&80_877_104i32.to_be_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", vigil.port)).unwrap();
    s.write_all(&gss).unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    assert_eq!(&n, b"N");
    // Replication connections are refused.
    let reply = raw_exchange(
        vigil.port,
        &startup(&[
            ("user", "etl"),
            ("database", "ehr"),
            ("replication", "true"),
        ]),
    );
    assert_eq!(error_code(&reply).as_deref(), Some("0A000"));
    // A client that says nothing is dropped after auth_timeout.
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", vigil.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(started.elapsed() < Duration::from_secs(5));

    // After login: an oversized message ends the session with 08P01; garbage tags too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&vigil.conn_string("etl", &token), tokio_postgres::NoTls)
                .await
                .unwrap();
        let task = tokio::spawn(conn);
        let big = "x".repeat(10_000);
        let err = client
            .simple_query(&format!("SELECT '{big}'"))
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("08P01"), "{err}");
        let _ = task.await;
    });

    // The gateway is still healthy.
    assert!(vigil.psql("etl", &token, "SELECT 1").0);
}

#[test]
fn tls_is_offered_and_required_off_loopback() {
    let pg = PgCluster::start();
    // A non-loopback listener without a certificate does not start.
    let mut bad = VigilConfig::new(&pg);
    bad.extra = "[[listeners]]\naddress = \"0.0.0.0:0\"\n".into();
    let out = bad.cli(&["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("requires TLS"),
        "{err}"
    );

    // With a certificate, sslmode=require works; tls = "required" refuses plaintext.
    let mut cfg = VigilConfig::new(&pg);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(cfg.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        cfg.dir.path().join("key.pem"),
        cert.key_pair.serialize_pem(),
    )
    .unwrap();
    cfg.listener_extra =
        "tls = \"required\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n".into();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .arg(format!(
            "host=127.0.0.1 port={} dbname=ehr user=etl sslmode=require",
            vigil.port
        ))
        .env("PGPASSWORD", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _, err) = vigil.psql("etl", &token, "SELECT 1");
    assert!(!ok && err.contains("requires TLS"), "{err}");
    let store = cfg.store_path();
    let starts = eventually("session record", || {
        let s = records_of(&store, "SessionStarted");
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(starts[0]["client_tls"], true);
    eventually("tls_required record", || {
        records_of(&store, "AuthFailed")
            .iter()
            .any(|r| r["reason"] == "tls_required")
            .then_some(())
    });
}

#[test]
fn copy_both_ways_and_notify_through_psql() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE TABLE t (id int, v text)");
    let cfg = VigilConfig::new(&pg);
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);

    let input: String = (1..=1000).map(|i| format!("{i}\tvalue {i}\n")).collect();
    let (ok, _, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &["-c", "COPY t FROM STDIN"],
        &input,
    );
    assert!(ok, "{err}");
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM t"), "1000");
    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "COPY (SELECT * FROM t ORDER BY id) TO STDOUT",
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1000);

    let store = cfg.store_path();
    let finished = eventually("COPY records", || {
        let f = records_of(&store, "StatementFinished");
        (f.len() >= 2).then_some(f)
    });
    assert_eq!(finished[0]["command_tags"][0], "COPY 1000");
    assert_eq!(finished[1]["rows"], 1000);
    let started = records_of(&store, "StatementStarted");
    assert_eq!(started[0]["command_classes"][0], "copy_in");
    assert_eq!(started[1]["command_classes"][0], "copy_out");
}
