//! Scopes: what a grant lets an identity do on a connection, and the check of one analysed
//! statement against it.

use crate::allowance::Allowance;
use crate::pattern::{relation_key_matches, NamePattern, RelationPattern};
use crate::policy::Severity;
use crate::window::Window;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vigil_access::{
    Access, ColumnSet, CommandClass, FunctionRisk, HazardKind, QualifiedName, StatementAccess,
    Unresolved,
};

/// What to do when a result has more rows than `row_cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RowCapAction {
    /// Rows beyond the cap are withheld; the client gets a notice and the command tag counts
    /// the rows it received. (Refusing after rows have been sent would leave a pipelining
    /// client and the server disagreeing about which statements ran.)
    #[default]
    Truncate,
}

/// A scope, as written in a policy (`[policies.scope]`) and as snapshotted into every session
/// record. Everything not allowed is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Command classes allowed: `read`, `write`, `ddl`, `copy_in`, `copy_out`, `transaction`,
    /// `session`, `function`, `utility`.
    #[serde(default)]
    pub commands: BTreeSet<CommandClass>,
    /// Relations that may be used (`schema.name` patterns; `name` means `*.name`).
    #[serde(default)]
    pub relations: BTreeSet<RelationPattern>,
    /// Relations that may not be used, even if `relations` matches them.
    #[serde(default)]
    pub deny_relations: BTreeSet<RelationPattern>,
    /// Per relation pattern, the columns (patterns) that may not be used anywhere in a
    /// statement: select list, WHERE, JOIN, ORDER BY, RETURNING, SET…
    #[serde(default)]
    pub deny_columns: BTreeMap<String, BTreeSet<NamePattern>>,
    /// Functions allowed beyond PostgreSQL's built-in ones (patterns on the function name, or
    /// `schema.name`); dangerous built-ins (`pg_read_file`, `set_config`, `dblink`…) must be
    /// listed by exact name.
    #[serde(default)]
    pub functions: BTreeSet<String>,
    /// Constructs allowed by name (`do`, `set_role`, `set_search_path`…).
    #[serde(default)]
    pub allow: BTreeSet<Allowance>,
    /// Most rows a statement may return: counted over its portal or cursor, whatever number
    /// of Executes or FETCHes bring them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_cap: Option<u64>,
    /// Most bytes of rows a statement may return (counted like `row_cap`): one row can hold a
    /// whole table (`string_agg`, `array_agg`, `json_agg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_cap: Option<u64>,
    /// Most rows a session may receive, over all its statements (paging with OFFSET, many
    /// cursors…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_row_cap: Option<u64>,
    /// Most bytes of rows a session may receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_byte_cap: Option<u64>,
    #[serde(default)]
    pub row_cap_action: RowCapAction,
    /// The session runs upstream in read-only transaction mode, and writes and DDL are refused
    /// whatever `commands` says.
    #[serde(default)]
    pub read_only: bool,
    /// Longest a session under this scope may last.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_session: Option<Duration>,
    /// When the scope may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Longest a statement may run: set upstream at login as PostgreSQL's
    /// `statement_timeout`; the identity may lower it, not lift it.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub statement_timeout: Option<Duration>,
    /// Longest a transaction may sit idle (`idle_in_transaction_session_timeout`, which ends
    /// the session): an idle transaction holds locks and an upstream slot.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Most sessions one identity may hold at once on the connection under this grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
}

/// Why a statement was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// A stable rule name (`command_class`, `relation_not_allowed`, `column_denied`…).
    pub rule: &'static str,
    /// What was refused, for the client and the record. Names objects, never values.
    pub reason: String,
    /// SQLSTATE for the client.
    #[serde(skip)]
    pub sqlstate: &'static str,
}

impl Denial {
    fn new(rule: &'static str, reason: impl Into<String>) -> Denial {
        Denial {
            rule,
            reason: reason.into(),
            sqlstate: "42501",
        }
    }
}

/// What the decision needs to know of the database beyond the analysis.
pub trait FunctionCatalog {
    /// Whether `name` is one of PostgreSQL's own functions (`pg_catalog`,
    /// `information_schema`), as opposed to one defined in the database.
    fn is_builtin(&self, name: &QualifiedName) -> bool;

    /// What a view of the database (by OID) exposes through the catalog relations and
    /// functions its definition reads (`CREATE VIEW activity AS SELECT * FROM
    /// pg_stat_activity`), if anything: such a view passes only when named exactly, like what
    /// it reads. `None` when unknown (offline checks).
    fn view_exposure(&self, relation_oid: u32) -> Option<FunctionRisk> {
        let _ = relation_oid;
        None
    }
}

/// Treats every unqualified function as built-in: for tests and offline checks.
pub struct AssumeBuiltins;

impl FunctionCatalog for AssumeBuiltins {
    fn is_builtin(&self, name: &QualifiedName) -> bool {
        matches!(
            name.schema.as_deref(),
            None | Some("pg_catalog") | Some("information_schema")
        )
    }
}

impl Scope {
    /// The scope in its canonical JSON form: what session records carry, and what the digest
    /// is computed over.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a scope always serializes")
    }

    /// Hex SHA-256 of the canonical JSON.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Checks the scope's own consistency (patterns, window): the first error.
    pub fn validate(&self) -> Result<(), String> {
        match self.problems(Severity::Error).into_iter().next() {
            Some((field, message)) => Err(format!("{field}: {message}")),
            None => Ok(()),
        }
    }

    /// Problems of one severity, as (field, message): errors make the scope unusable,
    /// warnings point at what is valid but almost certainly not meant.
    pub fn problems(&self, severity: Severity) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (key, columns) in &self.deny_columns {
            match RelationPattern::parse(key) {
                Err(e) => errors.push(("deny_columns".to_string(), e)),
                // A key naming one relation that no `relations` pattern allows protects
                // nothing: most likely a typo that leaves the real relation's columns open.
                Ok(p) if !key.contains('*') => {
                    let (schema, name) = (p.schema.as_str(), p.name.as_str());
                    let allowed = self.relations.iter().any(|r| {
                        r.name.matches(name) && (schema == "*" || r.schema.matches(schema))
                    });
                    if !allowed {
                        warnings.push((
                            "deny_columns".to_string(),
                            format!("{key:?} is not among the relations this scope allows, so these denials protect nothing (a typo?)"),
                        ));
                    }
                }
                Ok(_) => {}
            }
            if columns.iter().any(|c| c.as_str().is_empty()) {
                errors.push((
                    "deny_columns".to_string(),
                    format!("{key:?} lists an empty column name"),
                ));
            }
            if columns.is_empty() {
                warnings.push((
                    "deny_columns".to_string(),
                    format!("{key:?} denies no column (an empty list)"),
                ));
            }
            for c in columns {
                if let Some(w) = suspicious_wildcard(c.as_str()) {
                    warnings.push(("deny_columns".to_string(), w));
                }
            }
        }
        for p in self.relations.iter().chain(&self.deny_relations) {
            for part in [p.schema.as_str(), p.name.as_str()] {
                if let Some(w) = suspicious_wildcard(part) {
                    warnings.push(("relations".to_string(), w));
                }
            }
        }
        if let Some(w) = &self.window {
            match w.validate() {
                Err(e @ crate::window::WindowError::UnknownTimeZone(_)) => {
                    errors.push(("window.timezone".into(), e.to_string()))
                }
                Err(e) => errors.push(("window.not_after".into(), e.to_string())),
                Ok(()) => {}
            }
        }
        for (field, value) in [
            ("byte_cap", self.byte_cap),
            ("session_row_cap", self.session_row_cap),
            ("session_byte_cap", self.session_byte_cap),
        ] {
            if value == Some(0) {
                errors.push((field.into(), "must be at least 1".into()));
            }
        }
        if self.row_cap == Some(0) {
            errors.push(("row_cap".into(), "must be at least 1".into()));
        }
        if self.max_session == Some(Duration::ZERO) {
            errors.push(("max_session".into(), "must be longer than zero".into()));
        }
        for (field, value) in [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            if value.is_some_and(|d| d < Duration::from_millis(1)) {
                errors.push((field.into(), "must be at least 1ms".into()));
            }
            if value.is_some_and(|d| d.as_millis() > i32::MAX as u128) {
                errors.push((
                    field.into(),
                    "must be at most 2147483647ms (about 24 days), PostgreSQL's limit".into(),
                ));
            }
        }
        if self.max_sessions == Some(0) {
            errors.push(("max_sessions".into(), "must be at least 1".into()));
        }
        if self.commands.contains(&CommandClass::Other) {
            errors.push((
                "commands".into(),
                "\"other\" cannot be allowed (it names what the analyser does not know)".into(),
            ));
        }
        for f in &self.functions {
            let (schema, name) = match f.split_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, f.as_str()),
            };
            if name.is_empty() || schema == Some("") || name.contains('.') {
                errors.push((
                    "functions".into(),
                    format!("{f:?} must be `name` or `schema.name`"),
                ));
            } else if schema.is_some_and(|s| s.contains('*')) {
                errors.push((
                    "functions".into(),
                    format!("{f:?}: the schema part cannot be a wildcard (write the name alone to match it in any schema)"),
                ));
            } else if let Some(w) = suspicious_wildcard(name) {
                warnings.push(("functions".into(), w));
            }
        }
        if self.relations.is_empty()
            && self.commands.iter().any(|c| {
                matches!(
                    c,
                    CommandClass::Read
                        | CommandClass::Write
                        | CommandClass::CopyIn
                        | CommandClass::CopyOut
                )
            })
        {
            warnings.push((
                "relations".into(),
                "allows no relation, so only statements that touch none (SHOW, SELECT 1…) can pass"
                    .into(),
            ));
        }
        if self.read_only {
            for c in [CommandClass::Write, CommandClass::Ddl, CommandClass::CopyIn] {
                if self.commands.contains(&c) {
                    warnings.push((
                        "read_only".into(),
                        format!("read_only refuses {c} statements, although `commands` lists {c}"),
                    ));
                }
            }
        }
        if self
            .deny_relations
            .iter()
            .any(|p| p.schema.as_str() == "*" && p.name.as_str() == "*")
        {
            warnings.push((
                "deny_relations".into(),
                "\"*\" denies every relation".into(),
            ));
        }
        match severity {
            Severity::Error => errors,
            Severity::Warning => warnings,
        }
    }

    /// Checks a whole text (every statement must pass: one refused → the text is refused).
    pub fn check(&self, access: &Access, functions: &dyn FunctionCatalog) -> Result<(), Denial> {
        if let Some(e) = &access.parse_error {
            return Err(Denial {
                rule: "unparseable",
                reason: format!("the statement could not be parsed ({e})"),
                sqlstate: "42601",
            });
        }
        if access.statements.is_empty() {
            return Ok(()); // an empty query string runs nothing
        }
        if self.read_only && lifts_read_only(access) {
            return Err(Denial::new(
                "read_only",
                "the statement would turn off the read-only transaction mode this grant runs in",
            ));
        }
        crate::bounds::SessionBounds::of([self]).check(access)?;
        for statement in &access.statements {
            self.check_statement(statement, functions)?;
        }
        Ok(())
    }

    fn check_statement(
        &self,
        s: &StatementAccess,
        functions: &dyn FunctionCatalog,
    ) -> Result<(), Denial> {
        // The gateway substitutes the analysis of what `PREPARE name` prepared in the
        // session; an `EXECUTE` that reaches here names nothing prepared.
        if let Some(name) = s.hazards.iter().find_map(|h| match &h.kind {
            HazardKind::RunsPrepared { name } => Some(name),
            _ => None,
        }) {
            return Err(Denial::new(
                "execute_unknown",
                format!("EXECUTE {name}: no statement prepared under that name in this session"),
            ));
        }
        // DDL is governed by relation names (it may name what does not exist yet, or no
        // longer: `DROP TABLE IF EXISTS`); columns and constructs must still resolve.
        let unresolved = s
            .unresolved
            .iter()
            .find(|u| !(s.class == CommandClass::Ddl && matches!(u, Unresolved::Relation(_))));
        if let Some(u) = unresolved {
            // Said as PostgreSQL would say it (the server would refuse the statement too), so
            // that clients branching on the SQLSTATE behave as they would without Vigil.
            return Err(match u {
                Unresolved::Relation(name) => Denial {
                    rule: "unresolved",
                    reason: format!("relation \"{name}\" does not exist"),
                    sqlstate: "42P01",
                },
                Unresolved::Column(name) => Denial {
                    rule: "unresolved",
                    reason: format!("column \"{name}\" does not exist"),
                    sqlstate: "42703",
                },
                Unresolved::Constraint(name) => Denial {
                    rule: "unresolved",
                    reason: format!("constraint \"{name}\" does not exist"),
                    sqlstate: "42704",
                },
                Unresolved::Construct(what) => Denial::new(
                    "unresolved",
                    format!(
                        "{} uses a construct Vigil cannot check ({what}), so it is refused",
                        s.command
                    ),
                ),
            });
        }
        // EXPLAIN without ANALYZE plans but runs nothing: it needs read access to what it plans.
        let class = if s.plan_only {
            CommandClass::Read
        } else {
            s.class
        };
        if !self.commands.contains(&class) {
            return Err(Denial::new(
                "command_class",
                format!(
                    "{} is a {} command, which this grant does not allow",
                    s.command, class
                ),
            ));
        }
        if self.read_only
            && !s.plan_only
            && (matches!(
                class,
                CommandClass::Write | CommandClass::Ddl | CommandClass::CopyIn
            ) || s.relations.iter().any(|r| r.write || r.ddl))
        {
            return Err(Denial::new(
                "read_only",
                format!("{} writes, and this grant is read-only", s.command),
            ));
        }
        for r in &s.relations {
            let schema = r.relation.schema.as_deref().unwrap_or("public");
            let name = r.relation.name.as_str();
            if self.deny_relations.iter().any(|p| p.matches(schema, name)) {
                return Err(Denial::new(
                    "relation_denied",
                    format!("relation {} is denied to this grant", r.relation),
                ));
            }
            if !self.relations.iter().any(|p| p.matches(schema, name)) {
                return Err(Denial::new(
                    "relation_not_allowed",
                    format!(
                        "relation {} is not among the relations this grant allows",
                        r.relation
                    ),
                ));
            }
            // Catalog relations that expose other sessions, statistics values, server files or
            // credentials pass only when named: `pg_catalog.*` (which psql's \d needs) never
            // opens them.
            let exposure = match r.exposure {
                Some(risk) => Some((risk, "exposes")),
                None => r
                    .oid
                    .and_then(|oid| functions.view_exposure(oid))
                    .map(|risk| (risk, "is a view over what exposes")),
            };
            // pg_settings has a rule that turns an UPDATE into set_config(): every setting,
            // the bounded and protected ones included, without a SET to check; so does a view
            // over it (and the stored settings behind pg_db_role_setting are no better).
            let sets_settings = (schema == "pg_catalog" && name == "pg_settings")
                || matches!(exposure, Some((FunctionRisk::Configuration, _)));
            if r.write && !s.plan_only && sets_settings {
                return Err(Denial::new(
                    "settings_write",
                    format!(
                        "writing to {} changes settings without SET, so it is refused; use SET",
                        r.relation
                    ),
                ));
            }
            if let Some((risk, how)) = exposure {
                if !self
                    .relations
                    .iter()
                    .any(|p| names_exactly(p, schema, name))
                {
                    return Err(Denial::new(
                        "sensitive_relation",
                        format!(
                            "relation {} {how} {}; a grant must name it exactly (no wildcard) to allow it",
                            r.relation,
                            risk.describe()
                        ),
                    ));
                }
            }
            if !s.plan_only
                && r.write
                && !matches!(
                    class,
                    CommandClass::Write | CommandClass::CopyIn | CommandClass::Ddl
                )
            {
                // A read command that writes (SELECT … FOR UPDATE, a data-modifying CTE).
                if !self.commands.contains(&CommandClass::Write) {
                    return Err(Denial::new(
                        "command_class",
                        format!(
                            "{} writes to {}, and this grant does not allow writes",
                            s.command, r.relation
                        ),
                    ));
                }
            }
            if r.ddl && !self.commands.contains(&CommandClass::Ddl) {
                return Err(Denial::new(
                    "command_class",
                    format!(
                        "{} changes the definition of {}, and this grant does not allow DDL",
                        s.command, r.relation
                    ),
                ));
            }
            for (pattern, columns) in &self.deny_columns {
                if columns.is_empty() || !relation_key_matches(pattern, schema, name) {
                    continue;
                }
                match r.columns() {
                    ColumnSet::All => {
                        return Err(Denial::new(
                            "column_denied",
                            format!(
                                "the statement uses every column of {} (*, a whole row, or no column list), and some are denied to this grant; name the columns you need",
                                r.relation
                            ),
                        ))
                    }
                    ColumnSet::Columns(used) => {
                        if let Some(c) = used.iter().find(|c| columns.iter().any(|d| d.matches(c))) {
                            return Err(Denial::new(
                                "column_denied",
                                format!("column {c} of {} is denied to this grant (using it anywhere, even in WHERE or ORDER BY, reveals it)", r.relation),
                            ));
                        }
                    }
                }
            }
        }
        // A write the server compares with stored values (a unique index, a foreign key…)
        // reveals whether a value is there: a denied column may not be compared either.
        for c in &s.compared {
            let schema = c.relation.schema.as_deref().unwrap_or("public");
            let name = c.relation.name.as_str();
            for (pattern, columns) in &self.deny_columns {
                if relation_key_matches(pattern, schema, name)
                    && columns.iter().any(|d| d.matches(&c.column))
                {
                    return Err(Denial::new(
                        "column_denied",
                        format!(
                            "this write is compared with column {} of {} (constraint {}), which is denied to this grant: whether it succeeds would reveal that column's values",
                            c.column,
                            c.relation,
                            c.constraint.as_deref().unwrap_or("unknown")
                        ),
                    ));
                }
            }
        }
        for f in &s.functions {
            let risk = s.function_risk(f);
            let dangerous = risk.is_some();
            let listed = self
                .functions
                .iter()
                .any(|p| function_matches(p, f, dangerous));
            if let (Some(risk), false) = (risk, listed) {
                return Err(Denial::new(
                    "function_denied",
                    format!("function {f} reaches outside the relations a grant governs ({}); it must be allowed by exact name", risk.describe()),
                ));
            }
            if !dangerous && !functions.is_builtin(f) && !listed {
                return Err(Denial::new(
                    "function_not_allowed",
                    format!("function {f} is not a PostgreSQL built-in and is not among the functions this grant allows"),
                ));
            }
        }
        // (A named statement's run was refused above, before anything else.)
        for h in &s.hazards {
            if let Some(a) = Allowance::required_by(&h.kind) {
                if !self.allow.contains(&a) {
                    return Err(Denial::new(
                        "construct_denied",
                        format!(
                            "{} ({}) must be allowed by name in the grant",
                            s.command,
                            a.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether a `relations` pattern names `schema.name` without a wildcard in the name (`name`
/// alone, `*.name` or `schema.name`).
fn names_exactly(p: &RelationPattern, schema: &str, name: &str) -> bool {
    let pattern_schema = p.schema.as_str();
    p.name.as_str() == name && (pattern_schema == "*" || pattern_schema == schema)
}

/// A `functions` entry matches a function by name pattern, or `schema.name` exactly; a
/// dangerous function only by its exact name (a wildcard never opens `pg_read_file`).
fn function_matches(pattern: &str, f: &QualifiedName, dangerous: bool) -> bool {
    if let Some((schema, name)) = pattern.split_once('.') {
        return f.schema.as_deref() == Some(schema)
            && (if dangerous {
                name == f.name
            } else {
                NamePattern::new(name).matches(&f.name)
            });
    }
    if dangerous {
        pattern == f.name
    } else {
        NamePattern::new(pattern).matches(&f.name)
    }
}

/// A name pattern written with another syntax's wildcards (`%`, `?`, `_` in SQL LIKE, regular
/// expressions): Vigil's only wildcard is `*`, so these match themselves literally.
fn suspicious_wildcard(pattern: &str) -> Option<String> {
    pattern
        .chars()
        .any(|c| matches!(c, '%' | '?' | '[' | '^' | '+' | '\\'))
        .then(|| format!("{pattern:?} contains a character other tools use as a wildcard; Vigil's only wildcard is * (others match themselves)"))
}

/// Whether a text could lift the upstream's read-only mode (the second line of a read-only
/// grant): `BEGIN/START/SET TRANSACTION … READ WRITE`, `SET SESSION CHARACTERISTICS AS
/// TRANSACTION READ WRITE`, `SET [default_]transaction_read_only`. Read from the
/// literal-free text, so a value cannot hide it; `SHOW` of the settings is harmless.
fn lifts_read_only(access: &Access) -> bool {
    if access.statements.iter().all(|s| s.command == "SHOW") {
        return false;
    }
    let text = access.shape.text.to_ascii_lowercase();
    text.contains("read write") || text.contains("transaction_read_only")
}
