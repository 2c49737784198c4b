//! Properties over generated texts: nothing panics, no literal survives normalization or shows
//! in a parse error, normalization is idempotent, and texts of one shape analyse alike.

use proptest::prelude::*;
use vigil_sql::{normalize, Analyzer, LexOptions};

const ON: LexOptions = LexOptions {
    standard_conforming_strings: true,
};
const OFF: LexOptions = LexOptions {
    standard_conforming_strings: false,
};

fn opts() -> impl Strategy<Value = LexOptions> {
    prop_oneof![Just(ON), Just(OFF)]
}

/// Complete tokens that open nothing they do not close (a lone `'` or `$$` would pair with a
/// secret's quote and leave its inside in code, which PostgreSQL would read as code too).
const NOISE: &[&str] = &[
    "SELECT", "FROM", "WHERE", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "WITH", "AS",
    "AND", "OR", "NOT", "JOIN", "ON", "t", "s.t", "col", "x", "e", "b", "n", "u", "U&", "UESCAPE",
    "\"Col\"", "\"a b\"", "(", ")", ",", ";", "=", "<>", "+", "-", "*", "/", "||", "::", "::int",
    ".", "..", "$1", "$2", "1", "2.5", "0x1F", "'x'", "E'\\n'", "$$y$$", "-- c\n", "/* c */",
    "DATE", "interval", "NULL", "true", "\n", "\t", "&", "%", "[", "]", "@",
];

/// A literal (or comment) holding `secret`, in one of the forms PostgreSQL has.
fn secret_literal(secret: String, scs_off: bool) -> impl Strategy<Value = String> {
    let forms: Vec<String> = {
        let s = &secret;
        let mut v = vec![
            format!("'{s}'"),
            format!("'it''s {s}'"),
            format!("E'{s}\\'\\\\'"),
            format!("e'\\x41{s}'"),
            format!("$${s}$$"),
            format!("$tag${s} $$ $tag$"),
            format!("U&'{s}\\0041'"),
            format!("U&'{s}!0041' UESCAPE '!'"),
            format!("N'{s}'"),
            format!("'{s}'\n'{s}'"),
            format!("'a'\n  '{s}'"),
            format!("'a' -- c\n '{s}'"),
            format!("-- {s}\n"),
            format!("/* {s} /* nested */ */"),
            format!("B'{s}'"),
            format!("X'{s}'"),
        ];
        if scs_off {
            v.push(format!("'{s}\\' and \\\\ more'"));
        }
        v
    };
    proptest::sample::select(forms)
}

#[derive(Debug, Clone)]
struct Soup {
    sql: String,
    secrets: Vec<String>,
    opts: LexOptions,
}

fn soup() -> impl Strategy<Value = Soup> {
    opts().prop_flat_map(|opts| {
        let off = !opts.standard_conforming_strings;
        let piece = prop_oneof![
            3 => proptest::sample::select(NOISE).prop_map(|s| (s.to_owned(), None)),
            1 => (100_000u32..999_999, any::<bool>()).prop_flat_map(move |(n, upper)| {
                let secret = if upper { format!("SEKRIT{n}") } else { format!("sekrit-{n}") };
                secret_literal(secret.clone(), off).prop_map(move |lit| (lit, Some(secret.clone())))
            }),
            1 => (100_000_000u64..999_999_999, 0..3u8).prop_map(|(n, form)| {
                let s = n.to_string();
                let lit = match form {
                    0 => s.clone(),
                    1 => format!("{}.{}", &s[..4], &s[4..]),
                    _ => format!("{s}e-3"),
                };
                // The longest run of its digits is what must not show.
                let run = lit.split(|c: char| !c.is_ascii_digit()).max_by_key(|r| r.len()).unwrap_or("").to_owned();
                (lit, Some(run))
            }),
        ];
        proptest::collection::vec(piece, 0..20).prop_map(move |pieces| {
            let mut sql = String::new();
            let mut secrets = Vec::new();
            for (text, secret) in pieces {
                // Separated: `a$$x$$` is one identifier to PostgreSQL, `x'…'` a bit string.
                sql.push(' ');
                sql.push_str(&text);
                secrets.extend(secret);
            }
            Soup { sql, secrets, opts }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_500))]

    #[test]
    fn no_literal_leaks(soup in soup()) {
        let analyzer = Analyzer::new(64);
        let n = normalize(&soup.sql, soup.opts);
        let shape = analyzer.analyze(&soup.sql, soup.opts);
        prop_assert_eq!(&shape.text, &n.text);
        for secret in &soup.secrets {
            prop_assert!(!n.text.contains(secret.as_str()), "{:?} leaked into {:?}", secret, n.text);
            if let Some(err) = &shape.parse_error {
                let (err, secret) = (err.to_lowercase(), secret.to_lowercase());
                prop_assert!(!err.contains(&secret), "{:?} leaked into error {:?}", secret, err);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(sql in any::<String>(), opts in opts()) {
        let n = normalize(&sql, opts);
        let shape = Analyzer::new(8).analyze(&sql, opts);
        prop_assert_eq!(&shape.text, &n.text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), opts in opts()) {
        let sql = String::from_utf8_lossy(&bytes);
        normalize(&sql, opts);
        Analyzer::new(8).analyze(&sql, opts);
    }

    /// The normalized text holds no literal and no comment: normalizing it again changes nothing.
    #[test]
    fn normalization_is_idempotent(soup in soup()) {
        let n = normalize(&soup.sql, soup.opts);
        prop_assume!(!n.unterminated);
        let again = normalize(&n.text, soup.opts);
        prop_assert_eq!(&again.text, &n.text);
        prop_assert_eq!(again.literal_count, 0);
        prop_assert_eq!(again.comment_count, 0);
    }

    /// Texts that normalize alike (same shape hash) analyse alike, whatever their literals: the
    /// premise of sharing one analysis per shape.
    #[test]
    fn one_shape_one_analysis(template in proptest::sample::select(TEMPLATES), seeds in proptest::collection::vec((any::<u32>(), any::<u32>()), 6)) {
        let kinds: Vec<u32> = seeds.iter().map(|s| s.0 % 4).collect();
        let fill = |pick: fn(&(u32, u32)) -> u32| {
            let mut sql = template.to_owned();
            for (seed, kind) in seeds.iter().zip(&kinds) {
                let v = pick(seed);
                let lit = match kind {
                    0 => format!("{}", v % 100_000),
                    1 => format!("'v{v}'"),
                    2 => format!("{}.{}", v % 1000, v % 7),
                    _ => format!("$q$x{v}$q$"),
                };
                sql = sql.replacen("{}", &lit, 1);
            }
            sql
        };
        let (a, b) = (fill(|s| s.0), fill(|s| s.1));
        let (na, nb) = (normalize(&a, ON), normalize(&b, ON));
        prop_assert_eq!(&na.text, &nb.text);
        prop_assert_eq!(na.shape_hash, nb.shape_hash);
        let (sa, sb) = (Analyzer::new(4).analyze(&a, ON), Analyzer::new(4).analyze(&b, ON));
        prop_assert_eq!(sa, sb);
    }
}

const TEMPLATES: &[&str] = &[
    "SELECT * FROM t WHERE a = {} AND b IN ({}, {}) LIMIT {}",
    "INSERT INTO s.t (a, b) VALUES ({}, {}) ON CONFLICT DO NOTHING RETURNING id",
    "UPDATE t SET x = {} FROM u WHERE u.id = t.id AND u.k = {}",
    "WITH c AS (SELECT {} AS v FROM src WHERE k > {}) DELETE FROM t USING c WHERE t.v = c.v",
    "EXPLAIN (ANALYZE {}) DELETE FROM t WHERE id = {}",
    "COPY (SELECT {}, {} FROM t) TO STDOUT",
    "SELECT CASE WHEN a = {} THEN {} ELSE {} END FROM t; SET work_mem = {}",
    "PREPARE p AS SELECT * FROM t WHERE a = $1 AND b = {}; EXECUTE p({})",
];
