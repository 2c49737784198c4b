//! Access analysis: for each statement of a text, the relations and columns it reads and
//! writes, the functions it calls, and the constructs a least-privilege policy must allow by
//! name ([`Hazard`]s), resolved against a [`Catalog`](crate::Catalog). Pure: no I/O, no policy.
//!
//! Made by [`Analyzer::access`](crate::Analyzer::access) from PostgreSQL's own parse tree. What
//! it cannot resolve it lists in [`StatementAccess::unresolved`], and callers refuse such
//! statements: the analysis over-approximates (counts a column against every relation it may
//! belong to) but never guesses in the permissive direction.
//!
//! The model it fills in is `vigil-access`'s, dialect-neutral (re-exported here: [`Access`],
//! [`StatementAccess`], [`Hazard`]…); this module is PostgreSQL's side of it: the walk over the
//! parse tree (`walk`), PostgreSQL's construct for each hazard kind ([`hazards`]), the
//! functions and catalog relations that reach past a grant ([`exposure`], which also fills
//! [`RelationAccess::exposure`]), the settings a `SET` changes and which are protected
//! ([`settings`]), and which result columns carry nothing stored ([`outputs`]).
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
//!   the statement: class of that statement, hazard `explain_analyze`
//!   ([`HazardKind::RunsExplainedStatement`]).
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

pub mod exposure;
pub mod hazards;
mod names;
pub mod outputs;
pub mod settings;
mod walk;

pub(crate) use names::session_names;
pub use outputs::OutputOrigin;
pub use vigil_access::{
    Access, ColumnSet, CommandClass, Comparison, Construct, FunctionRisk, Hazard, HazardKind,
    QualifiedName, RelationAccess, SessionName, StatementAccess, Unresolved,
};
pub(crate) use walk::statement_access;

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
}
