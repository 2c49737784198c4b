//! A scanner for PostgreSQL's lexical grammar (`src/backend/parser/scan.l`), reduced to what
//! normalization needs: where each literal, comment, parameter and run of whitespace starts and
//! ends. Everything else (keywords, identifiers, quoted identifiers, operators, punctuation) is
//! passed through as "verbatim" tokens, one identifier or one byte at a time.
//!
//! The boundaries must match the server's: a literal that this scanner ends too early leaks the
//! rest of it into the audit trail, and two texts that differ outside what it calls literals
//! must never normalize alike. The unit tests and the differential property test in
//! `tests/` compare it with PostgreSQL's own scanner (through `pg_query::scan`).

use memchr::{memchr, memchr2, memmem};
use std::borrow::Cow;

/// Session settings that change how PostgreSQL splits a text into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LexOptions {
    /// The session's `standard_conforming_strings` (on by default since PostgreSQL 9.1). When
    /// off, backslash is an escape character in plain `'…'` strings, as in `E'…'` strings.
    pub standard_conforming_strings: bool,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            standard_conforming_strings: true,
        }
    }
}

/// What kind of literal a placeholder replaced. Part of the shape hash: literals of different
/// kinds parse to different nodes (`'1'` is a string constant, `1` an integer, `1.0` a numeric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LitKind {
    /// `'…'`, `E'…'`, `U&'…'` (with its `UESCAPE` clause) and `$tag$…$tag$`.
    String = 1,
    /// `N'…'`, which PostgreSQL turns into a `bpchar` cast.
    National = 2,
    /// `B'…'` and `X'…'`.
    BitString = 3,
    /// An integer that fits in 32 bits (`Integer` node).
    Integer = 4,
    /// Any other number, or a malformed one (`123abc`, which PostgreSQL rejects).
    Numeric = 5,
    /// An unterminated literal, comment or quoted identifier: the rest of the text.
    Unterminated = 6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Whitespace.
    Space,
    /// A complete `--` or `/* */` comment.
    Comment,
    /// A literal. `plain_quote` is set for strings whose first segment is a plain `'…'` (also
    /// after `N`): their escapes depend on `standard_conforming_strings`.
    Literal { kind: LitKind, plain_quote: bool },
    /// A parameter `$n` (value saturated), kept as written.
    Param(u64),
    /// Anything else, kept as written.
    Verbatim,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

#[inline]
pub(crate) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

#[inline]
pub(crate) fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// Dollar-quote tags: identifier characters without `$`.
#[inline]
fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// How backslashes and doubled quotes behave inside a quoted literal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `xq`/`xus`: `''` is a quote, backslash is ordinary.
    Standard,
    /// `xe`: `''` is a quote, backslash escapes the next byte.
    Escape,
    /// `xb`/`xh`: the first quote ends the segment.
    Bits,
}

/// Splits a text into [`Token`]s. Never fails: unterminated constructs become one
/// [`LitKind::Unterminated`] literal that runs to the end of the text.
pub(crate) struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    scs: bool,
    /// Progress through `U&"…" UESCAPE 'c'`, whose escape character must stay verbatim because it
    /// changes which identifier is named. 1: after the identifier; 2: after `UESCAPE`.
    uident_escape: u8,
    /// When set, collects the `--` comments between the segments of continued strings
    /// (`'a' -- c⏎ 'b'`), which are inside a literal's span.
    gap_comments: Option<Vec<(usize, usize)>>,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str, opts: LexOptions) -> Self {
        Lexer {
            b: sql.as_bytes(),
            pos: 0,
            scs: opts.standard_conforming_strings,
            uident_escape: 0,
            gap_comments: None,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> u8 {
        // 0 is never special to the scanner, so it doubles as "end of text".
        self.b.get(i).copied().unwrap_or(0)
    }

    fn plain_quoting(&self) -> Quoting {
        if self.scs {
            Quoting::Standard
        } else {
            Quoting::Escape
        }
    }

    /// End of the `/* … */` comment opening at `i` (nested, as PostgreSQL's are), or `None`.
    fn block_comment_end(&self, i: usize) -> Option<usize> {
        let b = self.b;
        let mut depth = 0usize;
        let mut j = i + 2;
        loop {
            let k = j + memchr2(b'*', b'/', b.get(j..)?)?;
            if b[k] == b'/' && self.at(k + 1) == b'*' {
                depth += 1;
                j = k + 2;
            } else if b[k] == b'*' && self.at(k + 1) == b'/' {
                if depth == 0 {
                    return Some(k + 2);
                }
                depth -= 1;
                j = k + 2;
            } else {
                j = k + 1;
            }
        }
    }

    /// End of the `--` comment at `i` (its newline is whitespace, not part of it).
    fn line_comment_end(&self, i: usize) -> usize {
        memchr2(b'\n', b'\r', &self.b[i..]).map_or(self.b.len(), |k| i + k)
    }

    /// Skips whitespace and comments from `i`; `None` if a comment is unterminated.
    fn skip_blank(&self, mut i: usize) -> Option<usize> {
        loop {
            let c = self.at(i);
            if is_space(c) {
                i += 1;
            } else if c == b'-' && self.at(i + 1) == b'-' {
                i = self.line_comment_end(i);
            } else if c == b'/' && self.at(i + 1) == b'*' {
                i = self.block_comment_end(i)?;
            } else {
                return Some(i);
            }
        }
    }

    /// Given the position just after a closing quote, the position of the quote that continues
    /// the literal, if any: whitespace (and `--` comments) holding a newline, then a quote.
    fn continuation(&mut self, mut i: usize) -> Option<usize> {
        let recorded = self.gap_comments.as_ref().map_or(0, Vec::len);
        let mut newline = false;
        loop {
            let c = self.at(i);
            if is_space(c) {
                newline |= c == b'\n' || c == b'\r';
                i += 1;
            } else if c == b'-' && self.at(i + 1) == b'-' {
                let end = self.line_comment_end(i);
                if let Some(gaps) = &mut self.gap_comments {
                    gaps.push((i, end));
                }
                i = end;
            } else if newline && c == b'\'' {
                return Some(i);
            } else {
                if let Some(gaps) = &mut self.gap_comments {
                    gaps.truncate(recorded);
                }
                return None;
            }
        }
    }

    /// End of the quoted literal whose first opening quote is at `open`, continuation segments
    /// included; `None` if unterminated.
    fn quoted_end(&mut self, mut open: usize, quoting: Quoting) -> Option<usize> {
        let b = self.b;
        loop {
            let mut j = open + 1;
            let close = loop {
                let rest = b.get(j..)?;
                let k = j + match quoting {
                    Quoting::Escape => memchr2(b'\'', b'\\', rest)?,
                    _ => memchr(b'\'', rest)?,
                };
                if b[k] == b'\\' {
                    // Any byte after a backslash is escaped (a quote included).
                    if k + 1 >= b.len() {
                        return None;
                    }
                    j = k + 2;
                } else if quoting != Quoting::Bits && self.at(k + 1) == b'\'' {
                    j = k + 2;
                } else {
                    break k;
                }
            };
            match self.continuation(close + 1) {
                Some(next) => open = next,
                None => return Some(close + 1),
            }
        }
    }

    /// After a `U&'…'` string ending at `end`: the end of its `UESCAPE '…'` clause, if one follows.
    fn uescape_clause_end(&mut self, end: usize) -> Option<usize> {
        let i = self.skip_blank(end)?;
        let word = self.b.get(i..i + 7)?;
        if !word.eq_ignore_ascii_case(b"uescape") || is_ident_cont(self.at(i + 7)) {
            return None;
        }
        let q = self.skip_blank(i + 7)?;
        // Any string constant the scanner makes: '…', E'…' or $tag$…$tag$.
        match self.at(q) {
            b'\'' => {
                let quoting = self.plain_quoting();
                self.quoted_end(q, quoting)
            }
            b'e' | b'E' if self.at(q + 1) == b'\'' => self.quoted_end(q + 1, Quoting::Escape),
            b'$' => match self.dollar(q) {
                Token {
                    tok: Tok::Literal { .. },
                    end,
                    ..
                } => Some(end),
                _ => None,
            },
            _ => None,
        }
    }

    fn unterminated(&mut self, start: usize) -> Token {
        self.pos = self.b.len();
        Token {
            tok: Tok::Literal {
                kind: LitKind::Unterminated,
                plain_quote: false,
            },
            start,
            end: self.b.len(),
        }
    }

    fn token(&mut self, tok: Tok, start: usize, end: usize) -> Token {
        self.pos = end;
        Token { tok, start, end }
    }

    fn literal(&mut self, kind: LitKind, plain_quote: bool, start: usize, end: usize) -> Token {
        self.token(Tok::Literal { kind, plain_quote }, start, end)
    }

    /// A string literal whose (first) opening quote is at `quote`.
    fn string(&mut self, start: usize, quote: usize, kind: LitKind, quoting: Quoting) -> Token {
        match self.quoted_end(quote, quoting) {
            Some(end) => self.literal(
                kind,
                quote == start || kind == LitKind::National,
                start,
                end,
            ),
            None => self.unterminated(start),
        }
    }

    /// `"…"` identifier starting at `quote`; `None` if unterminated.
    fn quoted_ident_end(&self, quote: usize) -> Option<usize> {
        let b = self.b;
        let mut j = quote + 1;
        loop {
            let k = j + memchr(b'"', b.get(j..)?)?;
            if self.at(k + 1) == b'"' {
                j = k + 2;
            } else {
                return Some(k + 1);
            }
        }
    }

    /// A number starting at `i` (a digit, or `.` before a digit), with any trailing junk
    /// (`123abc`, which PostgreSQL rejects) folded in so that no part of it stays in clear.
    fn number(&mut self, i: usize) -> Token {
        let b = self.b;
        let digits = |mut j: usize, radix: u32| -> usize {
            // ({digit})(_?{digit})* — an underscore only between two digits.
            while j < b.len() {
                if (b[j] as char).is_digit(radix) {
                    j += 1;
                } else if b[j] == b'_' && (self.at(j + 1) as char).is_digit(radix) {
                    j += 2;
                } else {
                    break;
                }
            }
            j
        };
        let junk = |j: usize| -> usize {
            let mut k = j;
            while k < b.len() && is_ident_cont(b[k]) {
                k += 1;
            }
            k
        };

        // 0x1F, 0o17, 0b101: valid only if no identifier character follows (else PostgreSQL reads
        // `0` followed by an identifier, i.e. trailing junk).
        if b[i] == b'0' {
            let radix = match self.at(i + 1) {
                b'x' | b'X' => 16,
                b'o' | b'O' => 8,
                b'b' | b'B' => 2,
                _ => 0,
            };
            if radix != 0 {
                let mut j = i + 2;
                if self.at(j) == b'_' {
                    j += 1;
                }
                let end = digits(j, radix);
                if end > j && (self.at(j) as char).is_digit(radix) && !is_ident_cont(self.at(end)) {
                    let kind = if fits_i32(&b[i + 2..end], radix) {
                        LitKind::Integer
                    } else {
                        LitKind::Numeric
                    };
                    return self.literal(kind, false, i, end);
                }
                let end = junk(i + 1);
                return self.literal(LitKind::Numeric, false, i, end);
            }
        }

        let mut j = i;
        let mut integer = true;
        if b[j] != b'.' {
            j = digits(j, 10);
        }
        if self.at(j) == b'.' && self.at(j + 1) != b'.' {
            // `1.`, `1.5`, `.5` (but `1..2` is 1 followed by `..`).
            integer = false;
            j += 1;
            if self.at(j).is_ascii_digit() {
                j = digits(j, 10);
            }
        }
        if matches!(self.at(j), b'e' | b'E') {
            let mut k = j + 1;
            let signed = matches!(self.at(k), b'+' | b'-');
            if signed {
                k += 1;
            }
            if self.at(k).is_ascii_digit() {
                integer = false;
                j = digits(k, 10);
            } else if signed {
                // `1e+`: PostgreSQL rejects it; fold it into the literal.
                return self.literal(LitKind::Numeric, false, i, k);
            }
        }
        if is_ident_start(self.at(j)) {
            let end = junk(j);
            return self.literal(LitKind::Numeric, false, i, end);
        }
        let kind = if integer && fits_i32(&b[i..j], 10) {
            LitKind::Integer
        } else {
            LitKind::Numeric
        };
        self.literal(kind, false, i, j)
    }

    /// `$`: a parameter, a dollar-quoted string, or a lone `$`.
    fn dollar(&mut self, i: usize) -> Token {
        let b = self.b;
        if self.at(i + 1).is_ascii_digit() {
            let mut j = i + 1;
            let mut n: u64 = 0;
            while self.at(j).is_ascii_digit() {
                n = n.saturating_mul(10).saturating_add(u64::from(b[j] - b'0'));
                j += 1;
            }
            return self.token(Tok::Param(n), i, j);
        }
        let mut j = i + 1;
        if self.at(j) != b'$' {
            if !is_ident_start(self.at(j)) {
                return self.token(Tok::Verbatim, i, i + 1);
            }
            while is_dolq_cont(self.at(j)) {
                j += 1;
            }
            if self.at(j) != b'$' {
                // `$abc` without a closing `$`: PostgreSQL returns the `$` alone.
                return self.token(Tok::Verbatim, i, i + 1);
            }
        }
        let delim = &b[i..=j];
        match memmem::find(&b[j + 1..], delim) {
            Some(k) => self.literal(LitKind::String, false, i, j + 1 + k + delim.len()),
            None => self.unterminated(i),
        }
    }

    /// A token starting with an identifier character: a prefixed literal (`E'…'`, `B'…'`, `X'…'`,
    /// `N'…'`, `U&'…'`), a `U&"…"` identifier, or an identifier or keyword. `escape_state` is the
    /// `U&"…" UESCAPE` progress before this token.
    fn identifier_or_prefixed(&mut self, i: usize, escape_state: u8) -> Token {
        let c = self.at(i);
        let next = self.at(i + 1);
        if next == b'\'' {
            match c {
                b'e' | b'E' => return self.string(i, i + 1, LitKind::String, Quoting::Escape),
                b'b' | b'B' | b'x' | b'X' => {
                    return self.string(i, i + 1, LitKind::BitString, Quoting::Bits)
                }
                b'n' | b'N' => {
                    let quoting = self.plain_quoting();
                    return self.string(i, i + 1, LitKind::National, quoting);
                }
                _ => {}
            }
        }
        if matches!(c, b'u' | b'U') && next == b'&' {
            match self.at(i + 2) {
                b'\'' => {
                    // Backslash is never an escape in U& strings: `\` introduces a code point.
                    let Some(end) = self.quoted_end(i + 2, Quoting::Standard) else {
                        return self.unterminated(i);
                    };
                    let end = self.uescape_clause_end(end).unwrap_or(end);
                    return self.literal(LitKind::String, false, i, end);
                }
                b'"' => {
                    let Some(end) = self.quoted_ident_end(i + 2) else {
                        return self.unterminated(i);
                    };
                    self.uident_escape = 1;
                    return self.token(Tok::Verbatim, i, end);
                }
                _ => {}
            }
        }
        let mut j = i + 1;
        while is_ident_cont(self.at(j)) {
            j += 1;
        }
        if escape_state == 1 && self.b[i..j].eq_ignore_ascii_case(b"uescape") {
            self.uident_escape = 2;
        }
        self.token(Tok::Verbatim, i, j)
    }

    fn next_token(&mut self) -> Option<Token> {
        let b = self.b;
        let i = self.pos;
        let c = *b.get(i)?;
        // The UESCAPE progress survives blanks only; any other token resets it.
        let escape_state = std::mem::take(&mut self.uident_escape);
        let tok = match c {
            _ if is_space(c) => {
                let mut j = i + 1;
                while j < b.len() && is_space(b[j]) {
                    j += 1;
                }
                self.uident_escape = escape_state;
                self.token(Tok::Space, i, j)
            }
            b'-' if self.at(i + 1) == b'-' => {
                let end = self.line_comment_end(i);
                self.uident_escape = escape_state;
                self.token(Tok::Comment, i, end)
            }
            b'/' if self.at(i + 1) == b'*' => match self.block_comment_end(i) {
                Some(end) => {
                    self.uident_escape = escape_state;
                    self.token(Tok::Comment, i, end)
                }
                None => self.unterminated(i),
            },
            b'\'' => {
                // `U&"x" UESCAPE '!'`: the escape character decides which identifier is named, so
                // it stays in clear (a single ASCII character, never a value).
                let e = self.at(i + 1);
                if escape_state == 2
                    && e != b'\''
                    && e < 0x80
                    && (self.scs || e != b'\\')
                    && self.at(i + 2) == b'\''
                    && self.at(i + 3) != b'\''
                {
                    // A lookahead only: what it sees is scanned again below if it continues.
                    let gaps = self.gap_comments.take();
                    let continued = self.continuation(i + 3).is_some();
                    self.gap_comments = gaps;
                    if !continued {
                        return Some(self.token(Tok::Verbatim, i, i + 3));
                    }
                }
                let quoting = self.plain_quoting();
                self.string(i, i, LitKind::String, quoting)
            }
            b'"' => match self.quoted_ident_end(i) {
                Some(end) => self.token(Tok::Verbatim, i, end),
                None => self.unterminated(i),
            },
            b'$' => self.dollar(i),
            b'0'..=b'9' => self.number(i),
            // `..` is one token, so `1..10` never reads `.10` as a number.
            b'.' if self.at(i + 1) == b'.' => self.token(Tok::Verbatim, i, i + 2),
            b'.' if self.at(i + 1).is_ascii_digit() => self.number(i),
            _ if is_ident_start(c) => self.identifier_or_prefixed(i, escape_state),
            _ => self.token(Tok::Verbatim, i, i + 1),
        };
        Some(tok)
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        self.next_token()
    }
}

/// Whether the digits (underscores allowed) fit in an `i32`, as PostgreSQL decides between an
/// `Integer` and a `Float` node.
fn fits_i32(digits: &[u8], radix: u32) -> bool {
    let mut v: u64 = 0;
    for &d in digits {
        if d == b'_' {
            continue;
        }
        let Some(x) = (d as char).to_digit(radix) else {
            return false;
        };
        v = v * u64::from(radix) + u64::from(x);
        if v > i32::MAX as u64 {
            return false;
        }
    }
    true
}

/// Whether `sql` may hold a `$` at all (parameters or dollar quotes).
#[inline]
pub(crate) fn has_dollar(sql: &str) -> bool {
    memchr(b'$', sql.as_bytes()).is_some()
}

/// The text to hand to `pg_query`, whose scanner differs from the server's in two ways:
/// - it always runs with `standard_conforming_strings` on: when the session has it off, each
///   plain `'…'` string becomes `E'…'` (whose escapes are those of a plain string with the setting
///   off) and `N'…'` becomes `NCHAR E'…'` (the tokens PostgreSQL makes of it);
/// - it does not continue a string across a `--` comment (`'a' -- c⏎ 'b'`), which the server
///   does: comments are blanked out (which also keeps them out of its error messages).
pub(crate) fn parse_text(sql: &str, opts: LexOptions) -> Cow<'_, str> {
    let b = sql.as_bytes();
    if opts.standard_conforming_strings
        && memmem::find(b, b"--").is_none()
        && memmem::find(b, b"/*").is_none()
    {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    let blank = |out: &mut String, copied: &mut usize, from: usize, to: usize| {
        out.push_str(&sql[*copied..from]);
        out.extend(std::iter::repeat_n(' ', to - from));
        *copied = to;
    };
    let mut lexer = Lexer::new(sql, opts);
    lexer.gap_comments = Some(Vec::new());
    while let Some(t) = lexer.next() {
        match t.tok {
            Tok::Comment => blank(&mut out, &mut copied, t.start, t.end),
            Tok::Literal { kind, plain_quote } => {
                if plain_quote && !opts.standard_conforming_strings {
                    out.push_str(&sql[copied..t.start]);
                    if t.start > 0 && is_ident_cont(b[t.start - 1]) {
                        out.push(' ');
                    }
                    if kind == LitKind::National {
                        out.push_str("NCHAR E");
                        copied = t.start + 1;
                    } else {
                        out.push('E');
                        copied = t.start;
                    }
                }
                for (from, to) in lexer.gap_comments.iter_mut().flat_map(|g| g.drain(..)) {
                    blank(&mut out, &mut copied, from, to);
                }
            }
            _ => {}
        }
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// A bound on how deeply the parse tree of `sql` can nest, in units of one token or one bracket.
///
/// PostgreSQL's parser keeps lists flat (`,`-separated items, `a AND b AND c`, `a OR b OR c`, the
/// `WHEN`/`THEN`/`ELSE` arms of CASE), so the chain of tokens *within* an item bounds its depth;
/// brackets (`(`, `[`, `CASE … END`) add their content's depth. Constructs that chain *across*
/// list items — set operations (`SELECT a, b UNION SELECT …`), joins (`… ON x AND y JOIN …`) and
/// `BETWEEN` (whose upper bound may hold another BETWEEN after its AND) — count at the level of
/// their bracket. Each unit costs a few KiB of stack in everything that walks the tree.
pub(crate) fn nesting_estimate(sql: &str, opts: LexOptions) -> usize {
    #[derive(Default)]
    struct Group {
        /// Opened by CASE (closed by END) rather than by a bracket.
        case: bool,
        /// Set operations, joins and BETWEENs at this level.
        chain: usize,
        /// Tokens of the current item.
        tokens: usize,
        /// Deepest group in the current item.
        child: usize,
        /// Deepest finished item.
        best: usize,
    }
    impl Group {
        fn depth(&self) -> usize {
            self.chain + self.best.max(self.tokens + self.child)
        }
        fn end_item(&mut self) {
            self.best = self.best.max(self.tokens + self.child);
            self.tokens = 0;
            self.child = 0;
        }
    }
    fn close(groups: &mut Vec<Group>) {
        let depth = groups.pop().map_or(0, |g| g.depth()) + 1;
        let parent = groups
            .last_mut()
            .expect("the outermost group is never closed");
        parent.tokens += 1;
        parent.child = parent.child.max(depth);
    }
    let is = |s: &[u8], words: &[&str]| words.iter().any(|w| s.eq_ignore_ascii_case(w.as_bytes()));

    let mut groups = vec![Group::default()];
    for t in Lexer::new(sql, opts) {
        if matches!(t.tok, Tok::Space | Tok::Comment) {
            continue;
        }
        let s = &sql.as_bytes()[t.start..t.end];
        let top = groups.len() - 1;
        match s {
            b"(" | b"[" => groups.push(Group::default()),
            b")" | b"]" => {
                // Closes the innermost bracket, and any CASE left open inside it.
                while groups.len() > 1 {
                    let case = groups[groups.len() - 1].case;
                    close(&mut groups);
                    if !case {
                        break;
                    }
                }
            }
            b"," | b";" => groups[top].end_item(),
            _ if is(s, &["and", "or", "when", "then", "else"]) => groups[top].end_item(),
            _ if is(s, &["union", "intersect", "except", "join", "between"]) => {
                groups[top].chain += 1
            }
            _ if is(s, &["case"]) => groups.push(Group {
                case: true,
                ..Group::default()
            }),
            _ if is(s, &["end"]) && groups[top].case => close(&mut groups),
            _ => groups[top].tokens += 1,
        }
    }
    // Unclosed groups (PostgreSQL rejects them) fold into their parents.
    while groups.len() > 1 {
        close(&mut groups);
    }
    groups[0].depth()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_query::protobuf::Token as T;
    use proptest::prelude::*;

    type Span = (usize, usize);

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Spans {
        literals: Vec<Span>,
        comments: Vec<Span>,
        params: Vec<Span>,
    }

    /// Literal, comment and parameter spans as PostgreSQL's own scanner (standard_conforming_strings
    /// on) sees them, merged where the parser combines tokens into one value: `U&'…' UESCAPE '…'`
    /// and `N'…'` (scanned as NCHAR then a string). `None` if PostgreSQL rejects the text.
    fn postgres_spans(sql: &str) -> Option<Spans> {
        let tokens = pg_query::scan(sql).ok()?.tokens;
        let kind = |i: usize| tokens.get(i).and_then(|t| T::try_from(t.token).ok());
        let span = |i: usize| (tokens[i].start as usize, tokens[i].end as usize);
        let mut spans = Spans::default();
        let mut i = 0;
        // The parser never sees comments: `U&'…' UESCAPE -- c⏎ '!'` is one constant.
        let next = |mut j: usize| {
            while matches!(kind(j), Some(T::SqlComment | T::CComment)) {
                j += 1;
            }
            j
        };
        while i < tokens.len() {
            let (start, end) = span(i);
            let (escape, escape_char) = (next(i + 1), next(next(i + 1) + 1));
            let uescape = kind(escape) == Some(T::Uescape) && kind(escape_char) == Some(T::Sconst);
            match kind(i) {
                Some(T::Usconst) if uescape => {
                    spans.literals.push((start, span(escape_char).1));
                    i = escape_char;
                }
                // The escape character of a U&"…" identifier is part of the name.
                Some(T::Uident) if uescape => i = escape_char,
                Some(T::Nchar)
                    if end - start == 1
                        && kind(i + 1) == Some(T::Sconst)
                        && span(i + 1).0 == end =>
                {
                    spans.literals.push((start, span(i + 1).1));
                    i += 1;
                }
                Some(T::Sconst | T::Usconst | T::Bconst | T::Xconst | T::Iconst | T::Fconst) => {
                    spans.literals.push((start, end))
                }
                Some(T::SqlComment | T::CComment) => spans.comments.push((start, end)),
                Some(T::Param) => spans.params.push((start, end)),
                _ => {}
            }
            i += 1;
        }
        // The server continues a string across `--` comments (`'a' -- c⏎ 'b'` is 'ab', checked
        // with psql against PostgreSQL 15); libpg_query's scanner, which returns comments as
        // tokens, does not. Merge those as the server does.
        let mut merged: Vec<Span> = Vec::new();
        for lit in spans.literals {
            if let Some(prev) = merged.last_mut() {
                let gap = &sql[prev.1..lit.0];
                let comments: Vec<Span> = spans
                    .comments
                    .iter()
                    .copied()
                    .filter(|c| c.0 >= prev.1 && c.1 <= lit.0)
                    .collect();
                let blank = (prev.1..lit.0).all(|k| {
                    is_space(sql.as_bytes()[k]) || comments.iter().any(|c| (c.0..c.1).contains(&k))
                });
                if sql.as_bytes()[prev.1 - 1] == b'\''
                    && !sql[prev.0..prev.1].starts_with('$')
                    && sql.as_bytes()[lit.0] == b'\''
                    && !comments.is_empty()
                    && comments.iter().all(|c| sql[c.0..].starts_with("--"))
                    && blank
                    && gap.contains(['\n', '\r'])
                {
                    prev.1 = lit.1;
                    spans.comments.retain(|c| !comments.contains(c));
                    continue;
                }
            }
            merged.push(lit);
        }
        spans.literals = merged;
        Some(spans)
    }

    fn our_spans(sql: &str) -> Spans {
        let mut spans = Spans::default();
        for t in Lexer::new(sql, LexOptions::default()) {
            let span = (t.start, t.end);
            match t.tok {
                Tok::Literal { .. } => spans.literals.push(span),
                Tok::Comment => spans.comments.push(span),
                Tok::Param(_) => spans.params.push(span),
                Tok::Space | Tok::Verbatim => {}
            }
        }
        spans
    }

    const FRAGMENTS: &[&str] = &[
        "SELECT",
        "a",
        "x",
        "e",
        "E",
        "b",
        "B",
        "n",
        "N",
        "u",
        "U",
        "U&",
        "&",
        "UESCAPE",
        "uescape",
        "nchar",
        "'",
        "''",
        "'abc'",
        "'!'",
        "\\",
        "\\'",
        "E'",
        "e'x\\'y'",
        "B'",
        "X'",
        "N'",
        "U&'",
        "U&\"",
        "\"",
        "\"q\"",
        "$",
        "$$",
        "$a$",
        "$1",
        "$12",
        "$_$",
        "$a",
        "0",
        "1",
        "12",
        "1.5",
        ".",
        "..",
        ".5",
        "5.",
        "e5",
        "1e",
        "e-3",
        "+",
        "-",
        "_",
        "0x",
        "0xFF",
        "0o7",
        "0b1",
        "1_000",
        "0x_1",
        "--",
        "/*",
        "*/",
        "*",
        "/",
        "(",
        ")",
        ",",
        ";",
        "::",
        "=",
        "<>",
        "é",
        "\t",
        "\n",
        "\r",
        " ",
        "--x\n",
        "/* c */",
        "'a'\n'b'",
        "2147483648",
        "9",
        "@",
        "#",
        "?",
        "!",
    ];

    fn soup() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            (
                proptest::sample::select(FRAGMENTS),
                proptest::sample::select(&["", "", " ", "\n", "\r", "\x0b"][..]),
            ),
            0..24,
        )
        .prop_map(|parts| parts.into_iter().flat_map(|(f, sep)| [f, sep]).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Wherever PostgreSQL's scanner accepts a text, this scanner finds the same literals,
        /// comments and parameters, at the same places.
        #[test]
        fn agrees_with_postgres_scanner(sql in soup()) {
            if let Some(expected) = postgres_spans(&sql) {
                prop_assert_eq!(our_spans(&sql), expected, "{:?}", sql);
            }
        }
    }

    #[test]
    fn agrees_with_postgres_scanner_on_known_cases() {
        for sql in [
            "SELECT 1..10, a...5, t.5, 1.e5, 0x_FF",
            "SELECT U&'d!0061t' UESCAPE '!', U&\"d!0061t\" UESCAPE '!', N'x', nchar 'y'",
            "SELECT U&'d!0061t' UESCAPE e'!', U&'' UESCAPE $$!$$, U&''UESCAPE e'x\\'y'",
            "SELECT 'a' -- c\n 'b', $1, $$x$$, $t$ $$ $t$",
            "SELECT /* a /* b */ c */ 1 -- d",
            "SELECT e'\\'', b'01', x'1F', 'it''s'",
            "SELECT 'a'\r'b', 'c'\x0b\x0c\t 'd', 'e'\r\n\x0b'f'",
        ] {
            assert_eq!(our_spans(sql), postgres_spans(sql).expect(sql), "{sql:?}");
        }
    }

    #[test]
    fn parse_text_matches_what_the_server_reads() {
        let off = LexOptions {
            standard_conforming_strings: false,
        };
        assert_eq!(
            parse_text("SELECT 'a\\'b', N'c', DATE'd', E'e', $$f$$, x'1'", off),
            "SELECT E'a\\'b', NCHAR E'c', DATE E'd', E'e', $$f$$, x'1'"
        );
        assert_eq!(parse_text("SELECT 'a'\n'b\\''", off), "SELECT E'a'\n'b\\''");
        let on = LexOptions::default();
        assert!(matches!(parse_text("SELECT 'a\\'", on), Cow::Borrowed(_)));
        assert_eq!(
            parse_text("SELECT 'a' -- c\n 'b' /* d */, '--' -- e", on),
            "SELECT 'a'     \n 'b'        , '--'     "
        );
    }

    #[test]
    fn nesting_estimate_bounds_chains_not_lists() {
        let opts = LexOptions::default();
        let chain = format!("SELECT {}", vec!["a"; 500].join(" + "));
        assert!(nesting_estimate(&chain, opts) >= 999);
        let list = format!(
            "SELECT * FROM t WHERE id IN ({})",
            vec!["1"; 5000].join(", ")
        );
        assert!(nesting_estimate(&list, opts) < 20);
        let ands = format!(
            "SELECT * FROM t WHERE {}",
            vec!["a = 1"; 2000].join(" AND ")
        );
        assert!(nesting_estimate(&ands, opts) < 20);
        let parens = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert!(nesting_estimate(&parens, opts) >= 300);
        assert!(nesting_estimate(&"(".repeat(300), opts) >= 300);
    }
}
