//! The shared analyzer: normalization, PostgreSQL's parser, and bounded caches.
//!
//! Just over 1,000 lines with its tests: the caches' key types live beside the one analyzer
//! that builds and reads them.

use crate::access::{self, Access, StatementAccess};
use crate::catalog::Catalog;
use crate::lex::{self, LexOptions};
use crate::normalize::{fingerprint, normalize, Normalized};
use crate::redact::redact_message;
use crate::tree;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use vigil_core::event::StatementShape;

/// Why a text could not be analysed. Its `Display` is what [`StatementShape::parse_error`]
/// holds (after redaction, for PostgreSQL's own messages).
#[derive(Debug, thiserror::Error)]
enum AnalyzeError {
    /// PostgreSQL's parser rejected the text; its message, not yet redacted.
    #[error("{0}")]
    Syntax(String),
    #[error("statement text contains a NUL byte, which PostgreSQL does not accept")]
    NulByte,
    /// Refused before parsing: see [`MAX_NESTING`].
    #[error("statement nests too deeply for Vigil to analyse (more than {MAX_NESTING} levels of operators, brackets, joins or set operations); split or simplify it")]
    TooDeep,
    #[error("internal error while analysing the statement (pg_query: {0})")]
    Internal(String),
}

/// Counters of [`Analyzer::analyze`] outcomes since the analyzer was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from the exact-text cache, without normalizing.
    pub exact_hits: u64,
    /// Normalized, then answered from the shape cache.
    pub shape_hits: u64,
    /// Parsed with PostgreSQL's parser.
    pub misses: u64,
}

/// Analyses statement texts into shared [`StatementShape`]s, caching by exact text and by shape.
///
/// One analyzer serves every session (`Send + Sync`). Both caches are bounded: `capacity`
/// weight units each, where an entry weighs 1 plus 1 per KiB of its texts (so a unit holds at
/// most ~1.5 KiB, overhead included), evicted by S3-FIFO (`quick_cache`).
///
/// - The **shape cache** is keyed by the normalized text (and literal kinds): `… WHERE aid = 1`
///   and `… WHERE aid = 2` share one entry and one parse. Texts that fail to parse are never
///   shared this way, so one odd literal cannot make a whole shape fail for everyone.
/// - The **exact-text cache** answers a text seen before with one hash lookup. It only holds
///   texts that have no literal and no comment (prepared statements with `$n`, `BEGIN`…): those
///   repeat, and keeping them holds no value in memory; texts with literals rarely repeat
///   exactly and would only churn it.
///
/// [`Analyzer::access`] has two caches of its own, alike but keyed also by the catalog's
/// [`Catalog::version`]; an analysis that depends on a literal (an output column named by
/// position, [`StatementAccess::by_position`]) is not shared by shape.
pub struct Analyzer {
    exact: Cache<ExactKey, Arc<StatementShape>, EntryWeight>,
    shapes: Cache<ShapeKey, Arc<StatementShape>, EntryWeight>,
    exact_hits: AtomicU64,
    shape_hits: AtomicU64,
    misses: AtomicU64,
    access_exact: Cache<AccessExactKey, Arc<Access>, EntryWeight>,
    access_shapes: Cache<AccessShapeKey, Arc<Access>, EntryWeight>,
    access_exact_hits: AtomicU64,
    access_shape_hits: AtomicU64,
    access_misses: AtomicU64,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("exact_entries", &self.exact.len())
            .field("shape_entries", &self.shapes.len())
            .field("stats", &self.stats())
            .field("access_exact_entries", &self.access_exact.len())
            .field("access_shape_entries", &self.access_shapes.len())
            .field("access_stats", &self.access_stats())
            .finish()
    }
}

impl Analyzer {
    /// An analyzer whose caches hold up to `capacity` weight units each (see [`Analyzer`]):
    /// 10 000 means about 10 000 statements of usual size, and 30 MiB at the very most per
    /// cache (the access caches are empty until [`Analyzer::access`] is used).
    /// An analyzer whose caches together hold about `mib` MiB (entries are weighed by an
    /// estimate of their size, at least 1 KiB each).
    pub fn with_memory(mib: usize) -> Self {
        // Four caches share the budget; the weight unit is 1 KiB.
        Self::new((mib.max(1) * 1024 / 4).max(1))
    }

    /// An analyzer whose four caches each hold `capacity` weight units (1 per entry plus 1 per
    /// KiB it holds).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        macro_rules! cache {
            () => {
                Cache::with_weighter(capacity, capacity as u64, EntryWeight)
            };
        }
        Analyzer {
            exact: cache!(),
            shapes: cache!(),
            exact_hits: AtomicU64::new(0),
            shape_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            access_exact: cache!(),
            access_shapes: cache!(),
            access_exact_hits: AtomicU64::new(0),
            access_shape_hits: AtomicU64::new(0),
            access_misses: AtomicU64::new(0),
        }
    }

    /// The shape of `sql`: normalized text, fingerprint, command tag and class of each statement,
    /// relations named. Never fails: a text PostgreSQL cannot parse gets `parse_error` set and no
    /// commands (callers deny it). `opts` must be the session's settings (see [`LexOptions`]).
    pub fn analyze(&self, sql: &str, opts: LexOptions) -> Arc<StatementShape> {
        let scs = opts.standard_conforming_strings;
        if let Some(shape) = self.exact.get(&ExactRef { scs, text: sql }) {
            self.exact_hits.fetch_add(1, Relaxed);
            return shape;
        }
        let n = normalize(sql, opts);
        // An unterminated text never parses; its placeholder may hide anything.
        if !n.unterminated {
            let key = ShapeRef {
                hash: n.shape_hash,
                text: &n.text,
            };
            if let Some(shape) = self.shapes.get(&key) {
                self.shape_hits.fetch_add(1, Relaxed);
                self.remember_exact(sql, scs, &n, &shape);
                return shape;
            }
        }
        self.misses.fetch_add(1, Relaxed);
        let verbatim = n.is_verbatim();
        let shape_hash = n.shape_hash;
        let shape = Arc::new(parse_shape(sql, opts, n));
        if shape.parse_error.is_none() {
            self.shapes
                .insert(ShapeKey(shape_hash, Arc::clone(&shape)), Arc::clone(&shape));
        }
        if verbatim {
            self.exact.insert(
                ExactKey {
                    scs,
                    text: sql.into(),
                },
                Arc::clone(&shape),
            );
        }
        shape
    }

    /// What each statement of `sql` reads, writes, calls and needs allowed by name (see
    /// [`access`](crate::access)), resolved against `catalog`, with the text's shape. Never
    /// fails: a text that cannot be analysed gets `parse_error` set and no statements (callers
    /// refuse it), and names that do not resolve are listed in each statement's `unresolved`.
    ///
    /// Cached like [`Analyzer::analyze`] (by exact text for texts without literals or comments,
    /// else by shape), under the catalog's [`Catalog::version`]: a hit costs what an `analyze`
    /// hit costs. `opts` must be the session's settings.
    pub fn access(&self, sql: &str, opts: LexOptions, catalog: &dyn Catalog) -> Arc<Access> {
        let scs = opts.standard_conforming_strings;
        let version = catalog.version();
        if let Some(found) = self.access_exact.get(&AccessExactRef {
            scs,
            version,
            text: sql,
        }) {
            self.access_exact_hits.fetch_add(1, Relaxed);
            return found;
        }
        let n = normalize(sql, opts);
        if !n.unterminated {
            let key = AccessShapeRef {
                hash: n.shape_hash,
                version,
                text: &n.text,
            };
            if let Some(found) = self.access_shapes.get(&key) {
                self.access_shape_hits.fetch_add(1, Relaxed);
                if n.is_verbatim() {
                    self.remember_access_exact(sql, scs, version, &found);
                }
                return found;
            }
        }
        self.access_misses.fetch_add(1, Relaxed);
        let verbatim = n.is_verbatim();
        let shape_hash = n.shape_hash;
        let known = if n.unterminated {
            None
        } else {
            self.shapes.get(&ShapeRef {
                hash: shape_hash,
                text: &n.text,
            })
        };
        let found = Arc::new(parse_access(sql, opts, n, catalog, known));
        if found.parse_error.is_none() {
            self.shapes.insert(
                ShapeKey(shape_hash, Arc::clone(&found.shape)),
                Arc::clone(&found.shape),
            );
            // `ORDER BY 1` and `ORDER BY 2` share a shape but not an analysis.
            // `SET statement_timeout = 0` and `= 1000` too.
            if !found
                .statements
                .iter()
                .any(|s| s.by_position || !s.settings.is_empty())
            {
                self.access_shapes.insert(
                    AccessShapeKey(shape_hash, version, Arc::clone(&found)),
                    Arc::clone(&found),
                );
            }
        }
        if verbatim {
            self.remember_access_exact(sql, scs, version, &found);
        }
        found
    }

    fn remember_access_exact(&self, sql: &str, scs: bool, version: u64, found: &Arc<Access>) {
        self.access_exact.insert(
            AccessExactKey {
                scs,
                version,
                text: sql.into(),
            },
            Arc::clone(found),
        );
    }

    /// Hit and miss counts of [`Analyzer::access`] so far.
    pub fn access_stats(&self) -> CacheStats {
        CacheStats {
            exact_hits: self.access_exact_hits.load(Relaxed),
            shape_hits: self.access_shape_hits.load(Relaxed),
            misses: self.access_misses.load(Relaxed),
        }
    }

    /// Hit and miss counts of [`Analyzer::analyze`] so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            exact_hits: self.exact_hits.load(Relaxed),
            shape_hits: self.shape_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
        }
    }

    fn remember_exact(&self, sql: &str, scs: bool, n: &Normalized, shape: &Arc<StatementShape>) {
        if n.is_verbatim() {
            self.exact.insert(
                ExactKey {
                    scs,
                    text: sql.into(),
                },
                Arc::clone(shape),
            );
        }
    }
}

/// Parses `sql` (the original text: its normalized form need not parse, e.g. `interval $1`) and
/// builds its shape around the normalized text `n`.
fn parse_shape(sql: &str, opts: LexOptions, n: Normalized) -> StatementShape {
    let fingerprint = fingerprint(&n.text);
    let mut shape = StatementShape {
        text: n.text,
        fingerprint,
        commands: Vec::new(),
        command_classes: Vec::new(),
        objects: Vec::new(),
        parse_error: None,
    };
    match describe(sql, opts) {
        Ok((statements, objects)) => {
            for s in statements {
                shape.commands.push(s.command);
                shape.command_classes.push(s.class.as_str().to_owned());
            }
            shape.objects = objects.into_iter().collect();
        }
        Err(AnalyzeError::Syntax(msg)) => {
            shape.parse_error = Some(redact_message(&msg, sql, opts));
        }
        Err(e) => shape.parse_error = Some(e.to_string()),
    }
    shape
}

type Described = (Vec<tree::StatementInfo>, BTreeSet<String>);

/// Parses `sql` once for both its shape (around the normalized text `n`; `known` when the
/// shape cache has it already) and its access analysis against `catalog`.
fn parse_access(
    sql: &str,
    opts: LexOptions,
    n: Normalized,
    catalog: &dyn Catalog,
    known: Option<Arc<StatementShape>>,
) -> Access {
    let fingerprint = fingerprint(&n.text);
    let mut shape = StatementShape {
        text: n.text,
        fingerprint,
        commands: Vec::new(),
        command_classes: Vec::new(),
        objects: Vec::new(),
        parse_error: None,
    };
    let described = parse_with(sql, opts, |text, parsed| {
        let mut objects = BTreeSet::new();
        let mut infos = Vec::new();
        let mut accesses: Vec<StatementAccess> = Vec::new();
        // Later statements see the tables earlier ones create, as the server will.
        let mut seen = crate::catalog::TextCatalog::new(catalog);
        let mut path_changed = false;
        for raw in &parsed.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
                continue;
            };
            let info = tree::describe(node, &mut objects)
                .map_err(|e| AnalyzeError::Internal(e.to_string()))?;
            let mut statement =
                access::statement_access(node, info.command.clone(), info.class, text, &seen);
            // After a search path change the schema a CREATE lands in is not known for certain;
            // set_config() and code (DO, CALL) can change it without a SET.
            if statement.hazards.iter().any(|h| {
                matches!(
                    h.kind,
                    crate::HazardKind::RedirectsNames
                        | crate::HazardKind::RunsInlineCode { .. }
                        | crate::HazardKind::CallsProcedure { .. }
                )
            }) || statement.functions.iter().any(|f| f.name == "set_config")
            {
                path_changed = true;
            }
            if let (pg_query::protobuf::node::Node::CreateStmt(c), false) = (node, path_changed) {
                seen.created_by(c);
            }
            if info.class == crate::CommandClass::Ddl {
                seen.ddl_ran();
            }
            statement.names = access::session_names(
                node,
                statement_text(text, raw.stmt_location, raw.stmt_len),
                &info.command,
                info.class.as_str(),
            );
            accesses.push(statement);
            infos.push(info);
        }
        Ok(((infos, objects), accesses))
    });
    let (statements, parse_error) = match described {
        Ok(((infos, objects), accesses)) => {
            for s in infos {
                shape.commands.push(s.command);
                shape.command_classes.push(s.class.as_str().to_owned());
            }
            shape.objects = objects.into_iter().collect();
            (accesses, None)
        }
        Err(AnalyzeError::Syntax(msg)) => (Vec::new(), Some(redact_message(&msg, sql, opts))),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    shape.parse_error.clone_from(&parse_error);
    let shape = match known {
        Some(known) if *known == shape => known,
        _ => Arc::new(shape),
    };
    Access {
        shape,
        statements,
        parse_error,
    }
}

/// Texts whose [`lex::nesting_estimate`] exceeds this are refused unparsed: libpg_query turns
/// its tree into protobuf by unchecked recursion, and so do the decoding, the walk and the drop
/// of the tree on our side. `a + b + …` with 1 000 terms, or 200 joins, are still accepted.
const MAX_NESTING: usize = 2_000;

/// Stack needed to parse and walk a tree: a base plus so much per unit of nesting estimate
/// (measured: up to ~6 KiB per level in release builds, ~80 KiB in debug builds of prost).
const STACK_BASE: usize = 256 << 10;
const STACK_PER_UNIT: usize = if cfg!(debug_assertions) {
    96 << 10
} else {
    8 << 10
};

fn describe(sql: &str, opts: LexOptions) -> Result<Described, AnalyzeError> {
    parse_with(sql, opts, |_, parsed| {
        let mut objects = BTreeSet::new();
        let statements = parsed
            .stmts
            .iter()
            .filter_map(|raw| raw.stmt.as_ref()?.node.as_ref())
            .map(|node| tree::describe(node, &mut objects))
            .collect::<Result<_, _>>()
            .map_err(|e| AnalyzeError::Internal(e.to_string()))?;
        Ok((statements, objects))
    })
}

/// One statement's text within the text the parser read (`len` 0: the rest of it).
fn statement_text(text: &str, location: i32, len: i32) -> &str {
    let start = usize::try_from(location).unwrap_or(0).min(text.len());
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => text.len(),
        Ok(len) => start.saturating_add(len).min(text.len()),
    };
    text.get(start..end).unwrap_or(text)
}

/// Parses `sql` with PostgreSQL's parser and runs `walk` over the tree (with the text the parser
/// was given, which its locations index), guarding against deep nesting and panics.
fn parse_with<R>(
    sql: &str,
    opts: LexOptions,
    walk: impl FnOnce(&str, &pg_query::protobuf::ParseResult) -> Result<R, AnalyzeError>,
) -> Result<R, AnalyzeError> {
    if sql.contains('\0') {
        return Err(AnalyzeError::NulByte);
    }
    let text = lex::parse_text(sql, opts);
    let text: &str = &text;
    let nesting = lex::nesting_estimate(text, opts);
    if nesting > MAX_NESTING {
        return Err(AnalyzeError::TooDeep);
    }
    // Fail closed on a panic anywhere in pg_query or the walk: the statement is then unparseable.
    let parse = || -> Result<R, AnalyzeError> {
        let parsed = pg_query::parse(text).map_err(|e| match e {
            pg_query::Error::Parse(msg) => AnalyzeError::Syntax(msg),
            other @ pg_query::Error::Decode(_) => AnalyzeError::Internal(other.to_string()),
            pg_query::Error::Conversion(_) => AnalyzeError::NulByte,
            other => AnalyzeError::Internal(other.to_string()),
        })?;
        walk(text, &parsed.protobuf)
    };
    // Parse on this stack when it has room (nearly always), else on a new one mapped for the
    // purpose (the caller may be a runtime worker with 2 MiB). stacker carries a panic back.
    let stack = STACK_BASE + nesting * STACK_PER_UNIT;
    catch_unwind(AssertUnwindSafe(|| {
        stacker::maybe_grow(stack, stack, parse)
    }))
    .unwrap_or_else(|_| Err(AnalyzeError::Internal("panic".to_owned())))
}

/// Key of the exact-text cache.
#[derive(PartialEq, Eq, Hash)]
struct ExactKey {
    scs: bool,
    text: Box<str>,
}

/// Borrowed form of [`ExactKey`] for lookups without allocating; hashes identically.
#[derive(Hash)]
struct ExactRef<'a> {
    scs: bool,
    text: &'a str,
}

impl Equivalent<ExactKey> for ExactRef<'_> {
    fn equivalent(&self, key: &ExactKey) -> bool {
        self.scs == key.scs && self.text == &*key.text
    }
}

/// Key of the shape cache: the shape hash and the normalized text, which the shape itself holds.
/// The text is compared in full: the shape hash is not collision-resistant and clients choose
/// the texts.
struct ShapeKey(u64, Arc<StatementShape>);

impl PartialEq for ShapeKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.1.text == other.1.text
    }
}

impl Eq for ShapeKey {}

impl Hash for ShapeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        ShapeRef {
            hash: self.0,
            text: &self.1.text,
        }
        .hash(state);
    }
}

#[derive(Hash)]
struct ShapeRef<'a> {
    hash: u64,
    text: &'a str,
}

impl Equivalent<ShapeKey> for ShapeRef<'_> {
    fn equivalent(&self, key: &ShapeKey) -> bool {
        self.hash == key.0 && self.text == key.1.text
    }
}

/// Key of the access exact-text cache.
#[derive(PartialEq, Eq, Hash)]
struct AccessExactKey {
    scs: bool,
    version: u64,
    text: Box<str>,
}

#[derive(Hash)]
struct AccessExactRef<'a> {
    scs: bool,
    version: u64,
    text: &'a str,
}

impl Equivalent<AccessExactKey> for AccessExactRef<'_> {
    fn equivalent(&self, key: &AccessExactKey) -> bool {
        self.scs == key.scs && self.version == key.version && self.text == &*key.text
    }
}

/// Key of the access shape cache: shape hash, catalog version, and the normalized text (held by
/// the access's shape, compared in full).
struct AccessShapeKey(u64, u64, Arc<Access>);

impl PartialEq for AccessShapeKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.1 == other.1 && self.2.shape.text == other.2.shape.text
    }
}

impl Eq for AccessShapeKey {}

impl Hash for AccessShapeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        AccessShapeRef {
            hash: self.0,
            version: self.1,
            text: &self.2.shape.text,
        }
        .hash(state);
    }
}

#[derive(Hash)]
struct AccessShapeRef<'a> {
    hash: u64,
    version: u64,
    text: &'a str,
}

impl Equivalent<AccessShapeKey> for AccessShapeRef<'_> {
    fn equivalent(&self, key: &AccessShapeKey) -> bool {
        self.hash == key.0 && self.version == key.1 && self.text == key.2.shape.text
    }
}

fn access_weight(key_len: usize, a: &Access) -> u64 {
    let names: usize = a
        .statements
        .iter()
        .map(|s| {
            let rels: usize = s
                .relations
                .iter()
                .map(|r| {
                    let cols = |c: &access::ColumnSet| match c {
                        access::ColumnSet::All => 0,
                        access::ColumnSet::Columns(c) => c.iter().map(|c| c.len() + 24).sum(),
                    };
                    r.relation.name.len() + 96 + cols(&r.read_columns) + cols(&r.write_columns)
                })
                .sum();
            let funcs: usize = s.functions.iter().map(|f| f.name.len() + 48).sum();
            rels + funcs + 64 * (s.hazards.len() + s.unresolved.len()) + 128
        })
        .sum();
    1 + ((key_len + a.shape.text.len() + names) / 1024) as u64
}

impl Weighter<AccessExactKey, Arc<Access>> for EntryWeight {
    fn weight(&self, key: &AccessExactKey, a: &Arc<Access>) -> u64 {
        access_weight(key.text.len(), a)
    }
}

impl Weighter<AccessShapeKey, Arc<Access>> for EntryWeight {
    fn weight(&self, _key: &AccessShapeKey, a: &Arc<Access>) -> u64 {
        access_weight(0, a)
    }
}

/// 1 per entry plus 1 per KiB of text held, so that `capacity` bounds memory, not only entries.
#[derive(Clone)]
struct EntryWeight;

fn weight(key_len: usize, shape: &StatementShape) -> u64 {
    let objects: usize = shape.objects.iter().map(String::len).sum();
    1 + ((key_len + shape.text.len() + objects) / 1024) as u64
}

impl Weighter<ExactKey, Arc<StatementShape>> for EntryWeight {
    fn weight(&self, key: &ExactKey, shape: &Arc<StatementShape>) -> u64 {
        weight(key.text.len(), shape)
    }
}

impl Weighter<ShapeKey, Arc<StatementShape>> for EntryWeight {
    fn weight(&self, _key: &ShapeKey, shape: &Arc<StatementShape>) -> u64 {
        weight(0, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: LexOptions = LexOptions {
        standard_conforming_strings: true,
    };
    const OFF: LexOptions = LexOptions {
        standard_conforming_strings: false,
    };

    /// (text, commands, classes, objects)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );
    const CASES: &[Case] = &[
        ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", &["SELECT"], &["read"], &["pgbench_accounts"]),
        // Joins, subqueries, set operations, schema-qualified and quoted names.
        (
            "SELECT * FROM a JOIN s.b ON a.id = b.id LEFT JOIN (SELECT * FROM c) x ON true \
             WHERE EXISTS (SELECT 1 FROM d WHERE d.x IN (SELECT y FROM e))",
            &["SELECT"], &["read"], &["a", "c", "d", "e", "s.b"],
        ),
        (
            "SELECT * FROM a UNION SELECT * FROM b EXCEPT (SELECT * FROM cat.s.c) INTERSECT TABLE d",
            &["SELECT"], &["read"], &["a", "b", "cat.s.c", "d"],
        ),
        (
            "SELECT * FROM \"Weird.Name\", \"public\".\"Mixed\", Public.LOWER",
            &["SELECT"], &["read"], &["\"Weird.Name\"", "public.\"Mixed\"", "public.lower"],
        ),
        // CTE bodies count, CTE names do not; a non-recursive CTE's own name in its body is the table.
        (
            "WITH t AS (SELECT * FROM t), u AS (SELECT * FROM t JOIN v USING (id)) SELECT * FROM u, t",
            &["SELECT"], &["read"], &["t", "v"],
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
            &["SELECT"], &["read"], &[],
        ),
        (
            "WITH x AS (SELECT 1) SELECT * FROM s.x, (WITH y AS (SELECT * FROM x) SELECT * FROM y) z",
            &["SELECT"], &["read"], &["s.x"],
        ),
        // A data-modifying CTE makes the SELECT a write; DML targets are tables even if a CTE has the name.
        (
            "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
            &["SELECT"], &["write"], &["t"],
        ),
        (
            "WITH t AS (SELECT 1 AS id) INSERT INTO t SELECT id FROM t",
            &["INSERT"], &["write"], &["t"],
        ),
        ("SELECT * FROM a FOR UPDATE", &["SELECT"], &["write"], &["a"]),
        ("SELECT * INTO newt FROM old", &["SELECT INTO"], &["ddl"], &["newt", "old"]),
        ("CREATE TABLE t2 AS SELECT * FROM t1", &["CREATE TABLE AS"], &["ddl"], &["t1", "t2"]),
        ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", &["CREATE MATERIALIZED VIEW"], &["ddl"], &["mv", "t"]),
        // DML: INSERT…SELECT, RETURNING, UPDATE…FROM, DELETE…USING, MERGE, ON CONFLICT.
        (
            "INSERT INTO t (a) SELECT x FROM u RETURNING (SELECT max(id) FROM v)",
            &["INSERT"], &["write"], &["t", "u", "v"],
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET n = (SELECT n FROM c)",
            &["INSERT"], &["write"], &["c", "t"],
        ),
        ("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", &["UPDATE"], &["write"], &["t", "u"]),
        ("DELETE FROM ONLY t USING u WHERE t.id = u.id RETURNING *", &["DELETE"], &["write"], &["t", "u"]),
        (
            "MERGE INTO t USING (SELECT * FROM s) src ON t.id = src.id \
             WHEN MATCHED THEN UPDATE SET a = src.a WHEN NOT MATCHED THEN INSERT VALUES (src.id)",
            &["MERGE"], &["write"], &["s", "t"],
        ),
        ("TRUNCATE a, s.b", &["TRUNCATE TABLE"], &["write"], &["a", "s.b"]),
        // COPY, table and query forms.
        ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", &["COPY"], &["copy_in"], &["t"]),
        ("COPY t TO STDOUT", &["COPY"], &["copy_out"], &["t"]),
        ("COPY (SELECT * FROM t JOIN u USING (id)) TO STDOUT", &["COPY"], &["copy_out"], &["t", "u"]),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", &["COPY"], &["write"], &["t"]),
        // EXPLAIN runs its statement only with ANALYZE (any value of it counts: see tree.rs).
        ("EXPLAIN SELECT * FROM t", &["EXPLAIN"], &["read"], &["t"]),
        ("EXPLAIN DELETE FROM t", &["EXPLAIN"], &["read"], &["t"]),
        ("EXPLAIN ANALYZE DELETE FROM t", &["EXPLAIN"], &["write"], &["t"]),
        ("EXPLAIN (ANALYZE 0, FORMAT JSON) DELETE FROM t", &["EXPLAIN"], &["write"], &["t"]),
        ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", &["EXPLAIN"], &["ddl"], &["x"]),
        // PREPARE looks through to its statement; EXECUTE cannot.
        (
            "PREPARE p (int) AS DELETE FROM t WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
            &["PREPARE", "EXECUTE", "DEALLOCATE"], &["write", "other", "session"], &["t"],
        ),
        (
            "DECLARE c CURSOR FOR SELECT * FROM t; FETCH 10 FROM c; MOVE c; CLOSE c; CLOSE ALL",
            &["DECLARE CURSOR", "FETCH", "MOVE", "CLOSE CURSOR", "CLOSE CURSOR ALL"],
            &["read", "read", "read", "session", "session"], &["t"],
        ),
        // Transactions and session settings.
        (
            "BEGIN; START TRANSACTION READ ONLY; SAVEPOINT s; RELEASE s; ROLLBACK TO s; COMMIT; ROLLBACK; \
             PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x'; SET CONSTRAINTS ALL DEFERRED",
            &[
                "BEGIN", "START TRANSACTION", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "ROLLBACK",
                "PREPARE TRANSACTION", "COMMIT PREPARED", "SET CONSTRAINTS",
            ],
            &["transaction"; 10], &[],
        ),
        (
            "SET search_path = app; SET LOCAL work_mem = '1MB'; SHOW work_mem; RESET ALL; DISCARD ALL; SET ROLE admin",
            &["SET", "SET", "SHOW", "RESET", "DISCARD ALL", "SET"], &["session"; 6], &[],
        ),
        // Functions, notifications, maintenance.
        ("DO $$ BEGIN PERFORM 1; END $$", &["DO"], &["function"], &[]),
        ("CALL p(1)", &["CALL"], &["function"], &[]),
        (
            "LISTEN c; NOTIFY c, 'x'; UNLISTEN *",
            &["LISTEN", "NOTIFY", "UNLISTEN"], &["utility"; 3], &[],
        ),
        (
            "VACUUM (ANALYZE) t; ANALYZE u; LOCK TABLE v IN SHARE MODE; CHECKPOINT; REINDEX TABLE w",
            &["VACUUM", "ANALYZE", "LOCK TABLE", "CHECKPOINT", "REINDEX"], &["utility"; 5],
            &["t", "u", "v", "w"],
        ),
        // DDL.
        (
            "CREATE TABLE s.t (id int PRIMARY KEY, p int REFERENCES parent (id), LIKE tmpl)",
            &["CREATE TABLE"], &["ddl"], &["parent", "s.t", "tmpl"],
        ),
        (
            "ALTER TABLE t ADD COLUMN c int; ALTER TABLE t RENAME COLUMN c TO d; ALTER INDEX i RENAME TO j",
            &["ALTER TABLE", "ALTER TABLE", "ALTER INDEX"], &["ddl"; 3], &["i", "t"],
        ),
        (
            "DROP TABLE a, s.b CASCADE; DROP VIEW IF EXISTS v; DROP FUNCTION f(int); DROP SCHEMA x",
            &["DROP TABLE", "DROP VIEW", "DROP FUNCTION", "DROP SCHEMA"], &["ddl"; 4], &["a", "s.b", "v"],
        ),
        (
            "CREATE INDEX i ON t (c); CREATE VIEW v AS SELECT * FROM u; COMMENT ON COLUMN s.w.c IS 'x'",
            &["CREATE INDEX", "CREATE VIEW", "COMMENT"], &["ddl"; 3], &["s.w", "t", "u", "v"],
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END",
            &["CREATE FUNCTION", "CREATE PROCEDURE"], &["ddl"; 2], &["t"],
        ),
        (
            "GRANT SELECT ON t, s.u TO r; REVOKE ALL ON v FROM r; GRANT r TO q; CREATE ROLE z",
            &["GRANT", "REVOKE", "GRANT ROLE", "CREATE ROLE"], &["ddl"; 4], &["s.u", "t", "v"],
        ),
        ("CREATE TYPE mood AS ENUM ('a', 'b'); ALTER SYSTEM SET x = 1", &["CREATE TYPE", "ALTER SYSTEM"], &["ddl"; 2], &[]),
        // Multi-statement strings and empty ones.
        ("SELECT * FROM t WHERE a = 'x'; INSERT INTO u VALUES (1)", &["SELECT", "INSERT"], &["read", "write"], &["t", "u"]),
        ("", &[], &[], &[]),
        (" ; -- nothing", &[], &[], &[]),
    ];

    #[test]
    fn commands_classes_and_objects() {
        let analyzer = Analyzer::new(100);
        for &(sql, commands, classes, objects) in CASES {
            let shape = analyzer.analyze(sql, ON);
            assert_eq!(shape.parse_error, None, "{sql}");
            assert_eq!(shape.commands, commands, "{sql}");
            assert_eq!(shape.command_classes, classes, "{sql}");
            assert_eq!(shape.objects, objects, "{sql}");
            assert_eq!(shape.text, normalize(sql, ON).text);
            assert_eq!(shape.fingerprint, fingerprint(&shape.text));
        }
    }

    #[test]
    fn standard_conforming_strings_off_is_parsed_as_the_server_reads_it() {
        let analyzer = Analyzer::new(100);
        // With the setting off the server reads one string, then a DROP; with it on, two strings.
        let sql = "SELECT '\\', ' ; DROP TABLE t; --'";
        let off = analyzer.analyze(sql, OFF);
        assert_eq!(off.commands, ["SELECT", "DROP TABLE"]);
        assert_eq!(off.objects, ["t"]);
        assert_eq!(off.text, "SELECT $1 ; DROP TABLE t;");
        let on = analyzer.analyze(sql, ON);
        assert_eq!(on.commands, ["SELECT"]);
        assert_eq!(on.text, "SELECT $1, $2");

        let shape = analyzer.analyze("SELECT 'it\\'s', N'x\\'y' FROM t", OFF);
        assert_eq!(
            (shape.parse_error.as_deref(), &shape.objects[..]),
            (None, &["t".to_owned()][..])
        );
    }

    #[test]
    fn comment_between_continued_strings_parses_as_on_the_server() {
        let shape = Analyzer::new(10).analyze("SELECT 'a' -- c\n 'b' FROM t", ON);
        assert_eq!(shape.parse_error, None);
        assert_eq!(shape.text, "SELECT $1 FROM t");
    }

    #[test]
    fn parse_errors_are_redacted() {
        let analyzer = Analyzer::new(100);
        let cases = [
            (
                "SELECT * FROM t WHERE ssn = '123-45-6789' 'x'",
                "syntax error at or near [redacted]",
            ),
            (
                "SELECT 1 FROM t WHERE x = 'sekrit",
                "unterminated quoted string at or near [redacted]",
            ),
            (
                "SELECT $$sekrit",
                "unterminated dollar-quoted string at or near [redacted]",
            ),
            (
                "SELECT 1 /* sekrit",
                "unterminated /* comment at or near [redacted]",
            ),
            (
                "SELECT 123456789abc",
                "trailing junk after numeric literal at or near [redacted]",
            ),
            ("SELECT E'\\u12' || 'sekrit'", "invalid Unicode escape"),
            ("SELEC name FROM t", "syntax error at or near \"SELEC\""),
            ("SELECT * FROM", "syntax error at end of input"),
            (
                "SELECT 1 FROM t WHERE x = \"sekrit",
                "unterminated quoted identifier at or near [redacted]",
            ),
        ];
        for (sql, message) in cases {
            let shape = analyzer.analyze(sql, ON);
            assert_eq!(shape.parse_error.as_deref(), Some(message), "{sql}");
            assert!(
                shape.commands.is_empty()
                    && shape.command_classes.is_empty()
                    && shape.objects.is_empty()
            );
            assert_eq!(shape.text, normalize(sql, ON).text);
        }
        let nul = analyzer.analyze("SELECT 1\0", ON);
        assert!(nul.parse_error.as_deref().unwrap().contains("NUL"));
    }

    #[test]
    fn redaction_withholds_messages_that_still_quote_a_literal() {
        let msg = redact_message("bad value sekrit1 here", "SELECT 'a sekrit1 b'", ON);
        assert!(!msg.contains("sekrit1"), "{msg}");
        assert_eq!(
            redact_message("unrecognized option \"foo\" near \"'x'\"", "x", ON),
            "unrecognized option \"foo\" near [redacted]"
        );
    }

    #[test]
    fn caches_by_shape_and_by_exact_text() {
        let analyzer = Analyzer::new(100);
        let a = analyzer.analyze("SELECT * FROM t WHERE id = 1", ON);
        let b = analyzer.analyze("SELECT * FROM t WHERE id = 2", ON);
        assert!(Arc::ptr_eq(&a, &b), "same shape, one analysis");
        assert_eq!(
            analyzer.stats(),
            CacheStats {
                exact_hits: 0,
                shape_hits: 1,
                misses: 1
            }
        );
        let c = analyzer.analyze("SELECT * FROM t WHERE id = '2'", ON);
        assert!(!Arc::ptr_eq(&a, &c), "a string literal is another shape");

        // Literal-free texts are remembered verbatim; the second lookup does not normalize.
        let p1 = analyzer.analyze("SELECT * FROM t WHERE id = $1", ON);
        let p2 = analyzer.analyze("SELECT * FROM t WHERE id = $1", ON);
        assert!(Arc::ptr_eq(&p1, &p2));
        assert_eq!(analyzer.stats().exact_hits, 1);
        // … per setting of standard_conforming_strings.
        analyzer.analyze("SELECT * FROM t WHERE id = $1", OFF);
        assert_eq!(analyzer.stats().exact_hits, 1);
        // Texts with literals never enter the exact-text cache.
        analyzer.analyze("SELECT * FROM t WHERE id = 1", ON);
        assert_eq!(analyzer.stats().exact_hits, 1);
    }

    #[test]
    fn parse_failures_are_not_shared_by_shape() {
        let analyzer = Analyzer::new(100);
        // PostgreSQL's grammar rejects float(0) but accepts float(5): same shape, different fate.
        let bad = analyzer.analyze("SELECT 1::float(0)", ON);
        assert!(bad.parse_error.is_some());
        let good = analyzer.analyze("SELECT 1::float(5)", ON);
        assert_eq!(good.parse_error, None);
        assert_eq!(good.commands, ["SELECT"]);
        // Unterminated texts are never looked up by shape either.
        analyzer.analyze("SELECT 'a", ON);
        let again = analyzer.analyze("SELECT 'b", ON);
        assert!(again.parse_error.is_some());
        assert_eq!(analyzer.stats().shape_hits, 0);
    }

    #[test]
    fn cache_stays_bounded() {
        let analyzer = Analyzer::new(50);
        for i in 0..2_000 {
            analyzer.analyze(&format!("SELECT c{i} FROM t{i} WHERE x = $1"), ON);
        }
        assert!(analyzer.exact.weight() <= 50 && analyzer.shapes.weight() <= 50);
        // A text of 20 KiB weighs 21 units (plus its normalized twin in the shape cache).
        let big = format!("SELECT {} FROM t", vec!["col"; 5_000].join(", "));
        analyzer.analyze(&big, ON);
        assert!(analyzer.exact.weight() <= 50);
    }

    #[test]
    fn deep_but_legitimate_statements_parse() {
        let analyzer = Analyzer::new(10);
        // Past prost's default nesting limit of 100 messages (see Cargo.toml).
        let concat = format!("SELECT {} FROM t", vec!["c"; 200].join(" || ','  || "));
        let joins = (1..60).fold("SELECT * FROM t0".to_owned(), |s, i| {
            format!("{s} JOIN t{i} ON t{i}.id = t0.id")
        });
        for sql in [concat, joins] {
            let shape = analyzer.analyze(&sql, ON);
            assert_eq!(shape.parse_error, None);
            assert_eq!(shape.commands, ["SELECT"]);
        }
    }

    #[test]
    fn too_deep_statements_are_refused_without_crashing() {
        // On a thread with a runtime worker's stack: libpg_query would overflow it.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let analyzer = Analyzer::new(10);
                for sql in [
                    format!("SELECT {} FROM t", vec!["a"; 20_000].join("+")),
                    format!("SELECT {}1{}", "(".repeat(50_000), ")".repeat(50_000)),
                    format!("SELECT {} 1", "NOT ".repeat(1_900)),
                    format!(
                        "SELECT {}1{}",
                        "CASE WHEN a THEN ".repeat(1_900),
                        " END".repeat(1_900)
                    ),
                    vec!["SELECT a, b FROM t"; 5_000].join(" UNION "),
                    vec!["a BETWEEN b AND c"; 3_000].join(" OR "),
                ] {
                    let shape = analyzer.analyze(&sql, ON);
                    assert!(shape.commands.len() <= 1);
                }
                let refused =
                    analyzer.analyze(&format!("SELECT {}", vec!["a"; 20_000].join("+")), ON);
                assert!(refused
                    .parse_error
                    .as_deref()
                    .unwrap()
                    .contains("too deeply"));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// The nesting estimate must bound the real tree depth, whatever the construct: stack is
    /// sized from it. Constructs that chain across list separators are the traps.
    #[test]
    fn nesting_estimate_bounds_tree_depth() {
        fn depth(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        let n = 30;
        let nested =
            |open: &str, close: &str| format!("SELECT {}a{}", open.repeat(n), close.repeat(n));
        let cases = [
            nested("NOT ", ""),
            nested("- ", ""),
            nested("f(", ")"),
            nested("ARRAY[", "]"),
            nested("(SELECT ", ")"),
            nested("CASE WHEN x THEN ", " END"),
            nested("CASE WHEN x THEN 1 ELSE ", " END"),
            nested("EXISTS (SELECT 1 WHERE ", ")"),
            format!("SELECT {}", vec!["a"; n].join(" || ")),
            format!("SELECT a{}", "::text".repeat(n)),
            vec!["SELECT a, b FROM t"; n].join(" UNION "),
            vec!["SELECT a, b FROM t"; n].join(" EXCEPT ALL "),
            format!(
                "SELECT * FROM t0 {}",
                (1..n)
                    .map(|i| format!(" JOIN t{i} ON a AND b"))
                    .collect::<String>()
            ),
            format!(
                "SELECT * FROM t0 {}",
                (1..n)
                    .map(|i| format!(" JOIN t{i} USING (a, b) LEFT JOIN u{i} ON c = d, v{i}"))
                    .collect::<String>()
            ),
            format!("SELECT {}", vec!["a BETWEEN b AND c + d"; n].join(" AND ")),
            format!("SELECT {}", vec!["a IS NOT NULL"; n].join(" IS TRUE AND ")),
            format!("SELECT a {}", "AT TIME ZONE 'x' ".repeat(n)),
            format!("SELECT a {}", "COLLATE \"C\" ".repeat(n)),
            format!("SELECT {}", vec!["a = 1"; n].join(" OR b AND ")),
        ];
        for sql in cases {
            let real = stacker::grow(64 << 20, || {
                let tree = pg_query::parse(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                depth(&serde_json::to_value(&tree.protobuf).unwrap())
            });
            let estimate = lex::nesting_estimate(&sql, ON);
            // Each unit costs at most 12 levels of the serde form (a CASE level, the worst).
            assert!(
                real <= 12 * estimate + 24,
                "{sql}: depth {real}, estimate {estimate}"
            );
        }
    }

    #[test]
    fn analyzer_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Analyzer>();
        let analyzer = Arc::new(Analyzer::new(1_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let analyzer = Arc::clone(&analyzer);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let shape = analyzer
                            .analyze(&format!("SELECT * FROM t{} WHERE a = {i}", i % 7 + t), ON);
                        assert_eq!(shape.commands, ["SELECT"]);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let stats = analyzer.stats();
        assert_eq!(stats.exact_hits + stats.shape_hits + stats.misses, 800);
    }
}
