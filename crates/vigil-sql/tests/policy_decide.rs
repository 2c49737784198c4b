//! Scopes and decisions over real analyses of statements against an EHR-shaped catalog.
//!
//! vigil-policy's tests over PostgreSQL's analyses: they live with the dialect, so that
//! vigil-policy depends on the neutral access model only (and never links libpg_query).

use std::sync::Arc;
use vigil_core::Timestamp;
use vigil_policy::{decide, AssumeBuiltins, Decision, Grant, GrantSource, Scope};
use vigil_sql::{Analyzer, CatalogRow, LexOptions, StaticCatalog};

fn catalog() -> StaticCatalog {
    let mut rows = Vec::new();
    let mut table = |oid: u32, schema: &str, name: &str, kind: char, cols: &[&str]| {
        for (i, c) in cols.iter().enumerate() {
            rows.push(CatalogRow::new(
                oid,
                schema,
                name,
                kind,
                Some((c.to_string(), i as i16 + 1)),
            ));
        }
    };
    table(
        16_001,
        "public",
        "patients",
        'r',
        &[
            "id",
            "mrn",
            "first_name",
            "last_name",
            "date_of_birth",
            "ssn",
            "phone",
            "email",
        ],
    );
    table(
        16_002,
        "public",
        "encounters",
        'r',
        &["id", "patient_id", "started_at", "kind", "notes"],
    );
    table(
        16_003,
        "public",
        "diagnoses",
        'r',
        &["id", "encounter_id", "icd10", "description"],
    );
    table(
        16_004,
        "billing",
        "claims",
        'r',
        &["id", "patient_id", "amount"],
    );
    StaticCatalog::from_rows(rows, vec!["pg_catalog".into(), "public".into()])
}

fn scope(toml_text: &str) -> Scope {
    let s: Scope = toml::from_str(toml_text).unwrap();
    s.validate().unwrap();
    s
}

const CLINICAL_READER: &str = r#"
commands = ["read", "transaction", "session"]
relations = ["public.encounters", "public.diagnoses", "public.patients"]
deny_columns = { "public.patients" = ["ssn", "phone", "email"] }
read_only = true
"#;

fn check(s: &Scope, sql: &str) -> Result<(), String> {
    let a = Analyzer::new(64).access(sql, LexOptions::default(), &catalog());
    s.check(&a, &AssumeBuiltins)
        .map_err(|d| format!("{}: {}", d.rule, d.reason))
}

#[test]
fn a_clinical_reader_scope() {
    let s = scope(CLINICAL_READER);
    for ok in [
        "SELECT e.kind, d.icd10 FROM encounters e JOIN diagnoses d ON d.encounter_id = e.id",
        "SELECT mrn, last_name FROM patients WHERE id = 7",
        "SELECT count(*) FROM patients",
        "BEGIN",
        "SET statement_timeout = '5s'",
        "SELECT upper(last_name) FROM patients ORDER BY date_of_birth",
    ] {
        assert_eq!(check(&s, ok), Ok(()), "{ok}");
    }
    for (bad, rule) in [
        ("SELECT * FROM patients", "column_denied"),
        (
            "SELECT mrn FROM patients WHERE ssn = '123-45-6789'",
            "column_denied",
        ),
        ("SELECT mrn FROM patients ORDER BY phone", "column_denied"),
        ("SELECT p FROM patients p", "column_denied"),
        ("SELECT * FROM billing.claims", "relation_not_allowed"),
        ("DELETE FROM encounters", "command_class"),
        ("UPDATE patients SET last_name = 'x'", "command_class"),
        ("DROP TABLE diagnoses", "command_class"),
        ("SELECT pg_read_file('/etc/passwd')", "function_denied"),
        ("SELECT * FROM nosuchtable", "unresolved"),
        ("SELEC 1", "unparseable"),
        ("SELECT 1; DELETE FROM encounters", "command_class"),
        ("SET ROLE postgres", "construct_denied"),
        ("DO $$ BEGIN PERFORM 1; END $$", "command_class"),
    ] {
        let got = check(&s, bad);
        assert!(
            matches!(&got, Err(e) if e.starts_with(rule)),
            "{bad}: expected {rule}, got {got:?}"
        );
    }
}

#[test]
fn read_only_wins_over_commands() {
    let s = scope(
        r#"
commands = ["read", "write"]
relations = ["*"]
read_only = true
"#,
    );
    assert!(check(&s, "SELECT 1").is_ok());
    assert!(check(&s, "INSERT INTO encounters (id) VALUES (1)")
        .unwrap_err()
        .starts_with("read_only"));
    assert!(check(&s, "SELECT * FROM encounters FOR UPDATE").is_err());
}

#[test]
fn a_read_only_grant_cannot_lift_the_upstream_read_only_mode() {
    let s = scope(
        r#"
commands = ["read", "transaction", "session"]
relations = ["*"]
read_only = true
"#,
    );
    for lifts in [
        "SET default_transaction_read_only = off",
        "SET SESSION default_transaction_read_only TO 'off'",
        "SET transaction_read_only = false",
        "BEGIN READ WRITE",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
        "BEGIN; SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    ] {
        let got = check(&s, lifts);
        assert!(
            got.as_ref().is_err_and(|e| e.starts_with("read_only")),
            "{lifts}: {got:?}"
        );
    }
    for fine in [
        "BEGIN",
        "BEGIN READ ONLY",
        "SHOW transaction_read_only",
        "SET application_name = 'x'",
    ] {
        assert!(check(&s, fine).is_ok(), "{fine}");
    }
}

#[test]
fn policy_check_lists_every_problem_with_its_field() {
    use vigil_policy::{check as check_policies, DeclaredIdentity, PolicyConfig, Severity};
    let text = r#"
[[policies]]
name = "p"
identities = ["analyst", "ghost"]
groups = ["nobody"]
connections = ["ehr", "billing"]
[policies.scope]
commands = ["read", "write"]
relations = ["claims_%", "public.patients"]
deny_columns = { "public.patient" = ["ssn"], "public.patients" = ["ssn"] }
functions = ["*.f"]
read_only = true
row_cap = 0
window = { timezone = "Mars/Base" }
"#;
    #[derive(serde::Deserialize)]
    struct File {
        policies: Vec<PolicyConfig>,
    }
    let file: File = toml::from_str(text).unwrap();
    let connections = vec!["ehr".to_string()];
    let identities = [DeclaredIdentity {
        name: "analyst",
        groups: &[],
        connections: &connections,
    }];
    let problems = check_policies(&file.policies, &identities, &["ehr"]);
    let found = |severity: Severity, field: &str, needle: &str| {
        problems.iter().any(|p| {
            p.severity == severity
                && p.field.as_deref() == Some(field)
                && p.message.contains(needle)
        })
    };
    assert!(
        found(Severity::Error, "identities", "ghost"),
        "{problems:#?}"
    );
    assert!(found(Severity::Warning, "identities", "billing"));
    assert!(found(Severity::Error, "groups", "nobody"));
    assert!(found(Severity::Error, "connections", "billing"));
    assert!(found(Severity::Error, "scope.functions", "*.f"));
    assert!(found(Severity::Error, "scope.row_cap", "at least 1"));
    assert!(found(Severity::Error, "scope.window.timezone", "Mars/Base"));
    assert!(found(Severity::Warning, "scope.relations", "claims_%"));
    assert!(found(Severity::Warning, "scope.read_only", "write"));
    assert!(found(
        Severity::Warning,
        "scope.deny_columns",
        "public.patient\""
    ));
    assert!(!found(
        Severity::Warning,
        "scope.deny_columns",
        "public.patients\""
    ));
}

#[test]
fn dangerous_functions_need_their_exact_name() {
    let wildcard = scope("commands = [\"read\"]\nrelations = [\"*\"]\nfunctions = [\"*\"]\n");
    assert!(check(&wildcard, "SELECT pg_read_file('x')")
        .unwrap_err()
        .starts_with("function_denied"));
    let named =
        scope("commands = [\"read\"]\nrelations = [\"*\"]\nfunctions = [\"pg_read_file\"]\n");
    assert!(check(&named, "SELECT pg_read_file('x')").is_ok());
}

#[test]
fn scope_digest_is_stable_and_sensitive() {
    let a = scope(CLINICAL_READER);
    let b = scope(CLINICAL_READER);
    assert_eq!(a.digest(), b.digest());
    let mut c = a.clone();
    c.read_only = false;
    assert_ne!(a.digest(), c.digest());
    let json: serde_json::Value = serde_json::from_str(&a.canonical_json()).unwrap();
    assert_eq!(json["deny_columns"]["public.patients"][0], "email");
}

fn grant(s: Scope, expires_at: Option<Timestamp>) -> Arc<Grant> {
    Arc::new(Grant {
        id: "g1".into(),
        identity: "etl".into(),
        connection: "ehr".into(),
        source: GrantSource::Policy,
        policy: Some("p".into()),
        scope_digest: s.digest(),
        scope: s,
        not_before: Timestamp::from_micros(0),
        expires_at,
        created_at: Timestamp::from_micros(0),
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        request_id: None,
    })
}

#[test]
fn decisions_over_grants() {
    let a = Analyzer::new(16).access(
        "SELECT mrn FROM patients",
        LexOptions::default(),
        &catalog(),
    );
    let now = Timestamp::now();
    let live = grant(scope(CLINICAL_READER), None);
    assert!(matches!(
        decide(std::slice::from_ref(&live), &a, &AssumeBuiltins, now),
        Decision::Allow(_)
    ));
    let expired = grant(
        scope(CLINICAL_READER),
        Some(Timestamp::from_micros(now.as_micros() - 1)),
    );
    match decide(&[expired], &a, &AssumeBuiltins, now) {
        Decision::Deny { denial, grant_id } => {
            assert_eq!(denial.rule, "grant_not_live");
            assert_eq!(grant_id.as_deref(), Some("g1"));
        }
        other => panic!("{other:?}"),
    }
    match decide(&[], &a, &AssumeBuiltins, now) {
        Decision::Deny { denial, .. } => assert_eq!(denial.rule, "no_grant"),
        other => panic!("{other:?}"),
    }
    // A second grant that allows what the first refuses.
    let wide = grant(scope("commands = [\"read\"]\nrelations = [\"*\"]\n"), None);
    let star =
        Analyzer::new(16).access("SELECT * FROM patients", LexOptions::default(), &catalog());
    assert!(
        matches!(decide(&[live, wide], &star, &AssumeBuiltins, now), Decision::Allow(g) if g.scope.deny_columns.is_empty())
    );
}

/// Catalog relations and functions that expose other sessions, statistics values or
/// credentials pass only when a grant names them exactly: `pg_catalog.*` and `functions = ["*"]`
/// never open them, however the statement names them.
#[test]
fn catalog_side_channels_need_their_exact_name() {
    let mut rows = Vec::new();
    for (oid, schema, name, kind, cols) in [
        (1259, "pg_catalog", "pg_class", 'r', &["oid", "relname"][..]),
        (
            12_001,
            "pg_catalog",
            "pg_stat_activity",
            'v',
            &["pid", "query"],
        ),
        (12_002, "pg_catalog", "pg_locks", 'v', &["pid", "relation"]),
        (
            12_003,
            "pg_catalog",
            "pg_stats",
            'v',
            &["attname", "most_common_vals"],
        ),
        (12_004, "pg_catalog", "pg_stat_io", 'v', &["reads"]),
        (
            12_005,
            "information_schema",
            "user_mapping_options",
            'v',
            &["option_name", "option_value"],
        ),
        (12_006, "public", "patients", 'r', &["id", "ssn"]),
    ] {
        for (i, c) in cols.iter().enumerate() {
            rows.push(CatalogRow::new(
                oid,
                schema,
                name,
                kind,
                Some((c.to_string(), i as i16 + 1)),
            ));
        }
    }
    let catalog = StaticCatalog::from_rows(rows, vec!["pg_catalog".into(), "public".into()]);
    let check = |s: &Scope, sql: &str| {
        let a = Analyzer::new(64).access(sql, LexOptions::default(), &catalog);
        s.check(&a, &AssumeBuiltins).map_err(|d| d.rule)
    };
    let wide = scope(
        "commands = [\"read\", \"copy_out\"]\nrelations = [\"pg_catalog.*\", \"information_schema.*\", \"public.*\"]\nfunctions = [\"*\"]\n",
    );
    for sql in [
        "SELECT query FROM pg_stat_activity",
        "SELECT query FROM pg_catalog.pg_stat_activity",
        "SELECT query FROM \"pg_catalog\".\"pg_stat_activity\"",
        "TABLE pg_stats",
        "SELECT most_common_vals FROM pg_stats WHERE attname = 'ssn'",
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_stat_activity)",
        "WITH a AS (SELECT query FROM pg_stat_activity) SELECT * FROM a",
        "SELECT option_value FROM information_schema.user_mapping_options",
        "SELECT reads FROM pg_stat_io",
        "SELECT query FROM U&\"pg\\005fstat\\005factivity\"",
        "DECLARE c CURSOR FOR SELECT query FROM pg_stat_activity",
        "PREPARE p AS SELECT query FROM pg_stat_activity",
        "COPY (SELECT query FROM pg_stat_activity) TO STDOUT",
        "EXPLAIN SELECT query FROM pg_stat_activity",
    ] {
        assert_eq!(
            check(&wide, sql),
            Err("sensitive_relation"),
            "{sql} under pg_catalog.*"
        );
    }
    for sql in [
        "SELECT * FROM pg_stat_get_activity(NULL)",
        "SELECT query FROM pg_catalog.\"pg_stat_get_activity\"(NULL)",
        "SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() AS b",
        "SELECT a FROM generate_series(1, 9) AS b, LATERAL pg_stat_get_backend_activity(b) AS a",
        "SELECT pg_blocking_pids(1)",
        "SELECT (pg_lock_status()).pid",
        "SELECT * FROM pg_stat_statements(true)",
        "SELECT pg_stat_get_numscans(1)",
        "SELECT pg_mcv_list_items(NULL)",
        "SELECT pg_ls_waldir()",
        "SELECT pg_read_file_old('x', 0, 1)",
        "SELECT * FROM ROWS FROM (pg_stat_get_activity(NULL)) AS a",
        "SELECT * FROM U&\"pg\\005fstat\\005fget\\005factivity\"(NULL)",
        "WITH a AS (SELECT pg_stat_get_backend_activity(1) AS q) SELECT q FROM a",
        "SELECT 1 WHERE pg_stat_get_backend_activity(1) LIKE 'SELECT%'",
    ] {
        assert_eq!(
            check(&wide, sql),
            Err("function_denied"),
            "{sql} under functions = [\"*\"]"
        );
    }
    for sql in [
        "SELECT relname FROM pg_class",
        "SELECT pg_stat_get_xact_numscans(1)",
        "SELECT pg_backend_pid(), pg_table_is_visible(1)",
    ] {
        assert_eq!(check(&wide, sql), Ok(()), "{sql}");
    }
    // Named exactly, they pass.
    let named = scope(
        "commands = [\"read\"]\nrelations = [\"pg_catalog.*\", \"pg_catalog.pg_stat_activity\", \"pg_stats\"]\nfunctions = [\"pg_stat_get_activity\"]\n",
    );
    for sql in [
        "SELECT query FROM pg_stat_activity",
        "TABLE pg_stats",
        "SELECT * FROM pg_stat_get_activity(NULL)",
    ] {
        assert_eq!(check(&named, sql), Ok(()), "{sql}");
    }
    assert_eq!(
        check(&named, "SELECT pid FROM pg_locks"),
        Err("sensitive_relation")
    );
    // A wildcard in the name never names one.
    let starred = scope("commands = [\"read\"]\nrelations = [\"pg_catalog.pg_stat_*\"]\n");
    assert_eq!(
        check(&starred, "SELECT query FROM pg_stat_activity"),
        Err("sensitive_relation")
    );
}
