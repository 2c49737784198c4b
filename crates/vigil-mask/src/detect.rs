//! Detectors: find PHI in a value wherever it appears (columns without a rule, computed
//! columns, notices, errors, notifications, COPY rows).
//!
//! Each detector is a candidate pattern plus a validation the pattern cannot express (a check
//! digit, the SSA's area rules, an octet range, a context word). The scan is gated by what the
//! value contains: without a digit no digit-based detector runs, without `@` no email search,
//! without an upper-case letter no name search; most values of most columns cost one pass over
//! their bytes and nothing else.

use crate::checksum;
use crate::config::{Checksum, CustomDetectorConfig, DetectorsConfig, IdDetectorConfig};
use crate::date;
use crate::dict::{self, WordTable};
use crate::entity::Entity;
use crate::error::MaskError;
use crate::pattern::{wildcard, ColumnPattern};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;
use std::collections::HashSet;
use std::sync::Arc;

/// A detected span of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub entity: Entity,
}

/// What the column's name says about its values (free text has none).
#[derive(Clone, Debug, Default)]
pub(crate) struct ColumnContext {
    pub name_column: bool,
    pub label: String,
    /// The name says `age`: a bare number ≥ 90 is an age.
    age_column: bool,
    /// Bit `i`: the name has a context word of the `i`-th identifier detector.
    id_columns: u32,
    /// The name says SSN / phone / ZIP (asked for every candidate: decided once per column).
    ssn_column: bool,
    phone_column: bool,
    zip_column: bool,
    /// The name says address or street: a suffix that is also a state's code is a street's.
    address_column: bool,
    /// Per custom detector: whether it looks at this column (its `columns` scope) and whether
    /// the name holds one of its context words. Empty for free text.
    custom: Vec<(bool, bool)>,
}

impl ColumnContext {
    pub(crate) fn new(label: &str, detectors: &Detectors) -> ColumnContext {
        let lower = label.to_ascii_lowercase();
        let words = lower.replace(['_', '-', '.'], " ");
        let has = |w: &str| contains_word(words.as_bytes(), w.as_bytes());
        let mut id_columns = 0;
        for (i, d) in detectors.ids.iter().enumerate() {
            if d.context.iter().any(|w| has(w)) {
                id_columns |= 1 << i;
            }
        }
        let custom = detectors
            .custom
            .iter()
            .map(|c| {
                let applies = c.columns.is_empty()
                    || (!lower.is_empty() && c.columns.iter().any(|p| p.matches_column(&lower)));
                (applies, c.context.iter().any(|w| has(w)))
            })
            .collect();
        let says = |list: &[&str]| list.iter().any(|w| has(w));
        ColumnContext {
            ssn_column: says(SSN_CONTEXT),
            phone_column: says(PHONE_CONTEXT),
            zip_column: says(ZIP_CONTEXT),
            address_column: says(ADDRESS_CONTEXT),
            custom,
            name_column: detectors
                .name_columns
                .iter()
                .any(|p| wildcard(p.as_bytes(), lower.as_bytes())),
            label: label.to_string(),
            age_column: AGE_COLUMN.iter().any(|w| has(w)),
            id_columns,
        }
    }
}

/// Case-insensitive whole-word search of `word` in `hay`.
pub(crate) fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    if word.is_empty() || hay.len() < word.len() {
        return false;
    }
    (0..=hay.len() - word.len()).any(|i| {
        hay[i..i + word.len()].eq_ignore_ascii_case(word)
            && (i == 0 || !hay[i - 1].is_ascii_alphanumeric())
            && hay
                .get(i + word.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
    })
}

/// One of the words within `window` bytes before `start`, or in the column's name.
fn context(text: &[u8], start: usize, words: &[&str], col_says: bool) -> bool {
    let from = start.saturating_sub(CONTEXT_WINDOW);
    col_says
        || words
            .iter()
            .any(|w| contains_word(&text[from..start], w.as_bytes()))
}

const CONTEXT_WINDOW: usize = 40;

/// No letter or digit right before `start` or right after `end`.
fn bounded(text: &[u8], start: usize, end: usize) -> bool {
    (start == 0 || !text[start - 1].is_ascii_alphanumeric())
        && text.get(end).is_none_or(|b| !b.is_ascii_alphanumeric())
}

fn digits_of(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(u8::is_ascii_digit).collect()
}

/// An identifier found by pattern near a context word (MRN, health plan, account, serial).
struct IdDetector {
    entity: Entity,
    /// Whole-token patterns, anchored.
    whole: Option<Regex>,
    strong: Option<Regex>,
    context: Vec<String>,
    context_search: Option<AhoCorasick>,
    /// Every context word has a letter: a value without letters holds none of them.
    context_has_letters: bool,
    needs_digit: bool,
}

/// A configured detector of one's own.
struct Custom {
    entity: Entity,
    pattern: Option<Regex>,
    checksum: Option<Checksum>,
    context: Vec<String>,
    context_required: bool,
    deny: Option<AhoCorasick>,
    allow: HashSet<Vec<u8>>,
    columns: Vec<ColumnPattern>,
}

pub(crate) struct Detectors {
    on: [bool; Entity::BUILTIN.len()],
    ssn_strict: bool,
    ssn_extra: Vec<(u16, u16)>,
    allow: HashSet<Vec<u8>>,
    pub(crate) skip_columns: Vec<ColumnPattern>,
    pub(crate) name_columns: Vec<String>,
    words: Arc<WordTable>,
    re: Patterns,
    ids: Vec<IdDetector>,
    custom: Vec<Custom>,
}

struct Patterns {
    ssn: Regex,
    nine: Regex,
    phone: Regex,
    ten: Regex,
    e164: Regex,
    email: Regex,
    url: Regex,
    ipv4: Regex,
    ipv6: Regex,
    card: Regex,
    npi: Regex,
    dea: Regex,
    mbi: Regex,
    vin: Regex,
    zip: Regex,
    address: Regex,
    po_box: Regex,
    age: Regex,
    date_numeric: Regex,
    word: Regex,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in pattern compiles")
}

/// The USPS street suffixes as a regex alternation (longest first, plural `s` allowed).
fn street_suffix_re() -> String {
    let mut all: Vec<&str> = dict::STREET_SUFFIXES.to_vec();
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    format!("(?i:{})s?", all.join("|"))
}

impl Patterns {
    fn new() -> Patterns {
        let suffixes = street_suffix_re();
        let address = format!(
            r"\b\d{{1,6}}[A-Za-z]?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:[A-Z0-9][A-Za-z0-9'-]*\.?\s+){{0,3}}[A-Z][A-Za-z'-]*\s+(?P<suffix>{suffixes})\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?(?:,?\s*(?:(?:Apt|Apartment|Suite|Ste|Unit|Rm|Room|Fl|Floor|Bldg)\.?\s*#?\s*|#\s*)[A-Za-z0-9-]+)?(?:,?\s+[A-Z][A-Za-z.'-]*(?:\s+[A-Z][A-Za-z.'-]*){{0,2}},\s*[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?)?"
        );
        Patterns {
            ssn: re(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b"),
            nine: re(r"\b\d{9}\b"),
            phone: re(
                r"(?:\+1[\s.-]?|\b1[\s.-]|\b001[\s.-])?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b(?:\s*(?:x|ext\.?)\s*\d{1,5}\b)?",
            ),
            ten: re(r"\b\d{10}\b"),
            e164: re(r"\+[1-9]\d{0,3}(?:[\s.-]?\d{1,5}){2,5}\b"),
            email: re(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
            url: re(r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`]+"#),
            ipv4: re(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"),
            ipv6: re(r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{0,4}|\d{1,3}(?:\.\d{1,3}){3})"),
            card: re(r"\b(?:\d[ -]?){12,18}\d\b"),
            npi: re(r"\b[12]\d{9}\b"),
            dea: re(r"\b[A-Z][A-Z9]\d{7}\b"),
            mbi: re(r"\b[1-9][A-Z][A-Z0-9]\d-?[A-Z][A-Z0-9]\d-?[A-Z]{2}\d{2}\b"),
            vin: re(r"\b[A-HJ-NPR-Z0-9]{17}\b"),
            zip: re(r"\b\d{5}(?:-\d{4})?\b"),
            address: re(&address),
            po_box: re(r"(?i)\bP\.?\s?O\.?\s*Box\s+\d{1,6}\b"),
            age: re(
                r"(?i)\b(?:aged?\s*:?\s*(\d{2,3})\b|(\d{2,3})\s*-?\s*(?:years?|yrs?|y/o|yo)\b)",
            ),
            date_numeric: re(r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}\b"),
            word: re(r"[A-Za-z][A-Za-z']*(?:-[A-Za-z][A-Za-z']*)?"),
        }
    }
}

/// Words that announce an address: what follows is a street even when its suffix could be a
/// state's code.
const ADDRESS_CONTEXT: &[&str] = &[
    "address",
    "addr",
    "street",
    "lives at",
    "living at",
    "resides at",
    "residing at",
    "mail to",
    "mailing",
    "located at",
    "ship to",
];

/// State codes that are also USPS street-suffix abbreviations: Court, Key, Mount, Prairie, Way.
const STATE_CODE_SUFFIXES: &[&[u8]] = &[b"CT", b"KY", b"MT", b"PR", b"WY"];

/// Whether the street suffix of the address match `span` is rather a state's code after a
/// city (`Riverton WY 82501`, `3 Hartford CT 06101`): written in capitals as a state code is,
/// last in the match, and followed by a ZIP code. Without the ZIP it stays a street (`12 Maple
/// CT` is one): a false positive costs a redacted city, a false negative an address in clear.
fn reads_as_state(
    text: &[u8],
    span: std::ops::Range<usize>,
    suffix: std::ops::Range<usize>,
) -> bool {
    if !STATE_CODE_SUFFIXES.contains(&&text[suffix.clone()]) || span.end > suffix.end + 1 {
        return false;
    }
    // `WY 82501`, `WY, 82501`.
    let mut rest = &text[suffix.end..];
    if let Some(r) = rest.strip_prefix(b",") {
        rest = r;
    }
    let spaces = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let digits = rest[spaces..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    spaces > 0 && digits == 5
}

const SSN_CONTEXT: &[&str] = &["ssn", "social security", "ss#", "ss no", "social"];
const PHONE_CONTEXT: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "cell",
    "mobile",
    "fax",
    "call",
    "contact number",
];
const ZIP_CONTEXT: &[&str] = &[
    "zip",
    "zipcode",
    "zip code",
    "postal",
    "postal code",
    "postcode",
];
const AGE_COLUMN: &[&str] = &["age", "age years", "patient age"];
const NAME_CONTEXT: &[&str] = &[
    "patient",
    "pt",
    "name",
    "member",
    "spouse",
    "mother",
    "father",
    "guardian",
    "contact",
    "signed",
    "attending",
    "nurse",
    "physician",
    "provider",
    "dr",
];

/// Built-in name columns (matched on the result column's name, lower case).
pub(crate) const DEFAULT_NAME_COLUMNS: &[&str] = &[
    "name",
    "*first*name*",
    "*last*name*",
    "*given*name*",
    "*family*name*",
    "*middle*name*",
    "*full*name*",
    "*maiden*name*",
    "*patient*name*",
    "*contact*name*",
    "*guarantor*name*",
    "*surname*",
    "fname",
    "lname",
    "firstname",
    "lastname",
];

fn id_defaults(
    entity: Entity,
) -> (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
) {
    match entity {
        Entity::Mrn => (
            &[r"[A-Z]{0,4}-?[0-9]{5,12}"],
            &[r"MRN-?[0-9]{5,12}"],
            &[
                "mrn",
                "medical record",
                "medical record number",
                "record number",
                "record no",
                "chart",
                "chart number",
                "patient id",
                "patient number",
            ],
        ),
        Entity::HealthPlan => (
            &[r"[A-Z]{0,4}-?[0-9]{6,14}", r"[A-Z0-9]{2,4}-[0-9]{4,10}"],
            &[],
            &[
                "member id",
                "member",
                "member number",
                "subscriber",
                "subscriber id",
                "policy",
                "policy number",
                "health plan",
                "plan id",
                "insurance id",
                "beneficiary",
                "group number",
                "medicaid",
                "medicaid id",
                "insurance",
            ],
        ),
        Entity::Account => (
            &[r"[0-9]{6,17}", r"[A-Z]{1,4}-?[0-9]{6,17}"],
            &[],
            &[
                "account",
                "acct",
                "account number",
                "account no",
                "a/c",
                "iban",
                "billing account",
            ],
        ),
        _ => (
            &[r"[A-Z0-9][A-Z0-9-]{4,30}[A-Z0-9]"],
            &[],
            &[
                "serial",
                "serial number",
                "serial no",
                "s/n",
                "sn",
                "device id",
                "device serial",
                "udi",
                "imei",
            ],
        ),
    }
}

fn words_search(words: &[String]) -> Option<AhoCorasick> {
    if words.is_empty() {
        return None;
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(words)
        .ok()
}

fn anchored(name: &str, patterns: &[String]) -> Result<Option<Regex>, MaskError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for p in patterns {
        Regex::new(p).map_err(|e| MaskError::Detector {
            detector: name.into(),
            problem: format!("pattern {p:?} does not compile: {e}"),
        })?;
    }
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    Ok(Some(re(&format!("^(?:{joined})$"))))
}

fn unanchored(name: &str, patterns: &[String]) -> Result<Option<Regex>, MaskError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    Regex::new(&format!(r"\b(?:{joined})\b"))
        .map(Some)
        .map_err(|e| MaskError::Detector {
            detector: name.into(),
            problem: format!("strong_patterns do not compile: {e}"),
        })
}

fn id_detector(entity: Entity, c: &IdDetectorConfig) -> Result<Option<IdDetector>, MaskError> {
    if !c.enabled {
        return Ok(None);
    }
    let name = entity.builtin_name().unwrap_or("id");
    let (p, s, w) = id_defaults(entity);
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let patterns = c.patterns.clone().unwrap_or_else(|| own(p));
    let strong = c.strong_patterns.clone().unwrap_or_else(|| own(s));
    let context: Vec<String> = c
        .context
        .clone()
        .unwrap_or_else(|| own(w))
        .into_iter()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    if patterns.is_empty() && strong.is_empty() {
        return Err(MaskError::Detector {
            detector: name.into(),
            problem: "needs at least one of `patterns` and `strong_patterns`".into(),
        });
    }
    if !patterns.is_empty() && context.is_empty() {
        return Err(MaskError::Detector {
            detector: name.into(),
            problem: "`patterns` need context words (`context = [...]`); use \
                      `strong_patterns` for identifiers distinctive enough alone"
                .into(),
        });
    }
    Ok(Some(IdDetector {
        entity,
        whole: anchored(name, &patterns)?,
        strong: unanchored(name, &strong)?,
        context_search: words_search(&context),
        context_has_letters: context
            .iter()
            .all(|w| w.bytes().any(|b| b.is_ascii_alphabetic())),
        context,
        needs_digit: true,
    }))
}

fn parse_areas(extra: &[String]) -> Result<Vec<(u16, u16)>, MaskError> {
    extra
        .iter()
        .map(|s| {
            let bad = || MaskError::Detector {
                detector: "ssn".into(),
                problem: format!("extra_areas entry {s:?} must be \"987\" or \"900-999\""),
            };
            let (lo, hi) = s.split_once('-').unwrap_or((s, s));
            let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
            let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
            (lo <= hi && hi <= 999).then_some((lo, hi)).ok_or_else(bad)
        })
        .collect()
}

impl Detectors {
    pub(crate) fn compile(
        c: &DetectorsConfig,
        words: Arc<WordTable>,
        named: &mut dyn FnMut(&str) -> Result<Entity, MaskError>,
    ) -> Result<Detectors, MaskError> {
        let mut on = [false; Entity::BUILTIN.len()];
        let flags = [
            (Entity::Ssn, c.ssn.enabled),
            (Entity::Phone, c.phone.enabled),
            (Entity::Email, c.email.enabled),
            (Entity::Date, c.date.enabled),
            (Entity::Zip, c.zip.enabled),
            (Entity::Address, c.address.enabled),
            (Entity::Mrn, c.mrn.enabled),
            (Entity::HealthPlan, c.health_plan.enabled),
            (Entity::Account, c.account.enabled),
            (Entity::Mbi, c.mbi.enabled),
            (Entity::Npi, c.npi.enabled),
            (Entity::Dea, c.dea.enabled),
            (Entity::CreditCard, c.credit_card.enabled),
            (Entity::Ip, c.ip.enabled),
            (Entity::Url, c.url.enabled),
            (Entity::Vin, c.vin.enabled),
            (Entity::DeviceSerial, c.device_serial.enabled),
            (Entity::PersonName, c.person_name.enabled),
            (Entity::Age, c.age.enabled),
        ];
        for (e, enabled) in flags {
            on[e.index()] = c.enabled && enabled;
        }
        let pattern = |s: &String| {
            ColumnPattern::parse(s).map_err(|problem| MaskError::Detector {
                detector: "skip_columns".into(),
                problem,
            })
        };
        let mut ids = Vec::new();
        for (e, cfg) in [
            (Entity::Mrn, &c.mrn),
            (Entity::HealthPlan, &c.health_plan),
            (Entity::Account, &c.account),
            (Entity::DeviceSerial, &c.device_serial),
        ] {
            if c.enabled {
                ids.extend(id_detector(e, cfg)?);
            }
        }
        let mut custom = Vec::new();
        for d in &c.custom {
            custom.push(compile_custom(d, named)?);
        }
        Ok(Detectors {
            on,
            ssn_strict: c.ssn.strict_validity,
            ssn_extra: parse_areas(&c.ssn.extra_areas)?,
            allow: c.allow.iter().map(|s| s.as_bytes().to_vec()).collect(),
            skip_columns: c
                .skip_columns
                .iter()
                .map(pattern)
                .collect::<Result<_, _>>()?,
            name_columns: c
                .person_name
                .name_columns
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME_COLUMNS.iter().map(|s| s.to_string()).collect())
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            words,
            re: Patterns::new(),
            ids,
            custom: if c.enabled { custom } else { Vec::new() },
        })
    }

    pub(crate) fn any(&self) -> bool {
        self.on.iter().any(|&b| b) || !self.custom.is_empty()
    }

    fn is_on(&self, e: Entity) -> bool {
        self.on[e.index()]
    }

    /// Appends the PHI spans of `text` to `hits`: sorted, not overlapping.
    pub(crate) fn scan(&self, text: &[u8], col: &ColumnContext, hits: &mut Vec<Hit>) {
        let (mut at, mut colon, mut upper, mut alpha) = (false, false, false, false);
        let mut shape = Shape::default();
        let mut run = 0;
        for &b in text {
            if b.is_ascii_digit() {
                shape.digits += 1;
                run += 1;
                shape.max_run = shape.max_run.max(run);
                continue;
            }
            shape.run5 |= run == 5;
            run = 0;
            at |= b == b'@';
            colon |= b == b':';
            upper |= b.is_ascii_uppercase();
            alpha |= b.is_ascii_alphabetic();
            shape.date_sep |= matches!(b, b'-' | b'/' | b'.');
            shape.dot |= b == b'.';
            shape.plus |= b == b'+';
        }
        shape.run5 |= run == 5;
        let digit = shape.digits > 0;
        let mut cand: Vec<(Hit, u8)> = Vec::new();
        let mut push = |s: usize, e: usize, entity: Entity, prio: u8| {
            cand.push((
                Hit {
                    start: s,
                    end: e,
                    entity,
                },
                prio,
            ));
        };
        if at && self.is_on(Entity::Email) {
            for m in self.re.email.find_iter(text) {
                push(m.start(), m.end(), Entity::Email, 1);
            }
        }
        if alpha
            && self.is_on(Entity::Url)
            && (memchr::memmem::find(text, b"://").is_some() || contains_word(text, b"www"))
        {
            for m in self.re.url.find_iter(text) {
                let mut end = m.end();
                while end > m.start() && b".,;:!?)]}".contains(&text[end - 1]) {
                    end -= 1;
                }
                push(m.start(), end, Entity::Url, 2);
            }
        }
        if digit {
            shape.upper = upper;
            shape.alpha = alpha;
            shape.colon = colon;
            self.scan_digits(text, col, &shape, &mut push);
        }
        if upper && self.is_on(Entity::PersonName) {
            self.scan_names(text, &mut push);
        }
        if alpha && !col.label.is_empty() && col.name_column && self.is_on(Entity::PersonName) {
            // A name column: its value is a name as a whole if it is shaped like one.
            if let Some((s, e)) = name_shaped(text) {
                push(s, e, Entity::PersonName, 0);
            }
        }
        for (i, c) in self.custom.iter().enumerate() {
            // Free text (no column): only detectors without a column scope, no name context.
            let (applies, col_says) = col
                .custom
                .get(i)
                .copied()
                .unwrap_or((c.columns.is_empty(), false));
            if applies {
                c.scan(text, col_says, &mut push);
            }
        }
        if cand.is_empty() {
            return;
        }
        // Earliest first; at the same start the longest, then the most specific.
        cand.sort_by(|a, b| {
            a.0.start
                .cmp(&b.0.start)
                .then(b.0.end.cmp(&a.0.end))
                .then(a.1.cmp(&b.1))
        });
        let mut last_end = 0;
        for (h, _) in cand {
            if h.start < last_end || h.start == h.end {
                continue;
            }
            if self.allow.contains(&text[h.start..h.end]) {
                continue;
            }
            last_end = h.end;
            hits.push(h);
        }
    }

    /// Street addresses: a number, a street name and a USPS suffix (with a direction, a unit,
    /// a city, state and ZIP when they follow). A suffix that is also a state's code, written
    /// as one (`12 Riverton WY`), is read as a state after a city rather than as a street
    /// ([`reads_as_state`]), unless a word announces an address (`lives at`, `address`, or the
    /// column's name); what comes before it may still hold a street (`12 Oak St Riverton
    /// WY`).
    fn scan_street_addresses(
        &self,
        text: &[u8],
        address_column: bool,
        push: &mut dyn FnMut(usize, usize, Entity, u8),
    ) {
        let re = &self.re.address;
        let mut at = 0;
        while let Some(c) = re.captures_at(text, at) {
            let (Some(m), Some(suffix)) = (c.get(0), c.name("suffix")) else {
                break;
            };
            // After `lives at`, `address`… (or in an address column) it is a street all the same.
            let street = context(text, m.start(), ADDRESS_CONTEXT, address_column);
            if street || !reads_as_state(text, m.range(), suffix.range()) {
                push(m.start(), m.end(), Entity::Address, 0);
                at = m.end().max(m.start() + 1);
                continue;
            }
            // A street before the city (`12 Oak St Riverton WY`): a word must lie between it
            // and the code, else what ends in a suffix is the city (`44 Bowling Green KY`).
            let head = &text[..suffix.start()];
            if let Some(inner) = re.captures_at(head, m.start()) {
                if let (Some(im), Some(is)) = (inner.get(0), inner.name("suffix")) {
                    let city_between = head[im.end()..].iter().any(u8::is_ascii_alphabetic);
                    if city_between && !reads_as_state(head, im.range(), is.range()) {
                        push(im.start(), im.end(), Entity::Address, 0);
                    }
                }
            }
            at = suffix.end();
        }
    }

    fn scan_digits(
        &self,
        text: &[u8],
        col: &ColumnContext,
        shape: &Shape,
        push: &mut dyn FnMut(usize, usize, Entity, u8),
    ) {
        let (upper, alpha, colon) = (shape.upper, shape.alpha, shape.colon);
        let re = &self.re;
        // Each detector runs only if the value has enough digits of the right shape for it.
        let d = shape.digits;
        if self.is_on(Entity::Ssn) && d >= 9 {
            for m in re.ssn.find_iter(text) {
                let d = digits_of(m.as_bytes());
                if bounded(text, m.start(), m.end())
                    && !text[..m.start()].ends_with(b"-")
                    && checksum::ssn_valid(
                        &d[..3],
                        &d[3..5],
                        &d[5..],
                        self.ssn_strict,
                        &self.ssn_extra,
                    )
                {
                    push(m.start(), m.end(), Entity::Ssn, 1);
                }
            }
            for m in re.nine.find_iter(text) {
                let d = m.as_bytes();
                if context(text, m.start(), SSN_CONTEXT, col.ssn_column)
                    && checksum::ssn_valid(
                        &d[..3],
                        &d[3..5],
                        &d[5..],
                        self.ssn_strict,
                        &self.ssn_extra,
                    )
                {
                    push(m.start(), m.end(), Entity::Ssn, 1);
                }
            }
        }
        if self.is_on(Entity::Phone) && d >= 8 {
            for m in re.phone.find_iter(text) {
                let d = digits_of(m.as_bytes());
                // Skip a leading country code 1 / 001; area code and exchange start with 2–9.
                let core = if d.len() >= 13 && d.starts_with(b"001") {
                    &d[3..]
                } else if d.len() >= 11 && d[0] == b'1' && !m.as_bytes().starts_with(b"(") {
                    &d[1..]
                } else {
                    &d[..]
                };
                if core.len() >= 10
                    && core[0] >= b'2'
                    && core[3] >= b'2'
                    && bounded(text, m.start(), m.end())
                {
                    push(m.start(), m.end(), Entity::Phone, 2);
                }
            }
            for m in re.ten.find_iter(text) {
                let d = m.as_bytes();
                if d[0] >= b'2'
                    && d[3] >= b'2'
                    && context(text, m.start(), PHONE_CONTEXT, col.phone_column)
                {
                    push(m.start(), m.end(), Entity::Phone, 2);
                }
            }
            if shape.plus {
                for m in re.e164.find_iter(text) {
                    let n = digits_of(m.as_bytes()).len();
                    if (8..=15).contains(&n)
                        && text.get(m.end()).is_none_or(|b| !b.is_ascii_alphanumeric())
                    {
                        push(m.start(), m.end(), Entity::Phone, 3);
                    }
                }
            }
        }
        if self.is_on(Entity::Date) && d >= 3 {
            let numeric = if shape.date_sep {
                Some(re.date_numeric.find_iter(text))
            } else {
                None
            };
            for m in numeric.into_iter().flatten() {
                if date::parse_at(text, m.start()).is_some() && !text[..m.start()].ends_with(b".") {
                    push(m.start(), m.end(), Entity::Date, 2);
                }
            }
            if upper && d >= 5 {
                self.scan_word_dates(text, push);
            }
        }
        if self.is_on(Entity::Zip) && shape.run5 {
            for m in re.zip.find_iter(text) {
                let whole_value = col.zip_column && text.trim_ascii() == m.as_bytes();
                if whole_value || zip_context(text, m.start(), col, &self.words) {
                    push(m.start(), m.end(), Entity::Zip, 4);
                }
            }
        }
        if self.is_on(Entity::Address) && upper {
            self.scan_street_addresses(text, col.address_column, push);
            for m in re.po_box.find_iter(text) {
                push(m.start(), m.end(), Entity::Address, 0);
            }
        }
        if self.is_on(Entity::CreditCard) && d >= 13 {
            for m in re.card.find_iter(text) {
                let d = digits_of(m.as_bytes());
                if (13..=19).contains(&d.len()) && card_prefix(&d) && checksum::luhn(&d) {
                    push(m.start(), m.end(), Entity::CreditCard, 1);
                }
            }
        }
        if self.is_on(Entity::Npi) && shape.max_run >= 10 {
            for m in re.npi.find_iter(text) {
                if checksum::npi(m.as_bytes()) {
                    push(m.start(), m.end(), Entity::Npi, 1);
                }
            }
        }
        if upper && self.is_on(Entity::Dea) && shape.max_run >= 7 {
            for m in re.dea.find_iter(text) {
                if checksum::dea(m.as_bytes()) {
                    push(m.start(), m.end(), Entity::Dea, 1);
                }
            }
        }
        if upper && self.is_on(Entity::Mbi) && d >= 5 {
            for m in re.mbi.find_iter(text) {
                let s: Vec<u8> = m
                    .as_bytes()
                    .iter()
                    .copied()
                    .filter(|&b| b != b'-')
                    .collect();
                if checksum::mbi(&s) {
                    push(m.start(), m.end(), Entity::Mbi, 1);
                }
            }
        }
        if upper && self.is_on(Entity::Vin) && text.len() >= 17 {
            for m in re.vin.find_iter(text) {
                let v = m.as_bytes();
                if v.iter().any(u8::is_ascii_uppercase) && checksum::vin(v) {
                    push(m.start(), m.end(), Entity::Vin, 1);
                }
            }
        }
        if self.is_on(Entity::Ip) && shape.dot && d >= 4 {
            {
                for m in re.ipv4.find_iter(text) {
                    let ok = m
                        .as_bytes()
                        .split(|&b| b == b'.')
                        .all(|o| checksum::num(o) <= 255 && !(o.len() > 1 && o[0] == b'0'));
                    let dotted_more = text[..m.start()].ends_with(b".")
                        || text[m.end()..].starts_with(b".")
                            && text.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
                    if ok && !dotted_more {
                        push(m.start(), m.end(), Entity::Ip, 2);
                    }
                }
            }
        }
        if colon && self.is_on(Entity::Ip) {
            self.scan_ipv6(text, push);
        }
        if self.is_on(Entity::Age) && shape.max_run >= 2 {
            let phrases = if alpha_or_sep(text) {
                Some(re.age.captures_iter(text))
            } else {
                None
            };
            for c in phrases.into_iter().flatten() {
                if let Some(g) = c.get(1).or_else(|| c.get(2)) {
                    let v = checksum::num(g.as_bytes());
                    if (90..=130).contains(&v) {
                        push(g.start(), g.end(), Entity::Age, 3);
                    }
                }
            }
            if col.age_column {
                let t = text.trim_ascii();
                if !t.is_empty()
                    && t.len() <= 3
                    && t.iter().all(u8::is_ascii_digit)
                    && checksum::num(t) >= 90
                {
                    let s = text.len() - text.trim_ascii_start().len();
                    push(s, s + t.len(), Entity::Age, 3);
                }
            }
        }
        for (i, d) in self.ids.iter().enumerate() {
            if !self.is_on(d.entity) {
                continue;
            }
            d.scan(text, alpha, col.id_columns & (1 << i) != 0, push);
        }
    }

    fn scan_ipv6(&self, text: &[u8], push: &mut dyn FnMut(usize, usize, Entity, u8)) {
        for m in self.re.ipv6.find_iter(text) {
            let (mut s, mut e) = (m.start(), m.end());
            while e > s && text[e - 1] == b':' && !(e >= 2 && text[e - 2] == b':') {
                e -= 1;
            }
            while s < e && text[s] == b':' && text.get(s + 1) != Some(&b':') {
                s += 1;
            }
            let Ok(cand) = std::str::from_utf8(&text[s..e]) else {
                continue;
            };
            if cand.matches(':').count() >= 2
                && cand.parse::<std::net::Ipv6Addr>().is_ok()
                && bounded(text, s, e)
            {
                push(s, e, Entity::Ip, 2);
            }
        }
    }

    fn scan_word_dates(&self, text: &[u8], push: &mut dyn FnMut(usize, usize, Entity, u8)) {
        for m in self.re.word.find_iter(text) {
            if dict::month_number(m.as_bytes()).is_none() || !m.as_bytes()[0].is_ascii_uppercase() {
                continue;
            }
            if let Some((_, end)) = date::parse_month_first(text, m.start()) {
                push(m.start(), end, Entity::Date, 2);
            }
            // `7 March 1984`: the day sits before the month.
            let before = &text[..m.start()];
            let trimmed = before.trim_ascii_end();
            let mut ds = trimmed.len();
            while ds > 0 && trimmed[ds - 1].is_ascii_alphanumeric() {
                ds -= 1;
            }
            if ds < trimmed.len() && trimmed[ds].is_ascii_digit() {
                if let Some((_, end)) = date::parse_day_first(text, ds) {
                    push(ds, end, Entity::Date, 2);
                }
            }
        }
    }

    fn scan_names(&self, text: &[u8], push: &mut dyn FnMut(usize, usize, Entity, u8)) {
        let words: Vec<(usize, usize, u16)> = self
            .re
            .word
            .find_iter(text)
            .map(|m| (m.start(), m.end(), self.words.flags(m.as_bytes())))
            .collect();
        let cap = |i: usize| -> bool {
            let (s, e, _) = words[i];
            text[s].is_ascii_uppercase() && e - s >= 2
        };
        let gap_ok = |i: usize| -> bool {
            // Words i and i+1 separated by spaces (and an initial's period) only.
            let between = &text[words[i].1..words[i + 1].0];
            !between.is_empty()
                && between.len() <= 3
                && between.iter().all(|&b| b == b' ' || b == b'.')
        };
        let name_word = |i: usize| -> bool {
            let (s, e, f) = words[i];
            let state_code = e - s == 2
                && text[s..e].iter().all(u8::is_ascii_uppercase)
                && f & dict::STATE_CODE != 0;
            cap(i)
                && !state_code
                && f & (dict::FIRST | dict::LAST) != 0
                && f & (dict::MONTH | dict::STATE | dict::STREET | dict::UNIT | dict::TITLE) == 0
        };
        let distinct = |i: usize| name_word(i) && words[i].2 & dict::COMMON == 0;
        let initial = |i: usize| -> bool {
            let (s, e, _) = words[i];
            e - s == 1 && text[s].is_ascii_uppercase()
        };
        // From name word `i`, the last word of the name: middle initials, more name words
        // and a suffix (Jr, III) may follow, at most 3 words in all.
        let extend = |i: usize| -> usize {
            let mut j = i;
            while j + 1 < words.len() && j - i < 3 && gap_ok(j) {
                if name_word(j + 1) {
                    j += 1;
                } else if initial(j + 1) && j + 2 < words.len() && gap_ok(j + 1) && name_word(j + 2)
                {
                    j += 2;
                } else if words[j + 1].2 & dict::NAME_SUFFIX != 0 && cap(j + 1) && j > i {
                    j += 1;
                    break;
                } else {
                    break;
                }
            }
            j
        };
        let mut i = 0;
        while i < words.len() {
            let (s, _, f) = words[i];
            // Title + capitalized words: "Dr. Okafor", "Mrs Jane Smith".
            if f & dict::TITLE != 0
                && text[s].is_ascii_uppercase()
                && i + 1 < words.len()
                && gap_ok(i)
                && cap(i + 1)
            {
                let j = extend(i + 1);
                push(s, words[j].1, Entity::PersonName, 1);
                i = j + 1;
                continue;
            }
            // First (Middle/initial) Last.
            if i + 1 < words.len() && words[i].2 & dict::FIRST != 0 && name_word(i) {
                let j = extend(i);
                if j > i && (distinct(i) || (i + 1..=j).any(distinct)) {
                    push(s, words[j].1, Entity::PersonName, 1);
                    i = j + 1;
                    continue;
                }
            }
            // Last, First.
            if i + 1 < words.len() && distinct(i) && words[i].2 & dict::LAST != 0 {
                let between = &text[words[i].1..words[i + 1].0];
                if (between == b", " || between == b",")
                    && name_word(i + 1)
                    && words[i + 1].2 & dict::FIRST != 0
                {
                    let j = extend(i + 1);
                    push(s, words[j].1, Entity::PersonName, 1);
                    i = j + 1;
                    continue;
                }
            }
            // A context word, then a name: "patient Okafor", "Name: Smith".
            if i + 1 < words.len()
                && NAME_CONTEXT
                    .iter()
                    .any(|w| text[s..words[i].1].eq_ignore_ascii_case(w.as_bytes()))
            {
                let between = &text[words[i].1..words[i + 1].0];
                if between.len() <= 3
                    && between
                        .iter()
                        .all(|&b| matches!(b, b' ' | b':' | b'.' | b'='))
                    && distinct(i + 1)
                {
                    let j = extend(i + 1);
                    push(words[i + 1].0, words[j].1, Entity::PersonName, 1);
                    i = j + 1;
                    continue;
                }
            }
            i += 1;
        }
    }
}

/// What one pass over a value found, to skip detectors that cannot match.
#[derive(Default)]
struct Shape {
    digits: usize,
    max_run: usize,
    /// A run of exactly five digits (a ZIP code's shape).
    run5: bool,
    upper: bool,
    alpha: bool,
    colon: bool,
    date_sep: bool,
    dot: bool,
    plus: bool,
}

/// Age phrases need a word (`aged`, `years`, `yo`).
fn alpha_or_sep(text: &[u8]) -> bool {
    text.iter().any(u8::is_ascii_alphabetic)
}

fn zip_context(text: &[u8], start: usize, col: &ColumnContext, words: &WordTable) -> bool {
    if context(text, start, ZIP_CONTEXT, col.zip_column) {
        return true;
    }
    // "Boston, MA 02139" / "Austin, Texas 78701": a state right before.
    let before = text[..start].trim_ascii_end();
    let mut ws = before.len();
    while ws > 0 && before[ws - 1].is_ascii_alphabetic() {
        ws -= 1;
    }
    let word = &before[ws..];
    if word.is_empty() {
        return false;
    }
    let f = words.flags(word);
    (word.len() == 2 && word.iter().all(u8::is_ascii_uppercase) && f & dict::STATE_CODE != 0)
        || (f & dict::STATE != 0 && word[0].is_ascii_uppercase())
}

fn card_prefix(d: &[u8]) -> bool {
    let two = checksum::num(&d[..2]);
    let four = checksum::num(&d[..4]);
    d[0] == b'4'
        || (51..=55).contains(&two)
        || (2221..=2720).contains(&four)
        || two == 34
        || two == 37
        || four == 6011
        || two == 65
        || two == 35
        || two == 36
        || two == 30
        || two == 38
}

/// The trimmed span of a value that is shaped like a name: letters, spaces, `-'.,`, 1 to 6
/// words, at most 100 bytes.
fn name_shaped(text: &[u8]) -> Option<(usize, usize)> {
    let t = std::str::from_utf8(text).ok()?;
    let trimmed = t.trim();
    if trimmed.is_empty() || trimmed.len() > 100 {
        return None;
    }
    let ok = trimmed
        .chars()
        .all(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.' | ','));
    let words = trimmed.split_whitespace().count();
    let s = t.len() - t.trim_start().len();
    (ok && (1..=6).contains(&words)).then_some((s, s + trimmed.len()))
}

impl IdDetector {
    /// `alpha`: `text` has an ASCII letter.
    fn scan(
        &self,
        text: &[u8],
        alpha: bool,
        in_named_column: bool,
        push: &mut dyn FnMut(usize, usize, Entity, u8),
    ) {
        if self.needs_digit && !text.iter().any(u8::is_ascii_digit) {
            return;
        }
        if let Some(strong) = &self.strong {
            for m in strong.find_iter(text) {
                push(m.start(), m.end(), self.entity, 5);
            }
        }
        let Some(whole) = &self.whole else {
            return;
        };
        // The column says what it holds: its whole value.
        if in_named_column {
            let t = text.trim_ascii();
            if whole.is_match(t) && t.iter().any(u8::is_ascii_digit) {
                let s = text.len() - text.trim_ascii_start().len();
                push(s, s + t.len(), self.entity, 5);
                return;
            }
        }
        let Some(search) = &self.context_search else {
            return;
        };
        if !alpha && self.context_has_letters {
            return;
        }
        for m in search.find_iter(text) {
            if !bounded(text, m.start(), m.end()) {
                continue;
            }
            // Skip separators and filler ("number", "no", "#", ":") up to the identifier.
            let mut i = m.end();
            let limit = (m.end() + CONTEXT_WINDOW).min(text.len());
            loop {
                while i < limit
                    && matches!(text[i], b' ' | b':' | b'#' | b'=' | b'.' | b'-' | b'\t')
                {
                    i += 1;
                }
                let mut e = i;
                while e < text.len() && text[e].is_ascii_alphabetic() {
                    e += 1;
                }
                let w = &text[i..e];
                let filler = ["number", "no", "num", "id", "is", "of", "nbr"]
                    .iter()
                    .any(|f| w.eq_ignore_ascii_case(f.as_bytes()));
                if filler && e < limit && (e == text.len() || !text[e].is_ascii_digit()) {
                    i = e;
                    continue;
                }
                break;
            }
            let mut e = i;
            while e < text.len() && (text[e].is_ascii_alphanumeric() || text[e] == b'-') {
                e += 1;
            }
            while e > i && text[e - 1] == b'-' {
                e -= 1;
            }
            let token = &text[i..e];
            if !token.is_empty() && token.iter().any(u8::is_ascii_digit) && whole.is_match(token) {
                push(i, e, self.entity, 5);
            }
        }
    }
}

fn compile_custom(
    d: &CustomDetectorConfig,
    named: &mut dyn FnMut(&str) -> Result<Entity, MaskError>,
) -> Result<Custom, MaskError> {
    let bad = |problem: String| MaskError::Detector {
        detector: d.name.clone(),
        problem,
    };
    if Entity::parse_builtin(&d.name).is_some() {
        return Err(bad(
            "a custom detector's name must not be a built-in entity name; configure the \
             built-in under [masking.detectors.<name>] instead"
                .into(),
        ));
    }
    if d.pattern.is_none() && d.deny.is_empty() {
        return Err(bad("needs a `pattern`, a `deny` list, or both".into()));
    }
    if d.checksum.is_some() && d.pattern.is_none() {
        return Err(bad("`checksum` needs a `pattern`".into()));
    }
    let pattern = match &d.pattern {
        Some(p) => Some(Regex::new(p).map_err(|e| bad(format!("pattern does not compile: {e}")))?),
        None => None,
    };
    let context_required = d.context_required.unwrap_or(!d.context.is_empty());
    if context_required && d.context.is_empty() {
        return Err(bad("`context_required = true` needs `context` words".into()));
    }
    let columns = d
        .columns
        .iter()
        .map(|c| ColumnPattern::parse(c).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Custom {
        entity: named(&d.name)?,
        pattern,
        checksum: d.checksum,
        context: d.context.iter().map(|w| w.to_ascii_lowercase()).collect(),
        context_required,
        deny: words_search(&d.deny),
        allow: d.allow.iter().map(|s| s.as_bytes().to_vec()).collect(),
        columns,
    })
}

impl Custom {
    /// Scans `text` of a column this detector looks at; `col_says`: the column's name holds
    /// one of its context words.
    fn scan(&self, text: &[u8], col_says: bool, push: &mut dyn FnMut(usize, usize, Entity, u8)) {
        if let Some(p) = &self.pattern {
            for m in p.find_iter(text) {
                if m.start() == m.end() || self.allow.contains(m.as_bytes()) {
                    continue;
                }
                if let Some(c) = self.checksum {
                    if !passes(c, m.as_bytes()) {
                        continue;
                    }
                }
                if self.context_required {
                    let from = m.start().saturating_sub(CONTEXT_WINDOW);
                    let near = self
                        .context
                        .iter()
                        .any(|w| contains_word(&text[from..m.start()], w.as_bytes()));
                    if !(col_says || near) {
                        continue;
                    }
                }
                push(m.start(), m.end(), self.entity, 6);
            }
        }
        if let Some(deny) = &self.deny {
            for m in deny.find_iter(text) {
                if bounded(text, m.start(), m.end()) {
                    push(m.start(), m.end(), self.entity, 6);
                }
            }
        }
    }
}

fn passes(c: Checksum, s: &[u8]) -> bool {
    let alnum: Vec<u8> = s
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    match c {
        Checksum::Luhn => checksum::luhn(&digits_of(s)),
        Checksum::Npi => checksum::npi(&digits_of(s)),
        Checksum::Dea => checksum::dea(&alnum),
        Checksum::Vin => checksum::vin(&alnum),
        Checksum::Mod97 => checksum::mod97(&alnum),
        Checksum::Mod11 => checksum::mod11(s),
    }
}
