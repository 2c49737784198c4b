use super::*;

/// Masks values containing "secret" by a token, "null-me" by NULL.
struct Toy;

impl ValueMasker for Toy {
    fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        if value.windows(6).any(|w| w == b"secret") {
            out.extend_from_slice(b"[SECRET]");
            MaskOutcome::Replaced(1)
        } else if value == b"null-me" {
            MaskOutcome::Null(2)
        } else {
            MaskOutcome::Unchanged
        }
    }
    fn unreadable(&self) -> MaskOutcome {
        MaskOutcome::Null(9)
    }
}

/// Always replaces with "[RULE]".
struct Rule;

impl ValueMasker for Rule {
    fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        out.extend_from_slice(b"[RULE:");
        out.extend_from_slice(value);
        out.push(b']');
        MaskOutcome::Replaced(7)
    }
    fn unreadable(&self) -> MaskOutcome {
        MaskOutcome::Null(7)
    }
}

struct Session;

impl SessionMasking for Session {
    fn column(&self, column: &ResultColumn<'_>) -> Option<ColumnMask> {
        match column.source {
            Some(s) if s.column == "dob" || s.column == "mrn" => Some(ColumnMask {
                masker: Arc::new(Rule),
                rule: true,
            }),
            _ if column.name == "plain" => None,
            _ => Some(ColumnMask {
                masker: Arc::new(Toy),
                rule: false,
            }),
        }
    }

    fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        Toy.mask(text, out)
    }

    fn label(&self, key: EvidenceKey) -> MaskLabel {
        MaskLabel {
            rule: format!("r{key}"),
            entity: "e".into(),
            operator: "redact".into(),
        }
    }
}

struct Names;

impl ColumnNames for Names {
    fn names(&mut self, table: u32, column: i16) -> Option<(Arc<str>, Arc<str>, Arc<str>)> {
        let col = match (table, column) {
            (100, 1) => "note",
            (100, 2) => "dob",
            (100, 3) => "mrn",
            (100, 4) => "ssn",
            _ => return None,
        };
        Some(("public".into(), "patients".into(), col.into()))
    }
}

fn description(fields: &[(&str, u32, i16, u32)]) -> Vec<u8> {
    let mut b = (fields.len() as i16).to_be_bytes().to_vec();
    for (name, table, column, type_oid) in fields {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&table.to_be_bytes());
        b.extend_from_slice(&column.to_be_bytes());
        b.extend_from_slice(&type_oid.to_be_bytes());
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b
}

fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        put_value(&mut b, *v);
    }
    b
}

fn values(message: &[u8]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(message[0], backend::DATA_ROW);
    let len = u32::from_be_bytes(message[1..5].try_into().unwrap()) as usize;
    assert_eq!(len + 1, message.len(), "length field");
    crate::messages::data_row::fields(&message[5..])
        .unwrap()
        .into_iter()
        .map(|v| v.map(<[u8]>::to_vec))
        .collect()
}

fn plan_of(desc: &[u8], withheld: &dyn Fn(u32, i16) -> bool) -> Option<Arc<RowPlan>> {
    plan(desc, withheld, Some(&Session), &mut Names, None).unwrap()
}

/// Columns the analysis says hold no stored data pass unplanned (not masked, not scanned, not
/// retyped); only when the description agrees with the analysis.
#[test]
fn columns_without_stored_data_pass_when_the_description_agrees() {
    use vigil_sql::OutputOrigin::{MayBeStored as STORED, NoStoredData as FREE};
    let desc = description(&[("now", 0, 0, 1184), ("age", 0, 0, 23), ("note", 100, 1, 25)]);
    let planned = |outputs: Option<&[vigil_sql::OutputOrigin]>| {
        plan(&desc, &|_, _| false, Some(&Session), &mut Names, outputs)
            .unwrap()
            .map(|p| {
                p.columns
                    .iter()
                    .map(|c| matches!(c, ColumnAction::Pass))
                    .collect::<Vec<_>>()
            })
    };
    // Without the analysis: every column to the engine (detectors here).
    assert_eq!(planned(None), Some(vec![false, false, false]));
    assert_eq!(
        planned(Some(&[FREE, FREE, STORED])),
        Some(vec![true, true, false])
    );
    assert_eq!(
        planned(Some(&[FREE, STORED, STORED])),
        Some(vec![true, false, false])
    );
    // A column with a table behind it is stored whatever the analysis says.
    assert_eq!(
        planned(Some(&[FREE, FREE, FREE])),
        Some(vec![true, true, false])
    );
    // A description with another number of columns than the analysis: none passes.
    assert_eq!(
        planned(Some(&[FREE, FREE])),
        Some(vec![false, false, false])
    );
    assert_eq!(
        planned(Some(&[FREE, FREE, FREE, FREE])),
        Some(vec![false, false, false])
    );
    // A rule that would retype a column (`*.ssn` matched by its label) does not apply to one
    // without stored data: the description goes out as the server sent it.
    let desc = description(&[("dob", 0, 0, 1082)]);
    struct Label;
    impl SessionMasking for Label {
        fn column(&self, _: &ResultColumn<'_>) -> Option<ColumnMask> {
            Some(ColumnMask {
                masker: Arc::new(Rule),
                rule: true,
            })
        }
        fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
            Rule.mask(text, out)
        }
        fn label(&self, _: EvidenceKey) -> MaskLabel {
            MaskLabel {
                rule: "r".into(),
                entity: "e".into(),
                operator: "redact".into(),
            }
        }
    }
    let p = plan(&desc, &|_, _| false, Some(&Label), &mut Names, None)
        .unwrap()
        .unwrap();
    assert!(p.description.is_some(), "retyped without the analysis");
    assert!(plan(
        &desc,
        &|_, _| false,
        Some(&Label),
        &mut Names,
        Some(&[FREE])
    )
    .unwrap()
    .is_none());
}

#[test]
fn rows_no_rule_touches_go_out_as_they_came() {
    let desc = description(&[("plain", 0, 0, 25)]);
    assert!(plan_of(&desc, &|_, _| false).is_none());
    let desc = description(&[("note", 100, 1, 25)]);
    let plan = plan_of(&desc, &|_, _| false).unwrap();
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    let mut tally = MaskTally::default();
    let r = rewrite_row(
        &row(&[Some(b"nothing here")]),
        &plan,
        &[],
        &mut out,
        &mut scratch,
        &mut tally,
    )
    .unwrap();
    assert!(!r.changed);
    assert!(out.is_empty());
    assert_eq!(tally.total(), 0);
}

#[test]
fn detectors_rules_and_withheld_columns_in_text_format() {
    let desc = description(&[
        ("note", 100, 1, 25),
        ("dob", 100, 2, 1082),
        ("ssn", 100, 4, 25),
        ("n", 0, 0, 23),
    ]);
    let plan = plan_of(&desc, &|t, c| (t, c) == (100, 4)).unwrap();
    // The date column under a rule is announced as text; the others keep their types.
    let retyped = plan.description.clone().unwrap();
    let f = fields(&retyped[5..]).unwrap();
    assert_eq!(
        f.iter().map(|f| f.type_oid).collect::<Vec<_>>(),
        [25, 25, 25, 23]
    );
    assert_eq!(f[1].name, b"dob");
    let mut out = b"prefix".to_vec();
    let mut scratch = Scratch::default();
    let mut tally = MaskTally::default();
    let r = rewrite_row(
        &row(&[
            Some(b"my secret note"),
            Some(b"1980-02-03"),
            Some(b"912-34-5678"),
            Some(b"secret"),
        ]),
        &plan,
        &[],
        &mut out,
        &mut scratch,
        &mut tally,
    )
    .unwrap();
    assert!(r.changed);
    assert_eq!(r.withheld, 1);
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(
        values(&out[6..]),
        [
            Some(b"[SECRET]".to_vec()),
            Some(b"[RULE:1980-02-03]".to_vec()),
            None,
            // A detector's token is not an int4: NULL.
            None,
        ]
    );
    assert_eq!(tally.total(), 3);
    assert!(tally
        .entries
        .iter()
        .any(|(c, k, n)| &*c.name == "public.patients.dob" && *k == 7 && *n == 1));
}

#[test]
fn binary_values_are_read_as_text_for_rules_and_withheld_when_unreadable() {
    let desc = description(&[
        ("dob", 100, 2, 1082),
        ("mrn", 100, 3, 20),
        ("note", 100, 1, 25),
        ("x", 0, 0, 1007),
        ("n", 0, 0, 1700),
    ]);
    let plan = plan_of(&desc, &|_, _| false).unwrap();
    let days: i32 = 366 + 31 + 2; // 2001-02-03
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    let mut tally = MaskTally::default();
    rewrite_row(
        &row(&[
            Some(&days.to_be_bytes()),
            Some(&(-42i64).to_be_bytes()),
            Some(b"secret"),
            Some(&[0, 1, 2, 3]),
            Some(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 42]),
        ]),
        &plan,
        &[0, 1],
        &mut out,
        &mut scratch,
        &mut tally,
    )
    .unwrap();
    assert_eq!(
        values(&out),
        [
            Some(b"[RULE:2001-02-03]".to_vec()),
            Some(b"[RULE:-42]".to_vec()),
            Some(b"[SECRET]".to_vec()),
            // An array in binary: Vigil cannot read it, so it is withheld (the engine's answer
            // for unreadable values: `unknown_binary`), and counted.
            None,
            // A numeric is read (as 42), nothing in it: the original bytes.
            Some(vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 42]),
        ]
    );
    assert!(tally
        .entries
        .iter()
        .any(|(c, k, n)| &*c.name == "x" && *k == 9 && *n == 1));
}

#[test]
fn dates_from_day_counts() {
    assert_eq!(civil_date(0), Some((2000, 1, 1)));
    assert_eq!(civil_date(-1), Some((1999, 12, 31)));
    assert_eq!(civil_date(59), Some((2000, 2, 29)));
    assert_eq!(civil_date(-10957), Some((1970, 1, 1)));
    assert_eq!(civil_date(i32::MAX), None);
}

#[test]
fn binary_values_read_as_their_text() {
    let text = |oid: u32, v: &[u8]| {
        let mut out = b"x".to_vec();
        binary_as_text(oid, v, &mut out).then(|| String::from_utf8(out).unwrap())
    };
    for n in [0i16, -1, i16::MIN, i16::MAX] {
        assert_eq!(text(21, &n.to_be_bytes()), Some(format!("x{n}")));
    }
    for n in [0i32, 42, -42, i32::MIN, i32::MAX] {
        assert_eq!(text(23, &n.to_be_bytes()), Some(format!("x{n}")));
    }
    for n in [0i64, i64::MIN, i64::MAX] {
        assert_eq!(text(20, &n.to_be_bytes()), Some(format!("x{n}")));
    }
    for (days, iso) in [
        (0, "2000-01-01"),
        (-10957, "1970-01-01"),
        (-730119, "0001-01-01"),
        (2_921_939, "9999-12-31"),
    ] {
        assert_eq!(text(1082, &i32::to_be_bytes(days)), Some(format!("x{iso}")));
    }
    // numeric: ndigits, weight, sign, dscale, base-10000 digits.
    let numeric = |w: &[i16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    assert_eq!(
        text(1700, &numeric(&[2, 1, 0, 2, 12, 3456,])),
        Some("x123456.00".into())
    );
    assert_eq!(
        text(1700, &numeric(&[3, 0, 0x4000, 3, 123, 4567, 8900])),
        Some("x-123.456".into())
    );
    assert_eq!(
        text(1700, &numeric(&[1, -1, 0, 4, 500])),
        Some("x0.0500".into())
    );
    assert_eq!(text(1700, &numeric(&[0, 0, 0, 0])), Some("x0".into()));
    assert_eq!(
        text(1700, &numeric(&[0, 0, 0xC000u16 as i16, 0])),
        Some("xNaN".into())
    );
    assert_eq!(text(1700, &numeric(&[1, 0, 0, 0, 10000])), None);
    // timestamps: microseconds since 2000-01-01.
    let micros: i64 = ((-10957 * 86_400) + 3600 + 2 * 60 + 3) * 1_000_000 + 450_000;
    assert_eq!(
        text(1114, &micros.to_be_bytes()),
        Some("x1970-01-01 01:02:03.45".into())
    );
    assert_eq!(
        text(1184, &0i64.to_be_bytes()),
        Some("x2000-01-01 00:00:00+00".into())
    );
    assert_eq!(
        text(1083, &(61_000_001i64).to_be_bytes()),
        Some("x00:01:01.000001".into())
    );
    assert_eq!(text(1114, &i64::MAX.to_be_bytes()), None);
    assert_eq!(
        text(
            2950,
            &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7]
        ),
        Some("x12345678-9abc-def0-0001-020304050607".into())
    );
    assert_eq!(
        text(3802, b"\x01{\"ssn\": \"123-45-6789\"}"),
        Some("x{\"ssn\": \"123-45-6789\"}".into())
    );
    assert_eq!(text(3802, b"\x02{}"), None);
    assert_eq!(text(114, b"[1]"), Some("x[1]".into()));
    assert_eq!(text(16, &[1]), Some("xt".into()));
    assert_eq!(text(701, &1.5f64.to_be_bytes()), Some("x1.5".into()));
    assert_eq!(text(700, &f32::NAN.to_be_bytes()), Some("xNaN".into()));
    // Wrong sizes and unknown types are not read (the caller withholds or passes them).
    assert_eq!(text(23, &[0, 1]), None);
    assert_eq!(text(1082, &i32::MAX.to_be_bytes()), None);
    assert_eq!(text(1700, &[0, 1, 2, 3]), None);
    assert_eq!(text(1007, &[0, 0, 0, 0]), None);
    assert_eq!(text(25, b"abc"), Some("xabc".into()));
}

#[test]
fn a_broken_row_is_an_error_not_a_pass() {
    let desc = description(&[("note", 100, 1, 25)]);
    let plan = plan_of(&desc, &|_, _| false).unwrap();
    let body = row(&[Some(b"secret")]);
    let mut out = Vec::new();
    let mut tally = MaskTally::default();
    assert!(rewrite_row(
        &body[..body.len() - 1],
        &plan,
        &[],
        &mut out,
        &mut Scratch::default(),
        &mut tally
    )
    .is_err());
}

#[test]
fn notices_and_notifications_are_scrubbed_but_codes_are_kept() {
    let mut body = Vec::new();
    for (code, text) in [
        (b'S', "ERROR"),
        (b'C', "23505"),
        (b'M', "duplicate key value"),
        (b'D', "Key (ssn)=(secret-1) already exists."),
    ] {
        body.push(code);
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    body.push(0);
    let label = MaskSource::named("error");
    let mut out = Vec::new();
    let mut tally = MaskTally::default();
    assert!(scrub_error_fields(
        backend::ERROR_RESPONSE,
        &body,
        &Session,
        &mut out,
        &mut Scratch::default(),
        &mut tally,
        &label
    ));
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("secret-1"), "{text}");
    assert!(
        text.contains("23505") && text.contains("[SECRET]"),
        "{text}"
    );
    assert_eq!(
        crate::messages::error_response::sqlstate(&out[5..]).unwrap(),
        Some(*b"23505")
    );

    let mut n = 7i32.to_be_bytes().to_vec();
    n.extend_from_slice(b"chan\0the secret payload\0");
    out.clear();
    assert!(scrub_notification(
        &n,
        &Session,
        &mut out,
        &mut Scratch::default(),
        &mut tally,
        &label
    ));
    assert_eq!(&out[5..9], &7i32.to_be_bytes());
    assert_eq!(&out[9..], b"chan\0[SECRET]\0");
    assert_eq!(tally.total(), 2);
}

#[test]
fn the_rewriter_survives_random_input() {
    // A cheap deterministic stand-in for the fuzz target (fuzz/fuzz_targets/pg_datarow_rewrite.rs).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let cols = (next() % 5) as usize;
        let fields: Vec<(String, u32, i16, u32)> = (0..cols)
            .map(|i| {
                let table = (next() % 7) as u32;
                let column = (next() % 3) as i16;
                let type_oid = [25, 1043, 23, 20, 21, 1082, 1700, 114][(next() % 8) as usize];
                (format!("c{i}"), table, column, type_oid)
            })
            .collect();
        let refs: Vec<(&str, u32, i16, u32)> = fields
            .iter()
            .map(|(n, t, c, o)| (n.as_str(), *t, *c, *o))
            .collect();
        let desc = description(&refs);
        let mut row_body = (cols as i16).to_be_bytes().to_vec();
        for _ in 0..cols {
            match next() % 4 {
                0 => row_body.extend_from_slice(&(-1i32).to_be_bytes()),
                _ => {
                    let len = (next() % 9) as usize;
                    row_body.extend_from_slice(&(len as i32).to_be_bytes());
                    for _ in 0..len {
                        row_body.push(b'0' + (next() % 75) as u8);
                    }
                }
            }
        }
        if next() % 5 == 0 {
            let cut = (next() as usize) % (row_body.len() + 1);
            row_body.truncate(cut);
        }
        let formats: Vec<u8> = match next() % 3 {
            0 => vec![],
            1 => vec![0, 1],
            _ => (0..cols).flat_map(|_| [0, (next() % 2) as u8]).collect(),
        };
        fuzz_rewrite(&desc, &row_body, &formats);
    }
}

#[test]
fn the_tally_counts_per_column_and_key_whatever_the_order() {
    let (a, b) = (
        MaskSource::table_column("s", "t", "a"),
        MaskSource::table_column("s", "t", "b"),
    );
    let a_again = MaskSource::table_column("s", "t", "a");
    let mut tally = MaskTally::default();
    for _ in 0..3 {
        tally.add_at(0, &a, 1);
        tally.add_at(1, &b, 1);
        tally.add_at(1, &b, 2);
        tally.add_at(0, &a_again, 1);
    }
    tally.add(&b, 2);
    let mut got: Vec<_> = tally
        .entries
        .iter()
        .map(|(c, k, n)| (c.name.to_string(), *k, *n))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("s.t.a".into(), 1, 6),
            ("s.t.b".into(), 1, 3),
            ("s.t.b".into(), 2, 4)
        ]
    );
    assert_eq!(tally.total(), 13);
}
