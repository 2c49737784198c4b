//! Bounds a session runs under that the identity cannot lift: how long a statement may run
//! and how long a transaction may sit idle. The gateway sets them upstream at login (as the
//! session's own defaults, so `RESET` returns to them), and every change of them is checked
//! here: lowering passes, lifting or switching off does not.

use crate::scope::{Denial, Scope};
use std::time::Duration;
use vigil_access::{Access, QualifiedName, SettingValue};

/// A bounded PostgreSQL setting and the scope key that bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedSetting {
    /// PostgreSQL's name.
    pub setting: &'static str,
    /// The scope key.
    pub key: &'static str,
}

pub const STATEMENT_TIMEOUT: BoundedSetting = BoundedSetting {
    setting: "statement_timeout",
    key: "statement_timeout",
};
pub const IDLE_IN_TRANSACTION_TIMEOUT: BoundedSetting = BoundedSetting {
    setting: "idle_in_transaction_session_timeout",
    key: "idle_in_transaction_timeout",
};

/// The bounds of a session: the strictest of its grants' (a grant without a bound does not
/// lift another's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionBounds {
    pub statement_timeout: Option<Duration>,
    pub idle_in_transaction_timeout: Option<Duration>,
}

impl SessionBounds {
    pub fn of<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> SessionBounds {
        let mut b = SessionBounds::default();
        for s in scopes {
            b.statement_timeout = strictest(b.statement_timeout, s.statement_timeout);
            b.idle_in_transaction_timeout =
                strictest(b.idle_in_transaction_timeout, s.idle_in_transaction_timeout);
        }
        b
    }

    pub fn is_empty(&self) -> bool {
        self.statement_timeout.is_none() && self.idle_in_transaction_timeout.is_none()
    }

    fn bounds(&self) -> impl Iterator<Item = (BoundedSetting, Duration)> {
        [
            (STATEMENT_TIMEOUT, self.statement_timeout),
            (
                IDLE_IN_TRANSACTION_TIMEOUT,
                self.idle_in_transaction_timeout,
            ),
        ]
        .into_iter()
        .filter_map(|(s, d)| d.map(|d| (s, d)))
    }

    /// The settings to give the upstream at login, in PostgreSQL's unit (milliseconds).
    pub fn login_settings(&self) -> Vec<(&'static str, String)> {
        self.bounds()
            .map(|(s, d)| (s.setting, millis(d).to_string()))
            .collect()
    }

    /// The bound on `setting` (a PostgreSQL setting name, any case), if any.
    pub fn bound_of(&self, setting: &str) -> Option<Duration> {
        self.bounds()
            .find(|(s, _)| s.setting.eq_ignore_ascii_case(setting))
            .map(|(_, d)| d)
    }

    /// Checks the setting changes of a text against the bounds.
    pub fn check(&self, access: &Access) -> Result<(), Denial> {
        if self.is_empty() {
            return Ok(());
        }
        for s in &access.statements {
            // `set_config('statement_timeout', …)` takes its name and value from expressions.
            if s.functions.iter().any(is_set_config) {
                return Err(denial(
                    "set_config() can change any setting, including the bounds this session runs under (statement_timeout, idle_in_transaction_session_timeout); use SET".into(),
                ));
            }
            for change in &s.settings {
                let Some(name) = change.name.as_deref() else {
                    continue; // RESET ALL: back to the login values, the bounds included
                };
                let Some((bounded, bound)) = self.bounds().find(|(b, _)| b.setting == name) else {
                    continue;
                };
                if change.value == SettingValue::Default {
                    continue;
                }
                // Read and rounded as the server reads it (the dialect's analysis did): a value
                // that comes out 0 switches the bound off.
                let allowed = change
                    .duration_ms
                    .is_some_and(|ms| ms >= 1 && i128::from(ms) <= millis(bound) as i128);
                if !allowed {
                    return Err(denial(format!(
                        "{} may be lowered but not lifted or switched off: this grant bounds it to {} (scope key {})",
                        bounded.setting,
                        humantime_serde::re::humantime::format_duration(bound),
                        bounded.key
                    )));
                }
            }
        }
        Ok(())
    }
}

fn is_set_config(f: &QualifiedName) -> bool {
    f.name == "set_config" && matches!(f.schema.as_deref(), None | Some("pg_catalog"))
}

fn denial(reason: String) -> Denial {
    Denial {
        rule: "bounded_setting",
        reason,
        sqlstate: "42501",
    }
}

fn strictest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whole milliseconds, at least 1 (0 would switch the bound off upstream).
fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vigil_access::{CommandClass, SettingChange, StatementAccess};
    use vigil_core::event::StatementShape;

    /// A text of one `SET name = value` statement, as an analysis reports it (`duration_ms`
    /// read by the dialect).
    fn set(name: Option<&str>, value: SettingValue, duration_ms: Option<i64>) -> Access {
        let mut s = StatementAccess::new("SET", CommandClass::Session);
        s.settings.push(SettingChange {
            name: name.map(str::to_owned),
            value,
            local: false,
            duration_ms,
        });
        access(s)
    }

    fn access(statement: StatementAccess) -> Access {
        Access {
            shape: Arc::new(StatementShape {
                text: String::new(),
                fingerprint: String::new(),
                commands: vec![statement.command.clone()],
                command_classes: vec![statement.class.to_string()],
                objects: Vec::new(),
                parse_error: None,
            }),
            statements: vec![statement],
            parse_error: None,
        }
    }

    fn given(v: &str) -> SettingValue {
        SettingValue::Given(vec![v.into()])
    }

    #[test]
    fn a_bound_may_be_lowered_not_lifted() {
        let bounds = SessionBounds {
            statement_timeout: Some(Duration::from_secs(30)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
        };
        let st = Some("statement_timeout");
        for ok in [
            set(st, given("1000"), Some(1000)),
            set(st, given("30s"), Some(30_000)),
            set(st, SettingValue::Default, None),
            set(None, SettingValue::Default, None),
            set(
                Some("idle_in_transaction_session_timeout"),
                given("1min"),
                Some(60_000),
            ),
            set(Some("lock_timeout"), given("0"), Some(0)),
        ] {
            assert_eq!(bounds.check(&ok).map_err(|d| d.rule), Ok(()), "{ok:?}");
        }
        for refused in [
            set(st, given("0"), Some(0)),
            set(st, given("31s"), Some(31_000)),
            set(st, given("-1"), Some(-1)),
            set(st, given("010"), None),
            set(st, SettingValue::Unreadable, None),
            set(st, SettingValue::Given(vec!["1".into(), "2".into()]), None),
            set(st, given("huge"), Some(i64::MAX)),
            set(
                Some("idle_in_transaction_session_timeout"),
                given("0"),
                Some(0),
            ),
        ] {
            assert_eq!(
                bounds.check(&refused).map_err(|d| d.rule),
                Err("bounded_setting"),
                "{refused:?}"
            );
        }
        let mut set_config = StatementAccess::new("SELECT", CommandClass::Read);
        set_config.functions = vec![QualifiedName::new(Some("pg_catalog"), "set_config")];
        assert_eq!(
            bounds.check(&access(set_config)).map_err(|d| d.rule),
            Err("bounded_setting")
        );
        // Without bounds nothing is refused here.
        assert_eq!(
            SessionBounds::default()
                .check(&set(st, given("0"), Some(0)))
                .map_err(|d| d.rule),
            Ok(())
        );
    }

    #[test]
    fn the_strictest_bound_holds_and_login_settings_carry_it() {
        let a: Scope = toml::from_str("statement_timeout = \"30s\"").unwrap();
        let b: Scope = toml::from_str("statement_timeout = \"5s\"").unwrap();
        let c = Scope::default();
        let bounds = SessionBounds::of([&a, &b, &c]);
        assert_eq!(bounds.statement_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            bounds.login_settings(),
            vec![("statement_timeout", "5000".to_string())]
        );
        assert_eq!(
            bounds
                .check(&set(Some("statement_timeout"), given("10s"), Some(10_000)))
                .map_err(|d| d.rule),
            Err("bounded_setting")
        );
    }
}
