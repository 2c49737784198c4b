//! The masking configuration as written in `vigil.toml` under `[masking]` (see docs/MASKING.md).
//! Every table refuses unknown keys, so a misspelt key is an error at startup, not a silently
//! ignored rule. [`compile`](crate::compile) turns it into a [`Masker`](crate::Masker) and checks
//! everything that can be checked before the first value flows.
//!
//! ```toml
//! [masking]
//! hmac_key = "env:VIGIL_MASK_KEY"
//! exempt_identities = ["clinician-portal"]
//!
//! [masking.operators]
//! default = "redact"
//! date = { kind = "generalize" }
//!
//! [[masking.rules]]
//! name = "ssn"
//! columns = ["*.ssn"]
//! operator = { kind = "partial", keep = 4 }
//!
//! [masking.detectors.ssn]
//! strict_validity = true
//! extra_areas = ["900-999"]   # the demo's synthetic SSNs
//! ```

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use vigil_core::SecretRef;

fn yes() -> bool {
    true
}

/// `[masking]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Masking on or off as a whole. Off: every value passes unchanged (and is not scanned).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Key for the `hmac` pseudonyms and `fake` values (`env:NAME` or `file:PATH`, at least 32
    /// bytes). Required when any rule or default uses them; resolved by the caller and handed to
    /// [`compile`](crate::compile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<SecretRef>,
    /// Default token of the `redact` operator. `{entity}` is replaced by the entity's label
    /// (`ssn`, `phone`, a rule's `entity`…).
    #[serde(default = "default_redact_token")]
    pub redact_token: String,
    /// What replaces a value whose masking failed: SQL `NULL` (default) or `withheld_token`.
    #[serde(default)]
    pub on_error: OnError,
    /// The token written for a withheld value when `on_error = "token"`.
    #[serde(default = "default_withheld_token")]
    pub withheld_token: String,
    /// Identities that masking never applies to (e.g. a clinician-facing service).
    #[serde(default)]
    pub exempt_identities: Vec<String>,
    /// Groups whose members masking never applies to.
    #[serde(default)]
    pub exempt_groups: Vec<String>,
    /// Values longer than this are withheld from detector scanning columns rather than scanned
    /// (scanning is linear, this bounds the work per value). Default 16 MiB.
    #[serde(default = "default_max_scan_bytes")]
    pub max_scan_bytes: usize,
    /// Binary-format values of types the engine cannot read, in columns that detectors scan:
    /// `withhold` (NULL, the default: fail closed) or `pass`.
    #[serde(default)]
    pub unknown_binary: UnknownBinary,
    /// Column rules, first match wins.
    #[serde(default)]
    pub rules: Vec<ColumnRule>,
    #[serde(default)]
    pub detectors: DetectorsConfig,
    /// Operator per entity for detector hits: keys are entity names (`ssn`, `date`…, a custom
    /// detector's name) or `default` (`redact` unless set).
    #[serde(default)]
    pub operators: BTreeMap<String, OperatorSpec>,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            enabled: true,
            hmac_key: None,
            redact_token: default_redact_token(),
            on_error: OnError::default(),
            withheld_token: default_withheld_token(),
            exempt_identities: Vec::new(),
            exempt_groups: Vec::new(),
            max_scan_bytes: default_max_scan_bytes(),
            unknown_binary: UnknownBinary::default(),
            rules: Vec::new(),
            detectors: DetectorsConfig::default(),
            operators: BTreeMap::new(),
        }
    }
}

fn default_redact_token() -> String {
    "[REDACTED:{entity}]".into()
}
fn default_withheld_token() -> String {
    "[WITHHELD]".into()
}
fn default_max_scan_bytes() -> usize {
    16 << 20
}

/// `on_error`: how a value whose masking failed is withheld.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Null,
    Token,
}

/// `unknown_binary`: see [`MaskingConfig::unknown_binary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownBinary {
    #[default]
    Withhold,
    Pass,
}

/// `[[masking.rules]]`: an operator for the columns a pattern names, for some identities on
/// some connections.
///
/// Column patterns are `schema.table.column`, `table.column` (any schema) or `column` (any
/// table); each part may use `*` for any run of characters: `public.patients.ssn`, `*.ssn`,
/// `patients.*name*`. Names match as PostgreSQL stores them (unquoted identifiers are lower
/// case). Rules apply to result columns whose source table is known (the RowDescription names a
/// table and attribute); computed columns get detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// Name used in evidence (`MaskingApplied.source`); defaults to `rule-<n>` (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Column patterns (at least one).
    pub columns: Vec<String>,
    /// Connections the rule applies on; empty = all.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Identities the rule applies to; with `groups` empty too, it applies to everyone.
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Identities the rule does not apply to (later rules and detectors still do).
    #[serde(default)]
    pub exempt_identities: Vec<String>,
    #[serde(default)]
    pub exempt_groups: Vec<String>,
    /// What the column holds, for evidence, `{entity}` in tokens, HMAC domains and the shape of
    /// `fake` and `generalize`: a built-in entity (`ssn`, `date`, `zip`, `age`…) or any label.
    /// Defaults to `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub operator: OperatorSpec,
}

/// An operator and its parameters: a bare name (`"redact"`) or a table with `kind`
/// (`{ kind = "partial", keep = 4 }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorSpecTable {
    /// Replace with a fixed token (`redact_token` unless `token` is given).
    Redact {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// SQL NULL. In free text a `null` hit nulls the whole value.
    Null,
    /// Pass the value unchanged and do not scan it: how a rule exempts a column from detectors.
    Keep,
    /// Keep the last `keep` letters and digits (never more than half of them), replace the others
    /// by `mask_char`, keep separators.
    Partial {
        #[serde(default = "default_keep")]
        keep: usize,
        #[serde(default = "default_mask_char")]
        mask_char: char,
    },
    /// Keyed HMAC-SHA256 pseudonym: `prefix` + the first `length` hex digits. Deterministic per
    /// key and `domain` (default: the entity label), so equal values stay joinable.
    Hmac {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default = "default_hmac_length")]
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
    },
    /// Safe Harbor generalization: `year` (dates), `zip3` (ZIP codes), `age` (ages over 89 →
    /// `90+`). Inferred from the entity when not given.
    Generalize {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Generalization>,
    },
    /// A keyed, deterministic fake of the same shape (digits → digits, letters → letters;
    /// entity-aware for SSNs, card numbers, NPIs, dates, emails and names).
    Fake,
}

/// See [`OperatorSpecTable`]; this wrapper also accepts the bare-name form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OperatorSpec(pub OperatorSpecTable);

fn default_keep() -> usize {
    4
}
fn default_mask_char() -> char {
    '*'
}
fn default_hmac_length() -> usize {
    16
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Generalization {
    Year,
    Zip3,
    Age,
}

impl OperatorSpec {
    pub fn redact() -> Self {
        OperatorSpec(OperatorSpecTable::Redact { token: None })
    }
    /// The operator's kind as written in config and evidence.
    pub fn kind(&self) -> &'static str {
        match self.0 {
            OperatorSpecTable::Redact { .. } => "redact",
            OperatorSpecTable::Null => "null",
            OperatorSpecTable::Keep => "keep",
            OperatorSpecTable::Partial { .. } => "partial",
            OperatorSpecTable::Hmac { .. } => "hmac",
            OperatorSpecTable::Generalize { .. } => "generalize",
            OperatorSpecTable::Fake => "fake",
        }
    }
}

impl<'de> Deserialize<'de> for OperatorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OperatorSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an operator: \"redact\", \"null\", \"keep\", \"partial\", \"hmac\", \
                     \"generalize\", \"fake\", or a table with `kind` and its parameters",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OperatorSpec, E> {
                let t = match s {
                    "redact" => OperatorSpecTable::Redact { token: None },
                    "null" => OperatorSpecTable::Null,
                    "keep" => OperatorSpecTable::Keep,
                    "partial" => OperatorSpecTable::Partial {
                        keep: default_keep(),
                        mask_char: default_mask_char(),
                    },
                    "hmac" => OperatorSpecTable::Hmac {
                        prefix: None,
                        length: default_hmac_length(),
                        domain: None,
                    },
                    "generalize" => OperatorSpecTable::Generalize { to: None },
                    "fake" => OperatorSpecTable::Fake,
                    other => {
                        return Err(E::custom(format!(
                            "unknown operator {other:?}: expected redact, null, keep, partial, \
                             hmac, generalize or fake"
                        )))
                    }
                };
                Ok(OperatorSpec(t))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OperatorSpec, A::Error> {
                OperatorSpecTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(OperatorSpec)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[masking.detectors]`: the detectors that scan values wherever they appear (columns without a
/// rule, computed columns, free text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    /// All detectors on or off. Off: columns without a rule pass unchanged.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Column patterns detectors do not scan (e.g. `*.id`, `*.*_id`). A rule with
    /// `operator = "keep"` does the same per identity.
    #[serde(default)]
    pub skip_columns: Vec<String>,
    /// Values detectors never flag (exact text of the match), e.g. published test numbers.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub ssn: SsnConfig,
    #[serde(default)]
    pub phone: Toggle,
    #[serde(default)]
    pub email: Toggle,
    #[serde(default)]
    pub date: Toggle,
    #[serde(default)]
    pub zip: Toggle,
    #[serde(default)]
    pub address: Toggle,
    #[serde(default)]
    pub mrn: IdDetectorConfig,
    #[serde(default)]
    pub health_plan: IdDetectorConfig,
    #[serde(default)]
    pub account: IdDetectorConfig,
    #[serde(default)]
    pub device_serial: IdDetectorConfig,
    #[serde(default)]
    pub mbi: Toggle,
    #[serde(default)]
    pub npi: Toggle,
    #[serde(default)]
    pub dea: Toggle,
    #[serde(default)]
    pub credit_card: Toggle,
    #[serde(default)]
    pub ip: Toggle,
    #[serde(default)]
    pub url: Toggle,
    #[serde(default)]
    pub vin: Toggle,
    #[serde(default)]
    pub age: Toggle,
    #[serde(default)]
    pub person_name: PersonNameConfig,
    #[serde(default)]
    pub custom: Vec<CustomDetectorConfig>,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        DetectorsConfig {
            enabled: true,
            skip_columns: Vec::new(),
            allow: Vec::new(),
            ssn: SsnConfig::default(),
            phone: Toggle::default(),
            email: Toggle::default(),
            date: Toggle::default(),
            zip: Toggle::default(),
            address: Toggle::default(),
            mrn: IdDetectorConfig::default(),
            health_plan: IdDetectorConfig::default(),
            account: IdDetectorConfig::default(),
            device_serial: IdDetectorConfig::default(),
            mbi: Toggle::default(),
            npi: Toggle::default(),
            dea: Toggle::default(),
            credit_card: Toggle::default(),
            ip: Toggle::default(),
            url: Toggle::default(),
            vin: Toggle::default(),
            age: Toggle::default(),
            person_name: PersonNameConfig::default(),
            custom: Vec::new(),
        }
    }
}

/// A detector without parameters: `phone = { enabled = false }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle { enabled: true }
    }
}

/// `[masking.detectors.ssn]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsnConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The SSA's validity rules: no area 000, 666 or 900–999, no group 00, no serial 0000.
    /// `false` flags every well-formed number.
    #[serde(default = "yes")]
    pub strict_validity: bool,
    /// Areas flagged although never issued, as `"987"` or `"900-999"`: synthetic test data often
    /// uses the 9xx area (the demo does).
    #[serde(default)]
    pub extra_areas: Vec<String>,
}

impl Default for SsnConfig {
    fn default() -> Self {
        SsnConfig {
            enabled: true,
            strict_validity: true,
            extra_areas: Vec::new(),
        }
    }
}

/// `[masking.detectors.mrn]` (and `health_plan`, `account`, `device_serial`): identifiers with
/// no checksum, found by pattern near a context word (or in a column whose name says what it
/// holds). Unset lists keep the built-in defaults (docs/MASKING.md lists them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdDetectorConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Regexes an identifier must match in full when a context word precedes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// Regexes distinctive enough to flag without context (e.g. `MRN[0-9]{7}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_patterns: Option<Vec<String>>,
    /// Context words (case-insensitive, whole words) that must precede the identifier (within
    /// 40 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
}

impl Default for IdDetectorConfig {
    fn default() -> Self {
        IdDetectorConfig {
            enabled: true,
            patterns: None,
            strong_patterns: None,
            context: None,
        }
    }
}

/// `[masking.detectors.person_name]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonNameConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Column patterns whose values are person names as a whole (any name-shaped value is
    /// flagged, dictionary or not). Unset: the built-in list (`first_name`, `*last*name*`,
    /// `surname`, `patient_name`…; docs/MASKING.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_columns: Option<Vec<String>>,
}

impl Default for PersonNameConfig {
    fn default() -> Self {
        PersonNameConfig {
            enabled: true,
            name_columns: None,
        }
    }
}

/// `[[masking.detectors.custom]]`: a detector of your own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// Entity label (evidence, tokens, `[masking.operators]` key). Must not be a built-in name.
    pub name: String,
    /// Regex (Rust `regex` syntax) of the values; use `\b` for word boundaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A checksum the match must pass (computed over its digits, or its letters and digits for
    /// `dea`/`vin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Context words; with `context_required` (the default when words are given) a match counts
    /// only with one of them within 40 bytes before it.
    #[serde(default)]
    pub context: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_required: Option<bool>,
    /// Terms always flagged wherever they appear as whole words (case-insensitive).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Matches never flagged (exact text).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Only in these columns (patterns); empty = everywhere.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Operator for its hits; defaults to `[masking.operators]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    /// Luhn (mod 10) over the digits: card numbers, many account numbers.
    Luhn,
    /// NPI: Luhn over `80840` + the 10 digits.
    Npi,
    /// DEA registration number check digit.
    Dea,
    /// VIN check digit (position 9).
    Vin,
    /// ISO 7064 MOD 97-10 over the letters (A=10…) and digits; a value shaped like an IBAN
    /// (two letters, two digits…) is checked with its first four characters moved to the end.
    Mod97,
    /// Weighted mod 11 over the digits, last digit the check (weights 2,3,4… from the right;
    /// 10 written as `X`).
    Mod11,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_parse_in_both_forms() {
        #[derive(Deserialize)]
        struct W {
            a: OperatorSpec,
            b: OperatorSpec,
        }
        let w: W = toml::from_str(
            r##"a = "hmac"
               b = { kind = "partial", keep = 2, mask_char = "#" }"##,
        )
        .unwrap();
        assert_eq!(w.a.kind(), "hmac");
        assert_eq!(
            w.b.0,
            OperatorSpecTable::Partial {
                keep: 2,
                mask_char: '#'
            }
        );
        let e = toml::from_str::<W>(
            r#"a = "scramble"
                                        b = "null""#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("unknown operator \"scramble\""), "{e}");
        let e = toml::from_str::<W>(
            r#"a = { kind = "partial", prefix = "x" }
               b = "null""#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("prefix"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<MaskingConfig>("hmac_keys = \"env:X\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("hmac_keys"), "{e}");
        let e = toml::from_str::<MaskingConfig>("[detectors.ssn]\nstrict = false")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("strict"), "{e}");
        let c: MaskingConfig = toml::from_str("").unwrap();
        assert_eq!(c, MaskingConfig::default());
    }
}
