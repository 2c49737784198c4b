//! Channels besides rows, tried as an attacker would, through the real gateway against real
//! PostgreSQL, in the simple protocol (psql) and the extended protocol (tokio-postgres):
//!
//! - **Errors and notices that echo stored values** (issue 11, item 3): a constraint's failing
//!   row (`UPDATE patients SET mrn = NULL …` gave whole rows, bare names included), unique,
//!   exclusion (another row's key) and foreign key details, data errors quoting a stored value,
//!   COPY's context, PL/pgSQL RAISE with DETAIL/HINT/TABLE, notices, dynamic SQL in CONTEXT.
//!   A protected session (masking rules or denied columns) gets none of the seeded values; a
//!   session with neither gets the server's errors exactly as a direct connection does.
//! - **Catalog side channels** (item 5): one identity reading another's statement text through
//!   `pg_stat_activity`, `pg_stat_get_activity`, the backend functions, `pg_locks`,
//!   `pg_stat_statements`, statistics values, credentials, and the ways around a list by name
//!   (quoting, qualification, LATERAL, `TABLE`, an operator bound to the function). Refused
//!   texts never reach the server (its `log_statement = all` log), while psql's `\d` family
//!   still works under `pg_catalog.*`. The live catalog is held against Vigil's list.

mod support;

use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const SCHEMA: &str = r#"
CREATE EXTENSION btree_gist;
CREATE TABLE patients (id int PRIMARY KEY, mrn text NOT NULL, first_name text, last_name text,
    phone text, ssn text UNIQUE, zip text CHECK (zip ~ '^[0-9]{5}$'),
    notes text CHECK (notes <> 'forbidden'), ward text, UNIQUE (ward, notes));
INSERT INTO patients VALUES
    (1, 'MRN0048291', 'Ada', 'Zyxwoth', '617 555 0142', '900-12-3456', '02139', 'n1', 'W1'),
    (2, 'MRN0048292', 'Ben', 'Quellbrandt', '212 555 0199', '900-65-4321', '02139', 'n2', 'W1');
CREATE TABLE encounters (id int PRIMARY KEY, patient_id int REFERENCES patients (id), note text);
INSERT INTO encounters VALUES (1, 1, 'follow-up');
CREATE TABLE rooms (room text, during tsrange, holder text,
    EXCLUDE USING gist (room WITH =, during WITH &&));
INSERT INTO rooms VALUES ('A', '[2031-01-01,2031-01-05)', 'Vorlathe');
CREATE TABLE lookup (code text PRIMARY KEY, label text NOT NULL);
-- Views the database owns: over another session's statements (a grant of public.* would allow
-- them unknowingly), through another view, and a harmless one.
CREATE VIEW activity AS SELECT pid, query FROM pg_stat_activity;
CREATE VIEW activity_again AS SELECT query FROM activity;
CREATE VIEW backends AS SELECT pg_stat_get_backend_activity(b) AS query FROM pg_stat_get_backend_idset() AS b;
CREATE VIEW patient_ids AS SELECT id FROM patients;
CREATE FUNCTION raise_detail(p int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s text; n text;
BEGIN
    SELECT ssn, last_name INTO s, n FROM patients WHERE id = p;
    RAISE EXCEPTION 'patient %', n USING DETAIL = 'ssn ' || s, HINT = 'ask ' || n,
        ERRCODE = '23505', TABLE = n, COLUMN = s;
END $$;
CREATE FUNCTION notice_row(p int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'row of %', (SELECT last_name FROM patients WHERE id = p)
        USING DETAIL = (SELECT ssn FROM patients WHERE id = p);
    RETURN 1;
END $$;
CREATE FUNCTION dyn_fail(p int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT 1/0 FROM patients WHERE last_name = %L',
        (SELECT last_name FROM patients WHERE id = p));
END $$;
"#;

/// Values seeded into the database that no client statement names: none may reach a
/// protected session. The two SSNs have area 900, which the SSN detector does not flag, and
/// the names are in no dictionary: only column rules or withholding keep them back.
const CANARIES: &[&str] = &[
    "Zyxwoth",
    "Quellbrandt",
    "900-12-3456",
    "900-65-4321",
    "MRN0048291",
    "617 555 0142",
    "02139",
    "2031-01-05",
    "Vorlathe",
];

const MASKING: &str = r#"
[masking]
hmac_key = "env:VIGIL_TEST_MASK_KEY"
exempt_identities = ["plain", "analyst", "monitor", "victim"]

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[[masking.rules]]
name = "names"
columns = ["patients.*name*", "rooms.holder"]
entity = "person_name"
operator = "redact"

[[masking.rules]]
name = "mrn"
columns = ["patients.mrn"]
entity = "mrn"
operator = { kind = "hmac", prefix = "mrn_", length = 12 }

[[masking.rules]]
name = "zip"
columns = ["patients.zip"]
entity = "zip"
operator = "generalize"

[[masking.rules]]
name = "phone"
columns = ["patients.phone"]
entity = "phone"
operator = { kind = "partial", keep = 4 }

[masking.detectors]
skip_columns = ["*.id"]
"#;

const POLICIES: &str = r#"
[[policies]]
name = "app"
identities = ["app", "plain", "victim"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function"]
relations = ["public.*", "pg_catalog.*", "information_schema.*"]
functions = ["raise_detail", "notice_row", "dyn_fail"]

[[policies]]
name = "analyst"
identities = ["analyst"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session"]
relations = ["public.*", "pg_catalog.*"]
deny_columns = { "public.patients" = ["ssn", "phone", "first_name", "last_name"] }

[[policies]]
name = "monitor"
identities = ["monitor"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["pg_catalog.*", "pg_catalog.pg_stat_activity"]
functions = ["pg_stat_get_activity"]
"#;

const MASK_KEY: &str = "test-masking-key-0123456789abcdef0123456789";
const IDENTITIES: &[&str] = &["app", "plain", "analyst", "monitor", "victim"];

fn has_pg_stat_statements() -> bool {
    std::path::Path::new(PG_BIN)
        .parent()
        .is_some_and(|p| p.join("lib/pg_stat_statements.so").exists())
}

struct Setup {
    pg: PgCluster,
    cfg: VigilConfig,
    vigil: Vigil,
    tokens: BTreeMap<&'static str, String>,
}

fn setup() -> Setup {
    let mut settings = vec!["log_statement=all"];
    if has_pg_stat_statements() {
        settings.push("shared_preload_libraries=pg_stat_statements");
    }
    let pg = PgCluster::start_with(&settings);
    pg.sql("postgres", SCHEMA);
    if has_pg_stat_statements() {
        pg.sql("postgres", "CREATE EXTENSION pg_stat_statements");
    }
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = IDENTITIES
        .iter()
        .map(|n| (n.to_string(), "connections = [\"ehr\"]\ngroups = []".into()))
        .collect();
    cfg.policies = POLICIES.to_string();
    cfg.extra = MASKING.to_string();
    let tokens = IDENTITIES
        .iter()
        .map(|n| (*n, cfg.create_token(n)))
        .collect();
    let vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_MASK_KEY", MASK_KEY)]);
    Setup {
        pg,
        cfg,
        vigil,
        tokens,
    }
}

/// psql, verbose errors (every field), the script on stdin: (stdout, stderr).
fn psql_script(port: u16, db: &str, user: &str, password: &str, script: &str) -> (String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "VERBOSITY=verbose",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-d", db, "-U", user])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client whose notices (and notifications) are collected as their Debug text.
async fn connect(conn_string: &str) -> (Client, std::sync::mpsc::Receiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(conn_string, NoTls).await.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(format!("{n:?}"));
                }
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(format!("{n:?}"));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, rx)
}

fn via(vigil: &Vigil, user: &str, token: &str) -> String {
    vigil.conn_string(user, token)
}

fn direct(pg: &PgCluster) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=postgres user=postgres password={UPSTREAM_PASSWORD}",
        pg.port
    )
}

/// The statement's error as tokio-postgres reports it (every field), or `"ok"`.
async fn error_of(client: &Client, sql: &str) -> String {
    match client.execute(sql, &[]).await {
        Ok(_) => "ok".into(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{db:?}"),
            None => format!("not a server error: {e}"),
        },
    }
}

/// Texts the server executed, from its `log_statement = all` log.
fn executed(pg: &PgCluster) -> String {
    pg.log()
        .lines()
        .filter(|l| l.contains("LOG:  statement: ") || l.contains("LOG:  execute "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_canary(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{what}: {c} reached the client:\n{text}");
    }
}

/// Statements that fail at the server with a message about stored rows; each leaves the data
/// as it was.
const FAILING: &[&str] = &[
    // 23502: the failing row, bare names and all.
    "UPDATE patients SET mrn = NULL WHERE id = 1",
    // 23514: the failing row (a check on a column no rule masks: one on a masked column is
    // refused before it runs, as a comparison with stored values).
    "UPDATE patients SET notes = 'forbidden' WHERE id = 1",
    // 23505: the key holds a stored value the statement does not name.
    "UPDATE patients SET notes = 'same'",
    // 23P01: another row's key.
    "INSERT INTO rooms VALUES ('A', '[2031-01-02,2031-01-03)', 'Someone')",
    // 23503: the key of the row being deleted.
    "DELETE FROM patients WHERE id = 1",
    // 22P02 at run time: a stored value quoted.
    "ALTER TABLE patients ALTER COLUMN ssn TYPE int USING ssn::int",
    // RAISE with DETAIL, HINT, TABLE and COLUMN from code the grant allows.
    "SELECT raise_detail(1)",
    // Dynamic SQL built from a value, in CONTEXT.
    "SELECT dyn_fail(1)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_notices_hold_row_values_back() {
    let s = setup();
    let (vigil, tokens) = (&s.vigil, &s.tokens);

    // --- simple protocol (psql), with a notice, COPY FROM's context and unprotected errors.
    let mut script: String = FAILING.iter().map(|q| format!("{q};\n")).collect();
    script.push_str("SELECT notice_row(2);\n");
    script.push_str("COPY patients (id, mrn, last_name) FROM STDIN;\nx7\tM7\tZorbakk\n\\.\n");
    script.push_str("COPY patients (id, mrn, last_name) FROM STDIN;\n8\t\\N\tZorbakk\n\\.\n");
    script.push_str("SELECT 'abc'::int;\n");
    script.push_str("INSERT INTO encounters VALUES (2, 999, 'x');\n");
    script.push_str("INSERT INTO lookup VALUES ('a', NULL);\n");
    let (out, err) = psql_script(vigil.port, "ehr", "app", &tokens["app"], &script);
    let text = format!("{out}{err}");
    assert_no_canary("psql as app", &text);
    assert!(!text.contains("Zorbakk"), "COPY data came back: {err}");
    for expected in [
        // The message and the constraint stay: what failed is still said.
        "null value in column \"mrn\" of relation \"patients\" violates not-null constraint",
        "DETAIL:  Failing row contains ([withheld by Vigil: row values of a table with masked or denied columns]).",
        "violates check constraint \"patients_notes_check\"",
        "DETAIL:  Key (ward, notes)=([withheld by Vigil",
        ") already exists.",
        "DETAIL:  Key (room, during)=([withheld by Vigil",
        "conflicts with existing key (room, during)=([withheld by Vigil",
        "DETAIL:  Key (id)=([withheld by Vigil",
        "is still referenced from table \"encounters\"",
        "ERROR:  22P02: [withheld by Vigil: a data error's text may quote a stored value",
        "ERROR:  23505: [withheld by Vigil: raised by database code",
        "TABLE NAME:  [withheld by Vigil: raised by database code",
        "ERROR:  22012: division by zero",
        "CONTEXT:  [context line withheld by Vigil: it may quote values]\nPL/pgSQL function dyn_fail(integer) line ",
        "NOTICE:  00000: [withheld by Vigil: raised by database code",
        "CONTEXT:  COPY patients, line 1, column id: [withheld by Vigil",
        "CONTEXT:  COPY patients, line 1: [withheld by Vigil",
        // Raised while parsing the client's own text: the server's words.
        "ERROR:  22P02: invalid input syntax for type integer: \"abc\"",
        // Tables without masked or denied columns: the detail as the server wrote it.
        "DETAIL:  Key (patient_id)=(999) is not present in table \"patients\".",
        "DETAIL:  Failing row contains (a, null).",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    // --- extended protocol (tokio-postgres): the same statements, every field.
    let (client, notices) = connect(&via(vigil, "app", &tokens["app"])).await;
    for sql in FAILING {
        let e = error_of(&client, sql).await;
        assert_ne!(e, "ok", "{sql}");
        assert_no_canary(sql, &e);
        assert!(e.contains("withheld by Vigil"), "{sql}: {e}");
    }
    let e = error_of(&client, "UPDATE patients SET mrn = NULL WHERE id = 1").await;
    assert!(
        e.contains("code: SqlState(E23502)") && e.contains("column: Some(\"mrn\")"),
        "{e}"
    );
    assert_eq!(
        client.execute("SELECT notice_row(1)", &[]).await.unwrap(),
        1
    );
    let notice = notices.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(notice.contains("raised by database code"), "{notice}");
    assert_no_canary("notice", &notice);
    // COPY FROM STDIN in the extended protocol.
    let sink = client
        .copy_in("COPY patients (id, mrn, last_name) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from_static(b"8\t\\N\tZorbakk\n"))
        .await
        .unwrap();
    let e = sink.finish().await.unwrap_err();
    let e = format!("{:?}", e.as_db_error().unwrap());
    assert!(
        !e.contains("Zorbakk") && e.contains("withheld by Vigil"),
        "{e}"
    );
    drop(client);

    // --- a session with denied columns and no masking: its own writes' failing rows.
    let (out, err) = psql_script(
        vigil.port,
        "ehr",
        "analyst",
        &tokens["analyst"],
        "UPDATE patients SET mrn = NULL WHERE id = 1;\nUPDATE patients SET notes = 'same';\n",
    );
    assert_no_canary("psql as analyst", &format!("{out}{err}"));
    assert!(
        err.contains("Failing row contains ([withheld by Vigil")
            && err.contains("Key (ward, notes)=([withheld by Vigil"),
        "{err}"
    );
    let (client, _) = connect(&via(vigil, "analyst", &tokens["analyst"])).await;
    let e = error_of(&client, "UPDATE patients SET mrn = NULL WHERE id = 1").await;
    assert_no_canary("analyst, extended", &e);
    assert!(e.contains("withheld by Vigil"), "{e}");
    drop(client);

    // The data is as it was.
    assert_eq!(
        s.pg.sql(
            "postgres",
            "SELECT count(*) FROM patients WHERE mrn IS NOT NULL AND zip = '02139'"
        ),
        "2"
    );
    // Evidence: what was withheld is counted under Vigil's reasons, and no value is recorded.
    let store = s.cfg.store_path();
    let withheld = eventually("MaskingApplied records of withheld error fields", || {
        let r = records_of(&store, "MaskingApplied");
        r.iter()
            .any(|r| r["rule"] == "vigil:raised_by_code")
            .then_some(r)
    });
    for rule in ["vigil:row_values", "vigil:data_error", "vigil:context"] {
        assert!(
            withheld.iter().any(|r| r["rule"] == rule
                && r["operator"] == "withheld"
                && r["statement_seq"].is_u64()),
            "{rule}: {withheld:?}"
        );
    }
    let all = serde_json::to_string(&audit_records(&store)).unwrap();
    assert_no_canary("the audit trail", &all);
    assert!(!all.contains("Zorbakk"));
}

/// A session with no masking and no denied columns gets the server's errors and notices as a
/// direct connection does: drivers' test suites compare error texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprotected_sessions_get_the_servers_errors_unchanged() {
    let s = setup();
    let mut statements: Vec<&str> = FAILING.to_vec();
    statements.extend([
        "SELECT 'abc'::int",
        "SELECT 1/0",
        "INSERT INTO encounters VALUES (2, 999, 'x')",
        "INSERT INTO lookup VALUES ('a', NULL)",
    ]);
    // psql: the whole verbose error text, a notice included.
    let mut script: String = statements.iter().map(|q| format!("{q};\n")).collect();
    script.push_str("SELECT notice_row(2);\n");
    let through = psql_script(s.vigil.port, "ehr", "plain", &s.tokens["plain"], &script);
    let straight = psql_script(
        s.pg.port,
        "postgres",
        "postgres",
        UPSTREAM_PASSWORD,
        &script,
    );
    assert_eq!(through.1, straight.1, "psql's stderr differs");
    assert!(through.1.contains("Zyxwoth"), "{}", through.1);
    // tokio-postgres: every field of every error.
    let (via_vigil, notices_via) = connect(&via(&s.vigil, "plain", &s.tokens["plain"])).await;
    let (straight, notices_straight) = connect(&direct(&s.pg)).await;
    for sql in &statements {
        assert_eq!(
            error_of(&via_vigil, sql).await,
            error_of(&straight, sql).await,
            "{sql}"
        );
    }
    via_vigil
        .execute("SELECT notice_row(2)", &[])
        .await
        .unwrap();
    straight.execute("SELECT notice_row(2)", &[]).await.unwrap();
    assert_eq!(
        notices_via.recv_timeout(Duration::from_secs(5)).unwrap(),
        notices_straight
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_statements_stay_out_of_reach() {
    let s = setup();
    let (vigil, tokens) = (&s.vigil, &s.tokens);
    // The victim's last statement stays in the server's activity while its session idles.
    let (victim, _) = connect(&via(vigil, "victim", &tokens["victim"])).await;
    victim
        .simple_query("SELECT 'SECRET-4242' AS s")
        .await
        .unwrap();

    // Positive control: a grant that names the view and the function exactly sees it, so the
    // channel is real and the refusals below are what keeps it shut.
    let (monitor, _) = connect(&via(vigil, "monitor", &tokens["monitor"])).await;
    let rows = monitor
        .query("SELECT query FROM pg_stat_activity", &[])
        .await
        .unwrap();
    assert!(
        rows.iter().any(|r| r
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
            .contains("SECRET-4242")),
        "the monitor should see the victim's statement"
    );

    let mut attempts = vec![
        "SELECT query FROM pg_stat_activity",
        "SELECT query FROM pg_catalog.pg_stat_activity",
        "SELECT query FROM \"pg_catalog\".\"pg_stat_activity\"",
        "TABLE pg_stat_activity",
        "SELECT * FROM pg_stat_get_activity(NULL)",
        "SELECT query FROM pg_catalog.\"pg_stat_get_activity\"(NULL) AS a",
        "SELECT (pg_stat_get_activity(NULL)).query",
        "SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() AS b",
        "SELECT a FROM pg_stat_get_backend_idset() AS b, LATERAL pg_stat_get_backend_activity(b) AS a",
        "SELECT a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid",
        "SELECT l.pid, c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation",
        "SELECT pg_blocking_pids(pg_backend_pid())",
        "SELECT * FROM pg_lock_status()",
        "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'patients'",
        "SELECT stavalues1::text FROM pg_statistic",
        "SELECT rolpassword FROM pg_authid",
        "SELECT passwd FROM pg_shadow",
        "SELECT * FROM pg_file_settings",
        "SELECT * FROM pg_hba_file_rules",
        "SELECT option_value FROM information_schema.user_mapping_options",
        "SELECT pg_read_file_old('postgresql.conf', 0, 100)",
        "SELECT pg_current_logfile()",
        // An operator bound to the function calls it without naming it again.
        "CREATE OPERATOR ### (RIGHTARG = int4, FUNCTION = pg_stat_get_backend_activity)",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%SECRET%')",
        // Views of the database over them, which `public.*` matches.
        "SELECT query FROM activity",
        "SELECT query FROM public.activity_again",
        "SELECT query FROM backends",
        "CREATE VIEW mine AS SELECT query FROM pg_stat_activity",
    ];
    if has_pg_stat_statements() {
        attempts.extend([
            "SELECT query FROM pg_stat_statements",
            "SELECT query FROM public.pg_stat_statements(true)",
        ]);
    }
    let (app, _) = connect(&via(vigil, "app", &tokens["app"])).await;
    let mut failures = Vec::new();
    for (i, sql) in attempts.iter().enumerate() {
        for extended in [false, true] {
            let marked = format!("{sql} /* side-{i}-{extended} */");
            let result = if extended {
                app.query(&marked, &[]).await.map(|r| r.len())
            } else {
                app.simple_query(&marked).await.map(|r| r.len())
            };
            match result {
                // Not the rows: they are what must not leave.
                Ok(n) => failures.push(format!("allowed ({n} messages): {sql}")),
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string());
                    if code.as_deref() != Some("42501") {
                        failures.push(format!("{sql}: {e:?}"));
                    }
                    if format!("{e:?}").contains("SECRET-4242") {
                        failures.push(format!("{sql} leaked in its error"));
                    }
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = executed(&s.pg);
    for (i, sql) in attempts.iter().enumerate() {
        for extended in [false, true] {
            if log.contains(&format!("side-{i}-{extended} ")) {
                failures.push(format!("REFUSED BUT EXECUTED: {sql}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A view over nothing sensitive is a relation like any other.
    assert_eq!(
        app.query("SELECT id FROM patient_ids", &[])
            .await
            .unwrap()
            .len(),
        2
    );

    // The same grant still lets psql describe the database.
    for command in [
        "\\d",
        "\\dt",
        "\\l",
        "\\d patients",
        "\\dn",
        "\\df",
        "\\du",
        "\\dv",
    ] {
        let (ok, out, err) = vigil.psql("app", &tokens["app"], command);
        assert!(ok, "{command}: {err}");
        assert!(!err.contains("refused"), "{command}: {err}");
        if command == "\\d patients" {
            assert!(out.contains("last_name"), "{out}");
        }
    }
    drop(victim);
}

/// Every `pg_*` function and every relation of a live PostgreSQL's catalog, and every function of
/// the extensions that read raw data or other sessions, is on Vigil's list (sensitive or
/// reviewed): a PostgreSQL that adds one fails this test instead of silently opening it.
#[test]
fn every_catalog_function_and_relation_is_reviewed() {
    use vigil_sql::access::exposure::{function_risk, in_function_family, relation_risk};
    use vigil_sql::FunctionRisk;
    let pg = PgCluster::start();
    let mut extensions = vec!["pageinspect", "pg_walinspect", "pgrowlocks"];
    if has_pg_stat_statements() {
        extensions.push("pg_stat_statements");
    }
    for e in &extensions {
        pg.sql("postgres", &format!("CREATE EXTENSION {e}"));
    }
    let mut unreviewed = Vec::new();
    let functions = pg.sql(
        "postgres",
        "SELECT DISTINCT proname FROM pg_proc \
         WHERE pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) \
         ORDER BY 1",
    );
    let mut family = 0;
    for name in functions.lines() {
        if in_function_family(name) {
            family += 1;
            if function_risk(name) == Some(FunctionRisk::Unreviewed) {
                unreviewed.push(format!("function {name}"));
            }
        }
    }
    assert!(family > 300, "only {family} pg_* functions");
    let extension_functions = pg.sql(
        "postgres",
        "SELECT DISTINCT p.proname FROM pg_proc p \
         JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' \
         JOIN pg_extension e ON e.oid = d.refobjid \
         WHERE e.extname IN ('pageinspect', 'pg_walinspect', 'pgrowlocks', 'pg_stat_statements') \
         ORDER BY 1",
    );
    for name in extension_functions.lines() {
        if function_risk(name).is_none_or(|r| r == FunctionRisk::Unreviewed) {
            unreviewed.push(format!("extension function {name}"));
        }
    }
    let relations = pg.sql(
        "postgres",
        "SELECT n.nspname || '.' || c.relname FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('pg_catalog', 'information_schema') \
           AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
    );
    let mut count = 0;
    for qualified in relations.lines() {
        count += 1;
        let (schema, name) = qualified.split_once('.').unwrap();
        if relation_risk(schema, name) == Some(FunctionRisk::Unreviewed) {
            unreviewed.push(format!("relation {qualified}"));
        }
    }
    assert!(count > 150, "only {count} catalog relations");
    // The named families the issue lists are all sensitive.
    for name in functions.lines().filter(|n| {
        n.starts_with("pg_stat_get_backend_")
            || n.starts_with("pg_ls_")
            || n.starts_with("pg_read_")
            || *n == "pg_stat_get_activity"
    }) {
        assert!(function_risk(name).is_some(), "{name}");
    }
    for view in [
        "pg_stat_activity",
        "pg_locks",
        "pg_stats",
        "pg_statistic",
        "pg_authid",
    ] {
        assert!(relation_risk("pg_catalog", view).is_some(), "{view}");
    }
    assert!(
        unreviewed.is_empty(),
        "not on Vigil's catalog list (crates/vigil-sql/src/access/exposure.rs):\n{}",
        unreviewed.join("\n")
    );
}
