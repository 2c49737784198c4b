//! Masking results in flight: the data path's side.
//!
//! The masking engine (rules, detectors, operators: `vigil-mask`) sits behind [`Masking`]; this
//! module asks it once per result column (on RowDescription) how that column's values are to be
//! masked, and then rewrites DataRows, the RowDescriptions of retyped columns, and the free text
//! of notices, errors and notifications. A row that no plan touches is forwarded as the bytes
//! that came in; a rewritten row is built in a buffer the proxy reuses, so nothing is allocated
//! per row.
//!
//! Formats and types (see docs/MASKING.md):
//! - a column under a **column rule** on a type other than text is announced as `text`
//!   (RowDescription rewritten) so that a masked value such as `1980` (a generalized date) or a
//!   redaction token is a valid value of the announced type, in text and in binary format
//!   (binary `text` is the bytes themselves); its binary values are read as text first
//!   (integers and dates; any other binary type is sent as NULL);
//! - values that **detectors** change in a column whose type is not text-like are sent as NULL
//!   (a token is not a valid integer, date or JSON document); the type is kept.
//!
//! Fail closed: whatever the engine cannot mask it withholds (NULL), and a DataRow that cannot
//! be read is withheld whole.

use crate::codec::{put_message, DecodeError, Reader};
use crate::messages::tag::backend;
use std::sync::Arc;
use vigil_core::Principal;

/// The masking engine, as the gateway sees it.
pub trait Masking: Send + Sync {
    /// The masking that applies to this identity on this connection; `None` when nothing does
    /// (masking off, or the identity is exempt).
    fn session(&self, principal: &Principal, connection: &str) -> Option<Arc<dyn SessionMasking>>;
}

/// One session's masking.
pub trait SessionMasking: Send + Sync {
    /// How values of this result column are masked; `None`: they pass untouched.
    fn column(&self, column: &ResultColumn<'_>) -> Option<ColumnMask>;
    /// Masks free text (notice and error fields, notification payloads): appends the masked
    /// text to `out` and says what it did; `Unchanged` leaves `out` as it was.
    fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome;
    /// [`scrub`](Self::scrub), and the keys of the other detectors that masked part of the
    /// same text pushed to `also`, so that the evidence counts the value under each of them.
    fn scrub_counting(
        &self,
        text: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> MaskOutcome {
        let _ = also;
        self.scrub(text, out)
    }
    /// What an evidence key stands for, for the `MaskingApplied` records.
    fn label(&self, key: EvidenceKey) -> MaskLabel;

    /// Whether a column rule (other than `keep`) applies to this session at all. A session
    /// with rules (or denied columns) has its errors and notices decided field by field
    /// ([`errors`]); one without gets the detectors only. Fail closed: `true` unless told.
    fn has_rules(&self) -> bool {
        true
    }

    /// Whether a column rule of this session may mask a table column called `column`, in
    /// whatever table (the rule's table and schema parts are ignored: an error names a
    /// partition or child table where the rule names its parent). Fail closed: `true`.
    fn may_mask_column(&self, column: &str) -> bool {
        let _ = column;
        true
    }

    /// Whether a column rule masks this table column.
    fn has_rule(&self, source: ColumnSource<'_>) -> bool {
        let column = ResultColumn {
            name: source.column,
            source: Some(source),
            type_oid: TEXT,
        };
        self.column(&column).is_some_and(|m| m.rule)
    }
}

/// Masks the values of one column.
pub trait ValueMasker: Send + Sync {
    /// Appends the masked form of `value` (text) to `out` and says what it did; `Unchanged`
    /// and `Null` leave `out` as it was.
    fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome;
    /// [`mask`](Self::mask), and the keys of the other detectors that masked part of the same
    /// value pushed to `also` (see [`SessionMasking::scrub_counting`]).
    fn mask_counting(
        &self,
        value: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> MaskOutcome {
        let _ = also;
        self.mask(value, out)
    }
    /// What becomes of a value Vigil cannot read (a binary value of a type it does not
    /// decode): `Null` (withheld, with the key the evidence counts it under) or `Unchanged`
    /// (passed, where the configuration allows it for detector columns).
    fn unreadable(&self) -> MaskOutcome;
}

/// Identifies a (rule or detector, entity, operator) in a session's evidence table.
pub type EvidenceKey = u32;

/// What masking did to one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskOutcome {
    Unchanged,
    /// Replaced by what was appended to `out`.
    Replaced(EvidenceKey),
    /// To be sent as SQL NULL (the null operator, or a failure: withheld).
    Null(EvidenceKey),
}

/// The evidence of a key: never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskLabel {
    /// The column rule's name, or `detector:<name>`.
    pub rule: String,
    /// The entity type (`ssn`, `person_name`…).
    pub entity: String,
    pub operator: String,
}

/// A result column, as the engine is asked about it.
#[derive(Clone, Copy, Debug)]
pub struct ResultColumn<'a> {
    /// The name the result gives it (an alias, or `?column?`).
    pub name: &'a str,
    /// The table column it comes straight from, when it does.
    pub source: Option<ColumnSource<'a>>,
    pub type_oid: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct ColumnSource<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub column: &'a str,
}

/// The engine's answer for one column.
#[derive(Clone)]
pub struct ColumnMask {
    pub masker: Arc<dyn ValueMasker>,
    /// A column rule: every value is masked, so the column is announced as text when its type
    /// is not. `false`: detectors, which change only the values they recognise.
    pub rule: bool,
}

// ---------------------------------------------------------------------------------------------
// Types.

const TEXT: u32 = 25;

/// Types whose binary form is their text.
fn is_text_like(type_oid: u32) -> bool {
    matches!(
        type_oid,
        25 /* text */ | 1043 /* varchar */ | 1042 /* bpchar */ | 19 /* name */ | 18 /* char */
            | 705 /* unknown */
    )
}

/// The text of a binary value of a type Vigil can read, into `out` (what the server would
/// send in text format, or the same content); `false` otherwise. Called for every masked
/// binary value: no formatting machinery, no allocation.
fn binary_as_text(type_oid: u32, value: &[u8], out: &mut Vec<u8>) -> bool {
    let mut digits = itoa::Buffer::new();
    match (type_oid, value) {
        (t, _) if is_text_like(t) => out.extend_from_slice(value),
        // json and xml: their binary form is their text; bytea: its bytes, scanned as they are.
        (114 | 142 | 17, _) => out.extend_from_slice(value),
        // jsonb: a version byte, then the text.
        (3802, [1, text @ ..]) => out.extend_from_slice(text),
        (16, &[b]) => out.push(if b != 0 { b't' } else { b'f' }),
        (21, &[a, b]) => {
            out.extend_from_slice(digits.format(i16::from_be_bytes([a, b])).as_bytes())
        }
        (23, &[a, b, c, d]) => {
            out.extend_from_slice(digits.format(i32::from_be_bytes([a, b, c, d])).as_bytes())
        }
        (26, &[a, b, c, d]) => {
            out.extend_from_slice(digits.format(u32::from_be_bytes([a, b, c, d])).as_bytes())
        }
        (20, v) if v.len() == 8 => {
            let v: [u8; 8] = v.try_into().unwrap_or([0; 8]);
            out.extend_from_slice(digits.format(i64::from_be_bytes(v)).as_bytes())
        }
        (700, &[a, b, c, d]) => push_float(f64::from(f32::from_be_bytes([a, b, c, d])), out),
        (701, v) if v.len() == 8 => {
            push_float(f64::from_be_bytes(v.try_into().unwrap_or([0; 8])), out)
        }
        (1082, &[a, b, c, d]) => {
            // Days since 2000-01-01.
            let Some(date) = civil_date(i32::from_be_bytes([a, b, c, d])) else {
                return false;
            };
            push_date(date, out);
        }
        // timestamp, timestamptz (UTC): microseconds since 2000-01-01 00:00.
        (1114 | 1184, v) if v.len() == 8 => {
            let micros = i64::from_be_bytes(v.try_into().unwrap_or([0; 8]));
            let (days, in_day) = (
                micros.div_euclid(86_400_000_000),
                micros.rem_euclid(86_400_000_000),
            );
            let Some(date) = i32::try_from(days).ok().and_then(civil_date) else {
                return false;
            };
            push_date(date, out);
            out.push(b' ');
            push_time(in_day, out);
            if type_oid == 1184 {
                out.extend_from_slice(b"+00");
            }
        }
        // time: microseconds since midnight.
        (1083, v) if v.len() == 8 => {
            let micros = i64::from_be_bytes(v.try_into().unwrap_or([0; 8]));
            if !(0..=86_400_000_000).contains(&micros) {
                return false;
            }
            push_time(micros, out);
        }
        (2950, v) if v.len() == 16 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (i, b) in v.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
        (1700, v) => return push_numeric(v, out),
        _ => return false,
    }
    true
}

fn push_two(n: u32, out: &mut Vec<u8>) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// `YYYY-MM-DD` (the year is 1–9999: [`civil_date`]).
fn push_date((y, m, d): (i32, u32, u32), out: &mut Vec<u8>) {
    let y = y as u32;
    push_two(y / 100, out);
    push_two(y % 100, out);
    out.push(b'-');
    push_two(m, out);
    out.push(b'-');
    push_two(d, out);
}

/// `HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped, as PostgreSQL prints it).
fn push_time(micros: i64, out: &mut Vec<u8>) {
    let secs = micros / 1_000_000;
    push_two((secs / 3600) as u32, out);
    out.push(b':');
    push_two((secs / 60 % 60) as u32, out);
    out.push(b':');
    push_two((secs % 60) as u32, out);
    let mut frac = (micros % 1_000_000) as u32;
    if frac != 0 {
        out.push(b'.');
        let mut width = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        let mut digits = itoa::Buffer::new();
        let text = digits.format(frac).as_bytes();
        out.extend(std::iter::repeat_n(b'0', width - text.len()));
        out.extend_from_slice(text);
    }
}

fn push_float(v: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    // Rare next to integers and dates; the shortest exact form, as PostgreSQL 12+ prints.
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A binary `numeric`: digit count, weight (of the first base-10000 digit), sign, display
/// scale, then the base-10000 digits.
fn push_numeric(v: &[u8], out: &mut Vec<u8>) -> bool {
    let word = |i: usize| {
        v.get(i * 2..i * 2 + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let (Some(ndigits), Some(weight), Some(sign), Some(dscale)) =
        (word(0), word(1), word(2), word(3))
    else {
        return false;
    };
    let (ndigits, weight, dscale) = (usize::from(ndigits), weight as i16, usize::from(dscale));
    if v.len() != 8 + ndigits * 2 || dscale > 16_383 {
        return false;
    }
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < ndigits)
            .and_then(|i| word(4 + i))
            .unwrap_or(0)
    };
    if (0..ndigits as i64).any(|i| digit(i) > 9999) {
        return false;
    }
    match sign {
        0x0000 => {}
        0x4000 => out.push(b'-'),
        0xC000 => {
            out.extend_from_slice(b"NaN");
            return true;
        }
        0xD000 => {
            out.extend_from_slice(b"Infinity");
            return true;
        }
        0xF000 => {
            out.extend_from_slice(b"-Infinity");
            return true;
        }
        _ => return false,
    }
    let mut digits = itoa::Buffer::new();
    if weight < 0 {
        out.push(b'0');
    } else {
        for i in 0..=i64::from(weight) {
            let text = digits.format(digit(i)).as_bytes();
            if i > 0 {
                out.extend(std::iter::repeat_n(b'0', 4 - text.len()));
            }
            out.extend_from_slice(text);
        }
    }
    if dscale > 0 {
        out.push(b'.');
        let mut written = 0;
        let mut i = i64::from(weight) + 1;
        while written < dscale {
            let d = digit(i);
            for p in [1000, 100, 10, 1] {
                if written == dscale {
                    break;
                }
                out.push(b'0' + (d / p % 10) as u8);
                written += 1;
            }
            i += 1;
        }
    }
    true
}

/// (year, month, day) of a day count from 2000-01-01 (proleptic Gregorian), for years 1–9999.
fn civil_date(days_since_2000: i32) -> Option<(i32, u32, u32)> {
    // Days since 0000-03-01, then 400-year eras (Hinnant's civil-from-days).
    let z = days_since_2000 as i64 + 730_425;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (1..=9999).contains(&y).then_some((y as i32, m, d))
}

// ---------------------------------------------------------------------------------------------
// Plans.

/// What happens to one result column's values.
#[derive(Clone)]
pub(crate) enum ColumnAction {
    Pass,
    /// Denied to the session (the second line of least privilege): always NULL.
    Withhold,
    Mask {
        masker: Arc<dyn ValueMasker>,
        /// The type the server sends.
        type_oid: u32,
        /// Announced as text (a rule on a type that is not).
        retyped: bool,
    },
}

/// How one result's rows are rewritten: from its RowDescription.
pub(crate) struct RowPlan {
    pub columns: Box<[ColumnAction]>,
    /// Where each column's values come from, for the evidence.
    pub names: Box<[Arc<MaskSource>]>,
    /// The RowDescription to send instead of the server's (retyped columns), if any.
    pub description: Option<Arc<[u8]>>,
    /// The format code of each column (two bytes each, as in a Bind), from the description.
    pub formats: Arc<[u8]>,
}

/// One field of a RowDescription.
struct Field<'a> {
    name: &'a [u8],
    table: u32,
    column: i16,
    type_oid: u32,
    format: [u8; 2],
}

fn fields(body: &[u8]) -> Result<Vec<Field<'_>>, DecodeError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.count16("field count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.cstr("field name")?;
        let table = r.i32("table oid")? as u32;
        let column = r.i16("column number")?;
        let type_oid = r.i32("type oid")? as u32;
        r.bytes(2 + 4, "size, modifier")?;
        let format = r.i16("format")?.to_be_bytes();
        out.push(Field {
            name,
            table,
            column,
            type_oid,
            format,
        });
    }
    r.finish()?;
    Ok(out)
}

/// Finds a table column's names: `(schema, table, column)`.
pub(crate) trait ColumnNames {
    fn names(&mut self, table: u32, column: i16) -> Option<(Arc<str>, Arc<str>, Arc<str>)>;
}

/// The plan for a RowDescription; `None` when every column passes untouched. An unreadable
/// RowDescription gives a plan that withholds nothing but cannot be applied: its rows are
/// withheld (see [`rewrite_row`]).
///
/// `outputs`: where each result column comes from, as the statement's access analysis knows
/// it. A column it says holds no stored data (computed from the statement's constants, bind
/// parameters and reviewed functions: `SELECT now()`) passes untouched, neither masked nor
/// scanned: there is nothing stored in it, and a detector would only mistake it (a date, an
/// age). Only when the description agrees: as many columns as the analysis counted, and the
/// column without a table behind it.
pub(crate) fn plan(
    body: &[u8],
    withheld: &dyn Fn(u32, i16) -> bool,
    masking: Option<&dyn SessionMasking>,
    names: &mut dyn ColumnNames,
    outputs: Option<&[vigil_sql::OutputOrigin]>,
) -> Result<Option<Arc<RowPlan>>, DecodeError> {
    let fields = fields(body)?;
    let outputs = outputs.filter(|o| o.len() == fields.len());
    let mut columns = Vec::with_capacity(fields.len());
    let mut labels = Vec::with_capacity(fields.len());
    let mut retype = false;
    for (i, f) in fields.iter().enumerate() {
        let source = (f.table != 0 && f.column > 0)
            .then(|| names.names(f.table, f.column))
            .flatten();
        labels.push(match &source {
            Some((s, t, c)) => MaskSource::table_column(s, t, c),
            None => MaskSource::named(&String::from_utf8_lossy(f.name)),
        });
        if f.table != 0 && f.column > 0 && withheld(f.table, f.column) {
            columns.push(ColumnAction::Withhold);
            continue;
        }
        let unstored = f.table == 0
            && outputs.and_then(|o| o.get(i)) == Some(&vigil_sql::OutputOrigin::NoStoredData);
        if unstored {
            columns.push(ColumnAction::Pass);
            continue;
        }
        let action = masking.and_then(|m| {
            let name = String::from_utf8_lossy(f.name);
            let column = ResultColumn {
                name: &name,
                source: source.as_ref().map(|(s, t, c)| ColumnSource {
                    schema: s,
                    table: t,
                    column: c,
                }),
                type_oid: f.type_oid,
            };
            m.column(&column)
        });
        columns.push(match action {
            Some(ColumnMask { masker, rule }) => {
                let retyped = rule && !is_text_like(f.type_oid);
                retype |= retyped;
                ColumnAction::Mask {
                    masker,
                    type_oid: f.type_oid,
                    retyped,
                }
            }
            None => ColumnAction::Pass,
        });
    }
    if columns.iter().all(|c| matches!(c, ColumnAction::Pass)) {
        return Ok(None);
    }
    let description = retype.then(|| retyped_description(body, &columns).into());
    let formats: Vec<u8> = fields.iter().flat_map(|f| f.format).collect();
    Ok(Some(Arc::new(RowPlan {
        columns: columns.into(),
        names: labels.into(),
        description,
        formats: formats.into(),
    })))
}

/// The RowDescription with retyped columns announced as `text`.
fn retyped_description(body: &[u8], columns: &[ColumnAction]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    put_message(&mut out, backend::ROW_DESCRIPTION, |b| {
        b.extend_from_slice(&body[..2]);
        let mut at = 2;
        for action in columns {
            let nul = body[at..].iter().position(|&c| c == 0).unwrap_or(0);
            let name_end = at + nul + 1;
            b.extend_from_slice(&body[at..name_end]);
            let rest = &body[name_end..name_end + 18];
            if matches!(action, ColumnAction::Mask { retyped: true, .. }) {
                b.extend_from_slice(&rest[..6]); // table OID, column number
                b.extend_from_slice(&TEXT.to_be_bytes());
                b.extend_from_slice(&(-1i16).to_be_bytes()); // size
                b.extend_from_slice(&(-1i32).to_be_bytes()); // modifier
                b.extend_from_slice(&rest[16..18]); // format
            } else {
                b.extend_from_slice(rest);
            }
            at = name_end + 18;
        }
    });
    out
}

/// The result format of column `i` from a Bind's format codes (none: text; one: all).
pub(crate) fn is_binary(formats: &[u8], i: usize) -> bool {
    let code = match formats.len() / 2 {
        0 => return false,
        1 => &formats[..2],
        _ => match formats.get(i * 2..i * 2 + 2) {
            Some(c) => c,
            None => return false,
        },
    };
    code == [0, 1]
}

/// What masked values are counted under: a result column (of a table, or computed) or a
/// message channel. Made once per RowDescription or message, never per value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MaskSource {
    /// `schema.table.column` for a table column, the result column's name for a computed one,
    /// or the channel (`notice`, `error`, `notification`, `copy`).
    pub name: Box<str>,
    /// The table (`schema.table`) of a table column.
    pub table: Option<Box<str>>,
}

impl MaskSource {
    pub fn table_column(schema: &str, table: &str, column: &str) -> Arc<MaskSource> {
        Arc::new(MaskSource {
            name: format!("{schema}.{table}.{column}").into(),
            table: Some(format!("{schema}.{table}").into()),
        })
    }

    /// A computed column or a channel.
    pub fn named(name: &str) -> Arc<MaskSource> {
        Arc::new(MaskSource {
            name: name.into(),
            table: None,
        })
    }
}

/// Per-statement evidence: values masked per (column, key).
#[derive(Default, Debug, Clone)]
pub(crate) struct MaskTally {
    pub entries: Vec<(Arc<MaskSource>, EvidenceKey, u64)>,
    /// Per result column: the entry its last masked value went to (most values of a column
    /// share one), so counting a value is a check and an increment, not a search.
    last: Vec<usize>,
    /// Values masked (a value several detectors masked counts once here, and under each of
    /// them in `entries`).
    values: u64,
}

impl MaskTally {
    /// Counts a value of result column `index`.
    pub fn add_at(&mut self, index: usize, column: &Arc<MaskSource>, key: EvidenceKey) {
        self.values += 1;
        self.also_at(index, column, key);
    }

    /// Counts, under one more key, a value already counted.
    pub fn also_at(&mut self, index: usize, column: &Arc<MaskSource>, key: EvidenceKey) {
        if let Some(e) = self
            .last
            .get(index)
            .and_then(|&e| self.entries.get_mut(e))
            .filter(|e| e.1 == key && (Arc::ptr_eq(&e.0, column) || *e.0 == **column))
        {
            e.2 += 1;
            return;
        }
        self.also(column, key);
        let at = self
            .entries
            .iter()
            .position(|(c, k, _)| *k == key && (Arc::ptr_eq(c, column) || **c == **column));
        if let Some(at) = at {
            if self.last.len() <= index {
                self.last.resize(index + 1, usize::MAX);
            }
            self.last[index] = at;
        }
    }

    pub fn add(&mut self, column: &Arc<MaskSource>, key: EvidenceKey) {
        self.values += 1;
        self.also(column, key);
    }

    /// Counts, under one more key, a value already counted.
    pub fn also(&mut self, column: &Arc<MaskSource>, key: EvidenceKey) {
        for (c, k, n) in self.entries.iter_mut() {
            if *k == key && (Arc::ptr_eq(c, column) || **c == **column) {
                *n += 1;
                return;
            }
        }
        self.entries.push((column.clone(), key, 1));
    }

    /// Values masked.
    pub fn total(&self) -> u64 {
        self.values
    }
}

/// Scratch buffers reused across rows.
#[derive(Default)]
pub(crate) struct Scratch {
    text: Vec<u8>,
    masked: Vec<u8>,
    /// Further evidence keys of the value being masked.
    pub also: Vec<EvidenceKey>,
}

/// What rewriting a row did.
pub(crate) struct RowRewrite {
    /// Values withheld by the second line (denied columns).
    pub withheld: u64,
    /// Whether `out` holds a new row (else the original goes out).
    pub changed: bool,
}

/// Appends to `out` the DataRow `body` as the plan wants it, if anything changes; counts
/// masked values into `tally`. `Err`: the row cannot be read (the caller withholds it).
pub(crate) fn rewrite_row(
    body: &[u8],
    plan: &RowPlan,
    formats: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    tally: &mut MaskTally,
) -> Result<RowRewrite, DecodeError> {
    let start = out.len();
    let mut changed = false;
    let mut withheld = 0;
    let mut r = Reader::new(body, "DataRow");
    let n = r.count16("column count")?;
    out.extend_from_slice(&[backend::DATA_ROW, 0, 0, 0, 0]);
    out.extend_from_slice(&(n as i16).to_be_bytes());
    for i in 0..n {
        let len = r.i32("value length")?;
        if len < -1 {
            return Err(r.invalid(format!("invalid value length {len}")));
        }
        let value = if len == -1 {
            None
        } else {
            Some(r.bytes(len as usize, "value")?)
        };
        let action = plan.columns.get(i).unwrap_or(&ColumnAction::Pass);
        let value = match (value, action) {
            (None, _) | (_, ColumnAction::Pass) => {
                put_value(out, value);
                continue;
            }
            (Some(_), ColumnAction::Withhold) => {
                withheld += 1;
                changed = true;
                put_value(out, None);
                continue;
            }
            (Some(v), ColumnAction::Mask { .. }) => v,
        };
        let ColumnAction::Mask {
            masker,
            type_oid,
            retyped,
        } = action
        else {
            unreachable!("matched above");
        };
        let binary = is_binary(formats, i);
        // The value as text: itself, unless it is binary of a type whose binary is not text.
        let text: &[u8] = if binary && !is_text_like(*type_oid) {
            scratch.text.clear();
            if !binary_as_text(*type_oid, value, &mut scratch.text) {
                // Unreadable to Vigil: withheld (a rule always; detectors unless configured
                // to pass such values).
                match masker.unreadable() {
                    MaskOutcome::Unchanged if !*retyped => put_value(out, Some(value)),
                    MaskOutcome::Null(key) | MaskOutcome::Replaced(key) => {
                        tally.add_at(i, &plan.names[i], key);
                        changed = true;
                        put_value(out, None);
                    }
                    MaskOutcome::Unchanged => {
                        changed = true;
                        put_value(out, None);
                    }
                }
                continue;
            }
            &scratch.text
        } else {
            value
        };
        scratch.masked.clear();
        scratch.also.clear();
        let outcome = masker.mask_counting(text, &mut scratch.masked, &mut scratch.also);
        let label = &plan.names[i];
        for &key in &scratch.also {
            tally.also_at(i, label, key);
        }
        match outcome {
            MaskOutcome::Unchanged if *retyped && binary && !is_text_like(*type_oid) => {
                // Announced as text: the server's binary form is not text.
                changed = true;
                put_value(out, Some(text));
            }
            MaskOutcome::Unchanged => put_value(out, Some(value)),
            MaskOutcome::Null(key) => {
                tally.add_at(i, label, key);
                changed = true;
                put_value(out, None);
            }
            MaskOutcome::Replaced(key) => {
                tally.add_at(i, label, key);
                changed = true;
                if *retyped || is_text_like(*type_oid) {
                    put_value(out, Some(&scratch.masked));
                } else {
                    // A token is not a value of this type.
                    put_value(out, None);
                }
            }
        }
    }
    r.finish()?;
    if !changed {
        out.truncate(start);
        return Ok(RowRewrite {
            withheld,
            changed: false,
        });
    }
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(RowRewrite {
        withheld,
        changed: true,
    })
}

fn put_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            out.extend_from_slice(&(v.len() as i32).to_be_bytes());
            out.extend_from_slice(v);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// Rewrites the free-text fields of an ErrorResponse or NoticeResponse body (all but the
/// severity, code and position fields) into `out` as a whole message of kind `tag`; `false`
/// when nothing changed (then `out` is as it was).
pub(crate) fn scrub_error_fields(
    tag: u8,
    body: &[u8],
    masking: &dyn SessionMasking,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    tally: &mut MaskTally,
    label: &Arc<MaskSource>,
) -> bool {
    let start = out.len();
    let mut changed = false;
    put_message(out, tag, |b| {
        let mut rest = body;
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let nul = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
            let value = &tail[..nul];
            rest = tail.get(nul + 1..).unwrap_or(&[]);
            b.push(code);
            let free_text = !matches!(code, b'S' | b'V' | b'C' | b'P' | b'p' | b'L' | b'R');
            scratch.masked.clear();
            scratch.also.clear();
            let outcome = if free_text {
                masking.scrub_counting(value, &mut scratch.masked, &mut scratch.also)
            } else {
                MaskOutcome::Unchanged
            };
            for &key in &scratch.also {
                tally.also(label, key);
            }
            match outcome {
                MaskOutcome::Unchanged => b.extend_from_slice(value),
                MaskOutcome::Replaced(key) => {
                    changed = true;
                    tally.add(label, key);
                    b.extend_from_slice(&scratch.masked);
                }
                MaskOutcome::Null(key) => {
                    changed = true;
                    tally.add(label, key);
                    b.extend_from_slice(b"[withheld by Vigil]");
                }
            }
            b.push(0);
        }
        b.push(0);
    });
    if !changed {
        out.truncate(start);
    }
    changed
}

/// Rewrites a NotificationResponse's payload (and channel name) into `out`; `false` when
/// nothing changed.
pub(crate) fn scrub_notification(
    body: &[u8],
    masking: &dyn SessionMasking,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    tally: &mut MaskTally,
    label: &Arc<MaskSource>,
) -> bool {
    let mut r = Reader::new(body, "NotificationResponse");
    let (Ok(pid), Ok(channel), Ok(payload)) = (r.i32("pid"), r.cstr("channel"), r.cstr("payload"))
    else {
        return false;
    };
    scratch.masked.clear();
    scratch.also.clear();
    let outcome = masking.scrub_counting(payload, &mut scratch.masked, &mut scratch.also);
    for &key in &scratch.also {
        tally.also(label, key);
    }
    let (payload, changed) = match outcome {
        MaskOutcome::Unchanged => (payload, false),
        MaskOutcome::Replaced(key) => {
            tally.add(label, key);
            (&scratch.masked[..], true)
        }
        MaskOutcome::Null(key) => {
            tally.add(label, key);
            (&b"[withheld by Vigil]"[..], true)
        }
    };
    if !changed {
        return false;
    }
    put_message(out, backend::NOTIFICATION_RESPONSE, |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(channel);
        b.push(0);
        b.extend_from_slice(payload);
        b.push(0);
    });
    true
}

pub(crate) mod errors;

#[cfg(test)]
mod tests;

/// Fuzzing entry point (not API): rewrites `body` as an ErrorResponse (NoticeResponse when
/// `notice`) of a protected session whose tables are protected when their name has an even
/// length, with detectors that redact digits. Panics if an invariant breaks: the result is a
/// well-formed message with the input's fields in order, severity, code, positions and source
/// location unchanged, and a protected table's failing row keeps none of its values.
#[doc(hidden)]
pub fn fuzz_error_rewrite(notice: bool, body: &[u8]) {
    errors::fuzz(notice, body);
}

/// Fuzzing entry point (not API): plans `description` with a masking that rewrites every text
/// value, withholds one column and leaves the rest to detectors that hit on digits, then rewrites
/// `row` under `formats`. Panics if an invariant breaks: a rewritten row is a well-formed
/// DataRow with as many values as the original.
#[doc(hidden)]
pub fn fuzz_rewrite(description: &[u8], row: &[u8], formats: &[u8]) {
    struct Everything;
    impl ValueMasker for Everything {
        fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
            match value.first() {
                Some(b'0'..=b'4') => MaskOutcome::Null(1),
                Some(b'5'..=b'9') => {
                    out.extend_from_slice(b"[DIGITS]");
                    MaskOutcome::Replaced(2)
                }
                _ => MaskOutcome::Unchanged,
            }
        }
        fn unreadable(&self) -> MaskOutcome {
            MaskOutcome::Null(3)
        }
    }
    struct Rules;
    impl SessionMasking for Rules {
        fn column(&self, column: &ResultColumn<'_>) -> Option<ColumnMask> {
            Some(ColumnMask {
                masker: Arc::new(Everything),
                rule: column.source.is_some(),
            })
        }
        fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
            Everything.mask(text, out)
        }
        fn label(&self, _key: EvidenceKey) -> MaskLabel {
            MaskLabel {
                rule: "fuzz".into(),
                entity: "fuzz".into(),
                operator: "fuzz".into(),
            }
        }
    }
    struct Names;
    impl ColumnNames for Names {
        fn names(&mut self, table: u32, column: i16) -> Option<(Arc<str>, Arc<str>, Arc<str>)> {
            table
                .is_multiple_of(2)
                .then(|| ("s".into(), "t".into(), column.to_string().into()))
        }
    }
    let withheld = |table: u32, column: i16| table.is_multiple_of(3) && column == 1;
    let Ok(Some(plan)) = plan(description, &withheld, Some(&Rules), &mut Names, None) else {
        return;
    };
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    let mut tally = MaskTally::default();
    let Ok(result) = rewrite_row(row, &plan, formats, &mut out, &mut scratch, &mut tally) else {
        return;
    };
    if !result.changed {
        assert!(out.is_empty());
        return;
    }
    assert_eq!(out[0], backend::DATA_ROW);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len + 1, out.len());
    let before = crate::messages::data_row::fields(row).map(|f| f.len());
    let after = crate::messages::data_row::fields(&out[5..]).map(|f| f.len());
    assert_eq!(before.ok(), after.ok());
    if let Some(retyped) = &plan.description {
        // The same fields, some announced as text: a retyped field keeps its size.
        assert_eq!(&retyped[5..7], &description[..2]);
        assert_eq!(retyped.len(), description.len() + 5);
    }
}
