//! Adversarial corpus, resource limits and startup parameters. One identity must not take every
//! upstream slot; a bound on statement time must hold whatever the identity sends (SET, SET
//! LOCAL, a quoted or upper-case name, set_config(), an UPDATE of pg_settings, RESET, startup
//! parameters); and a startup parameter must pass the policy of the SET it amounts to, in every
//! spelling PostgreSQL accepts (`-c`, `-cname`, `--name`, `--na-me`, a parameter of its own).
//! Through the real gateway against a real server whose log shows what it ran.

mod support;

use support::raw::*;
use support::serverlog::LOG_SETTINGS;
use support::*;

fn login(port: u16, user: &str, token: &str, extra: &[(&str, &str)]) -> Result<RawClient, String> {
    let mut params = vec![
        ("user", user),
        ("database", "ehr"),
        ("application_name", "adv-limits"),
    ];
    params.extend_from_slice(extra);
    RawClient::connect_with(port, &params, token).map_err(|f| format!("{} {}", f.code, f.message))
}

fn show(c: &mut RawClient, setting: &str) -> String {
    let r = c.simple(&format!("SHOW {setting}"));
    assert!(r.errors().is_empty(), "SHOW {setting}: {:?}", r.errors());
    r.rows()[0][0].clone().unwrap()
}

fn refusal(c: &mut RawClient, sql: &str) -> (String, String) {
    let r = c.simple(sql);
    let e = r.errors();
    assert_eq!(e.len(), 1, "{sql}: expected one refusal, got {e:?}");
    (e[0].code.clone(), e[0].message.clone())
}

#[test]
fn sessions_are_limited_per_identity_and_per_connection() {
    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.connection
        .push_str("max_sessions = 6\nmax_sessions_per_identity = 4\n");
    cfg.identities = vec![
        (
            "greedy".into(),
            "connections = [\"ehr\"]\ngroups = [\"greedy\"]".into(),
        ),
        (
            "other".into(),
            "connections = [\"ehr\"]\ngroups = [\"other\"]".into(),
        ),
    ];
    cfg.policies = r#"
[[policies]]
name = "greedy"
groups = ["greedy"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session"]
max_sessions = 3

[[policies]]
name = "other"
groups = ["other"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session"]
"#
    .into();
    let greedy = cfg.create_token("greedy");
    let other = cfg.create_token("other");
    let vigil = Vigil::start(&cfg);

    let mut held: Vec<RawClient> = (0..3)
        .map(|_| login(vigil.port, "greedy", &greedy, &[]).unwrap())
        .collect();
    let refused = login(vigil.port, "greedy", &greedy, &[])
        .err()
        .expect("a refusal");
    assert!(
        refused.starts_with("53300") && refused.contains("greedy"),
        "{refused}"
    );
    // The other identity is not locked out by greedy's sessions (its own limit is the
    // connection's per-identity one, 4)…
    let mut others: Vec<RawClient> = (0..3)
        .map(|_| login(vigil.port, "other", &other, &[]).unwrap())
        .collect();
    // …but the connection's own limit (6) holds for everyone.
    let refused = login(vigil.port, "other", &other, &[])
        .err()
        .expect("a refusal");
    assert!(
        refused.starts_with("53300") && refused.contains("connection \"ehr\""),
        "{refused}"
    );
    // The upstream never had more than the connection allows.
    let upstream: u32 = pg
        .sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'adv-limits'",
        )
        .trim()
        .parse()
        .unwrap();
    assert_eq!(upstream, 6);
    // A session that ends gives its slot back.
    held.pop();
    others.pop();
    let mut back = eventually("greedy's slot comes back", || {
        login(vigil.port, "greedy", &greedy, &[]).ok()
    });
    assert_eq!(show(&mut back, "application_name"), "adv-limits");
    eventually("two session_limit records", || {
        let refusals = records_of(&cfg.store_path(), "AuthFailed")
            .into_iter()
            .filter(|r| r["reason"] == "session_limit")
            .count();
        (refusals >= 2).then_some(())
    });
}

const BOUNDED: &str = r#"
[[policies]]
name = "bounded"
groups = ["bounded"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "ddl", "transaction", "session"]
relations = ["*"]
functions = ["set_config"]
statement_timeout = "1s"
idle_in_transaction_timeout = "2s"
"#;

#[test]
fn statement_time_is_bounded_and_cannot_be_lifted() {
    let pg = PgCluster::start_with(LOG_SETTINGS);
    pg.sql("postgres", "CREATE TABLE items (id int PRIMARY KEY)");
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![(
        "bounded".into(),
        "connections = [\"ehr\"]\ngroups = [\"bounded\"]".into(),
    )];
    cfg.policies = BOUNDED.into();
    let token = cfg.create_token("bounded");
    let vigil = Vigil::start(&cfg);

    let mut c = login(vigil.port, "bounded", &token, &[]).unwrap();
    assert_eq!(show(&mut c, "statement_timeout"), "1s");
    assert_eq!(show(&mut c, "idle_in_transaction_session_timeout"), "2s");
    let (code, message) = refusal(&mut c, "SELECT pg_sleep(3)");
    assert_eq!(code, "57014", "{message}");

    for sql in [
        "SET statement_timeout = 0",
        "SET statement_timeout = '10s'",
        "SET statement_timeout TO '1h'",
        "SET SESSION statement_timeout = 0",
        "SET \"Statement_Timeout\" = 0",
        "SET STATEMENT_TIMEOUT = 0",
        "SET statement_timeout = '0x0'",
        "SET statement_timeout = 0.2",
        "SET idle_in_transaction_session_timeout = 0",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT pg_catalog.set_config('statement_timeout', '0', false)",
        "UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'",
        "RESET ALL; SET statement_timeout = 0",
        "SELECT 1; SET statement_timeout = 0",
    ] {
        let (code, message) = refusal(&mut c, sql);
        assert_eq!(code, "42501", "{sql}: {message}");
        assert_eq!(show(&mut c, "statement_timeout"), "1s", "after {sql}");
    }
    // A view over pg_settings takes its update rule, so writing it is refused too.
    assert!(c
        .simple("CREATE TEMP VIEW knobs AS SELECT name, setting FROM pg_settings")
        .errors()
        .is_empty());
    for sql in [
        "UPDATE knobs SET setting = '0' WHERE name = 'statement_timeout'",
        "WITH k AS (UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout' RETURNING 1) SELECT * FROM k",
    ] {
        let (code, message) = refusal(&mut c, sql);
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(message.contains("changes settings without SET"), "{message}");
        assert_eq!(show(&mut c, "statement_timeout"), "1s", "after {sql}");
    }
    // Inside a transaction, SET LOCAL.
    assert!(c.simple("BEGIN").errors().is_empty());
    let (code, _) = refusal(&mut c, "SET LOCAL statement_timeout = 0");
    assert_eq!(code, "42501");
    assert!(c.simple("ROLLBACK").errors().is_empty());
    // The extended protocol: refused at Parse.
    let r = c.round(
        &[
            parse(b"s", "SET statement_timeout = 0"),
            bind(b"", b"s", &[], &[]),
            execute(b"", 0),
            sync(),
        ]
        .concat(),
        1,
    );
    assert_eq!(r[0].errors()[0].code, "42501");
    assert_eq!(show(&mut c, "statement_timeout"), "1s");

    // Lowering is fine, and RESET returns to the bound, not to "no bound".
    assert!(c
        .simple("SET statement_timeout = '500ms'")
        .errors()
        .is_empty());
    assert_eq!(show(&mut c, "statement_timeout"), "500ms");
    assert!(c.simple("RESET statement_timeout").errors().is_empty());
    assert_eq!(show(&mut c, "statement_timeout"), "1s");
    assert!(c.simple("SET statement_timeout = 200").errors().is_empty());
    assert!(c.simple("RESET ALL").errors().is_empty());
    assert_eq!(show(&mut c, "statement_timeout"), "1s");
    assert!(c.simple("DISCARD ALL").errors().is_empty());
    assert_eq!(show(&mut c, "statement_timeout"), "1s");

    // An idle transaction ends the session at its bound.
    assert!(c.simple("BEGIN").errors().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let r = c.simple("SELECT 1");
        r.errors().into_iter().map(|e| e.code).collect::<Vec<_>>()
    }));
    // Either the FATAL is read, or the connection closed under it.
    if let Ok(codes) = ended {
        assert!(codes.contains(&"25P03".to_string()), "{codes:?}");
    }

    // Startup parameters: a lifted bound is refused in every spelling; a lower one passes.
    for extra in [
        [("options", "-c statement_timeout=0")],
        [("options", "-cstatement_timeout=0")],
        [("options", "--statement-timeout=0")],
        [("options", "--statement_timeout=1h")],
        [("options", "-c Statement_Timeout=0")],
        [("statement_timeout", "0")],
        [("idle_in_transaction_session_timeout", "0")],
    ] {
        let refused = login(vigil.port, "bounded", &token, &extra)
            .err()
            .expect("a refusal");
        assert!(refused.starts_with("42501"), "{extra:?}: {refused}");
    }
    let mut lower = login(
        vigil.port,
        "bounded",
        &token,
        &[("statement_timeout", "200")],
    )
    .unwrap();
    assert_eq!(show(&mut lower, "statement_timeout"), "200ms");
    let mut lower = login(
        vigil.port,
        "bounded",
        &token,
        &[("options", "-c statement_timeout=300")],
    )
    .unwrap();
    assert_eq!(show(&mut lower, "statement_timeout"), "300ms");

    // The server never ran a refused change.
    let log = support::serverlog::without_vigils_own(&pg.log());
    for ran in [
        "statement_timeout = 0",
        "set_config(",
        "update pg_settings",
        "update knobs",
        "'0x0'",
    ] {
        assert!(
            !log.to_ascii_lowercase().contains(ran),
            "the server ran {ran:?}:\n{log}"
        );
    }
}

#[test]
fn startup_parameters_pass_the_policy_of_the_set_they_amount_to() {
    let pg = PgCluster::start_with(LOG_SETTINGS);
    pg.sql("postgres", "CREATE TABLE items (id int PRIMARY KEY)");
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = vec![
        (
            "narrow".into(),
            "connections = [\"ehr\"]\ngroups = [\"narrow\"]".into(),
        ),
        (
            "reader".into(),
            "connections = [\"ehr\"]\ngroups = [\"reader\"]".into(),
        ),
        (
            "bare".into(),
            "connections = [\"ehr\"]\ngroups = [\"bare\"]".into(),
        ),
    ];
    cfg.policies = r#"
[[policies]]
name = "narrow"
groups = ["narrow"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session"]
relations = ["public.items"]

[[policies]]
name = "reader"
groups = ["reader"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "session"]
relations = ["public.items"]
read_only = true

[[policies]]
name = "bare"
groups = ["bare"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["public.items"]
"#
    .into();
    let narrow = cfg.create_token("narrow");
    let reader = cfg.create_token("reader");
    let bare = cfg.create_token("bare");
    let vigil = Vigil::start(&cfg);

    let refused_for = |user: &str, token: &str, extra: &[(&str, &str)]| {
        login(vigil.port, user, token, extra).err()
    };
    for extra in [
        ("options", "-c search_path=pg_temp,public"),
        ("options", "--search-path=evil"),
        ("options", "-c Search_Path=evil"),
        ("search_path", "evil"),
        ("options", "-c role=postgres"),
        ("role", "postgres"),
        ("options", "-c session_authorization=postgres"),
        ("options", "-c session_replication_role=replica"),
        ("session_replication_role", "replica"),
        ("options", "-c row_security=off"),
        ("options", "-c log_statement=none"),
        ("options", "-c track_activities=off"),
        ("options", "-B 100"),
        ("options", "-d 5"),
        ("options", "-e"),
        ("options", "-c"),
        ("options", "-c noequals"),
        ("bad name", "x"),
    ] {
        let why = refused_for("narrow", &narrow, &[extra])
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        assert!(why.starts_with("42501"), "{extra:?}: {why}");
    }
    // A read-only grant: nothing at startup lifts the read-only mode.
    for extra in [
        ("options", "-c default_transaction_read_only=off"),
        ("default_transaction_read_only", "off"),
        ("options", "-c transaction_read_only=off"),
    ] {
        let why = refused_for("reader", &reader, &[extra])
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        assert!(why.starts_with("42501"), "{extra:?}: {why}");
    }
    // Each refusal is recorded, naming the setting, not its value.
    let records = eventually("a record of each refusal", || {
        let records: Vec<_> = records_of(&cfg.store_path(), "AuthFailed")
            .into_iter()
            .filter(|r| r["reason"] == "startup_setting_refused")
            .collect();
        (records.len() >= 21).then_some(records)
    });
    for r in &records {
        let text = r.to_string();
        assert!(
            !text.contains("pg_temp") && !text.contains("evil"),
            "{text}"
        );
    }

    // What a SET in the session may do, startup may do; client-interface settings always.
    let mut c = login(
        vigil.port,
        "narrow",
        &narrow,
        &[
            (
                "options",
                r"-c work_mem=8MB --DateStyle=German -c geqo_seed=0.5",
            ),
            ("TimeZone", "UTC"),
        ],
    )
    .unwrap();
    assert_eq!(show(&mut c, "work_mem"), "8MB");
    assert_eq!(show(&mut c, "DateStyle"), "German, DMY");
    assert_eq!(show(&mut c, "geqo_seed"), "0.5");
    // Protected settings are refused in the session too.
    for sql in [
        "SET session_replication_role = replica",
        "SET row_security = off",
        "SET log_statement = 'none'",
        "SET \"Session_Replication_Role\" = replica",
        "RESET session_replication_role",
    ] {
        let (code, message) = refusal(&mut c, sql);
        assert_eq!(code, "42501", "{sql}: {message}");
    }
    assert_eq!(show(&mut c, "session_replication_role"), "origin");
    let mut r = login(
        vigil.port,
        "reader",
        &reader,
        &[("options", "-c DateStyle=SQL"), ("client_encoding", "UTF8")],
    )
    .unwrap();
    assert_eq!(show(&mut r, "DateStyle"), "SQL, MDY");
    // The grant's read-only mode went upstream with it.
    assert_eq!(show(&mut r, "default_transaction_read_only"), "on");
    // A grant without the `session` class: only the client-interface settings pass.
    let why = refused_for("bare", &bare, &[("options", "-c work_mem=64MB")]).unwrap();
    assert!(why.starts_with("42501"), "{why}");
    let mut b = login(
        vigil.port,
        "bare",
        &bare,
        &[
            ("options", "-c DateStyle=ISO -c extra_float_digits=3"),
            ("client_encoding", "UTF8"),
            ("TimeZone", "UTC"),
        ],
    )
    .unwrap();
    assert!(b.simple("SELECT id FROM items").errors().is_empty());

    let log = pg.log();
    assert!(!log.contains("session_replication_role = replica"), "{log}");
    assert!(!log.contains("row_security = off"), "{log}");
}

fn thread_count(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc status")
}

/// Each login runs store and capture-file work on the blocking pool. With tokio's default bound
/// (512) a burst of clients left dozens of threads behind, each keeping its stack and allocator
/// caches: the gateway's memory followed the largest burst it ever saw. `blocking_threads`
/// bounds them, and the logins past the bound still succeed (they wait their turn).
#[test]
fn a_burst_of_logins_runs_on_a_bounded_pool_of_threads() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let pg = PgCluster::start();
    let mut cfg = VigilConfig::new(&pg);
    cfg.extra.push_str("[limits]\nblocking_threads = 4\n");
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    let pid = vigil.child.id();
    let before = thread_count(pid);

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(before));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(thread_count(pid), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let token = token.clone();
            let port = vigil.port;
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let mut c = login(port, "etl", &token, &[]).expect("login");
                    let r = c.simple("SELECT 1");
                    assert!(r.errors().is_empty(), "{:?}", r.errors());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= before + 4,
        "threads: {before} before the burst, {peak} at its peak (blocking_threads = 4)"
    );
    assert_eq!(records_of(&cfg.store_path(), "SessionStarted").len(), 144);
}
