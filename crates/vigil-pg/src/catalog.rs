//! The database catalog the access analysis resolves names against, cached per connection
//! (target) and shared by its sessions, with each session's own search path.
//!
//! It is read on a session's own upstream connection: at login (before the client is let in)
//! and again after the session runs DDL or changes its search path (an internal query the
//! proxy slips in between the client's statements). A refresh by one session replaces the
//! connection's shared relations, so every session sees a new table at its next statement.
//!
//! A refresh reads only what changed since the session's previous read ([`Refresh`]): the
//! catalog rows (`pg_class`, `pg_attribute`, `pg_namespace`, `pg_index`, `pg_constraint`,
//! `pg_inherits`) whose `xmin` is not older than that read's snapshot name the relations whose
//! picture may have changed; the rows of those relations, of the relations whose foreign keys
//! meet them and of their inheritance ancestors (whose constraints list theirs) are read again,
//! with [`vigil_sql::catalog::catalog_query`], the same query as a full read restricted to them.
//! What was dropped leaves no row to see: the counts of those catalogs against the rows the
//! cache has seen tell a drop, and then the rows themselves tell which. Whatever cannot be
//! followed this way is read in full: another session's picture (its transaction may differ),
//! a transaction that ended or rolled back after a read saw its own uncommitted changes, a
//! snapshot too old to compare `xmin`s with.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vigil_policy::FunctionCatalog;
use vigil_sql::{CatalogRow, FunctionRisk, QualifiedName, StaticCatalog};

/// The statement every read starts with, before it reads anything: the snapshot's xmin (catalog
/// rows whose `xmin` is older were there for the read, or deleted since) and whether the
/// session's transaction has an ID (the rows read may then be its own, uncommitted).
const BASELINE_QUERY: &str =
    "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text, \
    (pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL)::text;";

const SEARCH_PATH_QUERY: &str = "SELECT s::text FROM unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS t(s, i) ORDER BY i;";

/// The query whose result sets [`CatalogCache::load`] reads (a full read): the snapshot, the
/// search path, which catalog rows exist, the relations and their columns, the definitions of
/// the database's views, which of the built-in names the access analysis trusts the database
/// also defines elsewhere, and (first load only) the names of built-in functions.
pub(crate) fn refresh_query(with_builtins: bool) -> String {
    read_query(None, with_builtins)
}

/// The first query of a read: in full (`since` = `None`), or which relations the catalog rows
/// not older than the snapshot of xmin `since` name (their rows are read next, with
/// [`listed_query`]).
fn read_query(since: Option<u64>, with_builtins: bool) -> String {
    let mut sql = String::from(BASELINE_QUERY);
    sql.push_str(SEARCH_PATH_QUERY);
    let fresh = since.map(Fresh);
    sql.push_str(&seen_query(fresh.as_ref()));
    match &fresh {
        None => sql.push_str(&vigil_sql::catalog::catalog_query(None)),
        Some(fresh) => sql.push_str(&changed_query(fresh)),
    }
    sql.push(';');
    sql.push_str(VIEWS_QUERY);
    sql.push_str(&vigil_sql::access::outputs::shadowing_query());
    sql.push(';');
    if with_builtins {
        sql.push_str(
            "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p \
             WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace);",
        );
    }
    sql
}

/// A read's query (`sql`) unbounded by the session's statement_timeout, for a session in no
/// transaction (at login, and between transactions with nothing in flight). The timeout is the
/// client's (a startup setting: node-postgres's `statement_timeout` option, 10 ms in its tests)
/// or a policy's bound, for the client's statements, not Vigil's read. SET LOCAL lasts until the
/// end of the text's implicit transaction, and each statement of a text is timed on its own, so
/// the statements after it run unbounded and the client's value is back when the read ends. In
/// a transaction the lift would outlast the read. Its command adds one result set before those
/// [`CatalogCache::load`] reads: [`UNBOUNDED_EXTRA_SETS`].
pub(crate) fn unbounded(sql: &str) -> String {
    let mut unbounded = String::with_capacity(sql.len() + 32);
    unbounded.push_str("SET LOCAL statement_timeout = 0;");
    unbounded.push_str(sql);
    unbounded
}

/// The result sets [`unbounded`] gives before those of the read's own query.
pub(crate) const UNBOUNDED_EXTRA_SETS: usize = 1;

/// The rows of the relations `listed` names.
fn listed_query(listed: &vigil_sql::catalog::Listed) -> String {
    let mut sql = vigil_sql::catalog::catalog_query(Some(listed));
    sql.push(';');
    sql
}

/// Catalog rows not older than a snapshot (of xmin `.0`): rows committed since, or in progress
/// then, and every row of the session's own transaction (whose later commands write rows with
/// the `xmin` of earlier ones). A superset of what changed is enough: what it names is read
/// again, exactly.
struct Fresh(u64);

impl Fresh {
    /// The condition on the row of alias `alias`.
    fn of(&self, alias: &str) -> String {
        // age() counts back from the transaction's own ID if it has one: rows at or after it
        // are its own (subtransactions come after) or committed since.
        format!(
            "pg_catalog.age({alias}.xmin) <= (SELECT GREATEST(pg_catalog.age('{}'::xid), \
             CASE WHEN pg_catalog.pg_current_xact_id_if_assigned() IS NULL THEN -2147483648 ELSE 0 END))",
            self.0 % (1 << 32)
        )
    }
}

/// The relations of the catalog rows not older than the last read (`fresh`): relations
/// created, renamed, moved or altered, in a renamed schema, whose columns, indexes,
/// constraints or inheritance links changed. Those whose rows name them (foreign keys'
/// other ends, inheritance ancestors) are added from the rows seen ([`Seen::listed`]).
fn changed_query(fresh: &Fresh) -> String {
    format!(
        "SELECT DISTINCT x.rel::int8 FROM ( \
         SELECT c.oid FROM pg_catalog.pg_class c WHERE {c} \
         UNION ALL SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {n} \
         UNION ALL SELECT a.attrelid FROM pg_catalog.pg_attribute a WHERE {a} \
         UNION ALL SELECT i.indrelid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid WHERE {i} OR {ic} \
         UNION ALL SELECT k.conrelid FROM pg_catalog.pg_constraint k WHERE {k} \
         UNION ALL SELECT k.confrelid FROM pg_catalog.pg_constraint k WHERE {k} \
         UNION ALL SELECT h.inhrelid FROM pg_catalog.pg_inherits h WHERE {h} \
         UNION ALL SELECT h.inhparent FROM pg_catalog.pg_inherits h WHERE {h}) AS x(rel) WHERE x.rel <> 0",
        c = fresh.of("c"),
        n = fresh.of("n"),
        a = fresh.of("a"),
        i = fresh.of("i"),
        ic = fresh.of("ic"),
        k = fresh.of("k"),
        h = fresh.of("h"),
    )
}

/// The catalog rows whose disappearance changes relations (all, or those not older than
/// `fresh`), and how many there are now: relations ('c': OID, the table of an index),
/// check and foreign-key constraints ('k': OID, relation, referenced relation), inheritance
/// links ('h': child, parent), the counts ('n').
fn seen_query(fresh: Option<&Fresh>) -> String {
    let and = |alias: &str| fresh.map_or_else(String::new, |f| format!(" AND {}", f.of(alias)));
    const CONSTRAINTS: &str = "k.contype IN ('c', 'f') AND k.conrelid <> 0 AND k.connamespace <> 'pg_catalog'::regnamespace";
    format!(
        "SELECT 'c', c.oid::int8, coalesce(i.indrelid, 0)::int8, 0::int8 FROM pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid WHERE c.relkind <> 't'{c} \
         UNION ALL SELECT 'k', k.oid::int8, k.conrelid::int8, k.confrelid::int8 FROM pg_catalog.pg_constraint k WHERE {CONSTRAINTS}{k} \
         UNION ALL SELECT 'h', h.inhrelid::int8, h.inhparent::int8, 0 FROM pg_catalog.pg_inherits h WHERE true{h} \
         UNION ALL SELECT 'n', (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relkind <> 't'), \
         (SELECT count(*) FROM pg_catalog.pg_constraint k WHERE {CONSTRAINTS}), (SELECT count(*) FROM pg_catalog.pg_inherits);",
        c = and("c"),
        k = and("k"),
        h = and("h"),
    )
}

/// The database's own views and materialized views, with their definitions as PostgreSQL
/// prints them for this session's search path: what each reads decides whether it is a way
/// into the catalog's side channels ([`view_exposures`]).
const VIEWS_QUERY: &str = "SELECT c.oid::int8, pg_catalog.pg_get_viewdef(c.oid) \
    FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm') \
    AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) \
    ORDER BY 1;";

/// Result sets of an internal query: rows of text values (`None` = NULL).
pub(crate) type ResultSets = Vec<Vec<Vec<Option<String>>>>;

/// The catalog rows a read saw whose disappearance changes relations (see [`seen_query`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Relations (TOAST tables aside): OID → the table of an index (0: not an index).
    classes: HashMap<u32, u32>,
    /// Check and foreign-key constraints: OID → (relation, referenced relation or 0).
    constraints: HashMap<u32, (u32, u32)>,
    /// Inheritance links (child, parent).
    inherits: HashSet<(u32, u32)>,
}

/// How many rows [`seen_query`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    classes: usize,
    constraints: usize,
    inherits: usize,
}

impl Seen {
    /// Takes in the rows of [`seen_query`]; returns its counts.
    fn add(&mut self, rows: Vec<Vec<Option<String>>>) -> Result<Counts, CatalogError> {
        let bad = || CatalogError("unexpected catalog row".into());
        let mut counts = None;
        for row in rows {
            let mut it = row.into_iter();
            let tag = it.next().flatten().ok_or_else(bad)?;
            let mut num = || -> Result<u64, CatalogError> {
                it.next()
                    .flatten()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(bad)
            };
            let (a, b, c) = (num()?, num()?, num()?);
            let oid = |v: u64| u32::try_from(v).map_err(|_| bad());
            match tag.as_str() {
                "c" => {
                    self.classes.insert(oid(a)?, oid(b)?);
                }
                "k" => {
                    self.constraints.insert(oid(a)?, (oid(b)?, oid(c)?));
                }
                "h" => {
                    self.inherits.insert((oid(a)?, oid(b)?));
                }
                "n" => {
                    let n = |v: u64| usize::try_from(v).map_err(|_| bad());
                    counts = Some(Counts {
                        classes: n(a)?,
                        constraints: n(b)?,
                        inherits: n(c)?,
                    })
                }
                _ => return Err(bad()),
            }
        }
        counts.ok_or_else(bad)
    }

    fn counts(&self) -> Counts {
        Counts {
            classes: self.classes.len(),
            constraints: self.constraints.len(),
            inherits: self.inherits.len(),
        }
    }

    /// What to read for the relations `changed`: them, the other ends of their foreign keys
    /// (whose rows name them and their columns), the inheritance ancestors of all those (whose
    /// rows list their descendants' constraints), with the descendants of each.
    fn listed(&self, changed: &BTreeSet<u32>) -> vigil_sql::catalog::Listed {
        let mut relations = changed.clone();
        for (rel, other) in self.constraints.values() {
            if *other != 0 && changed.contains(rel) {
                relations.insert(*other);
            }
            if *other != 0 && changed.contains(other) {
                relations.insert(*rel);
            }
        }
        let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (child, parent) in &self.inherits {
            parents.entry(*child).or_default().push(*parent);
            children.entry(*parent).or_default().push(*child);
        }
        let mut stack: Vec<u32> = relations.iter().copied().collect();
        while let Some(r) = stack.pop() {
            for p in parents.get(&r).into_iter().flatten() {
                if relations.insert(*p) {
                    stack.push(*p);
                }
            }
        }
        let mut descendants = Vec::new();
        for r in &relations {
            let mut seen = HashSet::new();
            let mut stack = vec![*r];
            while let Some(x) = stack.pop() {
                for c in children.get(&x).into_iter().flatten() {
                    if seen.insert(*c) {
                        descendants.push((*r, *c));
                        stack.push(*c);
                    }
                }
            }
        }
        vigil_sql::catalog::Listed {
            relations: relations.into_iter().collect(),
            descendants,
        }
    }

    /// The relations whose rows named what `self` has and `now` has not.
    fn touched_by_drops(&self, now: &Seen) -> BTreeSet<u32> {
        let mut touched = BTreeSet::new();
        for (oid, table) in &self.classes {
            if !now.classes.contains_key(oid) && *table != 0 {
                touched.insert(*table);
            }
        }
        for (oid, (rel, other)) in &self.constraints {
            if !now.constraints.contains_key(oid) {
                touched.extend([*rel, *other].into_iter().filter(|r| *r != 0));
            }
        }
        for (child, parent) in &self.inherits {
            if !now.inherits.contains(&(*child, *parent)) {
                touched.extend([*child, *parent]);
            }
        }
        touched
    }
}

/// What a read is compared with by the next one: its snapshot, who read, what it saw.
struct Baseline {
    /// The xmin of the read's snapshot (64-bit, with epoch).
    xmin: u64,
    /// The reading session (see [`SessionCatalog`]).
    session: u64,
    seen: Seen,
}

#[derive(Default)]
struct Shared {
    /// Relations as last read, with the search path of the session that read them.
    relations: Option<Arc<StaticCatalog>>,
    /// What the database's views expose, as of the same read.
    views: Arc<ViewExposures>,
    generation: u64,
    builtins: Option<Arc<HashSet<String>>>,
    /// What the last read is compared with, unless a read is under way from it.
    baseline: Option<Baseline>,
}

/// Views of the database (by OID) over catalog relations or functions on the deny-by-default
/// list, and what they expose.
pub(crate) type ViewExposures = HashMap<u32, FunctionRisk>;

/// One connection's catalog, shared by its sessions.
#[derive(Default)]
pub struct CatalogCache {
    shared: Mutex<Shared>,
    sessions: AtomicU64,
}

/// A catalog problem: the session cannot be checked, so it is refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the database catalog: {0}")]
pub struct CatalogError(pub String);

/// A read of the catalog in one or more internal queries: run [`Refresh::query`], give its
/// result sets to [`Refresh::take`], until that returns the session's new catalog.
pub(crate) struct Refresh {
    session: u64,
    query: String,
    step: Step,
}

enum Step {
    /// A full read.
    Full,
    /// The changes since `baseline` to the relations of `old`.
    Changes {
        old: Arc<StaticCatalog>,
        baseline: Baseline,
    },
    /// Something was dropped: every row [`Seen`] records, to tell what.
    Drops(Box<Partial>),
    /// The rows of the relations that changed.
    Changed(Box<Partial>),
}

/// A read under way: what the first query of an incremental read found.
struct Partial {
    xmin: u64,
    uncommitted: bool,
    path: Vec<String>,
    catalog: StaticCatalog,
    views: Vec<(u32, String)>,
    builtins: Option<Arc<HashSet<String>>>,
    /// The rows seen before and since.
    seen: Seen,
    /// The relations whose rows changed, or may have.
    changed: BTreeSet<u32>,
}

/// The result sets every read query starts with (up to the relations' rows), taken apart.
struct Read {
    xmin: u64,
    uncommitted: bool,
    path: Vec<String>,
    seen_rows: Vec<Vec<Option<String>>>,
    /// The relations' rows (a full read), or the OIDs of those that changed.
    relations: Vec<Vec<Option<String>>>,
    views: Vec<(u32, String)>,
    shadowed: BTreeSet<(vigil_sql::access::outputs::BuiltinKind, String)>,
    builtins: Option<Arc<HashSet<String>>>,
}

impl CatalogCache {
    /// Whether the built-in function names are still to be read.
    pub(crate) fn needs_builtins(&self) -> bool {
        self.shared.lock().builtins.is_none()
    }

    /// Takes the result sets of [`refresh_query`] into the cache; returns the session's view.
    pub(crate) fn load(&self, sets: ResultSets) -> Result<SessionCatalog, CatalogError> {
        let mut read = Refresh {
            session: self.sessions.fetch_add(1, Ordering::Relaxed),
            query: String::new(),
            step: Step::Full,
        };
        read.take(self, sets)?
            .ok_or_else(|| CatalogError("a full read took more than one query".into()))
    }

    /// A read for `session`: of what changed since its last read when the connection's picture
    /// is that read's and nothing forces a full one, else a full read.
    pub(crate) fn refresh(&self, session: &SessionCatalog) -> Refresh {
        let mut shared = self.shared.lock();
        let with_builtins = shared.builtins.is_none();
        let follows = !session.read_in_full
            && shared
                .baseline
                .as_ref()
                .is_some_and(|b| b.session == session.id);
        if let (true, Some(old)) = (follows, shared.relations.clone()) {
            let baseline = shared.baseline.take().expect("checked");
            return Refresh {
                session: session.id,
                query: read_query(Some(baseline.xmin), with_builtins),
                step: Step::Changes { old, baseline },
            };
        }
        Refresh {
            session: session.id,
            query: read_query(None, with_builtins),
            step: Step::Full,
        }
    }

    /// Every relation as last read.
    pub(crate) fn relations(&self) -> Vec<Arc<vigil_sql::RelationInfo>> {
        self.shared
            .lock()
            .relations
            .as_ref()
            .map(|c| c.relations().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest relations under `path`, if the cache moved past `generation`.
    fn newer(&self, generation: u64) -> Option<(Arc<StaticCatalog>, Arc<ViewExposures>, u64)> {
        let shared = self.shared.lock();
        (shared.generation > generation)
            .then(|| {
                shared
                    .relations
                    .clone()
                    .map(|c| (c, shared.views.clone(), shared.generation))
            })
            .flatten()
    }

    /// Makes `catalog` the connection's picture and `session`'s.
    fn finish(
        &self,
        session: u64,
        partial: Partial,
        shadowed: Option<BTreeSet<(vigil_sql::access::outputs::BuiltinKind, String)>>,
    ) -> Result<SessionCatalog, CatalogError> {
        let mut catalog = partial.catalog;
        if let Some(shadowed) = shadowed {
            catalog = catalog.with_shadowing(shadowed);
        }
        let catalog = Arc::new(catalog);
        let views = Arc::new(view_exposures(&partial.views, &catalog));
        let mut shared = self.shared.lock();
        shared.relations = Some(catalog.clone());
        shared.views = views.clone();
        shared.generation += 1;
        if let Some(b) = partial.builtins {
            shared.builtins = Some(b);
        }
        shared.baseline = Some(Baseline {
            xmin: partial.xmin,
            session,
            seen: partial.seen,
        });
        let builtins = shared
            .builtins
            .clone()
            .ok_or_else(|| CatalogError("no built-in function names".into()))?;
        Ok(SessionCatalog {
            catalog,
            views,
            search_path: partial.path,
            generation: shared.generation,
            builtins,
            id: session,
            uncommitted: partial.uncommitted,
            read_in_full: false,
        })
    }
}

impl Refresh {
    /// The next query to run.
    pub(crate) fn query(&self) -> &str {
        &self.query
    }

    /// Takes the result sets of [`Self::query`]: the session's catalog once read, or `None`
    /// with the next query to run.
    pub(crate) fn take(
        &mut self,
        cache: &CatalogCache,
        sets: ResultSets,
    ) -> Result<Option<SessionCatalog>, CatalogError> {
        match std::mem::replace(&mut self.step, Step::Full) {
            Step::Full => {
                let read = Read::of(sets)?;
                let mut seen = Seen::default();
                if seen.add(read.seen_rows)? != seen.counts() {
                    return Err(CatalogError("catalog rows miscounted".into()));
                }
                let rows = read
                    .relations
                    .into_iter()
                    .map(parse_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let catalog = StaticCatalog::from_rows(rows, read.path.clone());
                let partial = Partial {
                    xmin: read.xmin,
                    uncommitted: read.uncommitted,
                    path: read.path,
                    catalog,
                    views: read.views,
                    builtins: read.builtins,
                    seen,
                    changed: BTreeSet::new(),
                };
                cache
                    .finish(self.session, partial, Some(read.shadowed))
                    .map(Some)
            }
            Step::Changes { old, baseline } => {
                let read = Read::of(sets)?;
                // xmin are 32-bit and wrap: older than 2^30 transactions, compare no more.
                if read.xmin < baseline.xmin || read.xmin - baseline.xmin > 1 << 30 {
                    return self.restart_full(cache);
                }
                let mut seen = baseline.seen;
                let counts = seen.add(read.seen_rows)?;
                let changed = read
                    .relations
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .next()
                            .flatten()
                            .and_then(|o| o.parse::<u32>().ok())
                            .ok_or_else(|| CatalogError("unexpected changed relation".into()))
                    })
                    .collect::<Result<BTreeSet<u32>, _>>()?;
                let catalog = old
                    .with_search_path(read.path.clone())
                    .with_shadowing(read.shadowed);
                let partial = Box::new(Partial {
                    xmin: read.xmin,
                    uncommitted: read.uncommitted,
                    path: read.path,
                    catalog,
                    views: read.views,
                    builtins: read.builtins,
                    seen,
                    changed,
                });
                if counts != partial.seen.counts() {
                    // Fewer rows than seen before plus fresh ones: something was dropped.
                    self.query = seen_query(None);
                    self.step = Step::Drops(partial);
                    return Ok(None);
                }
                self.read_changed(cache, partial)
            }
            Step::Drops(mut partial) => {
                let mut now = Seen::default();
                let rows = sets
                    .into_iter()
                    .next()
                    .ok_or_else(|| CatalogError("no catalog rows".into()))?;
                if now.add(rows)? != now.counts() {
                    return Err(CatalogError("catalog rows miscounted".into()));
                }
                let touched = partial.seen.touched_by_drops(&now);
                partial.changed.extend(touched);
                let gone: Vec<u32> = partial
                    .catalog
                    .relations()
                    .map(|r| r.oid)
                    .filter(|oid| !now.classes.contains_key(oid))
                    .collect();
                partial.catalog = partial.catalog.with_changes(gone, Vec::new());
                partial.seen = now;
                self.read_changed(cache, partial)
            }
            Step::Changed(mut partial) => {
                let rows = sets
                    .into_iter()
                    .next()
                    .ok_or_else(|| CatalogError("no relations".into()))?
                    .into_iter()
                    .map(parse_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let replaced = StaticCatalog::relations_of(rows);
                partial.catalog = partial.catalog.with_changes([], replaced);
                cache.finish(self.session, *partial, None).map(Some)
            }
        }
    }

    /// Reads the relations that changed, and those whose rows name them; if none, done.
    fn read_changed(
        &mut self,
        cache: &CatalogCache,
        partial: Box<Partial>,
    ) -> Result<Option<SessionCatalog>, CatalogError> {
        if partial.changed.is_empty() {
            return cache.finish(self.session, *partial, None).map(Some);
        }
        self.query = listed_query(&partial.seen.listed(&partial.changed));
        self.step = Step::Changed(partial);
        Ok(None)
    }

    fn restart_full(
        &mut self,
        cache: &CatalogCache,
    ) -> Result<Option<SessionCatalog>, CatalogError> {
        self.query = read_query(None, cache.needs_builtins());
        self.step = Step::Full;
        Ok(None)
    }
}

impl Read {
    fn of(sets: ResultSets) -> Result<Read, CatalogError> {
        let mut sets = sets.into_iter();
        let mut next = |what: &str| {
            sets.next()
                .ok_or_else(|| CatalogError(format!("no {what}")))
        };
        let baseline = next("snapshot")?.into_iter().next().unwrap_or_default();
        let mut it = baseline.into_iter();
        let xmin = it
            .next()
            .flatten()
            .and_then(|x| x.parse::<u64>().ok())
            .ok_or_else(|| CatalogError("unexpected snapshot row".into()))?;
        let uncommitted = match it.next().flatten().as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => return Err(CatalogError("unexpected snapshot row".into())),
        };
        let path: Vec<String> = next("search path")?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        let seen_rows = next("catalog rows")?;
        let relations = next("relations")?;
        let views = next("views")?
            .into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let oid = it.next().flatten().and_then(|o| o.parse::<u32>().ok());
                match (oid, it.next().flatten()) {
                    (Some(oid), definition) => Ok((oid, definition.unwrap_or_default())),
                    _ => Err(CatalogError("unexpected view row".into())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Built-in names (functions, operators, types) the database also defines outside
        // pg_catalog: unqualified, they may not be PostgreSQL's own.
        let shadowed = next("shadowed names")?
            .into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let kind = it
                    .next()
                    .flatten()
                    .and_then(|k| vigil_sql::access::outputs::BuiltinKind::from_letter(&k));
                match (kind, it.next().flatten()) {
                    (Some(kind), Some(name)) => Ok((kind, name)),
                    _ => Err(CatalogError("unexpected shadowed name row".into())),
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let builtins = sets.next().map(|rows| {
            Arc::new(
                rows.into_iter()
                    .filter_map(|row| row.into_iter().next().flatten())
                    .collect::<HashSet<_>>(),
            )
        });
        Ok(Read {
            xmin,
            uncommitted,
            path,
            seen_rows,
            relations,
            views,
            shadowed,
            builtins,
        })
    }
}

/// Which of the database's views read, directly or through other views, a catalog relation or
/// function on the deny-by-default list (`vigil_sql::access::exposure`), from their
/// definitions analysed as any statement is. A definition that cannot be analysed counts as
/// exposing ([`FunctionRisk::Unreviewed`]): the view then needs naming exactly.
pub(crate) fn view_exposures(views: &[(u32, String)], catalog: &StaticCatalog) -> ViewExposures {
    let analyzer = vigil_sql::Analyzer::new(views.len().max(1));
    let options = vigil_sql::LexOptions {
        standard_conforming_strings: true,
    };
    let mut exposed = ViewExposures::new();
    let mut reads: Vec<(u32, u32)> = Vec::new();
    for (oid, definition) in views {
        let access = analyzer.access(definition, options, catalog);
        if !access.is_complete() || access.statements.is_empty() {
            exposed.insert(*oid, FunctionRisk::Unreviewed);
            continue;
        }
        for s in &access.statements {
            for r in &s.relations {
                let schema = r.relation.schema.as_deref().unwrap_or("");
                if let Some(risk) = vigil_sql::access::relation_risk(schema, &r.relation.name) {
                    exposed.entry(*oid).or_insert(risk);
                }
                // Reading pg_settings is harmless, but a view over it takes its update rule:
                // an UPDATE of the view is set_config() of any setting.
                if schema == "pg_catalog" && r.relation.name == "pg_settings" {
                    exposed.entry(*oid).or_insert(FunctionRisk::Configuration);
                }
                if let Some(read) = r.oid.filter(|read| read != oid) {
                    reads.push((*oid, read));
                }
            }
            for f in &s.functions {
                if let Some(risk) = vigil_sql::access::function_risk(&f.name) {
                    exposed.entry(*oid).or_insert(risk);
                }
            }
        }
    }
    // A view over an exposing view exposes too.
    loop {
        let mut changed = false;
        for (view, read) in &reads {
            if !exposed.contains_key(view) {
                if let Some(risk) = exposed.get(read).copied() {
                    exposed.insert(*view, risk);
                    changed = true;
                }
            }
        }
        if !changed {
            return exposed;
        }
    }
}

fn parse_row(row: Vec<Option<String>>) -> Result<CatalogRow, CatalogError> {
    let bad = || CatalogError("unexpected catalog row".into());
    let mut it = row.into_iter();
    let oid: i64 = it
        .next()
        .flatten()
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let schema = it.next().flatten().ok_or_else(bad)?;
    let name = it.next().flatten().ok_or_else(bad)?;
    let kind = it
        .next()
        .flatten()
        .and_then(|k| k.chars().next())
        .ok_or_else(bad)?;
    let column = match (it.next().flatten(), it.next().flatten()) {
        (Some(c), Some(n)) => Some((c, n.parse().map_err(|_| bad())?)),
        _ => None,
    };
    // The constraint column: a row without it is from another query than ours, whose
    // constraints are unknown (fail: the session is refused rather than checked without them).
    let constraint = match it.next().ok_or_else(bad)? {
        Some(json) => Some(
            vigil_sql::catalog::constraint_from_catalog_json(&json)
                .map_err(|e| CatalogError(e.to_string()))?,
        ),
        None => None,
    };
    let row = match constraint {
        Some(c) => CatalogRow::with_constraint(oid as u32, schema, name, kind, c),
        None => CatalogRow::new(oid as u32, schema, name, kind, column),
    };
    Ok(row)
}

/// A session's view of its connection's catalog.
pub(crate) struct SessionCatalog {
    catalog: Arc<StaticCatalog>,
    views: Arc<ViewExposures>,
    search_path: Vec<String>,
    generation: u64,
    builtins: Arc<HashSet<String>>,
    /// Which session this is, for the cache: a read follows on from this session's own.
    id: u64,
    /// The last read ran in a transaction with an ID: it may have seen the transaction's own
    /// changes, which a rollback undoes without a row to show it.
    uncommitted: bool,
    /// The next read must be a full one.
    read_in_full: bool,
}

impl SessionCatalog {
    /// The catalog to analyse with now: the connection's latest relations under this
    /// session's search path.
    pub(crate) fn current(&mut self, cache: &CatalogCache) -> Arc<StaticCatalog> {
        if let Some((newer, views, generation)) = cache.newer(self.generation) {
            self.generation = generation;
            self.views = views;
            self.catalog = if newer.search_path() == self.search_path.as_slice() {
                newer
            } else {
                Arc::new(newer.with_search_path(self.search_path.clone()))
            };
        }
        self.catalog.clone()
    }

    /// The session's transaction ended or rolled back (to a savepoint, perhaps): if the last
    /// read may have seen its own changes, read everything again.
    pub(crate) fn transaction_ended(&mut self) {
        self.read_in_full |= self.uncommitted;
    }

    /// The next read follows on from this session's last one, if the picture is still it.
    pub(crate) fn refresh(&self, cache: &CatalogCache) -> Refresh {
        cache.refresh(self)
    }

    pub(crate) fn functions(&self) -> BuiltinFunctions<'_> {
        BuiltinFunctions {
            names: &self.builtins,
            views: &self.views,
        }
    }
}

/// PostgreSQL's own functions, by name, and the database's views over the catalog's side
/// channels.
pub(crate) struct BuiltinFunctions<'a> {
    names: &'a HashSet<String>,
    views: &'a ViewExposures,
}

impl FunctionCatalog for BuiltinFunctions<'_> {
    fn is_builtin(&self, name: &QualifiedName) -> bool {
        match name.schema.as_deref() {
            None => self.names.contains(&name.name),
            Some("pg_catalog") | Some("information_schema") => true,
            Some(_) => false,
        }
    }

    fn view_exposure(&self, relation_oid: u32) -> Option<FunctionRisk> {
        self.views.get(&relation_oid).copied()
    }
}

/// A database's catalog read once, outside any session: what `vigil policy test` and
/// `vigil policy replay` analyse against. Read through the same upstream login (vaulted
/// credentials, TLS mode) as a session, so it sees what the gateway's sessions see.
pub struct DatabaseCatalog {
    pub relations: Arc<StaticCatalog>,
    views: Arc<ViewExposures>,
    builtins: Arc<HashSet<String>>,
}

impl DatabaseCatalog {
    /// PostgreSQL's own functions and the views over the catalog's side channels, for
    /// [`vigil_policy::decide`].
    pub fn functions(&self) -> impl FunctionCatalog + '_ {
        BuiltinFunctions {
            names: &self.builtins,
            views: &self.views,
        }
    }

    /// Logs in to `target` and reads its relations, columns, search path and built-in
    /// function names.
    pub async fn read(
        target: &crate::Target,
        timeout: std::time::Duration,
    ) -> Result<DatabaseCatalog, CatalogError> {
        let tls = crate::tls::upstream_client_config(target.tls, target.ca_file.as_deref())
            .map_err(|e| CatalogError(e.to_string()))?;
        let read = async {
            let mut upstream =
                crate::upstream::connect(target, tls.as_ref(), &[("application_name", "vigil")])
                    .await
                    .map_err(|e| CatalogError(e.to_string()))?;
            let sets = crate::upstream::simple_query(&mut upstream.stream, &refresh_query(true))
                .await
                .map_err(|e| CatalogError(e.to_string()))?;
            use tokio::io::AsyncWriteExt;
            let mut terminate = Vec::with_capacity(5);
            crate::codec::put_message(
                &mut terminate,
                crate::messages::tag::frontend::TERMINATE,
                |_| {},
            );
            let _ = upstream.stream.write_all(&terminate).await;
            let session = CatalogCache::default().load(sets)?;
            Ok(DatabaseCatalog {
                relations: session.catalog,
                views: session.views,
                builtins: session.builtins,
            })
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| CatalogError("timed out".into()))?
    }
}

/// One upstream connection's catalog followed through the statements it runs, read as a
/// session reads it (what changed, after each statement that may change it), next to a full
/// read on the same connection: for tests that hold the two against each other.
#[doc(hidden)]
pub struct FollowedCatalog {
    cache: CatalogCache,
    session: SessionCatalog,
    upstream: crate::upstream::Upstream,
    /// Internal queries the last read took.
    pub queries: usize,
    /// The last read followed on from the one before (rather than reading everything).
    pub followed: bool,
}

/// What a read gives: the relations (with the search path) and what the views expose.
#[doc(hidden)]
pub struct Picture {
    pub relations: Arc<StaticCatalog>,
    pub views: HashMap<u32, FunctionRisk>,
}

impl FollowedCatalog {
    /// Logs in to `target` (no TLS) and reads its catalog in full.
    pub async fn connect(target: &crate::Target) -> Result<FollowedCatalog, CatalogError> {
        let mut upstream = crate::upstream::connect(target, None, &[("application_name", "vigil")])
            .await
            .map_err(|e| CatalogError(e.to_string()))?;
        let sets = crate::upstream::simple_query(&mut upstream.stream, &refresh_query(true))
            .await
            .map_err(|e| CatalogError(e.to_string()))?;
        let cache = CatalogCache::default();
        let session = cache.load(sets)?;
        Ok(FollowedCatalog {
            cache,
            session,
            upstream,
            queries: 1,
            followed: false,
        })
    }

    /// Runs `sql` as a client statement: its error's message if it failed.
    pub async fn execute(&mut self, sql: &str) -> Result<(), String> {
        crate::upstream::simple_query(&mut self.upstream.stream, sql)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// What a session does after a statement that ends its transaction (or rolls back to a
    /// savepoint).
    pub fn transaction_ended(&mut self) {
        self.session.transaction_ended();
    }

    /// Reads the catalog again as a session does after DDL.
    pub async fn refresh(&mut self) -> Result<Picture, CatalogError> {
        let mut refresh = self.session.refresh(&self.cache);
        self.followed = !matches!(refresh.step, Step::Full);
        self.queries = 0;
        loop {
            self.queries += 1;
            let sets = crate::upstream::simple_query(&mut self.upstream.stream, refresh.query())
                .await
                .map_err(|e| CatalogError(e.to_string()))?;
            if let Some(session) = refresh.take(&self.cache, sets)? {
                self.session = session;
                return Ok(self.picture());
            }
        }
    }

    /// Reads the catalog in full on the same connection, into a cache of its own (the followed
    /// one is left as it was).
    pub async fn read_full(&mut self) -> Result<Picture, CatalogError> {
        let sets = crate::upstream::simple_query(&mut self.upstream.stream, &refresh_query(true))
            .await
            .map_err(|e| CatalogError(e.to_string()))?;
        let mut session = CatalogCache::default().load(sets)?;
        let cache = CatalogCache::default();
        Ok(Picture {
            relations: session.current(&cache),
            views: (*session.views).clone(),
        })
    }

    fn picture(&mut self) -> Picture {
        Picture {
            relations: self.session.current(&self.cache),
            views: (*self.session.views).clone(),
        }
    }
}

/// The result sets of a full read ([`refresh_query`]) of the given relation rows and the rest,
/// for tests: the snapshot and the rows seen are made up.
#[cfg(test)]
pub(crate) fn full_read_sets(mut sets: ResultSets) -> ResultSets {
    let s = |v: &str| Some(v.to_string());
    sets.insert(0, vec![vec![s("1000"), s("false")]]);
    sets.insert(2, vec![vec![s("n"), s("0"), s("0"), s("0")]]);
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sql::Catalog;

    fn sets() -> ResultSets {
        full_read_sets(old_sets())
    }

    /// Path, relations, views, shadowed names, built-in functions.
    fn old_sets() -> ResultSets {
        let s = |v: &str| Some(v.to_string());
        vec![
            vec![vec![s("pg_catalog")], vec![s("public")]],
            vec![
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    s("id"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    s("ssn"),
                    s("2"),
                    None,
                ],
                vec![
                    s("16001"),
                    s("public"),
                    s("patients"),
                    s("r"),
                    None,
                    None,
                    s(
                        r#"{"kind" : "unique_index", "name" : "patients_ssn_key", "validated" : true, "owner" : null, "columns" : ["ssn"], "other" : null, "other_columns" : []}"#,
                    ),
                ],
                vec![
                    s("16002"),
                    s("public"),
                    s("empty"),
                    s("r"),
                    None,
                    None,
                    None,
                ],
                vec![
                    s("12222"),
                    s("pg_catalog"),
                    s("pg_stat_activity"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16010"),
                    s("public"),
                    s("activity"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16011"),
                    s("public"),
                    s("activity2"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16012"),
                    s("public"),
                    s("ids"),
                    s("v"),
                    s("id"),
                    s("1"),
                    None,
                ],
                vec![
                    s("16013"),
                    s("public"),
                    s("backends"),
                    s("v"),
                    s("query"),
                    s("1"),
                    None,
                ],
            ],
            vec![
                vec![s("16010"), s("SELECT query FROM pg_stat_activity;")],
                vec![s("16011"), s("SELECT activity.query FROM activity;")],
                vec![s("16012"), s("SELECT patients.id FROM patients;")],
                vec![
                    s("16013"),
                    s("SELECT pg_stat_get_backend_activity(1) AS query;"),
                ],
            ],
            vec![vec![s("f"), s("upper")], vec![s("o"), s("||")]],
            vec![vec![s("count")], vec![s("upper")]],
        ]
    }

    #[test]
    fn loads_relations_path_and_builtins() {
        let cache = CatalogCache::default();
        assert!(cache.needs_builtins());
        let mut session = cache.load(sets()).unwrap();
        assert!(!cache.needs_builtins());
        let c = session.current(&cache);
        let p = c.relation(None, "patients").unwrap();
        assert_eq!((p.oid, p.columns.len()), (16001, 2));
        let constraints = p.constraints.as_ref().unwrap();
        assert_eq!(constraints.len(), 1);
        assert_eq!(constraints[0].name, "patients_ssn_key");
        assert_eq!(constraints[0].columns, ["ssn"]);
        let empty = c.relation(None, "empty").unwrap();
        assert!(empty.columns.is_empty() && empty.constraints == Some(vec![]));
        let f = session.functions();
        assert!(f.is_builtin(&QualifiedName::new(None, "upper")));
        assert!(!f.is_builtin(&QualifiedName::new(None, "my_fn")));
        assert!(!f.is_builtin(&QualifiedName::new(Some("public"), "upper")));
        // Which reviewed built-in names the database also defines elsewhere.
        use vigil_sql::access::outputs::BuiltinKind;
        assert!(c.shadows_builtin(BuiltinKind::Function, "upper"));
        assert!(c.shadows_builtin(BuiltinKind::Operator, "||"));
        assert!(!c.shadows_builtin(BuiltinKind::Function, "now"));
        assert!(!c.shadows_builtin(BuiltinKind::Type, "date"));
        // Views over the catalog's side channels, directly, through a view or a function.
        assert_eq!(f.view_exposure(16010), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16011), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16013), Some(FunctionRisk::OtherSessions));
        assert_eq!(f.view_exposure(16012), None);
        assert_eq!(f.view_exposure(16001), None);
    }

    #[test]
    fn a_view_vigil_cannot_analyse_needs_naming() {
        let catalog = StaticCatalog::from_rows([], vec!["public".into()]);
        let views = view_exposures(&[(1, "SELEC nonsense".into())], &catalog);
        assert_eq!(views.get(&1), Some(&FunctionRisk::Unreviewed));
    }

    #[test]
    fn a_refresh_by_another_session_is_seen() {
        let cache = CatalogCache::default();
        let mut a = cache.load(sets()).unwrap();
        let before = a.current(&cache).version();
        let mut more = old_sets();
        more[1].push(vec![
            Some("16003".into()),
            Some("public".into()),
            Some("new_table".into()),
            Some("r".into()),
            Some("x".into()),
            Some("1".into()),
            None,
        ]);
        more.truncate(4);
        let _b = cache.load(full_read_sets(more)).unwrap();
        let after = a.current(&cache);
        assert_ne!(after.version(), before);
        assert!(after.relation(None, "new_table").is_some());
    }

    #[test]
    fn garbage_rows_are_an_error() {
        let cache = CatalogCache::default();
        let mut bad = old_sets();
        bad[1].push(vec![Some("x".into())]);
        assert!(cache.load(full_read_sets(bad)).is_err());
        // Rows without the constraint column (an older query), or with one we cannot read.
        let mut old = old_sets();
        old[1].iter_mut().for_each(|r| {
            r.pop();
        });
        assert!(cache.load(full_read_sets(old)).is_err());
        let mut unreadable = old_sets();
        unreadable[1][2][6] = Some(r#"{"kind" : "primary"}"#.into());
        assert!(cache.load(full_read_sets(unreadable)).is_err());
        // The sets of the query before the snapshot and the rows seen were read.
        assert!(cache.load(old_sets()).is_err());
        // Rows seen that do not add up.
        let mut miscounted = sets();
        miscounted[2][0][1] = Some("1".into());
        assert!(cache.load(miscounted).is_err());
    }
}
