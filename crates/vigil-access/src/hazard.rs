//! Hazards: constructs a least-privilege policy must allow by name, because what they do
//! reaches past the relations and columns a scope governs.
//!
//! A [`Hazard`] says what the construct does in terms every dialect shares ([`HazardKind`]:
//! runs inline code, reads or writes a server file, changes a protected setting…), which is
//! what policy decides on, and which of the dialect's constructs does it ([`Construct`]:
//! PostgreSQL's `do_block`, `copy_file`…), which is what records and `vigil policy test` show.

use crate::name::QualifiedName;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// A construct that a least-privilege policy must allow by name, or refuse.
///
/// Serialized as the construct's name under `hazard`, followed by the kind's fields
/// (`{"hazard":"copy_file"}`, `{"hazard":"do_block","language":"plpgsql"}`): that is the form
/// the audit trail and exports have always carried, so a construct's name is a record format.
/// Ordered by kind first (the order of [`HazardKind`]'s variants), which is the order a
/// statement lists its hazards in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hazard {
    /// What it does: what a policy allows or refuses.
    pub kind: HazardKind,
    /// The dialect's construct that does it.
    pub construct: Construct,
}

impl Hazard {
    pub fn new(kind: HazardKind, construct: Construct) -> Self {
        Hazard { kind, construct }
    }
}

/// The dialect's name for the construct behind a hazard (`do_block`, `copy_program`,
/// `set_role`…), in snake case. Chosen by the dialect and kept once chosen: records carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Construct(&'static str);

impl Construct {
    pub const fn new(name: &'static str) -> Self {
        Construct(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// What a hazard does, whatever the dialect. The examples name PostgreSQL's constructs.
///
/// The order of the variants is the order hazards are listed in (records carry the list):
/// keep it, and add new kinds at the end.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HazardKind {
    /// Runs code written inline in the statement, which the analysis does not read (`DO`).
    /// `language`: the code's language when known (`None` when given as a string literal).
    RunsInlineCode { language: Option<String> },
    /// Defines code that runs later, unseen, possibly with its owner's privileges or natively
    /// (`CREATE FUNCTION`, `CREATE PROCEDURE`). `language` as for inline code.
    DefinesCode {
        name: QualifiedName,
        language: Option<String>,
    },
    /// Runs a stored procedure (also listed in the statement's functions) (`CALL`).
    CallsProcedure { procedure: QualifiedName },
    /// Runs a program on the database server (`COPY … PROGRAM`).
    RunsServerProgram,
    /// Reads or writes a file on the database server (`COPY … 'file'`).
    AccessesServerFile,
    /// Takes on another role's privileges in the session (`SET ROLE`, `RESET ROLE`).
    AssumesRole,
    /// Makes the session another user (`SET SESSION AUTHORIZATION`).
    ChangesSessionUser,
    /// Changes where unqualified names resolve (`SET search_path`): the gateway must also
    /// reload the resolution its catalog does.
    RedirectsNames,
    /// Changes a setting that switches off a protection of the data or the record (triggers,
    /// row security, the server's own logging…); `name` is the setting's.
    ChangesProtectedSetting { name: String },
    /// Runs the statement it explains (`EXPLAIN ANALYZE`).
    RunsExplainedStatement,
    /// Defines a named statement for later runs (`PREPARE name`): the gateway remembers its
    /// analysis for the runs.
    DefinesPrepared { name: String },
    /// Runs a named statement the text does not show (`EXECUTE name`): the gateway must check
    /// the one it recorded under `name`, or refuse.
    RunsPrepared { name: String },
    /// Subscribes the session to messages on a channel (`LISTEN`).
    Subscribes { channel: String },
    /// Sends a message to other sessions (`NOTIFY`).
    Publishes { channel: String },
    /// Rewrites the server's configuration (`ALTER SYSTEM`).
    ChangesServerConfiguration,
    /// Loads a native library into the server (`LOAD`).
    LoadsLibrary,
    /// Installs an extension, running its install script (`CREATE EXTENSION`).
    InstallsExtension { name: String },
    /// Calls a function that reaches outside the relations a policy governs (also listed in
    /// the statement's functions).
    CallsRiskyFunction {
        name: QualifiedName,
        risk: FunctionRisk,
    },
}

impl Serialize for Hazard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use HazardKind as K;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("hazard", self.construct.as_str())?;
        match &self.kind {
            K::RunsInlineCode { language } => m.serialize_entry("language", language)?,
            K::DefinesCode { name, language } => {
                m.serialize_entry("name", name)?;
                m.serialize_entry("language", language)?;
            }
            K::CallsProcedure { procedure } => m.serialize_entry("procedure", procedure)?,
            K::ChangesProtectedSetting { name }
            | K::DefinesPrepared { name }
            | K::RunsPrepared { name }
            | K::InstallsExtension { name } => m.serialize_entry("name", name)?,
            K::Subscribes { channel } | K::Publishes { channel } => {
                m.serialize_entry("channel", channel)?
            }
            K::CallsRiskyFunction { name, risk } => {
                m.serialize_entry("name", name)?;
                m.serialize_entry("risk", risk)?;
            }
            K::RunsServerProgram
            | K::AccessesServerFile
            | K::AssumesRole
            | K::ChangesSessionUser
            | K::RedirectsNames
            | K::RunsExplainedStatement
            | K::ChangesServerConfiguration
            | K::LoadsLibrary => {}
        }
        m.end()
    }
}

/// Why a function (or a catalog relation: [`RelationAccess::exposure`]) is dangerous: it
/// reaches outside the relations a policy governs. Which functions and relations do is the
/// dialect's list.
///
/// [`RelationAccess::exposure`]: crate::RelationAccess::exposure
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionRisk {
    /// Server files: `pg_read_file`, `pg_ls_dir`, `lo_import`, `lo_export`…
    FileSystem,
    /// Large objects, data outside any relation: `lo_get`, `lo_put`, `loread`…
    LargeObject,
    /// Other servers: `dblink*`.
    RemoteDatabase,
    /// Other sessions and the server itself: `pg_terminate_backend`, `pg_reload_conf`…
    ServerControl,
    /// `set_config`: any setting, `search_path` and `role` included, by value.
    Configuration,
    /// Runs SQL given as text, or reads whole relations named by value: `query_to_xml`,
    /// `table_to_xml`, `ts_stat`…
    DynamicSql,
    /// Replication slots and origins: `pg_logical_slot_get_changes` returns every change.
    Replication,
    /// `pg_notify`: sends data to other sessions.
    Notification,
    /// Other sessions: their statements, backends, locks and progress (`pg_stat_get_activity`,
    /// `pg_stat_activity`, `pg_locks`, `pg_blocking_pids`, `pg_stat_statements`…). Every
    /// identity logs in upstream as the same role, so the server shows each all of them.
    OtherSessions,
    /// Planner statistics: most-common values and histograms are real column values
    /// (`pg_stats`, `pg_statistic`, `pg_stats_ext`…).
    Statistics,
    /// Counters of what every session did, per table, index, function and database
    /// (`pg_stat_user_tables`, `pg_stat_get_numscans`…).
    ServerActivity,
    /// Password hashes, user mappings' options, subscriptions' connection strings
    /// (`pg_authid`, `pg_shadow`, `pg_user_mappings`, `pg_subscription`…).
    Credentials,
    /// Table pages or WAL read directly (pageinspect, pg_walinspect): every row, unmasked.
    RawStorage,
    /// A function or catalog relation of the server that Vigil's lists do not know (a newer
    /// version's): closed until reviewed.
    Unreviewed,
}

impl FunctionRisk {
    /// What it exposes, for refusals (`relation … exposes other sessions' statements…`).
    pub fn describe(self) -> &'static str {
        match self {
            FunctionRisk::FileSystem => "server files or configuration files",
            FunctionRisk::LargeObject => "large objects (data outside any relation)",
            FunctionRisk::RemoteDatabase => "other servers",
            FunctionRisk::ServerControl => "control of the server and other sessions",
            FunctionRisk::Configuration => "settings by value",
            FunctionRisk::DynamicSql => "SQL given as text or relations named by value",
            FunctionRisk::Replication => "replication slots and origins",
            FunctionRisk::Notification => "messages to other sessions",
            FunctionRisk::OtherSessions => "other sessions' statements and state",
            FunctionRisk::Statistics => "planner statistics, which hold column values",
            FunctionRisk::ServerActivity => "counters of every session's activity",
            FunctionRisk::Credentials => "credentials",
            FunctionRisk::RawStorage => "table pages or WAL read directly",
            // The words refusals have carried since the PostgreSQL lists were made.
            FunctionRisk::Unreviewed => {
                "a part of PostgreSQL's catalog that Vigil has not reviewed"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(h: &Hazard) -> String {
        serde_json::to_string(h).unwrap()
    }

    /// The construct names the tag; the kind's fields follow in their order.
    #[test]
    fn serialized_as_construct_and_fields() {
        let c = Construct::new("some_construct");
        let name = QualifiedName::new(Some("s"), "f");
        for (kind, fields) in [
            (
                HazardKind::RunsInlineCode { language: None },
                r#","language":null"#,
            ),
            (
                HazardKind::DefinesCode {
                    name: name.clone(),
                    language: Some("c".into()),
                },
                r#","name":{"schema":"s","name":"f"},"language":"c""#,
            ),
            (
                HazardKind::CallsProcedure {
                    procedure: QualifiedName::new(None, "p"),
                },
                r#","procedure":{"name":"p"}"#,
            ),
            (HazardKind::AccessesServerFile, ""),
            (
                HazardKind::ChangesProtectedSetting { name: "x".into() },
                r#","name":"x""#,
            ),
            (
                HazardKind::RunsPrepared { name: "q".into() },
                r#","name":"q""#,
            ),
            (
                HazardKind::Publishes {
                    channel: "ch".into(),
                },
                r#","channel":"ch""#,
            ),
            (
                HazardKind::CallsRiskyFunction {
                    name,
                    risk: FunctionRisk::OtherSessions,
                },
                r#","name":{"schema":"s","name":"f"},"risk":"other_sessions""#,
            ),
        ] {
            assert_eq!(
                json(&Hazard::new(kind, c)),
                format!(r#"{{"hazard":"some_construct"{fields}}}"#)
            );
        }
    }

    /// Hazards sort by kind first, whatever their constructs are called.
    #[test]
    fn ordered_by_kind() {
        let mut hazards = [
            Hazard::new(
                HazardKind::CallsRiskyFunction {
                    name: QualifiedName::new(None, "f"),
                    risk: FunctionRisk::FileSystem,
                },
                Construct::new("a"),
            ),
            Hazard::new(HazardKind::AccessesServerFile, Construct::new("z")),
            Hazard::new(
                HazardKind::RunsInlineCode { language: None },
                Construct::new("y"),
            ),
        ];
        hazards.sort();
        let kinds: Vec<&str> = hazards.iter().map(|h| h.construct.as_str()).collect();
        assert_eq!(kinds, ["y", "z", "a"]);
    }
}
