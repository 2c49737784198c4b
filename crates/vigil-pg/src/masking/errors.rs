//! Errors, notices and notifications of a *protected* session: one with masking rules or
//! columns denied to it. What each field may carry, and what Vigil sends instead.
//!
//! PostgreSQL quotes stored values in its messages: the row a constraint rejected (`Failing row
//! contains (…)`, whole, columns unquoted and cut at 64 bytes), the key a unique, exclusion or
//! foreign key rejected (and, for exclusion constraints, *another* row's key), the value a type
//! could not read (`invalid input syntax for type integer: "…"`), the data line of a COPY, the
//! statement PL/pgSQL was running, and whatever database code chose to raise. The detectors
//! alone miss bare names and many formats, so a protected session's messages are decided field
//! by field (docs/MASKING.md, "Errors, notices and notifications"):
//!
//! | source (SQLSTATE class) | message, detail, hint | context | internal query | object names |
//! |---|---|---|---|---|
//! | raised by database code (`RAISE`, `ASSERT`, other PLs; `P0`, `38`, `39`) | withheld | per line | withheld | withheld |
//! | integrity (`23`), check option (`44`) | detail: row values withheld when the table may hold masked or denied columns; message, hint: detectors | per line | withheld | kept |
//! | data errors (`22`), lookups by value (`42` names not found, `3D`, `3F`), limits (`54`) | withheld, unless raised while parsing the statement (a position in it) or a message known to quote nothing | per line | withheld | kept |
//! | other reviewed classes (names, object ids, the statement's own text) | detectors | per line | withheld | kept |
//! | classes not reviewed | withheld | per line | withheld | kept |
//!
//! A context line passes when it names a code location (`PL/pgSQL function … line …`,
//! `SQL function "…"`, `while inserting index tuple …`); a COPY line keeps its position and
//! loses its data when the table is protected; any other line (`SQL statement "…"`, whose text
//! may be dynamic SQL built from values; `JSON data, line 1: …`; a line Vigil does not know) is
//! withheld. Values are never recorded: each withheld field or value counts once in the
//! statement's masking evidence, under `vigil:<reason>` with operator `withheld`.
//!
//! Placing values on columns is not attempted: a failing row is in the column order of the
//! partitioned table's root while the error names the partition, values are neither quoted nor
//! escaped, and the upstream role's privileges decide which columns appear. A table is
//! *protected* when any of its columns has a name a masking rule of the session may cover, or
//! the name of a denied column (so partitions and inheritance children of a protected table are
//! protected too), or when the table is unknown.

use super::{EvidenceKey, MaskLabel, MaskOutcome, MaskSource, MaskTally, Scratch, SessionMasking};
use crate::codec::put_message;
use crate::messages::tag::backend;
use std::collections::HashSet;
use std::sync::Arc;

/// Why a field was withheld: each reason is an evidence key of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Withheld {
    /// Values of a row or key of a table that may hold masked or denied columns.
    RowValues = 0,
    /// A data error's text, which may quote a stored value.
    DataError = 1,
    /// Text composed by database code (RAISE, ASSERT…).
    RaisedByCode = 2,
    /// A context line that may quote values.
    Context = 3,
    /// The internal query (PL/pgSQL's dynamic SQL may be built from values).
    InternalQuery = 4,
    /// A message of a SQLSTATE class, or a field, Vigil has not reviewed.
    Unreviewed = 5,
    /// A notification payload (what code or another session chose to send).
    Notification = 6,
}

/// Evidence keys of Vigil's own withholding, above any key a masking engine hands out.
const RESERVED_KEYS: EvidenceKey = 0xFFFF_FF00;

impl Withheld {
    const ALL: [Withheld; 7] = [
        Withheld::RowValues,
        Withheld::DataError,
        Withheld::RaisedByCode,
        Withheld::Context,
        Withheld::InternalQuery,
        Withheld::Unreviewed,
        Withheld::Notification,
    ];

    pub(crate) fn key(self) -> EvidenceKey {
        RESERVED_KEYS + self as EvidenceKey
    }

    fn reason(self) -> &'static str {
        match self {
            Withheld::RowValues => "row_values",
            Withheld::DataError => "data_error",
            Withheld::RaisedByCode => "raised_by_code",
            Withheld::Context => "context",
            Withheld::InternalQuery => "internal_query",
            Withheld::Unreviewed => "unreviewed_message",
            Withheld::Notification => "notification_payload",
        }
    }

    /// What the client gets instead.
    fn text(self) -> &'static [u8] {
        match self {
            Withheld::RowValues => {
                b"[withheld by Vigil: row values of a table with masked or denied columns]"
            }
            Withheld::DataError => {
                b"[withheld by Vigil: a data error's text may quote a stored value masked or denied to this session]"
            }
            Withheld::RaisedByCode => {
                b"[withheld by Vigil: raised by database code, which may include values masked or denied to this session]"
            }
            Withheld::Context => b"[context line withheld by Vigil: it may quote values]",
            Withheld::InternalQuery => {
                b"[internal query withheld by Vigil: it may be built from values]"
            }
            Withheld::Unreviewed => {
                b"[withheld by Vigil: a message Vigil has not reviewed for row values]"
            }
            Withheld::Notification => {
                b"[payload withheld by Vigil: notifications carry what database code or other sessions send, which may include values masked for this session]"
            }
        }
    }

    /// The evidence label of one of Vigil's own keys; `None` for a masking engine's key.
    pub(crate) fn label(key: EvidenceKey) -> Option<MaskLabel> {
        let w = Self::ALL.into_iter().find(|w| w.key() == key)?;
        Some(MaskLabel {
            rule: format!("vigil:{}", w.reason()),
            entity: "row_values".into(),
            operator: "withheld".into(),
        })
    }
}

/// Which tables' rows this session must not see whole.
pub(crate) trait Tables {
    /// Whether rows of `schema.table` (any schema when `None`) may hold values masked or denied
    /// to this session. Unknown tables are protected.
    fn protected(&mut self, schema: Option<&[u8]>, table: &[u8]) -> bool;
}

/// [`Tables`] from the connection's catalog, the session's masking and its denied columns.
pub(crate) struct CatalogTables<'a> {
    masking: Option<&'a dyn SessionMasking>,
    withheld: &'a HashSet<(u32, i16)>,
    cache: &'a crate::catalog::CatalogCache,
    /// Loaded at the first question (most messages ask none).
    loaded: Option<Loaded>,
}

struct Loaded {
    relations: Vec<Arc<vigil_sql::RelationInfo>>,
    denied_names: HashSet<String>,
    /// A denied column the catalog cannot name: every table is protected.
    unnamed_denial: bool,
}

impl<'a> CatalogTables<'a> {
    pub(crate) fn new(
        masking: Option<&'a dyn SessionMasking>,
        withheld: &'a HashSet<(u32, i16)>,
        cache: &'a crate::catalog::CatalogCache,
    ) -> Self {
        CatalogTables {
            masking,
            withheld,
            cache,
            loaded: None,
        }
    }
}

impl Tables for CatalogTables<'_> {
    fn protected(&mut self, schema: Option<&[u8]>, table: &[u8]) -> bool {
        let withheld = self.withheld;
        let cache = self.cache;
        let loaded = self.loaded.get_or_insert_with(|| {
            let relations = cache.relations();
            let mut denied_names = HashSet::new();
            let mut unnamed_denial = false;
            for &(oid, attnum) in withheld {
                let name = relations
                    .iter()
                    .find(|r| r.oid == oid)
                    .and_then(|r| r.columns.iter().find(|c| c.attnum == attnum));
                match name {
                    Some(c) => {
                        denied_names.insert(c.name.clone());
                    }
                    None => unnamed_denial = true,
                }
            }
            Loaded {
                relations,
                denied_names,
                unnamed_denial,
            }
        });
        if loaded.unnamed_denial {
            return true;
        }
        let mut found = false;
        for r in &loaded.relations {
            if r.name.as_bytes() != table || schema.is_some_and(|s| s != r.schema.as_bytes()) {
                continue;
            }
            found = true;
            let covered = r.columns.iter().any(|c| {
                loaded.denied_names.contains(&c.name)
                    || self.masking.is_some_and(|m| m.may_mask_column(&c.name))
            });
            if covered {
                return true;
            }
        }
        !found
    }
}

/// What a message's free text is, by where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Composed by database code: anything it read may be in it.
    Code,
    /// Names objects, ids and the statement's own text: detectors.
    Names,
    /// Integrity errors: the detail may echo a row or key.
    RowEcho,
    /// Data errors and lookups by value: the text may quote a stored value.
    Quoting,
    /// A class Vigil has not reviewed.
    Unreviewed,
}

/// SQLSTATE classes whose messages name objects, object ids, settings, the session's state or
/// the statement's own text, never a stored value (read from PostgreSQL's error sites).
const NAMES_CLASSES: &[&[u8; 2]] = &[
    b"00", b"01", b"02", b"03", b"08", b"09", b"0A", b"0B", b"0F", b"0L", b"0P", b"0Z", b"20",
    b"21", b"24", b"25", b"26", b"27", b"28", b"2B", b"2D", b"2F", b"34", b"3B", b"40", b"53",
    b"55", b"57", b"58", b"72", b"F0", b"HV", b"XX",
];

/// Class 42 conditions that name objects only. The others (`42P01` relation, `42703` column,
/// `42704` object, `42883` function not found, `42601` syntax errors of tsquery and jsonpath
/// input, `42602`, `42622`…) are what a cast of a stored value to `regclass` and its kin, or
/// the input of a text search query, raise at run time, quoting the value.
const NAMES_42: &[&[u8; 5]] = &[
    b"42501", b"42P07", b"42701", b"42710", b"42P06", b"42723", b"42P04", b"42P05", b"42P03",
    b"42712", b"42809", b"42P16", b"42P17", b"42830", b"42P10", b"42611", b"42P13", b"42P15",
    b"42P12", b"42P11", b"42P14", b"42P19", b"42P20", b"42803", b"42P18", b"42804", b"42P21",
    b"42P22", b"42846", b"42725", b"42702", b"42P09", b"42P08", b"42939", b"428C9",
];

/// Data errors whose message (and detail) quote no value.
const QUOTES_NOTHING: &[&[u8]] = &[
    b"division by zero",
    b"integer out of range",
    b"smallint out of range",
    b"bigint out of range",
    b"numeric field overflow",
    b"value out of range: overflow",
    b"value out of range: underflow",
    b"value overflows numeric format",
    b"timestamp out of range",
    b"date out of range",
    b"interval out of range",
    b"time out of range",
    b"array subscript out of range",
    b"cannot take logarithm of zero",
    b"cannot take logarithm of a negative number",
    b"cannot take square root of a negative number",
    b"zero raised to a negative power is undefined",
    b"a negative number raised to a non-integer power yields a complex result",
    b"negative substring length not allowed",
    b"field position must be greater than zero",
    b"LIKE pattern must not end with escape character",
    b"null character not permitted",
    b"invalid preceding or following size in window function",
    b"unterminated format() type specifier",
    b"too few arguments for format()",
];

/// Whether a data error's message quotes nothing: one of [`QUOTES_NOTHING`], `value too long
/// for type character varying(N)` and its kin, or a regular expression's own error.
fn quotes_nothing(message: &[u8]) -> bool {
    if QUOTES_NOTHING.contains(&message) || message.starts_with(b"invalid regular expression: ") {
        return true;
    }
    let Some(rest) = message.strip_prefix(b"value too long for type ") else {
        return false;
    };
    ["character varying(", "character(", "bit varying(", "bit("]
        .iter()
        .any(|t| {
            rest.strip_prefix(t.as_bytes())
                .and_then(|n| n.strip_suffix(b")"))
                .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        })
}

/// Routines and source files of procedural languages: what they raise is composed by code.
fn raised_by_code(code: &[u8], routine: &[u8], file: &[u8]) -> bool {
    matches!(routine, b"exec_stmt_raise" | b"exec_stmt_assert")
        || code.starts_with(b"P0")
        || code.starts_with(b"38")
        || code.starts_with(b"39")
        || [&b"pl_"[..], b"plpy", b"plperl", b"pltcl", b"plv8"]
            .iter()
            .any(|p| file.starts_with(p))
}

fn source(code: &[u8], routine: &[u8], file: &[u8], has_position: bool) -> Source {
    if raised_by_code(code, routine, file) {
        return Source::Code;
    }
    let Some(class) = code.get(..2) else {
        return Source::Unreviewed;
    };
    match class {
        b"23" | b"44" => Source::RowEcho,
        b"42" if NAMES_42.iter().any(|c| &c[..] == code) => Source::Names,
        // Raised while PostgreSQL parsed the statement (it points into its text): what it
        // quotes is the statement's own text, which the client sent.
        b"22" | b"42" | b"3D" | b"3F" | b"54" if has_position => Source::Names,
        b"22" | b"42" | b"3D" | b"3F" | b"54" => Source::Quoting,
        c if NAMES_CLASSES.iter().any(|n| &n[..] == c) => Source::Names,
        _ => Source::Unreviewed,
    }
}

/// Builds the rewritten message.
struct Writer<'a> {
    masking: Option<&'a dyn SessionMasking>,
    scratch: &'a mut Scratch,
    tally: &'a mut MaskTally,
    label: &'a Arc<MaskSource>,
    changed: bool,
}

impl Writer<'_> {
    fn withhold(&mut self, b: &mut Vec<u8>, why: Withheld) {
        b.extend_from_slice(why.text());
        self.tally.add(self.label, why.key());
        self.changed = true;
    }

    /// Through the detectors, when the session has them.
    fn detect(&mut self, b: &mut Vec<u8>, text: &[u8]) {
        let Some(masking) = self.masking else {
            b.extend_from_slice(text);
            return;
        };
        self.scratch.masked.clear();
        self.scratch.also.clear();
        let outcome =
            masking.scrub_counting(text, &mut self.scratch.masked, &mut self.scratch.also);
        for &key in &self.scratch.also {
            self.tally.also(self.label, key);
        }
        match outcome {
            MaskOutcome::Unchanged => b.extend_from_slice(text),
            MaskOutcome::Replaced(key) => {
                self.changed = true;
                self.tally.add(self.label, key);
                b.extend_from_slice(&self.scratch.masked);
            }
            MaskOutcome::Null(key) => {
                self.changed = true;
                self.tally.add(self.label, key);
                b.extend_from_slice(b"[withheld by Vigil]");
            }
        }
    }
}

/// Rewrites an ErrorResponse or NoticeResponse `body` of a protected session into `out` as a
/// whole message of kind `tag`; `false` when nothing changed (then `out` is as it was).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rewrite(
    tag: u8,
    body: &[u8],
    masking: Option<&dyn SessionMasking>,
    tables: &mut dyn Tables,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    tally: &mut MaskTally,
    label: &Arc<MaskSource>,
) -> bool {
    let Some(fields) = fields(body) else {
        // Not a well-formed list of fields: nothing of it can be trusted to carry no value.
        put_message(out, tag, |b| {
            b.extend_from_slice(if tag == backend::ERROR_RESPONSE {
                b"SERROR\0CXX000\0M"
            } else {
                b"SWARNING\0C01000\0M"
            });
            b.extend_from_slice(Withheld::Unreviewed.text());
            b.extend_from_slice(b"\0\0");
        });
        tally.add(label, Withheld::Unreviewed.key());
        return true;
    };
    let get = |code: u8| fields.iter().find(|f| f.0 == code).map_or(&[][..], |f| f.1);
    let (code, routine, file) = (get(b'C'), get(b'R'), get(b'F'));
    let has_position = fields.iter().any(|f| f.0 == b'P');
    let origin = source(code, routine, file, has_position);
    let schema = fields.iter().find(|f| f.0 == b's').map(|f| f.1);
    let table = fields.iter().find(|f| f.0 == b't').map(|f| f.1);
    let message = get(b'M');
    let data_message_clean = origin == Source::Quoting && quotes_nothing(message);

    let start = out.len();
    let mut w = Writer {
        masking,
        scratch,
        tally,
        label,
        changed: false,
    };
    put_message(out, tag, |b| {
        for &(field, value) in &fields {
            b.push(field);
            match field {
                // Severity, code, positions, source location: never values.
                b'S' | b'V' | b'C' | b'P' | b'p' | b'L' | b'R' | b'F' => b.extend_from_slice(value),
                // Object names; database code can set them to anything (RAISE … USING TABLE).
                b's' | b't' | b'c' | b'd' | b'n' => {
                    if origin == Source::Code {
                        w.withhold(b, Withheld::RaisedByCode);
                    } else {
                        b.extend_from_slice(value);
                    }
                }
                b'q' => w.withhold(b, Withheld::InternalQuery),
                b'W' => context(&mut w, b, value, tables),
                b'M' | b'D' | b'H' => match origin {
                    Source::Code => w.withhold(b, Withheld::RaisedByCode),
                    Source::Unreviewed => w.withhold(b, Withheld::Unreviewed),
                    Source::Quoting if !data_message_clean => w.withhold(b, Withheld::DataError),
                    Source::RowEcho if field == b'D' => {
                        row_echo(&mut w, b, value, message, schema, table, tables)
                    }
                    _ => w.detect(b, value),
                },
                // A field this version of Vigil does not know.
                _ => w.withhold(b, Withheld::Unreviewed),
            }
            b.push(0);
        }
        b.push(0);
    });
    if !w.changed {
        out.truncate(start);
    }
    w.changed
}

/// The fields of an ErrorResponse/NoticeResponse body; `None` when it is not well formed.
fn fields(body: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let (&code, tail) = rest.split_first()?;
        if code == 0 {
            return tail.is_empty().then_some(out);
        }
        let nul = tail.iter().position(|&c| c == 0)?;
        out.push((code, &tail[..nul]));
        rest = &tail[nul + 1..];
    }
}

/// An integrity error's detail: the row or key it echoes, unless the table is known to hold
/// nothing this session may not see.
fn row_echo(
    w: &mut Writer<'_>,
    b: &mut Vec<u8>,
    detail: &[u8],
    message: &[u8],
    schema: Option<&[u8]>,
    table: Option<&[u8]>,
    tables: &mut dyn Tables,
) {
    // The table the error names (none, as for CHECK OPTION errors: protected) and, for a
    // foreign key's referenced key, the referenced table (named in the message only; empty
    // when it cannot be read: protected).
    let mut protected = |referenced: Option<&[u8]>| {
        let own = table.is_none_or(|t| tables.protected(schema, t));
        own || referenced.is_some_and(|r| r.is_empty() || tables.protected(None, r))
    };
    if let Some(rest) = detail.strip_prefix(b"Failing row contains (") {
        if rest.ends_with(b").") && !protected(None) {
            return w.detect(b, detail);
        }
        b.extend_from_slice(b"Failing row contains (");
        w.withhold(b, Withheld::RowValues);
        b.extend_from_slice(b").");
        return;
    }
    if let Some(rest) = detail.strip_prefix(b"Partition key of the failing row contains (") {
        match find(rest, b") = (") {
            Some(_) if !protected(None) => w.detect(b, detail),
            Some(at) => {
                b.extend_from_slice(b"Partition key of the failing row contains (");
                b.extend_from_slice(&rest[..at]);
                b.extend_from_slice(b") = (");
                w.withhold(b, Withheld::RowValues);
                b.extend_from_slice(b").");
            }
            None => w.withhold(b, Withheld::RowValues),
        }
        return;
    }
    if let Some(rest) = detail.strip_prefix(b"Key (") {
        // The column list (names or index expressions) ends at the first `)=(`: whatever
        // follows, values included, is never copied.
        let Some(split) = find(rest, b")=(") else {
            return w.withhold(b, Withheld::RowValues);
        };
        let cols = &rest[..split];
        let after = &rest[split + 3..];
        let referenced = message
            .strip_prefix(b"update or delete on table \"")
            .and_then(|m| find(m, b"\" violates foreign key constraint \"").map(|i| &m[..i]))
            .unwrap_or(b"");
        // What follows the values: a fixed phrase, a table name, or the other row's key (of
        // the same columns, for exclusion constraints).
        enum Tail<'t> {
            Phrase(&'static [u8]),
            Table(&'t [u8]),
            OtherKey(&'static [u8]),
        }
        let (tail, other) = if after.ends_with(b") already exists.") {
            (Tail::Phrase(b" already exists."), None)
        } else if after.ends_with(b") is duplicated.") {
            (Tail::Phrase(b" is duplicated."), None)
        } else if find(after, b") conflicts with existing key (").is_some() {
            (Tail::OtherKey(b" conflicts with existing key ("), None)
        } else if find(after, b") conflicts with key (").is_some() {
            (Tail::OtherKey(b" conflicts with key ("), None)
        } else if let Some(i) = rfind(after, b") is not present in table \"") {
            (Tail::Table(&after[i + 1..]), None)
        } else if let Some(i) = rfind(after, b") is still referenced from table \"") {
            // The values are the referenced table's key.
            (Tail::Table(&after[i + 1..]), Some(referenced))
        } else {
            // A key form Vigil does not know.
            return if protected(None) {
                w.withhold(b, Withheld::RowValues)
            } else {
                w.detect(b, detail)
            };
        };
        if !protected(other) {
            return w.detect(b, detail);
        }
        b.extend_from_slice(b"Key (");
        b.extend_from_slice(cols);
        b.extend_from_slice(b")=(");
        w.withhold(b, Withheld::RowValues);
        b.push(b')');
        match tail {
            Tail::Phrase(p) => b.extend_from_slice(p),
            Tail::Table(t) => b.extend_from_slice(t),
            Tail::OtherKey(p) => {
                b.extend_from_slice(p);
                b.extend_from_slice(cols);
                b.extend_from_slice(b")=(");
                w.withhold(b, Withheld::RowValues);
                b.extend_from_slice(b").");
            }
        }
        return;
    }
    // Other details of integrity errors (`Key is not present in table "…".`, `Duplicate keys
    // exist.`) name things, but a detail Vigil does not know is withheld for a protected table.
    if detail.starts_with(b"Key is ") || !protected(None) {
        w.detect(b, detail)
    } else {
        w.withhold(b, Withheld::RowValues)
    }
}

/// A context (`W`) field, line by line.
fn context(w: &mut Writer<'_>, b: &mut Vec<u8>, value: &[u8], tables: &mut dyn Tables) {
    for (i, line) in value.split(|&c| c == b'\n').enumerate() {
        if i > 0 {
            b.push(b'\n');
        }
        let names_only = [
            &b"PL/pgSQL function "[..],
            b"SQL function \"",
            b"PL/pgSQL expression \"",
            b"PL/pgSQL assignment \"",
            b"while ",
            b"parallel worker",
            b"automatic vacuum of table \"",
            b"automatic analyze of table \"",
            b"processing expression at position ",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        if names_only {
            w.detect(b, line);
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"COPY ") {
            // `COPY t, line N`, `…, column c: null input`, `…, column c: "value"`,
            // `…: "the whole line"`.
            let table = rest.split(|&c| c == b',').next().unwrap_or(rest);
            let data = find(rest, b": \"").map(|i| i + 2);
            match data {
                None => w.detect(b, line),
                Some(_) if !tables.protected(None, table) => w.detect(b, line),
                Some(at) => {
                    b.extend_from_slice(&line[..5 + at]);
                    w.withhold(b, Withheld::RowValues);
                }
            }
            continue;
        }
        // `SQL statement "…"` (dynamic SQL may be built from values), `JSON data, line 1: …`,
        // bind parameters, remote queries, and lines Vigil does not know.
        w.withhold(b, Withheld::Context);
    }
}

/// Replaces a NotificationResponse's payload (keeping the sender's pid and the channel).
pub(crate) fn withhold_payload(
    body: &[u8],
    out: &mut Vec<u8>,
    tally: &mut MaskTally,
    label: &Arc<MaskSource>,
) -> bool {
    let Some(nul) = body.get(4..).and_then(|b| b.iter().position(|&c| c == 0)) else {
        return false;
    };
    let (pid_and_channel, payload) = body.split_at(4 + nul + 1);
    if payload.first().is_none_or(|&c| c == 0) {
        return false; // an empty payload carries nothing
    }
    put_message(out, backend::NOTIFICATION_RESPONSE, |b| {
        b.extend_from_slice(pid_and_channel);
        b.extend_from_slice(Withheld::Notification.text());
        b.push(0);
    });
    tally.add(label, Withheld::Notification.key());
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests;

/// Fuzzing entry point (see [`crate::masking::fuzz_error_rewrite`]).
pub(crate) fn fuzz(notice: bool, body: &[u8]) {
    /// Tables whose name has an even length are protected.
    struct Parity;
    impl Tables for Parity {
        fn protected(&mut self, _schema: Option<&[u8]>, table: &[u8]) -> bool {
            table.len().is_multiple_of(2)
        }
    }
    /// Detectors that redact the first digit they see.
    struct Digits;
    impl SessionMasking for Digits {
        fn column(&self, _: &super::ResultColumn<'_>) -> Option<super::ColumnMask> {
            None
        }
        fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
            match text.iter().position(u8::is_ascii_digit) {
                Some(i) => {
                    out.extend_from_slice(&text[..i]);
                    out.extend_from_slice(b"[D]");
                    out.extend_from_slice(&text[i + 1..]);
                    MaskOutcome::Replaced(1)
                }
                None => MaskOutcome::Unchanged,
            }
        }
        fn label(&self, _: EvidenceKey) -> MaskLabel {
            MaskLabel {
                rule: "fuzz".into(),
                entity: "fuzz".into(),
                operator: "fuzz".into(),
            }
        }
    }
    let tag = if notice {
        backend::NOTICE_RESPONSE
    } else {
        backend::ERROR_RESPONSE
    };
    let mut out = Vec::new();
    let mut tally = MaskTally::default();
    let changed = rewrite(
        tag,
        body,
        Some(&Digits),
        &mut Parity,
        &mut out,
        &mut Scratch::default(),
        &mut tally,
        &MaskSource::named("error"),
    );
    if !changed {
        assert!(out.is_empty());
        return;
    }
    assert_eq!(out[0], tag);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len + 1, out.len());
    let after = fields(&out[5..]).expect("a rewritten message is a list of fields");
    let Some(before) = fields(body) else {
        assert!(after
            .iter()
            .any(|f| f.0 == b'M' && f.1 == Withheld::Unreviewed.text()));
        return;
    };
    assert_eq!(before.len(), after.len());
    let table = before.iter().find(|f| f.0 == b't').map(|f| f.1);
    let code = before.iter().find(|f| f.0 == b'C').map_or(&[][..], |f| f.1);
    let routine = before.iter().find(|f| f.0 == b'R').map_or(&[][..], |f| f.1);
    let file = before.iter().find(|f| f.0 == b'F').map_or(&[][..], |f| f.1);
    let row_echo = code.starts_with(b"23") && !raised_by_code(code, routine, file);
    let protected = table.is_none_or(|t| t.len().is_multiple_of(2));
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0, "fields keep their order");
        if matches!(b.0, b'S' | b'V' | b'C' | b'P' | b'p' | b'L' | b'R' | b'F') {
            assert_eq!(b.1, a.1, "field {}", b.0 as char);
        }
        // A protected table's failing row never keeps a byte of its values.
        if b.0 == b'D' && row_echo && protected && b.1.starts_with(b"Failing row contains (") {
            assert_eq!(
                a.1,
                [
                    &b"Failing row contains ("[..],
                    Withheld::RowValues.text(),
                    b")."
                ]
                .concat()
            );
        }
    }
}
