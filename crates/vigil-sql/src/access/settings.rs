//! Run-time settings a statement changes (`SET`, `SET LOCAL`, `RESET`), and the settings that
//! do more than tune the session: they switch off what protects the data or the record.

use pg_query::protobuf::{self as pb, node::Node as N, Node, VariableSetKind as V};
use serde::Serialize;

/// One change of a run-time setting, as PostgreSQL would apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// The setting's name, lowercased as PostgreSQL compares it; `None` for `RESET ALL`.
    pub name: Option<String>,
    pub value: SettingValue,
    /// `SET LOCAL`: until the end of the transaction.
    pub local: bool,
}

/// The value a change gives a setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingValue {
    /// `RESET`, `SET … TO DEFAULT`: back to the session's value at login.
    Default,
    /// The values as written (strings unquoted, numbers as written).
    Given(Vec<String>),
    /// `SET … FROM CURRENT` (function definitions), or a value the analysis cannot read.
    Unreadable,
}

/// The change a `VariableSetStmt` makes.
pub(crate) fn change_of(v: &pb::VariableSetStmt) -> SettingChange {
    let kind = V::try_from(v.kind).unwrap_or(V::Undefined);
    let name = (kind != V::VarResetAll).then(|| v.name.to_ascii_lowercase());
    let value = match kind {
        V::VarReset | V::VarResetAll | V::VarSetDefault => SettingValue::Default,
        V::VarSetValue => v
            .args
            .iter()
            .map(constant)
            .collect::<Option<Vec<String>>>()
            .map_or(SettingValue::Unreadable, SettingValue::Given),
        // `SET TRANSACTION …`, `SET SESSION CHARACTERISTICS …`: transaction modes, not settings
        // by name; their read-write form is caught from the text.
        V::VarSetMulti => SettingValue::Unreadable,
        V::VarSetCurrent | V::Undefined => SettingValue::Unreadable,
    };
    SettingChange {
        name,
        value,
        local: v.is_local,
    }
}

fn constant(n: &Node) -> Option<String> {
    match n.node.as_ref()? {
        N::AConst(c) => match c.val.as_ref()? {
            pb::a_const::Val::Ival(i) => Some(i.ival.to_string()),
            pb::a_const::Val::Fval(f) => Some(f.fval.clone()),
            pb::a_const::Val::Sval(s) => Some(s.sval.clone()),
            pb::a_const::Val::Boolval(b) => Some(if b.boolval { "on" } else { "off" }.into()),
            pb::a_const::Val::Bsval(_) => None,
        },
        _ => None,
    }
}

/// Settings that switch off what protects the data or the record: triggers and foreign keys
/// (`session_replication_role = replica`), row-level security, the server's own logging and
/// statistics, checks of system tables and pages, libraries loaded into the backend. Whoever
/// may set them can undo controls that Vigil's policy does not see, so they need an allowance
/// by name (see [`Hazard::SetProtectedSetting`](crate::Hazard::SetProtectedSetting)).
pub fn protected_setting(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "session_replication_role",
        "row_security",
        "allow_system_table_mods",
        "allow_in_place_tablespaces",
        "ignore_system_indexes",
        "ignore_checksum_failure",
        "ignore_invalid_pages",
        "zero_damaged_pages",
        "lo_compat_privileges",
        "session_preload_libraries",
        "local_preload_libraries",
        "dynamic_library_path",
        "jit_provider",
        "compute_query_id",
        "update_process_title",
        "lc_messages",
        "temp_file_limit",
        "max_stack_depth",
        "backtrace_functions",
        "wal_compression",
        "wal_consistency_checking",
        "commit_delay",
        "restrict_nonsystem_relation_kind",
        "event_triggers",
    ];
    const PREFIXES: &[&str] = &["log_", "debug_", "trace_", "track_"];
    let name = name.to_ascii_lowercase();
    EXACT.contains(&name.as_str()) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A duration setting's value in milliseconds, read as PostgreSQL reads `statement_timeout`:
/// a number (milliseconds) or a string with a unit (`us`, `ms`, `s`, `min`, `h`, `d`).
/// `None`: not a value PostgreSQL would accept as such (the caller refuses it).
pub fn duration_ms(value: &str) -> Option<f64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(v.len());
    // `1e3ms`: an exponent is part of the number only when followed by digits.
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() {
        return None;
    }
    let per_unit = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(number * per_unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_postgres_reads_them() {
        assert_eq!(duration_ms("0"), Some(0.0));
        assert_eq!(duration_ms("1500"), Some(1500.0));
        assert_eq!(duration_ms("2s"), Some(2000.0));
        assert_eq!(duration_ms(" 2 s "), Some(2000.0));
        assert_eq!(duration_ms("1.5min"), Some(90_000.0));
        assert_eq!(duration_ms("1h"), Some(3_600_000.0));
        assert_eq!(duration_ms("1d"), Some(86_400_000.0));
        assert_eq!(duration_ms("250us"), Some(0.25));
        assert_eq!(duration_ms("-1"), Some(-1.0));
        assert_eq!(duration_ms("1e3"), Some(1000.0));
        for bad in ["", "s", "1 sec", "1S", "nan", "inf", "1x", "1,5s"] {
            assert_eq!(duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn protected_settings_by_name_and_family() {
        for name in [
            "session_replication_role",
            "Session_Replication_Role",
            "log_statement",
            "log_min_duration_statement",
            "track_activities",
            "row_security",
        ] {
            assert!(protected_setting(name), "{name}");
        }
        for name in [
            "statement_timeout",
            "application_name",
            "work_mem",
            "datestyle",
        ] {
            assert!(!protected_setting(name), "{name}");
        }
    }
}
