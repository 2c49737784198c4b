//! vigil-mask: Vigil's PHI masking engine.
//!
//! It owns the masking **decisions**: which column rule applies to which identity on which
//! connection (`*.ssn`, `patients.*name*`, exemptions by identity and group), the **detectors**
//! that find PHI in any value (SSN, phone, email, dates, ZIP, addresses, MRN and other
//! identifiers, MBI, NPI, DEA, card numbers, IP addresses, URLs, VINs, device serials, person
//! names, ages over 89, and detectors of one's own), and the **operators** that replace what
//! they find (redact, null, partial, keyed HMAC pseudonyms, Safe Harbor generalization,
//! format-preserving fakes).
//!
//! It must not do I/O or know the wire protocol: the gateway (`vigil-pg`) asks it about result
//! columns and hands it values and free text; the binary resolves the key and wires the two.
//! Nothing here logs, and no error or `Debug` output carries a value being masked.
//!
//! Fail closed: a value the engine cannot mask (an operator that does not fit the value, a
//! value too long to scan, a panic inside a detector) is withheld (NULL or the
//! `withheld_token`), never passed through.
//!
//! ```
//! use vigil_mask::{compile, MaskingConfig, Outcome};
//! let config: MaskingConfig = toml::from_str(r#"
//!     [[rules]]
//!     columns = ["*.ssn"]
//!     operator = { kind = "partial", keep = 4 }
//! "#).unwrap();
//! let masker = compile(&config, None).unwrap();
//! let session = masker.session("billing-job", &[], "ehr").unwrap();
//! let ssn = session.column(Some(("public", "patients", "ssn")), "ssn").unwrap();
//! let mut out = Vec::new();
//! assert!(matches!(ssn.mask(b"123-45-6789", &mut out), Outcome::Replaced(_)));
//! assert_eq!(out, b"***-**-6789");
//!
//! let mut out = Vec::new();
//! session.scrub(b"Key (ssn)=(123-45-6789) already exists.", &mut out);
//! assert_eq!(out, b"Key (ssn)=([REDACTED:ssn]) already exists.");
//! ```

mod checksum;
pub mod config;
mod date;
mod detect;
mod dict;
mod entity;
mod error;
mod memo;
mod operator;
mod pattern;

pub use config::MaskingConfig;
pub use entity::Entity;
pub use error::MaskError;
pub use pattern::ColumnPattern;

use config::{OnError, OperatorSpec};
use detect::{ColumnContext, Detectors, Hit};
use dict::WordTable;
use operator::{Applied, Operator, OperatorEnv};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Identifies a (rule or detector, entity, operator) in evidence; [`Masker::label`] says what.
pub type EvidenceKey = u32;

/// Set on the key of a value that was withheld because masking failed.
const WITHHELD: EvidenceKey = 1 << 31;

/// What masking did to one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to mask: the value goes as it is; `out` is untouched.
    Unchanged,
    /// The masked value was appended to `out`.
    Replaced(EvidenceKey),
    /// The value is to be sent as SQL NULL (the `null` operator, or withheld on failure).
    Null(EvidenceKey),
}

/// What an evidence key stands for: never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The rule's name, or `detector:<entity>`.
    pub rule: String,
    pub entity: String,
    /// The operator's kind, or `withheld` when masking failed and the value was withheld.
    pub operator: String,
}

struct Rule {
    name: String,
    patterns: Vec<ColumnPattern>,
    connections: Vec<String>,
    identities: Vec<String>,
    groups: Vec<String>,
    exempt_identities: Vec<String>,
    exempt_groups: Vec<String>,
    entity: Entity,
    operator: Operator,
}

impl Rule {
    fn applies(&self, identity: &str, groups: &[String], connection: &str) -> bool {
        let member = |list: &[String]| groups.iter().any(|g| list.contains(g));
        (self.connections.is_empty() || self.connections.iter().any(|c| c == connection))
            && ((self.identities.is_empty() && self.groups.is_empty())
                || self.identities.iter().any(|i| i == identity)
                || member(&self.groups))
            && !self.exempt_identities.iter().any(|i| i == identity)
            && !member(&self.exempt_groups)
    }
}

struct Inner {
    enabled: bool,
    exempt_identities: Vec<String>,
    exempt_groups: Vec<String>,
    rules: Vec<Rule>,
    detectors: Option<Detectors>,
    /// Operator per entity index, for detector hits.
    detector_ops: Vec<Operator>,
    /// Entity labels introduced by the configuration (`Entity::Named`).
    named: Vec<String>,
    on_error: OnError,
    withheld_token: Box<[u8]>,
    max_scan_bytes: usize,
    unknown_binary: config::UnknownBinary,
}

/// A compiled masking configuration. Cheap to clone; shared by every session.
#[derive(Clone)]
pub struct Masker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("enabled", &self.inner.enabled)
            .field("rules", &self.inner.rules.len())
            .field("detectors", &self.inner.detectors.is_some())
            .finish()
    }
}

/// Compiles `[masking]`. `key` is the resolved `hmac_key` (needed by `hmac` and `fake`).
/// Everything that can be wrong is found here: patterns, operators that do not fit their
/// entity, a missing or short key, unknown entity names in `[masking.operators]`.
pub fn compile(config: &MaskingConfig, key: Option<&[u8]>) -> Result<Masker, MaskError> {
    let words = Arc::new(WordTable::new());
    let env = OperatorEnv {
        key,
        redact_token: &config.redact_token,
        words: &words,
    };
    let mut named: Vec<String> = Vec::new();
    let entity_of = |label: &str, named: &mut Vec<String>| -> Result<Entity, MaskError> {
        if let Some(e) = Entity::parse_builtin(label) {
            return Ok(e);
        }
        if label.is_empty() || label.len() > 64 {
            return Err(MaskError::Config(format!(
                "entity label {label:?} must be 1 to 64 characters"
            )));
        }
        let i = match named.iter().position(|n| n == label) {
            Some(i) => i,
            None => {
                named.push(label.to_string());
                named.len() - 1
            }
        };
        u16::try_from(i)
            .map(Entity::Named)
            .map_err(|_| MaskError::Config("too many entity labels".into()))
    };

    let mut rules = Vec::new();
    for (i, r) in config.rules.iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
        let bad = |problem: String| MaskError::Rule {
            rule: name.clone(),
            problem,
        };
        if r.columns.is_empty() {
            return Err(bad("needs at least one column pattern in `columns`".into()));
        }
        let patterns = r
            .columns
            .iter()
            .map(|c| ColumnPattern::parse(c).map_err(&bad))
            .collect::<Result<Vec<_>, _>>()?;
        let label = r.entity.clone().unwrap_or_else(|| "column".into());
        let entity = entity_of(&label, &mut named)?;
        let operator = Operator::compile(
            &r.operator,
            entity,
            &label,
            &env,
            &format!("masking rule {name:?} ({})", r.operator.kind()),
        )
        .map_err(|e| match e {
            MaskError::Operator { problem, .. } => bad(problem),
            other => other,
        })?;
        rules.push(Rule {
            name,
            patterns,
            connections: r.connections.clone(),
            identities: r.identities.clone(),
            groups: r.groups.clone(),
            exempt_identities: r.exempt_identities.clone(),
            exempt_groups: r.exempt_groups.clone(),
            entity,
            operator,
        });
    }

    let detectors = Detectors::compile(&config.detectors, words.clone(), &mut |n| {
        entity_of(n, &mut named)
    })?;
    // Operators for detector hits: per entity, else `default`, else redact.
    for key_name in config.operators.keys() {
        if key_name != "default"
            && Entity::parse_builtin(key_name).is_none()
            && !named.contains(key_name)
        {
            return Err(MaskError::Config(format!(
                "[masking.operators] has {key_name:?}, which is neither `default`, a built-in \
                 entity (ssn, phone, email, date, zip, address, mrn, health_plan, account, mbi, \
                 npi, dea, credit_card, ip, url, vin, device_serial, person_name, age) nor a \
                 custom detector's name"
            )));
        }
    }
    let default = config
        .operators
        .get("default")
        .cloned()
        .unwrap_or_else(OperatorSpec::redact);
    let custom_ops: HashMap<&str, &OperatorSpec> = config
        .detectors
        .custom
        .iter()
        .filter_map(|c| c.operator.as_ref().map(|o| (c.name.as_str(), o)))
        .collect();
    let mut detector_ops = Vec::new();
    let all: Vec<Entity> = Entity::BUILTIN
        .into_iter()
        .chain([Entity::Column])
        .chain((0..named.len()).map(|i| Entity::Named(i as u16)))
        .collect();
    for e in all {
        let label = match e.builtin_name() {
            Some(n) => n.to_string(),
            None => match e {
                Entity::Named(i) => named[i as usize].clone(),
                _ => unreachable!("built-ins have names"),
            },
        };
        let spec = custom_ops
            .get(label.as_str())
            .copied()
            .or_else(|| config.operators.get(&label))
            .unwrap_or(&default);
        // A generalization that does not fit an entity falls back to redaction for it
        // (`default = "generalize"` is meant for dates, ZIPs and ages).
        let op = match Operator::compile(
            spec,
            e,
            &label,
            &env,
            &format!("[masking.operators] {label}"),
        ) {
            Ok(op) => op,
            Err(MaskError::Operator { .. }) if std::ptr::eq(spec, &default) => {
                Operator::compile(&OperatorSpec::redact(), e, &label, &env, &label)?
            }
            Err(MaskError::Operator { problem, .. }) => {
                return Err(MaskError::Operator {
                    entity: label,
                    problem,
                })
            }
            Err(other) => return Err(other),
        };
        detector_ops.push(op);
    }
    if config.redact_token.len() > 256 || config.withheld_token.len() > 256 {
        return Err(MaskError::Config(
            "redact_token and withheld_token must be at most 256 bytes".into(),
        ));
    }
    let enabled_detectors = config.detectors.enabled && detectors.any();
    Ok(Masker {
        inner: Arc::new(Inner {
            enabled: config.enabled,
            exempt_identities: config.exempt_identities.clone(),
            exempt_groups: config.exempt_groups.clone(),
            rules,
            detectors: enabled_detectors.then_some(detectors),
            detector_ops,
            named,
            on_error: config.on_error,
            withheld_token: config.withheld_token.as_bytes().into(),
            max_scan_bytes: config.max_scan_bytes,
            unknown_binary: config.unknown_binary,
        }),
    })
}

impl Masker {
    /// The masking of one session; `None` when nothing applies (masking off, or the identity
    /// or one of its groups is exempt).
    pub fn session(
        &self,
        identity: &str,
        groups: &[String],
        connection: &str,
    ) -> Option<SessionMasker> {
        let i = &self.inner;
        if !i.enabled
            || i.exempt_identities.iter().any(|e| e == identity)
            || groups.iter().any(|g| i.exempt_groups.contains(g))
        {
            return None;
        }
        let rules: Vec<usize> = (0..i.rules.len())
            .filter(|&r| i.rules[r].applies(identity, groups, connection))
            .collect();
        if rules.is_empty() && i.detectors.is_none() {
            return None;
        }
        Some(SessionMasker {
            inner: self.inner.clone(),
            rules: rules.into(),
        })
    }

    /// What an evidence key stands for.
    pub fn label(&self, key: EvidenceKey) -> Label {
        let i = &self.inner;
        let withheld = key & WITHHELD != 0;
        let k = (key & !WITHHELD) as usize;
        let mut label = if k < i.rules.len() {
            let r = &i.rules[k];
            Label {
                rule: r.name.clone(),
                entity: self.entity_name(r.entity).to_string(),
                operator: r.operator.kind().to_string(),
            }
        } else {
            let e = entity_at(k - i.rules.len());
            Label {
                rule: format!("detector:{}", self.entity_name(e)),
                entity: self.entity_name(e).to_string(),
                operator: i
                    .detector_ops
                    .get(k - i.rules.len())
                    .map_or("redact", Operator::kind)
                    .to_string(),
            }
        };
        if withheld {
            label.operator = "withheld".into();
        }
        label
    }

    /// The label of an entity (built-in name, or the configured label).
    pub fn entity_name(&self, e: Entity) -> &str {
        match (e.builtin_name(), e) {
            (Some(n), _) => n,
            (None, Entity::Named(i)) => self.inner.named.get(i as usize).map_or("?", |s| s),
            _ => "?",
        }
    }
}

fn entity_at(index: usize) -> Entity {
    if index < Entity::BUILTIN.len() {
        Entity::BUILTIN[index]
    } else if index == Entity::BUILTIN.len() {
        Entity::Column
    } else {
        Entity::Named((index - Entity::BUILTIN.len() - 1) as u16)
    }
}

/// One session's masking: the rules that apply to its identity and connection, and the
/// detectors.
#[derive(Clone)]
pub struct SessionMasker {
    inner: Arc<Inner>,
    rules: Arc<[usize]>,
}

impl SessionMasker {
    /// How values of a result column are masked: `source` is the table column it comes
    /// straight from (`schema, table, column`), when the result says; `label` the name the
    /// result gives it. `None`: its values pass untouched (no rule, and no detectors, or a
    /// `keep` rule, or a skipped column).
    pub fn column(&self, source: Option<(&str, &str, &str)>, label: &str) -> Option<ColumnMasker> {
        let i = &self.inner;
        for &r in self.rules.iter() {
            let rule = &i.rules[r];
            let hit = rule.patterns.iter().any(|p| match source {
                Some((s, t, c)) => p.matches(s, t, c),
                // A computed column: only patterns that name nothing but the column can
                // describe it (`*.ssn` for `SELECT f(x) AS ssn`).
                None => p.column_only() && p.matches_column(label),
            });
            if hit {
                if matches!(rule.operator, Operator::Keep) {
                    return None;
                }
                return Some(ColumnMasker {
                    inner: i.clone(),
                    kind: Kind::Rule(r),
                });
            }
        }
        let detectors = i.detectors.as_ref()?;
        let skipped = detectors.skip_columns.iter().any(|p| match source {
            Some((s, t, c)) => p.matches(s, t, c),
            None => p.column_only() && p.matches_column(label),
        });
        if skipped {
            return None;
        }
        let name = source.map_or(label, |(_, _, c)| c);
        Some(ColumnMasker {
            inner: i.clone(),
            kind: Kind::Detect(Arc::new(ColumnContext::new(name, detectors))),
        })
    }

    /// Whether a column rule (other than `keep`) masks this table column.
    pub fn has_rule(&self, schema: &str, table: &str, column: &str) -> bool {
        self.column(Some((schema, table, column)), column)
            .is_some_and(|c| matches!(c.kind, Kind::Rule(_)))
    }

    /// Whether a column rule (other than `keep`) applies to this session.
    pub fn has_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|&r| !matches!(self.inner.rules[r].operator, Operator::Keep))
    }

    /// Whether a column rule (other than `keep`) of this session may mask a column called
    /// `column` in some table: the patterns' column parts only. For messages that name a
    /// table the rules may not name (a partition, a child table) but whose rows are those of
    /// one they do.
    pub fn may_mask_column(&self, column: &str) -> bool {
        self.rules.iter().any(|&r| {
            let rule = &self.inner.rules[r];
            !matches!(rule.operator, Operator::Keep)
                && rule.patterns.iter().any(|p| p.matches_column(column))
        })
    }

    /// Masks free text (notices, errors, notifications, COPY rows) with the detectors.
    pub fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> Outcome {
        self.scrub_counting(text, out, &mut Vec::new())
    }

    /// [`scrub`](Self::scrub), and the keys of the other detectors that masked part of the
    /// same text pushed to `also` (each detector once): the evidence counts the value under
    /// every detector that found something in it.
    pub fn scrub_counting(
        &self,
        text: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> Outcome {
        if self.inner.detectors.is_none() {
            return Outcome::Unchanged;
        }
        detect_and_mask(&self.inner, text, &ColumnContext::default(), out, also)
    }

    pub fn label(&self, key: EvidenceKey) -> Label {
        Masker {
            inner: self.inner.clone(),
        }
        .label(key)
    }
}

#[derive(Clone)]
enum Kind {
    Rule(usize),
    Detect(Arc<ColumnContext>),
}

/// Masks the values of one result column.
#[derive(Clone)]
pub struct ColumnMasker {
    inner: Arc<Inner>,
    kind: Kind,
}

impl ColumnMasker {
    /// Whether a column rule masks every value (else detectors change what they recognise).
    pub fn is_rule(&self) -> bool {
        matches!(self.kind, Kind::Rule(_))
    }

    /// Masks one value (its text form) into `out`.
    pub fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> Outcome {
        self.mask_counting(value, out, &mut Vec::new())
    }

    /// What becomes of a value the gateway cannot read (a binary value of a type it does not
    /// decode): a rule withholds it (`Null`, counted under the rule, marked withheld);
    /// detectors withhold it too unless `unknown_binary = "pass"` (`Unchanged`).
    pub fn unreadable(&self) -> Outcome {
        match &self.kind {
            Kind::Rule(r) => Outcome::Null(*r as EvidenceKey | WITHHELD),
            Kind::Detect(_) => match self.inner.unknown_binary {
                config::UnknownBinary::Pass => Outcome::Unchanged,
                config::UnknownBinary::Withhold => {
                    Outcome::Null(detector_key(&self.inner, Entity::Column) | WITHHELD)
                }
            },
        }
    }

    /// [`mask`](Self::mask), and the keys of the other detectors that masked part of the
    /// same value pushed to `also` (see [`SessionMasker::scrub_counting`]).
    pub fn mask_counting(
        &self,
        value: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> Outcome {
        let start = out.len();
        let also_from = also.len();
        let result = catch_unwind(AssertUnwindSafe(|| match &self.kind {
            Kind::Rule(r) => {
                let rule = &self.inner.rules[*r];
                let key = *r as EvidenceKey;
                match rule.operator.apply(rule.entity, value, out) {
                    Ok(Applied::Replaced) => Outcome::Replaced(key),
                    Ok(Applied::Null) => Outcome::Null(key),
                    Ok(Applied::Kept) => Outcome::Unchanged,
                    Err(_) => {
                        out.truncate(start);
                        withhold(&self.inner, key, out)
                    }
                }
            }
            Kind::Detect(ctx) => detect_and_mask(&self.inner, value, ctx, out, also),
        }));
        result.unwrap_or_else(|_| {
            out.truncate(start);
            also.truncate(also_from);
            let key = match &self.kind {
                Kind::Rule(r) => *r as EvidenceKey,
                Kind::Detect(_) => detector_key(&self.inner, Entity::Column),
            };
            withhold(&self.inner, key, out)
        })
    }
}

fn detector_key(inner: &Inner, e: Entity) -> EvidenceKey {
    (inner.rules.len() + e.index()) as EvidenceKey
}

fn withhold(inner: &Inner, key: EvidenceKey, out: &mut Vec<u8>) -> Outcome {
    match inner.on_error {
        OnError::Null => Outcome::Null(key | WITHHELD),
        OnError::Token => {
            out.extend_from_slice(&inner.withheld_token);
            Outcome::Replaced(key | WITHHELD)
        }
    }
}

fn detect_and_mask(
    inner: &Inner,
    text: &[u8],
    ctx: &ColumnContext,
    out: &mut Vec<u8>,
    also: &mut Vec<EvidenceKey>,
) -> Outcome {
    let Some(detectors) = &inner.detectors else {
        return Outcome::Unchanged;
    };
    if text.len() > inner.max_scan_bytes {
        return withhold(inner, detector_key(inner, Entity::Column), out);
    }
    thread_local! {
        // Reused: no allocation per value that holds PHI.
        static HITS: std::cell::RefCell<Vec<Hit>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    HITS.with(|hits| {
        let mut hits = hits.borrow_mut();
        hits.clear();
        detectors.scan(text, ctx, &mut hits);
        apply_hits(inner, text, &hits, out, also)
    })
}

fn apply_hits(
    inner: &Inner,
    text: &[u8],
    hits: &[Hit],
    out: &mut Vec<u8>,
    also: &mut Vec<EvidenceKey>,
) -> Outcome {
    if hits.is_empty() {
        return Outcome::Unchanged;
    }
    let start = out.len();
    let also_from = also.len();
    let mut at = 0;
    let mut first_key = None;
    for h in hits {
        out.extend_from_slice(&text[at..h.start]);
        let op = &inner.detector_ops[h.entity.index()];
        let key = detector_key(inner, h.entity);
        match op.apply(h.entity, &text[h.start..h.end], out) {
            Ok(Applied::Replaced) => match first_key {
                None => first_key = Some(key),
                Some(k) if k != key && !also[also_from..].contains(&key) => also.push(key),
                Some(_) => {}
            },
            Ok(Applied::Kept) => out.extend_from_slice(&text[h.start..h.end]),
            Ok(Applied::Null) => {
                // `null` in free text nulls the whole value.
                out.truncate(start);
                also.truncate(also_from);
                return Outcome::Null(key);
            }
            Err(_) => {
                out.truncate(start);
                also.truncate(also_from);
                return withhold(inner, key, out);
            }
        }
        at = h.end;
    }
    match first_key {
        Some(key) => {
            out.extend_from_slice(&text[at..]);
            Outcome::Replaced(key)
        }
        None => {
            out.truncate(start);
            Outcome::Unchanged
        }
    }
}

/// The spans detectors find in `text` (for the quality tests and tools): `(start, end,
/// entity name)`. `column` gives a column name's context.
pub fn detect(masker: &Masker, text: &[u8], column: Option<&str>) -> Vec<(usize, usize, String)> {
    let Some(d) = &masker.inner.detectors else {
        return Vec::new();
    };
    let ctx = column.map_or_else(ColumnContext::default, |c| ColumnContext::new(c, d));
    let mut hits = Vec::new();
    d.scan(text, &ctx, &mut hits);
    hits.into_iter()
        .map(|h| (h.start, h.end, masker.entity_name(h.entity).to_string()))
        .collect()
}

#[cfg(test)]
mod tests;
