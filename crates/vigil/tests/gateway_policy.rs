//! Least privilege through the real gateway, with real clients, against real PostgreSQL.
//!
//! The table-driven test runs every statement twice (simple protocol, then extended protocol
//! through tokio-postgres) and proves that a refused statement never executed by reading the
//! server's own `log_statement = all` log: every text carries a unique marker comment, and an
//! executed statement appears there as `statement: …marker…` or `execute …: …marker…`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use support::*;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const SCHEMA: &str = "
CREATE TABLE patients (id int PRIMARY KEY, mrn text, last_name text, ssn text, dob date);
INSERT INTO patients VALUES (1, 'M1', 'Doe', 'LIT-SSN-111', '1970-01-01'), (2, 'M2', 'Roe', 'LIT-SSN-222', '1980-02-02');
CREATE TABLE encounters (id int, patient_id int, note text, at date);
INSERT INTO encounters VALUES (1, 1, 'n1', '2024-01-01'), (2, 2, 'n2', '2024-02-02');
CREATE TABLE diagnoses (id int, encounter_id int, code text);
CREATE TABLE side_log (n int);
CREATE TABLE secret_table (x int);
CREATE TABLE many (n int);
INSERT INTO many SELECT generate_series(1, 100);
CREATE SCHEMA billing;
CREATE TABLE billing.claims (id int, amount int);
CREATE TABLE billing.secret_rates (id int);
CREATE PROCEDURE p_x() LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
CREATE EXTENSION dblink;
CREATE SEQUENCE plan_side;
CREATE FUNCTION folded() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$BEGIN PERFORM nextval('plan_side'); RETURN 1; END$$;
CREATE FUNCTION bump() RETURNS int LANGUAGE plpgsql AS $$BEGIN INSERT INTO side_log VALUES (1); RETURN 1; END$$;
";

const POLICIES: &str = r#"
[[policies]]
name = "analyst"
identities = ["analyst"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "write", "transaction", "session", "copy_out"]
relations = ["public.patients", "public.encounters", "public.diagnoses", "public.side_*", "billing.*"]
deny_relations = ["billing.secret_*"]
deny_columns = { "public.patients" = ["ssn", "dob"] }
functions = ["pg_sleep"]

[[policies]]
name = "reader"
identities = ["reader"]
connections = ["ehr"]
[policies.scope]
commands = ["read", "transaction", "copy_out", "session"]
relations = ["public.encounters", "public.diagnoses", "public.many", "public.side_log"]
functions = ["bump"]
read_only = true

[[policies]]
name = "capped"
identities = ["capped"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["public.many"]
row_cap = 10
"#;

/// Allowed (`None`) or refused with this SQLSTATE.
type Expect = Option<&'static str>;
const OK: Expect = None;
const DENY: Expect = Some("42501");
const SYNTAX: Expect = Some("42601");
const NO_RELATION: Expect = Some("42P01");
const NO_COLUMN: Expect = Some("42703");
/// A prepared statement the session does not have (Vigil answers as PostgreSQL would, without
/// forwarding: it follows the session's names).
const NO_STATEMENT: Expect = Some("26000");

#[derive(Clone, Copy, PartialEq, Eq)]
enum Modes {
    Both,
    /// Several statements in one text: the extended protocol cannot carry them.
    SimpleOnly,
    /// COPY … TO STDOUT, which tokio-postgres reads only through `copy_out`.
    CopyOut,
}

struct Case {
    who: &'static str,
    sql: &'static str,
    expect: Expect,
    modes: Modes,
}

const fn case(who: &'static str, sql: &'static str, expect: Expect) -> Case {
    Case {
        who,
        sql,
        expect,
        modes: Modes::Both,
    }
}

const fn simple(who: &'static str, sql: &'static str, expect: Expect) -> Case {
    Case {
        who,
        sql,
        expect,
        modes: Modes::SimpleOnly,
    }
}

const fn copy_out(who: &'static str, sql: &'static str) -> Case {
    Case {
        who,
        sql,
        expect: OK,
        modes: Modes::CopyOut,
    }
}

const A: &str = "analyst";
const R: &str = "reader";

fn cases() -> Vec<Case> {
    vec![
        // --- command classes and plain reads
        case(A, "SELECT 1", OK),
        case(A, "VALUES (1), (2)", OK),
        case(A, "TABLE encounters", OK),
        case(A, "SELECT * FROM encounters", OK),
        case(A, "SELECT id, mrn, last_name FROM patients", OK),
        case(A, "SELECT count(*) FROM patients", OK),
        case(A, "SELECT upper(mrn) FROM patients WHERE id = 1", OK),
        case(A, "SELECT pg_sleep(0)", OK),
        case(A, "SHOW search_path", OK),
        case(A, "SET application_name = 'policy-test'", OK),
        case(A, "SET statement_timeout = 0", OK),
        case(A, "RESET application_name", OK),
        case(A, "BEGIN", OK),
        case(A, "COMMIT", OK),
        case(A, "VACUUM encounters", DENY),
        case(A, "CHECKPOINT", DENY),
        case(A, "LISTEN channel_x", DENY),
        case(A, "NOTIFY channel_x", DENY),
        case(A, "LOCK encounters", DENY),
        case(A, "ANALYZE encounters", DENY),
        case(A, "DISCARD PLANS", OK),
        // --- relations, wildcards, deny list
        case(A, "SELECT id, amount FROM billing.claims", OK),
        case(A, "SELECT * FROM billing.claims", OK),
        case(A, "SELECT * FROM billing.secret_rates", DENY),
        case(A, "SELECT id FROM billing.secret_rates", DENY),
        case(A, "SELECT x FROM secret_table", DENY),
        case(A, "SELECT count(*) FROM secret_table", DENY),
        case(A, "SELECT relname FROM pg_class LIMIT 1", DENY),
        case(A, "SELECT * FROM does_not_exist", NO_RELATION),
        case(A, "SELECT nope FROM encounters", NO_COLUMN),
        case(A, "SELECT e.id FROM encounters e JOIN secret_table s ON s.x = e.id", DENY),
        case(A, "SELECT id FROM encounters UNION SELECT x FROM secret_table", DENY),
        case(A, "SELECT id FROM encounters WHERE EXISTS (SELECT 1 FROM secret_table)", DENY),
        case(A, "SELECT * FROM side_log", OK),
        // Adversarial routes to a denied relation.
        case(A, "SELECT * FROM \"public\".\"secret_table\"", DENY),
        case(A, "SELECT x FROM secret_table AS encounters", DENY),
        case(A, "WITH encounters AS (SELECT x FROM secret_table) SELECT * FROM encounters", DENY),
        case(A, "WITH secret_table AS (SELECT 1 AS x) SELECT x FROM secret_table", OK),
        case(A, "SELECT * FROM billing.claims c, LATERAL (SELECT * FROM billing.secret_rates) r", DENY),
        case(A, "SELECT id FROM encounters WHERE id IN (TABLE billing.secret_rates)", DENY),
        case(A, "INSERT INTO side_log TABLE billing.secret_rates", DENY),
        case(A, "SELECT * FROM encounters WHERE EXISTS (SELECT FROM billing.secret_rates)", DENY),
        case(A, "MERGE INTO side_log USING billing.secret_rates r ON false WHEN NOT MATCHED THEN INSERT VALUES (r.id)", DENY),
        case(A, "EXPLAIN (FORMAT json) SELECT * FROM billing.secret_rates", DENY),
        case(A, "PREPARE q_secret AS SELECT * FROM billing.secret_rates", DENY),
        case(A, "SELECT * FROM ONLY billing.secret_rates", DENY),
        case(A, "SELECT e.id FROM encounters e WHERE e.id = (SELECT r.id FROM billing.secret_rates r LIMIT 1)", DENY),
        // --- denied columns, everywhere they can hide
        case(A, "SELECT ssn FROM patients", DENY),
        case(A, "SELECT id, dob FROM patients", DENY),
        case(A, "SELECT p.ssn FROM patients p", DENY),
        case(A, "SELECT public.patients.ssn FROM public.patients", DENY),
        case(A, "SELECT id FROM patients WHERE ssn = 'LIT-SSN-111'", DENY),
        case(A, "SELECT id FROM patients WHERE dob < DATE '1975-01-01'", DENY),
        case(A, "SELECT id FROM patients ORDER BY ssn", DENY),
        case(A, "SELECT id FROM patients ORDER BY dob DESC LIMIT 1", DENY),
        case(A, "SELECT count(*) FROM patients GROUP BY ssn", DENY),
        case(A, "SELECT mrn FROM patients GROUP BY mrn HAVING max(dob) > now()", DENY),
        case(A, "SELECT DISTINCT ON (ssn) id FROM patients", DENY),
        case(A, "SELECT id, rank() OVER (ORDER BY dob) FROM patients", DENY),
        case(A, "SELECT e.id FROM encounters e JOIN patients p ON p.id = e.patient_id AND p.ssn IS NOT NULL", DENY),
        case(A, "SELECT e.id FROM encounters e JOIN patients p ON p.id = e.patient_id", OK),
        case(A, "SELECT e.id FROM encounters e LEFT JOIN patients p ON p.ssn = e.note", DENY),
        case(A, "SELECT id FROM encounters WHERE patient_id IN (SELECT id FROM patients WHERE ssn LIKE 'LIT-9%')", DENY),
        case(A, "SELECT id FROM encounters WHERE patient_id IN (SELECT id FROM patients WHERE mrn = 'M1')", OK),
        case(A, "SELECT (SELECT ssn FROM patients LIMIT 1)", DENY),
        case(A, "SELECT x.s FROM (SELECT ssn AS s FROM patients) x", DENY),
        case(A, "SELECT x.id FROM (SELECT id, ssn FROM patients) x", DENY),
        case(A, "SELECT x.id FROM (SELECT id, mrn FROM patients) x", OK),
        case(A, "WITH x AS (SELECT ssn FROM patients) SELECT count(*) FROM x", DENY),
        case(A, "WITH x AS (SELECT id, mrn FROM patients) SELECT * FROM x", OK),
        case(A, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", OK),
        case(A, "SELECT id FROM encounters UNION SELECT length(ssn) FROM patients", DENY),
        case(A, "SELECT id FROM encounters INTERSECT SELECT id FROM patients", OK),
        case(A, "SELECT p.id FROM patients p, LATERAL (SELECT p.dob) d", DENY),
        case(A, "SELECT count(*) FILTER (WHERE ssn IS NULL) FROM patients", DENY),
        case(A, "SELECT string_agg(mrn, ',' ORDER BY dob) FROM patients", DENY),
        case(A, "SELECT coalesce(ssn, 'x') FROM patients", DENY),
        case(A, "SELECT id FROM patients p WHERE p.ssn IS NULL OR true", DENY),
        case(A, "SELECT * FROM patients", DENY),
        case(A, "SELECT p.* FROM patients p", DENY),
        case(A, "SELECT e.*, p.* FROM encounters e JOIN patients p ON p.id = e.patient_id", DENY),
        case(A, "SELECT p FROM patients p", DENY),
        case(A, "SELECT row_to_json(p) FROM patients p", DENY),
        case(A, "SELECT p::text FROM patients p", DENY),
        case(A, "SELECT * FROM encounters NATURAL JOIN patients", DENY),
        case(A, "SELECT id FROM encounters JOIN patients USING (id)", OK),
        case(A, "SELECT ctid FROM patients", OK),
        case(A, "SELECT xmin, ctid, id FROM patients", OK),
        case(A, "TABLE patients", DENY),
        case(A, "SELECT count(ssn) FROM patients", DENY),
        case(A, "SELECT id, ssn IS NULL FROM patients", DENY),
        case(A, "SELECT id FROM patients p WHERE p IS NOT NULL", DENY),
        case(A, "SELECT id FROM patients WHERE (patients.*)::text LIKE '%LIT-%'", DENY),
        case(A, "SELECT jsonb_agg(p) FROM patients p", DENY),
        case(A, "SELECT id FROM patients WHERE row(id, ssn) IS NOT NULL", DENY),
        case(A, "SELECT ARRAY(SELECT ssn FROM patients)", DENY),
        case(A, "VALUES ((SELECT dob FROM patients LIMIT 1))", DENY),
        case(A, "SELECT (SELECT p.ssn) FROM patients p", DENY),
        case(A, "SELECT id FROM patients, LATERAL (SELECT ssn) s", DENY),
        case(A, "SELECT id FROM patients GROUP BY id HAVING bool_or(ssn IS NULL)", DENY),
        case(A, "SELECT id FROM patients WINDOW w AS (ORDER BY dob)", DENY),
        case(A, "WITH unused AS (SELECT ssn FROM patients) SELECT 1", DENY),
        case(A, "SELECT id FROM ONLY patients WHERE ssn IS NULL", DENY),
        case(A, "SELECT id FROM patients TABLESAMPLE SYSTEM (50) WHERE dob IS NULL", DENY),
        case(A, "SELECT * FROM (SELECT id, mrn FROM patients) x", OK),
        // Adversarial spellings of a denied column.
        case(A, "SELECT id FROM patients WHERE patients IS NULL", DENY),
        case(A, "SELECT (p).ssn FROM patients p", DENY),
        case(A, "SELECT (p.*).ssn FROM patients p", DENY),
        case(A, "SELECT ssn(p) FROM patients p", DENY),
        case(A, "SELECT x4 FROM patients AS p(x1, x2, x3, x4)", DENY),
        case(A, "SELECT p.x4 FROM patients AS p(x1, x2, x3, x4)", DENY),
        case(A, "SELECT x4 FROM patients AS p(x1, x2, x3, x4), generate_series(1, 1) g", DENY),
        case(A, "SELECT x1 FROM patients AS p(x1, x2, x3)", OK),
        case(A, "SELECT x FROM (SELECT ssn FROM patients) AS t(x)", DENY),
        case(A, "SELECT ssn AS id FROM patients ORDER BY id", DENY),
        case(A, "SELECT mrn FROM patients ORDER BY ssn COLLATE \"C\"", DENY),
        case(A, "SELECT CASE WHEN ssn IS NULL THEN 1 END FROM patients", DENY),
        case(A, "SELECT id FROM patients WHERE EXISTS (SELECT 1 WHERE ssn IS NULL)", DENY),
        case(A, "SELECT id FROM encounters e WHERE EXISTS (SELECT 1 FROM patients WHERE patients.id = e.patient_id AND patients.dob > now())", DENY),
        case(A, "SELECT id FROM patients NATURAL JOIN (SELECT 'x'::text AS ssn) s", DENY),
        case(A, "SELECT id FROM patients JOIN (SELECT 'x' AS ssn) s USING (ssn)", DENY),
        case(A, "SELECT mrn FROM patients p WHERE (p.ssn, p.id) = ('a', 1)", DENY),
        case(A, "SELECT mrn FROM patients WHERE id = ANY (SELECT length(ssn) FROM patients)", DENY),
        case(A, "SELECT mrn FROM patients GROUP BY ROLLUP (mrn, dob)", DENY),
        case(A, "SELECT mrn FROM patients GROUP BY GROUPING SETS ((mrn), (dob))", DENY),
        case(A, "SELECT json_build_object('a', ssn) FROM patients", DENY),
        case(A, "SELECT id FROM patients WHERE ssn ~ '^LIT'", DENY),
        case(A, "SELECT id FROM patients p1 JOIN patients p2 USING (id) WHERE p2.ssn IS NULL", DENY),
        case(A, "SELECT * FROM encounters e JOIN LATERAL (SELECT ssn FROM patients WHERE id = e.patient_id) s ON true", DENY),
        case(A, "SELECT g FROM generate_series(1, 2) g, patients WHERE ssn IS NULL", DENY),
        case(A, "SELECT (SELECT max(ssn)) FROM patients", DENY),
        case(A, "SELECT mrn FROM patients ORDER BY (SELECT dob)", DENY),
        case(A, "SELECT \"ssn\" FROM \"patients\"", DENY),
        case(A, "SELECT ID FROM PUBLIC.PATIENTS WHERE SSN IS NULL", DENY),
        case(A, "SELECT U&\"\\0073sn\" FROM patients", DENY),
        case(A, "SELECT id FROM patients WHERE \"SSN\" IS NULL", NO_COLUMN),
        case(A, "INSERT INTO encounters (id, note) SELECT id, ssn FROM patients", DENY),
        case(A, "UPDATE patients SET mrn = ssn WHERE id = -1", DENY),
        // `excluded` is the row proposed for insertion (values the client gave, or defaults),
        // not the stored one: reading excluded.ssn reveals nothing stored.
        case(A, "INSERT INTO patients (id, mrn) VALUES (-9, 'M') ON CONFLICT (id) DO UPDATE SET mrn = excluded.ssn", OK),
        case(A, "INSERT INTO patients (id, mrn) VALUES (-9, 'M') ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn WHERE patients.dob IS NULL", DENY),
        case(A, "DELETE FROM patients WHERE id = -1", OK),
        // --- writes, RETURNING, INSERT … SELECT, UPDATE … FROM, DELETE … USING, MERGE
        case(A, "INSERT INTO encounters (id, patient_id, note) VALUES (1000, 1, 'LIT-NOTE-1')", OK),
        case(A, "INSERT INTO patients (id, mrn, ssn) VALUES (-5, 'M', 'LIT-SSN-999')", DENY),
        case(A, "INSERT INTO patients VALUES (-6, 'M', 'L', NULL, NULL)", DENY),
        case(A, "INSERT INTO patients (id, mrn) VALUES (-7, 'M') RETURNING ssn", DENY),
        case(A, "INSERT INTO patients (id, mrn) VALUES (-8, 'M') RETURNING *", DENY),
        case(A, "INSERT INTO side_log SELECT id FROM patients WHERE ssn IS NULL", DENY),
        case(A, "INSERT INTO side_log SELECT id FROM patients WHERE mrn IS NULL", OK),
        case(A, "INSERT INTO side_log SELECT x FROM secret_table", DENY),
        case(A, "UPDATE patients SET mrn = mrn WHERE id = -1", OK),
        case(A, "UPDATE patients SET ssn = NULL WHERE id = -1", DENY),
        case(A, "UPDATE patients SET mrn = mrn WHERE ssn = 'LIT-SSN-111'", DENY),
        case(A, "UPDATE patients SET mrn = mrn WHERE id = -1 RETURNING dob", DENY),
        case(A, "UPDATE encounters e SET note = p.mrn FROM patients p WHERE p.id = e.patient_id AND e.id = -1", OK),
        case(A, "UPDATE encounters e SET note = p.mrn FROM patients p WHERE p.id = e.patient_id AND p.ssn = ''", DENY),
        case(A, "DELETE FROM encounters WHERE id = -1", OK),
        case(A, "DELETE FROM patients WHERE ssn = 'LIT-SSN-222'", DENY),
        case(A, "DELETE FROM encounters e USING patients p WHERE p.id = e.patient_id AND p.dob IS NULL", DENY),
        case(A, "DELETE FROM encounters WHERE id = -1 RETURNING (SELECT max(ssn) FROM patients)", DENY),
        case(A, "MERGE INTO encounters e USING patients p ON e.patient_id = p.id WHEN MATCHED AND p.ssn IS NULL THEN DELETE", DENY),
        case(A, "MERGE INTO encounters e USING patients p ON e.patient_id = p.id AND e.id = -1 WHEN MATCHED THEN UPDATE SET note = p.mrn", OK),
        case(A, "SELECT id FROM encounters WHERE id = -1 FOR UPDATE", OK),
        case(A, "TRUNCATE billing.secret_rates", DENY),
        case(A, "WITH d AS (DELETE FROM encounters WHERE id = -1 RETURNING id) SELECT * FROM d", OK),
        case(A, "WITH d AS (UPDATE patients SET mrn = mrn WHERE id = -1 RETURNING ssn) SELECT * FROM d", DENY),
        // --- DDL, DO, CREATE FUNCTION
        case(A, "CREATE TABLE t_new (x int)", DENY),
        case(A, "CREATE TABLE t_new AS SELECT id FROM encounters", DENY),
        case(A, "SELECT id INTO t_into FROM encounters", DENY),
        case(A, "DROP TABLE encounters", DENY),
        case(A, "DROP TABLE IF EXISTS nothing_here", DENY),
        case(A, "ALTER TABLE encounters ADD COLUMN y int", DENY),
        case(A, "CREATE INDEX ON encounters (id)", DENY),
        case(A, "GRANT ALL ON patients TO PUBLIC", DENY),
        case(A, "COMMENT ON TABLE encounters IS 'LIT-COMMENT'", DENY),
        case(A, "CREATE VIEW v_ssn AS SELECT ssn FROM patients", DENY),
        case(A, "DO $$BEGIN INSERT INTO side_log VALUES (42); END$$", DENY),
        case(A, "DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END'", DENY),
        case(A, "CREATE FUNCTION f_leak() RETURNS text LANGUAGE sql AS 'SELECT ssn FROM patients LIMIT 1'", DENY),
        case(A, "CREATE OR REPLACE PROCEDURE p_x() LANGUAGE plpgsql AS $$BEGIN NULL; END$$", DENY),
        case(A, "CALL p_x()", DENY),
        case(A, "CREATE EXTENSION IF NOT EXISTS dblink", DENY),
        case(A, "LOAD 'plpgsql'", DENY),
        case(A, "ALTER SYSTEM SET work_mem = '1MB'", DENY),
        // --- functions reaching outside SQL
        case(A, "SELECT pg_read_file('/etc/passwd')", DENY),
        case(A, "SELECT pg_ls_dir('.')", DENY),
        case(A, "SELECT lo_import('/etc/passwd')", DENY),
        case(A, "SELECT set_config('search_path', 'billing', false)", DENY),
        case(A, "SELECT pg_terminate_backend(1)", DENY),
        case(A, "SELECT pg_cancel_backend(1)", DENY),
        case(A, "SELECT pg_reload_conf()", DENY),
        case(A, "SELECT pg_notify('c', 'LIT-PAYLOAD')", DENY),
        case(A, "SELECT query_to_xml('SELECT ssn FROM patients', true, true, '')", DENY),
        case(A, "SELECT dblink('host=x', 'SELECT 1')", DENY),
        case(A, "SELECT bump()", DENY),
        case(A, "SELECT public.bump()", DENY),
        // An IMMUTABLE function is evaluated when the statement is planned (at Bind, in the
        // extended protocol): refused before that, its side effect never happens.
        case(A, "SELECT folded()", DENY),
        case(A, "SELECT id FROM encounters WHERE id = folded()", DENY),
        case(A, "SELECT id FROM encounters WHERE pg_sleep(0) IS NOT NULL", OK),
        case(A, "SELECT pg_catalog.pg_read_file('/etc/passwd')", DENY),
        case(A, "SELECT \"pg_read_file\"('/etc/passwd')", DENY),
        case(A, "SELECT * FROM pg_read_file('/etc/passwd')", DENY),
        case(A, "SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a int)", DENY),
        case(A, "SELECT lo_export(1, '/tmp/vigil-lo-export')", DENY),
        case(A, "SELECT pg_sleep(0), set_config('role', 'postgres', false)", DENY),
        case(A, "SELECT current_setting('search_path')", OK),
        case(A, "SELECT pg_read_binary_file('/etc/passwd')", DENY),
        case(A, "SELECT pg_stat_file('/etc/passwd')", DENY),
        case(A, "SELECT dblink_exec('host=x', 'DROP TABLE t')", DENY),
        case(A, "SELECT lo_get(1)", DENY),
        case(A, "SELECT table_to_xml('patients', true, true, '')", DENY),
        case(A, "SELECT pg_catalog.set_config('role', 'postgres', false)", DENY),
        case(A, "SELECT \"set_config\"('role', 'postgres', false)", DENY),
        case(A, "VALUES (set_config('role', 'postgres', false))", DENY),
        case(A, "SELECT * FROM set_config('role', 'postgres', false)", DENY),
        case(A, "SELECT id FROM encounters ORDER BY set_config('role', 'postgres', false)", DENY),
        case(R, "SELECT set_config('default_transaction_read_only', 'off', false)", DENY),
        case(A, "SELECT id FROM encounters WHERE note = (SELECT pg_read_file('x'))", DENY),
        // --- SET ROLE, SESSION AUTHORIZATION, search_path
        case(A, "SET ROLE postgres", DENY),
        case(A, "RESET ROLE", DENY),
        case(A, "SET SESSION AUTHORIZATION postgres", DENY),
        case(A, "SET search_path = billing, public", DENY),
        case(A, "SET search_path TO public", DENY),
        case(A, "SET LOCAL search_path = billing", DENY),
        case(A, "RESET search_path", DENY),
        // --- COPY: table and query forms, PROGRAM, files, FROM
        copy_out(A, "COPY encounters TO STDOUT"),
        copy_out(A, "COPY patients (id, mrn) TO STDOUT"),
        copy_out(A, "COPY (SELECT id, last_name FROM patients) TO STDOUT"),
        case(A, "COPY patients TO STDOUT", DENY),
        case(A, "COPY patients (id, ssn) TO STDOUT", DENY),
        case(A, "COPY (SELECT dob FROM patients) TO STDOUT", DENY),
        case(A, "COPY (SELECT * FROM patients) TO STDOUT (FORMAT csv)", DENY),
        case(A, "COPY encounters TO PROGRAM 'touch /tmp/vigil-copy-program'", DENY),
        case(A, "COPY encounters TO '/tmp/vigil-copy-file'", DENY),
        case(A, "COPY encounters FROM STDIN", DENY),
        case(A, "COPY encounters FROM PROGRAM 'echo 1'", DENY),
        case(A, "COPY billing.secret_rates TO STDOUT", DENY),
        // --- EXPLAIN and EXPLAIN ANALYZE
        case(A, "EXPLAIN SELECT id FROM patients", OK),
        case(A, "EXPLAIN SELECT ssn FROM patients", DENY),
        case(A, "EXPLAIN ANALYZE SELECT id FROM encounters", OK),
        case(A, "EXPLAIN ANALYZE SELECT ssn FROM patients", DENY),
        case(A, "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM patients", DENY),
        case(A, "EXPLAIN ANALYZE DELETE FROM encounters WHERE id = -1", OK),
        case(A, "EXPLAIN ANALYZE CREATE TABLE t_ex AS SELECT 1", DENY),
        case(A, "EXPLAIN SELECT * FROM secret_table", DENY),
        // --- PREPARE / EXECUTE
        case(A, "PREPARE q_ok AS SELECT mrn FROM patients WHERE id = $1", OK),
        case(A, "EXECUTE q_ok(1)", OK),
        case(A, "PREPARE q_bad AS SELECT ssn FROM patients WHERE id = $1", DENY),
        case(A, "EXECUTE q_bad(1)", NO_STATEMENT),
        case(A, "EXECUTE never_prepared", NO_STATEMENT),
        case(A, "PREPARE q_del AS DELETE FROM patients WHERE dob IS NULL", DENY),
        case(A, "DEALLOCATE q_ok", OK),
        case(A, "EXECUTE q_ok(1)", NO_STATEMENT),
        // --- several statements in one text: one refused, nothing runs
        simple(A, "SELECT 1; SELECT ssn FROM patients", DENY),
        simple(A, "INSERT INTO side_log VALUES (7); SELECT ssn FROM patients", DENY),
        simple(A, "INSERT INTO side_log VALUES (8); DROP TABLE encounters", DENY),
        simple(A, "BEGIN; UPDATE encounters SET note = note WHERE id = -1; COMMIT", OK),
        simple(A, "BEGIN; DECLARE c1 CURSOR FOR SELECT mrn FROM patients; FETCH ALL c1; COMMIT", OK),
        simple(A, "BEGIN; DECLARE c2 CURSOR FOR SELECT ssn FROM patients; FETCH ALL c2; COMMIT", DENY),
        simple(A, "BEGIN; DECLARE c3 CURSOR FOR TABLE billing.secret_rates; FETCH ALL c3; COMMIT", DENY),
        simple(A, "SELECT 1; SELECT 2; SET ROLE postgres", DENY),
        simple(A, "SELECT id FROM encounters; SELECT pg_read_file('x')", DENY),
        simple(A, "SET application_name = 'a'; SET search_path = billing", DENY),
        // --- unparseable
        case(A, "SELEC 1", SYNTAX),
        case(A, "SELECT FROM WHERE", SYNTAX),
        case(A, "SELECT 'unterminated", SYNTAX),
        case(A, "DROP TABLE", SYNTAX),
        simple(A, "SELECT 1; SELEC ssn FROM patients", SYNTAX),
        // --- a read-only grant
        case(R, "SELECT id, note FROM encounters", OK),
        case(R, "SELECT count(*) FROM many", OK),
        case(R, "INSERT INTO encounters (id) VALUES (-1)", DENY),
        case(R, "UPDATE encounters SET note = note WHERE id = -1", DENY),
        case(R, "DELETE FROM encounters WHERE id = -1", DENY),
        // Refused at Bind in the extended protocol: the server never plans it (it would
        // refuse FOR UPDATE in a read-only transaction itself, with 25006).
        case(R, "SELECT id FROM encounters FOR UPDATE", DENY),
        case(R, "WITH d AS (DELETE FROM encounters WHERE id = -1 RETURNING id) SELECT * FROM d", DENY),
        case(R, "EXPLAIN ANALYZE DELETE FROM encounters WHERE id = -1", DENY),
        case(R, "EXPLAIN SELECT id FROM encounters", OK),
        case(R, "SELECT id FROM patients", DENY),
        case(R, "BEGIN READ WRITE", DENY),
        case(R, "SET default_transaction_read_only = off", DENY),
        case(R, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", DENY),
        case(R, "SHOW transaction_read_only", OK),
        case(R, "COPY encounters FROM STDIN", DENY),
        copy_out(R, "COPY (SELECT id FROM encounters) TO STDOUT"),
    ]
}

async fn connect(vigil: &Vigil, user: &str, token: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&vigil.conn_string(user, token), NoTls)
        .await
        .unwrap_or_else(|e| panic!("{user} connects through vigil: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `sql`; `Ok` or the SQLSTATE it failed with.
async fn run(client: &Client, sql: &str, extended: bool, copy: bool) -> Result<(), String> {
    let code = |e: tokio_postgres::Error| {
        e.code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
    };
    if copy {
        use futures_util::TryStreamExt;
        let stream = client.copy_out(sql).await.map_err(code)?;
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.map_err(code)?;
        assert!(!chunks.is_empty(), "{sql}: COPY returned nothing");
        return Ok(());
    }
    if extended {
        client.query(sql, &[]).await.map(|_| ()).map_err(code)
    } else {
        client.simple_query(sql).await.map(|_| ()).map_err(code)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_decided_and_refused_ones_never_run() {
    let pg = PgCluster::start_with(&["log_statement=all"]);
    pg.sql("postgres", SCHEMA);
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities = ["analyst", "reader", "capped"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                "connections = [\"ehr\"]\ngroups = []".to_string(),
            )
        })
        .collect();
    cfg.policies = POLICIES.to_string();
    let tokens: BTreeMap<&str, String> = ["analyst", "reader", "capped"]
        .into_iter()
        .map(|n| (n, cfg.create_token(n)))
        .collect();
    let vigil = Vigil::start(&cfg);

    let cases = cases();
    let mut refused = 0usize;
    let mut ran = 0usize;
    let mut failures = Vec::new();
    for extended in [false, true] {
        let mut clients = BTreeMap::new();
        for who in [A, R] {
            clients.insert(who, connect(&vigil, who, &tokens[who]).await);
        }
        for (i, c) in cases.iter().enumerate() {
            let copy = c.modes == Modes::CopyOut;
            if (c.modes == Modes::SimpleOnly && extended) || (copy && !extended) {
                continue;
            }
            let mode = if extended { "x" } else { "s" };
            let sql = format!("{} /* case-{i}-{mode} */", c.sql);
            let got = run(&clients[c.who], &sql, extended, copy).await;
            ran += 1;
            let expect = c.expect;
            let expected = expect.map(str::to_string).ok_or(());
            let matches = match (&got, expect) {
                (Ok(()), None) => true,
                (Err(code), Some(want)) => code == want,
                _ => false,
            };
            if !matches {
                failures.push(format!(
                    "[{mode}] {} as {}: expected {expected:?}, got {got:?}",
                    c.sql, c.who
                ));
            }
            // Vigil decides at Parse (and again at Bind and Execute) as it does at Query: a
            // text it cannot parse or resolve is refused there with PostgreSQL's own SQLSTATE,
            // and recorded, in both protocols.
            if expect.is_some() {
                refused += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = executed(&pg);
    for extended in [false, true] {
        let mode = if extended { "x" } else { "s" };
        for (i, c) in cases.iter().enumerate() {
            let marker = format!("case-{i}-{mode} ");
            let skipped = (c.modes == Modes::SimpleOnly && extended)
                || (c.modes == Modes::CopyOut && !extended);
            if skipped {
                continue;
            }
            let ran_upstream = log.contains(&marker);
            match c.expect {
                Some(_) if ran_upstream => {
                    failures.push(format!("[{mode}] REFUSED BUT EXECUTED: {}", c.sql))
                }
                None if !ran_upstream => failures.push(format!(
                    "[{mode}] allowed but not in the server log: {}",
                    c.sql
                )),
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} executions wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran >= 300, "only {ran} executions");

    // Side effects: the statements refused in a multi-statement text did not write.
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM side_log WHERE n IN (7, 8, 42)"
        ),
        "0"
    );
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM encounters"),
        "4",
        "two allowed INSERTs, nothing else"
    );
    assert!(!std::path::Path::new("/tmp/vigil-copy-program").exists());
    assert_eq!(
        pg.sql("postgres", "SELECT is_called FROM plan_side"),
        "f",
        "a refused statement was not even planned"
    );

    // One PolicyDenied per refusal, with the rule, and no literal anywhere in the trail.
    let store = cfg.store_path();
    // Written with the batch the refusal was in, before the client heard of it.
    let denied = records_of(&store, "PolicyDenied");
    if denied.len() != refused {
        let texts: Vec<String> = denied
            .iter()
            .map(|d| format!("{} {} {}", d["protocol"], d["rule"], d["text"]))
            .collect();
        panic!(
            "{} PolicyDenied records for {refused} refusals:\n{}",
            denied.len(),
            texts.join("\n")
        );
    }
    for d in &denied {
        assert!(d["rule"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
        assert!(
            d["fingerprint"].as_str().is_some_and(|f| f.len() == 16),
            "{d}"
        );
    }
    let all = serde_json::to_string(&audit_records(&store)).unwrap();
    for literal in ["LIT-", "/etc/passwd", "touch /tmp", "policy-test"] {
        assert!(!all.contains(literal), "the audit trail holds {literal:?}");
    }
    eprintln!("{ran} executions, {refused} refused, none of them ran upstream");

    second_line_read_only(&vigil, &pg, &tokens["reader"]).await;
    row_cap_truncates(&vigil, &tokens["capped"]).await;
    withheld_columns_when_the_catalog_is_stale(&vigil, &pg, &tokens["analyst"]).await;
    policy_commands(&cfg, &pg);
}

/// A write the analysis cannot see (inside a function the grant allows) meets the upstream's
/// read-only transaction mode.
async fn second_line_read_only(vigil: &Vigil, pg: &PgCluster, token: &str) {
    let before = pg.sql("postgres", "SELECT count(*) FROM side_log");
    for extended in [false, true] {
        let client = connect(vigil, R, token).await;
        let got = run(&client, "SELECT bump()", extended, false).await;
        assert_eq!(
            got,
            Err("25006".to_string()),
            "read-only transaction at the server"
        );
    }
    assert_eq!(pg.sql("postgres", "SELECT count(*) FROM side_log"), before);
}

/// Rows beyond the cap are withheld, with a notice, in both protocols.
async fn row_cap_truncates(vigil: &Vigil, token: &str) {
    let (client, mut conn) = tokio_postgres::connect(&vigil.conn_string("capped", token), NoTls)
        .await
        .unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                seen.lock().unwrap().push(n.message().to_string());
            }
        }
    });
    let simple_rows = client
        .simple_query("SELECT n FROM many")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(simple_rows, 10);
    let rows = client
        .query("SELECT n FROM many ORDER BY n", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[9].get::<_, i32>(0), 10);
    let under = client
        .query("SELECT n FROM many WHERE n <= 5", &[])
        .await
        .unwrap();
    assert_eq!(under.len(), 5);
    let n = notices.lock().unwrap().clone();
    assert!(
        n.iter().filter(|m| m.contains("row cap of 10")).count() >= 2,
        "{n:?}"
    );
}

/// The second line: a result column the grant denies comes back NULL even when the analysis
/// was misled (here: columns renamed behind the gateway's back, after the session read its
/// catalog).
async fn withheld_columns_when_the_catalog_is_stale(vigil: &Vigil, pg: &PgCluster, token: &str) {
    let client = connect(vigil, A, token).await;
    pg.sql(
        "postgres",
        "ALTER TABLE patients RENAME COLUMN last_name TO last_name_old; ALTER TABLE patients RENAME COLUMN ssn TO last_name",
    );
    // The session's catalog still says `last_name` is the allowed column.
    let rows = client
        .query("SELECT id, last_name FROM patients ORDER BY id", &[])
        .await
        .unwrap();
    for r in &rows {
        assert_eq!(r.get::<_, Option<String>>(1), None, "ssn withheld");
    }
    let simple = client
        .simple_query("SELECT last_name FROM patients")
        .await
        .unwrap();
    for m in simple {
        if let SimpleQueryMessage::Row(r) = m {
            assert_eq!(r.get(0), None);
        }
    }
    pg.sql(
        "postgres",
        "ALTER TABLE patients RENAME COLUMN last_name TO ssn; ALTER TABLE patients RENAME COLUMN last_name_old TO last_name",
    );
}

fn vigil_cli(cfg: &VigilConfig, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vigil_bin())
        .args(args)
        .env("VIGIL_TEST_UPSTREAM_PASSWORD", UPSTREAM_PASSWORD)
        .env("VIGIL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VIGIL_CONFIG", cfg.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vigil policy test|check|replay` against the same database and the traffic just recorded.
fn policy_commands(cfg: &VigilConfig, pg: &PgCluster) {
    let log_before = executed(pg);
    let test = |sql: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "test",
            "--identity",
            "analyst",
            "--connection",
            "ehr",
        ];
        args.extend_from_slice(extra);
        args.push(sql);
        vigil_cli(cfg, &args)
    };
    let (code, out, err) = test("SELECT id, mrn FROM patients WHERE id = 1 /* cli-1 */", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("allowed by policy \"analyst\""), "{out}");
    assert!(
        out.contains("relation public.patients [read] columns read: id, mrn"),
        "{out}"
    );
    let (code, out, _) = test("SELECT * FROM patients /* cli-2 */", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rule column_denied"), "{out}");
    let (code, out, _) = test("SELECT * FROM patients", &["--catalog-from", "none"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("undecided: without a catalog"), "{out}");
    let (code, out, _) = test("DROP TABLE patients", &["--catalog-from", "none"]);
    assert_eq!(code, 1, "refused whatever the catalog says: {out}");
    let url = format!(
        "postgres://postgres:{UPSTREAM_PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let (code, out, _) = test(
        "SELECT ssn FROM patients",
        &["--catalog-from", &url, "--json"],
    );
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["decision"], "refused");
    assert_eq!(v["verdict"]["rule"], "column_denied");
    assert_eq!(v["statements"][0]["relations"][0]["read_columns"][0], "ssn");
    let (code, _, err) = vigil_cli(
        cfg,
        &[
            "policy",
            "test",
            "--identity",
            "nobody",
            "--connection",
            "ehr",
            "SELECT 1",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        !executed(pg)[log_before.len()..].contains("cli-"),
        "policy test ran nothing"
    );

    let (code, out, _) = vigil_cli(
        cfg,
        &["policy", "check", "--config", cfg.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let bad = cfg.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(cfg.path()).unwrap().replace(
        "identities = [\"reader\"]",
        "identities = [\"reader\", \"ghost\"]",
    );
    std::fs::write(&bad, &text).unwrap();
    let (code, out, _) = vigil_cli(cfg, &["policy", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let line = text.lines().position(|l| l.contains("\"ghost\"")).unwrap() + 1;
    assert!(
        out.contains(&format!(
            "bad.toml:{line}: error: policy \"reader\": identities: identity \"ghost\""
        )),
        "{out}"
    );

    // Replay: a draft that stops denying `dob` and starts denying `encounters.note`.
    let draft = cfg.dir.path().join("draft.toml");
    std::fs::write(
        &draft,
        std::fs::read_to_string(cfg.path()).unwrap().replace(
            "deny_columns = { \"public.patients\" = [\"ssn\", \"dob\"] }",
            "deny_columns = { \"public.patients\" = [\"ssn\"], \"public.encounters\" = [\"note\"] }",
        ),
    )
    .unwrap();
    let (code, out, err) = vigil_cli(
        cfg,
        &[
            "policy",
            "replay",
            "--config",
            draft.to_str().unwrap(),
            "--since",
            "2000-01-01T00:00:00Z",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 1, "changes were found: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = v["changes"].as_array().unwrap();
    let has = |change: &str, text: &str| {
        changes.iter().any(|c| {
            c["change"] == change
                && c["text"].as_str().unwrap().contains(text)
                && c["identity"] == "analyst"
        })
    };
    assert!(
        has("newly_allowed", "SELECT id, dob FROM patients"),
        "{out}"
    );
    assert!(has("newly_allowed", "ORDER BY dob DESC"), "{out}");
    assert!(has("newly_refused", "TABLE encounters"), "{out}");
    assert!(has("newly_refused", "SELECT * FROM encounters"), "{out}");
    assert!(!has("newly_allowed", "ssn"), "{out}");
    assert!(!out.contains("LIT-"), "replay output is literal-free");
    assert_eq!(v["totals"]["not_replayable"], 0, "{out}");
    // The live config replayed against its own traffic changes nothing.
    let (code, out, err) = vigil_cli(
        cfg,
        &[
            "policy",
            "replay",
            "--config",
            cfg.path().to_str().unwrap(),
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("newly refused: 0; newly allowed: 0; not replayable: 0"),
        "{out}"
    );
}

/// Grants end: revocation through the CLI ends a busy session at its next statement and an
/// idle one at once; expiry (a short window) likewise; a closed window refuses the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_grants_end_sessions() {
    let pg = PgCluster::start();
    pg.sql(
        "postgres",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let mut cfg = VigilConfig::new(&pg);
    let soon = utc_in(Duration::from_secs(12));
    cfg.identities = ["ops", "brief", "late"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                "connections = [\"ehr\"]\ngroups = []".to_string(),
            )
        })
        .collect();
    cfg.policies = format!(
        r#"
[[policies]]
name = "ops"
identities = ["ops"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["t"]

[[policies]]
name = "brief"
identities = ["brief"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["t"]
window = {{ not_after = "{soon}" }}

[[policies]]
name = "late"
identities = ["late"]
connections = ["ehr"]
[policies.scope]
commands = ["read"]
relations = ["t"]
window = {{ not_after = "2001-01-01T00:00:00Z" }}
"#
    );
    let ops = cfg.create_token("ops");
    let brief = cfg.create_token("brief");
    let late = cfg.create_token("late");
    let vigil = Vigil::start(&cfg);
    // A session under a grant whose window closes in a few seconds (checked at the end).
    let (short, short_conn) = tokio_postgres::connect(&vigil.conn_string("brief", &brief), NoTls)
        .await
        .unwrap();
    let short_ended = tokio::spawn(short_conn);
    short.simple_query("SELECT x FROM t").await.unwrap();

    // A closed window refuses the login.
    let (ok, _, err) = vigil.psql("late", &late, "SELECT 1");
    assert!(
        !ok && err.contains("no grant allows identity \"late\""),
        "{err}"
    );

    // Two live sessions under ops' grant: one idle, one that will try another statement.
    let busy = connect(&vigil, "ops", &ops).await;
    let (idle, idle_conn) = tokio_postgres::connect(&vigil.conn_string("ops", &ops), NoTls)
        .await
        .unwrap();
    let idle_ended = tokio::spawn(idle_conn);
    busy.simple_query("SELECT x FROM t").await.unwrap();
    idle.simple_query("SELECT 1").await.unwrap();
    // And one in the middle of a long statement when the revocation lands.
    let sleeper = connect(&vigil, "ops", &ops).await;
    let sleeping = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let result = sleeper.simple_query("SELECT pg_sleep(30)").await;
        (result.map(|_| ()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (_, out, _) = vigil_cli(&cfg, &["grant", "list", "--identity", "ops", "--json"]);
    let grant: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(grant["state"], "live");
    assert_eq!(grant["policy"], "ops");
    let id = grant["id"].as_str().unwrap().to_string();
    let (code, _, err) = vigil_cli(
        &cfg,
        &["grant", "revoke", &id, "--reason", "rotation drill"],
    );
    assert_eq!(code, 0, "{err}");

    // The idle session is closed without sending anything.
    let ended = tokio::time::timeout(Duration::from_secs(5), idle_ended)
        .await
        .expect("the idle session is closed within seconds")
        .unwrap();
    let e = ended.expect_err("closed with an error");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    // The running statement is interrupted: the session ends with it.
    let (result, took) = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the running statement ends with its session")
        .unwrap();
    assert!(
        result.is_err() && took < Duration::from_secs(10),
        "{result:?} after {took:?}"
    );
    // The other one fails at its next statement.
    let e = busy.simple_query("SELECT x FROM t").await.unwrap_err();
    assert!(e.code().is_none_or(|c| c.code() == "42501"), "{e}");
    // And a new session is refused: the revocation stands.
    let (ok, _, err) = vigil.psql("ops", &ops, "SELECT 1");
    assert!(!ok && err.contains("no grant"), "{err}");

    let store = cfg.store_path();
    let revoked = records_of(&store, "GrantRevoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["grant_id"], id.as_str());
    assert_eq!(revoked[0]["reason"], "rotation drill");
    let ends = eventually("both sessions' end records", || {
        let e: Vec<_> = records_of(&store, "SessionEnded")
            .into_iter()
            .filter(|r| r["reason"] == "grant_revoked")
            .collect();
        (e.len() == 3).then_some(e)
    });
    assert_eq!(ends.len(), 3);
    let (_, listed, _) = vigil_cli(&cfg, &["grant", "list", "--identity", "ops", "--all"]);
    assert!(listed.contains("revoked"), "{listed}");
    // The CLI's record joined the gateway's chain: it still verifies.
    let (code, out, err) = vigil_cli(&cfg, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");

    // Expiry: the session opened at the start ends when its grant's window closes.
    let e = tokio::time::timeout(Duration::from_secs(25), short_ended)
        .await
        .expect("the session ends when its grant expires")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    let expired = eventually("GrantExpired", || {
        let r = records_of(&store, "GrantExpired");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(expired.len(), 1);
    assert!(records_of(&store, "SessionEnded")
        .iter()
        .any(|r| r["reason"] == "grant_expired"));
}

/// RFC 3339 for now + `d`, to the second.
fn utc_in(d: Duration) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("+{} seconds", d.as_secs()),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
