//! Detector quality on the labelled synthetic corpora: precision and recall per entity, with
//! floors. A detected span counts as a true positive when it overlaps a labelled span of the
//! same entity.
//!
//! - tests/corpus/corpus.jsonl (made by tests/corpus/generate.py): every entity, in sentences
//!   and as column values;
//! - tests/corpus/city_state.jsonl (made by tests/corpus/city_state.py): numbers before a city
//!   and a state whose code is also a street suffix (`82501 Riverton WY`), and street addresses
//!   with those suffixes.
//!
//! `cargo test -p vigil-mask --test quality -- --nocapture` prints the tables that
//! docs/MASKING.md quotes; with `VIGIL_QUALITY_ERRORS=1`, every miss and false positive too.

use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
struct Sample {
    text: String,
    #[serde(default)]
    column: Option<String>,
    spans: Vec<(usize, usize, String)>,
}

#[derive(Default)]
struct Score {
    tp: u32,
    fp: u32,
    fn_: u32,
}

const FLOORS: &[(&str, f64, f64)] = &[
    // (entity, precision floor, recall floor)
    ("ssn", 0.98, 0.98),
    ("phone", 0.95, 0.95),
    ("email", 0.98, 0.98),
    ("date", 0.95, 0.95),
    ("address", 0.95, 0.95),
    ("npi", 0.95, 0.98),
    ("dea", 0.98, 0.98),
    ("credit_card", 0.98, 0.98),
    ("mbi", 0.98, 0.98),
    ("vin", 0.98, 0.98),
    ("ip", 0.98, 0.98),
    ("url", 0.98, 0.98),
    ("person_name", 0.95, 0.95),
    ("mrn", 0.90, 0.90),
    ("health_plan", 0.90, 0.90),
    ("account", 0.90, 0.90),
    ("zip", 0.95, 0.95),
    ("age", 0.98, 0.98),
];

/// Floors of the city-and-state corpus.
// Recall first: a city redacted as a street costs less than a street left in clear, so a state
// code is read as a state only before a ZIP (MASKING.md, "Cities and states after numbers").
const CITY_STATE_FLOORS: &[(&str, f64, f64)] = &[("address", 0.6, 1.0), ("zip", 0.98, 0.98)];

#[test]
fn precision_and_recall_per_detector() {
    measure("corpus.jsonl", include_str!("corpus/corpus.jsonl"), FLOORS);
}

#[test]
fn cities_and_states_after_numbers() {
    measure(
        "city_state.jsonl",
        include_str!("corpus/city_state.jsonl"),
        CITY_STATE_FLOORS,
    );
}

fn measure(name: &str, corpus: &str, floors: &[(&str, f64, f64)]) {
    let config: vigil_mask::MaskingConfig = toml::from_str("").unwrap();
    let masker = vigil_mask::compile(&config, None).unwrap();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    // VIGIL_QUALITY_ERRORS=1: print each miss and false positive (synthetic values only).
    let show = std::env::var_os("VIGIL_QUALITY_ERRORS").is_some();
    let mut samples = 0;
    for line in corpus.lines() {
        let s: Sample = serde_json::from_str(line).unwrap();
        samples += 1;
        let found = vigil_mask::detect(&masker, s.text.as_bytes(), s.column.as_deref());
        let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
        for (gs, ge, ge_entity) in &s.spans {
            let hit = found.iter().any(|(fs, fe, fe_entity)| {
                fe_entity == ge_entity && overlaps((*fs, *fe), (*gs, *ge))
            });
            let score = scores.entry(ge_entity.clone()).or_default();
            if hit {
                score.tp += 1;
            } else {
                score.fn_ += 1;
                if show {
                    println!("missed {ge_entity}: {:?}", s.text);
                }
            }
        }
        for (fs, fe, fe_entity) in &found {
            let labelled = s
                .spans
                .iter()
                .any(|(gs, ge, g)| g == fe_entity && overlaps((*fs, *fe), (*gs, *ge)));
            if !labelled {
                scores.entry(fe_entity.clone()).or_default().fp += 1;
                if show {
                    println!("false {fe_entity}: {:?} in {:?}", &s.text[*fs..*fe], s.text);
                }
            }
        }
    }
    println!("{name}: {samples} samples\n");
    println!("| entity | labelled | precision | recall |");
    println!("|---|---:|---:|---:|");
    let mut failures = Vec::new();
    for (entity, s) in &scores {
        let precision = s.tp as f64 / (s.tp + s.fp).max(1) as f64;
        let recall = s.tp as f64 / (s.tp + s.fn_).max(1) as f64;
        println!(
            "| {entity} | {} | {:.3} | {:.3} |",
            s.tp + s.fn_,
            precision,
            recall
        );
        if let Some((_, p, r)) = floors.iter().find(|f| f.0 == entity) {
            if precision < *p || recall < *r {
                failures.push(format!(
                    "{entity}: precision {precision:.3} (floor {p}), recall {recall:.3} (floor {r})"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: below the floors:\n{}",
        failures.join("\n")
    );
}
