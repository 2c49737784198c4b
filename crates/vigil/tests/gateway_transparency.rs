//! Transparency to clients (issue 12): what a client sends as PostgreSQL would take it works the
//! same through Vigil. A text whose later statements use what its earlier ones create (as
//! migration tools send them) runs; Vigil's own error for a name that does not exist carries the
//! position PostgreSQL gives; and refusals stay refusals.

mod support;

use support::raw::*;
use support::*;

fn setup() -> (PgCluster, VigilConfig, Vigil, String) {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE patients (id int PRIMARY KEY, ssn text, name text);
         INSERT INTO patients VALUES (1, '123-45-6789', 'Ann')",
    );
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        ("etl".into(), "connections = [\"ehr\"]".into()),
        (
            "narrow".into(),
            "connections = [\"ehr\"]\ngroups = [\"narrow\"]".into(),
        ),
    ];
    cfg.policies.push_str(
        r#"
[[policies]]
name = "narrow"
groups = ["narrow"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["public.*", "pg_temp*.*"]
deny_columns = { "public.patients" = ["ssn"] }
"#,
    );
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    (pg, cfg, vigil, token)
}

#[test]
fn a_text_may_use_what_its_earlier_statements_create() {
    let (pg, cfg, vigil, token) = setup();
    for (sql, expected) in [
        (
            "CREATE TABLE t1 (a int, b text); INSERT INTO t1 VALUES (1, 'x'); SELECT a, b FROM t1",
            "1|x",
        ),
        (
            "CREATE TEMP TABLE tt (a int); INSERT INTO tt (a) VALUES (2); SELECT a FROM tt",
            "2",
        ),
        (
            "BEGIN; CREATE TABLE acct (id int PRIMARY KEY, owner text); CREATE INDEX ON acct (owner); INSERT INTO acct VALUES (1, 'o'); COMMIT; SELECT owner FROM acct",
            "o",
        ),
        (
            "CREATE TYPE mood AS ENUM ('happy', 'sad'); CREATE TABLE m (x mood); INSERT INTO m VALUES ('sad'); SELECT x FROM m",
            "sad",
        ),
        ("PREPARE q AS SELECT 41 + 1; EXECUTE q", "42"),
        // A temporary table shadows a permanent one of the same name, for the server and for
        // Vigil alike.
        (
            "CREATE TEMP TABLE patients (note text); INSERT INTO patients VALUES ('temp'); SELECT note FROM patients",
            "temp",
        ),
    ] {
        let (ok, out, err) = vigil.psql("etl", &token, sql);
        assert!(ok, "{sql}: {err}");
        assert_eq!(out.lines().last(), Some(expected), "{sql}: {out}");
    }
    // Still refused: a column the text's own table does not have, and a name created only
    // later in the text.
    for sql in [
        "CREATE TABLE t3 (a int); SELECT nope FROM t3",
        "SELECT a FROM t4; CREATE TABLE t4 (a int)",
    ] {
        let (ok, _, err) = vigil.psql("etl", &token, sql);
        assert!(!ok, "{sql} ran");
        assert!(err.contains("does not exist"), "{sql}: {err}");
    }
    // A denied column stays denied through a table the text creates and fills from it.
    let narrow = cfg.create_token("narrow");
    let (ok, _, err) = vigil.psql(
        "narrow",
        &narrow,
        "CREATE TEMP TABLE copy (s text); INSERT INTO copy SELECT ssn FROM patients; SELECT s FROM copy",
    );
    assert!(!ok && err.contains("column ssn"), "{err}");
    let (ok, out, err) = vigil.psql(
        "narrow",
        &narrow,
        "CREATE TEMP TABLE names (n text); INSERT INTO names SELECT name FROM patients; SELECT n FROM names",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Ann");
    // The server never saw the refused texts (nothing was created by them).
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_class WHERE relname IN ('t3', 't4')"
        )
        .trim(),
        "0"
    );
}

#[test]
fn an_unknown_name_is_reported_where_postgresql_reports_it() {
    let (_pg, _cfg, vigil, token) = setup();
    let mut c = RawClient::connect(vigil.port, "etl", &token, "positions");
    for (sql, code, position) in [
        ("SELECT * FROM _nonexistent_", "42P01", "15"),
        (
            "SELECT 'x _nonexistent_', * FROM\n  _nonexistent_",
            "42P01",
            "36",
        ),
        ("SELECT nope FROM patients", "42703", "8"),
        ("SELECT 1; SELECT * FROM Missing_Table", "42P01", "25"),
    ] {
        let r = c.simple(sql);
        let e = &r.errors()[0];
        assert_eq!(e.code, code, "{sql}");
        let got = e
            .all
            .iter()
            .find(|(t, _)| *t == b'P')
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(position), "{sql}");
    }
}
