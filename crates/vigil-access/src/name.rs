//! Names of database objects.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A possibly schema-qualified name, as the database stores its parts (PostgreSQL folds
/// unquoted names to lower case before they get here). Displayed as SQL would need it written
/// (`public."Mixed Case"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QualifiedName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        QualifiedName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if let Some(schema) = &self.schema {
            push_name_part(&mut out, schema);
            out.push('.');
        }
        push_name_part(&mut out, &self.name);
        f.write_str(&out)
    }
}

/// Appends one part of a name as SQL needs it written: as is when it is a plain lower-case
/// identifier, otherwise in double quotes (SQL's delimited identifier, `""` for a quote).
pub fn push_name_part(out: &mut String, part: &str) {
    let plain = part
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == b'_' || c >= 0x80)
        && part.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$' || c >= 0x80
        });
    if plain {
        out.push_str(part);
    } else {
        out.push('"');
        out.push_str(&part.replace('"', "\"\""));
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_display_as_sql_needs_them() {
        assert_eq!(
            QualifiedName::new(Some("public"), "patients").to_string(),
            "public.patients"
        );
        assert_eq!(
            QualifiedName::new(Some("My Schema"), "T").to_string(),
            "\"My Schema\".\"T\""
        );
        assert_eq!(QualifiedName::new(None, "a.b").to_string(), "\"a.b\"");
        assert_eq!(
            QualifiedName::new(None, "say \"hi\"").to_string(),
            "\"say \"\"hi\"\"\""
        );
    }
}
