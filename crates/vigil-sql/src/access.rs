//! Access analysis: for each statement of a text, the relations and columns it reads and
//! writes, the functions it calls, and the constructs a least-privilege policy must allow by
//! name ([`Hazard`]s), resolved against a [`Catalog`](crate::Catalog). Pure: no I/O, no policy.
//!
//! Made by [`Analyzer::access`](crate::Analyzer::access) from PostgreSQL's own parse tree. What
//! it cannot resolve it lists in [`StatementAccess::unresolved`], and callers refuse such
//! statements: the analysis over-approximates (counts a column against every relation it may
//! belong to) but never guesses in the permissive direction.
//!
//! ## Rules
//!
//! - **Relations.** Every relation named in FROM, JOIN, a DML target, COPY, TABLE, a subquery or
//!   a CTE body, anywhere in the statement. Names resolve through the catalog (search path for
//!   unqualified names); a CTE name is not a relation, except a non-recursive CTE's own name
//!   inside its body (that is the table, as in PostgreSQL). Views are relations like any other
//!   (not expanded). A relation the catalog does not know is listed as written and also in
//!   `unresolved`; so is a column that it cannot place.
//! - **Reads.** A relation in a FROM clause is `read` (even `SELECT count(*)`, which reads no
//!   column). A column is read when an expression anywhere mentions it: select list, WHERE,
//!   JOIN … ON and USING (both sides), NATURAL joins (the common columns), GROUP BY, HAVING,
//!   WINDOW, ORDER BY, DISTINCT ON, LIMIT, function arguments, FILTER, aggregate ORDER BY,
//!   RETURNING, ON CONFLICT (arbiter columns, DO UPDATE expressions and WHERE), MERGE
//!   conditions, COPY … WHERE. `SELECT *`, `t.*` and whole-row references (`SELECT p FROM
//!   patients p`, `row_to_json(p)`, `p::text`, `t.f` where `f` is not a column, which
//!   PostgreSQL reads as the function call `f(t)`) read all columns ([`ColumnSet::All`]);
//!   `count(*)` reads none. System columns (`ctid`, `xmin`…) count as columns.
//! - **Writes.** INSERT and COPY FROM write the listed columns, all of them without a list;
//!   UPDATE, MERGE … UPDATE and ON CONFLICT DO UPDATE write the SET columns; DELETE, TRUNCATE
//!   and MERGE … DELETE write rows, no column. SELECT INTO and CREATE TABLE AS write all columns
//!   of the table they create. `FOR UPDATE/SHARE` marks the locked relations `write`
//!   (PostgreSQL asks UPDATE privilege for it).
//! - **Column resolution.** Qualified references (`p.ssn`, `patients.ssn`,
//!   `public.patients.ssn`) resolve to the FROM item with that alias (or, without alias, that
//!   name), at the current query level or an outer one. An unqualified name resolves, as in
//!   PostgreSQL, against the items visible at the innermost level that has a column of that name
//!   (JOIN … ON sees only the join's inputs, a non-LATERAL subquery in FROM does not see its
//!   siblings), then outer levels (correlated subqueries); if several items at that level have
//!   it, it counts against all of them. Failing any column, a name equal to a FROM item's alias
//!   is a whole-row reference. Anything else is `unresolved`.
//! - **Output columns by name and position** (PostgreSQL's `findTargetlistEntrySQL92`). In
//!   ORDER BY and DISTINCT ON a bare name is an output column first, an integer constant the
//!   output column at that position; in GROUP BY (and its ROLLUP, CUBE, GROUPING SETS and
//!   implicit rows) a bare name is a column of the level's FROM items first, then an output
//!   column, then a column of an outer level; plain DISTINCT uses every output column. Positions
//!   count `*` column by column in the catalog's order; after a `*` whose expansion is not known
//!   (a USING or NATURAL join, a join alias, unknown columns) any output may be meant, and all
//!   count. An output column used so is a **derived** use of what it stands for (the result's
//!   order, grouping or distinctness depends on it). Window and aggregate ORDER BY/PARTITION BY
//!   are expressions (SQL99: a constant sorts nothing).
//! - **Compared columns** ([`StatementAccess::compared`]). A write the server compares with
//!   stored rows uses their values: INSERT, UPDATE, MERGE, ON CONFLICT DO UPDATE and COPY FROM
//!   that set a column of a unique index, exclusion or check constraint compare all its columns;
//!   setting a foreign key's columns compares the referenced relation's; deleting rows, or
//!   updating the columns, another relation's foreign key references compares both sides; a
//!   check constraint not validated may fail on any update. Constraints of partitions and
//!   inheritance children count for the relation written. Where the catalog does not describe a
//!   relation's constraints ([`RelationInfo::constraints`](crate::RelationInfo) is `None`:
//!   views, foreign tables, hand-made catalogs), every column of it counts. `ON CONFLICT ON
//!   CONSTRAINT name` reads the constraint's columns (like `ON CONFLICT (columns)`); a name the
//!   catalog lacks is `unresolved`.
//! - **Derived tables and CTEs.** A subquery in FROM or a CTE is analysed where it is written:
//!   its own reads are counted there, whether or not the outer query uses its columns. So a
//!   reference to a derived column counts nothing more (its origin was counted when the body
//!   computed it) and `SELECT id FROM (SELECT id, ssn FROM patients) x` reads `patients.ssn`
//!   (conservative). Output names of a derived table follow PostgreSQL's naming rules (aliases,
//!   then `FigureColname`), so that outer references resolve as the server resolves them.
//!   Functions in FROM (`generate_series(…) g`) have columns the analysis cannot list without
//!   the function catalog: an unqualified name that no other item has is taken to be theirs.
//! - **Output origins** ([`StatementAccess::outputs`]): for a top-level `SELECT` or `VALUES`
//!   without `*`, whether each result column is computed only from constants, bind parameters
//!   and reviewed functions that read no stored data (masking leaves those alone). See
//!   [`outputs`] for what counts; anything else may be stored.
//! - **EXPLAIN** without ANALYZE runs nothing: the statement's accesses are those of the
//!   statement it plans, with [`StatementAccess::plan_only`] set, and its class is `read`. With
//!   an ANALYZE option (whatever its value: one analysis serves every text of a shape) it runs
//!   the statement: class of that statement, [`Hazard::ExplainAnalyze`].
//! - **DDL and utility statements** list the relations they name (`ddl` for DDL; TRUNCATE
//!   writes) and every function called in their expressions (a column DEFAULT runs when ALTER
//!   TABLE adds it), not the columns of their definitions. Queries inside them (CREATE VIEW,
//!   CREATE TABLE AS, CREATE RULE actions, SQL-standard function bodies) are analysed as
//!   queries: what a definition reads is what it exposes.
//!
//! Nothing here depends on the value of a literal, with one exception: one analysis serves
//! every text of the same shape (see [`Analyzer`](crate::Analyzer)). The exception is an output
//! column named by position (`ORDER BY 2`): its analysis is marked
//! [`StatementAccess::by_position`] and serves its own text only. Where PostgreSQL accepts a string literal in place
//! of a name (`LANGUAGE 'plpgsql'`), the name is reported only when written as an identifier.
//!
//! ## Limits
//!
//! What runs without being named in the text is not seen: function and procedure bodies (the
//! functions are listed; DO and CREATE FUNCTION are hazards), view definitions, rules,
//! triggers, column defaults, row-level security policies, and the functions behind operators,
//! casts and type input. Nor are relations named by value (`nextval('s')`, `'t'::regclass`,
//! `table_to_xml('t')`, which is a hazard), relations reached by `TRUNCATE … CASCADE` or
//! `DROP … CASCADE`, or the inheritance children and partitions that reading a parent reads.
//! DDL is reported per relation, not per column. The order a plan gives rows that no ORDER BY
//! fixes (an index scan over a masked column) is not seen; nor are constraints that triggers,
//! rules or generated columns enforce, nor what `ON DELETE CASCADE` writes. A derived table's
//! select list counts in full
//! even when the outer query uses part of it; a function in FROM whose columns are not declared
//! absorbs unqualified names nothing else has (they are not reported unresolved); `t.f` where
//! `f` is not a column is reported as a whole-row read plus the function `f`, even when no such
//! function exists. The catalog is the gateway's: a statement after a `SET search_path` in the
//! same text is resolved with the old path (and refused if that fails), and temporary tables
//! need the session's temporary schema in the catalog's search path. Within one text, later
//! statements see the tables earlier ones create with `CREATE TABLE name (columns…)` (plain and
//! temporary tables whose schema is certain, so none after a `SET search_path`, `set_config()`,
//! `DO` or `CALL` earlier in the text; not `LIKE`, `INHERITS`, `PARTITION OF`, typed
//! tables, views or columns added by `ALTER TABLE`, which stay unresolved until the next text),
//! resolved as the server will: a temporary table before `pg_catalog`, a new table before the
//! rest of the search path.

use crate::catalog::RelationKind;
use crate::tree;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use vigil_core::event::StatementShape;

pub mod exposure;
mod names;
pub mod outputs;
pub mod settings;
mod walk;

pub(crate) use names::session_names;
pub use outputs::OutputOrigin;
pub(crate) use walk::statement_access;

// ---------------------------------------------------------------------------------------------
// What the analysis returns.

/// A statement's class, for least-privilege policy (see the crate documentation for the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandClass {
    Read,
    Write,
    Ddl,
    CopyIn,
    CopyOut,
    Transaction,
    Session,
    Function,
    Utility,
    Other,
}

impl CommandClass {
    /// The name used in [`StatementShape::command_classes`] and in serde (`read`, `copy_in`…).
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

/// A possibly schema-qualified name, as PostgreSQL stores its parts (unquoted names folded to
/// lower case). Displayed as SQL would need it written (`public."Mixed Case"`).
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
            tree::push_name_part(&mut out, schema);
            out.push('.');
        }
        tree::push_name_part(&mut out, &self.name);
        f.write_str(&out)
    }
}

/// Columns of one relation: some (sorted, possibly none), or all of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ColumnSet {
    /// Named columns, sorted, without duplicates.
    Columns(Vec<String>),
    /// Every column (`*`, a whole-row reference, an INSERT or COPY without column list…).
    /// Serialized as `"*"`.
    All,
}

impl Default for ColumnSet {
    fn default() -> Self {
        ColumnSet::Columns(Vec::new())
    }
}

impl Serialize for ColumnSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ColumnSet::All => s.serialize_str("*"),
            ColumnSet::Columns(c) => c.serialize(s),
        }
    }
}

impl ColumnSet {
    /// Whether the set holds `column` (always, for [`ColumnSet::All`]).
    pub fn contains(&self, column: &str) -> bool {
        match self {
            ColumnSet::All => true,
            ColumnSet::Columns(c) => c.binary_search_by(|x| x.as_str().cmp(column)).is_ok(),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, ColumnSet::Columns(c) if c.is_empty())
    }

    pub fn is_all(&self) -> bool {
        matches!(self, ColumnSet::All)
    }

    /// The union of two sets.
    pub fn union(&self, other: &ColumnSet) -> ColumnSet {
        match (self, other) {
            (ColumnSet::Columns(a), ColumnSet::Columns(b)) => {
                let set: BTreeSet<&String> = a.iter().chain(b).collect();
                ColumnSet::Columns(set.into_iter().cloned().collect())
            }
            _ => ColumnSet::All,
        }
    }
}

/// What one statement does to one relation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelationAccess {
    /// Schema-qualified when the catalog resolved it; as written otherwise.
    pub relation: QualifiedName,
    /// `None` when the catalog does not know the relation (then it is also in `unresolved`,
    /// unless the statement creates it).
    pub oid: Option<u32>,
    pub kind: Option<RelationKind>,
    /// Rows of the relation are read (a FROM item, a column read, RETURNING…).
    pub read: bool,
    /// Rows are inserted, updated, deleted, truncated or locked FOR UPDATE/SHARE.
    pub write: bool,
    /// A DDL statement creates, alters, drops, comments, grants… on the relation.
    pub ddl: bool,
    pub read_columns: ColumnSet,
    pub write_columns: ColumnSet,
    /// Columns read other than as a bare output column of the client's result: in
    /// expressions, filters, joins, ordering, grouping and DISTINCT (by name, output name or
    /// position), subqueries in expressions, set operations, RETURNING, or into another table.
    /// Values of a masked column must not be read this way: the result would carry them (or
    /// facts about them) unmasked.
    #[serde(default, skip_serializing_if = "ColumnSet::is_empty")]
    pub derived_columns: ColumnSet,
}

impl RelationAccess {
    /// Every column the statement uses, read or written: what a policy's denied columns are
    /// checked against.
    pub fn columns(&self) -> ColumnSet {
        self.read_columns.union(&self.write_columns)
    }

    /// Whether the statement reads or writes `column` of this relation.
    pub fn uses_column(&self, column: &str) -> bool {
        self.read_columns.contains(column) || self.write_columns.contains(column)
    }
}

/// Why a function (or a catalog relation: [`relation_risk`]) is dangerous: it reaches outside
/// the relations a policy governs.
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
    /// A PostgreSQL function or catalog relation that Vigil's lists do not know (a newer
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
            FunctionRisk::Unreviewed => {
                "a part of PostgreSQL's catalog that Vigil has not reviewed"
            }
        }
    }
}

/// A construct that a least-privilege policy must allow by name, or refuse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "hazard", rename_all = "snake_case")]
pub enum Hazard {
    /// `DO`: an anonymous code block; its body (a literal) is not analysed. `language`:
    /// `plpgsql` when not given, `None` when given as a string literal.
    DoBlock { language: Option<String> },
    /// `CREATE [OR REPLACE] FUNCTION | PROCEDURE`: code that runs later, possibly as its owner
    /// (`SECURITY DEFINER`), possibly native (`c`) or untrusted (`plpython3u`). `language` is
    /// `None` when given as a string literal.
    CreateFunction {
        name: QualifiedName,
        language: Option<String>,
    },
    /// `CALL`: runs a procedure (also listed in `functions`).
    Call { procedure: QualifiedName },
    /// `COPY … FROM/TO PROGRAM`: a shell command on the database server.
    CopyProgram,
    /// `COPY … FROM/TO 'file'`: a file on the database server.
    CopyFile,
    /// `SET [LOCAL] ROLE`, `RESET ROLE`: changes the privileges of the session.
    SetRole,
    /// `SET`/`RESET SESSION AUTHORIZATION`.
    SetSessionAuthorization,
    /// `SET`/`RESET search_path` (or `SET SCHEMA`): redirects unqualified names, so the gateway
    /// must also reload the search path of its catalog.
    SetSearchPath,
    /// `SET`/`RESET` of a setting that switches off a protection of the data or the record
    /// ([`settings::protected_setting`]: `session_replication_role`, `row_security`, `log_*`…).
    SetProtectedSetting { name: String },
    /// `EXPLAIN ANALYZE` (any ANALYZE option): runs the statement it explains.
    ExplainAnalyze,
    /// `PREPARE name AS …`: the statement is analysed here; the gateway remembers it for
    /// `EXECUTE name`.
    Prepare { name: String },
    /// `EXECUTE name`: runs a statement this text does not show; the gateway must check the one
    /// it recorded for `name`, or refuse.
    Execute { name: String },
    /// `LISTEN channel`.
    Listen { channel: String },
    /// `NOTIFY channel`: sends a payload to other sessions.
    Notify { channel: String },
    /// `ALTER SYSTEM`: rewrites the server's configuration.
    AlterSystem,
    /// `LOAD`: loads a shared library into the server.
    Load,
    /// `CREATE EXTENSION`: runs the extension's install script.
    CreateExtension { name: String },
    /// A call of a function that reaches outside SQL (also listed in `functions`).
    Function {
        name: QualifiedName,
        risk: FunctionRisk,
    },
}

/// Something the analysis could not place: callers refuse the statement (fail closed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "unresolved", content = "name", rename_all = "snake_case")]
pub enum Unresolved {
    /// A relation the catalog does not have (as written).
    Relation(String),
    /// A column reference no relation in scope has (as written: `ssn`, `p.ssn`).
    Column(String),
    /// A parse-tree construct the analysis does not know (its node type).
    Construct(String),
    /// A constraint the catalog does not have (`ON CONFLICT ON CONSTRAINT name`), as
    /// `relation.constraint`.
    Constraint(String),
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::Relation(n) => write!(f, "relation {n}"),
            Unresolved::Column(n) => write!(f, "column {n}"),
            Unresolved::Construct(n) => write!(f, "construct {n}"),
            Unresolved::Constraint(n) => write!(f, "constraint {n}"),
        }
    }
}

/// What one statement of a text accesses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementAccess {
    /// PostgreSQL's command tag (`SELECT`, `INSERT`, `CREATE TABLE`…).
    pub command: String,
    pub class: CommandClass,
    /// `EXPLAIN` without ANALYZE: nothing runs. The accesses are those of the statement it
    /// would plan, so a policy may treat the statement as read-only metadata.
    pub plan_only: bool,
    /// Every relation touched, sorted by name.
    pub relations: Vec<RelationAccess>,
    /// Every function called anywhere (function calls, aggregates, window functions, functions
    /// in FROM, CALL), as written; the `pg_catalog.` prefix is dropped (the grammar adds it to
    /// `EXTRACT`, `SUBSTRING`…, and `pg_catalog` is searched first). Sorted.
    pub functions: Vec<QualifiedName>,
    /// Sorted, without duplicates.
    pub hazards: Vec<Hazard>,
    /// Sorted, without duplicates. Not empty: refuse the statement.
    pub unresolved: Vec<Unresolved>,
    /// Names of the session's prepared statements and portals that the statement defines,
    /// runs or drops, in the order PostgreSQL applies them (see [`SessionName`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<SessionName>,
    /// Stored columns that the statement's writes make the server compare with the rows it
    /// writes or deletes (unique indexes, exclusion and check constraints, foreign keys both
    /// ways): whether the write succeeds tells the writer something of their values. Not
    /// reads (a policy need not allow the relations), but a use of the values all the same.
    /// Sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<Comparison>,
    /// An output column is named by position (`ORDER BY 2`, `GROUP BY 1`): which one it is
    /// depends on the value of a literal, so this analysis serves this text only, not every
    /// text of its shape (the [`Analyzer`](crate::Analyzer) does not share it).
    #[serde(skip)]
    pub by_position: bool,
    /// Run-time settings the statement changes (`SET`, `RESET`), with their values: policies
    /// bound some of them. An analysis with a value is not shared by shape either.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<settings::SettingChange>,
    /// Where each column of the rows the statement returns comes from, when the analysis
    /// knows them one by one (a `SELECT` or `VALUES` without `*`); `None` otherwise (every
    /// column may hold stored data). See [`outputs`]: masking leaves
    /// [`OutputOrigin::NoStoredData`] columns alone.
    #[serde(skip)]
    pub outputs: Option<Arc<[OutputOrigin]>>,
}

/// A name in the session's own namespaces that a statement defines, runs or drops.
///
/// PostgreSQL keeps, per session, one namespace of prepared statements, shared by SQL
/// (`PREPARE`, `EXECUTE`, `DEALLOCATE`) and the extended protocol (Parse, Bind, Close), and one
/// of portals, shared by cursors (`DECLARE`, `FETCH`, `MOVE`, `CLOSE`) and the protocol (Bind,
/// Execute, Close). What `EXECUTE name` or `FETCH name` runs is not in its text: a gateway must
/// know what the name holds on the server, so the analysis says which names each statement
/// touches. The shapes are the literal-free text of the defining statement alone (the
/// `PREPARE …` or `DECLARE …` of a longer text), which is what PostgreSQL reports for the name
/// (`pg_prepared_statements.statement`, `pg_cursors.statement`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionName {
    /// `PREPARE name AS …`: the statement's own analysis is what `name` will run.
    Prepare {
        name: String,
        #[serde(skip)]
        shape: Arc<StatementShape>,
    },
    /// `EXECUTE name`, also inside `EXPLAIN` and `CREATE TABLE … AS`.
    Execute { name: String },
    /// `DEALLOCATE name`; `None`: `DEALLOCATE ALL`.
    Deallocate { name: Option<String> },
    /// `DECLARE name CURSOR [WITH HOLD] FOR …`: the statement's own analysis is what `name`
    /// runs at each `FETCH`. A cursor `WITH HOLD` outlives the transaction if it commits.
    Declare {
        name: String,
        hold: bool,
        #[serde(skip)]
        shape: Arc<StatementShape>,
    },
    /// `FETCH … name` or `MOVE … name`: runs more of the portal's query.
    Fetch { name: String },
    /// `CLOSE name`; `None`: `CLOSE ALL`.
    Close { name: Option<String> },
    /// `DISCARD ALL`: drops every prepared statement and closes every portal.
    DiscardAll,
}

/// A stored column a write is compared with, and the constraint that compares it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Comparison {
    /// Schema-qualified.
    pub relation: QualifiedName,
    pub oid: Option<u32>,
    pub column: String,
    /// The constraint or unique index; `None` when the catalog does not describe the written
    /// relation's constraints, so that every column of it counts (fail closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

impl StatementAccess {
    /// The access to relation `schema.name`, if the statement touches it.
    pub fn relation(&self, schema: &str, name: &str) -> Option<&RelationAccess> {
        self.relations
            .iter()
            .find(|r| r.relation.schema.as_deref() == Some(schema) && r.relation.name == name)
    }
}

/// The access analysis of one text: one [`StatementAccess`] per statement, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Access {
    /// The text's shape (normalized text, fingerprint, commands…), shared with
    /// [`Analyzer::analyze`](crate::Analyzer::analyze).
    #[serde(skip)]
    pub shape: Arc<StatementShape>,
    pub statements: Vec<StatementAccess>,
    /// Why the text could not be analysed (PostgreSQL's parse error, redacted, or the
    /// analysis's own): then `statements` is empty and the text must be refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

impl Access {
    /// Whether the text was analysed and every name in it resolved: the precondition for
    /// allowing it. (Hazards and `EXECUTE` still need the policy's word.)
    pub fn is_complete(&self) -> bool {
        self.parse_error.is_none() && self.statements.iter().all(|s| s.unresolved.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// Dangerous functions.

/// The risk of calling a function named `name` (in any schema: a look-alike in another schema is
/// treated as the built-in, which is the safe side). The list is in [`exposure`].
pub fn function_risk(name: &str) -> Option<FunctionRisk> {
    exposure::function_risk(name)
}

/// The risk of reading relation `schema.name`: catalog relations that expose other sessions,
/// statistics values, server files or credentials, and catalog relations not yet reviewed
/// (see [`exposure`]).
pub fn relation_risk(schema: &str, name: &str) -> Option<FunctionRisk> {
    exposure::relation_risk(schema, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_sets() {
        let a = ColumnSet::Columns(vec!["id".into(), "ssn".into()]);
        let b = ColumnSet::Columns(vec!["mrn".into(), "ssn".into()]);
        assert!(a.contains("ssn") && !a.contains("mrn") && !a.is_empty() && !a.is_all());
        assert_eq!(
            a.union(&b),
            ColumnSet::Columns(vec!["id".into(), "mrn".into(), "ssn".into()])
        );
        assert_eq!(a.union(&ColumnSet::All), ColumnSet::All);
        assert!(ColumnSet::All.contains("anything"));
        assert!(ColumnSet::default().is_empty());
        let r = RelationAccess {
            relation: QualifiedName::new(Some("public"), "patients"),
            oid: Some(1),
            kind: Some(RelationKind::Table),
            read: true,
            write: true,
            ddl: false,
            read_columns: ColumnSet::Columns(vec!["id".into()]),
            write_columns: ColumnSet::Columns(vec!["phone".into()]),
            derived_columns: ColumnSet::default(),
        };
        assert!(r.uses_column("id") && r.uses_column("phone") && !r.uses_column("ssn"));
        assert_eq!(
            r.columns(),
            ColumnSet::Columns(vec!["id".into(), "phone".into()])
        );
    }

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
            Unresolved::Column("p.ssn".into()).to_string(),
            "column p.ssn"
        );
    }

    #[test]
    fn dangerous_functions() {
        use FunctionRisk as R;
        for (name, risk) in [
            ("pg_read_file", Some(R::FileSystem)),
            ("lo_export", Some(R::FileSystem)),
            ("lo_get", Some(R::LargeObject)),
            ("dblink_connect_u", Some(R::RemoteDatabase)),
            ("pg_terminate_backend", Some(R::ServerControl)),
            ("pg_stat_reset_shared", Some(R::ServerControl)),
            ("set_config", Some(R::Configuration)),
            ("query_to_xml", Some(R::DynamicSql)),
            ("pg_logical_slot_peek_changes", Some(R::Replication)),
            ("pg_create_logical_replication_slot", Some(R::Replication)),
            ("pg_notify", Some(R::Notification)),
            ("pg_stat_get_activity", Some(R::OtherSessions)),
            ("lower", None),
            ("current_setting", None),
            ("nextval", None),
        ] {
            assert_eq!(function_risk(name), risk, "{name}");
        }
    }

    /// The serde form, for the audit trail and policy explanations.
    #[test]
    fn serializes_compactly() {
        let s = StatementAccess {
            command: "SELECT".into(),
            class: CommandClass::CopyOut,
            plan_only: false,
            relations: vec![RelationAccess {
                relation: QualifiedName::new(Some("public"), "patients"),
                oid: Some(16400),
                kind: Some(RelationKind::Table),
                read: true,
                write: false,
                ddl: false,
                read_columns: ColumnSet::All,
                write_columns: ColumnSet::default(),
                derived_columns: ColumnSet::default(),
            }],
            functions: vec![QualifiedName::new(None, "lower")],
            hazards: vec![
                Hazard::CopyFile,
                Hazard::Function {
                    name: QualifiedName::new(None, "pg_read_file"),
                    risk: FunctionRisk::FileSystem,
                },
            ],
            unresolved: vec![Unresolved::Column("nosuch".into())],
            names: Vec::new(),
            compared: Vec::new(),
            by_position: false,
            settings: Vec::new(),
            outputs: None,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"command":"SELECT","class":"copy_out","plan_only":false,"relations":[{"relation":{"schema":"public","name":"patients"},"oid":16400,"kind":"table","read":true,"write":false,"ddl":false,"read_columns":"*","write_columns":[]}],"functions":[{"name":"lower"}],"hazards":[{"hazard":"copy_file"},{"hazard":"function","name":{"name":"pg_read_file"},"risk":"file_system"}],"unresolved":[{"unresolved":"column","name":"nosuch"}]}"#
        );
        for c in [
            CommandClass::Read,
            CommandClass::Write,
            CommandClass::Ddl,
            CommandClass::CopyIn,
            CommandClass::CopyOut,
            CommandClass::Transaction,
            CommandClass::Session,
            CommandClass::Function,
            CommandClass::Utility,
            CommandClass::Other,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
