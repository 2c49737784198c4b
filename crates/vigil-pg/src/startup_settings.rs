//! Startup parameters are `SET`s the server runs at login (`PGOPTIONS='-c search_path=…'`, or a
//! parameter such as `search_path=…` in the startup packet): each passes the same policy as the
//! `SET` it amounts to, before the upstream sees it. What goes upstream is rebuilt from what
//! was checked, never the client's bytes.

use vigil_policy::{Decision, Denial, Grant};
use vigil_sql::{Analyzer, LexOptions, StaticCatalog};

/// One setting a client asks for at startup, its name as PostgreSQL will look it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupSetting {
    pub name: String,
    pub value: String,
    /// Given in `options` (`-c name=value`), rather than as a parameter of its own.
    pub in_options: bool,
}

/// Why a startup parameter is refused. Names the setting, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupRefusal {
    pub setting: String,
    pub reason: String,
    pub sqlstate: &'static str,
    pub rule: &'static str,
}

/// Settings drivers send at every login that only choose how the server formats what it
/// sends: they pass at startup whatever the scope's command classes say (a `SET` of them in
/// the session needs the `session` class).
const CLIENT_INTERFACE: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "extra_float_digits",
    "client_min_messages",
];

/// Splits the startup parameters (without `user`, `database`, `replication`) into settings:
/// `options` is read as PostgreSQL reads it (words split on unescaped whitespace, `\` escaping
/// the next character), and only `-c name=value` and `--name=value` are accepted in it: the
/// other server switches (`-B`, `-d`, `-e`, `-f`…) set what no `SET` may.
pub fn parse(params: &[(String, String)]) -> Result<Vec<StartupSetting>, StartupRefusal> {
    let mut out = Vec::with_capacity(params.len());
    for (key, value) in params {
        // A control character has no place in a setting, and the server splits `options` on
        // some that Rust does not call whitespace (vertical tab): refused, not interpreted.
        if value.chars().any(|c| c.is_control()) {
            return Err(refusal(
                key,
                "a startup parameter's value holds a control character".into(),
                "startup_value",
            ));
        }
        // Which bytes the server's `isspace` splits `options` on beyond ASCII depends on its
        // locale: `options` must be ASCII.
        if key == "options" && !value.is_ascii() {
            return Err(refusal(
                key,
                "options must be ASCII (write -c name=value with ASCII names and values)".into(),
                "startup_value",
            ));
        }
        if key != "options" {
            out.push(StartupSetting {
                name: checked_name(key)?,
                value: value.clone(),
                in_options: false,
            });
            continue;
        }
        let words = split_options(value);
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let assignment = if word == "-c" {
                i += 1;
                words.get(i).map(String::as_str)
            } else if let Some(rest) = word.strip_prefix("--") {
                Some(rest)
            } else if let Some(rest) = word.strip_prefix("-c") {
                Some(rest)
            } else {
                return Err(refusal(
                    "options",
                    format!(
                        "the server switch {:?} in options is not accepted through Vigil; only -c name=value and --name=value are",
                        word.chars().take(2).collect::<String>()
                    ),
                    "startup_switch",
                ));
            };
            let Some((name, value)) = assignment.and_then(|a| a.split_once('=')) else {
                return Err(refusal(
                    "options",
                    "a -c or -- switch in options has no name=value".into(),
                    "startup_switch",
                ));
            };
            // As the server does (ParseLongOption): `--statement-timeout=0` is statement_timeout.
            out.push(StartupSetting {
                name: checked_name(&name.replace('-', "_"))?,
                value: value.to_string(),
                in_options: true,
            });
            i += 1;
        }
    }
    Ok(out)
}

/// Checks each setting as the `SET` it amounts to, under the session's grants.
pub fn check(
    settings: &[StartupSetting],
    grants: &[std::sync::Arc<Grant>],
    analyzer: &Analyzer,
) -> Result<(), StartupRefusal> {
    let catalog = StaticCatalog::new([], vec!["public".into()]);
    let now = vigil_core::Timestamp::now();
    for s in settings {
        if CLIENT_INTERFACE.contains(&s.name.as_str()) {
            continue;
        }
        let text = format!("SET \"{}\" TO '{}'", s.name, s.value.replace('\'', "''"));
        let access = analyzer.access(
            &text,
            LexOptions {
                standard_conforming_strings: true,
            },
            &catalog,
        );
        match vigil_policy::decide(grants, &access, &vigil_policy::AssumeBuiltins, now) {
            Decision::Allow(_) => {}
            Decision::Deny { denial, .. } => return Err(from_denial(&s.name, denial)),
        }
    }
    Ok(())
}

/// The parameters to send upstream: the checked settings, then the session's bounds for those
/// the client did not set itself (lower, since they passed), then `extra` (Vigil's own).
pub fn upstream_params(
    settings: &[StartupSetting],
    bounds: &vigil_policy::SessionBounds,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = settings
        .iter()
        .filter(|s| !s.in_options)
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let mut options: Vec<String> = settings
        .iter()
        .filter(|s| s.in_options)
        .map(|s| format!("-c {}={}", s.name, escape_option(&s.value)))
        .collect();
    for (name, value) in bounds.login_settings() {
        if !settings.iter().any(|s| s.name == name) {
            params.push((name.to_string(), value));
        }
    }
    for (name, value) in extra {
        options.push(format!("-c {name}={}", escape_option(value)));
    }
    if !options.is_empty() {
        params.push(("options".into(), options.join(" ")));
    }
    params
}

/// A setting name as the server will look it up (it compares names without case): letters,
/// digits, `_`, `$` and `.` (extension settings), lowercased.
fn checked_name(name: &str) -> Result<String, StartupRefusal> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'));
    if !valid {
        return Err(refusal(
            "options",
            "a startup parameter has a name that is not a setting name".into(),
            "startup_switch",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// Words of `options`, split on unescaped whitespace, `\x` read as `x` (pg_split_opts).
pub(crate) fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if is_c_space(c) => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// What C's `isspace` is in the "C" locale: the server splits `options` on these (Rust's
/// `is_ascii_whitespace` leaves out the vertical tab).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

pub(crate) fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || is_c_space(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn refusal(setting: &str, reason: String, rule: &'static str) -> StartupRefusal {
    StartupRefusal {
        setting: setting.into(),
        reason,
        sqlstate: crate::sqlstate::INSUFFICIENT_PRIVILEGE,
        rule,
    }
}

fn from_denial(setting: &str, d: Denial) -> StartupRefusal {
    StartupRefusal {
        setting: setting.into(),
        reason: d.reason,
        sqlstate: d.sqlstate,
        rule: d.rule,
    }
}

/// For the fuzz target: parsing never panics, names come out valid and lowercased, and the
/// rebuilt parameters parse back to the same settings.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut params = Vec::new();
    for (i, part) in text.split('\u{0}').enumerate().take(8) {
        let key = if i % 2 == 0 { "options" } else { "search_path" };
        params.push((key.to_string(), part.to_string()));
    }
    if let Ok(settings) = parse(&params) {
        for s in &settings {
            assert!(checked_name(&s.name).is_ok_and(|n| n == s.name));
        }
        let rebuilt = upstream_params(&settings, &Default::default(), &[]);
        let again = parse(&rebuilt).expect("rebuilt parameters parse");
        let sorted = |v: &[StartupSetting]| {
            let mut v: Vec<(String, String)> = v
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&settings), sorted(&again));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(options: &str) -> Result<Vec<(String, String)>, &'static str> {
        parse(&[("options".into(), options.into())])
            .map(|v| v.into_iter().map(|s| (s.name, s.value)).collect())
            .map_err(|r| r.rule)
    }

    #[test]
    fn options_are_read_as_the_server_reads_them() {
        assert_eq!(
            p("-c search_path=x --statement-timeout=0 -cwork_mem=64MB"),
            Ok(vec![
                ("search_path".into(), "x".into()),
                ("statement_timeout".into(), "0".into()),
                ("work_mem".into(), "64MB".into()),
            ])
        );
        assert_eq!(
            p(r"-c application_name=a\ b\\c"),
            Ok(vec![("application_name".into(), r"a b\c".into())])
        );
        assert_eq!(
            p("-c Search_Path=x"),
            Ok(vec![("search_path".into(), "x".into())])
        );
        for refused in [
            "-B 100", "-d 5", "-e", "-f s", "-c", "--x", "-c a", "-c 'a'=b", "plain",
        ] {
            assert_eq!(p(refused), Err("startup_switch"), "{refused}");
        }
        assert_eq!(p("   "), Ok(vec![]));
    }

    #[test]
    fn rebuilt_parameters_carry_what_was_checked_and_the_bounds() {
        let settings = parse(&[
            ("application_name".into(), "psql".into()),
            ("options".into(), r"-c search_path=a\ b".into()),
        ])
        .unwrap();
        let bounds = vigil_policy::SessionBounds {
            statement_timeout: Some(std::time::Duration::from_secs(2)),
            idle_in_transaction_timeout: None,
        };
        let params = upstream_params(
            &settings,
            &bounds,
            &[("default_transaction_read_only", "on")],
        );
        assert_eq!(
            params,
            vec![
                ("application_name".to_string(), "psql".to_string()),
                ("statement_timeout".to_string(), "2000".to_string()),
                (
                    "options".to_string(),
                    r"-c search_path=a\ b -c default_transaction_read_only=on".to_string()
                ),
            ]
        );
        for data in [&b"-c a=b\0x"[..], b"--a-b=\\ \0", b"-c\0\0-c x=y z"] {
            fuzz_parse(data);
        }
    }
}
