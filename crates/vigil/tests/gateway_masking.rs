//! PHI masking through the real gateway: column rules in text (psql) and binary
//! (tokio-postgres) formats, detectors on free text, errors and notifications that echo
//! values, COPY, derived uses refused, evidence records, exemptions, and the canary test: no
//! seeded PHI value reaches the client, the gateway's log, the audit store or the replay
//! captures.

mod support;

use base64::Engine;
use support::*;
use tokio_postgres::NoTls;

const SCHEMA: &str = "CREATE TABLE patients (
    id int PRIMARY KEY,
    mrn text,
    first_name text,
    last_name text,
    dob date,
    ssn text UNIQUE,
    zip text,
    age int,
    notes text)";

const MASKING: &str = r#"
[masking]
hmac_key = "env:VIGIL_TEST_MASK_KEY"
exempt_identities = ["clinician"]

[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }

[[masking.rules]]
name = "names"
columns = ["patients.*name*"]
entity = "person_name"
operator = "redact"

[[masking.rules]]
name = "dob"
columns = ["patients.dob"]
entity = "date"
operator = "generalize"

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
name = "age"
columns = ["patients.age"]
entity = "age"
operator = "generalize"

[masking.detectors]
skip_columns = ["*.id"]
"#;

const MASK_KEY: &str = "test-masking-key-0123456789abcdef0123456789";

fn setup() -> (PgCluster, VigilConfig, Vigil, String) {
    let pg = PgCluster::start();
    pg.sql("postgres", SCHEMA);
    pg.sql(
        "postgres",
        "INSERT INTO patients VALUES
          (1, 'MRN0048291', 'Ada', 'Okafor', '1984-03-07', '123-45-6789', '02139', 93,
           'Seen by Dr. Brennan; callback (617) 555-0142, SSN 234-56-7890 on file'),
          (2, 'MRN0048292', 'Ben', 'Li', '1990-12-25', '345-67-8901', '03601', 41, NULL)",
    );
    let mut cfg = VigilConfig::new(&pg);
    cfg.identities
        .push(("clinician".into(), "connections = [\"ehr\"]".into()));
    cfg.extra = MASKING.to_string();
    let token = cfg.create_token("etl");
    let vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_MASK_KEY", MASK_KEY)]);
    (pg, cfg, vigil, token)
}

#[test]
fn column_rules_detectors_errors_copy_and_evidence_in_text_format() {
    let (_pg, cfg, vigil, token) = setup();
    let (ok, out, err) = vigil.psql(
        "etl",
        &token,
        "SELECT id, mrn, first_name, last_name, dob, ssn, zip, age, notes FROM patients ORDER BY id",
    );
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    let r = &rows[0];
    assert_eq!(r[0], "1");
    assert!(r[1].starts_with("mrn_") && r[1].len() == 16, "{out}");
    assert_eq!(r[2], "[REDACTED:person_name]");
    assert_eq!(r[4], "1984");
    assert_eq!(r[5], "***-**-6789");
    assert_eq!(r[6], "021");
    assert_eq!(r[7], "90+");
    assert_eq!(rows[1][6], "000", "Safe Harbor: low-population ZIP3");
    assert_eq!(rows[1][7], "41");
    // Free text: detectors.
    assert!(
        !r[8].contains("234-56-7890") && !r[8].contains("555-0142") && !r[8].contains("Brennan"),
        "{out}"
    );
    assert!(
        r[8].contains("[REDACTED:ssn]") && r[8].contains("[REDACTED:phone]"),
        "{out}"
    );
    // Pseudonyms are deterministic: equal values stay joinable across statements.
    let (_, again, _) = vigil.psql("etl", &token, "SELECT mrn FROM patients WHERE id = 1");
    assert_eq!(again, r[1]);

    // Derived uses of a rule-masked column are refused.
    for sql in [
        "SELECT id FROM patients WHERE ssn = '123-45-6789'",
        "SELECT upper(ssn) FROM patients",
        "SELECT id FROM patients ORDER BY ssn",
        "SELECT ssn || '' FROM patients",
    ] {
        let (ok, _, err) = vigil.psql("etl", &token, sql);
        assert!(!ok, "{sql} should be refused");
        assert!(
            err.contains("Vigil refused") || err.contains("mask"),
            "{sql}: {err}"
        );
    }

    // A duplicate of a masked unique column would say whether the value exists: refused
    // before it runs (gateway_adversarial_masking.rs has the whole class).
    let (ok, _, err) = vigil.psql(
        "etl",
        &token,
        "INSERT INTO patients (id, ssn) VALUES (3, '123-45-6789')",
    );
    assert!(!ok);
    assert!(err.contains("masked_column_compared"), "{err}");
    assert!(!err.contains("123-45-6789"), "{err}");
    // An error that echoes a value: the message is scrubbed (psql's `LINE 1:` quotes the
    // client's own text).
    let (ok, _, err) = vigil.psql("etl", &token, "SELECT '234-56-7890'::int");
    assert!(!ok);
    let message = err.lines().next().unwrap_or_default();
    assert!(message.contains("invalid input syntax"), "{err}");
    assert!(!message.contains("234-56-7890"), "{err}");

    // COPY of a rule-masked column is refused; of other columns, scrubbed.
    let (ok, _, err) = vigil.psql("etl", &token, "COPY patients (id, ssn) TO STDOUT");
    assert!(!ok, "COPY of a masked column must be refused");
    assert!(
        err.contains("Vigil refused") || err.contains("mask"),
        "{err}"
    );
    let (ok, out, err) = vigil.psql("etl", &token, "COPY patients (id, notes) TO STDOUT");
    assert!(ok, "{err}");
    assert!(
        !out.contains("234-56-7890") && out.contains("[REDACTED:ssn]"),
        "{out}"
    );

    // NOTIFY payloads.
    let (ok, out, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &[],
        "LISTEN alerts;\nNOTIFY alerts, 'patient SSN 234-56-7890 moved';\nSELECT 1;\n",
    );
    assert!(ok, "{err}");
    // A session with masking rules gets no payload: notifications carry what database code
    // or another session chose to send (docs/MASKING.md).
    assert!(
        out.contains("payload withheld by Vigil") && !out.contains("234-56-7890"),
        "{out}"
    );

    // The exempt identity sees clear values.
    let clinician = cfg.create_token("clinician");
    let (ok, out, err) = vigil.psql(
        "clinician",
        &clinician,
        "SELECT ssn, first_name FROM patients WHERE id = 1",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "123-45-6789|Ada");

    // Evidence: counts, never values.
    let records = eventually("MaskingApplied records", || {
        let r = records_of(&cfg.store_path(), "MaskingApplied");
        r.iter()
            .any(|r| r["column"] == "public.patients.ssn")
            .then_some(r)
    });
    let ssn = records
        .iter()
        .find(|r| r["column"] == "public.patients.ssn" && r["rule"] == "ssn")
        .unwrap();
    assert_eq!(ssn["entity"], "ssn");
    assert_eq!(ssn["operator"], "partial");
    assert_eq!(ssn["count"], 2);
    assert!(ssn["statement_seq"].is_u64());
    // A value with several hits is counted once, under its first hit's detector.
    assert!(
        records.iter().any(|r| r["rule"] == "detector:person_name"
            && r["column"] == "public.patients.notes"
            && r["count"] == 1),
        "{records:?}"
    );
    // The session's summary, by entity.
    let ended = eventually("SessionEnded with a masking summary", || {
        records_of(&cfg.store_path(), "SessionEnded")
            .into_iter()
            .find(|r| r["masked"]["ssn"].as_u64().unwrap_or(0) >= 2)
    });
    assert!(
        ended["masked"]["person_name"].as_u64().unwrap_or(0) >= 2,
        "{ended}"
    );
    let all = serde_json::to_string(&audit_records(&cfg.store_path())).unwrap();
    for clear in ["123-45-6789", "234-56-7890", "Okafor", "555-0142"] {
        assert!(!all.contains(clear), "{clear} in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_in_binary_format() {
    let (_pg, _cfg, vigil, token) = setup();
    let (client, conn) = tokio_postgres::connect(&vigil.conn_string("etl", &token), NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Extended protocol: tokio-postgres asks for binary results.
    let row = client
        .query_one(
            "SELECT id, dob, ssn, age, first_name, notes FROM patients WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    // Rule-masked non-text columns are announced as text.
    assert_eq!(row.columns()[1].type_(), &tokio_postgres::types::Type::TEXT);
    assert_eq!(row.get::<_, String>(1), "1984");
    assert_eq!(row.get::<_, String>(2), "***-**-6789");
    assert_eq!(row.get::<_, String>(3), "90+");
    assert_eq!(row.get::<_, String>(4), "[REDACTED:person_name]");
    let notes: String = row.get(5);
    assert!(!notes.contains("234-56-7890"), "{notes}");

    // Computed columns of types whose binary form is not text, scanned by the detectors
    // (computed from a column: constants alone carry nothing stored and pass,
    // gateway_masking_lineage.rs).
    let row = client
        .query_one(
            "SELECT jsonb_build_object('note', notes) AS doc, ARRAY[id, 2] AS arr,
                    id * 12.5::numeric AS n, jsonb_build_object('k', 'v') AS clean,
                    TIMESTAMP '1984-03-07 10:00' + (id - 1) * interval '1 s' AS seen
             FROM patients WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let raw = |i: usize| row.get::<_, Raw>(i).0;
    // A jsonb document holding an SSN: read (jsonb is text after a version byte), found,
    // and withheld, because a redacted document would not be valid jsonb.
    assert_eq!(raw(0), None);
    // An array: Vigil does not read binary arrays; `unknown_binary = "withhold"` (default).
    assert_eq!(raw(1), None);
    // Read, nothing found: the server's bytes as they were.
    assert_eq!(raw(2).unwrap(), [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 19, 136]);
    assert_eq!(raw(3).unwrap()[0], 1);
    // A timestamp is read as `1984-03-07 10:00:00`: the date detector finds a date in it.
    assert_eq!(raw(4), None);
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

/// The canary test: unique PHI values seeded into the database never appear anywhere Vigil
/// writes or sends, in a realistic session with masking on.
#[test]
fn canaries_never_leave_the_gateway() {
    let pg = PgCluster::start();
    pg.sql("postgres", SCHEMA);
    // Values no other test or fixture uses.
    let canaries = [
        "271-82-8182",             // SSN (column rule)
        "Quillonbee",              // last name (column rule)
        "1961-07-19",              // date of birth (column rule)
        "MRN7718281",              // MRN (column rule)
        "372-81-9462",             // SSN in free text
        "(212) 555-0199",          // phone in free text
        "zephyrine.q@canary.test", // email in free text
    ];
    pg.sql(
        "postgres",
        &format!(
            "INSERT INTO patients VALUES (1, '{}', 'Ada', '{}', '{}', '{}', '10027', 50,
               'Mr. Quillonbee, SSN {}, phone {}, mail {}')",
            canaries[3],
            canaries[1],
            canaries[2],
            canaries[0],
            canaries[4],
            canaries[5],
            canaries[6]
        ),
    );
    let mut cfg = VigilConfig::new(&pg);
    // MASKING exempts `clinician`: the name must be declared (config_masking_names.rs).
    cfg.identities
        .push(("clinician".into(), "connections = [\"ehr\"]".into()));
    cfg.extra = MASKING.to_string();
    let token = cfg.create_token("etl");
    let mut vigil = Vigil::start_with_env(&cfg, &[("VIGIL_TEST_MASK_KEY", MASK_KEY)]);

    let mut client_output = String::new();
    let mut run = |sql: &str| {
        let (_, out, err) = vigil.psql("etl", &token, sql);
        client_output.push_str(&out);
        client_output.push_str(&err);
    };
    run("SELECT * FROM patients");
    run("SELECT last_name, notes FROM patients WHERE id = 1");
    run("COPY patients TO STDOUT");
    run("COPY patients (id, notes) TO STDOUT (FORMAT csv)");
    run("COPY (SELECT notes FROM patients) TO STDOUT");
    run("SELECT notes::int FROM patients"); // an error that echoes the value
    run(&format!(
        "INSERT INTO patients (id, ssn) VALUES (2, '{}')",
        canaries[0]
    ));
    run("SELECT pg_notify('c', notes) FROM patients");
    run("DO $$ BEGIN RAISE NOTICE '%', (SELECT notes FROM patients LIMIT 1); END $$");
    let (_, out, err) = psql_stdin(
        vigil.port,
        "etl",
        &token,
        &[],
        "LISTEN c;\nSELECT pg_notify('c', notes) FROM patients;\nSELECT 1;\n",
    );
    client_output.push_str(&out);
    client_output.push_str(&err);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (client, conn) = tokio_postgres::connect(&vigil.conn_string("etl", &token), NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            let rows = client
                .query("SELECT ssn, last_name, dob, mrn, notes FROM patients", &[])
                .await
                .unwrap();
            let mut text = String::new();
            for row in rows {
                for i in 0..row.len() {
                    text.push_str(&row.get::<_, Option<String>>(i).unwrap_or_default());
                    text.push('|');
                }
            }
            drop(client);
            let _ = task.await;
            text
        });
    client_output.push_str(&client);
    assert!(client_output.contains("***-**-8182"), "{client_output}");
    vigil.stop();

    let log = vigil.log();
    let store = std::fs::read(cfg.store_path()).unwrap();
    let wal = std::fs::read(cfg.store_path().with_extension("db-wal")).unwrap_or_default();
    let mut received = Vec::new();
    let mut captures = 0;
    for (_, content) in all_captures(&cfg) {
        captures += 1;
        for line in String::from_utf8(content).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["d"] == "s" {
                received.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(v["b"].as_str().unwrap())
                        .unwrap(),
                );
            }
        }
    }
    assert!(captures >= 10, "replay captures: {captures}");
    assert!(!received.is_empty());
    for canary in canaries {
        let c = canary.as_bytes();
        let found = |hay: &[u8]| hay.windows(c.len()).any(|w| w == c);
        assert!(
            !client_output.contains(canary),
            "{canary} reached the client"
        );
        assert!(!log.contains(canary), "{canary} in the gateway's log");
        assert!(
            !found(&store) && !found(&wal),
            "{canary} in the audit store"
        );
        assert!(!found(&received), "{canary} in a replay capture");
    }
}
