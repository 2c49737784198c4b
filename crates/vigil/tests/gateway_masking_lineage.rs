//! Result columns that carry nothing stored, through the real gateway: values computed only
//! from the statement's constants, its bind parameters and reviewed functions (`now()`,
//! `current_date`, `'2020-01-01'::date`, `90 AS age`) come back as the server computed them,
//! in text (psql, simple protocol) and binary (tokio-postgres, extended protocol) formats,
//! where they used to be withheld or redacted as the dates and ages they look like. Anything
//! derived from a column stays masked, including what only looks constant: a scalar subquery, a
//! CTE's column, a function over a row, a set operation's other branch, and a function or
//! operator the database defines over PostgreSQL's own name.

mod support;

use support::*;
use tokio_postgres::NoTls;

const SCHEMA: &str = "CREATE TABLE patients (
    id int PRIMARY KEY,
    ssn text UNIQUE,
    dob date,
    age int,
    notes text);
CREATE TABLE free_notes (id int PRIMARY KEY, note text);
CREATE TABLE places (id int PRIMARY KEY, place text);
INSERT INTO places VALUES (1, '82501 Riverton WY'), (2, '52 patients from Riverton WY'),
  (5, 'Riverton WY, 12 beds'), (6, 'to 12 Riverton WY 82501'),
  (3, '12 Oak St Riverton WY'), (4, 'lives at 45 Harbor Way');
INSERT INTO patients VALUES
  (1, '123-45-6789', '1984-03-07', 93, 'callback (617) 555-0142, SSN 234-56-7890 on file');
INSERT INTO free_notes VALUES (1, 'SSN 345-67-8901 on file');
-- Functions and an operator over PostgreSQL's own names, reading stored data: an unqualified
-- call may reach them (an overload that fits better, a search path that puts pg_catalog last).
CREATE FUNCTION public.upper(integer) RETURNS text LANGUAGE sql
    AS $$ SELECT note FROM free_notes WHERE id = 1 $$;
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql
    AS $$ SELECT note FROM free_notes WHERE id = 1 $$;
CREATE FUNCTION public.leak(integer, text) RETURNS text LANGUAGE sql
    AS $$ SELECT note FROM free_notes WHERE id = 1 $$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = text, FUNCTION = public.leak);";

const MASKING: &str = r#"
[masking]

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[[masking.rules]]
name = "dob"
columns = ["patients.dob"]
entity = "date"
operator = "generalize"

[masking.detectors]
skip_columns = ["*.id"]
"#;

fn setup() -> (PgCluster, VigilConfig, Vigil, String) {
    let pg = PgCluster::start();
    pg.sql("postgres", SCHEMA);
    let mut cfg = VigilConfig::new(&pg);
    cfg.extra = MASKING.to_string();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start(&cfg);
    (pg, cfg, vigil, token)
}

fn psql_ok(vigil: &Vigil, token: &str, sql: &str) -> String {
    let (ok, out, err) = vigil.psql("etl", token, sql);
    assert!(ok, "{sql}: {err}");
    out
}

#[test]
fn constants_and_the_clock_come_back_in_text_and_derived_values_stay_masked() {
    let (pg, _cfg, vigil, token) = setup();
    let today = pg.sql("postgres", "SELECT current_date");
    let today = today.trim();

    // Values that come from no stored data: the real value, in every column.
    let out = psql_ok(
        &vigil,
        &token,
        "SELECT now(), current_date, '2020-01-01'::date, 90 AS age, now()::text, \
         DATE '1984-03-07' - 1, extract(year FROM now()), '123-45-6789' AS ssn",
    );
    let cols: Vec<&str> = out.split('|').collect();
    assert_eq!(cols.len(), 8, "{out}");
    assert!(cols[0].starts_with(today), "now(): {out}");
    assert_eq!(cols[1], today, "current_date: {out}");
    assert_eq!(cols[2], "2020-01-01", "a date literal: {out}");
    assert_eq!(cols[3], "90", "a constant named age: {out}");
    assert!(
        cols[4].starts_with(today) && !cols[4].contains("REDACTED"),
        "now()::text: {out}"
    );
    assert_eq!(cols[5], "1984-03-06", "date arithmetic on a literal: {out}");
    assert_eq!(cols[6], &today[..4], "{out}");
    // A rule matches computed columns by their label; the client's own literal is not stored.
    assert_eq!(cols[7], "123-45-6789", "a literal labelled ssn: {out}");
    // Several statements in one simple query: each result is planned with its own analysis.
    let out = psql_ok(
        &vigil,
        &token,
        "SELECT 'x'; SELECT dob, current_date FROM patients; SELECT 90 AS age",
    );
    assert_eq!(out, format!("x\n1984|{today}\n90"));
    // VALUES and set operations whose every branch is free of stored data.
    let out = psql_ok(
        &vigil,
        &token,
        "VALUES ('2020-01-01'::date, 95) UNION ALL SELECT current_date, 96",
    );
    assert_eq!(out, format!("2020-01-01|95\n{today}|96"));

    // Derived from a column: masked as before (rules and detectors; a date or an age over 89
    // that detectors find in a column of another type is withheld as NULL).
    let out = psql_ok(
        &vigil,
        &token,
        "SELECT dob, age, notes, age + 0 AS age2 FROM patients WHERE id = 1",
    );
    let cols: Vec<&str> = out.split('|').collect();
    assert_eq!(cols[0], "1984", "{out}");
    assert_eq!(cols[1], "", "an age over 89 in an age column: {out}");
    assert!(
        !cols[2].contains("234-56-7890") && !cols[2].contains("555-0142"),
        "{out}"
    );

    // Stored values, scanned: a city and its state are not a street address when a ZIP says
    // the code is a state's, or when no number comes before them; without the ZIP a number
    // before `Riverton WY` reads as a street (WY is also the abbreviation of Way), and recall
    // comes first.
    let out = psql_ok(&vigil, &token, "SELECT place FROM places ORDER BY id");
    assert_eq!(
        out,
        "[REDACTED:address]\n52 patients from Riverton WY\n[REDACTED:address]\nlives at [REDACTED:address]\nRiverton WY, 12 beds\nto 12 Riverton WY [REDACTED:zip]"
    );

    // Constant-looking expressions that read a column: still scanned.
    for sql in [
        // A scalar subquery.
        "SELECT (SELECT note FROM free_notes WHERE id = 1)",
        "SELECT (SELECT note FROM free_notes WHERE id = 1) || ''",
        "SELECT coalesce((SELECT note FROM free_notes LIMIT 1), 'none')",
        // A CTE's column.
        "WITH c AS (SELECT note FROM free_notes) SELECT note FROM c",
        "WITH c AS (SELECT note FROM free_notes) SELECT (SELECT note FROM c)",
        // A function over a row.
        "SELECT upper(f::text) FROM free_notes f",
        "SELECT format('%s', f) FROM free_notes f",
        // Another branch of a set operation.
        "SELECT 'constant' UNION ALL SELECT note FROM free_notes",
        "VALUES ('constant'), ((SELECT note FROM free_notes LIMIT 1))",
        // A function or operator the database defines over PostgreSQL's own name.
        "SELECT upper(1)",
        "SELECT 1 + 'x'::text",
        "SET search_path = public, pg_catalog; SELECT lower('x')",
    ] {
        let out = psql_ok(&vigil, &token, sql);
        assert!(
            !out.contains("345-67-8901"),
            "{sql}: the SSN came out: {out}"
        );
        assert!(out.contains("[REDACTED:ssn]"), "{sql}: {out}");
    }
    // Without Vigil, those would have returned the stored SSN: the tests above are real.
    let direct = pg.sql(
        "postgres",
        "SET search_path = public, pg_catalog; SELECT upper(1), 1 + 'x'::text, lower('x')",
    );
    assert_eq!(direct.matches("345-67-8901").count(), 3, "{direct}");
    // A CTE's constant is a column to the analysis: fail closed (detectors, a date withheld).
    let out = psql_ok(
        &vigil,
        &token,
        "WITH c AS (SELECT '1984-03-07'::date AS d) SELECT d FROM c",
    );
    assert_eq!(out, "", "a CTE column is not known to be constant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constants_clock_and_parameters_come_back_in_binary() {
    let (pg, _cfg, vigil, token) = setup();
    let (client, conn) = tokio_postgres::connect(&vigil.conn_string("etl", &token), NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let direct_url = format!(
        "host=127.0.0.1 port={} dbname=postgres user=postgres password={} sslmode=disable",
        pg.port, UPSTREAM_PASSWORD
    );
    let (direct, conn) = tokio_postgres::connect(&direct_url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });

    // Extended protocol, binary results: the server's bytes, as a direct connection gets them.
    let sql = "SELECT '2020-01-01'::date, 90 AS age, $1::text::date AS d, \
               TIMESTAMP '1984-03-07 10:00' AS seen, ARRAY[1, 2] AS arr, \
               123456789 AS ssn, $2::text AS p";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&"1990-12-25", &"SSN 234-56-7890"];
    let via = client.query_one(sql, &params).await.unwrap();
    let straight = direct.query_one(sql, &params).await.unwrap();
    for i in 0..via.len() {
        assert_eq!(
            via.columns()[i].type_(),
            straight.columns()[i].type_(),
            "column {i}: the type the server sent"
        );
        assert_eq!(
            via.get::<_, Raw>(i).0,
            straight.get::<_, Raw>(i).0,
            "column {i}: the bytes the server sent"
        );
        assert!(via.get::<_, Raw>(i).0.is_some(), "column {i} withheld");
    }
    // A label rule (`*.ssn`) does not retype a constant: the description the client got
    // when it prepared the statement agrees with the rows.
    assert_eq!(via.get::<_, i32>(5), 123456789);
    assert_eq!(via.get::<_, String>(6), "SSN 234-56-7890");
    let now = client
        .query_one("SELECT now(), current_date, now()::text", &[])
        .await
        .unwrap();
    assert!(now.get::<_, Raw>(0).0.is_some() && now.get::<_, Raw>(1).0.is_some());
    assert!(!now.get::<_, String>(2).contains("REDACTED"));

    // Derived from a column: masked, as before.
    let row = client
        .query_one(
            "SELECT dob, age, notes, ARRAY[id, 2] AS arr, \
             TIMESTAMP '1984-03-07 10:00' + (id - 1) * interval '1 s' AS seen \
             FROM patients WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1984");
    assert_eq!(
        row.get::<_, Raw>(1).0,
        None,
        "an age over 89 in an age column"
    );
    assert!(!row.get::<_, String>(2).contains("234-56-7890"));
    // Binary arrays are not readable by Vigil; timestamps are, and hold a date: withheld.
    assert_eq!(row.get::<_, Raw>(3).0, None);
    assert_eq!(row.get::<_, Raw>(4).0, None);
    for sql in [
        "SELECT (SELECT note FROM free_notes WHERE id = 1)",
        "SELECT upper(1)",
        "SELECT 1 + 'x'::text",
    ] {
        let row = client.query_one(sql, &[]).await.unwrap();
        let out: String = row.get(0);
        assert!(out.contains("[REDACTED:ssn]"), "{sql}: {out}");
    }
}

/// Any value, as the raw bytes of its binary form.
struct Raw(Option<Vec<u8>>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
