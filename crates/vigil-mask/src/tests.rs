//! Detectors and the engine through the public API: each detector with valid values, bad
//! check digits and edge cases; rules, exemptions, evidence and fail-closed behaviour.

use super::*;

fn masker(toml_text: &str) -> Masker {
    let config: MaskingConfig = toml::from_str(toml_text).unwrap();
    compile(&config, Some(b"0123456789abcdef0123456789abcdef")).unwrap()
}

fn found(m: &Masker, text: &str) -> Vec<(String, String)> {
    detect(m, text.as_bytes(), None)
        .into_iter()
        .map(|(s, e, n)| (n, text[s..e].to_string()))
        .collect()
}

fn found_in(m: &Masker, column: &str, text: &str) -> Vec<(String, String)> {
    detect(m, text.as_bytes(), Some(column))
        .into_iter()
        .map(|(s, e, n)| (n, text[s..e].to_string()))
        .collect()
}

fn one(m: &Masker, text: &str) -> Option<(String, String)> {
    let f = found(m, text);
    assert!(f.len() <= 1, "{text:?}: {f:?}");
    f.into_iter().next()
}

fn is(m: &Masker, entity: &str, text: &str, span: &str) {
    assert_eq!(
        one(m, text),
        Some((entity.to_string(), span.to_string())),
        "{text:?}"
    );
}

fn none(m: &Masker, text: &str) {
    assert_eq!(found(m, text), vec![], "{text:?}");
}

#[test]
fn ssn() {
    let m = masker("");
    is(&m, "ssn", "SSN 123-45-6789 on file", "123-45-6789");
    is(&m, "ssn", "123 45 6789", "123 45 6789");
    is(&m, "ssn", "ssn: 123456789", "123456789");
    none(&m, "order 123456789"); // bare 9 digits need context
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "957-12-3456",
        "123-00-4567",
        "123-45-0000",
    ] {
        none(&m, bad);
    }
    none(&m, "1123-45-67890");
    let m = masker("[detectors.ssn]\nextra_areas = [\"900-999\"]");
    is(&m, "ssn", "957-18-7079", "957-18-7079");
    let m = masker("[detectors.ssn]\nstrict_validity = false");
    is(&m, "ssn", "000-12-3456", "000-12-3456");
}

#[test]
fn phone() {
    let m = masker("");
    for p in [
        "(617) 555-0123",
        "617-555-0123",
        "617.555.0123",
        "+1 617 555 0123",
        "1-617-555-0123",
        "001-617-555-0123",
        "617-555-0123 x204",
    ] {
        is(&m, "phone", &format!("call {p} today"), p);
    }
    is(&m, "phone", "+44 20 7946 0958", "+44 20 7946 0958");
    is(&m, "phone", "+442079460958", "+442079460958");
    is(&m, "phone", "phone 6175550123", "6175550123");
    none(&m, "017-555-0123"); // area code cannot start with 0
    none(&m, "617-155-0123"); // nor the exchange with 1
}

#[test]
fn email_url_ip() {
    let m = masker("");
    is(
        &m,
        "email",
        "write to jane.o_doe+x@mail.example.com.",
        "jane.o_doe+x@mail.example.com",
    );
    none(&m, "user@localhost");
    is(
        &m,
        "url",
        "see https://portal.example.org/p?id=7).",
        "https://portal.example.org/p?id=7",
    );
    is(&m, "url", "www.example.com/x", "www.example.com/x");
    is(&m, "ip", "from 10.0.12.255 at", "10.0.12.255");
    none(&m, "version 1.2.3.4.5");
    none(&m, "256.1.1.1");
    is(
        &m,
        "ip",
        "host 2001:db8::8a2e:370:7334 up",
        "2001:db8::8a2e:370:7334",
    );
    is(&m, "ip", "fe80::1", "fe80::1");
    none(&m, "at 10:11:12");
}

#[test]
fn dates() {
    let m = masker("");
    for d in [
        "1984-03-07",
        "03/07/1984",
        "3/7/84",
        "25.12.1990",
        "March 7, 1984",
        "Mar 7th 1984",
        "7 March 1984",
    ] {
        is(&m, "date", &format!("born {d} here"), d);
    }
    none(&m, "1984-13-07");
    none(&m, "May be 12");
    none(&m, "room 12/45/3");
}

#[test]
fn zip_needs_context() {
    let m = masker("");
    is(&m, "zip", "Boston, MA 02139", "02139");
    is(&m, "zip", "Austin, Texas 78701-1234", "78701-1234");
    is(&m, "zip", "zip code 02139", "02139");
    none(&m, "order 02139 shipped");
    assert_eq!(
        found_in(&m, "zip", "02139"),
        vec![("zip".into(), "02139".into())]
    );
}

#[test]
fn addresses() {
    let m = masker("");
    is(
        &m,
        "address",
        "lives at 1600 Pennsylvania Ave NW, Washington, DC 20500 now",
        "1600 Pennsylvania Ave NW, Washington, DC 20500",
    );
    is(
        &m,
        "address",
        "12 Oak Street Apt. 4B",
        "12 Oak Street Apt. 4B",
    );
    is(&m, "address", "PO Box 123", "PO Box 123");
    none(&m, "took 2 Advil tablets");
}

/// Five state codes are also street-suffix abbreviations (CT Court, KY Key, MT Mount, PR
/// Prairie, WY Way): a number before a city and its state is not a street address.
#[test]
fn a_city_and_state_before_a_zip_is_not_a_street() {
    let m = masker("");
    for text in [
        "12 Riverton WY 82501",
        "3 Hartford CT 06101 residents",
        "7 Billings MT, 59101",
        "12 RIVERTON WY 82501",
    ] {
        let found = found(&m, text);
        assert!(
            found.iter().all(|(entity, _)| entity != "address"),
            "{text:?}: {found:?}"
        );
    }
    // Without a ZIP the code may be a street's suffix: it is read as one (a city redacted costs
    // less than a street in clear).
    for (text, span) in [
        ("82501 Riverton WY", "82501 Riverton WY"),
        ("3 Hartford CT residents", "3 Hartford CT"),
        ("12 Maple CT, Riverton", "12 Maple CT"),
    ] {
        is(&m, "address", text, span);
    }
    // A ZIP after the state is still a ZIP.
    is(&m, "zip", "Riverton WY 82501", "82501");
    // The street before a city and its state is still found (with the city, as no ZIP says
    // the code is a state's).
    is(
        &m,
        "address",
        "12 Oak St Riverton WY",
        "12 Oak St Riverton WY",
    );
    is(
        &m,
        "address",
        "mail to 12 Oak St, Riverton, WY 82501",
        "12 Oak St, Riverton, WY 82501",
    );
    // The suffixes themselves: as words, abbreviated in mixed case, or in an all-capital
    // address.
    for (text, span) in [
        ("45 Harbor Way", "45 Harbor Way"),
        ("45 Harbor Wy", "45 Harbor Wy"),
        ("12 Maple Ct", "12 Maple Ct"),
        ("12 Maple Court", "12 Maple Court"),
        ("7 Pine Key", "7 Pine Key"),
        ("9 Eagle Mt.", "9 Eagle Mt."),
        ("12 OAK CT", "12 OAK CT"),
        ("45 HARBOR WY", "45 HARBOR WY"),
        ("12 Maple CT Apt 4", "12 Maple CT Apt 4"),
        // A word that announces an address: a street, whatever its suffix.
        ("lives at 12 Maple CT", "12 Maple CT"),
        ("Home address: 12 Riverton WY", "12 Riverton WY"),
    ] {
        is(&m, "address", text, span);
    }
    assert_eq!(
        found_in(&m, "street_address", "12 Maple CT"),
        vec![("address".into(), "12 Maple CT".into())]
    );
    // Nothing around it says address, and no ZIP says the code is a state's: a street.
    is(&m, "address", "12 Maple CT", "12 Maple CT");
}

#[test]
fn checksummed_identifiers() {
    let m = masker("");
    is(&m, "npi", "NPI 1234567893", "1234567893");
    none(&m, "NPI 1234567890");
    is(&m, "dea", "DEA AB1234563", "AB1234563");
    none(&m, "AB1234564");
    is(
        &m,
        "credit_card",
        "card 4111 1111 1111 1111",
        "4111 1111 1111 1111",
    );
    is(
        &m,
        "credit_card",
        "5500-0000-0000-0004",
        "5500-0000-0000-0004",
    );
    none(&m, "4111 1111 1111 1112");
    none(&m, "9111111111111111"); // no such issuer
    is(&m, "mbi", "MBI 1EG4-TE5-MK73", "1EG4-TE5-MK73");
    none(&m, "1SG4TE5MK73");
    is(&m, "vin", "VIN 1M8GDM9AXKP042788", "1M8GDM9AXKP042788");
    none(&m, "1M8GDM9A1KP042788");
}

#[test]
fn identifiers_by_context() {
    let m = masker("");
    is(&m, "mrn", "MRN: 00482913", "00482913");
    is(&m, "mrn", "medical record number A-1234567", "A-1234567");
    is(&m, "mrn", "ref MRN0048291", "MRN0048291");
    none(&m, "invoice 00482913");
    is(&m, "health_plan", "Member ID: XYZ123456789", "XYZ123456789");
    is(&m, "account", "acct no. 000123456789", "000123456789");
    is(
        &m,
        "device_serial",
        "pump S/N: PX-2231-77A9",
        "PX-2231-77A9",
    );
    assert_eq!(
        found_in(&m, "mrn", "00482913"),
        vec![("mrn".into(), "00482913".into())]
    );
    let m = masker(
        r#"[detectors.mrn]
           patterns = ['E[0-9]{6}']
           context = ["chart"]"#,
    );
    is(&m, "mrn", "chart E123456", "E123456");
    none(&m, "MRN 00482913");
}

#[test]
fn ages_over_89() {
    let m = masker("");
    is(&m, "age", "a 93-year-old woman", "93");
    is(&m, "age", "aged 101", "101");
    none(&m, "a 45 year old man");
    assert_eq!(found_in(&m, "age", "95"), vec![("age".into(), "95".into())]);
    assert_eq!(found_in(&m, "age", "45"), vec![]);
}

#[test]
fn person_names() {
    let m = masker("");
    is(&m, "person_name", "seen by Dr. Okafor today", "Dr. Okafor");
    is(
        &m,
        "person_name",
        "Patient John Q. Smith Jr was admitted",
        "John Q. Smith Jr",
    );
    is(&m, "person_name", "Smith, John called", "Smith, John");
    is(&m, "person_name", "MARY JOHNSON", "MARY JOHNSON");
    none(&m, "Will May Rose in March");
    none(&m, "the patient is stable");
    assert_eq!(
        found_in(&m, "first_name", "Zyxwu"),
        vec![("person_name".into(), "Zyxwu".into())]
    );
    assert_eq!(found_in(&m, "city", "Zyxwu"), vec![]);
}

#[test]
fn custom_detectors() {
    let m = masker(
        r#"[[detectors.custom]]
           name = "study_id"
           pattern = '\bST-[0-9]{6}\b'
           context = ["study"]
           deny = ["Project Bluebird"]
           allow = ["ST-000000"]
           [[detectors.custom]]
           name = "isbn"
           pattern = '\b[0-9]{9}[0-9X]\b'
           checksum = "mod11"
           context_required = false"#,
    );
    is(&m, "study_id", "study ST-123456", "ST-123456");
    none(&m, "lab ST-123456");
    none(&m, "study ST-000000");
    is(&m, "study_id", "on project bluebird.", "project bluebird");
    is(&m, "isbn", "ref 080442957X", "080442957X");
    none(&m, "ref 0306406153");
}

#[test]
fn scrub_rewrites_every_hit_and_keeps_the_rest() {
    let m = masker("[operators]\nssn = { kind = \"partial\", keep = 4 }\ndate = \"generalize\"");
    let s = m.session("app", &[], "ehr").unwrap();
    let mut out = Vec::new();
    let o = s.scrub(b"Jane Doe, SSN 123-45-6789, born 1984-03-07.", &mut out);
    assert!(matches!(o, Outcome::Replaced(_)));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[REDACTED:person_name], SSN ***-**-6789, born 1984."
    );
    let mut out = Vec::new();
    assert_eq!(s.scrub(b"nothing to see", &mut out), Outcome::Unchanged);
    assert!(out.is_empty());
}

#[test]
fn a_value_is_counted_under_every_detector_that_masked_part_of_it() {
    let m = masker("[operators]\nssn = { kind = \"partial\", keep = 4 }\ndate = \"generalize\"");
    let s = m.session("app", &[], "ehr").unwrap();
    let (mut out, mut also) = (Vec::new(), Vec::new());
    let o = s.scrub_counting(
        b"Jane Doe, SSN 123-45-6789, born 1984-03-07, again 987-65-4321.",
        &mut out,
        &mut also,
    );
    let Outcome::Replaced(first) = o else {
        panic!("{o:?}");
    };
    let mut entities: Vec<String> = std::iter::once(first)
        .chain(also.iter().copied())
        .map(|k| s.label(k).entity)
        .collect();
    // Each detector once, however many of its hits the value holds.
    assert_eq!(entities.len(), 3, "{entities:?}");
    entities.sort();
    assert_eq!(entities, ["date", "person_name", "ssn"]);
    // The column path reports the same way.
    let c = s.column(None, "note").unwrap();
    let (mut out, mut also) = (Vec::new(), Vec::new());
    let o = c.mask_counting(b"SSN 123-45-6789 born 1984-03-07", &mut out, &mut also);
    assert!(matches!(o, Outcome::Replaced(_)));
    assert_eq!(also.len(), 1);
    // A value nulled whole reports one key only.
    let m = masker("[operators]\nssn = \"null\"");
    let s = m.session("app", &[], "ehr").unwrap();
    let (mut out, mut also) = (Vec::new(), Vec::new());
    let o = s.scrub_counting(b"born 1984-03-07, SSN 123-45-6789", &mut out, &mut also);
    assert!(matches!(o, Outcome::Null(_)), "{o:?}");
    assert!(also.is_empty() && out.is_empty());
}

#[test]
fn rules_scope_exemptions_and_first_match() {
    let m = masker(
        r#"exempt_identities = ["clinician-portal"]
           [[rules]]
           name = "keep-ids"
           columns = ["*.*_id"]
           operator = "keep"
           [[rules]]
           name = "ssn"
           columns = ["*.ssn"]
           operator = "null"
           exempt_groups = ["billing"]
           [[rules]]
           name = "names"
           columns = ["patients.*name*"]
           connections = ["ehr"]
           identities = ["app"]
           operator = "redact"
           entity = "person_name""#,
    );
    assert!(m.session("clinician-portal", &[], "ehr").is_none());
    let s = m.session("app", &[], "ehr").unwrap();
    let src = |c| Some(("public", "patients", c));
    let ssn = s.column(src("ssn"), "ssn").unwrap();
    assert!(ssn.is_rule());
    assert!(matches!(
        ssn.mask(b"123-45-6789", &mut Vec::new()),
        Outcome::Null(_)
    ));
    assert!(s.column(src("patient_id"), "patient_id").is_none());
    let name = s.column(src("first_name"), "first_name").unwrap();
    let mut out = Vec::new();
    let Outcome::Replaced(k) = name.mask(b"Ann", &mut out) else {
        panic!()
    };
    assert_eq!(out, b"[REDACTED:person_name]");
    assert_eq!(
        m.label(k),
        Label {
            rule: "names".into(),
            entity: "person_name".into(),
            operator: "redact".into()
        }
    );
    // Not on another connection, not for another identity: detectors instead.
    let other = m.session("job", &[], "ehr").unwrap();
    assert!(!other
        .column(src("first_name"), "first_name")
        .unwrap()
        .is_rule());
    assert!(other.has_rule("public", "patients", "ssn"));
    let billing = m.session("job", &["billing".into()], "ehr").unwrap();
    assert!(!billing.has_rule("public", "patients", "ssn"));
    // By column name, in any table (errors name partitions); `keep` rules mask nothing.
    assert!(s.has_rules() && s.may_mask_column("first_name") && s.may_mask_column("ssn"));
    assert!(!s.may_mask_column("patient_id") && !s.may_mask_column("zip"));
    assert!(
        !billing.has_rules() && !billing.may_mask_column("ssn"),
        "keep-ids only"
    );
    let keep_only = masker("[[rules]]\ncolumns = [\"*.id\"]\noperator = \"keep\"");
    let k = keep_only.session("app", &[], "ehr").unwrap();
    assert!(!k.has_rules() && !k.may_mask_column("id"));
    // A computed column labelled like a column-only pattern.
    assert!(s.column(None, "ssn").unwrap().is_rule());
    assert!(!s.column(None, "first_name").unwrap().is_rule());
}

#[test]
fn failures_withhold_never_pass() {
    let m = masker(
        r#"[[rules]]
           columns = ["*.dob"]
           operator = "generalize"
           entity = "date""#,
    );
    let s = m.session("app", &[], "ehr").unwrap();
    let dob = s.column(Some(("public", "p", "dob")), "dob").unwrap();
    let mut out = Vec::new();
    let o = dob.mask(b"not a date 123-45-6789", &mut out);
    let Outcome::Null(k) = o else { panic!("{o:?}") };
    assert!(out.is_empty());
    assert_eq!(m.label(k).operator, "withheld");
    let m = masker("on_error = \"token\"\nmax_scan_bytes = 10");
    let s = m.session("app", &[], "ehr").unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        s.scrub(b"a very long free text value", &mut out),
        Outcome::Replaced(_)
    ));
    assert_eq!(out, b"[WITHHELD]");
}

#[test]
fn compile_errors_are_clear() {
    let err = |t: &str, key: Option<&[u8]>| {
        let c: MaskingConfig = toml::from_str(t).unwrap();
        compile(&c, key).unwrap_err().to_string()
    };
    let e = err(
        "[[rules]]\ncolumns = [\"a.b.c.d\"]\noperator = \"redact\"",
        None,
    );
    assert!(e.contains("rule-1") && e.contains("a.b.c.d"), "{e}");
    let e = err(
        "[[rules]]\ncolumns = [\"*.ssn\"]\noperator = \"hmac\"",
        None,
    );
    assert!(e.contains("hmac_key"), "{e}");
    let e = err(
        "[[rules]]\nname = \"x\"\ncolumns = [\"*.ssn\"]\noperator = \"generalize\"",
        None,
    );
    assert!(e.contains("\"x\"") && e.contains("to ="), "{e}");
    let e = err("[[detectors.custom]]\nname = \"x\"\npattern = \"(\"", None);
    assert!(e.contains("\"x\"") && e.contains("does not compile"), "{e}");
    let e = err(
        "[[detectors.custom]]\nname = \"ssn\"\npattern = \"x\"",
        None,
    );
    assert!(e.contains("built-in"), "{e}");
    let e = err("[operators]\nsocial = \"null\"", None);
    assert!(e.contains("social"), "{e}");
    let e = err(
        "[detectors.mrn]\npatterns = ['X[0-9]+']\ncontext = []",
        None,
    );
    assert!(e.contains("context"), "{e}");
    let e = err("[operators]\nssn = \"fake\"", Some(b"short"));
    assert!(e.contains("at least 32"), "{e}");
}

#[test]
fn disabled_and_detector_free_configs() {
    let m = masker("enabled = false");
    assert!(m.session("app", &[], "ehr").is_none());
    let m = masker("[detectors]\nenabled = false");
    assert!(m.session("app", &[], "ehr").is_none());
    let m = masker("[detectors]\nskip_columns = [\"*.notes\"]");
    let s = m.session("app", &[], "ehr").unwrap();
    assert!(s.column(Some(("public", "e", "notes")), "notes").is_none());
}

#[test]
fn masking_never_panics_on_arbitrary_bytes() {
    let m = masker("");
    let s = m.session("app", &[], "ehr").unwrap();
    let c = s.column(None, "notes").unwrap();
    let mut seed = 7u64;
    for len in 0..400 {
        let v: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"0123456789-/.: @AbcMar,Jx\xff"[(seed >> 33) as usize % 26]
            })
            .collect();
        let mut out = Vec::new();
        let _ = c.mask(&v, &mut out);
        let _ = s.scrub(&v, &mut out);
    }
}
