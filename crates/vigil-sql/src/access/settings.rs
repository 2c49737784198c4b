//! Run-time settings a statement changes (`SET`, `SET LOCAL`, `RESET`), read as PostgreSQL
//! reads them (names, values, durations), and the settings that do more than tune the session:
//! they switch off what protects the data or the record.

use pg_query::protobuf::{self as pb, node::Node as N, Node, VariableSetKind as V};
pub use vigil_access::settings::{SettingChange, SettingValue};

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
    let duration_ms = match &value {
        // Saturating: a value past i64's range is past any bound too.
        SettingValue::Given(values) if values.len() == 1 => {
            duration_ms(&values[0]).map(|ms| ms as i64)
        }
        _ => None,
    };
    SettingChange {
        name,
        value,
        local: v.is_local,
        duration_ms,
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
/// by name (hazard `set_protected_setting`,
/// [`HazardKind::ChangesProtectedSetting`](crate::HazardKind::ChangesProtectedSetting)).
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
        "extension_destdir",
        "jit_dump_bitcode",
        "deadlock_timeout",
    ];
    const PREFIXES: &[&str] = &["log_", "debug_", "trace_", "track_"];
    let name = name.to_ascii_lowercase();
    // Extensions' settings (`pgaudit.log`, `pg_stat_statements.track`, `auto_explain.*`) are
    // where auditing and statistics extensions are switched off: every dotted name is
    // protected, as its meaning is the extension's.
    name.contains('.')
        || EXACT.contains(&name.as_str())
        || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A duration setting's value in whole milliseconds, read and rounded as PostgreSQL reads
/// `statement_timeout` (`parse_int`, `convert_to_base_unit`): a number (milliseconds) or a
/// number with a unit (`us`, `ms`, `s`, `min`, `h`, `d`); a fraction is first rounded to the
/// next smaller unit, then to milliseconds, each time half to even as C's `rint` does
/// (`0.5` is 0, which switches the timeout off). `None`: not a value this reads for certain
/// (hex, octal, exponents, other units): the caller refuses it.
pub fn duration_ms(value: &str) -> Option<f64> {
    const UNITS: &[(&str, f64)] = &[
        ("d", 86_400_000.0),
        ("h", 3_600_000.0),
        ("min", 60_000.0),
        ("s", 1_000.0),
        ("ms", 1.0),
        ("us", 0.001),
    ];
    let v = value.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r'));
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    // Integers the server reads with strtol(…, 0): a leading 0 is octal. Refuse rather than
    // guess (`010` is 8 ms there).
    let digits = number.trim_start_matches(['-', '+']);
    if digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.") {
        return None;
    }
    if number.is_empty() || number.matches('.').count() > 1 || number.contains(['e', 'E']) {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() {
        return None;
    }
    let unit = unit.trim_start_matches([' ', '\t']);
    let ms = if unit.is_empty() {
        number
    } else {
        let i = UNITS.iter().position(|(u, _)| *u == unit)?;
        let mut value = number * UNITS[i].1;
        if let Some((_, smaller)) = UNITS.get(i + 1) {
            value = (value / smaller).round_ties_even() * smaller;
        }
        value
    };
    Some(ms.round_ties_even())
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
        assert_eq!(duration_ms("250us"), Some(0.0));
        assert_eq!(duration_ms("-1"), Some(-1.0));
        // Half to even, as rint: these switch the timeout off on the server.
        for zero in ["0.5", ".5", "'0.5'", "500us", "0.0005s", "0.5ms", "0.4"] {
            let zero = zero.trim_matches('\'');
            assert_eq!(duration_ms(zero), Some(0.0), "{zero}");
        }
        assert_eq!(duration_ms("1.5"), Some(2.0));
        assert_eq!(duration_ms("2.5"), Some(2.0));
        assert_eq!(duration_ms("1500us"), Some(2.0));
        assert_eq!(duration_ms("0.0015s"), Some(2.0));
        for bad in [
            "", "s", "1 sec", "1S", "nan", "inf", "infinity", "1x", "1,5s", "1e3", "010", "0x10",
            "1..5", "--1",
        ] {
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
            "pgaudit.log",
            "pg_stat_statements.track",
            "auto_explain.log_min_duration",
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
