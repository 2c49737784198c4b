//! Every detector (built-in and custom) and every operator over arbitrary bytes.
//!
//! Input: `[selector][value…]`. The selector's low two bits pick one of four configurations,
//! the rest a column name (which switches on column context: name columns, `zip`, `age`,
//! identifier columns, custom detectors restricted to columns, column rules):
//!
//! 0. every detector on, a different operator per entity (fake, hmac, partial with a multi-byte
//!    mask character, generalize, redact with its own token) and custom detectors with each
//!    checksum, context words, a deny list, an allow list and a column restriction;
//! 1. `fake` for every entity (its shape fallback included), `null`, `keep`, a generalization
//!    that does not fit its entity, lax SSN rules, `on_error = "token"`, skip and name columns;
//! 2. column rules with every operator (and `fake` for every entity it knows) applied to the
//!    whole value, beside the detectors;
//! 3. the defaults (every detector, `redact`).
//!
//! Checks, beyond "no panic": detected spans are in bounds, sorted and disjoint; `out` is written
//! only when a value is replaced; a rule masks a value the same way twice; and where no operator
//! can keep a hit (0 and 3), a value is changed exactly when the detectors find something in it,
//! as a column value and as free text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_mask::{compile, detect, Masker, MaskingConfig, Outcome, SessionMasker};

const KEY: [u8; 32] = [42; 32];

const OPERATORS: &str = r##"
[operators]
ssn = "fake"
date = "generalize"
person_name = "fake"
credit_card = "fake"
npi = "fake"
dea = "fake"
vin = "fake"
account = "fake"
email = { kind = "hmac", length = 12 }
mrn = { kind = "hmac", prefix = "mrn_", length = 64, domain = "mrn-v1" }
phone = { kind = "partial", keep = 4 }
address = { kind = "partial", keep = 2, mask_char = "é" }
health_plan = { kind = "partial", keep = 100, mask_char = "#" }
ip = { kind = "redact", token = "<ip:{entity}>" }
zip = "generalize"
age = "generalize"
default = "redact"

[detectors.ssn]
extra_areas = ["987", "900-999"]

[[detectors.custom]]
name = "employee_id"
pattern = '\bE-?[0-9]{6}\b'
context = ["employee", "staff id"]
operator = { kind = "hmac", prefix = "emp_", length = 10 }

[[detectors.custom]]
name = "iban_rearranged"
pattern = '\b[A-Z]{4}[0-9]{10,24}[A-Z]{2}[0-9]{2}\b'
checksum = "mod97"

[[detectors.custom]]
name = "loyalty_card"
pattern = '\b[0-9]{12,19}\b'
checksum = "luhn"
context = ["loyalty"]
context_required = false

[[detectors.custom]]
name = "nhs_number"
pattern = '\b[0-9]{3} ?[0-9]{3} ?[0-9]{3}[0-9X]\b'
checksum = "mod11"
columns = ["*nhs*"]
operator = "fake"

[[detectors.custom]]
name = "other_npi"
pattern = '\bN[0-9]{10}\b'
checksum = "npi"

[[detectors.custom]]
name = "other_dea"
pattern = '\b[A-Z][A-Z9][0-9]{7}\b'
checksum = "dea"
context = ["registration"]

[[detectors.custom]]
name = "other_vin"
pattern = '\b[A-HJ-NPR-Z0-9]{17}\b'
checksum = "vin"
context = ["chassis"]

[[detectors.custom]]
name = "diagnosis"
deny = ["HIV", "hepatitis C", "schizophrenia"]
operator = { kind = "redact", token = "[dx]" }

[[detectors.custom]]
name = "study_code"
pattern = 'STUDY-[0-9]{2,4}'
deny = ["secret study"]
allow = ["STUDY-00"]
"##;

const FAKES: &str = r#"
on_error = "token"
withheld_token = "[W]"

[operators]
default = "fake"
age = "null"
zip = "keep"
phone = { kind = "generalize", to = "age" }
url = { kind = "generalize", to = "zip3" }
ip = { kind = "generalize", to = "year" }

[detectors]
skip_columns = ["*.skip*"]
allow = ["John Smith", "555-0100"]

[detectors.ssn]
strict_validity = false

[detectors.person_name]
name_columns = ["*who*", "name"]

[detectors.mrn]
patterns = ['[A-Z]{2}[0-9]{6}']
strong_patterns = ['MR#[0-9]{8}']
context = ["chart"]

[detectors.device_serial]
enabled = false

[[detectors.custom]]
name = "ticket"
pattern = '#[0-9]+'
context = ["ticket"]
context_required = true
columns = ["*.notes", "*ticket*"]
"#;

/// One rule per operator (and per entity for `fake`), on the column `r<n>`.
const RULES: &[(&str, &str)] = &[
    ("ssn", "\"redact\""),
    ("ssn", "{ kind = \"redact\", token = \"\" }"),
    ("ssn", "\"null\""),
    ("ssn", "\"keep\""),
    ("ssn", "\"partial\""),
    (
        "account",
        "{ kind = \"partial\", keep = 100, mask_char = \"∗\" }",
    ),
    ("mrn", "{ kind = \"hmac\", length = 8 }"),
    (
        "mrn",
        "{ kind = \"hmac\", prefix = \"p_\", length = 64, domain = \"d\" }",
    ),
    ("date", "\"generalize\""),
    ("zip", "\"generalize\""),
    ("age", "\"generalize\""),
    ("column", "{ kind = \"generalize\", to = \"year\" }"),
    ("column", "{ kind = \"generalize\", to = \"zip3\" }"),
    ("column", "{ kind = \"generalize\", to = \"age\" }"),
    ("ssn", "\"fake\""),
    ("phone", "\"fake\""),
    ("email", "\"fake\""),
    ("date", "\"fake\""),
    ("zip", "\"fake\""),
    ("address", "\"fake\""),
    ("mrn", "\"fake\""),
    ("health_plan", "\"fake\""),
    ("account", "\"fake\""),
    ("mbi", "\"fake\""),
    ("npi", "\"fake\""),
    ("dea", "\"fake\""),
    ("credit_card", "\"fake\""),
    ("ip", "\"fake\""),
    ("url", "\"fake\""),
    ("vin", "\"fake\""),
    ("device_serial", "\"fake\""),
    ("person_name", "\"fake\""),
    ("age", "\"fake\""),
    ("column", "\"fake\""),
    ("lab_code", "\"fake\""),
];

/// Column names: no context, free-text-like, and each kind of context the detectors read.
const LABELS: &[&str] = &[
    "notes",
    "first_name",
    "patient_last_name",
    "name",
    "zip",
    "postal_code",
    "age",
    "patient_age",
    "mrn",
    "member_id",
    "account_no",
    "device_serial",
    "ssn",
    "phone",
    "nhs_number",
    "referred_by_who",
    "skip_me",
    "ticket_ref",
    "chart",
    "x",
];

struct Config {
    masker: Masker,
    session: SessionMasker,
    /// No operator can keep a hit: changed ⇔ detected.
    exact: bool,
    /// Column rules on `r<n>` (configuration 2).
    rules: bool,
}

fn configs() -> &'static [Config; 4] {
    static CONFIGS: OnceLock<[Config; 4]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut rules = String::from("[operators]\ndefault = \"hmac\"\n");
        for (i, (entity, op)) in RULES.iter().enumerate() {
            rules.push_str(&format!(
                "[[rules]]\ncolumns = [\"*.r{i}\"]\nentity = \"{entity}\"\noperator = {op}\n"
            ));
        }
        [
            (OPERATORS, true, false),
            (FAKES, false, false),
            (&rules, false, true),
            ("", true, false),
        ]
        .map(|(toml_text, exact, rules)| {
            let config: MaskingConfig = toml::from_str(toml_text).expect("config");
            let masker = compile(&config, Some(&KEY)).expect("compiles");
            let session = masker.session("fuzz", &[], "db").expect("detectors on");
            Config {
                masker,
                session,
                exact,
                rules,
            }
        })
    })
}

fn check_spans(spans: &[(usize, usize, String)], len: usize) {
    let mut last = 0;
    for (s, e, _) in spans {
        assert!(s < e && *e <= len && *s >= last, "bad span {s}..{e}");
        last = *e;
    }
}

fn check_outcome(outcome: Outcome, out: &[u8]) {
    if !matches!(outcome, Outcome::Replaced(_)) {
        assert!(out.is_empty(), "{outcome:?} wrote");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let c = &configs()[(selector & 3) as usize];
    let which = (selector >> 2) as usize;

    let rule_column = c.rules && which < RULES.len();
    let label = if rule_column {
        format!("r{which}")
    } else {
        LABELS[which % LABELS.len()].to_string()
    };

    // Free text.
    let spans = detect(&c.masker, value, None);
    check_spans(&spans, value.len());
    let mut out = Vec::new();
    let outcome = c.session.scrub(value, &mut out);
    check_outcome(outcome, &out);
    if c.exact {
        assert_eq!(
            spans.is_empty(),
            outcome == Outcome::Unchanged,
            "scrub {outcome:?}"
        );
    }

    // A column value, with the column's context (or its rule).
    let source = rule_column.then_some(("public", "t", label.as_str()));
    let Some(column) = c.session.column(source, &label) else {
        assert!(label.starts_with("skip") || c.rules, "{label} not scanned");
        return;
    };
    assert_eq!(column.is_rule(), rule_column);
    let mut out = Vec::new();
    let outcome = column.mask(value, &mut out);
    check_outcome(outcome, &out);
    if rule_column {
        // Keyed operators are deterministic (joins and counts on pseudonyms rely on it).
        let mut again = Vec::new();
        assert_eq!(column.mask(value, &mut again), outcome);
        assert_eq!(again, out);
    } else {
        let spans = detect(&c.masker, value, Some(&label));
        check_spans(&spans, value.len());
        if c.exact {
            assert_eq!(
                spans.is_empty(),
                outcome == Outcome::Unchanged,
                "{label}: {outcome:?}"
            );
        }
    }
});
