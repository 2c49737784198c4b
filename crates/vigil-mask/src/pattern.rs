//! Column patterns: `schema.table.column`, `table.column` or `column`, each part with `*`
//! wildcards (any run of characters, possibly empty). Case-sensitive, on names as PostgreSQL
//! stores them.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    schema: Box<str>,
    table: Box<str>,
    column: Box<str>,
}

impl ColumnPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let parts: Vec<&str> = t.split('.').collect();
        let (schema, table, column) = match parts.as_slice() {
            [c] => ("*", "*", *c),
            [t, c] => ("*", *t, *c),
            [s, t, c] => (*s, *t, *c),
            _ => {
                return Err(format!(
                    "column pattern {s:?} must be `column`, `table.column` or \
                     `schema.table.column` (with * wildcards)"
                ))
            }
        };
        if schema.is_empty() || table.is_empty() || column.is_empty() {
            return Err(format!("column pattern {s:?} has an empty part"));
        }
        Ok(ColumnPattern {
            schema: schema.into(),
            table: table.into(),
            column: column.into(),
        })
    }

    pub fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        wildcard(self.column.as_bytes(), column.as_bytes())
            && wildcard(self.table.as_bytes(), table.as_bytes())
            && wildcard(self.schema.as_bytes(), schema.as_bytes())
    }

    /// Whether only the column part is constrained (`*.*.x`): such patterns can also describe
    /// computed columns by their label.
    pub fn column_only(&self) -> bool {
        &*self.schema == "*" && &*self.table == "*"
    }

    pub fn matches_column(&self, column: &str) -> bool {
        wildcard(self.column.as_bytes(), column.as_bytes())
    }
}

impl fmt::Debug for ColumnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// `*` matches any run of bytes; everything else matches itself. Iterative with one backtrack
/// point: linear in practice, never recursive.
pub(crate) fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = ColumnPattern::parse("*.ssn").unwrap();
        assert!(p.matches("public", "patients", "ssn"));
        assert!(!p.matches("public", "patients", "ssn2"));
        let p = ColumnPattern::parse("patients.*name*").unwrap();
        assert!(p.matches("public", "patients", "first_name"));
        assert!(p.matches("x", "patients", "name"));
        assert!(!p.matches("x", "encounters", "name"));
        let p = ColumnPattern::parse("public.patients.ssn").unwrap();
        assert!(!p.matches("other", "patients", "ssn"));
        assert!(ColumnPattern::parse("ssn").unwrap().column_only());
        assert!(ColumnPattern::parse("a.b.c.d").is_err());
        assert!(ColumnPattern::parse("a..c").is_err());
        assert!(wildcard(b"*a*b*", b"xxaxxbxx"));
        assert!(!wildcard(b"*a*b", b"xxaxxbxx"));
        assert!(wildcard(b"**", b""));
    }
}
