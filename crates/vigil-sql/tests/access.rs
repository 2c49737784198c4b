//! The access analysis over the table of cases in `access_cases.toml` (see its header for the
//! format), and properties over generated SQL.
//!
//! `VIGIL_PRINT_ACCESS=1 cargo test -p vigil-sql --test access cases` prints what the analysis
//! says of every case, in the file's notation.

use proptest::prelude::*;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use vigil_sql::{
    Access, Analyzer, Catalog, ColumnInfo, ColumnSet, Constraint, Hazard, HazardKind, LexOptions,
    RelationAccess, RelationInfo, RelationKind, StatementAccess, StaticCatalog,
};

const ON: LexOptions = LexOptions {
    standard_conforming_strings: true,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    search_path: Vec<String>,
    #[allow(dead_code)]
    setup: String,
    relation: Vec<Relation>,
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Relation {
    oid: u32,
    schema: String,
    name: String,
    kind: RelationKind,
    columns: Vec<String>,
    /// Absent: the catalog does not know the relation's constraints.
    #[serde(default)]
    constraints: Option<Vec<Constraint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: String,
    #[serde(default = "yes")]
    #[allow(dead_code)]
    valid: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pg: Option<u32>,
    #[serde(default = "yes")]
    #[allow(dead_code)]
    runs: bool,
    #[serde(default)]
    parse_error: bool,
    #[serde(flatten)]
    single: Expect,
    #[serde(default)]
    statements: Vec<Expect>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    command: Option<String>,
    class: Option<String>,
    #[serde(default)]
    plan_only: bool,
    #[serde(default)]
    relations: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    hazards: Vec<String>,
    #[serde(default)]
    unresolved: Vec<String>,
    /// Checked only when given: `schema.relation(columns)` per relation with derived columns.
    derived: Option<Vec<String>>,
    /// Checked only when given: `schema.relation.column (constraint)`.
    compared: Option<Vec<String>>,
}

fn file() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        let text = include_str!("access_cases.toml");
        toml::from_str(text).unwrap_or_else(|e| panic!("access_cases.toml: {e}"))
    })
}

fn catalog() -> Arc<StaticCatalog> {
    static CATALOG: OnceLock<Arc<StaticCatalog>> = OnceLock::new();
    Arc::clone(CATALOG.get_or_init(|| {
        let f = file();
        let relations = f.relation.iter().map(|r| RelationInfo {
            oid: r.oid,
            schema: r.schema.clone(),
            name: r.name.clone(),
            kind: r.kind,
            columns: r
                .columns
                .iter()
                .zip(1..)
                .map(|(name, attnum)| ColumnInfo {
                    name: name.clone(),
                    attnum,
                })
                .collect(),
            constraints: r.constraints.clone(),
        });
        Arc::new(StaticCatalog::new(relations, f.search_path.clone()))
    }))
}

fn cols(c: &ColumnSet) -> String {
    match c {
        ColumnSet::All => "*".to_owned(),
        ColumnSet::Columns(c) => c.join(","),
    }
}

/// A relation access in the file's notation.
fn relation_spec(r: &RelationAccess) -> String {
    let mut s = r.relation.to_string();
    if r.read {
        s.push_str(&format!(" r({})", cols(&r.read_columns)));
    } else {
        assert!(r.read_columns.is_empty(), "{r:?}");
    }
    if r.write {
        s.push_str(&format!(" w({})", cols(&r.write_columns)));
    } else {
        assert!(r.write_columns.is_empty(), "{r:?}");
    }
    if r.ddl {
        s.push_str(" d");
    }
    s
}

/// A hazard in the file's notation: PostgreSQL's construct name, then the kind's details.
fn hazard_spec(h: &Hazard) -> String {
    let opt = |l: &Option<String>| l.clone().unwrap_or_else(|| "?".to_owned());
    let construct = h.construct.as_str();
    let detail = match &h.kind {
        HazardKind::RunsInlineCode { language } => opt(language),
        HazardKind::DefinesCode { name, language } => format!("{name}:{}", opt(language)),
        HazardKind::CallsProcedure { procedure } => procedure.to_string(),
        HazardKind::ChangesProtectedSetting { name }
        | HazardKind::DefinesPrepared { name }
        | HazardKind::RunsPrepared { name }
        | HazardKind::InstallsExtension { name } => name.clone(),
        HazardKind::Subscribes { channel } | HazardKind::Publishes { channel } => channel.clone(),
        HazardKind::CallsRiskyFunction { name, risk } => {
            let risk = serde_json::to_value(risk).unwrap();
            format!("{name}:{}", risk.as_str().unwrap())
        }
        HazardKind::RunsServerProgram
        | HazardKind::AccessesServerFile
        | HazardKind::AssumesRole
        | HazardKind::ChangesSessionUser
        | HazardKind::RedirectsNames
        | HazardKind::RunsExplainedStatement
        | HazardKind::ChangesServerConfiguration
        | HazardKind::LoadsLibrary => return construct.to_owned(),
    };
    format!("{construct}({detail})")
}

struct Seen {
    command: String,
    class: String,
    plan_only: bool,
    relations: Vec<String>,
    functions: Vec<String>,
    hazards: Vec<String>,
    unresolved: Vec<String>,
    derived: Vec<String>,
    compared: Vec<String>,
}

fn seen(s: &StatementAccess) -> Seen {
    Seen {
        command: s.command.clone(),
        class: s.class.as_str().to_owned(),
        plan_only: s.plan_only,
        relations: s.relations.iter().map(relation_spec).collect(),
        functions: s.functions.iter().map(ToString::to_string).collect(),
        hazards: s.hazards.iter().map(hazard_spec).collect(),
        unresolved: s.unresolved.iter().map(ToString::to_string).collect(),
        derived: s
            .relations
            .iter()
            .filter(|r| !r.derived_columns.is_empty())
            .map(|r| format!("{}({})", r.relation, cols(&r.derived_columns)))
            .collect(),
        compared: s
            .compared
            .iter()
            .map(|c| {
                format!(
                    "{}.{} ({})",
                    c.relation,
                    c.column,
                    c.constraint.as_deref().unwrap_or("?")
                )
            })
            .collect(),
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| normalize_spec(s)).collect();
    v.sort();
    v
}

/// `r(a, b)` and `r(a,b)` alike.
fn normalize_spec(s: &str) -> String {
    s.replace(", ", ",")
}

fn print_case(sql: &str, access: &Access) {
    println!("[[case]]\nsql = {:?}", sql);
    if let Some(e) = &access.parse_error {
        println!("# parse_error: {e}");
    }
    let q = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let many = access.statements.len() > 1;
    if many {
        println!("statements = [");
    }
    for s in &access.statements {
        let s = seen(s);
        let mut parts = vec![format!("class = {:?}", s.class)];
        if many || s.command != "SELECT" {
            parts.push(format!("command = {:?}", s.command));
        }
        if s.plan_only {
            parts.push("plan_only = true".into());
        }
        for (k, v) in [
            ("relations", &s.relations),
            ("functions", &s.functions),
            ("hazards", &s.hazards),
            ("unresolved", &s.unresolved),
            ("derived", &s.derived),
            ("compared", &s.compared),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k} = [{}]", q(v)));
            }
        }
        if many {
            println!("  {{ {} }},", parts.join(", "));
        } else {
            println!("{}", parts.join("\n"));
        }
    }
    if many {
        println!("]");
    }
    println!();
}

fn check(expect: &Expect, s: &StatementAccess, sql: &str, failures: &mut Vec<String>) {
    let got = seen(s);
    let mut fail = |what: &str, want: String, got: String| {
        failures.push(format!(
            "{sql}\n    {what}: expected {want}\n    {what}: got      {got}"
        ));
    };
    if let Some(c) = &expect.command {
        if *c != got.command {
            fail("command", c.clone(), got.command.clone());
        }
    }
    if let Some(c) = &expect.class {
        if *c != got.class {
            fail("class", c.clone(), got.class.clone());
        }
    }
    if expect.plan_only != got.plan_only {
        fail(
            "plan_only",
            expect.plan_only.to_string(),
            got.plan_only.to_string(),
        );
    }
    for (what, want, have) in [
        ("relations", &expect.relations, &got.relations),
        ("functions", &expect.functions, &got.functions),
        ("hazards", &expect.hazards, &got.hazards),
        ("unresolved", &expect.unresolved, &got.unresolved),
    ] {
        let (want, have) = (sorted(want), sorted(have));
        if want != have {
            fail(what, format!("{want:?}"), format!("{have:?}"));
        }
    }
    for (what, want, have) in [
        ("derived", &expect.derived, &got.derived),
        ("compared", &expect.compared, &got.compared),
    ] {
        if let Some(want) = want {
            let (want, have) = (sorted(want), sorted(have));
            if want != have {
                fail(what, format!("{want:?}"), format!("{have:?}"));
            }
        }
    }
}

#[test]
fn cases() {
    let f = file();
    let catalog = catalog();
    let analyzer = Analyzer::new(1_000);
    let print = std::env::var_os("VIGIL_PRINT_ACCESS").is_some();
    let mut failures = Vec::new();
    let mut statements = 0;
    for case in &f.case {
        let access = analyzer.access(&case.sql, ON, catalog.as_ref());
        if print {
            print_case(&case.sql, &access);
        }
        statements += access.statements.len();
        // The shape and the access analysis agree.
        assert_eq!(access.shape.parse_error, access.parse_error, "{}", case.sql);
        assert_eq!(access.shape.commands.len(), access.statements.len());
        for (s, (c, k)) in access.statements.iter().zip(
            access
                .shape
                .commands
                .iter()
                .zip(&access.shape.command_classes),
        ) {
            assert_eq!((&s.command, s.class.as_str()), (c, k.as_str()));
        }
        assert_eq!(*access.shape, *analyzer.analyze(&case.sql, ON));
        if case.parse_error {
            if access.parse_error.is_none() {
                failures.push(format!("{}\n    expected a parse error", case.sql));
            }
            continue;
        }
        if let Some(e) = &access.parse_error {
            failures.push(format!("{}\n    parse error: {e}", case.sql));
            continue;
        }
        if case.statements.is_empty() {
            match access.statements.as_slice() {
                [s] => check(&case.single, s, &case.sql, &mut failures),
                other => failures.push(format!(
                    "{}\n    expected one statement, got {}",
                    case.sql,
                    other.len()
                )),
            }
        } else if case.statements.len() != access.statements.len() {
            failures.push(format!(
                "{}\n    expected {} statements, got {}",
                case.sql,
                case.statements.len(),
                access.statements.len()
            ));
        } else {
            for (e, s) in case.statements.iter().zip(&access.statements) {
                check(e, s, &case.sql, &mut failures);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        f.case.len(),
        failures.join("\n\n")
    );
    assert!(
        statements >= 150,
        "the table should hold at least 150 statements, has {statements}"
    );
}

/// Nothing the analysis reports may depend on a literal's value: texts of one shape share one
/// analysis (and must, to be cached by shape).
#[test]
fn literal_values_do_not_matter() {
    let catalog = catalog();
    let pairs = [
        (
            "EXPLAIN (ANALYZE 0) DELETE FROM patients",
            "EXPLAIN (ANALYZE 1) DELETE FROM patients",
        ),
        (
            "EXPLAIN (ANALYZE 'off') DELETE FROM patients",
            "EXPLAIN (ANALYZE 'on') DELETE FROM patients",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE 'sql' AS 'SELECT 1'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE 'c' AS 'SELECT 1'",
        ),
        (
            "DO LANGUAGE 'plpgsql' 'BEGIN END'",
            "DO LANGUAGE 'plperlu' 'BEGIN END'",
        ),
        (
            "SELECT set_config('search_path', 'x', false)",
            "SELECT set_config('work_mem', '1MB', false)",
        ),
        (
            "COPY patients TO '/tmp/a'",
            "COPY patients TO '/etc/passwd'",
        ),
        (
            "SELECT nextval('patient_mrn_seq')",
            "SELECT nextval('patients')",
        ),
        (
            "SELECT 'patients'::regclass",
            "SELECT 'billing.claims'::regclass",
        ),
    ];
    for (a, b) in pairs {
        let (na, nb) = (vigil_sql::normalize(a, ON), vigil_sql::normalize(b, ON));
        assert_eq!(na.text, nb.text, "not one shape: {a} / {b}");
        let (x, y) = (
            Analyzer::new(8).access(a, ON, catalog.as_ref()),
            Analyzer::new(8).access(b, ON, catalog.as_ref()),
        );
        assert_eq!(x.statements, y.statements, "{a} / {b}");
        // And through one analyzer, the second is a cache hit.
        let analyzer = Analyzer::new(8);
        let first = analyzer.access(a, ON, catalog.as_ref());
        let second = analyzer.access(b, ON, catalog.as_ref());
        assert!(Arc::ptr_eq(&first, &second));
    }
    // The exception: an output column named by position. Texts of one shape then differ in
    // what they use, so the analysis serves its own text only (else `ORDER BY 1` allowed first
    // would let `ORDER BY 6` through on its analysis).
    let analyzer = Analyzer::new(64);
    for (a, b) in [
        (
            "SELECT * FROM patients WHERE id > 1 ORDER BY 1",
            "SELECT * FROM patients WHERE id > 2 ORDER BY 6",
        ),
        (
            "SELECT ssn, id FROM patients GROUP BY 2 HAVING count(*) > 0",
            "SELECT ssn, id FROM patients GROUP BY 1 HAVING count(*) > 0",
        ),
        (
            "SELECT DISTINCT ON (2) ssn, id FROM patients",
            "SELECT DISTINCT ON (1) ssn, id FROM patients",
        ),
    ] {
        let (na, nb) = (vigil_sql::normalize(a, ON), vigil_sql::normalize(b, ON));
        assert_eq!(na.text, nb.text, "not one shape: {a} / {b}");
        let first = analyzer.access(a, ON, catalog.as_ref());
        let second = analyzer.access(b, ON, catalog.as_ref());
        assert!(first.statements[0].by_position && second.statements[0].by_position);
        assert_ne!(first.statements, second.statements, "{a} / {b}");
        let derived = |x: &vigil_sql::Access| x.statements[0].relations[0].derived_columns.clone();
        assert!(!derived(&first).contains("ssn"), "{a}");
        assert!(derived(&second).contains("ssn"), "{b}");
        // Again, in the other order, and again: never the other's analysis.
        assert!(
            analyzer.access(b, ON, catalog.as_ref()).statements[0].relations[0]
                .derived_columns
                .contains("ssn")
        );
        assert!(
            !analyzer.access(a, ON, catalog.as_ref()).statements[0].relations[0]
                .derived_columns
                .contains("ssn")
        );
    }
    // The other exception: the value a SET gives a setting (policies bound statement_timeout).
    for (a, b) in [
        ("SET statement_timeout = 1000", "SET statement_timeout = 0"),
        (
            "SET LOCAL statement_timeout TO '5s'",
            "SET LOCAL statement_timeout TO '1h'",
        ),
        ("SET search_path = 'public'", "SET search_path = 'evil'"),
    ] {
        let (na, nb) = (vigil_sql::normalize(a, ON), vigil_sql::normalize(b, ON));
        assert_eq!(na.text, nb.text, "not one shape: {a} / {b}");
        for _ in 0..2 {
            let first = analyzer.access(a, ON, catalog.as_ref());
            let second = analyzer.access(b, ON, catalog.as_ref());
            assert_ne!(first.statements, second.statements, "{a} / {b}");
            assert_ne!(
                first.statements[0].settings, second.statements[0].settings,
                "{a} / {b}"
            );
        }
    }

    // A language written as an identifier is reported; as a literal, it is not.
    let shown = Analyzer::new(8).access(
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 1; END'",
        ON,
        catalog.as_ref(),
    );
    assert!(matches!(
        &shown.statements[0].hazards[..],
        [Hazard { kind: HazardKind::DefinesCode { language: Some(l), .. }, .. }] if l == "plpgsql"
    ));
}

#[test]
fn cached_by_shape_and_catalog_version() {
    let catalog = catalog();
    let analyzer = Analyzer::new(100);
    let a = analyzer.access(
        "SELECT ssn FROM patients WHERE id = 1",
        ON,
        catalog.as_ref(),
    );
    let b = analyzer.access(
        "SELECT ssn FROM patients WHERE id = 2",
        ON,
        catalog.as_ref(),
    );
    assert!(Arc::ptr_eq(&a, &b));
    let p1 = analyzer.access(
        "SELECT ssn FROM patients WHERE id = $1",
        ON,
        catalog.as_ref(),
    );
    let p2 = analyzer.access(
        "SELECT ssn FROM patients WHERE id = $1",
        ON,
        catalog.as_ref(),
    );
    assert!(Arc::ptr_eq(&p1, &p2));
    let stats = analyzer.access_stats();
    assert_eq!(
        (stats.exact_hits, stats.shape_hits, stats.misses),
        (1, 1, 2)
    );
    // The shape cache was filled on the way: analyze() is a hit, and shares the shape.
    let shape = analyzer.analyze("SELECT ssn FROM patients WHERE id = 3", ON);
    assert!(Arc::ptr_eq(&shape, &a.shape));
    assert_eq!(analyzer.stats().misses, 0);

    // Another catalog (here: another search path) is another analysis.
    let staging = catalog.with_search_path(vec!["staging".into(), "public".into()]);
    assert_ne!(staging.version(), catalog.version());
    let c = analyzer.access("SELECT mrn FROM patients WHERE id = 1", ON, &staging);
    assert_eq!(
        c.statements[0].relations[0].relation.to_string(),
        "staging.patients"
    );
    let d = analyzer.access(
        "SELECT mrn FROM patients WHERE id = 1",
        ON,
        catalog.as_ref(),
    );
    assert_eq!(
        d.statements[0].relations[0].relation.to_string(),
        "public.patients"
    );
    assert!(!Arc::ptr_eq(&c, &d));
    // A column the catalog's version does not have is unresolved there only.
    let e = analyzer.access("SELECT raw FROM patients", ON, &staging);
    assert!(e.is_complete());
    let f = analyzer.access("SELECT raw FROM patients", ON, catalog.as_ref());
    assert!(!f.is_complete());
}

#[test]
fn failures_are_refused_and_not_cached_by_shape() {
    let catalog = catalog();
    let analyzer = Analyzer::new(100);
    let bad = analyzer.access(
        "SELECT ssn FROM patients WHERE id = '123-45-6789' 'x'",
        ON,
        catalog.as_ref(),
    );
    assert!(!bad.is_complete());
    assert!(bad.statements.is_empty());
    assert_eq!(
        bad.parse_error.as_deref(),
        Some("syntax error at or near [redacted]")
    );
    let nul = analyzer.access("SELECT 1\0", ON, catalog.as_ref());
    assert!(nul.parse_error.as_deref().unwrap().contains("NUL"));
    let deep = analyzer.access(
        &format!("SELECT {} FROM patients", vec!["ssn"; 20_000].join("+")),
        ON,
        catalog.as_ref(),
    );
    assert!(deep.parse_error.as_deref().unwrap().contains("too deeply"));
    // float(0) does not parse, float(5) does: one shape, two fates.
    assert!(analyzer
        .access("SELECT 1::float(0)", ON, catalog.as_ref())
        .parse_error
        .is_some());
    assert!(analyzer
        .access("SELECT 1::float(5)", ON, catalog.as_ref())
        .is_complete());
}

#[test]
fn deep_statements_are_analysed_on_a_small_stack() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let catalog = catalog();
            let analyzer = Analyzer::new(10);
            let joins = (1..60).fold("SELECT p0.ssn FROM patients p0".to_owned(), |s, i| {
                format!("{s} JOIN encounters e{i} ON e{i}.patient_id = p0.id")
            });
            let nested = format!(
                "SELECT {}ssn{} FROM patients",
                "(SELECT ".repeat(150),
                ")".repeat(150)
            );
            let concat = format!("SELECT {} FROM patients", vec!["ssn"; 400].join(" || "));
            for sql in [joins, nested, concat] {
                let a = analyzer.access(&sql, ON, catalog.as_ref());
                assert!(a.is_complete(), "{:?} {:?}", a.parse_error, a.statements);
                let patients = a.statements[0].relation("public", "patients").unwrap();
                assert!(patients.uses_column("ssn"));
            }
            // At and past the nesting limit: analysed or refused, never a crash.
            for sql in [
                format!("SELECT {} FROM patients", vec!["ssn"; 20_000].join("+")),
                format!(
                    "SELECT {}ssn{} FROM patients",
                    "(".repeat(1_900),
                    ")".repeat(1_900)
                ),
                format!("SELECT {} ssn FROM patients", "NOT ".repeat(1_900)),
                format!("SELECT {} ssn FROM patients", "- ".repeat(1_900)),
                format!(
                    "SELECT {}ssn{} FROM patients",
                    "CASE WHEN id > 0 THEN ".repeat(900),
                    " END".repeat(900)
                ),
                format!(
                    "SELECT {}ssn{} FROM patients",
                    "(SELECT ".repeat(400),
                    ")".repeat(400)
                ),
                format!(
                    "SELECT {}ssn{} FROM patients",
                    "coalesce(".repeat(600),
                    ")".repeat(600)
                ),
                format!("SELECT ssn{} FROM patients", "::text".repeat(900)),
                vec!["SELECT ssn, id FROM patients"; 1_500].join(" UNION "),
                format!(
                    "SELECT 1 FROM patients WHERE {}",
                    vec!["ssn BETWEEN mrn AND zip"; 900].join(" OR ")
                ),
                (1..250).fold("SELECT 1 FROM patients p0".to_owned(), |s, i| {
                    format!("{s} JOIN patients p{i} ON p{i}.id = p0.id")
                }),
            ] {
                let a = analyzer.access(&sql, ON, catalog.as_ref());
                assert!(a.statements.len() <= 1);
                if std::env::var_os("VIGIL_PRINT_ACCESS").is_some() {
                    println!("{:?}: {:?}", &sql[..40], a.parse_error);
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// Columns of the test catalog's tables, for the generator.
const TABLES: &[(&str, &[&str])] = &[
    (
        "patients",
        &[
            "id",
            "mrn",
            "first_name",
            "last_name",
            "date_of_birth",
            "ssn",
            "phone",
            "email",
            "street",
            "city",
            "state",
            "zip",
        ],
    ),
    (
        "encounters",
        &[
            "id",
            "patient_id",
            "started_at",
            "kind",
            "provider_npi",
            "notes",
        ],
    ),
    ("diagnoses", &["id", "encounter_id", "icd10", "description"]),
    (
        "billing.claims",
        &["id", "encounter_id", "amount", "status", "submitted_at"],
    ),
    (
        "patient_summary",
        &["id", "mrn", "last_name", "encounter_count"],
    ),
];

/// A generated query and, for checking, the (table, column) pairs it mentions qualified.
#[derive(Clone, Debug)]
struct Gen {
    sql: String,
    mentions: Vec<(String, String)>,
}

fn table() -> impl Strategy<Value = usize> {
    0..TABLES.len()
}

fn column_of(t: usize) -> impl Strategy<Value = String> {
    proptest::sample::select(TABLES[t].1).prop_map(str::to_owned)
}

/// `alias.column` of one of the tables in scope, recorded in `mentions`.
fn col_ref(scope: Vec<(String, usize)>) -> impl Strategy<Value = (String, (String, String))> {
    proptest::sample::select(scope).prop_flat_map(|(alias, t)| {
        column_of(t)
            .prop_map(move |c| (format!("{alias}.{c}"), (TABLES[t].0.to_owned(), c.clone())))
    })
}

/// An expression over the scope: column references wrapped in functions, operators, CASE,
/// casts, and subqueries over fresh tables.
fn expr(scope: Vec<(String, usize)>, depth: u32) -> BoxedStrategy<Gen> {
    let leaf = col_ref(scope.clone())
        .prop_map(|(sql, m)| Gen {
            sql,
            mentions: vec![m],
        })
        .boxed();
    if depth == 0 {
        return leaf;
    }
    let sub = expr(scope.clone(), depth - 1);
    let sub2 = expr(scope.clone(), depth - 1);
    prop_oneof![
        4 => leaf,
        1 => (sub.clone(), proptest::sample::select(&["lower", "length", "md5", "coalesce", "upper"][..]))
            .prop_map(|(g, f)| Gen { sql: format!("{f}({}::text)", g.sql), mentions: g.mentions }),
        1 => (sub.clone(), sub2.clone()).prop_map(|(a, b)| Gen {
            sql: format!("({}::text || {}::text)", a.sql, b.sql),
            mentions: [a.mentions, b.mentions].concat(),
        }),
        1 => (sub.clone(), sub2.clone()).prop_map(|(a, b)| Gen {
            sql: format!("CASE WHEN {} IS NULL THEN {}::text ELSE 'x' END", a.sql, b.sql),
            mentions: [a.mentions, b.mentions].concat(),
        }),
        1 => (sub.clone(), table()).prop_flat_map(move |(outer, t)| {
            // A correlated scalar subquery over another table.
            let alias = format!("s{depth}");
            let inner_scope = vec![(alias.clone(), t)];
            expr(inner_scope, 0).prop_map(move |inner| Gen {
                sql: format!(
                    "(SELECT max({}::text) FROM {} {alias} WHERE {}::text IS NOT NULL)",
                    inner.sql, TABLES[t].0, outer.sql
                ),
                mentions: [inner.mentions, outer.mentions.clone()].concat(),
            })
        }),
        1 => (sub, table()).prop_flat_map(move |(outer, t)| {
            let alias = format!("x{depth}");
            column_of(t).prop_map(move |c| Gen {
                sql: format!(
                    "EXISTS (SELECT 1 FROM {} {alias} WHERE {alias}.{c}::text = {}::text)",
                    TABLES[t].0, outer.sql
                ),
                mentions: [outer.mentions.clone(), vec![(TABLES[t].0.to_owned(), c.clone())]].concat(),
            })
        }),
    ]
    .boxed()
}

/// A SELECT over one to three joined tables, with WHERE, ORDER BY, maybe a CTE or a derived
/// table.
fn query() -> impl Strategy<Value = Gen> {
    (proptest::collection::vec(table(), 1..4), 0..3u8).prop_flat_map(|(tables, wrap)| {
        let scope: Vec<(String, usize)> = tables
            .iter()
            .enumerate()
            .map(|(i, &t)| (format!("t{i}"), t))
            .collect();
        let from = {
            let mut from = format!("{} t0", TABLES[tables[0]].0);
            for (i, &t) in tables.iter().enumerate().skip(1) {
                from.push_str(&format!(
                    " JOIN {} t{i} ON t{i}.id = t{}.id",
                    TABLES[t].0,
                    i - 1
                ));
            }
            from
        };
        let joins: Vec<(String, String)> = tables
            .iter()
            .enumerate()
            .flat_map(|(i, &t)| {
                let mut v = vec![(TABLES[t].0.to_owned(), "id".to_owned())];
                if i == 0 && tables.len() == 1 {
                    v.clear();
                }
                v
            })
            .collect();
        (
            proptest::collection::vec(expr(scope.clone(), 2), 1..4),
            expr(scope.clone(), 2),
            expr(scope, 1),
        )
            .prop_map(move |(select, filter, order)| {
                let list: Vec<String> = select.iter().map(|g| g.sql.clone()).collect();
                let mut mentions: Vec<(String, String)> = select
                    .iter()
                    .flat_map(|g| g.mentions.clone())
                    .chain(filter.mentions.clone())
                    .chain(order.mentions.clone())
                    .collect();
                mentions.extend(joins.clone());
                let core = format!(
                    "SELECT {} FROM {from} WHERE {}::text IS NOT NULL ORDER BY {}",
                    list.join(", "),
                    filter.sql,
                    order.sql
                );
                let sql = match wrap {
                    0 => core,
                    1 => format!("WITH q AS ({core}) SELECT * FROM q"),
                    _ => format!("SELECT d.* FROM ({core}) d"),
                };
                Gen { sql, mentions }
            })
    })
}

fn schema_of(table: &str) -> (&str, &str) {
    match table.split_once('.') {
        Some((s, t)) => (s, t),
        None => ("public", table),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Generated queries over the test catalog analyse completely, and every column they
    /// mention is in the result, against its table.
    #[test]
    fn generated_queries_count_every_column(g in query()) {
        let catalog = catalog();
        let access = Analyzer::new(4).access(&g.sql, ON, catalog.as_ref());
        prop_assert!(access.parse_error.is_none(), "{}: {:?}", g.sql, access.parse_error);
        let s = &access.statements[0];
        prop_assert!(s.unresolved.is_empty(), "{}: {:?}", g.sql, s.unresolved);
        for (table, column) in &g.mentions {
            let (schema, name) = schema_of(table);
            let rel = s.relation(schema, name);
            prop_assert!(
                rel.is_some_and(|r| r.read && r.read_columns.contains(column)),
                "{}: {}.{} not counted in {:?}", g.sql, table, column, s.relations
            );
        }
        // Nothing is counted that the text does not name.
        let named: BTreeSet<&str> = g.mentions.iter().map(|(t, _)| t.as_str()).collect();
        for r in &s.relations {
            let full = r.relation.to_string();
            let short = full.strip_prefix("public.").unwrap_or(&full).to_owned();
            prop_assert!(named.contains(short.as_str()), "{}: {} is not in the text", g.sql, full);
        }
    }

    /// Unqualified references resolve like qualified ones when only one table has the column.
    #[test]
    fn unqualified_columns_resolve(t in table(), pick in any::<proptest::sample::Index>()) {
        let (table, columns) = TABLES[t];
        let column = columns[pick.index(columns.len())];
        let sql = format!("SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}");
        let access = Analyzer::new(4).access(&sql, ON, catalog().as_ref());
        let (schema, name) = schema_of(table);
        let s = &access.statements[0];
        prop_assert!(s.unresolved.is_empty());
        let rel = s.relation(schema, name).unwrap();
        prop_assert_eq!(&rel.read_columns, &ColumnSet::Columns(vec![column.to_owned()]));
    }

    /// Any text: no panic, and either a parse error (refused) or statements that match the
    /// shape's commands.
    #[test]
    fn arbitrary_text_never_panics(sql in any::<String>()) {
        let a = Analyzer::new(8).access(&sql, ON, catalog().as_ref());
        prop_assert_eq!(a.parse_error.is_some(), a.shape.parse_error.is_some());
        prop_assert_eq!(a.statements.len(), a.shape.commands.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let sql = String::from_utf8_lossy(&bytes);
        Analyzer::new(8).access(&sql, ON, catalog().as_ref());
    }

    /// SQL-ish token soup: parses sometimes, never panics, and whatever parses has its
    /// statements.
    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(SOUP), 0..40)) {
        let sql = tokens.join(" ");
        let a = Analyzer::new(8).access(&sql, ON, catalog().as_ref());
        prop_assert_eq!(a.statements.len(), a.shape.commands.len());
    }
}

/// Templates whose `{}` take literals of any kind: every filling must analyse alike.
const TEMPLATES: &[&str] = &[
    "SELECT ssn FROM patients WHERE id = {} AND zip IN ({}, {}) LIMIT {}",
    "INSERT INTO patients (id, mrn) VALUES ({}, {}) ON CONFLICT (id) DO UPDATE SET mrn = {} RETURNING ssn",
    "UPDATE encounters e SET notes = {} FROM patients p WHERE p.id = e.patient_id AND p.ssn = {}",
    "WITH c AS (SELECT {} AS v, mrn FROM patients WHERE id > {}) DELETE FROM encounters USING c WHERE notes = c.mrn",
    "EXPLAIN (ANALYZE {}) DELETE FROM diagnoses WHERE id = {}",
    "COPY (SELECT {}, ssn FROM patients ORDER BY {}) TO STDOUT",
    "SELECT set_config({}, {}, false), pg_read_file({}) FROM patients GROUP BY {}",
    "PREPARE p AS SELECT * FROM patients WHERE mrn = $1 AND zip = {}; EXECUTE p({})",
    "SELECT CASE WHEN ssn = {} THEN {} ELSE phone END FROM patients ORDER BY {}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn one_shape_one_access(
        template in proptest::sample::select(TEMPLATES),
        seeds in proptest::collection::vec((any::<u32>(), any::<u32>()), 6),
    ) {
        let kinds: Vec<u32> = seeds.iter().map(|s| s.0 % 4).collect();
        let fill = |pick: fn(&(u32, u32)) -> u32| {
            let mut sql = template.to_owned();
            for (seed, kind) in seeds.iter().zip(&kinds) {
                let v = pick(seed);
                let lit = match kind {
                    0 => format!("{}", v % 100_000),
                    1 => format!("'v{v}'"),
                    2 => format!("{}.{}", v % 1000, v % 7),
                    _ => format!("$q$x{v}$q$"),
                };
                sql = sql.replacen("{}", &lit, 1);
            }
            sql
        };
        let (a, b) = (fill(|s| s.0), fill(|s| s.1));
        let catalog = catalog();
        let x = Analyzer::new(4).access(&a, ON, catalog.as_ref());
        let y = Analyzer::new(4).access(&b, ON, catalog.as_ref());
        prop_assert_eq!(&x.statements, &y.statements);
        prop_assert_eq!(&x.parse_error, &y.parse_error);
    }
}

const SOUP: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "JOIN",
    "LEFT",
    "ON",
    "USING",
    "(",
    ")",
    ",",
    ";",
    "*",
    "p",
    "p.*",
    "patients",
    "encounters",
    "e",
    "AS",
    "ssn",
    "id",
    "p.id",
    "e.patient_id",
    "=",
    "AND",
    "OR",
    "WITH",
    "x",
    "x.id",
    "UNION",
    "ALL",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "count(*)",
    "1",
    "'a'",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "RETURNING",
    "LATERAL",
    "EXISTS",
    "IN",
    "NOT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "OVER",
    "PARTITION",
    "row_to_json(p)",
    "::text",
    "COPY",
    "TO",
    "STDOUT",
    "EXPLAIN",
    "ANALYZE",
    "MERGE",
    "MATCHED",
    "DO",
    "NOTHING",
    "CONFLICT",
    "TABLE",
    "billing.claims",
    "c",
    "c.amount",
    "FILTER",
    "LIMIT",
];

/// Whether `patients.ssn` is read other than as a bare output column of the client's result
/// (what masking refuses for a masked column), statement by statement.
#[test]
fn derived_use_of_a_column() {
    let catalog = catalog();
    let analyzer = Analyzer::new(100);
    let derived = |sql: &str| -> bool {
        let access = analyzer.access(sql, ON, catalog.as_ref());
        assert!(access.parse_error.is_none(), "{sql}: {access:?}");
        access.statements.iter().any(|s| {
            s.relations
                .iter()
                .any(|r| r.relation.name == "patients" && r.derived_columns.contains("ssn"))
        })
    };
    let bare = [
        "SELECT ssn FROM patients",
        "SELECT id, ssn AS s FROM patients WHERE id = 1",
        "SELECT * FROM patients",
        "SELECT p.* FROM patients p",
        "SELECT ssn FROM patients ORDER BY id",
        "SELECT ssn FROM patients ORDER BY 2 DESC, id",
        "SELECT ssn, id FROM patients ORDER BY 2",
        "SELECT ssn AS x, id FROM patients ORDER BY id",
        "SELECT * FROM patients ORDER BY 1",
        "SELECT p.* FROM patients p ORDER BY id",
        "SELECT ssn, count(*) OVER (PARTITION BY 1) FROM patients",
        "SELECT ssn AS id FROM patients GROUP BY id",
        "WITH c AS (SELECT ssn, id FROM patients ORDER BY 2) SELECT ssn FROM c",
        "SELECT s.ssn FROM (SELECT ssn FROM patients) s",
        "WITH c AS (SELECT ssn FROM patients) SELECT ssn FROM c",
        "SELECT ssn FROM patients p JOIN encounters e ON e.patient_id = p.id",
        "EXPLAIN SELECT ssn FROM patients",
        "DECLARE c CURSOR FOR SELECT ssn FROM patients",
        "PREPARE q AS SELECT ssn FROM patients WHERE id = $1",
        "SELECT ssn FROM patients LIMIT 5",
    ];
    for sql in bare {
        assert!(!derived(sql), "bare, but counted derived: {sql}");
    }
    let derived_uses = [
        "SELECT upper(ssn) FROM patients",
        "SELECT ssn || '' FROM patients",
        "SELECT ssn::text FROM patients",
        "SELECT left(ssn, 3) AS area FROM patients",
        "SELECT id FROM patients WHERE ssn = '123-45-6789'",
        "SELECT id FROM patients WHERE ssn LIKE '9%'",
        "SELECT id, ssn FROM patients ORDER BY ssn",
        "SELECT id FROM patients ORDER BY 1, ssn",
        "SELECT ssn, count(*) FROM patients GROUP BY ssn",
        "SELECT count(DISTINCT ssn) FROM patients",
        "SELECT max(ssn) FROM patients",
        "SELECT row_to_json(p) FROM patients p",
        "SELECT p FROM patients p",
        "SELECT json_build_object('s', ssn) FROM patients",
        "SELECT ROW(ssn) FROM patients",
        "SELECT ARRAY[ssn] FROM patients",
        "SELECT (SELECT ssn FROM patients LIMIT 1)",
        "SELECT id FROM encounters WHERE patient_id IN (SELECT id FROM patients WHERE ssn > '5')",
        "SELECT EXISTS (SELECT 1 FROM patients WHERE ssn = 'x')",
        "SELECT ssn FROM patients UNION SELECT mrn FROM patients",
        "SELECT upper(s.ssn) FROM (SELECT ssn FROM patients) s",
        "WITH c AS (SELECT ssn FROM patients) SELECT md5(ssn) FROM c",
        "SELECT s.x FROM (SELECT upper(ssn) AS x FROM patients) s",
        "SELECT e.id FROM encounters e JOIN patients p ON p.ssn = e.notes",
        "SELECT DISTINCT ON (ssn) id FROM patients",
        "SELECT id, lag(ssn) OVER (ORDER BY id) FROM patients",
        "SELECT id FROM patients WHERE id = 1 AND CASE WHEN ssn > '5' THEN true END",
        "INSERT INTO encounters (notes) SELECT ssn FROM patients",
        "CREATE TABLE leak AS SELECT ssn FROM patients",
        "SELECT ssn INTO leak FROM patients",
        "CREATE VIEW leak AS SELECT ssn FROM patients",
        "UPDATE encounters SET notes = p.ssn FROM patients p WHERE p.id = encounters.patient_id",
        "UPDATE patients SET phone = ssn",
        "DELETE FROM patients WHERE ssn = 'x'",
        "UPDATE patients SET phone = '1' RETURNING ssn",
        "SELECT id FROM patients GROUP BY id HAVING max(ssn) > '5'",
        "SELECT t.s FROM patients p, LATERAL (SELECT p.ssn AS s) t WHERE t.s > '1'",
        // Positional, by output name, implicit (issue 11, item 2).
        "SELECT DISTINCT ssn FROM patients",
        "SELECT DISTINCT * FROM patients",
        "SELECT id, ssn FROM patients ORDER BY 2",
        "SELECT ssn FROM patients ORDER BY 1 USING >",
        "SELECT ssn FROM patients ORDER BY (1) NULLS FIRST",
        "SELECT id, ssn FROM patients GROUP BY 1, 2",
        "SELECT DISTINCT ON (2) id, ssn FROM patients",
        "SELECT ssn AS id FROM patients ORDER BY id",
        "SELECT ssn AS x FROM patients GROUP BY x",
        "SELECT ssn AS x, count(*) FROM patients GROUP BY ROLLUP (x)",
        "SELECT ssn, count(*) FROM patients GROUP BY GROUPING SETS ((1), ())",
        "SELECT * FROM patients ORDER BY 6",
        "SELECT * FROM patients ORDER BY ssn",
        "SELECT p.* FROM patients p ORDER BY 6",
        "SELECT id, p.* FROM patients p ORDER BY 7 DESC",
        "SELECT * FROM patients JOIN encounters USING (id) ORDER BY 3",
        "SELECT * FROM patients NATURAL JOIN encounters ORDER BY 2",
        "SELECT j.* FROM (patients p JOIN encounters e ON e.patient_id = p.id) AS j ORDER BY 6",
        "WITH c AS (SELECT ssn FROM patients ORDER BY 1) SELECT ssn FROM c",
        "SELECT ssn FROM (SELECT ssn FROM patients ORDER BY 1 LIMIT 5) s",
        "SELECT s.ssn FROM (SELECT ssn FROM patients) s ORDER BY 1",
        "SELECT ssn FROM patients ORDER BY 1 FETCH FIRST 3 ROWS WITH TIES",
        "TABLE patients ORDER BY 6",
        "SELECT ssn FROM patients GROUP BY (1)",
        "SELECT ssn FROM patients GROUP BY ssn",
        "DECLARE c CURSOR FOR SELECT ssn FROM patients ORDER BY 1",
    ];
    for sql in derived_uses {
        assert!(derived(sql), "derived, but counted bare: {sql}");
    }
}

/// Output columns computed from constants, parameters and reviewed functions are known one by
/// one; whether they are does not depend on a literal's value, so texts of one shape (a literal
/// or a parameter in its place) share the analysis.
#[test]
fn outputs_without_stored_data() {
    use vigil_sql::access::outputs::BuiltinKind;
    use vigil_sql::OutputOrigin::{MayBeStored as STORED, NoStoredData as FREE};
    let analyzer = Analyzer::new(100);
    let known = catalog().with_shadowing(BTreeSet::new());
    let outputs = |sql: &str, catalog: &StaticCatalog| {
        let a = analyzer.access(sql, ON, catalog);
        assert!(a.is_complete(), "{sql}");
        a.statements
            .iter()
            .map(|s| s.outputs.as_deref().map(<[_]>::to_vec))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outputs(
            "SELECT now(), current_date, '2020-01-01'::date, 90 AS age",
            &known
        ),
        [Some(vec![FREE; 4])]
    );
    assert_eq!(
        outputs(
            "SELECT now(); SELECT ssn, now()::text FROM patients; SELECT * FROM patients",
            &known
        ),
        [Some(vec![FREE]), Some(vec![STORED, FREE]), None]
    );
    let a = analyzer.access("SELECT 'x', 90 AS age", ON, &known);
    let b = analyzer.access("SELECT $1, $2 AS age", ON, &known);
    assert_eq!(a.statements[0].outputs, b.statements[0].outputs);
    // The gateway's catalog says which reviewed names the database defines elsewhere.
    let shadowed =
        catalog().with_shadowing(BTreeSet::from([(BuiltinKind::Function, "now".into())]));
    assert_eq!(
        outputs("SELECT now(), 1", &shadowed),
        [Some(vec![STORED, FREE])]
    );
    // A catalog that does not know trusts no unqualified name.
    assert_eq!(
        outputs("SELECT now(), 1", &catalog()),
        [Some(vec![STORED, FREE])]
    );
}
