//! Fail closed, whatever the text: random statements built from SQL's vocabulary never make the
//! analysis or the decision panic; a text PostgreSQL's grammar rejects is refused as
//! unparseable; a name that does not resolve refuses; and whatever is allowed really stays
//! within the scope (every relation allowed, no denied column used, `*` never over them).

use proptest::prelude::*;
use vigil_policy::{AssumeBuiltins, Scope};
use vigil_sql::{Analyzer, CatalogRow, ColumnSet, LexOptions, StaticCatalog};

const WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "patients",
    "encounters",
    "secrets",
    "ssn",
    "id",
    "mrn",
    "note",
    "patient_id",
    "p",
    "e",
    "p.ssn",
    "p.id",
    "e.note",
    "*",
    "p.*",
    ",",
    "(",
    ")",
    "=",
    "<",
    "'x'",
    "1",
    "$1",
    "AND",
    "OR",
    "NOT",
    "JOIN",
    "LEFT",
    "ON",
    "USING",
    "NATURAL",
    "LATERAL",
    "UNION",
    "ALL",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "RETURNING",
    "DROP",
    "TABLE",
    "CREATE",
    "DO",
    "$$BEGIN END$$",
    "BEGIN",
    "COMMIT",
    ";",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "LIMIT",
    "AS",
    "WITH",
    "x",
    "EXISTS",
    "IN",
    "COPY",
    "TO",
    "STDOUT",
    "PROGRAM",
    "EXPLAIN",
    "ANALYZE",
    "PREPARE",
    "EXECUTE",
    "q",
    "count(*)",
    "count",
    "max",
    "pg_read_file",
    "set_config",
    "upper",
    "ROLE",
    "search_path",
    "::text",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "IS",
    "NULL",
    "DISTINCT",
    "ON",
    "OVER",
    "row_to_json",
    "--",
    "/*",
    "*/",
    "\"ssn\"",
    "public.patients",
];

fn catalog() -> StaticCatalog {
    let mut rows = Vec::new();
    for (oid, name, columns) in [
        (16_001, "patients", &["id", "mrn", "ssn"][..]),
        (16_002, "encounters", &["id", "patient_id", "note"][..]),
        (16_003, "secrets", &["id", "x"][..]),
    ] {
        for (i, c) in columns.iter().enumerate() {
            rows.push(CatalogRow::new(
                oid,
                "public",
                name,
                'r',
                Some((c.to_string(), i as i16 + 1)),
            ));
        }
    }
    StaticCatalog::from_rows(rows, vec!["pg_catalog".into(), "public".into()])
}

fn scope() -> Scope {
    toml::from_str(
        r#"
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["public.patients", "public.encounters"]
deny_columns = { "public.patients" = ["ssn"] }
"#,
    )
    .unwrap()
}

const ITEMS: &[&str] = &[
    "id",
    "mrn",
    "ssn",
    "p.ssn",
    "p.id",
    "*",
    "p.*",
    "count(*)",
    "upper(mrn)",
    "row_to_json(p)",
    "p",
    "(SELECT ssn FROM patients LIMIT 1)",
    "e.note",
    "e.*",
    "pg_read_file('x')",
    "set_config('a', 'b', false)",
    "x",
    "mrn AS ssn",
    "ssn IS NULL",
    "1",
];
const FROM: &[&str] = &[
    "patients p",
    "patients p JOIN encounters e ON e.patient_id = p.id",
    "encounters e",
    "patients p, LATERAL (SELECT ssn) s",
    "secrets",
    "patients p NATURAL JOIN encounters e",
    "(SELECT id, ssn FROM patients) p",
    "encounters e JOIN patients p USING (id)",
    "patients AS p(a, b, c)",
    "encounters e LEFT JOIN patients p ON p.ssn = e.note",
];
const PREDICATES: &[&str] = &[
    "ssn = 'x'",
    "p.id = 1",
    "mrn IS NULL",
    "EXISTS (SELECT 1 FROM secrets)",
    "id IN (SELECT patient_id FROM encounters)",
    "p.ssn IS NULL",
    "e.note = 'x'",
    "true",
    "c = 'x'",
    "p IS NOT NULL",
];
const ORDER: &[&str] = &["id", "ssn", "1", "mrn", "p.ssn", "c"];

fn pick(words: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(words)
}

fn text() -> impl Strategy<Value = String> {
    let items = || proptest::collection::vec(pick(ITEMS), 1..4).prop_map(|i| i.join(", "));
    prop_oneof![
        // Statements shaped like real ones, with parts that allow and parts that must not.
        (
            items(),
            pick(FROM),
            proptest::option::of(pick(PREDICATES)),
            proptest::option::of(pick(ORDER))
        )
            .prop_map(|(items, from, pred, order)| {
                let mut sql = format!("SELECT {items} FROM {from}");
                if let Some(p) = pred {
                    sql.push_str(&format!(" WHERE {p}"));
                }
                if let Some(o) = order {
                    sql.push_str(&format!(" ORDER BY {o}"));
                }
                sql
            }),
        (pick(ORDER), pick(PREDICATES))
            .prop_map(|(col, pred)| format!("UPDATE patients p SET mrn = {col} WHERE {pred}")),
        pick(PREDICATES).prop_map(|pred| format!("DELETE FROM patients p WHERE {pred}")),
        (items(), pick(FROM)).prop_map(|(items, from)| format!(
            "INSERT INTO encounters (id, note) SELECT {items} FROM {from} RETURNING *"
        )),
        // Word soup.
        proptest::collection::vec(pick(WORDS), 1..14).prop_map(|w| w.join(" ")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/properties.proptest-regressions")
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn whatever_the_text_the_decision_fails_closed(sql in text()) {
        let analyzer = Analyzer::new(256);
        let catalog = catalog();
        let access = analyzer.access(&sql, LexOptions::default(), &catalog);
        let decision = scope().check(&access, &AssumeBuiltins);
        if access.parse_error.is_some() {
            let denial = decision.as_ref().unwrap_err();
            prop_assert_eq!(denial.rule, "unparseable");
            prop_assert_eq!(denial.sqlstate, "42601");
        }
        if access.statements.iter().any(|s| !s.unresolved.is_empty()) {
            prop_assert!(decision.is_err(), "unresolved but allowed: {sql}");
        }
        // What the policy reads from the analysis is PostgreSQL's lists, as it once looked
        // them up itself: every function's risk, every relation's exposure.
        for s in &access.statements {
            for f in &s.functions {
                prop_assert_eq!(s.function_risk(f), vigil_sql::access::function_risk(&f.name));
            }
            for r in &s.relations {
                let schema = r.relation.schema.as_deref().unwrap_or("public");
                prop_assert_eq!(
                    r.exposure,
                    vigil_sql::access::relation_risk(schema, &r.relation.name)
                );
            }
        }
        if decision.is_ok() {
            for s in &access.statements {
                for r in &s.relations {
                    prop_assert!(
                        matches!(r.relation.name.as_str(), "patients" | "encounters"),
                        "{sql}: allowed {}", r.relation
                    );
                    if r.relation.name == "patients" {
                        let used = r.columns();
                        prop_assert!(!matches!(used, ColumnSet::All), "{sql}: all of patients");
                        prop_assert!(!used.contains("ssn"), "{sql}: ssn used");
                    }
                }
                for f in &s.functions {
                    prop_assert!(
                        vigil_sql::access::function_risk(&f.name).is_none(),
                        "{sql}: dangerous {f}"
                    );
                }
            }
        }
    }
}
