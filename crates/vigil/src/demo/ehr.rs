//! A small synthetic EHR: patients (names, dates of birth, SSNs, phones, emails, MRNs,
//! addresses), encounters and diagnoses. Everything is made up, from a fixed seed, so every
//! demo shows the same data. SSNs are drawn from the 9xx area, which the SSA never issues.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use tokio_postgres::NoTls;

const FIRST: &[&str] = &[
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Mia", "Lucas", "Amelia", "Mateo", "Harper", "Ethan", "Evelyn", "Levi", "Abigail", "Asher",
    "Maria", "Wei", "Fatima", "Dmitri", "Aiko", "Kwame", "Priya", "Santiago", "Ingrid", "Omar",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Nguyen",
    "Chen",
    "Okafor",
    "Kowalski",
    "Haddad",
];
const STREETS: &[&str] = &[
    "Maple Ave",
    "Oak St",
    "Cedar Ln",
    "Pine Rd",
    "Elm St",
    "Birch Way",
    "Willow Dr",
    "Lakeview Blvd",
    "Hillcrest Rd",
    "River Rd",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "627"),
    ("Riverton", "WY", "825"),
    ("Fairview", "OR", "970"),
    ("Georgetown", "TX", "786"),
    ("Salem", "MA", "019"),
    ("Madison", "WI", "537"),
];
const DIAGNOSES: &[(&str, &str)] = &[
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("F41.1", "Generalized anxiety disorder"),
    ("M54.5", "Low back pain"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    (
        "K21.9",
        "Gastro-esophageal reflux disease without esophagitis",
    ),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("Z00.00", "Encounter for general adult medical examination"),
];
const ENCOUNTER_TYPES: &[&str] = &[
    "office visit",
    "telehealth",
    "emergency",
    "inpatient",
    "lab",
];

const SCHEMA: &str = r#"
CREATE TABLE patients (
    id            integer PRIMARY KEY,
    mrn           text NOT NULL UNIQUE,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    date_of_birth date NOT NULL,
    ssn           text NOT NULL UNIQUE,
    phone         text,
    email         text,
    street        text,
    city          text,
    state         text,
    zip           text
);
CREATE TABLE encounters (
    id            integer PRIMARY KEY,
    patient_id    integer NOT NULL REFERENCES patients(id),
    started_at    timestamptz NOT NULL,
    kind          text NOT NULL,
    provider_npi  text NOT NULL,
    notes         text
);
CREATE TABLE diagnoses (
    id            integer PRIMARY KEY,
    encounter_id  integer NOT NULL REFERENCES encounters(id),
    icd10         text NOT NULL,
    description   text NOT NULL
);
CREATE INDEX ON encounters (patient_id);
CREATE INDEX ON diagnoses (encounter_id);
"#;

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

/// The three tables as COPY text.
fn generate(patients: usize) -> (String, String, String) {
    let mut rng = StdRng::seed_from_u64(0x5eed_e412);
    let mut p = String::new();
    let mut e = String::new();
    let mut d = String::new();
    let (mut encounter_id, mut diagnosis_id) = (0, 0);
    for id in 1..=patients {
        let first = pick(&mut rng, FIRST);
        let last = pick(&mut rng, LAST);
        let (city, state, zip3) = CITIES[rng.gen_range(0..CITIES.len())];
        let _ = writeln!(
            p,
            "{id}\tMRN{:07}\t{first}\t{last}\t{:04}-{:02}-{:02}\t9{:02}-{:02}-{:04}\t(555) 01{:02}-{:04}\t{}.{}{}@example.com\t{} {}\t{city}\t{state}\t{zip3}{:02}",
            1_000_000 + id * 7,
            rng.gen_range(1931..2010),
            rng.gen_range(1..=12),
            rng.gen_range(1..=28),
            rng.gen_range(0..100),
            rng.gen_range(1..100),
            rng.gen_range(1..10000),
            rng.gen_range(0..100),
            rng.gen_range(0..10000),
            first.to_lowercase(),
            last.to_lowercase(),
            id,
            rng.gen_range(10..9999),
            pick(&mut rng, STREETS),
            rng.gen_range(0..100),
        );
        for _ in 0..rng.gen_range(1..=8) {
            encounter_id += 1;
            let _ = writeln!(
                e,
                "{encounter_id}\t{id}\t2026-{:02}-{:02} {:02}:{:02}:00+00\t{}\t1{:09}\t{}",
                rng.gen_range(1..=11),
                rng.gen_range(1..=28),
                rng.gen_range(7..19),
                rng.gen_range(0..60),
                pick(&mut rng, ENCOUNTER_TYPES),
                rng.gen_range(0..1_000_000_000u64),
                if rng.gen_bool(0.3) {
                    "follow up in 3 months"
                } else {
                    "\\N"
                },
            );
            for _ in 0..rng.gen_range(0..=3) {
                diagnosis_id += 1;
                let (code, text) = DIAGNOSES[rng.gen_range(0..DIAGNOSES.len())];
                let _ = writeln!(d, "{diagnosis_id}\t{encounter_id}\t{code}\t{text}");
            }
        }
    }
    (p, e, d)
}

async fn copy_in(client: &tokio_postgres::Client, table: &str, data: String) -> Result<()> {
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .with_context(|| format!("COPY {table}"))?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await?;
    sink.finish().await?;
    Ok(())
}

/// Creates the `ehr` database, the `vigil_gateway` role Vigil logs in as (least privilege:
/// it owns nothing, it may read and write the three tables), and the data.
pub async fn load(
    port: u16,
    superuser_password: &str,
    gateway_password: &str,
    patients: usize,
) -> Result<()> {
    let connect = |db: &str| {
        format!(
            "host=127.0.0.1 port={port} user=postgres dbname={db} password={superuser_password}"
        )
    };
    let (admin, conn) = tokio_postgres::connect(&connect("postgres"), NoTls).await?;
    let task = tokio::spawn(conn);
    admin.batch_execute("CREATE DATABASE ehr").await?;
    // The password is sent as a SCRAM verifier computed here, never in clear to the server log.
    let verifier = postgres_protocol::password::scram_sha_256(gateway_password.as_bytes());
    admin
        .batch_execute(&format!(
            "CREATE ROLE vigil_gateway LOGIN PASSWORD '{verifier}'"
        ))
        .await?;
    drop(admin);
    let _ = task.await;

    let (db, conn) = tokio_postgres::connect(&connect("ehr"), NoTls).await?;
    let task = tokio::spawn(conn);
    db.batch_execute(SCHEMA).await?;
    let (p, e, d) = generate(patients);
    copy_in(&db, "patients", p).await?;
    copy_in(&db, "encounters", e).await?;
    copy_in(&db, "diagnoses", d).await?;
    db.batch_execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON patients, encounters, diagnoses TO vigil_gateway;
         ANALYZE;",
    )
    .await?;
    drop(db);
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_fake() {
        let (p1, e1, _) = generate(50);
        let (p2, e2, _) = generate(50);
        assert_eq!((p1.clone(), e1), (p2, e2));
        assert_eq!(p1.lines().count(), 50);
        for line in p1.lines() {
            let ssn = line.split('\t').nth(5).unwrap();
            assert!(
                ssn.starts_with('9'),
                "SSNs use the never-issued 9xx area: {ssn}"
            );
        }
    }
}
