//! Run-time settings a statement changes, as neutral data: the dialect reads them from its
//! grammar, and policy bounds some of them (how long a statement may run…).

use serde::Serialize;

/// One change of a run-time setting, as the server would apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// The setting's name, lowercased as the server compares it; `None` for a reset of every
    /// setting (`RESET ALL`).
    pub name: Option<String>,
    pub value: SettingValue,
    /// Until the end of the transaction only (`SET LOCAL`).
    pub local: bool,
    /// The value read as a duration in whole milliseconds, the way the server reads a duration
    /// setting's value (units, rounding), when it is one value that reads so for certain;
    /// `None` otherwise (then a bound on the setting refuses it). Meaningful only for settings
    /// that are durations; not part of the serialized form.
    #[serde(skip)]
    pub duration_ms: Option<i64>,
}

/// The value a change gives a setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingValue {
    /// Back to the session's value at login (`RESET`, `SET … TO DEFAULT`).
    Default,
    /// The values as written (strings unquoted, numbers as written).
    Given(Vec<String>),
    /// A value the analysis cannot read (PostgreSQL's `SET … FROM CURRENT`…).
    Unreadable,
}
