//! Adversarial corpus, settings and limits as a red team attacked them (after
//! `adversarial_limits.rs` was written): each `closed_*` test is a bypass that worked against
//! the first version of the limits — a vertical tab in `options` (split by the server, not by
//! Vigil), half a millisecond (rounded to 0 by the server, to 1 by Vigil), backends left
//! running by clients that vanished mid-statement, a transaction held open without a Sync past
//! the idle bound, extension settings that switch off auditing — and each `held_*` test is an
//! attack the limits withstood.

mod support;

use std::time::{Duration, Instant};
use support::raw::*;
use support::serverlog::LOG_SETTINGS;
use support::*;

fn login(port: u16, user: &str, token: &str, extra: &[(&str, &str)]) -> Result<RawClient, String> {
    let mut params = vec![
        ("user", user),
        ("database", "ehr"),
        ("application_name", "redteam"),
    ];
    params.extend_from_slice(extra);
    RawClient::connect_with(port, &params, token).map_err(|f| format!("{} {}", f.code, f.message))
}

fn show(c: &mut RawClient, setting: &str) -> String {
    let r = c.simple(&format!("SHOW {setting}"));
    assert!(r.errors().is_empty(), "SHOW {setting}: {:?}", r.errors());
    r.rows()[0][0].clone().unwrap()
}

const POLICIES: &str = r#"
[[policies]]
name = "bounded"
groups = ["bounded"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["*"]
statement_timeout = "1s"
idle_in_transaction_timeout = "2s"

[[policies]]
name = "bare"
groups = ["bare"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["public.items"]

[[policies]]
name = "capped"
groups = ["capped"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session", "transaction"]
relations = ["public.items"]
max_sessions = 1
"#;

struct Setup {
    pg: PgCluster,
    cfg: VigilConfig,
    vigil: Vigil,
    bounded: String,
    bare: String,
    capped: String,
}

fn setup(pg_settings: &[&str]) -> Setup {
    let pg = PgCluster::start_with(pg_settings);
    pg.sql("postgres", "CREATE TABLE items (id int PRIMARY KEY)");
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = ["bounded", "bare", "capped"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                format!("connections = [\"ehr\"]\ngroups = [\"{n}\"]"),
            )
        })
        .collect();
    cfg.policies = POLICIES.into();
    let bounded = cfg.create_token("bounded");
    let bare = cfg.create_token("bare");
    let capped = cfg.create_token("capped");
    let vigil = Vigil::start(&cfg);
    Setup {
        pg,
        cfg,
        vigil,
        bounded,
        bare,
        capped,
    }
}

/// Was a bypass (critical). `options` is split by Vigil on Rust's ASCII whitespace (no vertical tab,
/// 0x0B) but by PostgreSQL on C `isspace()` (which includes 0x0B). A value that Vigil reads as
/// one harmless `application_name` carries further `-c` switches that the server applies:
/// any setting, with no command class, no allowance, past every bound.
#[test]
fn closed_vertical_tab_in_options_smuggles_settings() {
    let s = setup(LOG_SETTINGS);
    let vt = '\u{b}';
    let mut smuggled: Vec<String> = Vec::new();

    // An identity with only the `read` class: no SET at all is allowed to it.
    let options = format!(
        "-c application_name=rt{vt}-c{vt}work_mem=77MB{vt}-c{vt}session_replication_role=replica"
    );
    match login(s.vigil.port, "bare", &s.bare, &[("options", &options)]) {
        Err(why) => assert!(why.starts_with("42501"), "{why}"),
        Ok(mut c) => {
            // `bare` may not SHOW (a session command); current_setting() is a read.
            let r = c.simple(
                "SELECT current_setting('work_mem'), current_setting('session_replication_role')",
            );
            assert!(r.errors().is_empty(), "{:?}", r.errors());
            let row = r.rows()[0].clone();
            let (work_mem, srr) = (row[0].clone().unwrap(), row[1].clone().unwrap());
            if work_mem == "77MB" || srr != "origin" {
                smuggled.push(format!(
                    "bare (read only, no `session` class): work_mem = {work_mem}, session_replication_role = {srr}"
                ));
            }
        }
    }

    // A bounded identity lifts its statement_timeout: a legitimate lower value keeps Vigil
    // from adding the bound as a parameter of its own, the smuggled one comes after it.
    let options =
        format!("-c statement_timeout=500 -c application_name=rt{vt}-c{vt}statement_timeout=0");
    match login(
        s.vigil.port,
        "bounded",
        &s.bounded,
        &[("options", &options)],
    ) {
        Err(why) => assert!(why.starts_with("42501"), "{why}"),
        Ok(mut c) => {
            let t = show(&mut c, "statement_timeout");
            let started = Instant::now();
            let r = c.simple("SELECT pg_sleep(3)");
            if r.errors().is_empty() || started.elapsed() >= Duration::from_secs(2) {
                smuggled.push(format!(
                    "bounded (statement_timeout 1s): statement_timeout = {t}, SELECT pg_sleep(3) ran {:?}",
                    started.elapsed()
                ));
            }
        }
    }
    assert!(
        smuggled.is_empty(),
        "settings smuggled through options: {smuggled:#?}"
    );
}

/// Was a bypass (critical). PostgreSQL rounds a duration with `rint()` (half to even): 0.5 ms is
/// 0, which switches statement_timeout off. Vigil rounds half away from zero (0.5 -> 1 ms) and
/// lets it pass as "lowered to 1 ms".
#[test]
fn closed_half_millisecond_switches_the_bound_off() {
    let s = setup(LOG_SETTINGS);
    let mut c = login(s.vigil.port, "bounded", &s.bounded, &[]).unwrap();
    assert_eq!(show(&mut c, "statement_timeout"), "1s");
    let mut lifted = Vec::new();
    for value in ["0.5", "'0.5'", "'.5'", "'500us'", "'0.0005s'", "'0.5ms'"] {
        let sql = format!("SET statement_timeout = {value}");
        let r = c.simple(&sql);
        if r.errors().is_empty() {
            let now = show(&mut c, "statement_timeout");
            if now == "0" {
                lifted.push(sql.clone());
            }
        }
        assert!(c.simple("RESET statement_timeout").errors().is_empty());
    }
    for value in ["0.5", "'500us'"] {
        let sql = format!("SET idle_in_transaction_session_timeout = {value}");
        if c.simple(&sql).errors().is_empty()
            && show(&mut c, "idle_in_transaction_session_timeout") == "0"
        {
            lifted.push(sql.clone());
        }
        assert!(c
            .simple("RESET idle_in_transaction_session_timeout")
            .errors()
            .is_empty());
    }
    // In a transaction too.
    assert!(c.simple("BEGIN").errors().is_empty());
    if c.simple("SET LOCAL statement_timeout = '500us'")
        .errors()
        .is_empty()
    {
        let started = Instant::now();
        let r = c.simple("SELECT pg_sleep(2)");
        if r.errors().is_empty() && started.elapsed() >= Duration::from_secs(2) {
            lifted.push("SET LOCAL statement_timeout = '500us'; SELECT pg_sleep(2) ran 2 s".into());
        }
    }
    let _ = c.simple("ROLLBACK");
    // And at startup.
    for extra in [
        ("statement_timeout", "0.5"),
        ("options", "-c statement_timeout=500us"),
    ] {
        if let Ok(mut c) = login(s.vigil.port, "bounded", &s.bounded, &[extra]) {
            if show(&mut c, "statement_timeout") == "0" {
                lifted.push(format!("startup {extra:?}"));
            }
        }
    }
    assert!(
        lifted.is_empty(),
        "the 1 s bound was switched off by: {lifted:#?}"
    );
}

/// Was a bypass (critical). A client that vanishes while its statement runs gives its slot back at
/// once, but Vigil's Terminate only reaches the server after the statement ends: the upstream
/// backend keeps running. Reconnecting and repeating holds more upstream backends than
/// `max_sessions` allows (the limit meant to stop one identity from taking every slot).
#[test]
fn closed_vanished_clients_leave_running_backends_behind() {
    let s = setup(&[]);
    for i in 0..4 {
        let mut c = eventually("a slot for capped", || {
            login(s.vigil.port, "capped", &s.capped, &[]).ok()
        });
        c.send(&query(&format!("SELECT pg_sleep(30) AS redteam_{i}")));
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let running: u32 = s
        .pg
        .sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30) AS redteam_%' AND state = 'active'",
        )
        .parse()
        .unwrap();
    assert!(
        running <= 1,
        "max_sessions = 1, yet {running} upstream backends of the identity run at once"
    );
}

/// Was a bypass (critical). PostgreSQL arms idle_in_transaction_session_timeout only when it sends
/// ReadyForQuery, and statement_timeout ends with each Execute. A client that opens a
/// transaction in the extended protocol and ends with Flush (never Sync) holds it — and its
/// locks — for as long as it likes; Vigil forwards Flush and has no timer of its own.
#[test]
fn closed_transaction_held_open_without_sync_outlives_the_idle_bound() {
    let s = setup(&[]);
    let mut c = login(s.vigil.port, "bounded", &s.bounded, &[]).unwrap();
    assert_eq!(show(&mut c, "idle_in_transaction_session_timeout"), "2s");
    for sql in ["BEGIN", "INSERT INTO items VALUES (1)"] {
        c.send(
            &[
                parse(b"", sql),
                bind(b"", b"", &[], &[]),
                execute(b"", 0),
                flush(),
            ]
            .concat(),
        );
        let r = c.until(b'C');
        assert!(r.errors().is_empty(), "{sql}: {:?}", r.errors());
    }
    // Three times the bound.
    std::thread::sleep(Duration::from_secs(6));
    let holding: u32 = s
        .pg
        .sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'redteam' AND backend_xid IS NOT NULL",
        )
        .parse()
        .unwrap();
    assert_eq!(
        holding, 0,
        "6 s after its last Execute, under a 2 s idle-in-transaction bound, the session still holds its open transaction (xid, row lock on items)"
    );
}

/// Was a bypass (lower). Settings of extensions are named `ext.name`: the protected list matches
/// whole names and the prefixes `log_`, `track_`…, so `pg_stat_statements.track = none`
/// (hides this session's statements from pg_stat_statements), `pgaudit.log = none` (switches
/// off pgaudit's record) or `auto_explain.log_min_duration` pass with the `session` class,
/// in the session and at startup.
#[test]
fn closed_extension_settings_that_hide_activity_are_not_protected() {
    let s = setup(&["shared_preload_libraries=pg_stat_statements"]);
    let mut c = login(s.vigil.port, "bounded", &s.bounded, &[]).unwrap();
    let mut passed = Vec::new();
    for sql in [
        "SET pg_stat_statements.track = 'none'",
        "SET pg_stat_statements.track_utility = off",
        "SET pgaudit.log = 'none'",
        "SET auto_explain.log_min_duration = -1",
    ] {
        if c.simple(sql).errors().is_empty() {
            passed.push(sql.to_string());
        }
    }
    if login(
        s.vigil.port,
        "bounded",
        &s.bounded,
        &[("options", "-c pg_stat_statements.track=none")],
    )
    .is_ok()
    {
        passed.push("startup -c pg_stat_statements.track=none".into());
    }
    assert!(
        passed.is_empty(),
        "settings that hide activity passed without set_protected_setting: {passed:#?}"
    );
}

/// What held.
#[test]
fn held_forms_that_vigil_refuses_or_reads_correctly() {
    let s = setup(LOG_SETTINGS);
    let mut c = login(s.vigil.port, "bounded", &s.bounded, &[]).unwrap();
    for sql in [
        "SET statement_timeout = '1e9'",
        "SET statement_timeout = ' 0'",
        "SET statement_timeout = '-0'",
        "SET statement_timeout = 'infinity'",
        "SET statement_timeout = 'inf'",
        "SET statement_timeout = '0x3e8'",
        "SET statement_timeout = '1e-3'",
        "SET statement_timeout = '99999999999999999999'",
        "SET statement_timeout = '1000.6'",
        "SET statement_timeout = '1 S'",
        "SET statement_timeout = 1, 2",
        "SET statement_timeout = E'0'",
        "SET statement_timeout = U&'\\0030'",
        "SET statement_timeout = $$0$$",
        "SET statement_timeout = $x$0$x$",
        "set STATEMENT_timeout to 0",
        "SET SESSION \"statement_timeout\" TO 0",
        "SET statement_timeout = 0::int",
        "SELECT set_config(name => 'statement_timeout', setting => '0', is_local => false)",
        "SELECT (pg_catalog.set_config)('statement_timeout', '0', false)",
        "CREATE AGGREGATE rt_agg(text, bool) (SFUNC = set_config, STYPE = text, INITCOND = 'statement_timeout')",
        "CREATE RULE rt_rule AS ON INSERT TO items DO ALSO UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'",
        "EXPLAIN ANALYZE UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'",
        "EXPLAIN (ANALYZE false) UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'",
        "UPDATE pg_catalog.pg_settings SET setting = '0' WHERE name = 'statement_timeout'",
        "UPDATE \"pg_settings\" SET setting = '0' WHERE name = 'statement_timeout'",
        "BEGIN; SET LOCAL statement_timeout = 0; COMMIT",
        "ALTER FUNCTION pg_sleep(float8) SET session_replication_role = replica",
        "ALTER ROLE CURRENT_USER SET session_replication_role = replica",
    ] {
        let r = c.simple(sql);
        assert!(!r.errors().is_empty(), "accepted: {sql}");
        let _ = c.simple("ROLLBACK");
        assert_eq!(show(&mut c, "statement_timeout"), "1s", "after {sql}");
    }
    // Octal (the server reads '010' as 8 ms) is refused rather than guessed at.
    assert_eq!(
        c.simple("SET statement_timeout = '010'").errors()[0].code,
        "42501"
    );
    assert_eq!(show(&mut c, "statement_timeout"), "1s");

    // A role setting does not beat the login value.
    assert!(c
        .simple("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        .errors()
        .is_empty());
    let mut d = login(s.vigil.port, "bounded", &s.bounded, &[]).unwrap();
    assert_eq!(show(&mut d, "statement_timeout"), "1s");
    assert!(d.simple("RESET ALL").errors().is_empty());
    assert_eq!(show(&mut d, "statement_timeout"), "1s");
    s.pg.sql("postgres", "ALTER ROLE postgres RESET statement_timeout");

    // Startup spellings that are refused.
    for extra in [
        ("options", "-c statement_timeout=0\t"),
        ("options", "-c\tstatement_timeout=0"),
        ("options", "-c statement_timeout=0\u{c}"),
        ("options", "-c statement\\_timeout=0"),
        ("options", "--statement-timeout=0.4"),
        ("options", "-c statement_timeout=1e9"),
        ("Statement_Timeout", "0"),
        ("options", "-c x=y -c Statement-Timeout=0"),
        ("options", "-c options=-c\\ statement_timeout=0"),
        ("options", "-c statement_timeout=500 -c statement_timeout=0"),
        ("statement_timeout ", "0"),
        ("options", "-- statement-timeout=0"),
        ("options", "-c application_name=a -B 100"),
        ("options", "-c application_name=a\\"),
    ] {
        if let Ok(mut c) = login(s.vigil.port, "bounded", &s.bounded, &[extra]) {
            let t = show(&mut c, "statement_timeout");
            assert!(t != "0" && t != "0s", "{extra:?}: statement_timeout {t}");
        }
    }

    // Many logins at once: never more than max_sessions.
    let port = s.vigil.port;
    let token = s.capped.clone();
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || login(port, "capped", &token, &[]).ok())
        })
        .collect();
    let held: Vec<RawClient> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(held.len(), 1);
    drop(held);
    let _ = &s.cfg;
}

/// Held: a duplicate `application_name` in the startup packet is recorded as the server
/// applies it.
#[test]
fn held_duplicate_application_name_same_in_audit_and_server() {
    let s = setup(&[]);
    let mut c = login(
        s.vigil.port,
        "capped",
        &s.capped,
        &[("application_name", "someone-else")],
    )
    .unwrap();
    let server = show(&mut c, "application_name");
    let recorded = eventually("a SessionStarted record", || {
        records_of(&s.cfg.store_path(), "SessionStarted")
            .last()
            .map(|r| {
                r["application_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    });
    assert_eq!(recorded, server, "the audit trail and the server disagree");
}
