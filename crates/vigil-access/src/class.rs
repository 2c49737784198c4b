//! The class of a statement: the kind of privilege it needs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A statement's class, for least-privilege policy: scopes allow classes by these names
/// (`commands = ["read", "transaction"]`), and the audit trail records them
/// (`StatementShape::command_classes`). The dialect classifies its own statements (for
/// PostgreSQL, the table in `vigil-sql`'s documentation); where a statement needs two
/// privileges, the stronger class wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandClass {
    /// Reads rows (`SELECT`, a read-only `EXPLAIN`…).
    Read,
    /// Inserts, updates, deletes or locks rows.
    Write,
    /// Creates, alters or drops objects, or grants on them.
    Ddl,
    /// Bulk load into a relation (`COPY … FROM`).
    CopyIn,
    /// Bulk unload out of the database (`COPY … TO`).
    CopyOut,
    /// Transaction control.
    Transaction,
    /// Session state: settings, roles, prepared statements, cursors.
    Session,
    /// Runs code: anonymous blocks, procedures.
    Function,
    /// Maintenance and messaging (`VACUUM`, `LISTEN`, `LOCK`…).
    Utility,
    /// What the analyser does not know; never allowed.
    Other,
}

impl CommandClass {
    /// The name used in `StatementShape::command_classes`, in scopes and in serde (`read`,
    /// `copy_in`…).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandClass::Read => "read",
            CommandClass::Write => "write",
            CommandClass::Ddl => "ddl",
            CommandClass::CopyIn => "copy_in",
            CommandClass::CopyOut => "copy_out",
            CommandClass::Transaction => "transaction",
            CommandClass::Session => "session",
            CommandClass::Function => "function",
            CommandClass::Utility => "utility",
            CommandClass::Other => "other",
        }
    }
}

impl fmt::Display for CommandClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are a config and record format: serde and `as_str` agree, and read back.
    #[test]
    fn serialized_names_are_the_recorded_ones() {
        for (c, name) in [
            (CommandClass::Read, "read"),
            (CommandClass::Write, "write"),
            (CommandClass::Ddl, "ddl"),
            (CommandClass::CopyIn, "copy_in"),
            (CommandClass::CopyOut, "copy_out"),
            (CommandClass::Transaction, "transaction"),
            (CommandClass::Session, "session"),
            (CommandClass::Function, "function"),
            (CommandClass::Utility, "utility"),
            (CommandClass::Other, "other"),
        ] {
            assert_eq!(c.as_str(), name);
            assert_eq!(c.to_string(), name);
            assert_eq!(serde_json::to_value(c).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<CommandClass>(name.into()).unwrap(),
                c
            );
        }
    }
}
