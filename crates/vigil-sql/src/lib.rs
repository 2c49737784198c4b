//! # vigil-sql
//!
//! PostgreSQL's grammar for Vigil: what Vigil knows of a PostgreSQL statement's text, computed
//! without running it, in the terms of `vigil-access`'s dialect-neutral model:
//!
//! - [`normalize()`]: the text with every literal replaced by a placeholder (`$1`, `$2`…), comments
//!   dropped and whitespace collapsed — the form the audit trail stores, so that no value (PHI)
//!   is ever kept in clear — and a [`Normalized::shape_hash`] under which texts that differ
//!   only in their literals meet. A hand-written scanner of PostgreSQL's lexical grammar: the hot
//!   path, well under a microsecond for a short statement.
//! - [`fingerprint()`]: the stable hex identity of a normalized text (an export field).
//! - [`Analyzer`]: for each text, a shared [`StatementShape`]: normalized text, fingerprint,
//!   command tag and class of each statement (`SELECT`/`read`, `COPY`/`copy_out`…), and the
//!   relations it names, from PostgreSQL's own parser (`pg_query`), cached by shape and by
//!   exact text.
//! - [`Analyzer::access`]: for each statement, an [`access`] analysis against a [`Catalog`]
//!   supplied by the gateway: every relation and column read or written (through CTEs,
//!   subqueries, joins, `*` and whole-row references), every function called, the constructs a
//!   least-privilege policy must allow by name ([`Hazard`]s, each a neutral [`HazardKind`] with
//!   PostgreSQL's construct as detail: `do_block`, `copy_program`, `set_role`, a `function`
//!   such as `pg_read_file`…), and what could not be resolved ([`Unresolved`]: refuse). Cached
//!   like the shape, under the catalog's version.
//! - [`catalog`]: PostgreSQL's catalog query and [`StaticCatalog`], which resolves names as
//!   PostgreSQL does.
//!
//! The model itself ([`Access`], [`StatementAccess`], [`ColumnSet`], [`CommandClass`],
//! [`Hazard`], the [`Catalog`] trait…) is `vigil-access`'s, re-exported here at the paths it
//! had before it moved: policy and approvals depend on `vigil-access` alone, never on this
//! crate or libpg_query. A second dialect (MySQL) produces the same model from its own grammar.
//!
//! This crate does no I/O and keeps no state but its caches. It never logs, and nothing it
//! returns holds a literal of the text: parse errors from PostgreSQL, which quote the text near
//! the error, are redacted. It does not decide anything: policy reads the shape.
//!
//! ## Command classes
//!
//! One per statement, for least-privilege policy. Where PostgreSQL's own `log_statement`
//! classification looks through a statement, so does this one; where a statement needs two
//! privileges, the stronger class wins.
//!
//! | class | statements |
//! | --- | --- |
//! | `read` | SELECT, VALUES, TABLE, EXPLAIN without ANALYZE, DECLARE/FETCH/MOVE of a read |
//! | `write` | INSERT, UPDATE, DELETE, MERGE, TRUNCATE; a SELECT with a data-modifying CTE or `FOR UPDATE/SHARE` (PostgreSQL asks UPDATE privilege for it); `COPY (DELETE … RETURNING) TO` |
//! | `ddl` | CREATE/ALTER/DROP of anything, GRANT/REVOKE, COMMENT, SECURITY LABEL, CLUSTER, REFRESH MATERIALIZED VIEW, ALTER SYSTEM, CREATE TABLE AS and `SELECT … INTO` (both create a table) |
//! | `copy_in` / `copy_out` | `COPY … FROM` / `COPY … TO` (table or query) |
//! | `transaction` | BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED, SET CONSTRAINTS |
//! | `session` | SET (including SET ROLE), RESET, SHOW, DISCARD, DEALLOCATE, CLOSE |
//! | `function` | DO, CALL |
//! | `utility` | LISTEN, NOTIFY, UNLISTEN, VACUUM, ANALYZE, CHECKPOINT, REINDEX, LOCK, LOAD |
//! | `other` | EXECUTE (it runs what the session prepared: classify it by that PREPARE), anything unknown |
//!
//! EXPLAIN with an ANALYZE option runs its statement and takes that statement's class, whatever
//! the option's value (`EXPLAIN (ANALYZE 0) DELETE …` is `write`): the value is a literal, and one
//! analysis serves all texts of a shape. PREPARE takes the class of the statement it prepares.
//!
//! ## What the analysis cannot see
//!
//! Functions: `SELECT f()` is `read` whatever `f` does, and the relations a function body (or a
//! DO block, a view, a rule, a trigger) touches are not in `objects` nor in the access analysis
//! (which lists the function, and DO and CREATE FUNCTION as hazards, for policy to allow by
//! name). `objects` are names as the parser resolves their spelling (unquoted names folded to
//! lower case, quoted when not plain), qualified only when the text qualifies them:
//! `search_path` decides the rest at run time; the access analysis resolves them through its
//! catalog. See [`access`] for its rules and limits.

//! ```
//! use vigil_sql::{normalize, Analyzer, LexOptions};
//!
//! let opts = LexOptions::default();
//! let n = normalize("SELECT name FROM patients WHERE ssn = '123-45-6789' -- lookup", opts);
//! assert_eq!(n.text, "SELECT name FROM patients WHERE ssn = $1");
//!
//! let analyzer = Analyzer::new(10_000);
//! let shape = analyzer.analyze("UPDATE public.patients SET seen = now() WHERE id = 42", opts);
//! assert_eq!(shape.commands, ["UPDATE"]);
//! assert_eq!(shape.command_classes, ["write"]);
//! assert_eq!(shape.objects, ["public.patients"]);
//! assert_eq!(shape.text, "UPDATE public.patients SET seen = now() WHERE id = $1");
//!
//! use vigil_sql::{CatalogRow, ColumnSet, StaticCatalog};
//! let rows = ["id", "name", "ssn"].iter().zip(1..).map(|(c, n)| {
//!     CatalogRow::new(16400, "public", "patients", 'r', Some((c.to_string(), n)))
//! });
//! let catalog = StaticCatalog::from_rows(rows, vec!["public".into()]);
//! let access = analyzer.access("SELECT name FROM patients p WHERE p.ssn = '1'", opts, &catalog);
//! let patients = access.statements[0].relation("public", "patients").unwrap();
//! assert_eq!(patients.read_columns, ColumnSet::Columns(vec!["name".into(), "ssn".into()]));
//! assert!(access.is_complete());
//! ```
//!
//! [`StatementShape`]: vigil_core::event::StatementShape

pub mod access;
mod analyze;
pub mod catalog;
mod lex;
mod normalize;
mod redact;
mod tree;

// The neutral model, at the paths it had when it lived here (vigil-pg and the binary use them).
pub use access::{
    Access, ColumnSet, CommandClass, Comparison, Construct, FunctionRisk, Hazard, HazardKind,
    OutputOrigin, QualifiedName, RelationAccess, SessionName, StatementAccess, Unresolved,
};
pub use analyze::{Analyzer, CacheStats};
pub use catalog::{
    Catalog, CatalogRow, ColumnInfo, Constraint, ConstraintKind, RelationInfo, RelationKind,
    StaticCatalog,
};
pub use lex::LexOptions;
pub use normalize::{fingerprint, normalize, Normalized};
