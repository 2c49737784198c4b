//! The records' form of what the analysis finds, pinned: hazards are described by neutral kinds
//! now (`vigil-access`), with PostgreSQL's construct as detail, but what the audit trail,
//! exports and `vigil policy test --json` carry must not change. The expected strings were
//! produced by the analysis before the split (main at f93f299). And the names users write in a
//! scope's `allow` still allow exactly PostgreSQL's constructs they always allowed.

use vigil_policy::{AssumeBuiltins, Scope};
use vigil_sql::{Analyzer, CatalogRow, LexOptions, StaticCatalog};

fn catalog() -> StaticCatalog {
    let rows = vec![CatalogRow::new(
        1,
        "public",
        "t",
        'r',
        Some(("a".into(), 1)),
    )];
    StaticCatalog::from_rows(rows, vec!["public".into()])
}

#[test]
fn serialized_statements_are_as_before() {
    let analyzer = Analyzer::new(64);
    let catalog = catalog();
    for (sql, expected) in [
        (
            r#"DO $$BEGIN END$$"#,
            r#"[{"command":"DO","class":"function","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"do_block","language":"plpgsql"}],"unresolved":[]}]"#,
        ),
        (
            r#"DO LANGUAGE plpython3u $$x$$"#,
            r#"[{"command":"DO","class":"function","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"do_block","language":"plpython3u"}],"unresolved":[]}]"#,
        ),
        (
            r#"DO LANGUAGE 'plpgsql' $$x$$"#,
            r#"[{"command":"DO","class":"function","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"do_block","language":null}],"unresolved":[]}]"#,
        ),
        (
            r#"CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'select 1'"#,
            r#"[{"command":"CREATE FUNCTION","class":"ddl","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"create_function","name":{"schema":"public","name":"f"},"language":"sql"}],"unresolved":[]}]"#,
        ),
        (
            r#"CREATE FUNCTION f() RETURNS int LANGUAGE 'sql' AS 'select 1'"#,
            r#"[{"command":"CREATE FUNCTION","class":"ddl","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"create_function","name":{"name":"f"},"language":null}],"unresolved":[]}]"#,
        ),
        (
            r#"CALL p(1)"#,
            r#"[{"command":"CALL","class":"function","plan_only":false,"relations":[],"functions":[{"name":"p"}],"hazards":[{"hazard":"call","procedure":{"name":"p"}}],"unresolved":[]}]"#,
        ),
        (
            r#"COPY t TO PROGRAM 'cat'"#,
            r#"[{"command":"COPY","class":"copy_out","plan_only":false,"relations":[{"relation":{"schema":"public","name":"t"},"oid":1,"kind":"table","read":true,"write":false,"ddl":false,"read_columns":"*","write_columns":[]}],"functions":[],"hazards":[{"hazard":"copy_program"}],"unresolved":[]}]"#,
        ),
        (
            r#"COPY t FROM '/tmp/x'"#,
            r#"[{"command":"COPY","class":"copy_in","plan_only":false,"relations":[{"relation":{"schema":"public","name":"t"},"oid":1,"kind":"table","read":false,"write":true,"ddl":false,"read_columns":[],"write_columns":"*"}],"functions":[],"hazards":[{"hazard":"copy_file"}],"unresolved":[]}]"#,
        ),
        (
            r#"SET ROLE admin"#,
            r#"[{"command":"SET","class":"session","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"set_role"}],"unresolved":[],"settings":[{"name":"role","value":{"given":["admin"]},"local":false}]}]"#,
        ),
        (
            r#"SET SESSION AUTHORIZATION admin"#,
            r#"[{"command":"SET","class":"session","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"set_session_authorization"}],"unresolved":[],"settings":[{"name":"session_authorization","value":{"given":["admin"]},"local":false}]}]"#,
        ),
        (
            r#"SET search_path = public"#,
            r#"[{"command":"SET","class":"session","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"set_search_path"}],"unresolved":[],"settings":[{"name":"search_path","value":{"given":["public"]},"local":false}]}]"#,
        ),
        (
            r#"SET session_replication_role = replica"#,
            r#"[{"command":"SET","class":"session","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"set_protected_setting","name":"session_replication_role"}],"unresolved":[],"settings":[{"name":"session_replication_role","value":{"given":["replica"]},"local":false}]}]"#,
        ),
        (
            r#"EXPLAIN ANALYZE SELECT 1"#,
            r#"[{"command":"EXPLAIN","class":"read","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"explain_analyze"}],"unresolved":[]}]"#,
        ),
        (
            r#"PREPARE q AS SELECT 1"#,
            r#"[{"command":"PREPARE","class":"read","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"prepare","name":"q"}],"unresolved":[],"names":[{"op":"prepare","name":"q"}]}]"#,
        ),
        (
            r#"EXECUTE q"#,
            r#"[{"command":"EXECUTE","class":"other","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"execute","name":"q"}],"unresolved":[],"names":[{"op":"execute","name":"q"}]}]"#,
        ),
        (
            r#"LISTEN ch"#,
            r#"[{"command":"LISTEN","class":"utility","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"listen","channel":"ch"}],"unresolved":[]}]"#,
        ),
        (
            r#"NOTIFY ch"#,
            r#"[{"command":"NOTIFY","class":"utility","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"notify","channel":"ch"}],"unresolved":[]}]"#,
        ),
        (
            r#"ALTER SYSTEM SET work_mem = '1MB'"#,
            r#"[{"command":"ALTER SYSTEM","class":"ddl","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"alter_system"}],"unresolved":[]}]"#,
        ),
        (
            r#"LOAD 'x'"#,
            r#"[{"command":"LOAD","class":"utility","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"load"}],"unresolved":[]}]"#,
        ),
        (
            r#"CREATE EXTENSION pgcrypto"#,
            r#"[{"command":"CREATE EXTENSION","class":"ddl","plan_only":false,"relations":[],"functions":[],"hazards":[{"hazard":"create_extension","name":"pgcrypto"}],"unresolved":[]}]"#,
        ),
        (
            r#"SELECT pg_read_file('x'), lower('a')"#,
            r#"[{"command":"SELECT","class":"read","plan_only":false,"relations":[],"functions":[{"name":"lower"},{"name":"pg_read_file"}],"hazards":[{"hazard":"function","name":{"name":"pg_read_file"},"risk":"file_system"}],"unresolved":[]}]"#,
        ),
        (
            r#"COPY (SELECT pg_read_file('x')) TO '/tmp/y'"#,
            r#"[{"command":"COPY","class":"copy_out","plan_only":false,"relations":[],"functions":[{"name":"pg_read_file"}],"hazards":[{"hazard":"copy_file"},{"hazard":"function","name":{"name":"pg_read_file"},"risk":"file_system"}],"unresolved":[]}]"#,
        ),
        (
            r#"SET statement_timeout = '5s'"#,
            r#"[{"command":"SET","class":"session","plan_only":false,"relations":[],"functions":[],"hazards":[],"unresolved":[],"settings":[{"name":"statement_timeout","value":{"given":["5s"]},"local":false}]}]"#,
        ),
        (
            r#"SELECT * FROM pg_stat_activity"#,
            r#"[{"command":"SELECT","class":"read","plan_only":false,"relations":[{"relation":{"name":"pg_stat_activity"},"oid":null,"kind":null,"read":true,"write":false,"ddl":false,"read_columns":"*","write_columns":[]}],"functions":[],"hazards":[],"unresolved":[{"unresolved":"relation","name":"pg_stat_activity"}]}]"#,
        ),
    ] {
        let access = analyzer.access(sql, LexOptions::default(), &catalog);
        assert_eq!(
            serde_json::to_string(&access.statements).unwrap(),
            expected,
            "{sql}"
        );
    }
}

/// Each of PostgreSQL's constructs that needs an allowance is refused without it, naming it,
/// and allowed with it (and only with it).
#[test]
fn policy_names_allow_the_constructs_they_always_allowed() {
    let analyzer = Analyzer::new(64);
    let catalog = catalog();
    let scope = |allow: &str| -> Scope {
        let s: Scope = toml::from_str(&format!(
            r#"
            commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
            relations = ["*"]
            allow = [{allow}]
            "#
        ))
        .unwrap();
        s.validate().unwrap();
        s
    };
    let names = [
        "do",
        "create_function",
        "copy_program",
        "copy_file",
        "set_role",
        "set_session_authorization",
        "set_search_path",
        "set_protected_setting",
        "alter_system",
        "load",
        "create_extension",
    ];
    for (sql, needed) in [
        ("DO $$BEGIN END$$", "do"),
        ("DO LANGUAGE plpython3u $$x$$", "do"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'",
            "create_function",
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'",
            "create_function",
        ),
        ("COPY t TO PROGRAM 'cat'", "copy_program"),
        ("COPY t FROM '/tmp/x'", "copy_file"),
        ("SET ROLE admin", "set_role"),
        ("RESET ROLE", "set_role"),
        (
            "SET SESSION AUTHORIZATION admin",
            "set_session_authorization",
        ),
        ("SET search_path = public", "set_search_path"),
        (
            "SET session_replication_role = replica",
            "set_protected_setting",
        ),
        (
            "ALTER ROLE app SET row_security = off",
            "set_protected_setting",
        ),
        ("ALTER SYSTEM SET work_mem = '1MB'", "alter_system"),
        ("LOAD 'x'", "load"),
        ("CREATE EXTENSION pgcrypto", "create_extension"),
    ] {
        let access = analyzer.access(sql, LexOptions::default(), &catalog);
        assert!(access.is_complete(), "{sql}: {access:?}");
        let denial = scope("").check(&access, &AssumeBuiltins).unwrap_err();
        assert_eq!(denial.rule, "construct_denied", "{sql}");
        assert!(
            denial.reason.contains(&format!("({needed})")),
            "{sql}: {}",
            denial.reason
        );
        assert_eq!(
            scope(&format!("{needed:?}")).check(&access, &AssumeBuiltins),
            Ok(()),
            "{sql}"
        );
        let others: Vec<String> = names
            .iter()
            .filter(|n| **n != needed)
            .map(|n| format!("{n:?}"))
            .collect();
        assert!(
            scope(&others.join(", "))
                .check(&access, &AssumeBuiltins)
                .is_err(),
            "{sql} allowed without {needed}"
        );
    }
}
