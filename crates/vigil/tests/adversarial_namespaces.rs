//! Adversarial corpus, namespace confusion: PostgreSQL keeps one namespace of prepared
//! statements per session (Parse and SQL `PREPARE`), and one of portals (Bind and SQL
//! `DECLARE`). Each case tries to make Vigil decide on one text while the server runs
//! another: names reused across protocol levels, failed `PREPARE`s, `DEALLOCATE`/`DISCARD`,
//! cursors that outlive (or not) their transaction, cursors opened by functions, pipelined
//! texts that rely on each other, names Vigil cannot read, and rows sent without a
//! RowDescription. Every case runs through the real gateway against a real server; refused
//! texts carry a marker that must never appear in the server's `log_statement = all` log, and
//! at the end every execution the server logged must have its start record with the text the
//! server ran (the prepared text for `EXECUTE`).

mod support;

use support::raw::*;
use support::serverlog;
use support::*;

const SCHEMA: &str = "CREATE TABLE patients (id int PRIMARY KEY, first_name text, ssn text UNIQUE);
INSERT INTO patients VALUES (1, 'Ada', '123-45-6789'), (2, 'Ben', '345-67-8901'), (3, 'Cy', '456-78-9012');
CREATE FUNCTION open_leak() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'leak';
BEGIN OPEN c FOR SELECT ssn FROM patients; RETURN c; END $$;";

const CLEAR: [&str; 3] = ["123-45-6789", "345-67-8901", "456-78-9012"];

const POLICIES: &str = r#"
[[policies]]
name = "app"
groups = ["apps"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session", "ddl"]
relations = ["public.patients", "pg_temp*.*"]

[[policies]]
name = "analyst"
groups = ["analysts"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["public.patients"]
deny_columns = { "public.patients" = ["ssn"] }
functions = ["open_leak"]
read_only = true

[masking]
hmac_key = "env:VIGIL_TEST_MASK_KEY"

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[[masking.rules]]
name = "names"
columns = ["patients.first_name"]
entity = "person_name"
operator = "redact"
"#;

struct Setup {
    pg: PgCluster,
    cfg: VigilConfig,
    vigil: Vigil,
    app: String,
    analyst: String,
}

fn setup() -> Setup {
    let pg = PgCluster::start_with(serverlog::LOG_SETTINGS);
    pg.sql("postgres", SCHEMA);
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        (
            "app".into(),
            "connections = [\"ehr\"]\ngroups = [\"apps\"]".into(),
        ),
        (
            "analyst".into(),
            "connections = [\"ehr\"]\ngroups = [\"analysts\"]".into(),
        ),
    ];
    cfg.policies = POLICIES.to_string();
    let app = cfg.create_token("app");
    let analyst = cfg.create_token("analyst");
    let vigil = Vigil::start_with_env(
        &cfg,
        &[(
            "VIGIL_TEST_MASK_KEY",
            "adversarial-mask-key-0123456789abcdef0123",
        )],
    );
    Setup {
        pg,
        cfg,
        vigil,
        app,
        analyst,
    }
}

/// No clear SSN reached the client.
fn assert_masked(reply: &Reply, case: &str) {
    for ssn in CLEAR {
        assert!(!reply.contains(ssn), "{case}: clear {ssn} in {reply:?}");
    }
}

fn assert_refused(reply: &Reply, code: &str, case: &str) {
    assert_eq!(
        reply.error_code().as_deref(),
        Some(code),
        "{case}: {:?}",
        reply.errors()
    );
}

fn assert_ok(reply: &Reply, case: &str) {
    assert!(reply.errors().is_empty(), "{case}: {:?}", reply.errors());
}

/// Markers of texts Vigil refused: none may appear in the server's log.
fn assert_never_ran(pg: &PgCluster, markers: &[&str]) {
    let log = pg.log();
    for m in markers {
        assert!(
            !log.contains(m),
            "the server ran a refused text (marker {m}):\n{}",
            log.lines()
                .filter(|l| l.contains(m))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn one_namespace_for_parse_and_prepare() {
    let s = setup();
    let port = s.vigil.port;

    // The issue's attack: a refused text parsed under a name, then `PREPARE` of the same name
    // (which the server refuses with 42P05 if the name exists), then `EXECUTE`. Refused at
    // Parse now, so the name never holds it.
    let mut c = RawClient::connect(port, "analyst", &s.analyst, "adv-ns-analyst");
    let r = c.round(
        &[
            parse(b"n1", "SELECT ssn FROM patients /* m-ns1-refused */"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_refused(&r[0], "42501", "refused text at Parse");
    let r = c.simple("PREPARE n1 AS SELECT 1 AS one");
    assert_ok(&r, "PREPARE of the name the refused Parse tried");
    let r = c.simple("EXECUTE n1");
    assert_ok(&r, "EXECUTE n1");
    assert_eq!(r.rows(), vec![vec![Some("1".to_string())]]);
    // The same through `SET` (read-only lifted) and a write: refused at Parse, never run.
    for (i, text) in [
        "SET default_transaction_read_only = off /* m-ns1b-refused */",
        "UPDATE patients SET first_name = 'x' WHERE id = 1 /* m-ns1c-refused */",
        "CREATE TEMP TABLE t AS SELECT * FROM patients /* m-ns1d-refused */",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("w{i}");
        let r = c.round(&[parse(name.as_bytes(), text), sync()].concat(), 1);
        assert!(r[0].error_code().is_some(), "{text}: {:?}", r[0]);
        let r = c.simple(&format!("PREPARE {name} AS SELECT 2"));
        assert_ok(&r, "PREPARE after refused Parse");
        let r = c.simple(&format!("EXECUTE {name}"));
        assert_eq!(r.rows(), vec![vec![Some("2".to_string())]], "{text}");
    }
    // An unnamed statement refused at Parse leaves none behind: the Bind that follows it in a
    // later segment must not run the previous unnamed statement.
    let r = c.round(
        &[
            parse(b"", "SELECT id FROM patients WHERE id = 3 /* m-ns1e-old */"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "unnamed Parse");
    let r = c.round(
        &[
            parse(b"", "SELECT ssn FROM patients /* m-ns1e-refused */"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_refused(&r[0], "42501", "refused unnamed Parse");
    let r = c.round(
        &[bind(b"", b"", &[], &[]), execute(b"", 0), sync()].concat(),
        1,
    );
    assert_refused(
        &r[0],
        "26000",
        "Bind of the unnamed statement after a refused Parse",
    );
    drop(c);

    // A masked identity: the refused text would reverse the SSN.
    let mut c = RawClient::connect(port, "app", &s.app, "adv-ns-app");
    let r = c.round(
        &[
            parse(
                b"n2",
                "SELECT reverse(ssn) FROM patients /* m-ns2-refused */",
            ),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_refused(&r[0], "42501", "derived use of a masked column at Parse");
    let r = c.simple("PREPARE n2 AS SELECT 2 AS two");
    assert_ok(&r, "PREPARE n2");
    assert_eq!(c.simple("EXECUTE n2").rows(), vec![vec![Some("2".into())]]);

    // A name taken by Parse: `PREPARE` of it fails on the server, and `EXECUTE` runs (and is
    // decided and recorded as) the Parse's text.
    let r = c.round(
        &[parse(b"n3", "SELECT id FROM patients WHERE id = 2"), sync()].concat(),
        1,
    );
    assert_ok(&r[0], "Parse n3");
    let r = c.simple("PREPARE n3 AS SELECT 3 AS three");
    assert_eq!(r.error_code().as_deref(), Some("42P05"), "{:?}", r.errors());
    let r = c.simple("EXECUTE n3");
    assert_ok(&r, "EXECUTE n3");
    assert_eq!(r.rows(), vec![vec![Some("2".into())]]);

    // Pipelined: the failing PREPARE and the EXECUTE in one write. The EXECUTE must wait for
    // the PREPARE's outcome (an error does not make the server skip the next query).
    let r = c.round(
        &[query("PREPARE n3 AS SELECT 4 AS four"), query("EXECUTE n3")].concat(),
        2,
    );
    assert_eq!(r[0].error_code().as_deref(), Some("42P05"));
    assert_eq!(r[1].rows(), vec![vec![Some("2".into())]]);

    // Parse at protocol level, run by SQL `EXECUTE` (refused before): allowed, masked.
    let r = c.round(
        &[
            parse(b"n4", "SELECT ssn FROM patients WHERE id = $1"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "Parse n4");
    let r = c.simple("EXECUTE n4(1)");
    assert_ok(&r, "EXECUTE n4(1)");
    assert_eq!(r.rows(), vec![vec![Some("***-**-6789".into())]]);
    assert_masked(&r, "EXECUTE of a Parse'd statement");

    // `PREPARE` then protocol Bind/Execute, with no Describe: masked all the same.
    assert_ok(
        &c.simple("PREPARE n5 AS SELECT ssn, first_name FROM patients WHERE id = $1"),
        "PREPARE n5",
    );
    let r = c.round(
        &[bind(b"", b"n5", &[Some("2")], &[]), execute(b"", 0), sync()].concat(),
        1,
    );
    assert_ok(&r[0], "Bind/Execute of n5");
    assert_eq!(
        r[0].rows(),
        vec![vec![
            Some("***-**-8901".into()),
            Some("[REDACTED:person_name]".into())
        ]]
    );
    // Binary results, still without a Describe.
    let r = c.round(
        &[
            bind(b"", b"n5", &[Some("3")], &[1]),
            execute(b"", 0),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_masked(&r[0], "binary Execute without Describe");

    // One text that prepares and executes.
    let r = c.simple("PREPARE n6 AS SELECT $1::int + 1; EXECUTE n6(41)");
    assert_ok(&r, "PREPARE and EXECUTE in one text");
    assert_eq!(r.rows(), vec![vec![Some("42".into())]]);

    // What `EXECUTE` does with the result counts: into a table, the masked values would leave
    // unmasked. Parameters are expressions too.
    assert_ok(
        &c.simple("PREPARE n7 AS SELECT ssn FROM patients"),
        "PREPARE n7",
    );
    for (text, marker) in [
        (
            "CREATE TEMP TABLE leak1 AS EXECUTE n7 /* m-ns7a-refused */",
            "m-ns7a-refused",
        ),
        (
            "PREPARE n8 AS SELECT ssn FROM patients; CREATE TEMP TABLE leak2 AS EXECUTE n8 /* m-ns7b-refused */",
            "m-ns7b-refused",
        ),
        (
            "EXECUTE n6((SELECT length(ssn) FROM patients LIMIT 1)) /* m-ns7c-refused */",
            "m-ns7c-refused",
        ),
    ] {
        let r = c.simple(text);
        assert!(r.error_code().is_some(), "{text}: {r:?}");
        assert_never_ran(&s.pg, &[marker]);
    }

    // Explaining it shows a plan, not values: allowed, and decided on what it explains.
    let r = c.simple("EXPLAIN EXECUTE n7");
    assert_ok(&r, "EXPLAIN EXECUTE");
    assert_masked(&r, "EXPLAIN EXECUTE");

    // Names dropped by `DEALLOCATE`, `DEALLOCATE ALL` and `DISCARD ALL` are gone for both
    // protocol levels.
    assert_ok(&c.simple("DEALLOCATE n6"), "DEALLOCATE n6");
    assert_refused(
        &c.simple("EXECUTE n6(1)"),
        "26000",
        "EXECUTE after DEALLOCATE",
    );
    assert_ok(&c.simple("DEALLOCATE ALL"), "DEALLOCATE ALL");
    let r = c.round(
        &[bind(b"", b"n4", &[Some("1")], &[]), execute(b"", 0), sync()].concat(),
        1,
    );
    assert_refused(
        &r[0],
        "26000",
        "Bind of a Parse'd name after DEALLOCATE ALL",
    );
    assert_ok(&c.simple("PREPARE n9 AS SELECT 9"), "PREPARE n9");
    assert_ok(&c.simple("DISCARD ALL"), "DISCARD ALL");
    assert_refused(
        &c.simple("EXECUTE n9 /* m-ns9-refused */"),
        "26000",
        "EXECUTE after DISCARD ALL",
    );

    // A name Vigil cannot read: refused, not guessed at.
    let r = c.round(&[parse(b"\xff\xfe", "SELECT 1"), sync()].concat(), 1);
    assert_refused(&r[0], "42602", "a name that is not UTF-8");

    // A Describe, then the name closed and reused for another text: the Execute's rows are
    // read with the new text's description.
    let r = c.round(
        &[
            parse(b"s1", "SELECT id FROM patients WHERE id = 1"),
            describe_statement(b"s1"),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "Parse/Describe s1");
    let r = c.round(
        &[
            close_statement(b"s1"),
            parse(b"s1", "SELECT ssn FROM patients WHERE id = 1"),
            bind(b"", b"s1", &[], &[]),
            execute(b"", 0),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "reused name");
    assert_masked(&r[0], "a reused name executed without a Describe");
    drop(c);

    assert_never_ran(
        &s.pg,
        &[
            "m-ns1-refused",
            "m-ns1b-refused",
            "m-ns1c-refused",
            "m-ns1d-refused",
            "m-ns1e-refused",
            "m-ns1e-old",
            "m-ns2-refused",
            "m-ns9-refused",
        ],
    );

    // What ran is on record: for `EXECUTE`, the prepared text.
    let records = audit_records(&s.cfg.store_path());
    let executes: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "StatementStarted" && r["text"] == "EXECUTE n3")
        .collect();
    assert_eq!(executes.len(), 2, "{executes:?}");
    for e in executes {
        assert_eq!(
            e["executed"][0]["text"], "SELECT id FROM patients WHERE id = $1",
            "{e}"
        );
        assert_eq!(e["executed"][0]["kind"], "prepared_statement");
        assert_eq!(e["executed"][0]["name"], "n3");
    }
    // The statements export carries it.
    let out = s.cfg.cli(&["export", "statements", "--format", "jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = rows
        .iter()
        .find(|r| r["text"] == "EXECUTE n4($1)")
        .expect("the EXECUTE is exported");
    assert_eq!(
        row["executed_texts"],
        serde_json::json!(["n4: SELECT ssn FROM patients WHERE id = $1"])
    );
    let checked = serverlog::assert_every_execution_recorded(&s.pg.log(), &records, "adv-ns");
    assert!(checked >= 20, "only {checked} executions checked");
}

#[test]
fn cursors_are_followed_across_protocols_and_transactions() {
    let s = setup();
    let port = s.vigil.port;
    let mut c = RawClient::connect(port, "app", &s.app, "adv-cur-app");

    // A cursor fetched by SQL and by the extended protocol (no Describe): masked both ways.
    assert_ok(&c.simple("BEGIN"), "BEGIN");
    assert_ok(
        &c.simple("DECLARE c1 CURSOR FOR SELECT ssn FROM patients ORDER BY id"),
        "DECLARE",
    );
    let r = c.simple("FETCH 1 FROM c1");
    assert_eq!(r.rows(), vec![vec![Some("***-**-6789".into())]]);
    let r = c.round(
        &[
            parse(b"", "FETCH 1 FROM c1"),
            bind(b"", b"", &[], &[]),
            execute(b"", 0),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "FETCH over the extended protocol");
    assert_eq!(r[0].rows(), vec![vec![Some("***-**-8901".into())]]);
    // A portal bound by the protocol, fetched by SQL.
    let r = c.round(
        &[
            parse(b"q", "SELECT ssn FROM patients ORDER BY id"),
            bind(b"p1", b"q", &[], &[]),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_ok(&r[0], "Bind p1");
    let r = c.simple("FETCH ALL FROM p1");
    assert_ok(&r, "FETCH from a protocol portal");
    assert_eq!(r.rows().len(), 3);
    assert_masked(&r, "FETCH from a protocol portal");
    // A binary cursor's rows are binary even in a simple query.
    assert_ok(
        &c.simple("DECLARE c2 BINARY CURSOR FOR SELECT ssn, first_name FROM patients"),
        "DECLARE BINARY",
    );
    let r = c.simple("FETCH ALL c2");
    assert_ok(&r, "FETCH binary");
    assert_masked(&r, "binary cursor");
    assert!(!r.contains("Ada"), "{r:?}");
    assert_ok(&c.simple("COMMIT"), "COMMIT");
    // The transaction ended: the cursors are gone, for Vigil as for the server.
    assert_refused(
        &c.simple("FETCH 1 FROM c1 /* m-cur1-refused */"),
        "34000",
        "FETCH after COMMIT",
    );

    // WITH HOLD: kept when its transaction commits, not when it rolls back.
    assert_ok(
        &c.simple("DECLARE c3 CURSOR WITH HOLD FOR SELECT id FROM patients ORDER BY id"),
        "DECLARE WITH HOLD",
    );
    assert_eq!(
        c.simple("FETCH 1 FROM c3").rows(),
        vec![vec![Some("1".into())]]
    );
    assert_ok(
        &c.simple("BEGIN; DECLARE c4 CURSOR WITH HOLD FOR SELECT id FROM patients; ROLLBACK"),
        "held cursor rolled back",
    );
    assert_refused(
        &c.simple("FETCH 1 FROM c4 /* m-cur4-refused */"),
        "34000",
        "FETCH of a held cursor whose transaction rolled back",
    );
    assert_ok(&c.simple("CLOSE c3"), "CLOSE c3");
    assert_refused(
        &c.simple("FETCH 1 FROM c3 /* m-cur3-refused */"),
        "34000",
        "FETCH after CLOSE",
    );
    drop(c);

    // A cursor opened by a function (allowed by name) is not one Vigil knows: refused.
    let mut c = RawClient::connect(port, "analyst", &s.analyst, "adv-cur-analyst");
    assert_ok(&c.simple("BEGIN"), "BEGIN");
    let r = c.simple("SELECT open_leak()");
    assert_ok(&r, "the function runs");
    assert_refused(
        &c.simple("FETCH ALL FROM leak /* m-cur-leak-refused */"),
        "34000",
        "FETCH of a cursor a function opened",
    );
    // A cursor over a denied column cannot be declared in the first place.
    assert_ok(&c.simple("ROLLBACK"), "ROLLBACK");
    let r = c.simple("BEGIN; DECLARE c5 CURSOR FOR SELECT ssn FROM patients /* m-cur5-refused */");
    assert_refused(&r, "42501", "DECLARE of a denied column");
    drop(c);

    assert_never_ran(
        &s.pg,
        &[
            "m-cur1-refused",
            "m-cur3-refused",
            "m-cur4-refused",
            "m-cur-leak-refused",
            "m-cur5-refused",
        ],
    );
    let records = audit_records(&s.cfg.store_path());
    let fetch = records
        .iter()
        .find(|r| r["type"] == "StatementStarted" && r["text"] == "FETCH ALL FROM p1")
        .expect("the FETCH is recorded");
    assert_eq!(fetch["executed"][0]["kind"], "portal", "{fetch}");
    assert_eq!(
        fetch["executed"][0]["text"], "SELECT ssn FROM patients ORDER BY id",
        "{fetch}"
    );
    let checked = serverlog::assert_every_execution_recorded(&s.pg.log(), &records, "adv-cur");
    assert!(checked >= 10, "only {checked} executions checked");
}
