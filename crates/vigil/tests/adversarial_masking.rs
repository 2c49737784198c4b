//! Masked columns attacked through the real gateway (issue 11, items 2 and 4), as an attacker
//! holding a masked identity would: output columns used by position, by output name or
//! implicitly (DISTINCT, GROUP BY, `*`), and writes whose success depends on stored values of a
//! masked column (unique indexes, exclusion and check constraints, foreign keys both ways,
//! ON CONFLICT, MERGE, COPY FROM).
//!
//! - `probes_are_refused_and_never_run`: each probe, in the simple protocol (psql, and
//!   tokio-postgres' simple query) and in the extended protocol (tokio-postgres), is refused with
//!   `masked_column_derived` or `masked_column_compared`, and the server's `log_statement =
//!   all` log proves it never ran (every text carries a unique marker comment); legitimate
//!   statements beside them still run.
//! - `generated_statements_do_not_depend_on_masked_values`: the differential check of
//!   /work/shared/notes/adversarial-testing.md (section 2). Two databases hold the same rows,
//!   except that every masked value is replaced by another value with the same masked image
//!   (an SSN keeps its last four digits, a date its year, a ZIP code its first three digits;
//!   redacted columns take any value). A few hundred statements generated from a small grammar
//!   (positions, aliases, DISTINCT, GROUP BY, ROLLUP, windows, subqueries, CTEs, joins, set
//!   operations, LIMIT) run through Vigil on both: each must be refused on both, or give the
//!   client exactly the same answer (rows, order, count, command tag, error). Anything else
//!   would tell the client something about a masked value.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::*;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Constraints of every kind that compares a written row with stored values, on masked
/// columns; and a table whose masked column has none (writes to it must keep working).
const SCHEMA: &str = "
CREATE TABLE patients (
    id int PRIMARY KEY,
    mrn text NOT NULL UNIQUE,
    first_name text,
    last_name text,
    dob date,
    ssn text,
    city text,
    zip text,
    phone text,
    admitted date,
    CONSTRAINT dob_before_admission CHECK (dob < admitted),
    CONSTRAINT one_phone EXCLUDE USING btree (phone WITH =));
CREATE UNIQUE INDEX patients_ssn_key ON patients (ssn);
CREATE UNIQUE INDEX patients_lower_mrn ON patients (lower(mrn)) WHERE city IS NOT NULL;
CREATE TABLE encounters (
    id int PRIMARY KEY,
    patient_id int REFERENCES patients (id),
    patient_mrn text REFERENCES patients (mrn),
    note text);
CREATE TABLE visits (id int, ssn text, at date) PARTITION BY RANGE (id);
CREATE TABLE visits_1 PARTITION OF visits FOR VALUES FROM (0) TO (1000);
CREATE UNIQUE INDEX visits_1_ssn ON visits_1 (ssn);
CREATE TABLE free_notes (id int PRIMARY KEY, ssn text, dob date, note text);
";

const MASKING: &str = r#"
[masking]
hmac_key = "env:VIGIL_TEST_MASK_KEY"

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[[masking.rules]]
name = "names"
columns = ["*.first_name", "*.last_name"]
entity = "person_name"
operator = "redact"

[[masking.rules]]
name = "dob"
columns = ["*.dob"]
entity = "date"
operator = "generalize"

[[masking.rules]]
name = "mrn"
columns = ["*.mrn", "*.patient_mrn"]
entity = "mrn"
operator = "redact"

[[masking.rules]]
name = "zip"
columns = ["*.zip"]
entity = "zip"
operator = "generalize"

[[masking.rules]]
name = "phone"
columns = ["*.phone"]
entity = "phone"
operator = "redact"
"#;

const MASK_KEY: &str = "test-masking-key-0123456789abcdef0123456789";

const POLICY: &str = r#"
[[policies]]
name = "app"
identities = ["app"]
connections = ["ehr", "ehr_a", "ehr_b"]
[policies.scope]
commands = ["read", "write", "copy_in", "copy_out", "transaction", "session"]
relations = ["*"]
"#;

struct Setup {
    pg: PgCluster,
    _cfg: VigilConfig,
    vigil: Vigil,
    token: String,
}

/// One cluster (`log_statement = all`), three databases: `postgres` (connection `ehr`, the
/// probes), `ehr_a` and `ehr_b` (the differential's two copies).
fn setup() -> Setup {
    let pg = PgCluster::start_with(&["log_statement=all", "autovacuum=off"]);
    pg.sql("postgres", SCHEMA);
    pg.sql("postgres", &rows(&patients(Copy::A)));
    pg.sql("postgres", "CREATE DATABASE ehr_a");
    pg.sql("postgres", "CREATE DATABASE ehr_b");
    for (db, copy) in [("ehr_a", Copy::A), ("ehr_b", Copy::B)] {
        pg.sql(db, SCHEMA);
        pg.sql(db, &rows(&patients(copy)));
    }
    let mut cfg = VigilConfig::new(&pg);
    cfg.connection = ["ehr", "ehr_a", "ehr_b"]
        .iter()
        .map(|name| {
            let db = if *name == "ehr" { "postgres" } else { name };
            format!(
                "[[connections]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"postgres\"\npassword = \"env:VIGIL_TEST_UPSTREAM_PASSWORD\"\ntls = \"disable\"\n",
                pg.port
            )
        })
        .collect();
    cfg.identities = vec![(
        "app".into(),
        "connections = [\"ehr\", \"ehr_a\", \"ehr_b\"]\ngroups = []".into(),
    )];
    cfg.policies = POLICY.to_string();
    cfg.extra = MASKING.to_string();
    let token = cfg.create_token("app");
    let vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_MASK_KEY", MASK_KEY)]);
    Setup {
        pg,
        _cfg: cfg,
        vigil,
        token,
    }
}

async fn connect(vigil: &Vigil, db: &str, token: &str) -> Client {
    let conn = format!(
        "host=127.0.0.1 port={} dbname={db} user=app password={token} sslmode=disable",
        vigil.port
    );
    let (client, conn) = tokio_postgres::connect(&conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("app connects to {db} through vigil: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

// ---------------------------------------------------------------------------------------------
// The data: copy A, and copy B with every masked value replaced by one of the same image.

#[derive(Clone, Copy, PartialEq)]
enum Copy {
    A,
    B,
}

const PATIENTS: usize = 40;
const FIRST: [&str; 5] = ["Ada", "Ben", "Cleo", "Dara", "Eli"];
const LAST: [&str; 4] = ["Okafor", "Li", "Novak", "Diaz"];
const CITIES: [&str; 3] = ["Boston", "Salem", "Lowell"];

struct Patient {
    id: usize,
    mrn: String,
    first: &'static str,
    last: &'static str,
    dob: String,
    ssn: String,
    city: Option<&'static str>,
    zip: String,
    phone: String,
}

fn patients(copy: Copy) -> Vec<Patient> {
    // The same generator for both copies; copy B draws its masked values from another stream.
    let mut unmasked = Rng(7);
    let mut masked = Rng(if copy == Copy::A { 11 } else { 23 });
    // MRNs: a permutation of the same values (unique either way).
    let phone_offset = masked.below(10_000);
    let mut mrns: Vec<usize> = (0..PATIENTS).collect();
    if copy == Copy::B {
        for i in (1..mrns.len()).rev() {
            mrns.swap(i, masked.below(i + 1));
        }
    }
    (0..PATIENTS)
        .map(|i| {
            let city = (unmasked.below(6) != 0).then(|| CITIES[unmasked.below(3)]);
            let year = 1940 + unmasked.below(50);
            let zip3 = ["021", "018", "036"][unmasked.below(3)];
            Patient {
                id: i + 1,
                mrn: format!("MRN{:05}", 10_000 + mrns[i] * 7),
                first: FIRST[masked.below(FIRST.len())],
                last: LAST[masked.below(LAST.len())],
                dob: format!(
                    "{year}-{:02}-{:02}",
                    1 + masked.below(12),
                    1 + masked.below(28)
                ),
                // Unique last four digits: the masked image; the rest differs between copies.
                ssn: format!(
                    "{:03}-{:02}-{:04}",
                    100 + masked.below(800),
                    10 + masked.below(89),
                    1000 + i * 173
                ),
                city,
                zip: format!("{zip3}{:02}", masked.below(100)),
                // Unique (one_phone).
                phone: format!("617-555-{:04}", (i * 211 + phone_offset) % 10_000),
            }
        })
        .collect()
}

fn rows(patients: &[Patient]) -> String {
    let mut sql = String::from("INSERT INTO patients VALUES ");
    for (i, p) in patients.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let city = p.city.map_or("NULL".to_string(), |c| format!("'{c}'"));
        write!(
            sql,
            "({}, '{}', '{}', '{}', '{}', '{}', {city}, '{}', '{}', '2020-01-01')",
            p.id, p.mrn, p.first, p.last, p.dob, p.ssn, p.zip, p.phone
        )
        .unwrap();
    }
    sql.push_str(";\nINSERT INTO encounters VALUES ");
    for (i, p) in patients.iter().enumerate().take(30) {
        if i > 0 {
            sql.push_str(", ");
        }
        write!(sql, "({}, {}, '{}', 'note {}')", i + 1, p.id, p.mrn, i % 4).unwrap();
    }
    sql.push_str(";\nINSERT INTO free_notes VALUES (1, '999-99-1111', '1970-01-01', 'n')");
    sql
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Running statements.

/// What the client saw: rows (text) and command tags, or an error.
#[derive(Debug, PartialEq)]
enum Seen {
    Rows(Vec<String>),
    Error {
        code: String,
        message: String,
        detail: Option<String>,
    },
}

impl Seen {
    fn rule(&self) -> Option<&str> {
        match self {
            Seen::Error {
                detail: Some(d), ..
            } => d.strip_prefix("rule ").and_then(|d| d.split(',').next()),
            _ => None,
        }
    }
}

fn error(e: tokio_postgres::Error) -> Seen {
    match e.as_db_error() {
        // Vigil's DETAIL names the session's grant, which differs between connections.
        Some(db) => Seen::Error {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db
                .detail()
                .map(|d| d.split(", grant ").next().unwrap_or(d).to_string()),
        },
        None => Seen::Error {
            code: "none".into(),
            message: e.to_string(),
            detail: None,
        },
    }
}

async fn simple(client: &Client, sql: &str) -> Seen {
    match client.simple_query(sql).await {
        Ok(messages) => Seen::Rows(
            messages
                .iter()
                .map(|m| match m {
                    SimpleQueryMessage::Row(r) => (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL"))
                        .collect::<Vec<_>>()
                        .join("|"),
                    SimpleQueryMessage::CommandComplete(n) => format!("-- {n}"),
                    _ => "-- other".to_string(),
                })
                .collect(),
        ),
        Err(e) => error(e),
    }
}

/// How a probe is sent.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// psql (simple protocol).
    Psql,
    /// tokio-postgres' simple query.
    Simple,
    /// tokio-postgres' extended protocol.
    Extended,
}

const MODES: [(&str, Mode); 3] = [
    ("p", Mode::Psql),
    ("s", Mode::Simple),
    ("x", Mode::Extended),
];

async fn send(mode: Mode, vigil: &Vigil, token: &str, client: &Client, sql: &str) -> Seen {
    match mode {
        Mode::Psql => {
            let (port, token, sql) = (vigil.port, token.to_string(), sql.to_string());
            let (ok, out, err) =
                tokio::task::spawn_blocking(move || psql_at(port, "ehr", "app", &token, &sql))
                    .await
                    .unwrap();
            if ok {
                return Seen::Rows(out.lines().map(str::to_string).collect());
            }
            // `ERROR:  message` and `DETAIL:  rule …, grant …`.
            let field = |prefix: &str| {
                err.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .map(str::to_string)
            };
            Seen::Error {
                code: "psql".into(),
                message: field("ERROR:  ").unwrap_or(err.clone()),
                detail: field("DETAIL:  ")
                    .map(|d| d.split(", grant ").next().unwrap_or(&d).to_string()),
            }
        }
        Mode::Simple => simple(client, sql).await,
        Mode::Extended => extended(client, sql).await,
    }
}

/// The extended protocol (Parse/Bind/Execute), results as counted rows.
async fn extended(client: &Client, sql: &str) -> Seen {
    match client.query(sql, &[]).await {
        Ok(rows) => Seen::Rows(vec![format!("{} rows", rows.len())]),
        Err(e) => error(e),
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

// ---------------------------------------------------------------------------------------------
// Probes.

const DERIVED: &str = "masked_column_derived";
const COMPARED: &str = "masked_column_compared";

/// `(text, refused with this rule | None: allowed)`; `simple_only` texts cannot go through the
/// extended protocol (COPY FROM STDIN).
struct Probe {
    sql: &'static str,
    refused: Option<&'static str>,
    simple_only: bool,
}

const fn refused(sql: &'static str, rule: &'static str) -> Probe {
    Probe {
        sql,
        refused: Some(rule),
        simple_only: false,
    }
}

const fn allowed(sql: &'static str) -> Probe {
    Probe {
        sql,
        refused: None,
        simple_only: false,
    }
}

fn probes() -> Vec<Probe> {
    vec![
        // --- item 2: positions, output names, implicit comparisons
        refused("SELECT id, ssn FROM patients ORDER BY 2", DERIVED),
        refused("SELECT ssn FROM patients ORDER BY 1 DESC", DERIVED),
        refused("SELECT ssn FROM patients ORDER BY (1) NULLS FIRST", DERIVED),
        refused("SELECT id, ssn FROM patients ORDER BY 2 USING >", DERIVED),
        refused("SELECT DISTINCT ON (2) id, ssn FROM patients", DERIVED),
        refused("SELECT ssn, count(*) FROM patients GROUP BY 1", DERIVED),
        refused("SELECT DISTINCT ssn FROM patients", DERIVED),
        refused("SELECT DISTINCT dob FROM patients", DERIVED),
        refused("SELECT DISTINCT id, first_name FROM patients", DERIVED),
        refused("SELECT ssn FROM patients GROUP BY ssn", DERIVED),
        refused("SELECT ssn AS id FROM patients ORDER BY id", DERIVED),
        refused("SELECT ssn AS x, count(*) FROM patients GROUP BY x", DERIVED),
        refused("SELECT dob, count(*) FROM patients GROUP BY ROLLUP (1)", DERIVED),
        refused("SELECT dob, count(*) FROM patients GROUP BY GROUPING SETS ((1), ())", DERIVED),
        refused("SELECT * FROM patients ORDER BY 6", DERIVED),
        refused("SELECT p.* FROM patients p ORDER BY ssn", DERIVED),
        refused("SELECT id, p.* FROM patients p ORDER BY 6 DESC", DERIVED),
        refused("TABLE patients ORDER BY 5", DERIVED),
        refused("SELECT * FROM patients JOIN encounters USING (id) ORDER BY 2", DERIVED),
        refused("WITH c AS (SELECT id, ssn FROM patients ORDER BY 2) SELECT id FROM c", DERIVED),
        refused("SELECT s.ssn FROM (SELECT ssn FROM patients) s ORDER BY 1", DERIVED),
        refused("SELECT id FROM (SELECT id, dob FROM patients ORDER BY 2 LIMIT 5) s", DERIVED),
        refused("SELECT ssn FROM patients ORDER BY 1 FETCH FIRST 1 ROWS WITH TIES", DERIVED),
        refused("SELECT ssn FROM patients UNION SELECT ssn FROM patients", DERIVED),
        refused("SELECT ssn, rank() OVER (ORDER BY ssn) FROM patients", DERIVED),
        refused("SELECT string_agg(city, ',' ORDER BY dob) FROM patients", DERIVED),
        // --- item 4: writes compared with stored values
        refused(
            "INSERT INTO patients (id, mrn, ssn) VALUES (900, 'MRN-NEW', '123-45-1000')",
            COMPARED,
        ),
        refused("UPDATE patients SET ssn = '123-45-1000' WHERE id = 1", COMPARED),
        refused("UPDATE patients SET mrn = 'MRN10007' WHERE id = 1", COMPARED),
        refused(
            "INSERT INTO patients (id, mrn) VALUES (1, 'MRN10007') ON CONFLICT ON CONSTRAINT patients_mrn_key DO NOTHING RETURNING id",
            DERIVED,
        ),
        refused(
            "INSERT INTO patients (id, mrn) VALUES (901, 'MRN10007') ON CONFLICT (mrn) DO UPDATE SET city = 'x' RETURNING id",
            DERIVED,
        ),
        refused(
            "INSERT INTO encounters (id, patient_mrn) VALUES (900, 'MRN10007')",
            COMPARED,
        ),
        refused("UPDATE encounters SET patient_mrn = 'MRN10007' WHERE id = 1", COMPARED),
        refused("UPDATE patients SET admitted = '1970-01-01' WHERE id = 1", COMPARED),
        refused("UPDATE patients SET phone = '617-555-0001' WHERE id = 1", COMPARED),
        // city is the predicate of a partial unique index on lower(mrn).
        refused("UPDATE patients SET city = 'Salem' WHERE id = 1", COMPARED),
        refused("DELETE FROM patients WHERE id = 40", COMPARED),
        refused(
            "MERGE INTO patients p USING (VALUES (1, '123-45-1000')) v(id, s) ON p.id = v.id WHEN MATCHED THEN UPDATE SET ssn = v.s",
            COMPARED,
        ),
        refused(
            "MERGE INTO patients p USING (VALUES ('123-45-1000')) v(s) ON p.ssn = v.s WHEN MATCHED THEN DO NOTHING",
            DERIVED,
        ),
        refused("INSERT INTO visits VALUES (1, '123-45-1000', now())", COMPARED),
        Probe {
            sql: "COPY patients (id, mrn, ssn) FROM STDIN",
            refused: Some(COMPARED),
            simple_only: true,
        },
        // --- legitimate uses keep working
        allowed("SELECT ssn FROM patients"),
        allowed("SELECT id, ssn, dob FROM patients ORDER BY id"),
        allowed("SELECT ssn, id FROM patients ORDER BY 2"),
        allowed("SELECT * FROM patients ORDER BY 1"),
        allowed("SELECT ssn AS id FROM patients GROUP BY id"),
        allowed("SELECT p.ssn, e.note FROM patients p JOIN encounters e ON e.patient_id = p.id ORDER BY e.id"),
        allowed("INSERT INTO free_notes (id, ssn, dob) VALUES (100, '123-45-1000', '1980-01-01') ON CONFLICT (id) DO NOTHING"),
        allowed("UPDATE free_notes SET ssn = '123-45-1001' WHERE id = 100"),
        allowed("INSERT INTO encounters (id, patient_id, note) VALUES (100, 1, 'n')"),
        allowed("UPDATE encounters SET note = 'm' WHERE id = 100"),
        allowed("DELETE FROM encounters WHERE id = 100"),
        allowed("UPDATE patients SET first_name = 'Zed' WHERE id = 2"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_refused_and_never_run() {
    let s = setup();
    let client = connect(&s.vigil, "ehr", &s.token).await;
    let mut failures = Vec::new();
    let probes = probes();
    let mut ran = 0;
    for (tag, mode) in MODES {
        for (i, p) in probes.iter().enumerate() {
            if mode == Mode::Extended && p.simple_only {
                continue;
            }
            let sql = format!("{} /* adv-{i}-{tag} */", p.sql);
            let seen = send(mode, &s.vigil, &s.token, &client, &sql).await;
            ran += 1;
            match (p.refused, &seen) {
                (Some(rule), _) if seen.rule() == Some(rule) => {}
                (None, Seen::Rows(_)) => {}
                _ => failures.push(format!(
                    "[{tag}] {}: expected {:?}, got {seen:?}",
                    p.sql,
                    p.refused.unwrap_or("allowed")
                )),
            }
        }
    }

    // A positional text must not borrow the analysis of another of its shape: allowed first,
    // then the same shape pointing at the masked column.
    for (i, (sql, rule)) in [
        ("SELECT ssn, id FROM patients ORDER BY 2", None),
        ("SELECT ssn, id FROM patients ORDER BY 1", Some(DERIVED)),
        ("SELECT ssn, id FROM patients GROUP BY 2", None),
        ("SELECT ssn, id FROM patients GROUP BY 1, 2", Some(DERIVED)),
    ]
    .into_iter()
    .enumerate()
    {
        for (tag, mode) in MODES {
            let text = format!("{sql} /* shape-{i}-{tag} */");
            let seen = send(mode, &s.vigil, &s.token, &client, &text).await;
            let ok = match rule {
                Some(rule) => seen.rule() == Some(rule),
                None => matches!(seen, Seen::Rows(_)),
            };
            if !ok {
                failures.push(format!("[{tag}] {sql}: expected {rule:?}, got {seen:?}"));
            }
        }
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = executed(&s.pg);
    for (tag, mode) in MODES {
        for (i, p) in probes.iter().enumerate() {
            if mode == Mode::Extended && p.simple_only {
                continue;
            }
            let in_log = log.contains(&format!("adv-{i}-{tag} "));
            match p.refused {
                Some(_) if in_log => {
                    failures.push(format!("[{tag}] REFUSED BUT EXECUTED: {}", p.sql))
                }
                None if !in_log => failures.push(format!(
                    "[{tag}] allowed but not in the server log: {}",
                    p.sql
                )),
                _ => {}
            }
        }
        for i in [1, 3] {
            if log.contains(&format!("shape-{i}-{tag} ")) {
                failures.push(format!("[{tag}] shape probe {i} executed"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} probes wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The refused writes changed nothing.
    assert_eq!(
        s.pg.sql(
            "postgres",
            "SELECT count(*) FROM patients WHERE id >= 900 OR ssn = '123-45-1000'"
        ),
        "0"
    );
    assert_eq!(s.pg.sql("postgres", "SELECT count(*) FROM visits"), "0");
    eprintln!("{ran} probe executions: refused ones never ran, allowed ones did");
}

// ---------------------------------------------------------------------------------------------
// The differential check.

/// A write whose outcome would depend on stored values if it were let through: run between
/// BEGIN and ROLLBACK. The guessed values are copy A's (so they differ from copy B's).
fn write(rng: &mut Rng, known: &[Patient]) -> String {
    let p = rng.pick(known);
    let k = p.id;
    let fresh = 500 + rng.below(400);
    let date = &p.dob[..7];
    match rng.below(14) {
        0 => format!("UPDATE patients SET admitted = DATE '{date}-15' WHERE id = {k}"),
        1 => format!("UPDATE patients SET phone = '{}' WHERE id = {}", p.phone, 1 + k % 40),
        2 => format!(
            "INSERT INTO patients (id, mrn, ssn, admitted) VALUES ({fresh}, 'MRN-{fresh}', '{}', '2020-01-01')",
            p.ssn
        ),
        3 => format!("INSERT INTO encounters (id, patient_mrn) VALUES ({fresh}, '{}')", p.mrn),
        4 => format!("DELETE FROM patients WHERE id = {k}"),
        5 => format!(
            "INSERT INTO patients (id, mrn, admitted) VALUES ({k}, '{}', '2020-01-01') ON CONFLICT ON CONSTRAINT patients_mrn_key DO NOTHING",
            p.mrn
        ),
        6 => format!("INSERT INTO visits VALUES ({}, '{}', now())", k, p.ssn),
        7 => format!("UPDATE patients SET dob = DATE '{date}-01' WHERE id = {k}"),
        // Allowed: nothing stored is compared with a masked column.
        8 => format!("UPDATE patients SET first_name = 'Zed' WHERE id = {k}"),
        9 => format!("UPDATE patients SET zip = '02199' WHERE id = {k} RETURNING id"),
        10 => format!(
            "INSERT INTO free_notes (id, ssn, dob) VALUES ({fresh}, '{}', DATE '{date}-02')",
            p.ssn
        ),
        11 => format!("DELETE FROM encounters WHERE patient_id = {k}"),
        12 => format!("UPDATE encounters SET patient_id = {k} WHERE id = {}", 1 + k % 30),
        _ => format!(
            "MERGE INTO free_notes f USING (VALUES ({fresh}, '{}')) v(id, s) ON f.id = v.id WHEN NOT MATCHED THEN INSERT (id, ssn) VALUES (v.id, v.s)",
            p.ssn
        ),
    }
}

/// A random SELECT over the test schema: positions, aliases, DISTINCT, GROUP BY, windows,
/// subqueries, CTEs, joins, set operations, LIMIT. Not always valid SQL: errors are compared
/// too.
fn statement(rng: &mut Rng) -> String {
    let core = core_select(rng);
    match rng.below(12) {
        0 => format!("SELECT * FROM ({core}) s{}", order_by_positions(rng, 3)),
        1 => format!(
            "WITH c AS ({core}) SELECT * FROM c{}",
            order_by_positions(rng, 3)
        ),
        2 => {
            let other = core_select(rng);
            let op = rng.pick(&["UNION ALL", "UNION", "INTERSECT", "EXCEPT"]);
            format!("({core}) {op} ({other})")
        }
        4 => format!("SELECT DISTINCT * FROM ({core}) s"),
        5 => format!(
            "SELECT count(*), count(DISTINCT s.*) FROM ({core}) s WHERE EXISTS (SELECT 1 FROM encounters e WHERE e.id = 1)"
        ),
        3 => format!("SELECT count(*) FROM ({core}) s"),
        _ => core,
    }
}

fn core_select(rng: &mut Rng) -> String {
    const MASKED: [&str; 7] = [
        "ssn",
        "first_name",
        "last_name",
        "dob",
        "mrn",
        "phone",
        "zip",
    ];
    const PLAIN: [&str; 3] = ["id", "city", "admitted"];
    const ALIASES: [&str; 7] = ["x", "y", "id", "ssn", "city", "dob", "n"];
    let join = rng.below(5);
    let from = match join {
        0 => "patients p JOIN encounters e ON e.patient_id = p.id",
        1 => "patients p LEFT JOIN encounters e USING (id)",
        2 => "patients p, LATERAL (SELECT p.ssn AS s, p.city AS c) l",
        _ => "patients p",
    };
    let mut items: Vec<(String, Option<String>)> = Vec::new();
    let grouped = rng.chance(20);
    let n = 1 + rng.below(3);
    for _ in 0..n {
        let item = match rng.below(12) {
            0..=2 => format!("p.{}", rng.pick(&MASKED)),
            3 => rng.pick(&MASKED).to_string(),
            4 | 5 => format!("p.{}", rng.pick(&PLAIN)),
            6 if !grouped => "*".to_string(),
            7 if !grouped => "p.*".to_string(),
            8 => "upper(p.city)".to_string(),
            9 if join == 0 => format!("e.{}", rng.pick(&["id", "note", "patient_mrn"])),
            10 if join == 2 => format!("l.{}", rng.pick(&["s", "c"])),
            11 if !grouped => rng
                .pick(&[
                    "row_number() OVER (ORDER BY p.id)",
                    "count(*) OVER (PARTITION BY p.city)",
                    "rank() OVER (ORDER BY 1)",
                    "count(*) OVER (PARTITION BY 1)",
                ])
                .to_string(),
            _ => "p.id".to_string(),
        };
        let alias =
            (!item.ends_with('*') && rng.chance(30)).then(|| rng.pick(&ALIASES).to_string());
        items.push((item, alias));
    }
    if grouped {
        items.push(("count(*)".to_string(), None));
    }
    let mut sql = String::from("SELECT ");
    match rng.below(8) {
        0 => sql.push_str("DISTINCT "),
        1 => write!(sql, "DISTINCT ON ({}) ", output_ref(rng, &items)).unwrap(),
        _ => {}
    }
    let list: Vec<String> = items
        .iter()
        .map(|(e, a)| match a {
            Some(a) => format!("{e} AS {a}"),
            None => e.clone(),
        })
        .collect();
    sql.push_str(&list.join(", "));
    write!(sql, " FROM {from}").unwrap();
    if rng.chance(40) {
        let filter = rng.pick(&[
            "p.id > 12",
            "p.city = 'Boston'",
            "p.id % 3 = 0",
            "p.city IS NULL",
        ]);
        write!(sql, " WHERE {filter}").unwrap();
    }
    if grouped {
        let keys: Vec<String> = (0..items.len() - 1)
            .map(|i| match rng.below(3) {
                0 => (i + 1).to_string(),
                1 => items[i].1.clone().unwrap_or_else(|| items[i].0.clone()),
                _ => items[i].0.clone(),
            })
            .collect();
        match rng.below(4) {
            0 => write!(sql, " GROUP BY ROLLUP ({})", keys.join(", ")).unwrap(),
            1 => write!(sql, " GROUP BY GROUPING SETS (({}), ())", keys.join(", ")).unwrap(),
            _ => write!(sql, " GROUP BY {}", keys.join(", ")).unwrap(),
        }
    }
    let ordered = rng.chance(60);
    if ordered {
        let k = 1 + rng.below(2);
        let keys: Vec<String> = (0..k)
            .map(|_| {
                let key = match rng.below(5) {
                    0 | 1 => output_ref(rng, &items),
                    2 => format!("p.{}", rng.pick(&PLAIN)),
                    3 => rng.pick(&MASKED).to_string(),
                    _ => (1 + rng.below(items.len() + 12)).to_string(),
                };
                let dir = *rng.pick(&["", " DESC", " NULLS FIRST", " USING >"]);
                format!("{key}{dir}")
            })
            .collect();
        write!(sql, " ORDER BY {}", keys.join(", ")).unwrap();
    }
    match rng.below(6) {
        0 => write!(sql, " LIMIT {}", 1 + rng.below(10)).unwrap(),
        1 => write!(sql, " LIMIT {} OFFSET {}", 1 + rng.below(10), rng.below(10)).unwrap(),
        2 if ordered => write!(sql, " FETCH FIRST {} ROWS WITH TIES", 1 + rng.below(5)).unwrap(),
        _ => {}
    }
    sql
}

/// An output column by position or by name.
fn output_ref(rng: &mut Rng, items: &[(String, Option<String>)]) -> String {
    let i = rng.below(items.len());
    match (&items[i].1, rng.below(2)) {
        (Some(alias), 0) => alias.clone(),
        _ => (i + 1).to_string(),
    }
}

fn order_by_positions(rng: &mut Rng, max: usize) -> String {
    if rng.chance(50) {
        format!(" ORDER BY {}", 1 + rng.below(max))
    } else {
        String::new()
    }
}

/// A read as it is; a write between BEGIN and ROLLBACK.
async fn run(client: &Client, sql: &str, writes: bool) -> Seen {
    if !writes {
        return simple(client, sql).await;
    }
    simple(client, "BEGIN").await;
    let seen = simple(client, sql).await;
    simple(client, "ROLLBACK").await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_statements_do_not_depend_on_masked_values() {
    let s = setup();
    let a = connect(&s.vigil, "ehr_a", &s.token).await;
    let b = connect(&s.vigil, "ehr_b", &s.token).await;
    // The copies differ in every masked value, and in nothing else.
    assert_ne!(
        s.pg.sql("ehr_a", "SELECT string_agg(ssn || dob || first_name || zip || mrn, ',' ORDER BY id) FROM patients"),
        s.pg.sql("ehr_b", "SELECT string_agg(ssn || dob || first_name || zip || mrn, ',' ORDER BY id) FROM patients"),
    );
    let seed: u64 = std::env::var("VIGIL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_207);
    let count: usize = std::env::var("VIGIL_DIFF_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let mut rng = Rng(seed);
    let known = patients(Copy::A);
    let started = Instant::now();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut leaks = Vec::new();
    for _ in 0..count {
        let writes = rng.chance(15);
        let sql = if writes {
            write(&mut rng, &known)
        } else {
            statement(&mut rng)
        };
        let (x, y) = (run(&a, &sql, writes).await, run(&b, &sql, writes).await);
        let kind = match (&x, x.rule()) {
            (_, Some(DERIVED | COMPARED)) => "refused (masking)",
            (_, Some(_)) => "refused (other)",
            (Seen::Rows(_), None) => "answered",
            (Seen::Error { .. }, None) => "server error",
        };
        *outcomes.entry(kind).or_default() += 1;
        if x != y {
            leaks.push(format!("{sql}\n    A: {x:?}\n    B: {y:?}"));
        }
    }
    eprintln!(
        "{count} generated statements in {:?} (seed {seed}): {outcomes:?}",
        started.elapsed()
    );
    assert!(
        leaks.is_empty(),
        "{} statements answer differently when masked values differ (each leaks them):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // The grammar must exercise both sides: many answers, many refusals.
    assert!(
        outcomes.get("answered").copied().unwrap_or(0) >= count / 5,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("refused (masking)").copied().unwrap_or(0) >= count / 5,
        "{outcomes:?}"
    );
}
