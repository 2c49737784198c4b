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

/// A client may start its session with a statement_timeout shorter than Vigil's own read of the
/// catalog (node-postgres's `statement_timeout` option; its tests use 10 ms). The read is Vigil's,
/// not the client's: the session opens, with the client's setting in force and as the value
/// RESET returns to. Was: the read was cancelled and the session refused ("Vigil could not read
/// the database catalog").
#[test]
fn a_short_statement_timeout_at_startup_does_not_cut_vigils_catalog_read() {
    let (pg, _cfg, vigil, token) = setup();
    // Enough relations that reading them takes well over the client's timeout.
    let tables: String = (0..400)
        .map(|i| format!("CREATE TABLE t{i} (a int PRIMARY KEY, b text, c date, d numeric);"))
        .collect();
    pg.sql("postgres", &tables);
    let mut c = RawClient::connect_with(
        vigil.port,
        &[
            ("user", "etl"),
            ("database", "ehr"),
            ("statement_timeout", "5"),
        ],
        &token,
    )
    .unwrap_or_else(|e| panic!("login refused: {} {}", e.code, e.message));
    let show = |c: &mut RawClient| c.simple("SHOW statement_timeout").rows()[0][0].clone();
    assert_eq!(show(&mut c).as_deref(), Some("5ms"));
    let r = c.simple("SELECT pg_sleep(0.5)");
    assert_eq!(r.error_code().as_deref(), Some("57014"), "{r:?}");
    assert!(c.simple("SET statement_timeout = 0").errors().is_empty());
    assert!(c.simple("RESET statement_timeout").errors().is_empty());
    assert_eq!(show(&mut c).as_deref(), Some("5ms"));
}

/// Vigil reads the catalog again after a statement that may change it or the search path; a
/// session's statement_timeout shorter than that read (as node-postgres's option sets it) must
/// neither cut it between transactions nor, where it does cut it (statements in flight), leave
/// Vigil checking statements against the catalog as it was. Was a bypass: the read was
/// cancelled, Vigil kept the search path it knew, took `notes` for public.notes (granted) and
/// the server read private.notes.
#[test]
fn a_catalog_read_cut_by_statement_timeout_never_decides_on_the_old_catalog() {
    let pg = PgCluster::start();
    // Enough relations that reading them takes well over the session's timeout.
    let tables: String = (0..400)
        .map(|i| format!("CREATE TABLE t{i} (a int PRIMARY KEY, b text, c date, d numeric);"))
        .collect();
    pg.sql("postgres", &tables);
    pg.sql(
        "postgres",
        "CREATE TABLE public.notes (body text); INSERT INTO public.notes VALUES ('public note');
         CREATE SCHEMA private; CREATE TABLE private.notes (body text);
         INSERT INTO private.notes VALUES ('PRIVATE NOTE')",
    );
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![(
        "pathy".into(),
        "connections = [\"ehr\"]\ngroups = [\"pathy\"]".into(),
    )];
    cfg.policies = r#"
[[policies]]
name = "pathy"
groups = ["pathy"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session"]
relations = ["public.*"]
allow = ["set_search_path"]
"#
    .into();
    let token = cfg.create_token("pathy");
    let vigil = Vigil::start(&cfg);
    let ok = |r: &Reply| assert!(r.errors().is_empty(), "{r:?}");
    let never_private = |r: &Reply, case: &str| {
        assert!(
            !r.contains("PRIVATE NOTE"),
            "{case}: private.notes was read: {r:?}"
        );
    };

    // Between transactions, nothing in flight: the read is not cut; `notes` is private.notes.
    let mut c = RawClient::connect(vigil.port, "pathy", &token, "idle");
    ok(&c.simple("SET statement_timeout = 5"));
    ok(&c.simple("SET search_path = private, public"));
    let r = c.simple("SELECT body FROM notes");
    never_private(&r, "idle");
    assert_eq!(r.error_code().as_deref(), Some("42501"), "{r:?}");
    let r = c.simple("SELECT body FROM public.notes");
    ok(&r);
    assert_eq!(r.rows(), vec![vec![Some("public note".to_string())]]);

    // The SET still in flight when the SELECT comes: the read is the client's to bound, and
    // what it cut refuses the statement (or, read in time, the grant does).
    let mut c = RawClient::connect(vigil.port, "pathy", &token, "in-flight");
    ok(&c.simple("SET statement_timeout = 5"));
    c.send(
        &[
            query("SET search_path = private, public"),
            query("SELECT body FROM notes"),
        ]
        .concat(),
    );
    ok(&c.ready());
    let r = c.ready();
    never_private(&r, "in flight");
    let code = r.error_code();
    assert!(
        matches!(code.as_deref(), Some("55000" | "42501")),
        "in flight: {r:?}"
    );
    // The next statement reads the catalog again (nothing in flight now: not cut).
    let r = c.simple("SELECT body FROM notes");
    never_private(&r, "after");
    assert_eq!(r.error_code().as_deref(), Some("42501"), "{r:?}");
    ok(&c.simple("SELECT body FROM public.notes"));
}
