//! Literal → placeholder normalization, the shape hash and the exported fingerprint.

use crate::lex::{self, is_ident_cont, LexOptions, Lexer, LitKind, Tok};
use sha2::{Digest, Sha256};

/// A statement text with its literals replaced by placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Normalized {
    /// The text with each literal replaced by `$n`, comments and whitespace runs collapsed to one
    /// space, trimmed. Parameters already in the text (`$1`…) are kept; new placeholders are
    /// numbered after the highest of them.
    pub text: String,
    /// Hash of `text` and of the kind of each replaced literal (string, integer, numeric, bit
    /// string…): texts with equal shape hashes parse to trees of the same shape. Deterministic,
    /// but an in-process key, not an export field (use [`fingerprint`] for that).
    pub shape_hash: u64,
    /// How many literals were replaced (the unterminated rest of a text counts as one).
    pub literal_count: usize,
    /// How many comments were dropped.
    pub comment_count: usize,
    /// A literal, comment or quoted identifier ran to the end of the text: the rest of the text
    /// from its start was replaced by one placeholder. PostgreSQL rejects such a text.
    pub unterminated: bool,
}

impl Normalized {
    /// Whether normalization removed nothing but whitespace: the original text holds no literal
    /// or comment, so it carries nothing that normalization exists to hide.
    pub fn is_verbatim(&self) -> bool {
        self.literal_count == 0 && self.comment_count == 0
    }
}

/// Replaces every literal in `sql` by a placeholder `$n` (see [`Normalized`]).
///
/// Walks PostgreSQL's lexical grammar, so what it calls a literal is what the server does:
/// `'…'` (with `''`, and with backslash escapes when `standard_conforming_strings` is off),
/// `E'…'`, `U&'…' [UESCAPE '…']`, `N'…'`, `B'…'`, `X'…'`, `$tag$…$tag$`, strings continued across
/// a newline, and numbers (`42`, `1.5e-3`, `.5`, `0x1F`, `1_000`). Quoted identifiers,
/// keywords, operators (so `-5` becomes `-$1`) and type names (`DATE '…'` becomes `DATE $1`)
/// are kept. One allocation (the output), no per-token work beyond copying.
pub fn normalize(sql: &str, opts: LexOptions) -> Normalized {
    // Placeholders are numbered after the highest parameter already in the text, which a first
    // pass finds; most texts have no `$` at all and skip it.
    let first_placeholder = if lex::has_dollar(sql) {
        Lexer::new(sql, opts)
            .filter_map(|t| match t.tok {
                Tok::Param(n) => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    } else {
        1
    };

    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = first_placeholder;
    let mut kinds = KindsHash::new();
    let mut literal_count = 0usize;
    let mut comment_count = 0usize;
    let mut unterminated = false;
    let mut pending_space = false;
    let mut after_placeholder = false;

    for t in Lexer::new(sql, opts) {
        match t.tok {
            Tok::Space => pending_space = true,
            Tok::Comment => {
                comment_count += 1;
                pending_space = true;
            }
            Tok::Literal { kind, .. } => {
                // `$1` right after an identifier character would merge into it (`abc$1`), so
                // such neighbours get a space.
                let glued = out.as_bytes().last().is_some_and(|&c| is_ident_cont(c));
                if (pending_space || glued) && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                push_placeholder(&mut out, next);
                next = next.saturating_add(1);
                kinds.push(kind);
                literal_count += 1;
                unterminated |= kind == LitKind::Unterminated;
                after_placeholder = true;
            }
            Tok::Param(_) | Tok::Verbatim => {
                let s = &sql[t.start..t.end];
                let glued = after_placeholder && is_ident_cont(s.as_bytes()[0]);
                if (pending_space || glued) && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                after_placeholder = false;
                out.push_str(s);
            }
        }
    }

    let shape_hash = xxhash_rust::xxh3::xxh3_64_with_seed(out.as_bytes(), kinds.finish());
    Normalized {
        text: out,
        shape_hash,
        literal_count,
        comment_count,
        unterminated,
    }
}

/// Stable hex fingerprint of a normalized text: the first 8 bytes of its SHA-256, as 16
/// lowercase hex digits. An export field: it must never change for the same text.
pub fn fingerprint(normalized_text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(normalized_text.as_bytes());
    let mut s = String::with_capacity(16);
    for &byte in &digest[..8] {
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 0xf)] as char);
    }
    s
}

fn push_placeholder(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push('$');
    for &d in &buf[i..] {
        out.push(d as char);
    }
}

/// Order-sensitive hash of the sequence of literal kinds (FNV-1a over the kind bytes), used as
/// the seed of the text hash.
struct KindsHash(u64);

impl KindsHash {
    fn new() -> Self {
        KindsHash(0xcbf2_9ce4_8422_2325)
    }

    fn push(&mut self, kind: LitKind) {
        self.0 = (self.0 ^ kind as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: LexOptions = LexOptions {
        standard_conforming_strings: true,
    };
    const OFF: LexOptions = LexOptions {
        standard_conforming_strings: false,
    };

    /// (input, normalized text, literals replaced, unterminated)
    const CASES: &[(&str, &str, usize, bool)] = &[
        // pgbench -S
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            1,
            false,
        ),
        // Plain strings, '' escapes, typed literals keep their type.
        ("SELECT 'it''s'", "SELECT $1", 1, false),
        ("SELECT ''", "SELECT $1", 1, false),
        (
            "SELECT DATE '2020-01-01', interval '1 day', 'x'::text",
            "SELECT DATE $1, interval $2, $3::text",
            3,
            false,
        ),
        // E-strings: backslash escapes, a quote included.
        ("SELECT E'it\\'s', 1", "SELECT $1, $2", 2, false),
        ("SELECT e'a\\\\', 'b'", "SELECT $1, $2", 2, false),
        ("SELECT E'\\x41\\n'", "SELECT $1", 1, false),
        // U& strings with their UESCAPE clause.
        ("SELECT U&'d\\0061t\\+000061'", "SELECT $1", 1, false),
        (
            "SELECT U&'d!0061t!+000061' UESCAPE '!' AS x",
            "SELECT $1 AS x",
            1,
            false,
        ),
        (
            "SELECT u&'d!0061t' /* c */\n uescape\t'!', 2",
            "SELECT $1, $2",
            2,
            false,
        ),
        // Bit strings and national strings.
        (
            "SELECT B'0101', X'1F', b'1', x'ab'",
            "SELECT $1, $2, $3, $4",
            4,
            false,
        ),
        ("SELECT N'abc', n'd''e'", "SELECT $1, $2", 2, false),
        // Dollar quotes, with and without tags; `$1` is a parameter.
        ("SELECT $$a 'b' \"c\" $$", "SELECT $1", 1, false),
        (
            "SELECT $tag$ $$ not the end $tag$, 1",
            "SELECT $1, $2",
            2,
            false,
        ),
        ("SELECT $a$x$b$y$a$", "SELECT $1", 1, false),
        ("SELECT $_1$x$_1$", "SELECT $1", 1, false),
        ("SELECT $1, 'x', $2", "SELECT $1, $3, $2", 1, false),
        ("SELECT $1::int, $10", "SELECT $1::int, $10", 0, false),
        (
            "SELECT 'x' WHERE a = $3",
            "SELECT $4 WHERE a = $3",
            1,
            false,
        ),
        ("SELECT $1abc, $1$2", "SELECT $1abc, $1$2", 0, false),
        ("SELECT $ 1", "SELECT $ $1", 1, false),
        ("SELECT $abc", "SELECT $abc", 0, false),
        // `$` inside identifiers is neither.
        (
            "SELECT a$1, b$$c$$ FROM t$x",
            "SELECT a$1, b$$c$$ FROM t$x",
            0,
            false,
        ),
        // Continuation across whitespace holding a newline (comments allowed) is one literal.
        ("SELECT 'a'\n'b'", "SELECT $1", 1, false),
        ("SELECT 'a' -- c\n  'b' ,1", "SELECT $1 ,$2", 2, false),
        ("SELECT E'a'\r\n'b\\'c'", "SELECT $1", 1, false),
        (
            "SELECT 'a'\r'b', 'c'\x0b\x0c\t 'd'",
            "SELECT $1, $2 $3",
            3,
            false,
        ),
        ("SELECT B'01'\n'10'", "SELECT $1", 1, false),
        ("SELECT 'a' 'b'", "SELECT $1 $2", 2, false),
        ("SELECT 'a' /* c */\n'b'", "SELECT $1 $2", 2, false),
        // Numbers.
        (
            "SELECT 1.5e-3, .5, 5., 0x_FF, 0o17, 0b101, 1_000, 1e5, 1E+5, 1.e5",
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10",
            10,
            false,
        ),
        ("SELECT -5, +.5e3, x-1", "SELECT -$1, +$2, x-$3", 3, false),
        ("SELECT 1..10, a...5", "SELECT $1..$2, a..$3", 3, false),
        ("SELECT t.5", "SELECT t $1", 1, false),
        // Trailing junk (rejected by PostgreSQL) is folded into the literal.
        (
            "SELECT 123abc, 0x, 0xZZ, 1e+, 1_, 0b12",
            "SELECT $1, $2, $3, $4, $5, $6",
            6,
            false,
        ),
        // Comments hold no value in the output; nested block comments end where PostgreSQL's do.
        (
            "SELECT 1 -- 123-45-6789\nFROM t",
            "SELECT $1 FROM t",
            1,
            false,
        ),
        ("SELECT /* a /* nested */ still */ 1", "SELECT $1", 1, false),
        (
            "SELECT 1+-- c\n2, 2*/**/3",
            "SELECT $1+ $2, $3* $4",
            4,
            false,
        ),
        ("SELECT 1 -- at the end", "SELECT $1", 1, false),
        // Names that look like literals stay.
        (
            "SELECT \"1\", \"'x'\", \"a\"\"b\", e, x, b, n, u, ex FROM \"E'a'\"",
            "SELECT \"1\", \"'x'\", \"a\"\"b\", e, x, b, n, u, ex FROM \"E'a'\"",
            0,
            false,
        ),
        (
            "SELECT xtab, e1, n2, _x FROM b",
            "SELECT xtab, e1, n2, _x FROM b",
            0,
            false,
        ),
        ("SELECT ex'1'", "SELECT ex $1", 1, false),
        ("SELECT u&x", "SELECT u&x", 0, false),
        (
            "SELECT * FROM U&\"d!0061t\" UESCAPE '!'",
            "SELECT * FROM U&\"d!0061t\" UESCAPE '!'",
            0,
            false,
        ),
        // Whitespace collapses; placeholders never glue to a neighbour.
        ("  SELECT\t\n 1  ;  ", "SELECT $1 ;", 1, false),
        ("SELECT'a'FROM t", "SELECT $1 FROM t", 1, false),
        (
            "SELECT 'é', näme FROM t",
            "SELECT $1, näme FROM t",
            1,
            false,
        ),
        ("", "", 0, false),
        // Unterminated: the rest is one placeholder.
        ("SELECT 'abc", "SELECT $1", 1, true),
        (
            "SELECT 1 FROM t WHERE x = 'secret",
            "SELECT $1 FROM t WHERE x = $2",
            2,
            true,
        ),
        ("SELECT $$abc", "SELECT $1", 1, true),
        ("SELECT $q$abc$$", "SELECT $1", 1, true),
        ("SELECT E'abc\\", "SELECT $1", 1, true),
        ("SELECT E'abc\\'", "SELECT $1", 1, true),
        ("SELECT \"abc 'x'", "SELECT $1", 1, true),
        ("SELECT B'01", "SELECT $1", 1, true),
        ("SELECT 1 /* 123 /* */", "SELECT $1 $2", 2, true),
        ("SELECT 'a'\n'b", "SELECT $1", 1, true),
        ("SELECT U&'a' UESCAPE 'b", "SELECT $1 UESCAPE $2", 2, true),
    ];

    #[test]
    fn normalizes_every_literal_kind() {
        for &(sql, text, literals, unterminated) in CASES {
            let n = normalize(sql, ON);
            assert_eq!(n.text, text, "{sql:?}");
            assert_eq!(n.literal_count, literals, "{sql:?}");
            assert_eq!(n.unterminated, unterminated, "{sql:?}");
        }
    }

    #[test]
    fn standard_conforming_strings_off_makes_backslash_an_escape() {
        let cases: &[(&str, &str, LexOptions, usize, bool)] = &[
            ("SELECT 'it\\'s', 1", "SELECT $1, $2", OFF, 2, false),
            ("SELECT 'a\\\\', 'b'", "SELECT $1, $2", OFF, 2, false),
            ("SELECT N'a\\'b'", "SELECT $1", OFF, 1, false),
            ("SELECT 'a'\n'b\\'c'", "SELECT $1", OFF, 1, false),
            // With the setting on, the same text ends the string at the backslash.
            ("SELECT 'it\\'s', 1", "SELECT $1 s $2", ON, 2, true),
            // U& strings never take backslash escapes.
            ("SELECT U&'a\\', 1", "SELECT $1, $2", OFF, 2, false),
        ];
        for &(sql, text, opts, literals, unterminated) in cases {
            let n = normalize(sql, opts);
            assert_eq!(n.text, text, "{sql:?} {opts:?}");
            assert_eq!(n.literal_count, literals, "{sql:?}");
            assert_eq!(n.unterminated, unterminated, "{sql:?}");
        }
    }

    #[test]
    fn counts_comments() {
        let n = normalize("SELECT /* a */ 1 -- b", ON);
        assert_eq!((n.comment_count, n.literal_count), (2, 1));
        assert!(!n.is_verbatim());
        assert!(normalize("SELECT a FROM t WHERE b = $1", ON).is_verbatim());
    }

    #[test]
    fn shape_hash_is_the_same_for_the_same_shape() {
        let a = normalize("SELECT * FROM t WHERE a = 1 AND b = 'x'", ON);
        let b = normalize(
            "SELECT *  FROM t\nWHERE a = 99 /* c */ AND b = E'y\\'z'",
            ON,
        );
        let c = normalize("SELECT * FROM t WHERE a = $$1$$ AND b = 'x'", ON);
        assert_eq!(a.text, b.text);
        assert_eq!(a.shape_hash, b.shape_hash);
        assert_eq!(a.text, c.text);
        assert_ne!(
            a.shape_hash, c.shape_hash,
            "integer and string literals differ"
        );
    }

    #[test]
    fn shape_hash_tells_literal_kinds_apart() {
        let hash = |sql| normalize(sql, ON).shape_hash;
        let distinct = [
            "SELECT 1",
            "SELECT '1'",
            "SELECT 1.0",
            "SELECT B'1'",
            "SELECT N'1'",
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a} vs {b}");
            }
        }
        assert_eq!(hash("SELECT 2147483647"), hash("SELECT 0x7fff_ffff"));
        // Past 32 bits PostgreSQL makes a Float node, as for 1.0.
        assert_ne!(hash("SELECT 2147483647"), hash("SELECT 2147483648"));
        assert_eq!(hash("SELECT 3000000000"), hash("SELECT 1.0"));
        assert_eq!(hash("SELECT 'a'"), hash("SELECT E'a'"));
        assert_eq!(hash("SELECT 'a'"), hash("SELECT $$a$$"));
        assert_ne!(hash("SELECT 1, 'a'"), hash("SELECT 'a', 1"));
        // Known value: the hash is deterministic across runs and builds.
        assert_eq!(hash("SELECT 1"), hash("select 1".to_uppercase().as_str()));
    }

    #[test]
    fn fingerprint_is_stable() {
        // First 8 bytes of SHA-256, pinned: this is an export field.
        assert_eq!(fingerprint("SELECT $1"), "165a22d8eabe300a");
        assert_eq!(
            fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
            "64eb481e6d342ccf"
        );
        assert_eq!(fingerprint(""), "e3b0c44298fc1c14");
    }

    #[test]
    fn placeholder_numbers_are_written_in_decimal() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut s = String::new();
            push_placeholder(&mut s, n);
            assert_eq!(s, format!("${n}"));
        }
        let huge = normalize("SELECT $18446744073709551615, 1", ON);
        assert_eq!(
            huge.text,
            "SELECT $18446744073709551615, $18446744073709551615"
        );
    }
}
