//! Name patterns: `*` matches any run of characters (including none). Matching is
//! case-sensitive on the names as PostgreSQL stores them (unquoted identifiers are lower case).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A pattern over one name (`patients`, `*name*`, `*`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn new(s: impl Into<String>) -> Self {
        NamePattern(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        wildcard_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A pattern over a schema-qualified relation: `schema.name`, each part a [`NamePattern`].
/// Written without a schema (`patients`), it means `*.patients`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationPattern {
    pub schema: NamePattern,
    pub name: NamePattern,
}

impl RelationPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty relation pattern".into());
        }
        let (schema, name) = match s.split_once('.') {
            Some((schema, name)) => (schema, name),
            None => ("*", s),
        };
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return Err(format!(
                "relation pattern {s:?} must be `name` or `schema.name` (with * wildcards)"
            ));
        }
        Ok(RelationPattern {
            schema: NamePattern::new(schema),
            name: NamePattern::new(name),
        })
    }

    pub fn matches(&self, schema: &str, name: &str) -> bool {
        self.schema.matches(schema) && self.name.matches(name)
    }
}

impl fmt::Display for RelationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema.as_str(), self.name.as_str())
    }
}

impl fmt::Debug for RelationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for RelationPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RelationPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelationPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether the relation pattern written as `key` (`schema.name` or `name`) matches, without
/// building a [`RelationPattern`]: the data path checks `deny_columns` keys at every decision.
/// A key [`RelationPattern::parse`] would reject matches nothing.
pub fn relation_key_matches(key: &str, schema: &str, name: &str) -> bool {
    let key = key.trim();
    let (s, n) = key.split_once('.').unwrap_or(("*", key));
    !s.is_empty()
        && !n.is_empty()
        && !n.contains('.')
        && wildcard_match(s.as_bytes(), schema.as_bytes())
        && wildcard_match(n.as_bytes(), name.as_bytes())
}

/// Glob matching with `*` only, iterative (no recursion, linear-ish on real inputs).
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let m = |p: &str, t: &str| NamePattern::new(p).matches(t);
        assert!(m("*", ""));
        assert!(m("*", "patients"));
        assert!(m("patients", "patients"));
        assert!(!m("patients", "patient"));
        assert!(m("*name*", "first_name"));
        assert!(m("*name*", "name"));
        assert!(!m("*name*", "nam"));
        assert!(m("pat*s", "patients"));
        assert!(!m("pat*s", "patient"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(!m("Patients", "patients"), "case-sensitive");
    }

    #[test]
    fn relation_patterns() {
        let p = RelationPattern::parse("patients").unwrap();
        assert!(p.matches("public", "patients") && p.matches("archive", "patients"));
        let p = RelationPattern::parse("billing.*").unwrap();
        assert!(p.matches("billing", "claims") && !p.matches("public", "claims"));
        assert_eq!(p.to_string(), "billing.*");
        assert!(RelationPattern::parse("a.b.c").is_err());
        assert!(RelationPattern::parse(".x").is_err());
        assert!(RelationPattern::parse("").is_err());
    }

    #[test]
    fn keys_match_as_their_parsed_patterns_do() {
        for key in [
            "patients",
            "public.patients",
            "billing.*",
            "*.pat*",
            "a.b.c",
            ".x",
            "",
            " public.patients ",
        ] {
            for (schema, name) in [
                ("public", "patients"),
                ("billing", "claims"),
                ("archive", "patients2"),
                ("a", "b.c"),
            ] {
                let parsed = RelationPattern::parse(key).is_ok_and(|p| p.matches(schema, name));
                assert_eq!(
                    relation_key_matches(key, schema, name),
                    parsed,
                    "{key} on {schema}.{name}"
                );
            }
        }
    }
}
