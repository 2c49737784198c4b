//! Every detector and operator over arbitrary bytes, as a column value (with a name that
//! switches on column context) and as free text. Checks, beyond "no panic": detected spans are
//! in bounds, sorted and disjoint; `out` is written only when a value is replaced.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vigil_mask::{compile, detect, Masker, MaskingConfig, Outcome};

fn masker() -> &'static Masker {
    static MASKER: OnceLock<Masker> = OnceLock::new();
    MASKER.get_or_init(|| {
        let config: MaskingConfig = toml::from_str(
            r#"[operators]
               ssn = "fake"
               date = "generalize"
               person_name = "fake"
               credit_card = "fake"
               npi = "fake"
               email = { kind = "hmac", length = 12 }
               phone = { kind = "partial", keep = 4 }
               zip = "generalize"
               age = "generalize""#,
        )
        .expect("config");
        compile(&config, Some(&[42u8; 32])).expect("compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let m = masker();
    for column in [None, Some("first_name"), Some("zip"), Some("mrn"), Some("age")] {
        let spans = detect(m, data, column);
        let mut last = 0;
        for (s, e, _) in &spans {
            assert!(s < e && *e <= data.len() && *s >= last, "bad span {s}..{e}");
            last = *e;
        }
    }
    let session = m.session("fuzz", &[], "db").expect("detectors on");
    for label in ["notes", "first_name", "zip"] {
        let column = session.column(None, label).expect("scanned");
        let mut out = Vec::new();
        match column.mask(data, &mut out) {
            Outcome::Replaced(_) => assert!(!out.is_empty() || data.is_empty()),
            Outcome::Unchanged | Outcome::Null(_) => assert!(out.is_empty()),
        }
    }
    let mut out = Vec::new();
    let _ = session.scrub(data, &mut out);
});
