use super::*;
use crate::masking::{ColumnMask, ResultColumn};

/// Detectors that find `555-` phone numbers; a rule covers columns named `ssn` and `*name`.
struct Detectors;

impl SessionMasking for Detectors {
    fn column(&self, _: &ResultColumn<'_>) -> Option<ColumnMask> {
        None
    }
    fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        match find(text, b"555-") {
            Some(i) => {
                out.extend_from_slice(&text[..i]);
                out.extend_from_slice(b"[PHONE]");
                out.extend_from_slice(&text[(i + 8).min(text.len())..]);
                MaskOutcome::Replaced(3)
            }
            None => MaskOutcome::Unchanged,
        }
    }
    fn label(&self, _: EvidenceKey) -> MaskLabel {
        MaskLabel {
            rule: "detector:phone".into(),
            entity: "phone".into(),
            operator: "redact".into(),
        }
    }
    fn may_mask_column(&self, column: &str) -> bool {
        column == "ssn" || column.ends_with("name")
    }
}

/// Tables by name: `patients` and `pt1` are protected, `enc` and `lookup` are not, anything
/// else is unknown (protected).
struct Known;

impl Tables for Known {
    fn protected(&mut self, _schema: Option<&[u8]>, table: &[u8]) -> bool {
        !matches!(table, b"enc" | b"lookup")
    }
}

fn body(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (code, value) in fields {
        b.push(*code);
        b.extend_from_slice(value.as_bytes());
        b.push(0);
    }
    b.push(0);
    b
}

/// The rewritten fields (as text), and the tally; `None` when nothing changed.
fn run(fields: &[(u8, &str)]) -> (Option<Vec<(u8, String)>>, MaskTally) {
    let mut out = Vec::new();
    let mut tally = MaskTally::default();
    let changed = rewrite(
        backend::ERROR_RESPONSE,
        &body(fields),
        Some(&Detectors),
        &mut Known,
        &mut out,
        &mut Scratch::default(),
        &mut tally,
        &MaskSource::named("error"),
    );
    if !changed {
        assert!(out.is_empty());
        return (None, tally);
    }
    assert_eq!(out[0], backend::ERROR_RESPONSE);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len + 1, out.len());
    let parsed = super::fields(&out[5..])
        .expect("well formed")
        .into_iter()
        .map(|(c, v)| (c, String::from_utf8(v.to_vec()).unwrap()))
        .collect();
    (Some(parsed), tally)
}

fn field(fields: &[(u8, String)], code: u8) -> &str {
    fields
        .iter()
        .find(|f| f.0 == code)
        .map_or("", |f| f.1.as_str())
}

const ROW: &str = "Failing row contains (1, null, Ada, Okafor, 617 555 0142, 123-45-6789, a, b \"c\" (d), 02139).";

fn core(code: &str, routine: &str, extra: &[(u8, &str)]) -> Vec<(u8, String)> {
    let mut f: Vec<(u8, &str)> = vec![(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code)];
    f.extend_from_slice(extra);
    f.extend_from_slice(&[(b'F', "x.c"), (b'L', "1"), (b'R', routine)]);
    run(&f)
        .0
        .unwrap_or_else(|| f.iter().map(|(c, v)| (*c, v.to_string())).collect())
}

#[test]
fn a_failing_row_of_a_protected_table_is_withheld_whole() {
    let (out, tally) = run(&[
        (b'S', "ERROR"),
        (b'C', "23502"),
        (
            b'M',
            "null value in column \"mrn\" of relation \"patients\" violates not-null constraint",
        ),
        (b'D', ROW),
        (b's', "public"),
        (b't', "patients"),
        (b'c', "mrn"),
        (b'R', "ExecConstraints"),
    ]);
    let out = out.unwrap();
    assert_eq!(
        field(&out, b'D'),
        "Failing row contains ([withheld by Vigil: row values of a table with masked or denied columns])."
    );
    assert!(field(&out, b'M').starts_with("null value in column \"mrn\""));
    assert_eq!(field(&out, b't'), "patients");
    assert_eq!(field(&out, b'c'), "mrn");
    for clear in ["Okafor", "Ada", "123-45-6789", "02139"] {
        assert!(!format!("{out:?}").contains(clear), "{clear}");
    }
    assert_eq!(tally.total(), 1);
    assert_eq!(tally.entries[0].1, Withheld::RowValues.key());
    assert_eq!(
        Withheld::label(tally.entries[0].1).unwrap().rule,
        "vigil:row_values"
    );
}

#[test]
fn a_failing_row_of_an_unprotected_table_goes_through_the_detectors() {
    let detail = "Failing row contains (1, x, 617 555-0142).";
    let out = core(
        "23514",
        "ExecConstraints",
        &[(b'D', detail), (b't', "lookup")],
    );
    assert_eq!(
        field(&out, b'D'),
        "Failing row contains (1, x, 617 [PHONE])."
    );
    // Nothing to change: the server's bytes go out.
    let (out, _) = run(&[
        (b'C', "23514"),
        (b'D', "Failing row contains (1, x)."),
        (b't', "lookup"),
    ]);
    assert!(out.is_none());
}

#[test]
fn check_option_errors_name_no_table_and_are_withheld() {
    let out = core("44000", "ExecWithCheckOptions", &[(b'D', ROW)]);
    assert!(field(&out, b'D').contains("withheld by Vigil"));
    assert!(!field(&out, b'D').contains("Okafor"));
}

#[test]
fn key_values_are_withheld_and_the_structure_kept() {
    let unique = core(
        "23505",
        "_bt_check_unique",
        &[
            (b'D', "Key (ssn)=(123-45-6789) already exists."),
            (b't', "patients"),
        ],
    );
    assert_eq!(
        field(&unique, b'D'),
        "Key (ssn)=([withheld by Vigil: row values of a table with masked or denied columns]) already exists."
    );
    let index = core(
        "23505",
        "comparetup_index_btree",
        &[
            (b'D', "Key (lower(last_name))=(okafor) is duplicated."),
            (b't', "patients"),
        ],
    );
    assert!(field(&index, b'D').starts_with("Key (lower(last_name))=([withheld"));
    assert!(field(&index, b'D').ends_with(") is duplicated."));
    // An exclusion constraint shows another row's key too.
    let exclusion = core(
        "23P01",
        "check_exclusion_or_unique_constraint",
        &[
            (
                b'D',
                "Key (last_name, during)=(Okafor, [\"2020-01-02\",\"2020-01-03\")) conflicts with existing key (last_name, during)=(Mbeki, [\"2020-01-01\",\"2020-01-05\")).",
            ),
            (b't', "pt1"),
        ],
    );
    let d = field(&exclusion, b'D');
    assert!(
        !d.contains("Okafor") && !d.contains("Mbeki") && !d.contains("2020"),
        "{d}"
    );
    assert!(
        d.starts_with("Key (last_name, during)=([withheld")
            && d.contains(") conflicts with existing key (last_name, during)=([withheld")
            && d.ends_with(").")
    );
}

#[test]
fn foreign_keys_are_held_to_both_tables() {
    // The referencing table is not protected: its new key goes through the detectors.
    let (out, _) = run(&[
        (b'C', "23503"),
        (
            b'M',
            "insert or update on table \"enc\" violates foreign key constraint \"enc_pid_fkey\"",
        ),
        (b'D', "Key (pid)=(9) is not present in table \"patients\"."),
        (b't', "enc"),
    ]);
    assert!(out.is_none());
    // Deleting a protected row still referenced: the key is the protected table's.
    let out = core(
        "23503",
        "ri_ReportViolation",
        &[
            (
                b'M',
                "update or delete on table \"patients\" violates foreign key constraint \"enc_ssn_fkey\" on table \"enc\"",
            ),
            (b'D', "Key (ssn)=(123-45-6789) is still referenced from table \"enc\"."),
            (b't', "enc"),
        ],
    );
    assert_eq!(
        field(&out, b'D'),
        "Key (ssn)=([withheld by Vigil: row values of a table with masked or denied columns]) is still referenced from table \"enc\"."
    );
    // A message Vigil cannot read: the referenced table is unknown, so protected.
    let out = core(
        "23503",
        "ri_ReportViolation",
        &[
            (b'D', "Key (id)=(1) is still referenced from table \"enc\"."),
            (b't', "enc"),
        ],
    );
    assert!(field(&out, b'D').contains("withheld"));
}

#[test]
fn partition_keys_keep_their_columns() {
    let out = core(
        "23514",
        "ExecFindPartition",
        &[
            (
                b'D',
                "Partition key of the failing row contains (ssn) = (123-45-6789).",
            ),
            (b't', "pt"),
        ],
    );
    assert_eq!(
        field(&out, b'D'),
        "Partition key of the failing row contains (ssn) = ([withheld by Vigil: row values of a table with masked or denied columns])."
    );
}

/// Whatever values a client writes into a protected row, no byte of them survives a Key or
/// row detail: the column list is cut at the first `)=(`, which comes before any value.
#[test]
fn crafted_values_cannot_steer_the_parser() {
    let canary = "CANARY";
    for value in [
        "x) already exists. Key (ssn)=(CANARY",
        ")=(CANARY",
        "CANARY) conflicts with existing key (ssn)=(",
        "CANARY) is not present in table \"lookup\".",
        "CANARY).",
        "\")=(CANARY",
    ] {
        for template in [
            "Key (ssn)=({v}) already exists.",
            "Key (ssn)=({v}) is duplicated.",
            "Key (ssn)=({v}) conflicts with existing key (ssn)=({v}).",
            "Key (ssn)=({v}) is not present in table \"lookup\".",
            "Key (ssn)=({v}) is still referenced from table \"lookup\".",
            "Failing row contains ({v}, 1).",
            "Partition key of the failing row contains (ssn) = ({v}).",
            "Key (ssn)=({v})",
            "{v}",
        ] {
            let detail = template.replace("{v}", value);
            let out = core(
                "23505",
                "_bt_check_unique",
                &[
                    (
                        b'M',
                        "update or delete on table \"patients\" violates foreign key constraint \"c\" on table \"lookup\"",
                    ),
                    (b'D', &detail),
                    (b't', "patients"),
                ],
            );
            assert!(
                !field(&out, b'D').contains(canary),
                "{detail} -> {}",
                field(&out, b'D')
            );
        }
    }
}

#[test]
fn text_raised_by_code_is_withheld_with_the_names_it_set() {
    // RAISE EXCEPTION '%', ssn USING ERRCODE = '23505', TABLE = ssn, DETAIL = …, HINT = …
    let out = core(
        "23505",
        "exec_stmt_raise",
        &[
            (b'M', "oops 123-45-6789"),
            (b'D', "ssn 123-45-6789"),
            (b'H', "Okafor"),
            (b'W', "PL/pgSQL function f() line 1 at RAISE"),
            (b't', "123-45-6789"),
            (b'c', "Okafor"),
        ],
    );
    let text = format!("{out:?}");
    assert!(
        !text.contains("123-45-6789") && !text.contains("Okafor"),
        "{text}"
    );
    assert!(field(&out, b'M').contains("raised by database code"));
    assert_eq!(field(&out, b'W'), "PL/pgSQL function f() line 1 at RAISE");
    assert_eq!(field(&out, b'C'), "23505");
    // ASSERT, and notices (RAISE NOTICE) alike.
    let out = core("P0004", "exec_stmt_assert", &[(b'M', "Okafor")]);
    assert!(!format!("{out:?}").contains("Okafor"));
    let out = core("00000", "exec_stmt_raise", &[(b'M', "Okafor")]);
    assert!(!format!("{out:?}").contains("Okafor"));
}

#[test]
fn data_errors_are_withheld_at_run_time_and_kept_when_parsing() {
    // ALTER … TYPE int USING ssn::int, a CHECK or a function body: a stored value.
    let out = core(
        "22P02",
        "pg_strtoint32",
        &[(
            b'M',
            "invalid input syntax for type integer: \"123-45-6789\"",
        )],
    );
    assert!(field(&out, b'M').contains("data error"));
    assert!(!format!("{out:?}").contains("123-45-6789"));
    let out = core(
        "22008",
        "make_date",
        &[(b'M', "date field value out of range: 1984-13-07")],
    );
    assert!(!format!("{out:?}").contains("1984"));
    // `SELECT 'abc'::int`: raised while parsing, pointing into the statement.
    let (out, _) = run(&[
        (b'C', "22P02"),
        (b'M', "invalid input syntax for type integer: \"abc\""),
        (b'P', "8"),
        (b'R', "pg_strtoint32"),
    ]);
    assert!(out.is_none(), "the server's bytes");
    // Messages that quote nothing.
    for m in [
        "division by zero",
        "value too long for type character varying(10)",
        "integer out of range",
    ] {
        let (out, _) = run(&[(b'C', "22012"), (b'M', m), (b'R', "int4div")]);
        assert!(out.is_none(), "{m}");
    }
    let out = core(
        "22001",
        "x",
        &[(
            b'M',
            "value too long for type character varying(10) and more",
        )],
    );
    assert!(field(&out, b'M').contains("withheld"));
    // A cast of a stored value to regclass: `relation "…" does not exist` at run time.
    let out = core(
        "42P01",
        "RangeVarGetRelidExtended",
        &[(b'M', "relation \"123-45-6789\" does not exist")],
    );
    assert!(!format!("{out:?}").contains("123-45-6789"));
    // Names only.
    let (out, _) = run(&[
        (b'C', "42501"),
        (b'M', "permission denied for table patients"),
    ]);
    assert!(out.is_none());
}

#[test]
fn unreviewed_classes_and_fields_are_withheld() {
    let out = core("ZZ999", "x", &[(b'M', "Okafor")]);
    assert!(field(&out, b'M').contains("not reviewed"));
    let out = core(
        "57014",
        "x",
        &[(b'M', "canceling statement"), (b'Z', "Okafor")],
    );
    assert_eq!(field(&out, b'M'), "canceling statement");
    assert!(field(&out, b'Z').contains("not reviewed"));
    // A body that is not a list of fields.
    let mut out = Vec::new();
    let changed = rewrite(
        backend::ERROR_RESPONSE,
        b"MOkafor",
        None,
        &mut Known,
        &mut out,
        &mut Scratch::default(),
        &mut MaskTally::default(),
        &MaskSource::named("error"),
    );
    assert!(changed && !out.windows(6).any(|w| w == b"Okafor"));
}

#[test]
fn context_lines_are_decided_one_by_one() {
    let out = core(
        "22012",
        "int4div",
        &[
            (b'M', "division by zero"),
            (
                b'W',
                "SQL statement \"SELECT * FROM patients WHERE ssn = '123-45-6789' AND 1/0 = 1\"\nPL/pgSQL function g() line 1 at EXECUTE",
            ),
            (b'q', "SELECT '123-45-6789'::int"),
        ],
    );
    assert_eq!(
        field(&out, b'W'),
        "[context line withheld by Vigil: it may quote values]\nPL/pgSQL function g() line 1 at EXECUTE"
    );
    assert!(field(&out, b'q').contains("internal query withheld"));
    let copy = |line: &str| {
        let out = core(
            "22007",
            "DateTimeParseError",
            &[(b'M', "x"), (b'P', "1"), (b'W', line)],
        );
        field(&out, b'W').to_string()
    };
    assert_eq!(
        copy("COPY patients, line 1, column dob: \"notadate\""),
        "COPY patients, line 1, column dob: [withheld by Vigil: row values of a table with masked or denied columns]"
    );
    assert!(copy("COPY patients, line 1: \"8\tOkafor\"")
        .starts_with("COPY patients, line 1: [withheld"));
    assert_eq!(copy("COPY patients, line 1"), "COPY patients, line 1");
    assert_eq!(
        copy("COPY lookup, line 1, column v: \"x\""),
        "COPY lookup, line 1, column v: \"x\""
    );
    assert!(copy("JSON data, line 1: {\"ssn\": 123-45...").contains("withheld"));
}

#[test]
fn notification_payloads_are_withheld() {
    let mut body = 42i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"changes\0{\"ssn\": \"123-45-6789\"}\0");
    let mut out = Vec::new();
    let mut tally = MaskTally::default();
    assert!(withhold_payload(
        &body,
        &mut out,
        &mut tally,
        &MaskSource::named("notification")
    ));
    assert!(!out.windows(11).any(|w| w == b"123-45-6789"));
    assert_eq!(&out[5..9], &42i32.to_be_bytes());
    assert!(out.windows(8).any(|w| w == b"changes\0"));
    assert_eq!(tally.total(), 1);
    // An empty payload stays as it is.
    let mut empty = 42i32.to_be_bytes().to_vec();
    empty.extend_from_slice(b"changes\0\0");
    assert!(!withhold_payload(
        &empty,
        &mut Vec::new(),
        &mut tally,
        &MaskSource::named("n")
    ));
}

#[test]
fn catalog_tables_protect_partitions_by_column_name() {
    let cache = crate::catalog::CatalogCache::default();
    let mut rows = Vec::new();
    for (oid, name, cols) in [
        (1u32, "patients", &["id", "ssn", "mrn"][..]),
        (2, "patients_2024", &["id", "ssn", "mrn"]),
        (3, "lookup", &["id", "code"]),
        (4, "staff", &["id", "mrn"]),
    ] {
        for (i, c) in cols.iter().enumerate() {
            rows.push(vec![
                Some(oid.to_string()),
                Some("public".into()),
                Some(name.into()),
                Some("r".into()),
                Some(c.to_string()),
                Some((i + 1).to_string()),
                None,
            ]);
        }
    }
    cache
        .load(crate::catalog::full_read_sets(vec![
            vec![vec![Some("public".into())]],
            rows,
            vec![],
            vec![],
            vec![],
        ]))
        .unwrap();
    let no_denials = HashSet::new();
    let mut t = CatalogTables::new(Some(&Detectors), &no_denials, &cache);
    assert!(t.protected(Some(b"public"), b"patients"));
    assert!(t.protected(None, b"patients_2024"), "a rule's column name");
    assert!(!t.protected(None, b"lookup"));
    assert!(!t.protected(None, b"staff"));
    assert!(t.protected(None, b"nosuch"), "unknown");
    // A denied column's name protects every table with a column so called.
    let denied: HashSet<(u32, i16)> = [(1, 3)].into();
    let mut t = CatalogTables::new(None, &denied, &cache);
    assert!(t.protected(None, b"staff"));
    assert!(!t.protected(None, b"lookup"));
    // A denied column the catalog cannot name: everything is protected.
    let unnamed: HashSet<(u32, i16)> = [(99, 1)].into();
    let mut t = CatalogTables::new(None, &unnamed, &cache);
    assert!(t.protected(None, b"lookup"));
}

/// The fuzz target's invariants over 20,000 generated messages (every run, not only under
/// libFuzzer): fields of every kind, codes of every class, the details that echo rows, values
/// made to confuse the parser, truncated bodies.
#[test]
fn the_error_rewriter_survives_random_input() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let codes: &[u8] = b"SVCMDHPpqWstcdnFLRZ";
    let sqlstates = [
        "23502", "23505", "23P01", "23503", "23514", "44000", "22P02", "22012", "42P01", "42501",
        "P0001", "P0004", "38000", "57014", "00000", "XX000", "ZZ000", "2", "",
    ];
    let values = [
        "Failing row contains (1, Okafor, 900-12-3456).",
        "Key (ssn)=(900-12-3456) already exists.",
        "Key (a, b)=(1, x)=(y) conflicts with existing key (a, b)=(2, z).",
        "Key (id)=(1) is still referenced from table \"enc\".",
        "Key (id)=(9) is not present in table \"patients\".",
        "Partition key of the failing row contains (ssn) = (900-12-3456).",
        "Key (",
        ")=(",
        "update or delete on table \"patients\" violates foreign key constraint \"c\" on table \"enc\"",
        "SQL statement \"SELECT 1\"\nPL/pgSQL function f() line 1 at RAISE",
        "COPY patients, line 1, column id: \"x\"",
        "COPY lookup, line 2: \"a\tb\"",
        "exec_stmt_raise",
        "pl_exec.c",
        "patients",
        "enc",
        "division by zero",
        "",
        "\u{e9}\u{263a}",
    ];
    for _ in 0..20_000 {
        let mut body = Vec::new();
        for _ in 0..(next() % 9) {
            let code = codes[(next() % codes.len() as u64) as usize];
            body.push(code);
            let value = match code {
                b'C' => sqlstates[(next() % sqlstates.len() as u64) as usize],
                _ => values[(next() % values.len() as u64) as usize],
            };
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        if next() % 6 == 0 {
            let cut = (next() as usize) % (body.len() + 1);
            body.truncate(cut);
        }
        crate::masking::fuzz_error_rewrite(next() % 2 == 0, &body);
    }
}
